//! The endpoint table: one entry per method and path, with the roles allowed to call it.
//! The router, the authorization middleware and the OpenAPI document are all built from
//! it, so they cannot disagree.

use axum::Router;
use axum::extract::State;
use axum::routing::MethodRouter;
use serde_json::{Map, Value, json};

use super::App;
use super::caller::Role;
use super::{consent, dashboard, health, portability, review, session, uploads, videos};

pub struct Endpoint {
    pub method: &'static str,
    /// axum path syntax (`{id}`), which is also OpenAPI's.
    pub path: &'static str,
    pub summary: &'static str,
    /// Empty: no token needed.
    pub roles: &'static [Role],
    pub responses: &'static [(u16, &'static str)],
    /// Request headers and query parameters the endpoint reads.
    pub params: &'static [Param],
    /// The request body: (content type, JSON schema), if it takes one.
    pub body: Option<(&'static str, &'static str)>,
    add: fn(MethodRouter<App>) -> MethodRouter<App>,
}

use Role::{Admin, PrivacyOfficer, Reviewer, Uploader};

const WRITE: &[Role] = &[Uploader, Admin];
const READ: &[Role] = &[Uploader, Reviewer, Admin, PrivacyOfficer];
const PLAY: &[Role] = &[Reviewer, Admin];
const REVIEW: &[Role] = &[Reviewer, Admin];
/// The people who watch the service (uploaders are machine clients).
const OPS: &[Role] = &[Reviewer, Admin, PrivacyOfficer];
const ERASE: &[Role] = &[PrivacyOfficer, Admin];
const REVOKE: &[Role] = &[Uploader, PrivacyOfficer, Admin];
const AUTH: [(u16, &str); 3] = [
    (401, "missing or unknown token"),
    (403, "role not allowed"),
    (429, "rate limit or queue full (Retry-After)"),
];

/// A header or query parameter: where, its name, whether required, its JSON schema.
#[derive(PartialEq)]
pub struct Param(&'static str, &'static str, bool, &'static str);

// Request parameters and bodies, as OpenAPI (JSON Schema) fragments.
const TUS: Param = Param(
    "header",
    "Tus-Resumable",
    true,
    r#"{"type": "string", "enum": ["1.0.0"]}"#,
);
const CONSENT: Param = Param(
    "header",
    "Vcw-Consent",
    true,
    r#"{"type": "string", "minLength": 1, "description": "the data subject's consent token (docs/consent.md)"}"#,
);
const UPLOAD_LENGTH: Param = Param(
    "header",
    "Upload-Length",
    true,
    r#"{"type": "integer", "minimum": 1}"#,
);
const UPLOAD_OFFSET: Param = Param(
    "header",
    "Upload-Offset",
    true,
    r#"{"type": "integer", "minimum": 0}"#,
);
const UPLOAD_METADATA: Param = Param("header", "Upload-Metadata", false, r#"{"type": "string"}"#);
const UPLOAD_CHECKSUM: Param = Param(
    "header",
    "Upload-Checksum",
    false,
    r#"{"type": "string", "pattern": "^(sha1|sha256) [A-Za-z0-9+/]+={0,2}$"}"#,
);
const CALLBACK: Param = Param(
    "header",
    "Vcw-Callback-Url",
    false,
    r#"{"type": "string", "format": "uri"}"#,
);
const EVIDENCE_T: Param = Param(
    "query",
    "t",
    true,
    r#"{"type": "number", "minimum": 0, "description": "seconds into the video"}"#,
);
const EVIDENCE_CLEAR: Param = Param("query", "clear", false, r#"{"type": "boolean"}"#);
const BINARY: &str = r#"{"type": "string", "format": "binary"}"#;
const LOGIN_BODY: &str =
    r#"{"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}}"#;
const HOLD_BODY: &str = r#"{"type": "object", "required": ["reason"], "additionalProperties": false, "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": "\\S"}}}"#;
const REVIEW_BODY: &str = r#"{"type": "object", "required": ["decision", "reason"], "additionalProperties": false, "properties": {"decision": {"enum": ["approve", "reject", "escalate"]}, "reason": {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": "\\S"}}}"#;
const JOB_BODY: &str = r#"{"type": "object", "required": ["source"], "additionalProperties": false, "properties": {
  "id": {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"},
  "callback_url": {"type": "string", "format": "uri"},
  "source": {"oneOf": [
    {"type": "object", "required": ["upload"], "additionalProperties": false, "properties": {"upload": {"type": "object", "required": ["upload_id"], "additionalProperties": false, "properties": {"upload_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}}}},
    {"type": "object", "required": ["s3"], "additionalProperties": false, "properties": {"s3": {"type": "object", "required": ["url"], "additionalProperties": false, "properties": {"url": {"type": "string", "pattern": "^s3://"}}}}}
  ]}}}"#;

pub static ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: "GET",
        path: "/healthz",
        summary: "Liveness: the process serves requests",
        roles: &[],
        responses: &[(200, "alive")],
        params: &[],
        body: None,
        add: |m| m.get(health::healthz),
    },
    Endpoint {
        method: "GET",
        path: "/readyz",
        summary: "Readiness: catalog, queue and store answer",
        roles: &[],
        responses: &[(200, "ready"), (503, "a dependency is down")],
        params: &[],
        body: None,
        add: |m| m.get(health::readyz),
    },
    Endpoint {
        method: "GET",
        path: "/metrics",
        summary: "Prometheus metrics (text exposition format); no personal data, ids or subjects in them",
        roles: &[],
        responses: &[(200, "metrics")],
        params: &[],
        body: None,
        add: |m| m.get(health::metrics),
    },
    Endpoint {
        method: "GET",
        path: "/openapi.json",
        summary: "This API's OpenAPI 3.1 document",
        roles: &[],
        responses: &[(200, "OpenAPI document")],
        params: &[],
        body: None,
        add: |m| {
            m.get(
                |State(app): State<App>| async move { axum::Json(openapi(&app.svc.config.limits)) },
            )
        },
    },
    Endpoint {
        method: "GET",
        path: "/dashboard",
        summary: "The ops dashboard (HTML; assets embedded in the binary). Sign in with an API token: it is kept in an HttpOnly cookie",
        roles: &[],
        responses: &[(200, "the page")],
        params: &[],
        body: None,
        add: |m| m.get(dashboard::page),
    },
    Endpoint {
        method: "GET",
        path: "/dashboard/{file}",
        summary: "The dashboard's script, style and HLS player",
        roles: &[],
        responses: &[(200, "the file"), (404, "no such file")],
        params: &[],
        body: None,
        add: |m| m.get(dashboard::file),
    },
    Endpoint {
        method: "POST",
        path: "/dashboard/login",
        summary: "Starts a browser session, body {\"token\": …}: sets the HttpOnly session cookie and the CSRF cookie whose value changes must send as X-Vcw-Csrf",
        roles: &[],
        responses: &[(200, "{id, role}"), (401, "unknown token")],
        params: &[],
        body: Some(("application/json", LOGIN_BODY)),
        add: |m| m.post(session::login),
    },
    Endpoint {
        method: "POST",
        path: "/dashboard/logout",
        summary: "Ends the browser session (clears its cookies)",
        roles: &[],
        responses: &[(204, "signed out")],
        params: &[],
        body: None,
        add: |m| m.post(session::logout),
    },
    Endpoint {
        method: "GET",
        path: "/v1/whoami",
        summary: "The caller's public token id and role",
        roles: READ,
        responses: &[(200, "{id, role}")],
        params: &[],
        body: None,
        add: |m| m.get(session::whoami),
    },
    Endpoint {
        method: "GET",
        path: "/v1/dashboard",
        summary: "The dashboard's figures: jobs by state, outbox, throughput per minute and latency over the last hour, verdict mix, leases, API nodes, reaper actions, cache, recent consent events",
        roles: OPS,
        responses: &[(200, "figures")],
        params: &[],
        body: None,
        add: |m| m.get(dashboard::overview),
    },
    Endpoint {
        method: "OPTIONS",
        path: "/v1/uploads",
        summary: "tus discovery: version, extensions, maximum size",
        roles: &[],
        responses: &[(204, "tus capabilities in headers")],
        params: &[],
        body: None,
        add: |m| m.options(uploads::options),
    },
    Endpoint {
        method: "POST",
        path: "/v1/uploads",
        summary: "tus creation: Upload-Length, a Vcw-Consent token (the subject), Upload-Metadata (filename, callback_url, enqueue optional)",
        roles: WRITE,
        responses: &[
            (
                201,
                "created; Location is the upload URL, Upload-Expires when it goes if unfinished",
            ),
            (400, "missing Upload-Length"),
            (401, "consent token missing or invalid"),
            (403, "consent lacks the purpose, or was revoked"),
            (412, "unsupported Tus-Resumable"),
            (413, "over the size limit"),
        ],
        params: &[TUS, UPLOAD_LENGTH, CONSENT, UPLOAD_METADATA],
        body: None,
        add: |m| m.post(uploads::create),
    },
    Endpoint {
        method: "HEAD",
        path: "/v1/uploads/{id}",
        summary: "tus: the upload's offset and length",
        roles: WRITE,
        responses: &[
            (200, "Upload-Offset and Upload-Length"),
            (404, "no such upload"),
        ],
        params: &[TUS],
        body: None,
        add: |m| m.head(uploads::head),
    },
    Endpoint {
        method: "PATCH",
        path: "/v1/uploads/{id}",
        summary: "tus: append bytes at Upload-Offset (sealed as they arrive), checked against Upload-Checksum (sha1, sha256) when sent; the last one queues the job",
        roles: WRITE,
        responses: &[
            (
                204,
                "stored; new Upload-Offset, and Upload-Expires while unfinished",
            ),
            (400, "malformed Upload-Checksum or unsupported algorithm"),
            (409, "offset mismatch"),
            (460, "the body does not match Upload-Checksum; nothing kept"),
            (
                415,
                "not application/offset+octet-stream, or not a video container",
            ),
        ],
        params: &[TUS, UPLOAD_OFFSET, UPLOAD_CHECKSUM],
        body: Some(("application/offset+octet-stream", BINARY)),
        add: |m| m.patch(uploads::patch),
    },
    Endpoint {
        method: "DELETE",
        path: "/v1/uploads/{id}",
        summary: "tus termination: discard an unfinished upload",
        roles: WRITE,
        responses: &[(204, "terminated"), (409, "already complete")],
        params: &[TUS],
        body: None,
        add: |m| m.delete(uploads::terminate),
    },
    Endpoint {
        method: "PUT",
        path: "/v1/videos/{id}",
        summary: "Upload a whole video in one streaming request body and queue its job (Vcw-Consent token required: the subject)",
        roles: WRITE,
        responses: &[
            (202, "stored and queued"),
            (401, "consent token missing or invalid"),
            (403, "consent lacks the purpose, or was revoked"),
            (409, "the id exists"),
            (413, "over the size limit"),
            (415, "not a video container"),
        ],
        params: &[CONSENT, CALLBACK],
        body: Some(("application/octet-stream", BINARY)),
        add: |m| m.put(uploads::put_video),
    },
    Endpoint {
        method: "POST",
        path: "/v1/jobs",
        summary: "Queue a job for a video by reference: a completed upload or an s3:// object",
        roles: WRITE,
        responses: &[
            (202, "queued (or already known: idempotent by id)"),
            (400, "bad job"),
            (404, "no such upload"),
            (
                409,
                "the upload is not complete, or the id is another caller's",
            ),
        ],
        params: &[CONSENT],
        body: Some(("application/json", JOB_BODY)),
        add: |m| m.post(videos::submit),
    },
    Endpoint {
        method: "GET",
        path: "/v1/videos",
        summary: "Videos newest first: ?state=…&verdict=…&limit=N (default 50, at most 500)&before=<next of the previous page>; an uploader sees only its own",
        roles: READ,
        responses: &[
            (
                200,
                "{\"items\": [{id, state, progress, verdict, escalate, attempts, error, created_at_ms, updated_at_ms, erased}], \"next\": cursor or null}",
            ),
            (400, "an unknown state or verdict, or a malformed cursor"),
        ],
        params: &[],
        body: None,
        add: |m| m.get(videos::list),
    },
    Endpoint {
        method: "GET",
        path: "/v1/videos/{id}",
        summary: "Status, progress, verdict, reasons with time ranges and evidence",
        roles: READ,
        responses: &[(200, "the video"), (404, "no such video")],
        params: &[],
        body: None,
        add: |m| m.get(videos::status),
    },
    Endpoint {
        method: "DELETE",
        path: "/v1/videos/{id}",
        summary: "Erase: shred every key of the video's objects and delete them",
        roles: ERASE,
        responses: &[(200, "erased"), (404, "no such video")],
        params: &[],
        body: None,
        add: |m| m.delete(videos::erase),
    },
    Endpoint {
        method: "GET",
        path: "/v1/subjects/{subject}",
        summary: "Data-subject access: the subject's videos with verdicts, consent ledger and audit records (privacy officer, or an uploader with the subject's own Vcw-Consent)",
        roles: REVOKE,
        responses: &[
            (200, "everything held about the subject"),
            (401, "the uploader's consent token is missing or invalid"),
            (403, "the consent token is for another subject"),
        ],
        params: &[],
        body: None,
        add: |m| m.get(consent::access),
    },
    Endpoint {
        method: "GET",
        path: "/v1/subjects/{subject}/export",
        summary: "Data portability: a tar archive (streamed) of the subject's own videos, decrypted, with subject.json (everything held about them); media of blocked videos withheld (privacy officer, or an uploader with the subject's own Vcw-Consent)",
        roles: REVOKE,
        responses: &[
            (200, "application/x-tar"),
            (401, "the uploader's consent token is missing or invalid"),
            (403, "the consent token is for another subject"),
        ],
        params: &[],
        body: None,
        add: |m| m.get(portability::export),
    },
    Endpoint {
        method: "DELETE",
        path: "/v1/subjects/{subject}",
        summary: "Erase a subject: every video erased, consent revoked, the subject key shredded; answers a receipt signed with the deployment's key (privacy officer, or an uploader with the subject's own Vcw-Consent)",
        roles: REVOKE,
        responses: &[
            (200, "erased; the signed receipt"),
            (403, "the consent token is for another subject"),
            (409, "a legal hold suspends erasure (the reason is given)"),
        ],
        params: &[],
        body: None,
        add: |m| m.delete(consent::erase),
    },
    Endpoint {
        method: "PUT",
        path: "/v1/subjects/{subject}/hold",
        summary: "Put a subject under legal hold: erasure is suspended until released. Body {\"reason\": …}",
        roles: ERASE,
        responses: &[(200, "held")],
        params: &[],
        body: Some(("application/json", HOLD_BODY)),
        add: |m| m.put(consent::hold),
    },
    Endpoint {
        method: "DELETE",
        path: "/v1/subjects/{subject}/hold",
        summary: "Release a subject's legal hold: erasure may proceed",
        roles: ERASE,
        responses: &[(200, "released (false if there was none)")],
        params: &[],
        body: None,
        add: |m| m.delete(consent::release),
    },
    Endpoint {
        method: "DELETE",
        path: "/v1/subjects/{subject}/consent",
        summary: "Revoke a subject's consent: its jobs stop and nothing of it is served from the commit on (privacy officer, or an uploader with the subject's own Vcw-Consent token)",
        roles: REVOKE,
        responses: &[
            (200, "revoked; when, and how many jobs were cancelled"),
            (401, "the uploader's consent token is missing or invalid"),
            (403, "the consent token is for another subject"),
        ],
        params: &[],
        body: None,
        add: |m| m.delete(consent::revoke),
    },
    Endpoint {
        method: "GET",
        path: "/v1/review",
        summary: "The review lane: finished videos flagged review, restrict or block that no one has decided on, escalated (probable minor with explicit content) first; at most 100",
        roles: REVIEW,
        responses: &[(
            200,
            "{\"items\": [{id, verdict, escalate, reasons, created_at_ms}]}",
        )],
        params: &[],
        body: None,
        add: |m| m.get(review::queue),
    },
    Endpoint {
        method: "POST",
        path: "/v1/videos/{id}/review",
        summary: "A reviewer's decision, body {\"decision\": \"approve\"|\"reject\"|\"escalate\", \"reason\": …}: approve sets the verdict allow, reject block, escalate keeps it and puts the subject under legal hold; audited, and sent as a video.reviewed webhook",
        roles: REVIEW,
        responses: &[
            (200, "decided: the verdict before and after"),
            (404, "no such video"),
            (409, "not a finished, flagged, unerased video"),
        ],
        params: &[],
        body: Some(("application/json", REVIEW_BODY)),
        add: |m| m.post(review::decide),
    },
    Endpoint {
        method: "GET",
        path: "/v1/videos/{id}/evidence",
        summary: "The frame at ?t=SECONDS as a small JPEG, blurred unless &clear=true (a deliberate unblur, audited as video.read.evidence.unblurred); also for a blocked video, for its review",
        roles: REVIEW,
        responses: &[
            (200, "image/jpeg"),
            (400, "t missing or negative"),
            (409, "not processed yet, or no HLS rendition"),
            (410, "erased"),
        ],
        params: &[EVIDENCE_T, EVIDENCE_CLEAR],
        body: None,
        add: |m| m.get(videos::evidence),
    },
    Endpoint {
        method: "POST",
        path: "/v1/videos/{id}/retry",
        summary: "Run a dead or failed job again, with server.max_attempts more attempts (admin); only when its source still exists (an S3 object)",
        roles: &[Admin],
        responses: &[
            (200, "queued again"),
            (404, "no such video"),
            (
                409,
                "not dead or failed, erased, or its upload is gone (why is said)",
            ),
        ],
        params: &[],
        body: None,
        add: |m| m.post(videos::retry),
    },
    Endpoint {
        method: "POST",
        path: "/v1/videos/{id}/cancel",
        summary: "Cancel a queued or running job",
        roles: WRITE,
        responses: &[(202, "cancellation requested"), (404, "no such video")],
        params: &[],
        body: None,
        add: |m| m.post(videos::cancel),
    },
    Endpoint {
        method: "GET",
        path: "/v1/videos/{id}/playlist.m3u8",
        summary: "HLS playlist of the verified, decrypted segments",
        roles: PLAY,
        responses: &[
            (200, "playlist"),
            (409, "not processed yet"),
            (410, "erased"),
            (451, "verdict is block"),
        ],
        params: &[],
        body: None,
        add: |m| m.get(videos::playlist),
    },
    Endpoint {
        method: "GET",
        path: "/v1/videos/{id}/original",
        summary: "The upload itself, sealed, kept when HLS cannot carry its codecs; verified and decrypted; HTTP Range supported",
        roles: PLAY,
        responses: &[
            (200, "the original"),
            (206, "part of the original"),
            (404, "no original kept (the video is stored as HLS)"),
            (409, "not processed yet"),
            (410, "erased"),
            (416, "bad range"),
            (451, "verdict is block"),
        ],
        params: &[],
        body: None,
        add: |m| m.get(videos::original),
    },
    Endpoint {
        method: "GET",
        path: "/v1/videos/{id}/segments/{n}",
        summary: "One segment (`N.m4s`, or `init.mp4` for the fMP4 init segment), verified and decrypted; HTTP Range supported",
        roles: PLAY,
        responses: &[
            (200, "segment"),
            (206, "partial segment"),
            (410, "erased"),
            (416, "bad range"),
            (451, "verdict is block"),
        ],
        params: &[],
        body: None,
        add: |m| m.get(videos::segment),
    },
];

/// The endpoint for a method and a matched route path.
pub fn endpoint(method: &str, path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS
        .iter()
        .find(|e| e.method == method && e.path == path)
}

/// The methods the table serves at `path` (what a 405's `Allow` lists).
pub fn methods_at(path: &str) -> Vec<&'static str> {
    ENDPOINTS
        .iter()
        .filter(|e| e.path == path)
        .map(|e| e.method)
        .collect()
}

/// Every endpoint in the table, grouped by path.
pub fn router() -> Router<App> {
    let mut paths: Vec<&str> = ENDPOINTS.iter().map(|e| e.path).collect();
    paths.dedup();
    paths.sort_unstable();
    paths.dedup();
    let mut router = Router::new();
    for path in paths {
        let methods = ENDPOINTS
            .iter()
            .filter(|e| e.path == path)
            .fold(MethodRouter::new(), |m, e| (e.add)(m));
        router = router.route(path, methods);
    }
    router
}

/// A schema fragment of the table (checked by the OpenAPI test, so it always parses).
fn schema_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!({}))
}

/// The schema of a path parameter, by name.
fn path_schema(name: &str) -> Value {
    match name {
        "id" => json!({"type": "string", "pattern": "^[0-9a-f]{32}$"}),
        "n" => json!({"type": "string", "pattern": "^(init\\.mp4|[0-9]{1,6}(\\.(m4s|ts))?)$"}),
        "subject" => json!({"type": "string", "minLength": 1, "maxLength": 512}),
        _ => json!({"type": "string"}),
    }
}

/// OpenAPI 3.1 for [`ENDPOINTS`].
pub fn openapi(limits: &crate::config::Limits) -> Value {
    let mut paths = Map::new();
    for e in ENDPOINTS {
        let names: Vec<&str> = (e.path.split('/'))
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let mut params: Vec<Value> = names
            .iter()
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": path_schema(name)}))
            .collect();
        params.extend(e.params.iter().map(|Param(place, name, required, schema)| {
            let mut schema = schema_of(schema);
            if *name == UPLOAD_LENGTH.1 {
                schema["maximum"] = limits.max_file_size.into();
            }
            json!({"name": name, "in": place, "required": required, "schema": schema})
        }));
        // What every endpoint of a kind can answer besides its own list: a malformed or
        // unknown id, a missing or malformed header, a body of the wrong type or shape.
        let mut implied: Vec<(u16, &str)> = Vec::new();
        if !names.is_empty() {
            implied.extend([(400, "malformed path parameter"), (404, "not found")]);
        }
        if e.params.iter().any(|p| p.2) {
            implied.push((400, "a required parameter is missing or malformed"));
        }
        if e.params.contains(&TUS) {
            implied.push((412, "Tus-Resumable missing or not 1.0.0"));
        }
        if let Some((kind, _)) = e.body {
            implied.push((415, "the body is not of the declared content type"));
            if kind == "application/json" {
                implied.extend([(400, "malformed JSON"), (422, "JSON of the wrong shape")]);
            }
        }
        let mut responses = Map::new();
        let auth: &[(u16, &str)] = if e.roles.is_empty() { &[] } else { &AUTH };
        for (code, description) in e.responses.iter().chain(auth).chain(&implied) {
            (responses.entry(code.to_string()))
                .or_insert_with(|| json!({ "description": description }));
        }
        let mut op = json!({
            "summary": e.summary,
            "operationId": format!("{} {}", e.method, e.path),
            "parameters": params,
            "responses": responses,
            "x-vcw-roles": e.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        });
        if !e.roles.is_empty() {
            op["security"] = json!([{ "bearer": [] }]);
        }
        if let Some((kind, schema)) = e.body {
            op["requestBody"] = json!({
                "required": true,
                "content": { kind: { "schema": schema_of(schema) } },
            });
        }
        let item = paths.entry(e.path.to_string()).or_insert_with(|| json!({}));
        item[e.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "vcw",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Video compliance worker: uploads (tus 1.0 and PUT), jobs, verdicts, sealed playback, erasure. See docs/api.md."
        },
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } } },
        "paths": paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every schema fragment of the table is JSON ([`schema_of`] would hide a typo).
    #[test]
    fn every_schema_fragment_parses() {
        for e in ENDPOINTS {
            let fragments = e.params.iter().map(|p| p.3).chain(e.body.map(|b| b.1));
            for text in fragments {
                let parsed: Result<Value, _> = serde_json::from_str(text);
                assert!(parsed.is_ok(), "{} {}: {text}", e.method, e.path);
            }
        }
    }
}
