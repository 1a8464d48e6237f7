//! Batch-to-batch stages configured in a pipeline's `transforms:` list, applied in order.
//!
//! Each stage checks its columns against the input schema in [`Transform::output_schema`], which
//! the binary calls at `etl validate` and before a run, so a stage that names a missing column
//! fails before any request is sent, never mid-run.
//!
//! | stage | effect |
//! |---|---|
//! | `select: [a, b]` | keep these columns, in this order |
//! | `drop: [a]` | remove these columns |
//! | `rename: {a: b}` | rename columns |
//! | `hash: {columns: [a], key: ...}` | replace values by the hex HMAC-SHA256 of their text under a secret key (nulls stay null) |
//! | `filter: {column, op, value}` | keep rows where `column op value` is true on the typed column (null -> dropped) |

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, Scalar, StringArray, cast::AsArray};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use etl_config::{FilterOp, Literal, TransformConfig};
use etl_core::{Secret, StageError, Transform};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a transform cannot apply.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("column `{column}` does not exist; columns are: {available}")]
    MissingColumn { column: String, available: String },
    #[error("column `{0}` appears twice in the output")]
    Duplicate(String),
    #[error("value {value} cannot be compared with column `{column}` of type {data_type}: {reason}")]
    Literal {
        column: String,
        value: String,
        data_type: DataType,
        reason: String,
    },
    #[error("{0}")]
    Arrow(#[from] ArrowError),
}

impl From<TransformError> for StageError {
    fn from(e: TransformError) -> Self {
        match e {
            TransformError::Arrow(_) => StageError::internal(e),
            _ => StageError::permanent(e),
        }
    }
}

/// Builds the stages of a pipeline's `transforms:` list.
pub fn build(configs: &[TransformConfig]) -> Vec<Arc<dyn Transform>> {
    configs
        .iter()
        .map(|c| -> Arc<dyn Transform> {
            match c {
                TransformConfig::Select(cols) => Arc::new(Select(cols.clone())),
                TransformConfig::Drop(cols) => Arc::new(Drop(cols.clone())),
                TransformConfig::Rename(pairs) => Arc::new(Rename(pairs.clone())),
                TransformConfig::Hash { columns, key } => Arc::new(Hash {
                    columns: columns.clone(),
                    key: key.clone(),
                }),
                TransformConfig::Filter { column, op, value } => Arc::new(Filter {
                    column: column.clone(),
                    op: *op,
                    value: value.clone(),
                }),
            }
        })
        .collect()
}

fn index_of(schema: &Schema, column: &str) -> Result<usize, TransformError> {
    schema.index_of(column).map_err(|_| TransformError::MissingColumn {
        column: column.to_string(),
        available: schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// `select`: keep the named columns in the given order.
#[derive(Debug)]
pub struct Select(pub Vec<String>);

impl Select {
    fn indices(&self, schema: &Schema) -> Result<Vec<usize>, TransformError> {
        let mut seen = std::collections::HashSet::new();
        self.0
            .iter()
            .map(|c| {
                if !seen.insert(c.as_str()) {
                    return Err(TransformError::Duplicate(c.clone()));
                }
                index_of(schema, c)
            })
            .collect()
    }
}

impl Transform for Select {
    fn describe(&self) -> String {
        format!("select({})", self.0.join(", "))
    }
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, StageError> {
        Ok(Arc::new(
            input.project(&self.indices(input)?).map_err(TransformError::from)?,
        ))
    }
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch, StageError> {
        let idx = self.indices(&batch.schema())?;
        Ok(batch.project(&idx).map_err(TransformError::from)?)
    }
}

/// `drop`: remove the named columns.
#[derive(Debug)]
pub struct Drop(pub Vec<String>);

impl Drop {
    fn keep(&self, schema: &Schema) -> Result<Vec<usize>, TransformError> {
        for c in &self.0 {
            index_of(schema, c)?;
        }
        Ok((0..schema.fields().len())
            .filter(|&i| !self.0.iter().any(|c| c == schema.field(i).name()))
            .collect())
    }
}

impl Transform for Drop {
    fn describe(&self) -> String {
        format!("drop({})", self.0.join(", "))
    }
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, StageError> {
        Ok(Arc::new(
            input.project(&self.keep(input)?).map_err(TransformError::from)?,
        ))
    }
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch, StageError> {
        let keep = self.keep(&batch.schema())?;
        Ok(batch.project(&keep).map_err(TransformError::from)?)
    }
}

/// `rename`: rename columns (`from -> to`); the result must not have two columns of one name.
#[derive(Debug)]
pub struct Rename(pub Vec<(String, String)>);

impl Rename {
    fn schema(&self, input: &Schema) -> Result<Schema, TransformError> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (from, to) in &self.0 {
            let i = index_of(input, from)?;
            fields[i] = fields[i].clone().with_name(to);
        }
        let mut seen = std::collections::HashSet::new();
        for f in &fields {
            if !seen.insert(f.name().clone()) {
                return Err(TransformError::Duplicate(f.name().clone()));
            }
        }
        Ok(Schema::new_with_metadata(fields, input.metadata().clone()))
    }
}

impl Transform for Rename {
    fn describe(&self) -> String {
        let pairs: Vec<String> = self.0.iter().map(|(a, b)| format!("{a} -> {b}")).collect();
        format!("rename({})", pairs.join(", "))
    }
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, StageError> {
        Ok(Arc::new(self.schema(input)?))
    }
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch, StageError> {
        let schema = Arc::new(self.schema(&batch.schema())?);
        Ok(RecordBatch::try_new(schema, batch.columns().to_vec()).map_err(TransformError::from)?)
    }
}

/// `hash`: pseudonymise columns with a keyed HMAC-SHA256, hex-encoded, so analysts can still
/// join and count on them without seeing the values. Non-string columns are hashed on their
/// text form; the output column is Utf8; nulls stay null.
pub struct Hash {
    pub columns: Vec<String>,
    pub key: Secret,
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hash")
            .field("columns", &self.columns)
            .field("key", &self.key)
            .finish()
    }
}

impl Hash {
    fn hash_array(&self, array: &ArrayRef) -> Result<ArrayRef, TransformError> {
        let text = cast_with_options(array, &DataType::Utf8, &CastOptions::default())?;
        let text = text.as_string::<i32>();
        let mac = Hmac::<Sha256>::new_from_slice(self.key.expose().as_bytes())
            .map_err(|e| ArrowError::InvalidArgumentError(format!("HMAC key: {e}")))?;
        let mut buf = [0u8; 64];
        let out: StringArray = text
            .iter()
            .map(|v| {
                v.map(|v| {
                    let mut m = mac.clone();
                    m.update(v.as_bytes());
                    let digest = m.finalize().into_bytes();
                    hex::encode_to_slice(digest, &mut buf).expect("64-byte buffer for a 32-byte digest");
                    std::str::from_utf8(&buf).expect("hex is ASCII").to_string()
                })
            })
            .collect();
        Ok(Arc::new(out))
    }
}

impl Transform for Hash {
    fn describe(&self) -> String {
        format!("hash({})", self.columns.join(", "))
    }
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, StageError> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        for c in &self.columns {
            let i = index_of(input, c)?;
            fields[i] = Field::new(c, DataType::Utf8, fields[i].is_nullable());
        }
        Ok(Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())))
    }
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch, StageError> {
        let schema = self.output_schema(&batch.schema())?;
        let mut columns = batch.columns().to_vec();
        for c in &self.columns {
            let i = index_of(&batch.schema(), c)?;
            columns[i] = self.hash_array(&columns[i])?;
        }
        Ok(RecordBatch::try_new(schema, columns).map_err(TransformError::from)?)
    }
}

/// `filter`: keep the rows where `column op value` holds, compared on the column's own type
/// (a timestamp column compares with an RFC 3339 literal, a number column numerically).
#[derive(Debug)]
pub struct Filter {
    pub column: String,
    pub op: FilterOp,
    pub value: Literal,
}

/// The comparison type of a column: dictionaries compare on their values.
fn value_type(dt: &DataType) -> &DataType {
    match dt {
        DataType::Dictionary(_, v) => v.as_ref(),
        other => other,
    }
}

fn literal_array(lit: &Literal) -> ArrayRef {
    use arrow_array::{Float64Array, Int64Array};
    match lit {
        Literal::Str(s) => Arc::new(StringArray::from(vec![s.as_str()])),
        Literal::Int(i) => Arc::new(Int64Array::from(vec![*i])),
        Literal::Float(f) => Arc::new(Float64Array::from(vec![*f])),
        Literal::Bool(b) => Arc::new(BooleanArray::from(vec![*b])),
        Literal::List(_) => Arc::new(StringArray::from(Vec::<&str>::new())),
    }
}

fn literal_text(lit: &Literal) -> String {
    match lit {
        Literal::Str(s) => format!("{s:?}"),
        Literal::Int(i) => i.to_string(),
        Literal::Float(f) => f.to_string(),
        Literal::Bool(b) => b.to_string(),
        Literal::List(items) => format!("[{}]", items.iter().map(literal_text).collect::<Vec<_>>().join(", ")),
    }
}

impl Filter {
    /// The literals to compare with, cast to the column's comparison type.
    fn scalars(&self, data_type: &DataType) -> Result<Vec<ArrayRef>, TransformError> {
        let items: Vec<&Literal> = match &self.value {
            Literal::List(items) => items.iter().collect(),
            one => vec![one],
        };
        let target = value_type(data_type);
        let strict = CastOptions {
            safe: false,
            ..Default::default()
        };
        items
            .into_iter()
            .map(|lit| {
                let cast = cast_literal(&literal_array(lit), target, &strict).map_err(|e| TransformError::Literal {
                    column: self.column.clone(),
                    value: literal_text(lit),
                    data_type: target.clone(),
                    reason: e.to_string(),
                })?;
                if cast.null_count() > 0 {
                    return Err(TransformError::Literal {
                        column: self.column.clone(),
                        value: literal_text(lit),
                        data_type: target.clone(),
                        reason: "the value does not convert".into(),
                    });
                }
                Ok(cast)
            })
            .collect()
    }

    fn mask(&self, column: &ArrayRef) -> Result<BooleanArray, TransformError> {
        use arrow_ord::cmp;
        let target = value_type(column.data_type()).clone();
        let values = if column.data_type() == &target {
            column.clone()
        } else {
            arrow_cast::cast(column, &target)?
        };
        let mut mask: Option<BooleanArray> = None;
        for lit in self.scalars(column.data_type())? {
            let s = Scalar::new(lit);
            let m = match self.op {
                FilterOp::Eq | FilterOp::In => cmp::eq(&values, &s)?,
                FilterOp::Ne => cmp::neq(&values, &s)?,
                FilterOp::Lt => cmp::lt(&values, &s)?,
                FilterOp::Le => cmp::lt_eq(&values, &s)?,
                FilterOp::Gt => cmp::gt(&values, &s)?,
                FilterOp::Ge => cmp::gt_eq(&values, &s)?,
            };
            mask = Some(match mask {
                None => m,
                Some(prev) => arrow_arith_or(&prev, &m),
            });
        }
        Ok(mask.unwrap_or_else(|| BooleanArray::from(vec![false; column.len()])))
    }
}

/// Casts a one-element literal to `target`. A timestamp with a named zone ("UTC") is parsed
/// as a zone-less timestamp (RFC 3339 offsets are applied, giving UTC epoch values) and then
/// labelled with the zone: arrow parses named zones only with its chrono-tz feature.
fn cast_literal(lit: &ArrayRef, target: &DataType, opts: &CastOptions) -> Result<ArrayRef, ArrowError> {
    use arrow_array::types::{
        TimestampMicrosecondType as Us, TimestampMillisecondType as Ms, TimestampNanosecondType as Ns,
        TimestampSecondType as S,
    };
    use arrow_schema::TimeUnit;
    let DataType::Timestamp(unit, Some(tz)) = target else {
        return cast_with_options(lit, target, opts);
    };
    let naive = cast_with_options(lit, &DataType::Timestamp(*unit, None), opts)?;
    let tz = tz.clone();
    Ok(match unit {
        TimeUnit::Second => Arc::new(naive.as_primitive::<S>().clone().with_timezone(tz)),
        TimeUnit::Millisecond => Arc::new(naive.as_primitive::<Ms>().clone().with_timezone(tz)),
        TimeUnit::Microsecond => Arc::new(naive.as_primitive::<Us>().clone().with_timezone(tz)),
        TimeUnit::Nanosecond => Arc::new(naive.as_primitive::<Ns>().clone().with_timezone(tz)),
    })
}

/// Element-wise OR where a null on either side counts as false (a null never matches).
fn arrow_arith_or(a: &BooleanArray, b: &BooleanArray) -> BooleanArray {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| Some(x.unwrap_or(false) || y.unwrap_or(false)))
        .collect()
}

impl Transform for Filter {
    fn describe(&self) -> String {
        let op = match self.op {
            FilterOp::Eq => "=",
            FilterOp::Ne => "!=",
            FilterOp::Lt => "<",
            FilterOp::Le => "<=",
            FilterOp::Gt => ">",
            FilterOp::Ge => ">=",
            FilterOp::In => "in",
        };
        format!("filter({} {op} {})", self.column, literal_text(&self.value))
    }
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, StageError> {
        let i = index_of(input, &self.column)?;
        self.scalars(input.field(i).data_type())?;
        Ok(Arc::clone(input))
    }
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch, StageError> {
        let i = index_of(&batch.schema(), &self.column)?;
        let mask = self.mask(batch.column(i))?;
        Ok(arrow_select::filter::filter_record_batch(&batch, &mask).map_err(TransformError::from)?)
    }
}

#[cfg(test)]
mod tests;
