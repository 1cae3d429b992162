//! China time (UTC+8, no daylight saving): WeChat's day and month boundaries for mass-send
//! quotas. WeChat's docs don't name a zone; it runs on Beijing time.

pub const OFFSET_SECS: i64 = 8 * 3600;

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn local_days(unix_secs: u64) -> i64 {
    (unix_secs as i64 + OFFSET_SECS).div_euclid(86_400)
}

/// The China-time calendar day as `YYYYMMDD`.
pub fn day(unix_secs: u64) -> u32 {
    let (y, m, d) = civil_from_days(local_days(unix_secs));
    (y as u32) * 10_000 + m * 100 + d
}

/// The China-time month as `YYYYMM`.
pub fn month(unix_secs: u64) -> u32 {
    day(unix_secs) / 100
}

/// The next China-time midnight after `unix_secs`, as unix seconds.
pub fn next_midnight(unix_secs: u64) -> u64 {
    ((local_days(unix_secs) + 1) * 86_400 - OFFSET_SECS) as u64
}

/// The start of the next China-time month, as unix seconds.
pub fn next_month_start(unix_secs: u64) -> u64 {
    let (y, m, _) = civil_from_days(local_days(unix_secs));
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (days_from_civil(y, m, 1) * 86_400 - OFFSET_SECS) as u64
}

/// RFC 3339 in China time (`2026-12-01T00:00:00+08:00`), for answers an owner reads.
pub fn rfc3339(unix_secs: u64) -> String {
    let local = unix_secs as i64 + OFFSET_SECS;
    let (y, m, d) = civil_from_days(local.div_euclid(86_400));
    let s = local.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+08:00", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-30T15:59:59Z is 23:59:59 on 30 Nov in Beijing; one second later it is 1 Dec.
    const LAST_SECOND_OF_NOVEMBER: u64 = 1_796_054_399;

    #[test]
    fn boundaries_are_china_time() {
        assert_eq!(rfc3339(LAST_SECOND_OF_NOVEMBER), "2026-11-30T23:59:59+08:00");
        assert_eq!(day(LAST_SECOND_OF_NOVEMBER), 20261130);
        assert_eq!(day(LAST_SECOND_OF_NOVEMBER + 1), 20261201);
        assert_eq!(month(LAST_SECOND_OF_NOVEMBER), 202611);
        assert_eq!(month(LAST_SECOND_OF_NOVEMBER + 1), 202612);
        assert_eq!(next_midnight(LAST_SECOND_OF_NOVEMBER), LAST_SECOND_OF_NOVEMBER + 1);
        assert_eq!(next_month_start(LAST_SECOND_OF_NOVEMBER - 86_400 * 20), LAST_SECOND_OF_NOVEMBER + 1);
        assert_eq!(rfc3339(next_month_start(LAST_SECOND_OF_NOVEMBER + 1)), "2027-01-01T00:00:00+08:00");
        // 16:00 UTC is already the next day in China.
        assert_eq!(day(1_796_054_400 - 86_400), 20261130);
    }

    #[test]
    fn calendar_round_trips_over_centuries() {
        for days in (-800_000i64..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2028, 2, 29)), (2028, 2, 29));
    }
}
