//! Logging: tracing to stderr, so stdout stays clean for `--json` output; text for
//! people or JSON lines for a log pipeline (`[log] format`).
//!
//! Logs carry file names, timings, counts and ids (request, video, the first 12 hex
//! digits of a subject's keyed hash), never frame contents, model outputs that could
//! describe a person, subjects, tokens or keys.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the subscriber; `RUST_LOG` overrides `default_level`.
pub fn init(default_level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_level))
        .unwrap_or_else(|e| {
            eprintln!("vcw: log level {default_level:?}: {e}; using warn");
            EnvFilter::new("warn")
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
