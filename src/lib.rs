//! vcw: the video compliance worker.
//!
//! # Layout
//! - [`cli`]: one file per subcommand (`scan`, `classify`); argument parsing and exit codes.
//! - [`config`]: defaults -> TOML file -> `VCW__` environment -> flags, validated once.
//! - [`frame`]: the packed RGB24 image every stage passes along.
//! - [`media`]: FFmpeg probe and frame sampler (I-frames + minimum rate + max-gap guarantee).
//! - [`inference`]: ONNX Runtime sessions and one module per model (open_nsfw, NudeNet, age).
//! - [`policy`]: per-frame signals -> verdict with reasons, time ranges and evidence.
//! - [`report`]: the scan/classify result documents (JSON schema in docs/scan-json.md) and tables.
//! - [`scan`]: one file end to end: sample, classify in batches, judge.
//! - [`telemetry`]: tracing setup.

pub mod cli;
pub mod config;
pub mod frame;
pub mod inference;
pub mod media;
pub mod policy;
pub mod report;
pub mod scan;
pub mod telemetry;
