use std::sync::Arc;

use arrow_array::types::Int8Type;
use arrow_array::{
    Array, ArrayRef, DictionaryArray, RecordBatch, StringArray, TimestampMicrosecondArray, UInt16Array, cast::AsArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use etl_config::{FilterOp, Literal, TransformConfig};
use etl_core::{Secret, Transform};

use super::build;

fn batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "delivered_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new(
            "result",
            DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8)),
            false,
        ),
        Field::new("status_code", DataType::UInt16, false),
        Field::new("recipient", DataType::Utf8, true),
    ]));
    let ts = TimestampMicrosecondArray::from(vec![
        1_757_548_800_000_000,
        1_757_552_400_000_000,
        1_757_556_000_000_000,
    ])
    .with_timezone("UTC");
    let result: DictionaryArray<Int8Type> = vec!["sent", "faild", "retry"].into_iter().collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(ts),
        Arc::new(result),
        Arc::new(UInt16Array::from(vec![250, 550, 421])),
        Arc::new(StringArray::from(vec![
            Some("a@example.com"),
            None,
            Some("c@example.com"),
        ])),
    ];
    RecordBatch::try_new(schema, cols).unwrap()
}

fn one(cfg: TransformConfig) -> Arc<dyn Transform> {
    build(&[cfg]).remove(0)
}

fn names(b: &RecordBatch) -> Vec<String> {
    b.schema().fields().iter().map(|f| f.name().clone()).collect()
}

#[test]
fn select_keeps_order_and_rejects_missing() {
    let t = one(TransformConfig::Select(vec!["recipient".into(), "result".into()]));
    let out = t.apply(batch()).unwrap();
    assert_eq!(names(&out), ["recipient", "result"]);
    assert_eq!(
        t.output_schema(&batch().schema()).unwrap().as_ref(),
        out.schema().as_ref()
    );
    let bad = one(TransformConfig::Select(vec!["nope".into()]));
    let err = bad.output_schema(&batch().schema()).unwrap_err().to_string();
    assert!(
        err.contains("column `nope` does not exist") && err.contains("delivered_at"),
        "{err}"
    );
}

#[test]
fn drop_and_rename() {
    let out = one(TransformConfig::Drop(vec!["status_code".into()]))
        .apply(batch())
        .unwrap();
    assert_eq!(names(&out), ["delivered_at", "result", "recipient"]);
    let out = one(TransformConfig::Rename(vec![("recipient".into(), "rcpt".into())]))
        .apply(batch())
        .unwrap();
    assert_eq!(names(&out), ["delivered_at", "result", "status_code", "rcpt"]);
    let clash = one(TransformConfig::Rename(vec![("recipient".into(), "result".into())]));
    assert!(
        clash
            .output_schema(&batch().schema())
            .unwrap_err()
            .to_string()
            .contains("appears twice")
    );
}

#[test]
fn hash_is_keyed_hmac_hex_and_keeps_nulls() {
    let t = one(TransformConfig::Hash {
        columns: vec!["recipient".into()],
        key: Secret::new("k1"),
    });
    let out = t.apply(batch()).unwrap();
    let col = out.column(3).as_string::<i32>();
    // HMAC-SHA256(key="k1", "a@example.com"), computed independently with Python's hmac module.
    assert_eq!(
        col.value(0),
        "df8350da0a57a84be749aac42cd0c4a0a1918846c7fb5c41230bdb77e18b0a2f"
    );
    assert_eq!(col.value(0).len(), 64);
    assert!(col.is_null(1));
    let other_key = one(TransformConfig::Hash {
        columns: vec!["recipient".into()],
        key: Secret::new("k2"),
    });
    let out2 = other_key.apply(batch()).unwrap();
    assert_ne!(out2.column(3).as_string::<i32>().value(0), col.value(0));
    // Deterministic: same key, same digest.
    assert_eq!(
        t.apply(batch()).unwrap().column(3).as_string::<i32>().value(0),
        col.value(0)
    );
    let direct = super::Hash {
        columns: vec!["recipient".into()],
        key: Secret::new("k1"),
    };
    assert!(!format!("{direct:?}").contains("k1"));
}

#[test]
fn filter_on_typed_columns() {
    let count = |cfg| one(cfg).apply(batch()).unwrap().num_rows();
    let f = |column: &str, op, value| TransformConfig::Filter {
        column: column.into(),
        op,
        value,
    };
    assert_eq!(count(f("result", FilterOp::Eq, Literal::Str("sent".into()))), 1);
    assert_eq!(count(f("result", FilterOp::Ne, Literal::Str("sent".into()))), 2);
    assert_eq!(count(f("status_code", FilterOp::Ge, Literal::Int(421))), 2);
    assert_eq!(count(f("status_code", FilterOp::Lt, Literal::Int(421))), 1);
    assert_eq!(
        count(f(
            "result",
            FilterOp::In,
            Literal::List(vec![Literal::Str("sent".into()), Literal::Str("retry".into())])
        )),
        2
    );
    assert_eq!(
        count(f(
            "delivered_at",
            FilterOp::Gt,
            Literal::Str("2025-09-11T00:30:00Z".into())
        )),
        2
    );
    // A null never matches, whatever the operator.
    assert_eq!(
        count(f("recipient", FilterOp::Ne, Literal::Str("a@example.com".into()))),
        1
    );
    let bad = one(f("status_code", FilterOp::Eq, Literal::Str("abc".into())));
    let err = bad.output_schema(&batch().schema()).unwrap_err().to_string();
    assert!(err.contains("cannot be compared with column `status_code`"), "{err}");
}
