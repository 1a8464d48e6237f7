//! The `transforms:` list: record batch stages applied in order between decoding and the sink.
//!
//! Each item is a mapping with exactly one key naming the transform (an externally tagged enum,
//! which serde_norway reads without losing positions). Every check that can be done without the
//! source's schema is done here: empty or duplicate column lists, duplicate rename targets, an
//! empty hash key, and a filter whose `op` and `value` do not fit together.

use std::collections::BTreeSet;
use std::fmt;

use etl_core::Secret;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::de::{KnownKey, UniqueName, column_list, non_empty_secret, non_empty_string, str_with};

/// One transform of the `transforms:` list.
///
/// ```yaml
/// transforms:
///   - select: [delivered_at, result, recipient]
///   - drop: [detail]
///   - rename: {sender: mail_from}
///   - hash: {columns: [sender, recipient], key: ${ETL_HASH_KEY}}
///   - filter: {column: result, op: "=", value: sent}
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum TransformConfig {
    /// `select: [a, b]`: keep only these columns, in this order.
    Select(Vec<String>),
    /// `drop: [a, b]`: remove these columns.
    Drop(Vec<String>),
    /// `rename: {old: new, ...}`: rename columns; the targets must be distinct.
    Rename(Vec<(String, String)>),
    /// `hash: {columns: [a, b], key: ${KEY}}`: replace the values of these columns with a keyed
    /// hash (HMAC) so that they can still be joined and counted but not read. The key (required,
    /// non-empty) is a secret.
    Hash { columns: Vec<String>, key: Secret },
    /// `filter: {column: c, op: "=", value: v}`: keep only the rows where the comparison holds.
    /// `op` is one of `=`, `!=`, `<`, `<=`, `>`, `>=`, `in` (or the words `eq`, `ne`, `lt`, `le`,
    /// `gt`, `ge`; quote the symbols in YAML: `op: ">="`). `value` is a scalar (string, integer,
    /// float, bool), and a non-empty list of scalars exactly when `op` is `in`.
    Filter {
        column: String,
        op: FilterOp,
        value: Literal,
    },
}

impl TransformConfig {
    /// The transform's key as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            TransformConfig::Select(_) => "select",
            TransformConfig::Drop(_) => "drop",
            TransformConfig::Rename(_) => "rename",
            TransformConfig::Hash { .. } => "hash",
            TransformConfig::Filter { .. } => "filter",
        }
    }
}

/// A filter comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// The value is a list; the row is kept when the column equals one of its items.
    In,
}

impl FilterOp {
    /// Reads `=`/`==`/`eq`, `!=`/`ne`, `<`/`lt`, `<=`/`le`, `>`/`gt`, `>=`/`ge`, `in`.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "=" | "==" | "eq" => FilterOp::Eq,
            "!=" | "<>" | "ne" => FilterOp::Ne,
            "<" | "lt" => FilterOp::Lt,
            "<=" | "le" => FilterOp::Le,
            ">" | "gt" => FilterOp::Gt,
            ">=" | "ge" => FilterOp::Ge,
            "in" => FilterOp::In,
            _ => {
                return Err(format!(
                    "unknown filter op `{s}`; expected one of: =, !=, <, <=, >, >=, in"
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FilterOp::Eq => "=",
            FilterOp::Ne => "!=",
            FilterOp::Lt => "<",
            FilterOp::Le => "<=",
            FilterOp::Gt => ">",
            FilterOp::Ge => ">=",
            FilterOp::In => "in",
        }
    }
}

impl fmt::Display for FilterOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A constant in a filter, typed as YAML typed it (`1` is an integer, `"1"` a string).
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Only with `op: in`; its items are scalars.
    List(Vec<Literal>),
}

impl<'de> Deserialize<'de> for TransformConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TransformVisitor)
    }
}

const TRANSFORMS: &[&str] = &["select", "drop", "rename", "hash", "filter"];

/// Reads `{<kind>: <arguments>}` by hand: serde_norway reads an externally tagged enum only from
/// a YAML tag (`!select [a]`), and the single-key mapping reads better.
struct TransformVisitor;

impl<'de> Visitor<'de> for TransformVisitor {
    type Value = TransformConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a mapping with one key, the transform: one of {}",
            TRANSFORMS.join(", ")
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TransformConfig, A::Error> {
        let Some(kind) = map.next_key_seed(TransformName)? else {
            return Err(de::Error::custom(format!(
                "a transform needs one key naming it: one of {}",
                TRANSFORMS.join(", ")
            )));
        };
        let transform = match kind {
            "select" => TransformConfig::Select(map.next_value::<Columns>()?.0),
            "drop" => TransformConfig::Drop(map.next_value::<Columns>()?.0),
            "rename" => TransformConfig::Rename(map.next_value::<Renames>()?.0),
            "hash" => {
                let h: RawHash = map.next_value()?;
                TransformConfig::Hash {
                    columns: h.columns,
                    key: h.key,
                }
            }
            _ => {
                let f: RawFilter = map.next_value()?;
                TransformConfig::Filter {
                    column: f.column,
                    op: f.op,
                    value: f.value,
                }
            }
        };
        if let Some(never) = map.next_key_seed(SecondKey { first: kind })? {
            match never {}
        }
        Ok(transform)
    }
}

/// Reads the transform's name; an unknown one is reported at its position.
struct TransformName;

impl<'de> DeserializeSeed<'de> for TransformName {
    type Value = &'static str;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'static str, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for TransformName {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a transform: one of {}", TRANSFORMS.join(", "))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<&'static str, E> {
        TRANSFORMS
            .iter()
            .copied()
            .find(|t| *t == v)
            .ok_or_else(|| E::unknown_variant(v, TRANSFORMS))
    }
}

/// A second key in one transform item is always an error, reported at that key.
struct SecondKey {
    first: &'static str,
}

impl<'de> DeserializeSeed<'de> for SecondKey {
    type Value = std::convert::Infallible;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        str_with(d, "no second key", |k| {
            Err(format!(
                "a transform item has exactly one key, but `{k}` follows `{}`; start a new item with `- `",
                self.first
            ))
        })
    }
}

/// A column list (`select`, `drop`), checked by [`column_list`].
struct Columns(Vec<String>);

impl<'de> Deserialize<'de> for Columns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        column_list(d).map(Columns)
    }
}

/// The pairs of a `rename`, checked by [`rename_map`].
struct Renames(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Renames {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        rename_map(d).map(Renames)
    }
}

impl<'de> Deserialize<'de> for RawFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FilterVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `columns` and `key`")]
struct RawHash {
    #[serde(deserialize_with = "column_list")]
    columns: Vec<String>,
    #[serde(deserialize_with = "non_empty_secret")]
    key: Secret,
}

struct RawFilter {
    column: String,
    op: FilterOp,
    value: Literal,
}

fn rename_map<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    d.deserialize_map(RenameVisitor)
}

struct RenameVisitor;

impl<'de> Visitor<'de> for RenameVisitor {
    type Value = Vec<(String, String)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of `old_name: new_name`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut sources = BTreeSet::new();
        let mut targets = BTreeSet::new();
        let mut pairs = Vec::new();
        while let Some(from) = map.next_key_seed(UniqueName {
            seen: &mut sources,
            what: "column",
        })? {
            let to = map.next_value_seed(UniqueName {
                seen: &mut targets,
                what: "rename target",
            })?;
            pairs.push((from, to));
        }
        if pairs.is_empty() {
            return Err(de::Error::custom("needs at least one `old_name: new_name` pair"));
        }
        Ok(pairs)
    }
}

const FILTER_KEYS: &[&str] = &["column", "op", "value"];

struct FilterVisitor;

impl<'de> Visitor<'de> for FilterVisitor {
    type Value = RawFilter;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `column`, `op` and `value`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFilter, A::Error> {
        let (mut column, mut op, mut value) = (None, None, None);
        while let Some(key) = map.next_key_seed(KnownKey { known: FILTER_KEYS })? {
            let duplicate = match key {
                "column" => column.replace(map.next_value_seed(ColumnSeed)?).is_some(),
                "op" => op
                    .replace(map.next_value_seed(OpSeed { value: value.as_ref() })?)
                    .is_some(),
                _ => value
                    .replace(map.next_value_seed(LiteralSeed { op, nested: false })?)
                    .is_some(),
            };
            if duplicate {
                return Err(de::Error::duplicate_field(key));
            }
        }
        Ok(RawFilter {
            column: column.ok_or_else(|| de::Error::missing_field("column"))?,
            op: op.ok_or_else(|| de::Error::missing_field("op"))?,
            value: value.ok_or_else(|| de::Error::missing_field("value"))?,
        })
    }
}

struct ColumnSeed;

impl<'de> DeserializeSeed<'de> for ColumnSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        non_empty_string(d)
    }
}

/// Reads `op` and checks it against a `value` read before it.
struct OpSeed<'a> {
    value: Option<&'a Literal>,
}

impl<'de> DeserializeSeed<'de> for OpSeed<'_> {
    type Value = FilterOp;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<FilterOp, D::Error> {
        str_with(d, "a comparison: =, !=, <, <=, >, >= or in", |v| {
            let op = FilterOp::parse(v)?;
            match (op, self.value) {
                (FilterOp::In, Some(value)) if !matches!(value, Literal::List(_)) => {
                    Err("`in` needs a list `value`, e.g. [sent, retry]".to_string())
                }
                (op, Some(Literal::List(_))) if op != FilterOp::In => Err(format!(
                    "`{op}` compares with one value, but `value` is a list; use `in` for a list"
                )),
                _ => Ok(op),
            }
        })
    }
}

/// Reads a filter value and checks it against an `op` read before it.
struct LiteralSeed {
    op: Option<FilterOp>,
    nested: bool,
}

impl<'de> DeserializeSeed<'de> for LiteralSeed {
    type Value = Literal;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Literal, D::Error> {
        d.deserialize_any(self)
    }
}

impl LiteralSeed {
    fn scalar<E: de::Error>(&self, lit: Literal) -> Result<Literal, E> {
        if self.op == Some(FilterOp::In) && !self.nested {
            return Err(E::custom("`in` needs a list of values, e.g. [sent, retry]"));
        }
        Ok(lit)
    }
}

impl<'de> Visitor<'de> for LiteralSeed {
    type Value = Literal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nested {
            f.write_str("a scalar (string, integer, float or bool)")
        } else {
            f.write_str("a scalar (string, integer, float or bool), or a list of scalars for `in`")
        }
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Literal, E> {
        self.scalar(Literal::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Literal, E> {
        self.scalar(Literal::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Literal, E> {
        let v = i64::try_from(v).map_err(|_| E::custom(format!("{v} is too large for a 64-bit integer")))?;
        self.scalar(Literal::Int(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Literal, E> {
        self.scalar(Literal::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Literal, E> {
        self.scalar(Literal::Str(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Literal, E> {
        Err(E::custom(
            "a filter value cannot be null; quote it (\"null\") to compare with the text null",
        ))
    }

    fn visit_none<E: de::Error>(self) -> Result<Literal, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Literal, A::Error> {
        if self.nested {
            return Err(de::Error::custom("a list of `in` values may only contain scalars"));
        }
        if let Some(op) = self.op.filter(|op| *op != FilterOp::In) {
            return Err(de::Error::custom(format!(
                "`{op}` compares with one value, but this is a list; use `op: in` for a list"
            )));
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(LiteralSeed {
            op: self.op,
            nested: true,
        })? {
            items.push(item);
        }
        if items.is_empty() {
            return Err(de::Error::custom("the list of `in` values must not be empty"));
        }
        Ok(Literal::List(items))
    }
}
