//! Jobs by reference, results, playback of verified segments, cancellation and erasure.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::App;
use super::caller::Caller;
use super::consent::{consenting_subject, require_live};
use super::error::ApiError;
use super::uploads::{check_callback, check_capacity, new_video};
use crate::cache::SegmentCache;
use crate::catalog::{Retry, UploadRow, VideoRow};
use crate::domain::JobSource;
use crate::domain::UploadState;
use crate::domain::audit::Entry;
use crate::domain::{Manifest, StoredObject};
use crate::service::Service;
use crate::storage::StoredSource;

/// `POST /v1/jobs` body (docs/api.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Idempotency key and video id (32 hex digits); default: the upload id, or random.
    pub id: Option<String>,
    pub source: JobSource,
    pub callback_url: Option<String>,
}

fn video_json(v: &VideoRow) -> Value {
    let report: Option<Value> = v
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok());
    let base = format!("/v1/videos/{}", v.id);
    // A failed job may still have stored what it was given (its original, after the HLS
    // rendition failed its check): whatever a manifest records can be fetched.
    let playable = v.manifest.is_some() && v.erased_at.is_none();
    let manifest: Option<Manifest> = v
        .manifest
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok());
    let hls = manifest.as_ref().is_some_and(|m| m.playlist.is_some());
    let original = manifest.as_ref().is_some_and(|m| m.original.is_some());
    json!({
        "id": v.id,
        "state": v.state,
        "progress": (v.progress * 1000.0).round() / 1000.0,
        "attempts": v.attempts,
        "verdict": v.verdict,
        "escalate": report.as_ref().and_then(|r| r.get("escalate")).cloned(),
        "reasons": report.as_ref().and_then(|r| r.get("reasons")).cloned(),
        "report": report,
        "error": v.error,
        "cancel_requested": v.cancel_requested,
        "created_at_ms": v.created_at,
        "updated_at_ms": v.updated_at,
        "erased": v.erased_at.is_some(),
        // What is stored: an HLS rendition, the sealed original (when HLS cannot carry
        // the upload's codecs), and why there is no HLS rendition.
        "renditions": manifest.as_ref().map(|m| json!({
            "hls": hls,
            "original": original,
            "not_streamable": m.not_streamable,
            "original_because": m.original_because,
            "transcoded": m.transcoded,
        })),
        "links": {
            "self": base,
            "playlist": (playable && hls).then(|| format!("{base}/playlist.m3u8")),
            "original": (playable && original).then(|| format!("{base}/original")),
        },
    })
}

async fn visible_video(app: &App, caller: &Caller, id: &str) -> Result<VideoRow, ApiError> {
    app.svc
        .catalog()
        .video(id)
        .await?
        .filter(|v| caller.may_access(&v.owner))
        .ok_or(ApiError::NotFound("video"))
}

pub async fn submit(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(req): Json<JobRequest>,
) -> Result<Response, ApiError> {
    let svc = &app.svc;
    // Who and what first (404, 401/403), then whether the request is acceptable (400).
    let (id, upload) = match &req.source {
        JobSource::Upload { upload_id } => {
            let upload = svc
                .catalog()
                .upload(upload_id)
                .await?
                .filter(|u| caller.may_access(&u.owner))
                .ok_or(ApiError::NotFound("upload"))?;

            if req.id.as_ref().is_some_and(|i| i != upload_id) {
                return Err(ApiError::BadRequest(
                    "an upload's video id is the upload id".into(),
                ));
            }
            if upload.state != UploadState::Complete {
                return Err(ApiError::Conflict(format!(
                    "upload is {} ({} of {} bytes)",
                    upload.state.as_str(),
                    upload.received,
                    upload.length
                )));
            }
            let upload = UploadRow {
                callback_url: req.callback_url.clone().or(upload.callback_url),
                ..upload
            };
            (upload_id.clone(), upload)
        }
        JobSource::S3 { url } => {
            let subject_hash = consenting_subject(&app, &caller, &headers).await?;
            let server = &svc.config.server;
            crate::domain::check_s3_source(url, &server.s3_sources, server.store.as_deref())
                .map_err(|why| ApiError::BadRequest(format!("source.s3.url: {why}")))?;
            let id = match &req.id {
                Some(i) => crate::domain::parse_id(i)
                    .map(|b| crate::domain::id_hex(&b))
                    .ok_or_else(|| ApiError::BadRequest("id must be 32 hex digits".into()))?,
                None => crate::domain::id_hex(
                    &*crate::crypto::random::<16>().map_err(ApiError::internal)?,
                ),
            };
            let upload = UploadRow {
                id: id.clone(),
                subject_hash,
                owner: caller.id.clone(),
                length: 0,
                received: 0,
                filename: None,
                callback_url: req.callback_url.clone(),
                state: UploadState::Receiving,
                created_at_ms: None,
            };
            (id, upload)
        }
    };
    check_callback(svc, req.callback_url.as_deref())?;
    if let Some(existing) = svc.catalog().video(&id).await? {
        if !caller.may_access(&existing.owner) {
            return Err(ApiError::Conflict(format!("video {id} exists")));
        }
        return Ok((StatusCode::OK, Json(video_json(&existing))).into_response());
    }
    check_capacity(svc).await?;
    let source = serde_json::to_string(&req.source).map_err(ApiError::internal)?;
    if svc
        .catalog()
        .insert_video(&new_video(svc, &id, &upload, &source), true)
        .await?
    {
        svc.announce(&id).await;
    }
    let video = svc
        .catalog()
        .video(&id)
        .await?
        .ok_or(ApiError::NotFound("video"))?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/videos/{id}"))],
        Json(video_json(&video)),
    )
        .into_response())
}

/// `POST /v1/videos/{id}/retry` (admin): a dead or failed job runs again, with
/// `server.max_attempts` more attempts; 409 saying why when it cannot.
pub async fn retry(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let svc = &app.svc;
    let attempts = svc.config.server.max_attempts;
    match svc.catalog().retry_job(&id, attempts, &caller.id).await? {
        Retry::Queued { round } => {
            let event = crate::domain::OutboxEvent::publish(&id, round);
            crate::dispatcher::publish_now(svc.catalog(), &*svc.queue, &event).await;
            Ok(Json(serde_json::json!({ "id": id, "state": "queued" })).into_response())
        }
        Retry::Missing => Err(ApiError::NotFound("video")),
        Retry::Refused(why) => Err(ApiError::Conflict(why.into())),
    }
}

/// Filters and cursor of `GET /v1/videos`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    verdict: Option<String>,
    /// Only videos escalated (probable minor with explicit content).
    #[serde(default)]
    escalated: bool,
    /// `next` of the previous page.
    before: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/videos`: videos newest first, filtered by state and verdict, 50 a page (at
/// most 500); an uploader sees only its own.
pub async fn list(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(crate::domain::JobState::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "state {s:?}: one of queued, running, done, failed, dead, cancelled"
            ))
        })?),
    };
    if let Some(v) = q.verdict.as_deref()
        && !["allow", "review", "restrict", "block"].contains(&v)
    {
        return Err(ApiError::BadRequest(format!(
            "verdict {v:?}: one of allow, review, restrict, block"
        )));
    }
    let before = match q.before.as_deref() {
        None => None,
        Some(c) => {
            let parsed = c
                .split_once('.')
                .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id)));
            Some(parsed.ok_or_else(|| {
                ApiError::BadRequest("before: the `next` of a previous page".into())
            })?)
        }
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let owner = (caller.role == crate::api::Role::Uploader).then_some(caller.id.as_str());
    let rows = app
        .svc
        .catalog()
        .list_videos(
            &crate::catalog::VideoFilter {
                state,
                verdict: q.verdict.as_deref(),
                owner,
                escalated: q.escalated,
            },
            before,
            limit,
        )
        .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|v| format!("{}.{}", v.created_at, v.id)))
        .flatten();
    let items: Vec<Value> = rows
        .iter()
        .map(|v| {
            let report: Option<Value> = v
                .report
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok());
            serde_json::json!({
                "id": v.id,
                "state": v.state,
                "progress": v.progress,
                "verdict": v.verdict,
                "escalate": report.as_ref().and_then(|r| r["escalate"].as_bool()),
                "reasons": report.as_ref().map(|r| r["reasons"].clone()),
                "attempts": v.attempts,
                "error": v.error,
                "created_at_ms": v.created_at,
                "updated_at_ms": v.updated_at,
                "erased": v.erased_at.is_some(),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "items": items, "next": next })))
}

pub async fn status(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let video = visible_video(&app, &caller, &id).await?;
    let mut doc = video_json(&video);
    // Webhook delivery record: event id, attempts so far, delivered or not, last status.
    let webhooks = app.svc.catalog().deliveries(&id).await?;
    doc["webhooks"] = serde_json::to_value(webhooks).map_err(ApiError::internal)?;
    Ok(Json(doc))
}

pub async fn cancel(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    visible_video(&app, &caller, &id).await?;
    let state = app.svc.catalog().request_cancel(&id, &caller.id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "state": state })),
    )
        .into_response())
}

/// Crypto-shreds and deletes everything stored for the video: segments, playlist,
/// manifest (of every attempt), and a staged upload not yet consumed. A running job is
/// stopped first. The row stays, marked erased.
pub async fn erase(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let svc = &app.svc;
    visible_video(&app, &caller, &id).await?;
    let wait = std::time::Duration::from_secs_f64(svc.config.server.lease_seconds + 5.0);
    let erasure = crate::jobs::cleanup::erase_video(svc, &id, &caller.id, wait).await?;
    tracing::info!(video = %id, by = %caller.id, shredded = erasure.objects_shredded, "video erased");
    Ok(Json(json!({
        "id": id,
        "erased": true,
        "objects_shredded": erasure.objects_shredded,
        "objects_deleted": erasure.objects_deleted,
    })))
}

/// The manifest of a video that may be played, or why not. The access is recorded in the
/// audit trail first: one that cannot be recorded is refused.
async fn playable(app: &App, caller: &Caller, id: &str, what: &str) -> Result<Playable, ApiError> {
    readable(app, caller, id, what, false).await
}

/// [`playable`], and with `blocked_ok` also for a `block` verdict: a reviewer deciding on
/// a blocked video sees its evidence frames, never its playback.
async fn readable(
    app: &App,
    caller: &Caller,
    id: &str,
    what: &str,
    blocked_ok: bool,
) -> Result<Playable, ApiError> {
    let video = visible_video(app, caller, id).await?;
    if video.erased_at.is_some() {
        return Err(ApiError::Gone);
    }
    let consent_until = require_live(app, &video.subject_hash).await?;
    let Some(manifest) = video.manifest.as_deref() else {
        return Err(ApiError::Conflict(format!(
            "video is {}: nothing to play",
            video.state.as_str()
        )));
    };
    if video.verdict.as_deref() == Some("block") && !blocked_ok {
        return Err(ApiError::Blocked);
    }
    let manifest = serde_json::from_str(manifest).map_err(ApiError::internal)?;
    let entry = Entry {
        actor: caller.id.clone(),
        action: format!("video.read.{what}"),
        object: id.to_string(),
        result: "ok".into(),
        subject: Some(video.subject_hash.clone()),
        request_id: None,
    };
    app.svc.catalog().audit(entry).await?;
    Ok(Playable {
        manifest,
        cache_scope: CacheScope {
            subject_hash: video.subject_hash,
            consent_until,
        },
    })
}

/// What may be played, and for whom it may be cached.
struct Playable {
    manifest: Manifest,
    cache_scope: CacheScope,
}

/// The subject whose decrypted segments may be cached, and until when (its consent).
struct CacheScope {
    subject_hash: String,
    consent_until: i64,
}

/// Objects up to this size are cached decrypted (segments and init segments; an
/// original is streamed).
const CACHEABLE: i64 = 16 << 20;

/// Verifies and decrypts `len` bytes at `start` of a stored object.
async fn open_object(
    svc: &Service,
    object: &StoredObject,
    start: u64,
    len: u64,
) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(len as usize);
    copy_object(svc, object, start, len, &mut out).await?;
    Ok(out)
}

/// Verifies and decrypts `len` (> 0) bytes at `start` of a stored object into `out`, as
/// they are read: nothing unverified is written.
pub(super) async fn copy_object(
    svc: &Service,
    object: &StoredObject,
    start: u64,
    len: u64,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<(), ApiError> {
    let source = StoredSource::new(&*svc.store, &object.key)
        .await
        .map_err(ApiError::internal)?;
    let expected = crate::domain::parse_id(&object.object_id)
        .ok_or_else(|| ApiError::internal("manifest with a malformed object id"))?;
    svc.vault
        .open_range(&source, Some(&expected), start, start + len - 1, out)
        .await
        .map_err(|e| match e {
            // Crypto-shredded (`vcw keys shred`): gone for good, like an erased video.
            crate::vault::VaultError::Shredded(_) => ApiError::Gone,
            e => ApiError::internal(e),
        })?;
    Ok(())
}

pub async fn playlist(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let manifest = playable(&app, &caller, &id, "playlist").await?.manifest;
    let object = manifest.playlist.as_ref().ok_or_else(|| {
        let why = (manifest.not_streamable.as_deref())
            .or(manifest.failed_check.as_deref())
            .unwrap_or("no HLS rendition");
        ApiError::Conflict(format!(
            "{why}: the original is at /v1/videos/{id}/original"
        ))
    })?;
    let bytes = open_object(&app.svc, object, 0, object.plaintext_len as u64).await?;
    let text = String::from_utf8(bytes).map_err(ApiError::internal)?;
    // Stored playlists name files (init.mp4, seg-00003.m4s, or seg-00003.ts from earlier
    // versions); served ones point at the API.
    let text: String = text.lines().map(|line| served_line(line) + "\n").collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        text,
    )
        .into_response())
}

/// One line of a stored playlist as served: file names become API paths.
fn served_line(line: &str) -> String {
    // Players such as FFmpeg's HLS demuxer want a media extension on segment URIs.
    if line == "#EXT-X-MAP:URI=\"init.mp4\"" {
        return "#EXT-X-MAP:URI=\"segments/init.mp4\"".into();
    }
    let segment = line.strip_prefix("seg-").and_then(|rest| {
        let (n, ext) = rest.split_once('.')?;
        Some((n.parse::<usize>().ok()?, ext))
    });
    match segment {
        Some((n, ext @ ("m4s" | "ts"))) => format!("segments/{n}.{ext}"),
        _ => line.to_string(),
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against a length: (start, len).
fn parse_range(value: &str, total: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || total == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (total.saturating_sub(n), total - 1)
        }
        (a, "") => (a.parse().ok()?, total - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(total - 1)),
    };
    (start <= end && start < total).then(|| (start, end - start + 1))
}

pub async fn segment(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path((id, n)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Playable {
        manifest,
        cache_scope,
    } = playable(&app, &caller, &id, "segment").await?;
    // `init.mp4`: the fMP4 init segment; `N.m4s` (or `N.ts`, or a bare `N`): a media
    // segment.
    let name = n.rsplit_once('.').map_or(n.as_str(), |(stem, _)| stem);
    let object = match name {
        "init" => manifest.init.as_ref(),
        n => {
            let index: usize = n.parse().map_err(|_| ApiError::NotFound("segment"))?;
            let seg = manifest.segments.iter().find(|s| s.index == index);
            seg.map(|s| &s.object)
        }
    }
    .ok_or(ApiError::NotFound("segment"))?;
    let kind = match manifest.segment_format.as_str() {
        "mpegts" => "video/mp2t",
        _ => "video/mp4",
    };
    serve_object(&app.svc, object, &headers, kind, Some(&cache_scope)).await
}

/// `GET /v1/videos/{id}/evidence?t=SECONDS[&clear=true]` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceQuery {
    t: f64,
    #[serde(default)]
    clear: bool,
}

/// Evidence thumbnails are this wide at most.
const EVIDENCE_WIDTH: u32 = 320;

/// The frame at `t` as a small JPEG for the review lane: blurred past recognition unless
/// `clear=true`, a deliberate choice recorded in the audit trail as
/// `video.read.evidence.unblurred` (a blurred look is recorded as `video.read.evidence`).
/// Decoded from the stored HLS rendition in memory; nothing is written.
pub async fn evidence(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<EvidenceQuery>,
) -> Result<Response, ApiError> {
    if !q.t.is_finite() || q.t < 0.0 {
        return Err(ApiError::BadRequest(
            "t must be seconds from the start, >= 0".into(),
        ));
    }
    let what = if q.clear {
        "evidence.unblurred"
    } else {
        "evidence"
    };
    let manifest = readable(&app, &caller, &id, what, true).await?.manifest;
    let (Some(init), Some(first)) = (&manifest.init, manifest.segments.first()) else {
        return Err(ApiError::Conflict(
            "the video has no HLS rendition to take a frame from".into(),
        ));
    };
    let segment = manifest
        .segments
        .iter()
        .rev()
        .find(|s| s.start <= q.t)
        .unwrap_or(first);
    let mut bytes = open_object(&app.svc, init, 0, init.plaintext_len as u64).await?;
    let len = segment.object.plaintext_len as u64;
    bytes.extend(open_object(&app.svc, &segment.object, 0, len).await?);
    let limits = app.svc.config.limits.clone();
    let (t, clear) = (q.t, q.clear);
    let jpeg = tokio::task::spawn_blocking(move || thumbnail(bytes, t, clear, &limits))
        .await
        .map_err(ApiError::internal)??;
    let mut r = Body::from(jpeg).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    Ok(r)
}

/// Decodes the frame at `t` from an fMP4 init + media segment and encodes it as JPEG,
/// blurred (shrunk to a few pixels and smoothed back up) unless `clear`.
fn thumbnail(
    fmp4: Vec<u8>,
    t: f64,
    clear: bool,
    limits: &crate::config::Limits,
) -> Result<Vec<u8>, ApiError> {
    let len = fmp4.len() as u64;
    let fmp4 = Arc::new(zeroize::Zeroizing::new(fmp4));
    let source = crate::media::MediaSource::reader(
        "evidence",
        len,
        Arc::new(move || {
            let reader = std::io::Cursor::new(fmp4.to_vec());
            Ok(Box::new(reader) as Box<dyn crate::media::ReadSeek>)
        }),
    );
    let still =
        crate::media::still(&source, t, EVIDENCE_WIDTH, limits).map_err(ApiError::internal)?;
    let mut image = image::RgbImage::from_raw(still.width, still.height, still.rgb)
        .ok_or_else(|| ApiError::internal("a still of the wrong size"))?;
    if !clear {
        use image::imageops::{FilterType, resize};
        let (w, h) = image.dimensions();
        let small = resize(&image, 8, (8 * h / w).max(1), FilterType::Triangle);
        image = resize(&small, w, h, FilterType::CatmullRom);
    }
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode_image(&image)
        .map_err(ApiError::internal)?;
    Ok(jpeg)
}

/// The upload itself, sealed, kept when HLS cannot carry its codecs; the same rules as
/// playback (410 erased, 451 blocked), HTTP Range supported.
pub async fn original(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let manifest = playable(&app, &caller, &id, "original").await?.manifest;
    let object = manifest
        .original
        .as_ref()
        .ok_or(ApiError::NotFound("original (the video is stored as HLS)"))?;
    serve_object(&app.svc, object, &headers, "application/octet-stream", None).await
}

/// Answers a GET of a stored object, whole or by `Range`, verified and decrypted. The
/// first window is opened before answering, so a wrong or tampered object is a clean
/// error; the rest streams as the client reads, so memory stays flat whatever the size
/// (a chunk that fails verification later ends the body early: nothing unverified is
/// ever sent).
async fn serve_object(
    svc: &Arc<Service>,
    object: &StoredObject,
    headers: &HeaderMap,
    kind: &'static str,
    cache_scope: Option<&CacheScope>,
) -> Result<Response, ApiError> {
    let total = object.plaintext_len as u64;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, len) = match range {
        None => (StatusCode::OK, 0, total),
        Some(r) => {
            let (start, len) =
                parse_range(r, total).ok_or(ApiError::RangeNotSatisfiable { len: total })?;
            (StatusCode::PARTIAL_CONTENT, start, len)
        }
    };
    const FIRST: u64 = 1 << 16;
    if let (Some(cache), Some(scope)) = (&svc.cache, cache_scope)
        && object.plaintext_len <= CACHEABLE
        && len > 0
    {
        let plain = cached_plaintext(svc, cache, scope, object).await?;
        let body = Body::from(plain[start as usize..(start + len) as usize].to_vec());
        return object_response(status, body, kind, start, len, total);
    }
    let head = if len == 0 {
        Vec::new()
    } else {
        open_object(svc, object, start, len.min(FIRST)).await?
    };
    let body = if len <= FIRST {
        Body::from(head)
    } else {
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let (svc, object) = (svc.clone(), object.clone());
        tokio::spawn(async move {
            let rest = async {
                tx.write_all(&head).await.map_err(ApiError::internal)?;
                copy_object(&svc, &object, start + FIRST, len - FIRST, &mut tx).await
            };
            if let Err(e) = rest.await {
                tracing::warn!(object = %object.key, "streaming a stored object stopped: {e:?}");
            }
        });
        Body::from_stream(tokio_util::io::ReaderStream::new(rx))
    };
    object_response(status, body, kind, start, len, total)
}

/// The whole object, decrypted: from the cache, or opened and cached.
async fn cached_plaintext(
    svc: &Service,
    cache: &SegmentCache,
    scope: &CacheScope,
    object: &StoredObject,
) -> Result<crate::cache::Plain, ApiError> {
    let id = crate::domain::parse_id(&object.object_id)
        .ok_or_else(|| ApiError::internal("manifest with a malformed object id"))?;
    let subject = &scope.subject_hash;
    if let Some(plain) = cache.get(subject, &id) {
        return Ok(plain);
    }
    let generation = cache.generation(subject);
    let len = object.plaintext_len as u64;
    let plain = Arc::new(zeroize::Zeroizing::new(
        open_object(svc, object, 0, len).await?,
    ));
    cache.insert(subject, &id, plain.clone(), generation, scope.consent_until);
    Ok(plain)
}

/// The answer for (a range of) a stored object.
fn object_response(
    status: StatusCode,
    body: Body,
    kind: &'static str,
    start: u64,
    len: u64,
    total: u64,
) -> Result<Response, ApiError> {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from_str(&len.to_string()).map_err(ApiError::internal)?,
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        let v = format!("bytes {start}-{}/{total}", start + len - 1);
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&v).map_err(ApiError::internal)?,
        );
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::{parse_range, served_line};

    #[test]
    fn served_playlists_point_at_the_api() {
        assert_eq!(
            served_line("#EXT-X-MAP:URI=\"init.mp4\""),
            "#EXT-X-MAP:URI=\"segments/init.mp4\""
        );
        assert_eq!(served_line("seg-00003.m4s"), "segments/3.m4s");
        assert_eq!(served_line("seg-00012.ts"), "segments/12.ts");
        assert_eq!(served_line("seg-00012.exe"), "seg-00012.exe");
        assert_eq!(served_line("#EXTINF:4.000,"), "#EXTINF:4.000,");
        assert_eq!(served_line("seg-x.m4s"), "seg-x.m4s");
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 100)));
        assert_eq!(parse_range("bytes=900-", 1000), Some((900, 100)));
        assert_eq!(parse_range("bytes=-10", 1000), Some((990, 10)));
        assert_eq!(parse_range("bytes=990-5000", 1000), Some((990, 10)));
        assert_eq!(parse_range("bytes=1000-", 1000), None);
        assert_eq!(parse_range("bytes=5-1", 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
    }

    proptest::proptest! {
        /// Any header value: no panic, and a range it grants lies inside the object.
        #[test]
        fn any_range_header_is_safe(value in "\\PC{0,40}", total in 0u64..1 << 40) {
            if let Some((start, len)) = parse_range(&value, total) {
                proptest::prop_assert!(len >= 1 && start.checked_add(len).is_some_and(|e| e <= total));
            }
        }

        /// A well-formed `bytes=a-b` inside the object is granted exactly.
        #[test]
        fn well_formed_ranges_are_granted(total in 1u64..1 << 40, a in 0u64..1 << 40, n in 0u64..1 << 20) {
            let start = a % total;
            let end = (start + n).min(total - 1);
            let header = format!("bytes={start}-{end}");
            proptest::prop_assert_eq!(parse_range(&header, total), Some((start, end - start + 1)));
        }
    }
}
