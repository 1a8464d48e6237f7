//! Byte sizes written the way people write them (`512MiB`, `1.5GB`, `1048576`).
//!
//! Decimal units (`KB`, `MB`, `GB`, `TB` = 1000^n) and binary units (`KiB`, `MiB`, `GiB`, `TiB` =
//! 1024^n) are both accepted and kept distinct, because a file-size limit off by 7% surprises
//! nobody until a bucket quota does.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};

/// A number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// Parses `128MiB`, `1GiB`, `500KB`, `1.5GB`, `1048576` or `10 B` (units are case-sensitive
    /// for the `i`, otherwise case-insensitive; a fraction is rounded down to whole bytes).
    pub fn parse(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = (&text[..split], text[split..].trim());
        if number.is_empty() {
            return Err(format!(
                "invalid size `{s}`: expected a number with an optional unit, such as 512MiB or 1.5GB"
            ));
        }
        let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1_000,
            "mb" | "m" => 1_000_000,
            "gb" | "g" => 1_000_000_000,
            "tb" | "t" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => {
                return Err(format!(
                    "invalid size `{s}`: unknown unit `{unit}`; use B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)"
                ));
            }
        };
        let (whole, frac) = match number.split_once('.') {
            Some((w, f)) => (w, f),
            None => (number, ""),
        };
        if frac.contains('.') || (whole.is_empty() && frac.is_empty()) {
            return Err(format!("invalid size `{s}`: malformed number `{number}`"));
        }
        let too_large = || format!("invalid size `{s}`: too large");
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        let mut bytes = whole.checked_mul(u128::from(multiplier)).ok_or_else(too_large)?;
        if !frac.is_empty() {
            // Exact decimal arithmetic: 1.1GB is 1_100_000_000, not 1_099_999_999.
            let digits = frac.len().min(18);
            let frac: u128 = frac[..digits].parse().map_err(|_| too_large())?;
            bytes += frac * u128::from(multiplier) / 10u128.pow(digits as u32);
        }
        u64::try_from(bytes).map(ByteSize).map_err(|_| too_large())
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly (`512MiB`), else bytes (`1500B`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ByteSizeVisitor)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as 512MiB, 1.5GB or a number of bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        ByteSize::parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        u64::try_from(v)
            .map(ByteSize)
            .map_err(|_| E::custom(format!("a size cannot be negative (got {v})")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
        Err(E::custom(format!(
            "`{v}` is not a whole number of bytes; add a unit, e.g. `{v}GB`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(ByteSize::parse("128MiB"), Ok(ByteSize(128 << 20)));
        assert_eq!(ByteSize::parse("1GiB"), Ok(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("500KB"), Ok(ByteSize(500_000)));
        assert_eq!(ByteSize::parse("1.5GB"), Ok(ByteSize(1_500_000_000)));
        assert_eq!(ByteSize::parse("1.1GB"), Ok(ByteSize(1_100_000_000)));
        assert_eq!(ByteSize::parse("1.5KiB"), Ok(ByteSize(1536)));
        assert_eq!(ByteSize::parse("1048576"), Ok(ByteSize(1_048_576)));
        assert_eq!(ByteSize::parse("10 B"), Ok(ByteSize(10)));
        assert_eq!(ByteSize::parse("2 mib"), Ok(ByteSize(2 << 20)));
        assert_eq!(ByteSize::parse(".5KB"), Ok(ByteSize(500)));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(
            ByteSize::parse("12 parsecs")
                .unwrap_err()
                .contains("unknown unit `parsecs`")
        );
        assert!(ByteSize::parse("MiB").unwrap_err().contains("expected a number"));
        assert!(ByteSize::parse("1.2.3MB").unwrap_err().contains("malformed number"));
        assert!(ByteSize::parse("-1MB").unwrap_err().contains("expected a number"));
        assert!(ByteSize::parse("99999999TiB").unwrap_err().contains("too large"));
        assert!(ByteSize::parse("").is_err());
    }

    #[test]
    fn displays_exact_binary_units() {
        assert_eq!(ByteSize(512 << 20).to_string(), "512MiB");
        assert_eq!(ByteSize(1500).to_string(), "1500B");
        assert_eq!(ByteSize(0).to_string(), "0B");
        assert_eq!(ByteSize(3 << 30).to_string(), "3GiB");
    }

    #[test]
    fn deserializes_numbers_and_strings() {
        let v: Vec<ByteSize> = serde_norway::from_str("[1048576, 512MiB, \"1.5GB\"]").unwrap();
        assert_eq!(v, vec![ByteSize(1 << 20), ByteSize(512 << 20), ByteSize(1_500_000_000)]);
        let e = serde_norway::from_str::<Vec<ByteSize>>("[1, -5]").unwrap_err();
        assert!(e.to_string().contains("cannot be negative"), "{e}");
    }
}
