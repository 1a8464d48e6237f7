//! Validation that runs while the YAML is read, so every error keeps its position.
//!
//! serde_norway attaches the position of the scalar, sequence or mapping being read to an error
//! raised *inside* that read, and the position of some enclosing mapping to an error raised after
//! it. A range check done after deserialization would therefore point at the top of the section
//! (or of the file). So every check here lives in a `Visitor` or a `DeserializeSeed`: an integer
//! is checked in `visit_i64`, a URL in `visit_str`, a duplicate list element while that element is
//! read, and a check that spans a whole section (`backoff_base <= backoff_max`) in the section's
//! `visit_map`. The checks are pure: no I/O, no network.
//!
//! Messages name the offending key through serde_norway's path prefix (`source.max_items: ...`);
//! a message that already names its section in backticks is shown without the prefix.

use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;

use etl_core::Secret;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Reads an integer and checks `min <= n <= max` while the scalar is read.
pub(crate) fn int_in<'de, D: Deserializer<'de>>(d: D, min: i64, max: i64) -> Result<i64, D::Error> {
    d.deserialize_i64(IntIn { min, max })
}

struct IntIn {
    min: i64,
    max: i64,
}

impl IntIn {
    fn check<E: de::Error>(&self, v: i128) -> Result<i64, E> {
        if v >= i128::from(self.min) && v <= i128::from(self.max) {
            // In range, so it fits in i64.
            Ok(v as i64)
        } else if self.max >= i64::from(u32::MAX) {
            // Such a maximum is a type limit, not a rule worth stating.
            Err(E::custom(format!("must be at least {} (got {v})", self.min)))
        } else {
            Err(E::custom(format!(
                "must be between {} and {} (got {v})",
                self.min, self.max
            )))
        }
    }
}

impl Visitor<'_> for IntIn {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.max >= i64::from(u32::MAX) {
            write!(f, "an integer of at least {}", self.min)
        } else {
            write!(f, "an integer between {} and {}", self.min, self.max)
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        self.check(i128::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        self.check(i128::from(v))
    }
}

/// `deserialize_with`: a count that must be at least 1 (workers, capacities, batch sizes).
pub(crate) fn positive_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let max = i64::try_from(usize::MAX).unwrap_or(i64::MAX);
    // In range by construction.
    int_in(d, 1, max).map(|v| v as usize)
}

/// `deserialize_with`: a count that must be at least 1 and fit in a `u32`.
pub(crate) fn positive_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    int_in(d, 1, i64::from(u32::MAX)).map(|v| v as u32)
}

/// Reads a string scalar and converts it with `check`, whose error message gets the position.
pub(crate) fn str_with<'de, D, T, F>(d: D, expecting: &'static str, check: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(&str) -> Result<T, String>,
{
    d.deserialize_str(StrWith {
        expecting,
        check,
        marker: PhantomData,
    })
}

struct StrWith<F, T> {
    expecting: &'static str,
    check: F,
    marker: PhantomData<T>,
}

impl<T, F: FnOnce(&str) -> Result<T, String>> Visitor<'_> for StrWith<F, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.check)(v).map_err(E::custom)
    }
}

/// `deserialize_with`: a string that must not be empty (column names, URLs, paths).
pub(crate) fn non_empty_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    str_with(d, "a non-empty string", |v| {
        if v.trim().is_empty() {
            Err("must not be empty".to_string())
        } else {
            Ok(v.to_string())
        }
    })
}

/// `deserialize_with`: a secret that must not be empty. The value never appears in a message.
pub(crate) fn non_empty_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    str_with(d, "a non-empty string (a secret)", |v| {
        if v.is_empty() {
            Err("must not be empty (is the environment variable set to an empty value?)".to_string())
        } else {
            Ok(Secret::new(v))
        }
    })
}

/// `deserialize_with`: a non-empty list of distinct, non-empty column names; a duplicate is
/// reported at its own position.
pub(crate) fn column_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_seq(ColumnList)
}

struct ColumnList;

impl<'de> Visitor<'de> for ColumnList {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of column names")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        while let Some(name) = seq.next_element_seed(UniqueName {
            seen: &mut seen,
            what: "column",
        })? {
            out.push(name);
        }
        if out.is_empty() {
            return Err(de::Error::custom("the list of columns must not be empty"));
        }
        Ok(out)
    }
}

/// Reads one non-empty name and checks that it was not seen before.
pub(crate) struct UniqueName<'a> {
    pub seen: &'a mut BTreeSet<String>,
    pub what: &'static str,
}

impl<'de> DeserializeSeed<'de> for UniqueName<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        let what = self.what;
        let seen = self.seen;
        str_with(d, "a name", move |v| {
            if v.trim().is_empty() {
                Err(format!("{what} name must not be empty"))
            } else if !seen.insert(v.to_string()) {
                Err(format!("duplicate {what} `{v}`"))
            } else {
                Ok(v.to_string())
            }
        })
    }
}

/// Reads a key and requires it to be `expected` (used for "`type` must be the first key").
pub(crate) struct ExpectKey {
    pub expected: &'static str,
    pub section: &'static str,
}

impl<'de> DeserializeSeed<'de> for ExpectKey {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        str_with(d, "a key", |k| {
            if k == self.expected {
                Ok(())
            } else {
                Err(format!(
                    "`{}` must be the first key of `{}` (found `{k}`)",
                    self.expected, self.section
                ))
            }
        })
    }
}

/// Reads a key and requires it to be one of `known`; an unknown key is reported at its own
/// position with serde's "unknown field" message, which the loader rephrases.
pub(crate) struct KnownKey {
    pub known: &'static [&'static str],
}

impl<'de> DeserializeSeed<'de> for KnownKey {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'static str, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KnownKey {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "one of: {}", self.known.join(", "))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<&'static str, E> {
        self.known
            .iter()
            .copied()
            .find(|k| *k == v)
            .ok_or_else(|| E::unknown_field(v, self.known))
    }
}

/// Deserializes a mapping as `R` and then runs `check` on it, so that a problem spanning several
/// keys is reported at the section's position rather than at its parent's.
pub(crate) fn checked_map<'de, D, R, T, F>(d: D, expecting: &'static str, check: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    R: de::Deserialize<'de>,
    F: FnOnce(R) -> Result<T, String>,
{
    d.deserialize_map(CheckedMap {
        expecting,
        check,
        marker: PhantomData,
    })
}

struct CheckedMap<R, T, F> {
    expecting: &'static str,
    check: F,
    marker: PhantomData<(R, T)>,
}

impl<'de, R, T, F> Visitor<'de> for CheckedMap<R, T, F>
where
    R: de::Deserialize<'de>,
    F: FnOnce(R) -> Result<T, String>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        let raw = R::deserialize(MapAccessDeserializer::new(map))?;
        (self.check)(raw).map_err(de::Error::custom)
    }
}

/// A tagged section (`source:`, `sink:`): a mapping whose first key is `type`. The rest of the
/// same mapping is handed to the variant's own `Deserialize` through [`MapAccessDeserializer`],
/// which keeps the parser's positions (an internally tagged enum would buffer the mapping and
/// lose them).
pub(crate) trait Tagged: Sized {
    /// The section name, as written in the file.
    const SECTION: &'static str;
    /// The accepted `type` values.
    const KINDS: &'static [&'static str];
    /// Reads the rest of the mapping as the variant of `kind` (one of [`Tagged::KINDS`]).
    fn variant<'de, A: MapAccess<'de>>(kind: &'static str, rest: A) -> Result<Self, A::Error>;
}

pub(crate) fn tagged<'de, D: Deserializer<'de>, T: Tagged>(d: D) -> Result<T, D::Error> {
    d.deserialize_map(TaggedVisitor(PhantomData))
}

struct TaggedVisitor<T>(PhantomData<T>);

impl<'de, T: Tagged> Visitor<'de> for TaggedVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a mapping whose first key is `type` (one of: {})",
            T::KINDS.join(", ")
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let Some(()) = map.next_key_seed(ExpectKey {
            expected: "type",
            section: T::SECTION,
        })?
        else {
            return Err(de::Error::custom(format!(
                "`{}` needs a `type` (one of: {})",
                T::SECTION,
                T::KINDS.join(", ")
            )));
        };
        let kind = map.next_value_seed(KindSeed {
            section: T::SECTION,
            known: T::KINDS,
        })?;
        T::variant(kind, map)
    }
}

struct KindSeed {
    section: &'static str,
    known: &'static [&'static str],
}

impl<'de> DeserializeSeed<'de> for KindSeed {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'static str, D::Error> {
        str_with(d, "a type name", |v| {
            self.known.iter().copied().find(|k| *k == v).ok_or_else(|| {
                format!(
                    "unknown {} type `{v}`; known types: {}",
                    self.section,
                    self.known.join(", ")
                )
            })
        })
    }
}
