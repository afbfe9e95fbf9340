//! Runtime configuration: built-in defaults, then a TOML file, then `VCW__SECTION__KEY`
//! environment variables, then command-line flags; validated once into [`Config`].

use std::path::{Path, PathBuf};

use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// Where `make` puts the ONNX Runtime library and the models; the defaults point there so
/// a binary built from this checkout runs without any flag.
const REPO_DIR: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {detail}")]
    Parse { path: String, detail: String },
    #[error("environment variable {name}: {detail}")]
    Env { name: String, detail: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub sampler: SamplerConfig,
    pub limits: Limits,
    pub inference: InferenceConfig,
    pub vault: VaultConfig,
    /// S3 connection for `--store s3://...`.
    pub s3: crate::storage::S3Config,
    /// `vcw serve` / `vcw api` / `vcw worker`.
    pub server: ServerConfig,
    /// `vcw api` / `vcw worker`: the shared queue and catalog.
    pub cluster: ClusterConfig,
    /// Consent tokens: their issuers and the purpose they must grant (docs/consent.md).
    pub consent: ConsentConfig,
    /// The audit trail: checkpoints, retention, redaction (docs/audit.md).
    pub audit: AuditConfig,
    /// Policy file; the built-in policy (docs/policy.md) when absent.
    pub policy: Option<PathBuf>,
    /// Logging on stderr.
    pub log: LogConfig,
}

/// Logging: level and format (`--log-level` and `RUST_LOG` override the level).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn` (the default), `info`, `debug`, or a tracing filter such as
    /// `warn,vcw=info`.
    pub level: Option<String>,
    pub format: LogFormat,
}

/// `text` for people, `json` (one object per line, with the request or job span's ids)
/// for a log pipeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The audit trail (docs/audit.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// The deployment's Ed25519 key that signs checkpoints; default `audit-signing.pem`
    /// next to the keyring. `vcw serve` creates it; cluster processes only read it.
    pub signing_key: Option<PathBuf>,
    /// How often the reaper signs a checkpoint of the chain's head (when it moved).
    pub checkpoint_seconds: f64,
    /// Records older than this are pruned, up to a signed checkpoint that stays as the
    /// anchor of the rest. At least 180.
    pub retention_days: f64,
    /// Personal fields (actor, object, subject) of records older than this are replaced
    /// by their hashes; the chain still verifies. 0: never.
    pub redact_after_days: f64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            signing_key: None,
            checkpoint_seconds: 60.0,
            retention_days: 400.0,
            redact_after_days: 0.0,
        }
    }
}

impl AuditConfig {
    pub fn signing_key_path(&self, keyring: &Path) -> PathBuf {
        self.signing_key.clone().unwrap_or_else(|| {
            keyring
                .parent()
                .unwrap_or(Path::new("."))
                .join("audit-signing.pem")
        })
    }
}

/// Consent tokens (`Vcw-Consent`), required on every upload.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsentConfig {
    /// The purpose a token must grant for a video to be uploaded, scanned and played.
    pub purpose: String,
    /// Accept tokens minted by `vcw consent issue` with the local issuer key (created on
    /// first start); a production deployment sets this to false and lists its issuers.
    pub local_issuer: bool,
    /// The local issuer's Ed25519 key (PKCS#8 PEM); default `consent-issuer.pem` next to
    /// the keyring. `vcw serve` and `vcw consent issue` create it; cluster processes only
    /// read it (and go without a local issuer when it is absent).
    pub local_issuer_key: Option<PathBuf>,
    /// Public keys of the platform's consent service(s).
    pub issuers: Vec<IssuerKeyConfig>,
    /// A subject whose consent lapsed (and was not renewed) is erased this long after,
    /// unless under a legal hold.
    pub erase_after_lapse_days: f64,
}

impl Default for ConsentConfig {
    fn default() -> Self {
        Self {
            purpose: "moderation".into(),
            local_issuer: true,
            local_issuer_key: None,
            issuers: Vec::new(),
            erase_after_lapse_days: 30.0,
        }
    }
}

impl ConsentConfig {
    pub fn local_issuer_path(&self, keyring: &Path) -> PathBuf {
        self.local_issuer_key.clone().unwrap_or_else(|| {
            keyring
                .parent()
                .unwrap_or(Path::new("."))
                .join("consent-issuer.pem")
        })
    }
}

/// One signing key of a consent issuer; an issuer rotating keys is listed once per key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerKeyConfig {
    /// The tokens' `iss`.
    pub iss: String,
    /// The tokens' `kid` header; without it, the key is tried for any token of `iss`.
    #[serde(default)]
    pub kid: Option<String>,
    /// `EdDSA`, `ES256` or `RS256`.
    pub alg: String,
    /// PEM file with the public key.
    pub public_key: PathBuf,
}

/// Cluster mode: JetStream for jobs, PostgreSQL for the catalog (S3 via `server.store`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// e.g. nats://nats:4222
    pub nats_url: Option<String>,
    /// e.g. postgres://vcw:PASSWORD@postgres/vcw (from a Secret: it holds a password).
    pub database_url: Option<Secret>,
    pub stream: String,
    pub subject: String,
    pub consumer: String,
    /// Core NATS subject revocations are announced on (API nodes evict and acknowledge).
    pub revocation_subject: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats_url: None,
            database_url: None,
            stream: "VCW_JOBS".into(),
            subject: "vcw.jobs".into(),
            consumer: "vcw-workers".into(),
            revocation_subject: "vcw.revocations".into(),
        }
    }
}

/// Re-encoding of streams HLS cannot carry (`server.transcode`). Off by default: a
/// re-encode is lossy and costs CPU, and the H.264 encoder (libx264) is GPL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transcode {
    /// Keep the sealed original only.
    #[default]
    Off,
    /// H.264 (libx264, GPL) video; AAC (FFmpeg's own encoder, LGPL) audio.
    H264,
    /// VP9 (libvpx, BSD) video; AAC audio: no GPL encoder involved.
    Vp9,
}

impl std::str::FromStr for Transcode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Transcode::Off),
            "h264" => Ok(Transcode::H264),
            "vp9" => Ok(Transcode::Vp9),
            _ => Err(format!("unknown transcode target {s:?}: off, h264 or vp9")),
        }
    }
}

/// The service: HTTP API, job queue, worker pool and webhooks.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the API listens on.
    pub listen: String,
    /// Where sealed objects go: a directory or s3://BUCKET/PREFIX; default
    /// `<data_dir>/objects`.
    pub store: Option<String>,
    /// S3 locations jobs may read their video from (`POST /v1/jobs` and queue-driven
    /// jobs): `s3://bucket/` or `s3://bucket/prefix/`. Empty (the default): S3 jobs are
    /// refused. vcw's own store is never a source, whatever this says.
    pub s3_sources: Vec<String>,
    /// Jobs processed at once by this process's worker pool.
    pub workers: usize,
    /// Queued jobs beyond which new uploads and jobs get 429 Too Many Requests.
    pub queue_capacity: i64,
    /// Attempts before a job that keeps failing transiently is declared dead.
    pub max_attempts: i64,
    /// A worker's hold on a job; renewed by heartbeats, so a crashed worker's job is
    /// picked up again this long after its last heartbeat.
    pub lease_seconds: f64,
    /// First retry delay; doubles with each attempt.
    pub retry_base_seconds: f64,
    /// Target length of stored segments, seconds.
    pub segment_seconds: f64,
    /// What to do with an upload whose codecs HLS cannot carry (VP8, MPEG-4 Part 2, MJPEG,
    /// Vorbis, PCM, ...): `off` keeps only the sealed original; `h264` or `vp9` also
    /// re-encodes those streams (audio to AAC) into a streamable HLS rendition. See
    /// docs/media.md for the licence consequence.
    pub transcode: Transcode,
    /// Bytes of decrypted segments kept for playback (0: no cache).
    pub cache_bytes: u64,
    /// How long a decrypted segment is kept at most (less if consent expires sooner).
    pub cache_seconds: f64,
    /// Sustained requests per second per token (a token bucket of `rate_burst`).
    pub rate_per_second: f64,
    pub rate_burst: f64,
    /// Lookups of unknown, expired or revoked tokens allowed per second, all callers
    /// together (a burst of ten times that): a spray of made-up tokens costs the catalog
    /// no more, and tokens that worked recently are not held back by it.
    pub auth_failures_per_second: f64,
    /// Secret for the HMAC-SHA256 signature on webhook bodies; webhooks need it.
    pub webhook_secret: Option<Secret>,
    /// Networks webhooks may reach although they are internal (loopback, private,
    /// link-local, …, refused by default): CIDR networks or addresses, e.g.
    /// `["10.20.0.0/16"]` for a receiver inside the cluster.
    pub webhook_allow: Vec<String>,
    /// Webhook deliveries in flight at once per receiver (host and port): a slow
    /// receiver holds at most this many and delays no other.
    pub webhook_per_host: usize,
    /// How long one delivery attempt may take (connect, send, answer) before it counts
    /// as failed.
    pub webhook_timeout_seconds: f64,
    /// Delivery attempts per webhook before giving up.
    pub webhook_attempts: i64,
    /// First webhook retry delay; doubles with each attempt.
    pub webhook_retry_base_seconds: f64,
    /// PEM certificate chain and private key: serve HTTPS (with HSTS) instead of HTTP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// On SIGTERM, how long in-flight jobs may run before the process exits anyway
    /// (their leases then expire and another worker takes them over).
    pub drain_seconds: f64,
    /// How often the reaper looks for expired leases, stale uploads and unfinished
    /// erasures.
    pub reaper_seconds: f64,
    /// How often the reaper walks the store for orphaned objects.
    pub orphan_sweep_seconds: f64,
    /// Objects and temporary files younger than this are never swept: they may belong to
    /// work still in flight.
    pub orphan_grace_seconds: f64,
    /// An upload still receiving after this long is expired and its parts shredded.
    pub upload_expiry_seconds: f64,
    /// Per token, the most bytes its unfinished uploads may reserve (their
    /// `Upload-Length`s together): what one token can make the server keep on disk
    /// until the uploads expire.
    pub open_upload_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            store: None,
            s3_sources: Vec::new(),
            workers: 1,
            queue_capacity: 1000,
            max_attempts: 3,
            lease_seconds: 30.0,
            retry_base_seconds: 2.0,
            segment_seconds: 4.0,
            transcode: Transcode::Off,
            cache_bytes: 256 << 20,
            cache_seconds: 300.0,
            rate_per_second: 50.0,
            rate_burst: 100.0,
            auth_failures_per_second: 20.0,
            webhook_secret: None,
            webhook_allow: Vec::new(),
            webhook_per_host: 4,
            webhook_timeout_seconds: 10.0,
            webhook_attempts: 8,
            webhook_retry_base_seconds: 1.0,
            tls_cert: None,
            tls_key: None,
            drain_seconds: 60.0,
            reaper_seconds: 10.0,
            orphan_sweep_seconds: 300.0,
            orphan_grace_seconds: 3600.0,
            upload_expiry_seconds: 86400.0,
            open_upload_bytes: 64 << 30,
        }
    }
}

/// How frames are chosen. Keyframes are chosen by whoever encoded the file, so the
/// sampler never relies on them alone: `max_gap` bounds every unsampled stretch.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    /// Longest stretch of video, in seconds, that may go without a sampled frame.
    pub max_gap: f64,
    /// Uniform minimum sampling rate, frames per second of video.
    pub min_rate: f64,
    /// Also sample every keyframe (I-frame)...
    pub keyframes: bool,
    /// ...and scene changes, but no more often than this many a second: an all-intra
    /// upload (every frame a keyframe) is sampled at this rate, not frame by frame.
    pub max_rate: f64,
    /// Sample a frame whose mean absolute luma change from the previous decoded frame
    /// exceeds this fraction (0-1); 0 disables scene-change sampling.
    pub scene_threshold: f64,
    /// Decoder threads; 0 lets FFmpeg choose.
    pub decoder_threads: usize,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            max_gap: 1.0,
            min_rate: 1.0,
            max_rate: 4.0,
            keyframes: true,
            scene_threshold: 0.0,
            decoder_threads: 0,
        }
    }
}

/// Input limits: refuse early what would exhaust the machine.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_width: u32,
    pub max_height: u32,
    /// Seconds.
    pub max_duration: f64,
    /// Bytes.
    pub max_file_size: u64,
    /// Frames of the video stream, counted by the index pass (not what the container
    /// claims): bounds the work and memory of a file with a huge frame count.
    pub max_frames: u64,
    /// Frames classified per video: a backstop behind `sampler.max_rate`.
    pub max_sampled_frames: u64,
    /// Bytes of one HLS segment: a keyframe interval longer than this is cut mid-GOP,
    /// so the memory a segment takes stays bounded whatever the GOP.
    pub max_segment_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_width: 7680,
            max_height: 4320,
            max_duration: 6.0 * 3600.0,
            max_file_size: 32 << 30,
            // Six hours at 120 frames a second.
            max_frames: 2_592_000,
            // Six hours at sampler.max_rate, and some.
            max_sampled_frames: 100_000,
            max_segment_bytes: 64 << 20,
        }
    }
}

impl Limits {
    pub fn max_pixels(&self) -> u64 {
        u64::from(self.max_width) * u64::from(self.max_height)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InferenceConfig {
    /// Directory holding the model files named in models/manifest.json.
    pub models_dir: PathBuf,
    /// The ONNX Runtime shared library (`make setup` extracts it from the PyPI wheel).
    pub ort_library: PathBuf,
    /// Threads inside one ONNX Runtime operator; 0 = one per core.
    pub intra_threads: usize,
    /// Frames per inference batch.
    pub batch_size: usize,
    /// The face detector sees frames scaled so that their longer side is at most this
    /// (pixels): 1280 keeps faces of about 15 px in a 1080p frame at a third of the cost
    /// of full resolution.
    pub face_max_side: usize,
    /// Run the models on this CUDA device (ONNX Runtime's CUDA execution provider)
    /// instead of the CPU. Needs a build with `--features cuda` and `ort_library`
    /// pointing at the GPU build of ONNX Runtime (the `onnxruntime-gpu` wheel). None =
    /// CPU, the default and what CI runs.
    pub cuda_device: Option<i32>,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            models_dir: Path::new(REPO_DIR).join("models"),
            ort_library: Path::new(REPO_DIR).join(".cache/onnxruntime/libonnxruntime.so.1.32.0"),
            intra_threads: 0,
            batch_size: 8,
            face_max_side: 1280,
            cuda_device: None,
        }
    }
}

/// Where keys and the catalog live.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultConfig {
    /// Catalog (SQLite) and local objects.
    pub data_dir: PathBuf,
    /// The keyring file holding the KEK (a mounted secret in production); default
    /// `<data_dir>/keyring.toml`.
    pub keyring: Option<PathBuf>,
}

impl Default for VaultConfig {
    fn default() -> Self {
        let data_dir = std::env::var_os("HOME")
            .map(|h| Path::new(&h).join(".local/share/vcw"))
            .unwrap_or_else(|| PathBuf::from("vcw-data"));
        Self {
            data_dir,
            keyring: None,
        }
    }
}

impl VaultConfig {
    pub fn keyring_path(&self) -> PathBuf {
        self.keyring
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keyring.toml"))
    }
}

impl Config {
    /// Defaults, overlaid by `file` (if any), then by `VCW__...` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut merged = toml::Table::try_from(Config::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: shown.clone(),
                source,
            })?;
            let table: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Parse {
                        path: shown.clone(),
                        detail: e.to_string(),
                    })?;
            merge(&mut merged, table);
            check_shape(&merged, &shown)?;
        }
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("VCW__") else {
                continue;
            };
            let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            // A secret is taken as it is: never parsed as a TOML literal (a secret of
            // digits would otherwise become a number, and a parse error echo it).
            let parsed = if keys
                .last()
                .is_some_and(|k| SECRET_KEYS.contains(&k.as_str()))
            {
                toml::Value::String(value)
            } else {
                parse_env_value(&value)
            };
            set_path(&mut merged, &keys, parsed).map_err(|detail| ConfigError::Env {
                name: name.clone(),
                detail,
            })?;
            check_shape(&merged, &name)?;
        }
        let config: Config =
            merged
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: "merged configuration".into(),
                    detail: e.to_string(),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: ranges and relations between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.sampler;
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if !(s.max_gap.is_finite() && s.max_gap > 0.0) {
            return bad("sampler.max_gap must be a positive number of seconds");
        }
        if !(s.min_rate.is_finite() && s.min_rate > 0.0) {
            return bad("sampler.min_rate must be a positive number of frames per second");
        }
        if !(s.max_rate.is_finite() && s.max_rate >= s.min_rate) {
            return bad("sampler.max_rate must be at least sampler.min_rate");
        }
        if !(0.0..=1.0).contains(&s.scene_threshold) {
            return bad("sampler.scene_threshold must be between 0 and 1 (0 disables it)");
        }
        let l = &self.limits;
        if l.max_width == 0 || l.max_height == 0 || l.max_file_size == 0 {
            return bad("limits must be positive");
        }
        if !(l.max_duration.is_finite() && l.max_duration > 0.0) {
            return bad("limits.max_duration must be a positive number of seconds");
        }
        if l.max_frames == 0 || l.max_segment_bytes < 1 << 20 {
            return bad(
                "limits.max_frames must be positive and limits.max_segment_bytes at least 1 MiB",
            );
        }
        // The uniform rate alone must fit in the cap for the longest video allowed.
        if (l.max_sampled_frames as f64) < l.max_duration * s.min_rate + 2.0 {
            return bad(
                "limits.max_sampled_frames must cover limits.max_duration x sampler.min_rate",
            );
        }
        if self.inference.batch_size == 0 || self.inference.batch_size > 256 {
            return bad("inference.batch_size must be between 1 and 256");
        }
        if self.inference.cuda_device.is_some() && !cfg!(feature = "cuda") {
            return bad(
                "inference.cuda_device is set, but this vcw was built without `--features cuda`",
            );
        }
        if !(64..=4096).contains(&self.inference.face_max_side) {
            return bad("inference.face_max_side must be between 64 and 4096 pixels");
        }
        let v = &self.server;
        if v.workers == 0 || v.workers > 64 {
            return bad("server.workers must be between 1 and 64");
        }
        if v.queue_capacity < 1 || v.max_attempts < 1 || v.webhook_attempts < 1 {
            return bad("server.queue_capacity, max_attempts and webhook_attempts must be >= 1");
        }
        let positive = [
            v.lease_seconds,
            v.retry_base_seconds,
            v.rate_per_second,
            v.rate_burst,
            v.webhook_retry_base_seconds,
            v.drain_seconds,
            v.reaper_seconds,
            v.orphan_sweep_seconds,
            v.upload_expiry_seconds,
        ];
        if positive.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
            return bad("server durations and rates must be positive numbers");
        }
        if v.open_upload_bytes == 0 {
            return bad("server.open_upload_bytes must be >= 1");
        }
        if !(v.orphan_grace_seconds.is_finite() && v.orphan_grace_seconds >= 0.0) {
            return bad("server.orphan_grace_seconds must be a number of seconds >= 0");
        }
        let c = self.consent.erase_after_lapse_days;
        if !(c.is_finite() && c >= 0.0) {
            return bad("consent.erase_after_lapse_days must be 0 or more");
        }
        let a = &self.audit;
        if !(a.retention_days.is_finite() && a.retention_days >= 180.0) {
            return bad("audit.retention_days must be at least 180");
        }
        if !(a.checkpoint_seconds.is_finite() && a.checkpoint_seconds > 0.0) {
            return bad("audit.checkpoint_seconds must be positive");
        }
        if !(a.redact_after_days.is_finite() && a.redact_after_days >= 0.0) {
            return bad("audit.redact_after_days must be 0 (never) or positive");
        }
        if !(v.segment_seconds.is_finite() && v.segment_seconds >= 1.0) {
            return bad("server.segment_seconds must be at least 1");
        }
        if let Err(e) = crate::outbound::OutboundPolicy::new(&v.webhook_allow) {
            return bad(&format!("server.webhook_allow: {e}"));
        }
        if !(v.webhook_timeout_seconds > 0.0 && v.webhook_timeout_seconds <= 600.0) {
            return bad("server.webhook_timeout_seconds must be between 0 and 600");
        }
        if let Some(bad_source) = v.s3_sources.iter().find(|s| !s.starts_with("s3://")) {
            return bad(&format!(
                "server.s3_sources: {bad_source:?} is not s3://BUCKET/ or s3://BUCKET/PREFIX/"
            ));
        }
        if v.auth_failures_per_second.is_nan() || v.auth_failures_per_second <= 0.0 {
            return bad("server.auth_failures_per_second must be positive");
        }
        if v.webhook_per_host == 0 {
            return bad("server.webhook_per_host must be at least 1");
        }
        if v.tls_cert.is_some() != v.tls_key.is_some() {
            return bad("server.tls_cert and server.tls_key go together");
        }
        Ok(())
    }
}

/// Deserializing once per layer names the layer that introduced a bad key or type.
fn check_shape(table: &toml::Table, origin: &str) -> Result<(), ConfigError> {
    Config::deserialize(toml::Value::Table(table.clone()))
        .map(|_| ())
        .map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            detail: e.to_string(),
        })
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// Settings that hold secrets: their environment variables are read as raw strings.
const SECRET_KEYS: &[&str] = &["webhook_secret", "secret_key", "access_key", "database_url"];

/// Environment values are TOML literals where they parse as one (`2.5`, `true`), else strings.
fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    match keys {
        [] => Err("empty key".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => match table
            .entry(first.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(inner) => set_path(inner, rest, value),
            _ => Err(format!("`{first}` is not a section")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn layers_apply_in_order_defaults_file_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vcw.toml");
        std::fs::write(&file, "[sampler]\nmax_gap = 0.5\nmin_rate = 2.0\n").unwrap();
        let c = Config::load(Some(&file), env(&[("VCW__SAMPLER__MIN_RATE", "4")])).unwrap();
        assert_eq!(c.sampler.max_gap, 0.5);
        assert_eq!(c.sampler.min_rate, 4.0);
        assert_eq!(c.limits.max_width, 7680, "untouched defaults survive");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vcw.toml");
        std::fs::write(&file, "[sampler]\nmax_gapp = 0.5\n").unwrap();
        let err = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(err.contains("max_gapp"), "{err}");
        let err = Config::load(None, env(&[("VCW__SAMPLER__MAX_GAP", "-1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_gap"), "{err}");
        let err = Config::load(None, env(&[("VCW__LIMITS__MAX_WIDTH", "wide")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("VCW__LIMITS__MAX_WIDTH"), "{err}");
        if !cfg!(feature = "cuda") {
            let err = Config::load(None, env(&[("VCW__INFERENCE__CUDA_DEVICE", "0")]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }

    #[test]
    fn env_strings_become_paths() {
        let c = Config::load(None, env(&[("VCW__INFERENCE__MODELS_DIR", "/opt/m")])).unwrap();
        assert_eq!(c.inference.models_dir, PathBuf::from("/opt/m"));
    }
}
