//! Crash points and faults for the tests. `VCW_CRASH_AT=NAME` makes the process abort (no
//! destructors, no flushing: as abrupt as `kill -9`) the first time it reaches the point
//! `NAME`; `VCW_FAULT=NAME` makes the step `NAME` misbehave the way a broken store or
//! muxer would. Unset, a point costs one load of a cached value. The points sit at the
//! step boundaries where a crash could lose or orphan data; docs/jobs.md lists them.
//!
//! Only builds with debug assertions (what `cargo test` builds) read the variables: a
//! release binary compiles the points out, so one left set in production changes nothing.

use std::sync::OnceLock;

static TARGET: OnceLock<Option<String>> = OnceLock::new();

/// Aborts the process here if `VCW_CRASH_AT` names this point.
pub fn hit(name: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    let target = TARGET.get_or_init(|| std::env::var("VCW_CRASH_AT").ok());
    if target.as_deref() == Some(name) {
        eprintln!("vcw: crash point {name} reached: aborting (VCW_CRASH_AT)");
        std::process::abort();
    }
}

static FAULT: OnceLock<Option<String>> = OnceLock::new();

/// Whether `VCW_FAULT` names this fault (e.g. `lose-last-segment`: the read-back check of
/// a stored HLS rendition misses its last segment, as if the store had lost it).
pub fn fault(name: &str) -> bool {
    if !cfg!(debug_assertions) {
        return false;
    }
    let fault = FAULT.get_or_init(|| std::env::var("VCW_FAULT").ok());
    fault.as_deref() == Some(name)
}
