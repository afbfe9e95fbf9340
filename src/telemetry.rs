//! Logging: tracing to stderr, so stdout stays clean for `--json` output.
//!
//! Logs carry file names, timings and counts, never frame contents or model outputs
//! that could describe a person.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber; `RUST_LOG` overrides `default_level`.
pub fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
