//! Command-line interface: argument parsing, configuration layering and exit codes.
//!
//! Exit status: 0 when every input was allowed, 1 when something was flagged (review,
//! restrict or block), 2 when an input or the setup was in error.

mod audit;
mod classify;
mod consent;
mod doctor;
mod keys;
mod scan;
mod seal;
mod serve;
mod submit;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::policy::{Action, Policy};

#[derive(Parser, Debug)]
#[command(
    name = "vcw",
    version,
    about = "Video compliance worker: checks videos and images for explicit content and minors, offline.",
    long_about = "Video compliance worker: checks videos and images for explicit content and minors, offline, \
and stores video sealed with SM4 for data subjects whose keys can be shredded.\n\n\
Models (open_nsfw, NudeNet 320n, an age model) run locally through ONNX Runtime; nothing leaves the machine. \
Configuration is layered: built-in defaults, then --config FILE (TOML), then VCW__SECTION__KEY environment \
variables (e.g. VCW__SAMPLER__MAX_GAP=0.5), then flags.\n\n\
Exit status: 0 all inputs allowed, 1 something flagged (review/restrict/block), 2 an error."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct GlobalArgs {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Policy file (TOML) turning model signals into verdicts; built-in policy by default.
    #[arg(long, global = true, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Directory holding the model files (default: the checkout's models/, filled by `make models`).
    #[arg(long, global = true, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// ONNX Runtime shared library (default: the one `make setup` extracts).
    #[arg(long, global = true, value_name = "FILE")]
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime intra-op threads (0 = one per core).
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// Frames per inference batch.
    #[arg(long, global = true, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Print one JSON document per input (JSON Lines) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log level for messages on stderr (error, warn, info, debug); default `[log] level`
    /// in the config, else warn; RUST_LOG overrides.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Sample, classify and judge videos: a verdict per file with reasons and time ranges.
    Scan(scan::ScanArgs),
    /// Classify still images (PNG, JPEG) with the same models and policy.
    Classify(classify::ClassifyArgs),
    /// Manage keys: create the keyring, rotate the KEK, crypto-shred a subject or object.
    Keys(keys::KeysArgs),
    /// Encrypt a file for a data subject into a sealed object (SM4-CTR + CMAC-SM4).
    Seal(seal::SealArgs),
    /// Verify and decrypt a sealed object; fails without releasing any tampered chunk.
    Open(seal::OpenArgs),
    /// Run the service on embedded defaults: HTTP API (tus/PUT uploads, jobs, results,
    /// playback), worker pool, SQLite catalog and queue, filesystem store.
    Serve(serve::ServeArgs),
    /// Cluster role: the HTTP API against NATS JetStream, PostgreSQL and S3.
    Api(serve::ClusterArgs),
    /// Cluster role: a worker pool taking jobs from NATS JetStream.
    Worker(serve::ClusterArgs),
    /// Send a video (or an s3:// reference) to a running service; --wait for the verdict.
    Submit(submit::SubmitArgs),
    /// Manage API bearer tokens.
    Token(serve::TokenArgs),
    /// Consent: mint a token with the local issuer, revoke a subject's consent, show its
    /// ledger.
    Consent(consent::ConsentArgs),
    /// The audit trail: verify it (or an export, offline), export it, sign a checkpoint,
    /// print the public key that verifies it.
    Audit(audit::AuditArgs),
    /// Check this installation and deployment and say what to fix (exit 2 on any failure).
    Doctor(doctor::DoctorArgs),
}

/// Where the keyring and the catalog are (flags override the config file and
/// `VCW__VAULT__KEYRING` / `VCW__VAULT__DATA_DIR`).
#[derive(Args, Debug, Clone)]
pub struct VaultArgs {
    /// Keyring file with the KEK (default: <data-dir>/keyring.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
    /// Directory for the catalog and local objects (default: ~/.local/share/vcw).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl VaultArgs {
    /// (keyring, data dir) from all configuration layers.
    pub fn resolve(&self, global: &GlobalArgs) -> anyhow::Result<(PathBuf, PathBuf)> {
        let config = Config::load(global.config.as_deref(), std::env::vars())?;
        let mut vault = config.vault;
        if let Some(d) = &self.data_dir {
            vault.data_dir = d.clone();
        }
        if let Some(k) = &self.keyring {
            vault.keyring = Some(k.clone());
        }
        Ok((vault.keyring_path(), vault.data_dir))
    }
}

/// A single-threaded tokio runtime for the commands that do async I/O.
/// One runtime worker thread drives I/O, so blocking code (FFmpeg threads) can use
/// `Handle::block_on` too, which a current-thread runtime would not serve.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    runtime_threads(1)
}

/// A tokio runtime with `threads` worker threads (the service sizes it to the cores).
pub(crate) fn runtime_threads(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
}

/// The catalog the service uses: PostgreSQL when `cluster.database_url` is set, else the
/// SQLite file in `data_dir`. Admin commands (keys, tokens, consent, audit) act on it.
pub(crate) async fn open_catalog(
    config: &Config,
    data_dir: &std::path::Path,
) -> anyhow::Result<crate::catalog::Catalog> {
    Ok(match &config.cluster.database_url {
        Some(url) => crate::catalog::Catalog::connect(url.expose()).await?,
        None => crate::catalog::Catalog::open(data_dir).await?,
    })
}

/// Outcome of one input, folded into the exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Allowed,
    Flagged,
    Failed,
}

impl From<Action> for Outcome {
    fn from(a: Action) -> Self {
        if a == Action::Allow {
            Outcome::Allowed
        } else {
            Outcome::Flagged
        }
    }
}

impl Outcome {
    fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Outcome::Allowed => 0,
            Outcome::Flagged => 1,
            Outcome::Failed => 2,
        })
    }
}

/// Builds the validated configuration and policy from all layers.
fn settings(global: &GlobalArgs) -> anyhow::Result<(Config, Policy)> {
    let mut config = Config::load(global.config.as_deref(), std::env::vars())?;
    if let Some(dir) = &global.models_dir {
        config.inference.models_dir = dir.clone();
    }
    if let Some(lib) = &global.ort_library {
        config.inference.ort_library = lib.clone();
    }
    if let Some(n) = global.threads {
        config.inference.intra_threads = n;
    }
    if let Some(n) = global.batch_size {
        config.inference.batch_size = n;
    }
    if let Some(p) = &global.policy {
        config.policy = Some(p.clone());
    }
    config.validate()?;
    let policy = Policy::load(config.policy.as_deref())?;
    Ok((config, policy))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The logging settings come first, before the command reads (and reports on) the
    // whole configuration.
    let log = crate::config::Config::load(cli.global.config.as_deref(), std::env::vars())
        .map(|c| c.log)
        .unwrap_or_default();
    let level = (cli.global.log_level.clone()).or(log.level);
    crate::telemetry::init(level.as_deref().unwrap_or("warn"), log.format);
    let result = match &cli.command {
        Command::Scan(args) => scan::run(&cli.global, args),
        Command::Classify(args) => classify::run(&cli.global, args),
        Command::Keys(args) => keys::run(&cli.global, args),
        Command::Seal(args) => seal::seal(&cli.global, args),
        Command::Open(args) => seal::open(&cli.global, args),
        Command::Serve(args) => serve::serve(&cli.global, args),
        Command::Api(args) => serve::cluster(&cli.global, args, serve::ClusterRole::Api),
        Command::Worker(args) => serve::cluster(&cli.global, args, serve::ClusterRole::Worker),
        Command::Token(args) => serve::token(&cli.global, args),
        Command::Submit(args) => submit::run(&cli.global, args),
        Command::Consent(args) => consent::run(&cli.global, args),
        Command::Audit(args) => audit::run(&cli.global, args),
        Command::Doctor(args) => doctor::run(&cli.global, args),
    };
    match result {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            eprintln!("vcw: error: {e:#}");
            Outcome::Failed.exit_code()
        }
    }
}

/// Prints a per-file error in the chosen format.
fn report_error(json: bool, file: &str, error: &dyn std::fmt::Display) {
    if json {
        let doc = crate::report::ErrorReport {
            file,
            error: error.to_string(),
        };
        match serde_json::to_string(&doc) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("vcw: error: {file}: {error} (and JSON output failed: {e})"),
        }
    }
    eprintln!("vcw: error: {error}");
}
