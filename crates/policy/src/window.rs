//! Counter windows and scopes, and the calendar arithmetic behind them.
//!
//! All times are milliseconds since the Unix epoch, UTC. Nothing here reads a clock: callers
//! pass `now`, so tests inject any instant they like. The calendar itself (months, leap
//! years) is the `time` crate's, used in UTC only.

use std::fmt;

use time::{Duration, UtcDateTime};

/// Milliseconds since the Unix epoch (UTC).
pub type Millis = u64;

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;

/// The time frame a counter counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    /// Calendar second.
    Second,
    /// Calendar minute (PolicyLayer).
    Minute,
    /// Calendar hour (PolicyLayer).
    Hour,
    /// Calendar day, UTC (PolicyLayer).
    Day,
    /// ISO week, Monday 00:00 UTC to the next Monday (ext).
    Week,
    /// Calendar month, UTC (ext).
    Month,
    /// Rolling window of this many milliseconds (ext): never more than `max` in any interval
    /// of this length.
    Rolling(Millis),
}

impl Window {
    /// Parses a policy `window` value: a calendar name or a duration such as `"90s"`.
    pub fn parse(s: &str) -> Option<Window> {
        Some(match s {
            "second" => Window::Second,
            "minute" => Window::Minute,
            "hour" => Window::Hour,
            "day" => Window::Day,
            "week" => Window::Week,
            "month" => Window::Month,
            other => Window::Rolling(parse_duration(other)?),
        })
    }

    /// The calendar bucket `[start, end)` that contains `now`, or `None` for a rolling window.
    pub fn bucket(&self, now: Millis) -> Option<(Millis, Millis)> {
        let fixed = |len: u64| {
            let start = now - now % len;
            (start, start + len)
        };
        Some(match *self {
            Window::Second => fixed(SECOND),
            Window::Minute => fixed(MINUTE),
            Window::Hour => fixed(HOUR),
            Window::Day => fixed(DAY),
            Window::Week => {
                // 1970-01-01 was a Thursday; Monday 1970-01-05 starts ISO week alignment.
                let monday = 4 * DAY;
                if now < monday {
                    (0, monday)
                } else {
                    let start = now - (now - monday) % WEEK;
                    (start, start + WEEK)
                }
            }
            Window::Month => {
                let (_, t) = split_eras(now);
                let start = now - (u64::from(t.day() - 1) * DAY + now % DAY);
                let length = u64::from(t.month().length(t.year())) * DAY;
                (start, start.saturating_add(length))
            }
            Window::Rolling(_) => return None,
        })
    }

    /// Length of a rolling window, or `None` for a calendar window.
    pub fn rolling(&self) -> Option<Millis> {
        match *self {
            Window::Rolling(ms) => Some(ms),
            _ => None,
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Second => f.write_str("second"),
            Window::Minute => f.write_str("minute"),
            Window::Hour => f.write_str("hour"),
            Window::Day => f.write_str("day"),
            Window::Week => f.write_str("week"),
            Window::Month => f.write_str("month"),
            Window::Rolling(ms) => f.write_str(&format_duration(*ms)),
        }
    }
}

/// Who shares a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One counter per grant token (PolicyLayer's scope).
    Grant,
    /// One counter per MCP session or stdio connection (ext).
    Session,
    /// One counter per upstream server, across all its grants (ext).
    Server,
    /// One counter for the whole gateway (ext).
    Global,
}

impl Scope {
    /// Parses a policy `scope` value.
    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "grant" => Scope::Grant,
            "session" => Scope::Session,
            "server" => Scope::Server,
            "global" => Scope::Global,
            _ => return None,
        })
    }

    /// The policy spelling of this scope.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Grant => "grant",
            Scope::Session => "session",
            Scope::Server => "server",
            Scope::Global => "global",
        }
    }
}

/// Parses a duration such as `"90s"`, `"15m"`, `"24h"`, `"7d"`, `"500ms"` into milliseconds.
/// Compound forms (`"1h30m"`) are accepted; zero is not.
pub fn parse_duration(s: &str) -> Option<Millis> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i || i - start > 12 {
            return None;
        }
        let n: u64 = s[start..i].parse().ok()?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = match &s[ustart..i] {
            "ms" => 1,
            "s" => SECOND,
            "m" => MINUTE,
            "h" => HOUR,
            "d" => DAY,
            "w" => WEEK,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    (total > 0).then_some(total)
}

/// Parses a hold duration: like [`parse_duration`], and a zero (`"0"`, `"0s"`) means "do not
/// hold".
pub fn parse_hold(s: &str) -> Option<Millis> {
    match s.strip_prefix('0') {
        Some("" | "ms" | "s" | "m" | "h" | "d" | "w") => Some(0),
        _ => parse_duration(s),
    }
}

/// Formats milliseconds in the largest exact unit (`"90s"`, `"15m"`, `"24h"`).
pub fn format_duration(ms: Millis) -> String {
    for (unit, name) in [
        (WEEK, "w"),
        (DAY, "d"),
        (HOUR, "h"),
        (MINUTE, "m"),
        (SECOND, "s"),
    ] {
        if ms >= unit && ms.is_multiple_of(unit) {
            return format!("{}{}", ms / unit, name);
        }
    }
    format!("{ms}ms")
}

/// Formats a wait for a person: `"42s"`, `"3m 5s"`, `"2h 1m"`, rounding seconds up.
pub fn human_wait(ms: Millis) -> String {
    let secs = ms.div_ceil(1000);
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h {}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d {}h", secs / 86_400, (secs % 86_400) / 3600),
    }
}

/// An instant as RFC 3339 UTC text with milliseconds (`2026-11-21T23:59:59.999Z`).
pub fn rfc3339(ms: Millis) -> String {
    let (eras, t) = split_eras(ms);
    let year = u64::from(t.year().unsigned_abs()) + 400 * eras;
    format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// `ms` as whole 400-year eras since the epoch and the UTC date-time it falls on, shifted
/// back by those eras. The Gregorian calendar repeats every 400 years (146 097 days), so the
/// shifted date-time has the same month, day and time of day, and stays within the years
/// `time` can represent for every `Millis`.
fn split_eras(ms: Millis) -> (u64, UtcDateTime) {
    const ERA: Millis = 146_097 * DAY;
    let within = i64::try_from(ms % ERA).expect("an era in milliseconds fits an i64");
    (
        ms / ERA,
        UtcDateTime::UNIX_EPOCH + Duration::milliseconds(within),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-21T23:59:59.999Z and friends, computed independently with `date -u -d … +%s`.
    const T_2026_11_21_235959_999: Millis = 1_795_305_599_999;
    const T_2026_11_22_000000: Millis = 1_795_305_600_000;
    const T_2026_12_01_000000: Millis = 1_796_083_200_000;
    const T_2026_11_01_000000: Millis = 1_793_491_200_000;
    const T_2026_11_16_000000_MONDAY: Millis = 1_794_787_200_000;
    const T_2028_02_29_120000: Millis = 1_835_438_400_000;
    const T_2028_02_01_000000: Millis = 1_832_976_000_000;
    const T_2028_03_01_000000: Millis = 1_835_481_600_000;

    #[test]
    fn calendar_buckets_align_to_utc() {
        let t = T_2026_11_21_235959_999;
        assert_eq!(
            Window::Day.bucket(t),
            Some((T_2026_11_22_000000 - DAY, T_2026_11_22_000000))
        );
        assert_eq!(
            Window::Day.bucket(t + 1),
            Some((T_2026_11_22_000000, T_2026_11_22_000000 + DAY))
        );
        assert_eq!(
            Window::Minute.bucket(t),
            Some((T_2026_11_22_000000 - MINUTE, T_2026_11_22_000000))
        );
        assert_eq!(Window::Minute.bucket(t + 1).unwrap().0, T_2026_11_22_000000);
        assert_eq!(Window::Hour.bucket(t).unwrap().1, T_2026_11_22_000000);
        assert_eq!(Window::Second.bucket(t), Some((t - 999, t + 1)));
    }

    #[test]
    fn weeks_start_on_monday_utc() {
        let monday = T_2026_11_16_000000_MONDAY;
        assert_eq!(Window::Week.bucket(monday), Some((monday, monday + WEEK)));
        assert_eq!(
            Window::Week.bucket(monday - 1),
            Some((monday - WEEK, monday))
        );
        assert_eq!(
            Window::Week.bucket(T_2026_11_21_235959_999),
            Some((monday, monday + WEEK))
        );
        // The first full week starts Monday 1970-01-05; the days before it form a short one.
        assert_eq!(Window::Week.bucket(4 * DAY), Some((4 * DAY, 11 * DAY)));
        assert_eq!(Window::Week.bucket(0), Some((0, 4 * DAY)));
    }

    #[test]
    fn months_follow_the_calendar() {
        assert_eq!(
            Window::Month.bucket(T_2026_11_21_235959_999),
            Some((T_2026_11_01_000000, T_2026_12_01_000000))
        );
        assert_eq!(
            Window::Month.bucket(T_2026_12_01_000000 - 1),
            Some((T_2026_11_01_000000, T_2026_12_01_000000))
        );
        assert_eq!(
            Window::Month.bucket(T_2026_12_01_000000).unwrap().0,
            T_2026_12_01_000000
        );
        // Leap February.
        assert_eq!(
            Window::Month.bucket(T_2028_02_29_120000),
            Some((T_2028_02_01_000000, T_2028_03_01_000000))
        );
        // December rolls into the next year.
        let (s, e) = Window::Month.bucket(T_2026_12_01_000000 + 5 * DAY).unwrap();
        assert_eq!(s, T_2026_12_01_000000);
        assert_eq!(e, T_2026_12_01_000000 + 31 * DAY);
    }

    #[test]
    fn rfc3339_text() {
        assert_eq!(rfc3339(T_2026_11_21_235959_999), "2026-11-21T23:59:59.999Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn months_tile_the_timeline() {
        // Every month bucket holds its instant, starts on the first at midnight, and ends
        // where the next one starts, far past the years `time` represents directly (9999).
        for d in (0..4_000_000u64).step_by(997) {
            let t = d * DAY + d % DAY;
            let (s, e) = Window::Month.bucket(t).unwrap();
            assert!(s <= t && t < e, "{t}");
            assert!(rfc3339(s).ends_with("-01T00:00:00.000Z"), "{}", rfc3339(s));
            assert_eq!(Window::Month.bucket(e).unwrap().0, e);
            assert!((28 * DAY..=31 * DAY).contains(&(e - s)));
        }
        assert_eq!(rfc3339(253_402_300_800_000), "10000-01-01T00:00:00.000Z");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90_000));
        assert_eq!(parse_duration("15m"), Some(900_000));
        assert_eq!(parse_duration("24h"), Some(86_400_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("250ms"), Some(250));
        for bad in [
            "",
            "0s",
            "s",
            "10",
            "10x",
            "-5s",
            "1.5h",
            " 5s",
            "5 s",
            "99999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(Window::parse("90s"), Some(Window::Rolling(90_000)));
        assert_eq!(Window::parse("minute"), Some(Window::Minute));
        assert_eq!(Window::parse("Minute"), None);
        assert_eq!(format_duration(90_000), "90s");
        assert_eq!(format_duration(86_400_000), "1d");
        assert_eq!(human_wait(1), "1s");
        assert_eq!(human_wait(61_000), "1m 1s");
    }
}
