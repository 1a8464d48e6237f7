//! ISO 8601 / RFC 3339 timestamps with a UTC offset, to UTC microseconds, for the CSV formats.
//!
//! Parsed by hand from fixed positions: a general date parser costs more than the rest of a
//! record. Consecutive records almost always share their date, so the date's day number is
//! cached.

use crate::civil::{days_from_civil, days_in_month, digits};

/// Days since the epoch of the last date parsed.
#[derive(Debug, Default)]
pub(crate) struct DateCache {
    date: [u8; 10],
    days: i64,
}

impl DateCache {
    /// `YYYY-MM-DD` to days since 1970-01-01.
    fn days(&mut self, f: &[u8]) -> Option<i64> {
        // Checked first: the initial cache (all zero bytes) must never match.
        if f[4] != b'-' || f[7] != b'-' {
            return None;
        }
        if f == self.date {
            return Some(self.days);
        }
        let (y, m, d) = (digits(&f[0..4])?, digits(&f[5..7])?, digits(&f[8..10])?);
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        self.days = days_from_civil(i64::from(y), m, d);
        self.date.copy_from_slice(f);
        Some(self.days)
    }
}

/// `YYYY-MM-DDThh:mm:ss[.f{1,9}]` followed by `Z` or an offset `±hh:mm` (also `±hhmm`, `±hh`),
/// to microseconds since the epoch in UTC. `t`/`z` and a space for `T` are accepted as RFC 3339
/// allows; fractional digits past the sixth are truncated. `None` for anything else, including a
/// time without an offset (its zone is unknown) and a leap second (Arrow cannot hold it).
pub(crate) fn parse_offset_time(f: &[u8], dates: &mut DateCache) -> Option<i64> {
    if f.len() < 20 || !matches!(f[10], b'T' | b't' | b' ') || f[13] != b':' || f[16] != b':' {
        return None;
    }
    let days = dates.days(&f[..10])?;
    let (h, m, s) = (two(f[11], f[12])?, two(f[14], f[15])?, two(f[17], f[18])?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let mut rest = &f[19..];
    let mut micros = 0i64;
    if let [b'.', tail @ ..] = rest {
        let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        let kept = n.min(6);
        micros = i64::from(digits(&tail[..kept])?) * 10i64.pow(6 - kept as u32);
        rest = &tail[n..];
    }
    let offset_secs = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), zone @ ..] => {
            let (oh, om) = match zone {
                [a, b] => (two(*a, *b)?, 0),
                [a, b, c, d] => (two(*a, *b)?, two(*c, *d)?),
                [a, b, b':', c, d] => (two(*a, *b)?, two(*c, *d)?),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let secs = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let local = days * 86_400 + i64::from(h * 3600 + m * 60 + s);
    Some((local - offset_secs) * 1_000_000 + micros)
}

fn two(a: u8, b: u8) -> Option<u32> {
    let (a, b) = (a.wrapping_sub(b'0'), b.wrapping_sub(b'0'));
    (a <= 9 && b <= 9).then(|| u32::from(a) * 10 + u32::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::micros;

    fn parse(s: &str) -> Option<i64> {
        parse_offset_time(s.as_bytes(), &mut DateCache::default())
    }

    #[test]
    fn offsets_and_fractions_become_utc_microseconds() {
        let same = [
            ("2025-11-17T09:01:08+09:00", "2025-11-17T00:01:08Z"),
            ("2025-11-17T09:01:08+0900", "2025-11-17T00:01:08Z"),
            ("2025-11-17T09:01:08+09", "2025-11-17T00:01:08Z"),
            ("2025-11-17T08:01:08.5-05:30", "2025-11-17T13:31:08.5Z"),
            ("2025-11-17 00:01:08Z", "2025-11-17T00:01:08Z"),
            ("2025-11-17t00:01:08z", "2025-11-17T00:01:08Z"),
            ("2025-11-17T00:01:08.123456789Z", "2025-11-17T00:01:08.123456Z"),
            ("2025-11-17T00:01:08.1Z", "2025-11-17T00:01:08.1Z"),
            ("2025-01-01T05:00:00+09:00", "2024-12-31T20:00:00Z"),
            ("2024-02-29T23:59:59.999-00:00", "2024-02-29T23:59:59.999Z"),
            ("1970-01-01T08:59:59+09:00", "1969-12-31T23:59:59Z"),
        ];
        for (input, utc) in same {
            assert_eq!(parse(input), Some(micros(utc)), "{input}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "2025-11-17T09:01:08",
            "2025-11-17T09:01:08.Z",
            "2025-11-17T09:01:08.1234567890Z",
            "2025-11-17T09:01:08+9:00",
            "2025-11-17T09:01:08+24:00",
            "2025-11-17T09:01:08+09:60",
            "2025-11-17T09:01:08+09:0",
            "2025-11-17T09:01:08 +09:00",
            "2025-11-17T09:01:60Z",
            "2025-11-17T24:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025/11/17T09:01:08Z",
            "2025-11-17X09:01:08Z",
            "2025-11-17T09-01-08Z",
            "2025-11-17T09:01:08ZZ",
            "２025-11-17T09:01:08Z",
            "\0\0\0\0\0\0\0\0\0\0T00:00:00Z",
            "",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_date_cache_never_serves_a_stale_day() {
        let mut dates = DateCache::default();
        let a = parse_offset_time(b"2025-11-17T00:00:00Z", &mut dates);
        let b = parse_offset_time(b"2025-11-17T00:00:01Z", &mut dates);
        let c = parse_offset_time(b"2025-11-18T00:00:00Z", &mut dates);
        assert_eq!(a, Some(micros("2025-11-17T00:00:00Z")));
        assert_eq!(b, Some(micros("2025-11-17T00:00:01Z")));
        assert_eq!(c, Some(micros("2025-11-18T00:00:00Z")));
        // A bad date is not cached.
        assert_eq!(parse_offset_time(b"2025-02-30T00:00:00Z", &mut dates), None);
        assert_eq!(parse_offset_time(b"2025-02-30T00:00:00Z", &mut dates), None);
    }
}
