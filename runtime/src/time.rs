//! The wall clock as BitMail stores it (milliseconds since the epoch), and calendar
//! dates for timestamps written in logs, reports and test payloads, without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since 1970-01-01T00:00:00Z, now; 0 for a clock set before the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The UTC date `YYYY-MM-DD` of `ms` milliseconds since the epoch.
pub fn date(ms: u64) -> String {
    let c = civil(ms / 1000);
    format!("{:04}-{:02}-{:02}", c.year, c.month, c.day)
}

/// `ms` as an RFC 5322 date in UTC: `Tue, 01 Dec 2026 23:50:07 +0000`.
pub fn rfc5322(ms: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = ms / 1000;
    let c = civil(secs);
    let weekday = DAYS[(secs / 86_400 % 7) as usize];
    let month = MONTHS[(c.month - 1) as usize];
    format!("{weekday}, {:02} {month} {} {:02}:{:02}:{:02} +0000", c.day, c.year, c.hour, c.minute, c.second)
}

/// A UTC date and time of day, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: u64,
    pub minute: u64,
    pub second: u64,
}

/// The UTC calendar date and time `secs` seconds after 1970-01-01T00:00:00Z.
pub fn civil(secs: u64) -> Civil {
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil { year, month, day, hour: rest / 3600, minute: rest % 3600 / 60, second: rest % 60 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(civil(0), Civil { year: 1970, month: 1, day: 1, hour: 0, minute: 0, second: 0 });
        // 2012-04-25T21:49:25Z, and a leap day.
        assert_eq!(civil(1_335_390_565), Civil { year: 2012, month: 4, day: 25, hour: 21, minute: 49, second: 25 });
        assert_eq!(civil(951_782_400), Civil { year: 2000, month: 2, day: 29, hour: 0, minute: 0, second: 0 });
        assert_eq!(date(951_782_400_000), "2000-02-29");
        assert_eq!(rfc5322(1_335_390_565_000), "Wed, 25 Apr 2012 21:49:25 +0000");
        assert_eq!(rfc5322(0), "Thu, 01 Jan 1970 00:00:00 +0000");
    }
}
