//! Uploads: tus 1.0 (core, creation, termination, checksum, expiration) and a plain
//! streaming PUT.
//!
//! Every request body is sealed as it streams in (see [`crate::staging`]), so memory stays
//! flat and no plaintext reaches the disk. A tus PATCH that breaks off keeps what arrived,
//! as the protocol asks, so the client resumes from the server's offset. The first bytes
//! of an upload must look like a video container, so other content is refused before
//! anything is stored.

use std::io;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::StreamExt as _;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::io::StreamReader;

use super::App;
use super::caller::Caller;
use super::checksum::{self, Expected, Hashing};
use super::consent::consenting_subject;
use super::error::ApiError;
use super::refusal::{drain, refuse_body};
use crate::catalog::{NewUpload, NewVideo, PartAdded, UploadRow};
use crate::domain::JobSource;
use crate::domain::UploadState;
use crate::jobs::cleanup::close_upload;
use crate::service::Service;
use crate::staging::{discard_parts, looks_like_video, stage_part};

const TUS_VERSION: &str = "1.0.0";
/// Uploads name their subject only through a consent token.
const SUBJECT_FROM_TOKEN: &str =
    "the subject comes from the consent token (Vcw-Consent), not from a header or metadata";

/// Bytes looked at to recognise a container (MPEG-TS needs its second sync byte at 188).
const SNIFF_LEN: usize = 189;

fn tus_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Tus-Resumable`: another protocol version is a 412 (as tus asks); a missing or
/// malformed header is a bad request (400), which tus leaves open.
fn check_tus(headers: &HeaderMap) -> Result<(), ApiError> {
    let version = |v: &str| {
        let parts: Vec<&str> = v.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    match header_str(headers, "tus-resumable") {
        Some(TUS_VERSION) => Ok(()),
        Some(v) if version(v) => Err(ApiError::PreconditionFailed(format!(
            "Tus-Resumable {v} is not supported: {TUS_VERSION}"
        ))),
        _ => Err(ApiError::BadRequest(format!(
            "Tus-Resumable: {TUS_VERSION} required"
        ))),
    }
}

/// Parses tus `Upload-Metadata`: `key base64value` pairs separated by commas.
fn metadata(headers: &HeaderMap) -> Result<Vec<(String, String)>, ApiError> {
    let Some(raw) = header_str(headers, "upload-metadata") else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once(' ').unwrap_or((pair, ""));
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .map_err(|_| ApiError::BadRequest(format!("Upload-Metadata {key}: not base64")))?;
            let value = String::from_utf8(bytes)
                .map_err(|_| ApiError::BadRequest(format!("Upload-Metadata {key}: not UTF-8")))?;
            Ok((key.to_string(), value))
        })
        .collect()
}

/// Refuses new work while the queue is full.
pub(super) async fn check_capacity(svc: &Service) -> Result<(), ApiError> {
    if svc.catalog().queued_count().await? >= svc.config.server.queue_capacity {
        return Err(ApiError::TooMany {
            what: "the job queue is full",
            retry_after: 5,
        });
    }
    Ok(())
}

/// A callback URL must be absolute http(s), and webhooks need a signing secret.
pub(super) fn check_callback(svc: &Service, url: Option<&str>) -> Result<(), ApiError> {
    let Some(url) = url else { return Ok(()) };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ApiError::BadRequest(
            "callback_url must be an http(s) URL".into(),
        ));
    }
    if svc.config.server.webhook_secret.is_none() {
        return Err(ApiError::BadRequest(
            "callback_url given but the server has no webhook_secret configured".into(),
        ));
    }
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|_| ApiError::BadRequest("callback_url is not a valid URL".into()))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(ApiError::BadRequest("callback_url has no host".into()));
    }
    // A literal internal address is refused now; names are checked on every delivery,
    // on the address they resolve to then.
    if let Some(ip) = crate::webhook::literal_ip(&uri) {
        let policy = crate::outbound::OutboundPolicy::new(&svc.config.server.webhook_allow)
            .map_err(ApiError::internal)?;
        policy
            .check(ip)
            .map_err(|why| ApiError::BadRequest(format!("callback_url: {why}")))?;
    }
    Ok(())
}

fn new_id() -> Result<String, ApiError> {
    Ok(crate::domain::id_hex(
        &*crate::crypto::random::<16>().map_err(ApiError::internal)?,
    ))
}

pub async fn options(State(app): State<App>) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    h.insert(
        "tus-extension",
        HeaderValue::from_static("creation,termination,checksum,expiration"),
    );
    h.insert(
        "tus-checksum-algorithm",
        HeaderValue::from_static(checksum::ALGORITHMS),
    );
    h.insert(
        "tus-max-size",
        HeaderValue::from(app.svc.config.limits.max_file_size),
    );
    tus_headers(r)
}

pub async fn create(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_tus(&headers)?;
    let svc = &app.svc;
    if header_str(&headers, "upload-defer-length").is_some() {
        return Err(ApiError::BadRequest(
            "Upload-Defer-Length is not supported: send Upload-Length".into(),
        ));
    }
    let length: i64 = header_str(&headers, "upload-length")
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::BadRequest("Upload-Length (bytes, > 0) required".into()))?;
    if length as u64 > svc.config.limits.max_file_size {
        return Err(ApiError::TooLarge(format!(
            "Upload-Length {length} is over the limit of {} bytes",
            svc.config.limits.max_file_size
        )));
    }
    let meta = metadata(&headers)?;
    let get = |k: &str| {
        meta.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    if get("subject").is_some() {
        return Err(ApiError::BadRequest(SUBJECT_FROM_TOKEN.into()));
    }
    let callback_url = get("callback_url");
    check_callback(svc, callback_url.as_deref())?;
    check_capacity(svc).await?;
    let subject_hash = consenting_subject(&app, &caller, &headers).await?;
    let id = new_id()?;
    let budget = svc.config.server.open_upload_bytes;
    let created = svc
        .catalog()
        .insert_upload(
            &UploadRow {
                id: id.clone(),
                subject_hash,
                owner: caller.id.clone(),
                length,
                received: 0,
                filename: get("filename"),
                callback_url,
                state: UploadState::Receiving,
                created_at_ms: None,
            },
            budget,
        )
        .await?;
    match created {
        NewUpload::Created => {}
        NewUpload::OverBudget { reserved } => {
            tracing::info!(owner = %caller.id, reserved, length, "upload refused: over open_upload_bytes");
            return Err(ApiError::TooMany {
                what: "this token's unfinished uploads reserve too many bytes: finish or \
                       terminate some (server.open_upload_bytes)",
                retry_after: 60,
            });
        }
        // 128 random bits collided: not going to happen, but never overwrite.
        NewUpload::Exists => return Err(ApiError::Conflict(format!("upload {id} exists"))),
    }
    tracing::info!(upload = %id, length, owner = %caller.id, "upload created");
    let mut r = StatusCode::CREATED.into_response();
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/v1/uploads/{id}")).map_err(ApiError::internal)?,
    );
    expires(&mut r, svc, crate::domain::clock::now_ms());
    Ok(tus_headers(r))
}

async fn owned_upload(app: &App, caller: &Caller, id: &str) -> Result<UploadRow, ApiError> {
    app.svc
        .catalog()
        .upload(id)
        .await?
        .filter(|u| caller.may_access(&u.owner))
        .ok_or(ApiError::NotFound("upload"))
}

fn offsets(r: &mut Response, upload: &UploadRow, received: i64) {
    let h = r.headers_mut();
    h.insert("upload-offset", HeaderValue::from(received));
    h.insert("upload-length", HeaderValue::from(upload.length));
}

/// `Upload-Expires` of an upload created at `created_ms` (tus expiration): when the
/// reaper ends it if it is still unfinished (`server.upload_expiry_seconds`).
fn expires(r: &mut Response, svc: &Service, created_ms: i64) {
    let expiry_ms = (svc.config.server.upload_expiry_seconds * 1000.0) as u64;
    let at = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(created_ms.max(0) as u64 + expiry_ms);
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(at)) {
        r.headers_mut().insert("upload-expires", v);
    }
}

/// [`expires`] for a stored upload still receiving.
fn expires_if_receiving(r: &mut Response, svc: &Service, upload: &UploadRow, received: i64) {
    if let Some(created) = upload.created_at_ms
        && received < upload.length
    {
        expires(r, svc, created);
    }
}

pub async fn head(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_tus(&headers)?;
    let upload = owned_upload(&app, &caller, &id).await?;
    if upload.state == UploadState::Terminated {
        return Err(ApiError::Gone);
    }
    let mut r = StatusCode::OK.into_response();
    offsets(&mut r, &upload, upload.received);
    if upload.state == UploadState::Receiving {
        expires_if_receiving(&mut r, &app.svc, &upload, upload.received);
    }
    Ok(tus_headers(r))
}

/// A request body as a reader. With `keep_partial`, a body that breaks off simply ends
/// (tus keeps the bytes that arrived); without, the break is an error.
fn body_reader(body: Body, keep_partial: bool) -> impl AsyncRead + Unpin + Send {
    let stream = body.into_data_stream();
    let stream = if keep_partial {
        stream
            .take_while(|r| std::future::ready(r.is_ok()))
            .map(|r| r.map_err(io::Error::other))
            .boxed()
    } else {
        stream.map(|r| r.map_err(io::Error::other)).boxed()
    };
    StreamReader::new(stream)
}

/// Reads the first bytes (up to [`SNIFF_LEN`]) so the container can be checked before
/// anything is stored.
async fn peek(reader: &mut (impl AsyncRead + Unpin)) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(SNIFF_LEN);
    while head.len() < SNIFF_LEN {
        let n = (&mut *reader)
            .take((SNIFF_LEN - head.len()) as u64)
            .read_to_end(&mut head)
            .await?;
        if n == 0 {
            break;
        }
    }
    Ok(head)
}

/// What a PATCH's headers and the upload's state ask for, checked before its body is read.
enum PatchTarget {
    /// The upload is complete and the PATCH is at its final offset (a retried last PATCH).
    Finished(UploadRow),
    /// Bytes to append at `offset`.
    Append {
        upload: UploadRow,
        expected: Option<Expected>,
        offset: i64,
    },
}

async fn patch_target(
    app: &App,
    caller: &Caller,
    id: &str,
    headers: &HeaderMap,
) -> Result<PatchTarget, ApiError> {
    check_tus(headers)?;
    if header_str(headers, "content-type") != Some("application/offset+octet-stream") {
        return Err(ApiError::Unsupported(
            "Content-Type must be application/offset+octet-stream".into(),
        ));
    }
    let upload = owned_upload(app, caller, id).await?;
    let expected = Expected::from_headers(headers)?;
    let offset: i64 = header_str(headers, "upload-offset")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::BadRequest("Upload-Offset required".into()))?;
    if upload.state == UploadState::Complete && offset == upload.length {
        return Ok(PatchTarget::Finished(upload));
    }
    if upload.state != UploadState::Receiving {
        return Err(ApiError::Conflict(format!(
            "upload is {}",
            upload.state.as_str()
        )));
    }
    if offset != upload.received {
        return Err(ApiError::Conflict(format!(
            "Upload-Offset {offset} does not match the server's offset {}",
            upload.received
        )));
    }
    Ok(PatchTarget::Append {
        upload,
        expected,
        offset,
    })
}

pub async fn patch(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let svc = &app.svc;
    let (upload, expected, offset) = match patch_target(&app, &caller, &id, &headers).await {
        Ok(PatchTarget::Append {
            upload,
            expected,
            offset,
        }) => (upload, expected, offset),
        // A completed upload, patched at its final offset with nothing more: answered as
        // tusd does (204 with the offset), so a client that retries its last PATCH, or
        // one that stops past the end (tuspy's `stop_at`), sees success instead of a
        // conflict.
        Ok(PatchTarget::Finished(upload)) => {
            let mut reader = body_reader(body, true);
            let head = peek(&mut (&mut reader).take(1))
                .await
                .map_err(ApiError::internal)?;
            if !head.is_empty() {
                drain(&mut reader).await;
                return Err(ApiError::Conflict("upload is complete".into()));
            }
            let mut r = StatusCode::NO_CONTENT.into_response();
            offsets(&mut r, &upload, upload.length);
            return Ok(tus_headers(r));
        }
        Err(e) => return Err(refuse_body(body, e).await),
    };
    let remaining = (upload.length - offset) as u64;
    let mut reader = body_reader(body, true).take(remaining + 1);
    let head = peek(&mut reader).await.map_err(ApiError::internal)?;
    if head.is_empty() {
        let mut r = StatusCode::NO_CONTENT.into_response();
        offsets(&mut r, &upload, offset);
        return Ok(tus_headers(r));
    }
    if offset == 0 && !looks_like_video(&head) {
        drain(&mut reader).await;
        return Err(ApiError::Unsupported(
            "the upload does not start like a video container (MP4, MOV, MKV/WebM, TS, AVI, FLV, Ogg, ASF)".into(),
        ));
    }
    let mut body = Hashing::new(std::io::Cursor::new(head).chain(reader), expected);
    let key = Service::part_key(&id, offset).map_err(ApiError::internal)?;
    let part = stage_part(
        &svc.vault,
        &*svc.store,
        &svc.tmp_dir,
        &upload.subject_hash,
        &key,
        offset,
        &mut body,
    )
    .await
    .map_err(ApiError::internal)?;
    crate::failpoint::hit("after-stage-part");
    let refusal = if part.len as u64 > remaining {
        Some(ApiError::TooLarge(format!(
            "body goes past Upload-Length {}",
            upload.length
        )))
    } else if body.expected.take().is_some_and(|e| !e.matches()) {
        Some(ApiError::ChecksumMismatch)
    } else {
        None
    };
    if let Some(refusal) = refusal {
        discard_parts(&svc.vault, &*svc.store, &[part])
            .await
            .map_err(ApiError::internal)?;
        return Err(refusal);
    }
    let source = upload_source(&id)?;
    let video = new_video(svc, &id, &upload, &source);
    let added = svc.catalog().add_upload_part(&id, &part, &video).await;
    if !matches!(added, Ok(PartAdded::Received(_) | PartAdded::Completed)) {
        // Not recorded: this request's part goes (it has a key of its own).
        discard_parts(&svc.vault, &*svc.store, &[part])
            .await
            .map_err(ApiError::internal)?;
        added?;
        return Err(ApiError::Conflict(
            "another request changed the upload's offset".into(),
        ));
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    let received = match added? {
        PartAdded::Received(n) => n,
        _ => {
            tracing::info!(upload = %id, "upload complete");
            crate::failpoint::hit("before-publish");
            svc.announce(&id).await;
            r.headers_mut().insert(
                "vcw-video",
                HeaderValue::from_str(&format!("/v1/videos/{id}")).map_err(ApiError::internal)?,
            );
            upload.length
        }
    };
    offsets(&mut r, &upload, received);
    expires_if_receiving(&mut r, svc, &upload, received);
    Ok(tus_headers(r))
}

/// The job source of an upload's video (video id = upload id), as stored.
fn upload_source(id: &str) -> Result<String, ApiError> {
    serde_json::to_string(&JobSource::Upload {
        upload_id: id.to_string(),
    })
    .map_err(ApiError::internal)
}

/// The video row for an upload's (or a job's) source.
pub(super) fn new_video<'a>(
    svc: &Service,
    id: &'a str,
    upload: &'a UploadRow,
    source: &'a str,
) -> NewVideo<'a> {
    NewVideo {
        id,
        subject_hash: &upload.subject_hash,
        owner: &upload.owner,
        source,
        max_attempts: svc.config.server.max_attempts,
        callback_url: upload.callback_url.as_deref(),
    }
}

pub async fn terminate(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_tus(&headers)?;
    let svc = &app.svc;
    let upload = owned_upload(&app, &caller, &id).await?;
    let from = [UploadState::Receiving];
    let closed = close_upload(svc, &id, &from, UploadState::Terminated)
        .await
        .map_err(ApiError::internal)?;
    if closed.is_none() {
        return Err(ApiError::Conflict(format!(
            "upload is {}: it can no longer be terminated",
            upload.state.as_str()
        )));
    }
    Ok(tus_headers(StatusCode::NO_CONTENT.into_response()))
}

/// What a PUT's headers ask for, checked before its body is read.
struct PutTarget {
    /// The video id, normalised.
    id: String,
    subject_hash: String,
    callback_url: Option<String>,
}

async fn put_target(
    app: &App,
    caller: &Caller,
    id: &str,
    headers: &HeaderMap,
) -> Result<PutTarget, ApiError> {
    let svc = &app.svc;
    let id = crate::domain::parse_id(id)
        .map(|b| crate::domain::id_hex(&b))
        .ok_or_else(|| ApiError::BadRequest("video id must be 32 hex digits (a UUID)".into()))?;
    if header_str(headers, "vcw-subject").is_some() {
        return Err(ApiError::BadRequest(SUBJECT_FROM_TOKEN.into()));
    }
    let subject_hash = consenting_subject(app, caller, headers).await?;
    let callback_url = header_str(headers, "vcw-callback-url").map(str::to_string);
    check_callback(svc, callback_url.as_deref())?;
    let limit = svc.config.limits.max_file_size;
    if let Some(n) = header_str(headers, "content-length").and_then(|v| v.parse::<u64>().ok())
        && n > limit
    {
        return Err(ApiError::TooLarge(format!(
            "body of {n} bytes is over the limit of {limit} bytes"
        )));
    }
    check_capacity(svc).await?;
    Ok(PutTarget {
        id,
        subject_hash,
        callback_url,
    })
}

/// `PUT /v1/videos/{id}`: the whole video in one body; the subject comes from the
/// `Vcw-Consent` token.
pub async fn put_video(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let svc = &app.svc;
    let PutTarget {
        id,
        subject_hash,
        callback_url,
    } = match put_target(&app, &caller, &id, &headers).await {
        Ok(target) => target,
        Err(e) => return Err(refuse_body(body, e).await),
    };
    let limit = svc.config.limits.max_file_size;
    let mut reader = body_reader(body, false).take(limit + 1);
    let head = peek(&mut reader)
        .await
        .map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
    if !looks_like_video(&head) {
        drain(&mut reader).await;
        return Err(ApiError::Unsupported(
            "the body does not start like a video container".into(),
        ));
    }
    let upload = UploadRow {
        id: id.clone(),
        subject_hash,
        owner: caller.id.clone(),
        length: 0,
        received: 0,
        filename: None,
        callback_url,
        state: UploadState::Receiving,
        created_at_ms: None,
    };
    // The row first: of concurrent PUTs with one id exactly one gets it, and nothing is
    // staged for the others.
    let catalog = svc.catalog();
    // No budget: a PUT reserves nothing beyond its own request.
    if catalog.insert_upload(&upload, u64::MAX).await? != NewUpload::Created {
        drain(&mut reader).await;
        return Err(ApiError::Conflict(format!("video {id} exists")));
    }
    let staged = stage_part(
        &svc.vault,
        &*svc.store,
        &svc.tmp_dir,
        &upload.subject_hash,
        &Service::part_key(&id, 0).map_err(ApiError::internal)?,
        0,
        std::io::Cursor::new(head).chain(reader),
    )
    .await;
    let part = match staged {
        Ok(part) if part.len as u64 <= limit => part,
        other => {
            // The id is free again; a part that was stored goes.
            if let Ok(part) = &other {
                discard_parts(&svc.vault, &*svc.store, std::slice::from_ref(part))
                    .await
                    .map_err(ApiError::internal)?;
            }
            catalog.drop_empty_upload(&id).await?;
            return Err(match other {
                Ok(_) => ApiError::TooLarge(format!("body is over the limit of {limit} bytes")),
                // Our temporary file, our store, or the body: nothing to tell the client
                // about (the details, a path among them, go to the log).
                Err(e) => ApiError::internal(e),
            });
        }
    };
    crate::failpoint::hit("after-stage-part");
    let source = upload_source(&id)?;
    let video = new_video(svc, &id, &upload, &source);
    if !catalog.complete_put(&part, &video).await? {
        discard_parts(&svc.vault, &*svc.store, std::slice::from_ref(&part))
            .await
            .map_err(ApiError::internal)?;
        return Err(ApiError::Conflict(format!("video {id} exists")));
    }
    crate::failpoint::hit("before-publish");
    svc.announce(&id).await;
    tracing::info!(video = %id, bytes = part.len, owner = %caller.id, "video received");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/videos/{id}"))],
        axum::Json(serde_json::json!({ "id": id, "state": "queued", "bytes": part.len })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tus_metadata_is_decoded() {
        let mut h = HeaderMap::new();
        h.insert(
            "upload-metadata",
            HeaderValue::from_static("subject dXNlci00Mg==, filename YS5tcDQ=,flag"),
        );
        let m = metadata(&h).unwrap();
        assert_eq!(
            m,
            vec![
                ("subject".into(), "user-42".into()),
                ("filename".into(), "a.mp4".into()),
                ("flag".into(), String::new())
            ]
        );
        h.insert("upload-metadata", HeaderValue::from_static("subject !!!"));
        assert!(metadata(&h).is_err());
    }

    proptest::proptest! {
        /// Any Upload-Metadata header decodes or is refused (400), never panics.
        #[test]
        fn any_metadata_header_is_safe(value in "[ -~]{0,200}") {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert("upload-metadata", v);
                if let Err(e) = metadata(&h) {
                    proptest::prop_assert!(matches!(e, ApiError::BadRequest(_)));
                }
            }
        }

        /// What a tus client encodes comes back: keys and any UTF-8 values.
        #[test]
        fn encoded_metadata_round_trips(pairs in proptest::collection::vec(("[a-z_]{1,12}", "\\PC{0,30}"), 0..6)) {
            let b64 = base64::engine::general_purpose::STANDARD;
            let header = pairs
                .iter()
                .map(|(k, v)| format!("{k} {}", b64.encode(v)))
                .collect::<Vec<_>>()
                .join(",");
            let mut h = HeaderMap::new();
            h.insert("upload-metadata", HeaderValue::from_str(&header).unwrap());
            let decoded = metadata(&h).unwrap();
            let expected: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            proptest::prop_assert_eq!(decoded, expected);
        }
    }
}
