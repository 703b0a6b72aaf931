//! RFC 3339 timestamps (UTC) from and to Unix milliseconds, without a date
//! crate in the Worker.

/// `2026-11-25T10:00:00Z` for `ms` since the Unix epoch.
pub fn format_rfc3339(ms: u64) -> String {
    let mut out = Vec::with_capacity(20);
    write(&mut out, ms, false);
    String::from_utf8(out).expect("digits and separators are ASCII")
}

/// Appends `2026-11-25T10:00:00.123Z`: what JavaScript's
/// `Date.prototype.toISOString` writes for `ms` since the epoch (years 1970
/// to 9999). Digit by digit: it runs per request, where `format!` costs.
pub fn write_iso_millis(out: &mut Vec<u8>, ms: u64) {
    write(out, ms, true);
}

fn write(out: &mut Vec<u8>, ms: u64, millis: bool) {
    let f = Fields::of_ms(ms);
    let mut digits = |n: u64, width: u32, then: u8| {
        for place in (0..width).rev() {
            out.push(b'0' + (n / 10u64.pow(place) % 10) as u8);
        }
        out.push(then);
    };
    digits(f.year, 4, b'-');
    digits(f.month, 2, b'-');
    digits(f.day, 2, b'T');
    digits(f.hour, 2, b':');
    digits(f.minute, 2, b':');
    if millis {
        digits(f.second, 2, b'.');
        digits(f.millis, 3, b'Z');
    } else {
        digits(f.second, 2, b'Z');
    }
}

/// Milliseconds since the epoch for a time written exactly as `toISOString`
/// writes it (as OneTrust stores `OptanonAlertBoxClosed`): three fraction
/// digits, `Z`, and a real calendar date and time — it must read back to
/// itself, which rules out `2026-02-30` and a leap second `:60`.
pub fn parse_iso_millis(s: &str) -> Option<u64> {
    if s.len() != 24 || s.as_bytes()[19] != b'.' {
        return None;
    }
    let fields = Fields::read(s)?;
    let ms = fields.ms();
    (Fields::of_ms(ms) == fields).then_some(ms)
}

/// Milliseconds since the epoch for `YYYY-MM-DDTHH:MM:SS[.fff]Z`; `None` otherwise.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    Fields::read(s).map(Fields::ms)
}

/// An instant's calendar fields, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
    millis: u64,
}

impl Fields {
    fn of_ms(ms: u64) -> Fields {
        let secs = ms / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days as i64);
        Fields {
            year: year as u64,
            month: month.into(),
            day: day.into(),
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
            millis: ms % 1000,
        }
    }

    fn ms(self) -> u64 {
        let days = days_from_civil(self.year as i64, self.month as u32, self.day as u32);
        ((days as u64 * 86_400) + self.hour * 3600 + self.minute * 60 + self.second) * 1000
            + self.millis
    }

    /// `YYYY-MM-DDTHH:MM:SS[.f…]Z` as written, each field in its range (a
    /// day up to 31 in any month, a second up to 60), the year from 1970.
    fn read(s: &str) -> Option<Fields> {
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
                // The first three digits, as milliseconds: ".7" is 700.
                (0..3).fold(0, |ms, i| {
                    ms * 10 + digits.as_bytes().get(i).map_or(0, |d| u64::from(d - b'0'))
                })
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
        Some(Fields {
            year,
            month,
            day,
            hour,
            minute,
            second,
            millis,
        })
    }
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
        let iso = |ms| {
            let mut out = Vec::new();
            write_iso_millis(&mut out, ms);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(iso(1_795_600_496_789), "2026-11-25T09:54:56.789Z");
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        for s in ["2026-11-23T09:00:00.000Z", "2024-02-29T23:59:59.999Z"] {
            let ms = parse_iso_millis(s).unwrap();
            assert_eq!(iso(ms), s);
            assert_eq!(parse_rfc3339(s), Some(ms));
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
            assert_eq!(parse_iso_millis(s), None, "{s}");
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
