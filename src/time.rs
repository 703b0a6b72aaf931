//! RFC 3339 timestamps (UTC) from and to Unix milliseconds, without a date
//! crate in the Worker.

/// `2026-11-25T10:00:00Z` for `ms` since the Unix epoch.
pub fn format_rfc3339(ms: u64) -> String {
    format(ms, "")
}

/// `2026-11-25T10:00:00.123Z`: what JavaScript's `Date.prototype.toISOString`
/// writes for `ms` since the epoch (years 1970 to 9999).
pub fn format_iso_millis(ms: u64) -> String {
    format(ms, &format!(".{:03}", ms % 1000))
}

fn format(ms: u64, fraction: &str) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{fraction}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Whether `s` is a time exactly as `toISOString` writes it (as OneTrust
/// stores `OptanonAlertBoxClosed`): a real calendar date and time, three
/// fraction digits, `Z`. It must read back to itself, which rules out
/// `2026-02-30`, a leap second `:60`, other precisions and offsets.
pub fn is_iso_millis(s: &str) -> bool {
    parse_rfc3339(s).is_some_and(|ms| format_iso_millis(ms) == s)
}

/// Milliseconds since the epoch for `YYYY-MM-DDTHH:MM:SS[.fff]Z`; `None` otherwise.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let fraction = &s[19..s.len() - 1];
    let millis = match fraction.strip_prefix('.') {
        None if fraction.is_empty() => 0,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) => {
            format!("{digits:0<3}")[..3].parse().ok()?
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
        || year < 1970
    {
        return None;
    }
    let days = days_from_civil(year as i64, month as u32, day as u32);
    Some(((days as u64 * 86_400) + hour * 3600 + minute * 60 + second) * 1000 + millis)
}

// Howard Hinnant's civil calendar algorithms (public domain).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(1_795_600_496_789), "2026-11-25T09:54:56Z");
    }

    #[test]
    fn parses_what_it_formats_and_common_variants() {
        for ms in [0, 951_782_400_000, 1_795_600_496_000, 4_102_444_799_000] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms));
        }
        assert_eq!(
            parse_rfc3339("2026-11-25T09:54:56.789Z"),
            Some(1_795_600_496_789)
        );
        assert_eq!(
            parse_rfc3339("2026-11-25T09:54:56.7Z"),
            Some(1_795_600_496_700)
        );
    }

    #[test]
    fn iso_millis_is_what_to_iso_string_writes_and_nothing_else() {
        assert_eq!(
            format_iso_millis(1_795_600_496_789),
            "2026-11-25T09:54:56.789Z"
        );
        assert_eq!(format_iso_millis(0), "1970-01-01T00:00:00.000Z");
        for s in ["2026-11-23T09:00:00.000Z", "2024-02-29T23:59:59.999Z"] {
            assert!(is_iso_millis(s), "{s}");
        }
        for s in [
            "2026-11-23T09:00:00Z",
            "2026-11-23T09:00:00.0Z",
            "2026-11-23T09:00:00.0000Z",
            "2026-02-30T09:00:00.000Z",
            "2025-02-29T09:00:00.000Z",
            "2026-11-23T09:00:60.000Z",
            "2026-11-23T24:00:00.000Z",
            "2026-11-23t09:00:00.000z",
            "2026-11-23 09:00:00.000Z",
            "2026-11-23T09:00:00.000+01:00",
            " 2026-11-23T09:00:00.000Z",
            "1969-12-31T23:59:59.999Z",
            "+012026-11-23T09:00:00.000Z",
            "true",
            "",
        ] {
            assert!(!is_iso_millis(s), "{s}");
        }
    }

    #[test]
    fn rejects_other_text() {
        for s in [
            "",
            "yesterday",
            "2026-11-25",
            "2026-11-25T09:54:56",
            "2026-13-25T09:54:56Z",
            "2026-11-25T09:54:56+01:00",
            "2026-11-25T09:54:56.Z",
            "１０２６-11-25T09:54:56Z",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
    }
}
