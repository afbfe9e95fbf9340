//! Data portability: `GET /v1/subjects/{subject}/export` streams a tar archive of the
//! subject's own videos, decrypted, with everything held about them (`subject.json`, the
//! same document as data-subject access, and `audit.jsonl`, every audit record about
//! them, where `subject.json` has only the first page). Each video's HLS files keep their
//! stored names, so `videos/<id>/playlist.m3u8` plays as it is; an original kept because
//! HLS could not carry the upload is `videos/<id>/original`. Media of a video whose verdict is `block`
//! is withheld (it may be illegal to hand out) and listed as such.
//!
//! The archive streams with memory flat whatever its size: each object is verified and
//! decrypted as the client reads, and `Content-Length` is exact, so a client can tell an
//! archive cut short (an object that fails verification ends the body) from a whole one.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::App;
use super::caller::Caller;
use super::consent::{AUDIT_PAGE, subject_for, subject_report};
use super::error::ApiError;
use super::videos::copy_object;
use crate::catalog::Catalog;
use crate::domain::audit::Entry;
use crate::domain::{Manifest, StoredObject};
use crate::service::Service;

const BLOCK: u64 = 512;

/// One file of the archive: its name and where its bytes come from.
enum Content {
    Bytes(Vec<u8>),
    Object(StoredObject),
    /// The subject's audit records up to sequence number `through`, one JSON object a
    /// line, read page by page twice: once to measure, once to send. Records are never
    /// changed once written, so both reads give the same bytes unless an erasure redacts
    /// them in between; then the archive ends short of its `Content-Length`.
    Audit {
        subject_hash: String,
        through: i64,
        len: u64,
    },
}

struct File {
    path: String,
    content: Content,
}

impl File {
    fn len(&self) -> u64 {
        match &self.content {
            Content::Bytes(b) => b.len() as u64,
            Content::Object(o) => o.plaintext_len as u64,
            Content::Audit { len, .. } => *len,
        }
    }
}

/// Bytes of padding after `len` bytes of content.
fn padding(len: u64) -> u64 {
    (BLOCK - len % BLOCK) % BLOCK
}

/// The stored files of one video, under `videos/<id>/`.
fn video_files(id: &str, manifest: Manifest) -> Vec<File> {
    let dir = format!("videos/{id}");
    let object = |name: String, o: StoredObject| File {
        path: format!("{dir}/{name}"),
        content: Content::Object(o),
    };
    let ext = if manifest.segment_format == "mpegts" {
        "ts"
    } else {
        "m4s"
    };
    let mut files = Vec::new();
    if let Some(p) = manifest.playlist {
        files.push(object("playlist.m3u8".into(), p));
        files.extend(manifest.init.map(|o| object("init.mp4".into(), o)));
        for s in manifest.segments {
            files.push(object(format!("seg-{:05}.{ext}", s.index), s.object));
        }
    }
    files.extend(manifest.original.map(|o| object("original".into(), o)));
    files
}

/// `GET /v1/subjects/{subject}/export`: the portability archive (privacy officer, or an
/// uploader with the subject's own consent token). Audited.
pub async fn export(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(subject): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let subject_hash = subject_for(&app, &caller, &subject, &headers)?;
    let mut files = Vec::new();
    let mut withheld = Vec::new();
    for video in app.svc.catalog().videos_of(&subject_hash).await? {
        let Some(manifest) = video
            .manifest
            .as_deref()
            .filter(|_| video.erased_at.is_none())
        else {
            continue;
        };
        if video.verdict.as_deref() == Some("block") {
            withheld.push(json!({ "id": video.id, "reason": "verdict block" }));
            continue;
        }
        let manifest: Manifest = serde_json::from_str(manifest).map_err(ApiError::internal)?;
        files.extend(video_files(&video.id, manifest));
    }
    let result = format!("{} video files", files.len());
    let entry = Entry::about_subject(&caller.id, "subject.export", &subject_hash, &result);
    let catalog = app.svc.catalog();
    catalog.audit(entry).await?;
    // Up to and with the record of this export.
    let (through, _) = catalog.audit_head().await?;
    let mut len = 0;
    let mut after = 0;
    while let Some((lines, last)) = audit_page(catalog, &subject_hash, after, through).await? {
        len += lines.len() as u64;
        after = last;
    }
    files.push(File {
        path: "audit.jsonl".into(),
        content: Content::Audit {
            subject_hash: subject_hash.clone(),
            through,
            len,
        },
    });
    let mut report = subject_report(&app, &subject_hash, 0).await?;
    let listed: Vec<_> = files.iter().map(|f| f.path.clone()).collect();
    report["archive"] = json!({ "files": listed, "withheld": withheld });
    let report = serde_json::to_vec_pretty(&report).map_err(ApiError::internal)?;
    files.insert(
        0,
        File {
            path: "subject.json".into(),
            content: Content::Bytes(report),
        },
    );

    let total: u64 = files
        .iter()
        .map(|f| BLOCK + f.len() + padding(f.len()))
        .sum::<u64>()
        + 2 * BLOCK;
    let (mut tx, rx) = tokio::io::duplex(1 << 16);
    let svc = app.svc.clone();
    tokio::spawn(async move {
        if let Err(e) = write_archive(&svc, files, &mut tx).await {
            tracing::warn!("a portability archive stopped early: {e:?}");
        }
    });
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(rx)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"subject-export.tar\""),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    Ok(response)
}

/// Writes the archive: per file a ustar header, the content, padding; then the two zero
/// blocks that end a tar.
async fn write_archive(
    svc: &Service,
    files: Vec<File>,
    out: &mut tokio::io::DuplexStream,
) -> Result<(), ApiError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for file in files {
        let len = file.len();
        let mut h = tar::Header::new_ustar();
        h.set_path(&file.path).map_err(ApiError::internal)?;
        h.set_size(len);
        h.set_mode(0o600);
        h.set_mtime(now);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        out.write_all(h.as_bytes())
            .await
            .map_err(ApiError::internal)?;
        match &file.content {
            Content::Bytes(b) => out.write_all(b).await.map_err(ApiError::internal)?,
            Content::Object(o) if len > 0 => copy_object(svc, o, 0, len, out).await?,
            Content::Object(_) => {}
            Content::Audit {
                subject_hash,
                through,
                len,
            } => {
                let (mut after, mut sent) = (0, 0u64);
                while let Some((lines, last)) =
                    audit_page(svc.catalog(), subject_hash, after, *through).await?
                {
                    sent += lines.len() as u64;
                    if sent > *len {
                        break;
                    }
                    out.write_all(&lines).await.map_err(ApiError::internal)?;
                    after = last;
                }
                if sent != *len {
                    return Err(ApiError::internal(
                        "the audit records changed while the archive was sent",
                    ));
                }
            }
        }
        let pad = vec![0u8; padding(len) as usize];
        out.write_all(&pad).await.map_err(ApiError::internal)?;
    }
    out.write_all(&[0u8; 2 * BLOCK as usize])
        .await
        .map_err(ApiError::internal)?;
    out.shutdown().await.map_err(ApiError::internal)
}

/// The next page of the subject's audit records after sequence number `after` and up to
/// `through`, as JSON lines, with the last sequence number in it; `None` past the end.
async fn audit_page(
    catalog: &Catalog,
    subject_hash: &str,
    after: i64,
    through: i64,
) -> Result<Option<(Vec<u8>, i64)>, ApiError> {
    let records = catalog
        .audit_records_about(subject_hash, after, AUDIT_PAGE)
        .await?;
    let mut lines = Vec::new();
    let mut last = None;
    for record in records.iter().take_while(|r| r.seq <= through) {
        serde_json::to_writer(&mut lines, record).map_err(ApiError::internal)?;
        lines.push(b'\n');
        last = Some(record.seq);
    }
    Ok(last.map(|last| (lines, last)))
}

#[cfg(test)]
mod tests {
    use super::padding;

    #[test]
    fn entries_are_padded_to_whole_blocks() {
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
        assert_eq!(padding(513), 511);
    }
}
