//! vcw: the video compliance worker.
//!
//! # Layout
//! - [`api`]: the HTTP API (axum): tus/PUT uploads, jobs, results, playback, erasure.
//! - [`audit`]: the audit trail: a hash chain of records written with each change,
//!   signed checkpoints, verification that names the tampered record.
//! - [`cache`]: decrypted segments for playback, keyed by subject hash, evicted on
//!   revocation and at consent expiry.
//! - [`catalog`]: wrapped keys, sealed objects, videos/jobs, uploads, tokens and the
//!   outbox, in SQLite or PostgreSQL (sqlx); every multi-step change one transaction.
//! - [`cli`]: one file per subcommand family (`scan`, `classify`, `keys`, `seal`/`open`);
//!   argument parsing and exit codes.
//! - [`consent`]: consent tokens (JWT) verified against the configured issuers, and the
//!   local issuer that mints them for a newcomer; the ledger lives in the catalog.
//! - [`config`]: defaults -> TOML file -> `VCW__` environment -> flags, validated once.
//! - [`crypto`]: SM4/SM3 primitives, the sealed object format (docs/sealed-format.md), and
//!   the key hierarchy (keyring file, KMS trait, key wrapping).
//! - [`frame`]: the packed RGB24 image every stage passes along.
//! - [`hex`]: hexadecimal for digests, ids and key files.
//! - [`media`]: FFmpeg probe, frame sampler (I-frames + minimum rate + max-gap guarantee),
//!   and the segmenter (in-memory fMP4 init + media segments, HLS playlist; docs/media.md).
//! - [`inference`]: ONNX Runtime sessions and one module per model (open_nsfw, NudeNet, age).
//! - [`policy`]: per-frame signals -> verdict with reasons, time ranges and evidence.
//! - [`report`]: the scan/classify result documents (JSON schema in docs/scan-json.md) and tables.
//! - [`domain`]: plain types without I/O: ids and store key layout, job and upload
//!   states, job sources and manifests, the events a state change causes.
//! - [`jobs`]: the job machinery: worker pool, the pipeline one job goes through
//!   (read `jobs::pipeline` first), leases, failures, recording, cleanup, the reaper.
//! - [`scan`]: one file end to end: sample, classify in batches, judge.
//! - [`package`]: after judging: segment (fMP4 HLS), seal, store and read back a video
//!   with its manifest, or keep the sealed original when HLS cannot carry it.
//! - [`staging`]: uploads sealed as they stream in, and read back for FFmpeg in memory.
//! - [`storage`]: the blob store for sealed objects: filesystem and S3.
//! - [`telemetry`]: tracing setup.
//! - [`dispatcher`]: delivers outbox events at least once: webhooks, job announcements.
//! - [`failpoint`]: `VCW_CRASH_AT` crash points for the crash tests.
//! - [`queue`]: job queues (embedded: the catalog; cluster: NATS JetStream).
//! - [`service`]: what the API and the workers share.
//! - [`webhook`]: signing and sending job-completion callbacks.
//! - [`outbound`]: which addresses callbacks may reach (no internal ones: SSRF).
//! - [`secret`]: configuration secrets that never print and are wiped when dropped.
//! - [`vault`]: sealing and opening objects with their keys and catalog rows; shredding.

pub mod api;
pub mod audit;
pub mod cache;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod consent;
pub mod crypto;
pub mod dispatcher;
pub mod domain;
pub mod failpoint;
pub mod fanout;
pub mod frame;
pub mod hex;
pub mod inference;
pub mod jobs;
pub mod media;
pub mod metrics;
pub mod outbound;
pub mod package;
pub mod policy;
pub mod queue;
pub mod report;
pub mod scan;
pub mod secret;
pub mod service;
pub mod staging;
pub mod storage;
pub mod telemetry;
pub mod vault;
pub mod webhook;
