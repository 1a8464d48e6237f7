//! Human durations (`500ms`, `10s`, `15m`, `1h30m`, `2d`) for timeouts, backoff and settle lags.
//!
//! A bare number is rejected on purpose: `timeout: 10` is ambiguous (seconds? milliseconds?) and a
//! wrong guess turns into a hang or a storm of retries, so the error tells how to write it.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

const FORMS: &str = "expected a number with a unit, such as 500ms, 10s, 15m, 1h30m or 2d";

/// Parses a duration made of one or more `<whole number><unit>` parts, units `ms`, `s`, `m`,
/// `h` and `d` (`1h30m` = 90 minutes). Spaces between parts are allowed.
pub fn parse(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err(format!("empty duration; {FORMS}"));
    }
    if text.starts_with('-') {
        return Err(format!("invalid duration `{s}`: a duration cannot be negative"));
    }
    if text.parse::<f64>().is_ok() {
        return Err(format!(
            "invalid duration `{s}`: a bare number has no unit; write e.g. `{text}s` or `{text}m`"
        ));
    }
    let bytes = text.as_bytes();
    let mut total = Duration::ZERO;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!("invalid duration `{s}`: {FORMS}"));
        }
        if i < bytes.len() && (bytes[i] == b'.' || bytes[i] == b',') {
            return Err(format!(
                "invalid duration `{s}`: use whole numbers and combine units instead (1h30m, not 1.5h)"
            ));
        }
        let number: u64 = text[start..i]
            .parse()
            .map_err(|_| format!("invalid duration `{s}`: number too large"))?;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit_secs = match &text[unit_start..i] {
            "ms" => None,
            "s" => Some(1),
            "m" => Some(60),
            "h" => Some(3600),
            "d" => Some(86_400),
            "" => {
                return Err(format!(
                    "invalid duration `{s}`: `{number}` has no unit; units are ms, s, m, h, d"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration `{s}`: unknown unit `{other}`; units are ms, s, m, h, d"
                ));
            }
        };
        let part = match unit_secs {
            None => Some(Duration::from_millis(number)),
            Some(mult) => number.checked_mul(mult).map(Duration::from_secs),
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| format!("invalid duration `{s}`: too large"))?;
    }
    Ok(total)
}

/// Formats a duration the way [`parse`] reads it (`1h30m`, `500ms`, `0s`), for logs and messages.
pub fn format(d: Duration) -> String {
    let mut out = String::new();
    let mut secs = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let ms = d.subsec_millis();
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// `deserialize_with` helper: errors are raised while the scalar is read, so the YAML parser
/// attaches the scalar's position.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor { positive: false })
}

/// Like [`deserialize`], but zero is rejected (timeouts, budgets).
pub(crate) fn deserialize_positive<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor { positive: true })
}

struct DurationVisitor {
    positive: bool,
}

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as 500ms, 10s, 15m, 1h30m or 2d")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        let d = parse(v).map_err(E::custom)?;
        if self.positive && d.is_zero() {
            return Err(E::custom(format!("must be longer than zero (got `{v}`)")));
        }
        Ok(d)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "a bare number has no unit; write e.g. `{v}s` or `{v}m`"
        )))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "a bare number has no unit; write e.g. `{v}s` (and a duration cannot be negative)"
        )))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "`{v}` has no unit; use whole numbers with units such as 1h30m or 500ms"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1s500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_with_a_hint() {
        assert_eq!(
            parse("10").unwrap_err(),
            "invalid duration `10`: a bare number has no unit; write e.g. `10s` or `10m`"
        );
        assert!(parse("1.5h").unwrap_err().contains("1h30m"));
        assert!(parse("5 minutes").unwrap_err().contains("unknown unit `minutes`"));
        assert!(parse("-5m").unwrap_err().contains("cannot be negative"));
        assert!(parse("").unwrap_err().contains("empty duration"));
        assert!(parse("h").unwrap_err().contains("expected a number with a unit"));
        assert!(parse("10m5").unwrap_err().contains("`5` has no unit"));
        assert!(parse("99999999999999999999d").unwrap_err().contains("too large"));
        assert!(parse("999999999999999999d").unwrap_err().contains("too large"));
    }

    #[test]
    fn formats_back() {
        for s in ["500ms", "10s", "15m", "1h30m", "2d", "1d2h3m4s5ms", "0s"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
    }
}
