//! Wall-clock time for event timestamps. Leases and due times never use it: they come
//! from the catalog's clock (see docs/jobs.md), so workers' clocks cannot disagree.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    now_ms() / 1000
}
