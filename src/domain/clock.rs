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

/// The UTC date (`YYYY-MM-DD`) of a Unix time in ms, for listings.
pub fn utc_date(ms: i64) -> String {
    // Days since 1970-01-01 to a civil date (the proleptic Gregorian calendar).
    let days = ms.div_euclid(86_400_000) + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(super::utc_date(0), "1970-01-01");
        assert_eq!(super::utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(super::utc_date(1_796_169_600_000), "2026-12-02");
        assert_eq!(super::utc_date(-86_400_000), "1969-12-31");
    }
}
