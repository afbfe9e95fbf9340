//! Where a job's video comes from, and what was stored for it: plain data, kept as JSON
//! in the catalog (the source) and sealed next to the segments (the manifest).

use serde::{Deserialize, Serialize};

/// Where a job's video comes from (stored as JSON in the catalog; also the `source` of
/// `POST /v1/jobs` and of queue-driven job messages).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum JobSource {
    /// A completed tus upload or PUT body, staged sealed.
    Upload { upload_id: String },
    /// An object in S3 (`s3://bucket/key`), read with the `[s3]` settings.
    S3 { url: String },
}

/// Whether vcw may read the S3 object `url` as a job's source: it must be a plain
/// `s3://BUCKET/KEY`, lie under one of `allowed` (`server.s3_sources`: `s3://bucket/` or
/// `s3://bucket/prefix/`; none by default, so S3 jobs are off until configured), and not
/// in vcw's own `store` (sealed objects and staging are never a source). Workers read
/// with the service's credentials, so without this an uploader could have any object
/// they can name read and judged. `Err` says why, for a 400 or a permanent job failure.
pub fn check_s3_source(url: &str, allowed: &[String], store: Option<&str>) -> Result<(), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or("source.s3.url must be s3://BUCKET/KEY")?;
    let (bucket, key) = rest
        .split_once('/')
        .ok_or("source.s3.url must be s3://BUCKET/KEY")?;
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !bucket_ok {
        return Err(format!("{bucket:?} is not an S3 bucket name"));
    }
    let key_ok = !key.is_empty()
        && key.len() <= 1024
        && !key.chars().any(char::is_control)
        && !key.split('/').any(|part| part == ".." || part == ".");
    if !key_ok {
        return Err(
            "the S3 key is empty, too long, or has control characters or dot segments".into(),
        );
    }
    let under = |prefix: &str| {
        let prefix = if prefix.ends_with('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/")
        };
        url.starts_with(&prefix)
    };
    if store.is_some_and(|s| s.starts_with("s3://") && under(s)) {
        return Err("vcw's own store is never a job source".into());
    }
    if allowed.is_empty() {
        return Err("S3 sources are not enabled on this server (server.s3_sources)".into());
    }
    if !allowed.iter().any(|a| under(a)) {
        return Err(format!(
            "{url} is not under an allowed source (server.s3_sources)"
        ));
    }
    Ok(())
}

/// One stored, sealed object.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct StoredObject {
    /// Key in the blob store.
    pub key: String,
    pub object_id: String,
    pub data_key_id: String,
    pub subject_key_version: i64,
    /// KEK version the subject key was wrapped under when this object was sealed.
    pub kek_version: u32,
    pub plaintext_len: i64,
    pub sealed_len: i64,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct StoredSegment {
    pub index: usize,
    pub start: f64,
    pub duration: f64,
    #[serde(flatten)]
    pub object: StoredObject,
}

/// What was stored for one video; itself stored sealed next to the segments.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Manifest {
    pub video_id: String,
    /// Keyed hash of the data subject (never the raw identifier).
    pub subject_hash: String,
    pub store: String,
    pub verdict: crate::policy::Action,
    pub escalate: bool,
    pub policy_version: String,
    /// `fmp4` (init segment + CMAF media segments), or `mpegts` for videos stored by
    /// earlier versions.
    pub segment_format: String,
    /// The fMP4 init segment (`ftyp` + `moov`); none for MPEG-TS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<StoredObject>,
    pub segments: Vec<StoredSegment>,
    /// The HLS playlist; none when HLS cannot carry the video (see `not_streamable`).
    pub playlist: Option<StoredObject>,
    /// The upload itself, sealed as one object: kept when HLS cannot carry all of it,
    /// so that nothing a user sent is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<StoredObject>,
    /// Why the original is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_because: Option<String>,
    /// Why there is no HLS rendition (the codec HLS cannot carry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_streamable: Option<String>,
    /// What the HLS rendition re-encoded, when `media.transcode` is on and the upload's
    /// codecs are not streamable (e.g. `vp8 → h264, vorbis → aac`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcoded: Option<String>,
    /// Set when the stored HLS rendition failed its read-back check: the rendition is
    /// gone, the original is kept, and the job ends `failed` with this error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_check: Option<String>,
    /// Where the sealed manifest itself is.
    pub manifest_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_sources_have_a_documented_json_form() {
        let s: JobSource = serde_json::from_str(r#"{"upload":{"upload_id":"ab"}}"#).unwrap();
        assert_eq!(
            s,
            JobSource::Upload {
                upload_id: "ab".into()
            }
        );
        let s: JobSource = serde_json::from_str(r#"{"s3":{"url":"s3://b/k"}}"#).unwrap();
        assert_eq!(
            s,
            JobSource::S3 {
                url: "s3://b/k".into()
            }
        );
        assert!(serde_json::from_str::<JobSource>(r#"{"file":{"path":"/etc/passwd"}}"#).is_err());
    }

    #[test]
    fn s3_sources_must_be_allowed_and_never_the_store() {
        let allowed = ["s3://uploads/".to_string(), "s3://media/in".to_string()];
        let store = Some("s3://media/vcw");
        let check = |url: &str| check_s3_source(url, &allowed, store);
        assert!(check("s3://uploads/a/b.mp4").is_ok());
        assert!(check("s3://media/in/clip.mp4").is_ok());
        assert!(
            check("s3://media/incoming/clip.mp4").is_err(),
            "prefix, not substring"
        );
        assert!(check("s3://media/vcw/videos/x/0.m4s.sealed").is_err());
        assert!(check("s3://other/clip.mp4").is_err());
        assert!(check("s3://uploads/").is_err(), "no key");
        assert!(check("s3://uploads/../secrets").is_err());
        assert!(check("s3://Uploads/a.mp4").is_err(), "not a bucket name");
        assert!(check("https://uploads/a.mp4").is_err());
        let mine = check_s3_source("s3://media/vcw/x.mp4", &["s3://media/".into()], store);
        assert!(mine.unwrap_err().contains("own store"));
        let off = check_s3_source("s3://uploads/a.mp4", &[], None).unwrap_err();
        assert!(off.contains("not enabled"), "{off}");
    }

    proptest::proptest! {
        /// Any URL: accepted only under an allowed prefix, never in the store, never with
        /// dot segments or control characters.
        #[test]
        fn s3_sources_stay_inside_the_allow_list(url in "s3://[a-z.-]{0,8}/?\\PC{0,30}") {
            let allowed = vec!["s3://in-bucket/uploads/".to_string()];
            if check_s3_source(&url, &allowed, Some("s3://in-bucket/uploads/vcw")).is_ok() {
                proptest::prop_assert!(url.starts_with("s3://in-bucket/uploads/"));
                proptest::prop_assert!(!url.starts_with("s3://in-bucket/uploads/vcw/"));
                proptest::prop_assert!(!url.split('/').any(|p| p == ".." || p == "."));
            }
        }
    }
}
