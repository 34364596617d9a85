//! Wall-clock time for the shells: now as unix seconds, RFC 3339 timestamps for events, and
//! local dates for people.
//!
//! The pure core never reads the clock; sessions, the daemon and the output layer ask here and
//! pass times down as plain numbers.

/// Seconds since the Unix epoch, now.
#[must_use]
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now as an RFC 3339 timestamp in UTC with milliseconds (`2026-12-02T05:07:57.123Z`).
#[must_use]
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    format!("{now:.3}")
}

/// Unix seconds as an RFC 3339 timestamp in UTC (`2026-12-02T05:07:57Z`).
#[must_use]
pub fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| unix.to_string(), |t| t.to_string())
}

/// Unix seconds as a local date for messages (`2026-12-02 06:07:57 CET`), in the system time
/// zone (`TZ`, else `/etc/localtime`), falling back to UTC.
#[must_use]
pub fn describe_unix(unix: u64) -> String {
    let Some(ts) = i64::try_from(unix)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
    else {
        return unix.to_string();
    };
    let zone = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
    ts.to_zoned(zone)
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}
