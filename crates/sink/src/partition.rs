//! Splitting a batch into its `dt` partitions, whole columns at a time.
//!
//! Rows are grouped by the UTC day of the time column: one pass computes each row's day, and
//! each day's rows are gathered with one `take` per column (as DataFusion's demux does). Most
//! batches of a day-aligned unit hold a single day, so that case returns the batch untouched.

use std::collections::BTreeMap;

use arrow_array::types::{Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, TimeUnit};

use crate::layout::MICROS_PER_DAY;

/// Time zone names that mean UTC in an Arrow timestamp type.
const UTC_NAMES: [&str; 4] = ["UTC", "+00:00", "Z", "Etc/UTC"];

/// Checks that a time column can be partitioned by: `Timestamp(Microsecond, "UTC")`.
pub(crate) fn check_time_type(data_type: &DataType) -> Result<(), String> {
    match data_type {
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if UTC_NAMES.contains(&tz.as_ref()) => Ok(()),
        other => Err(format!("must be Timestamp(Microsecond, \"UTC\"), found {other}")),
    }
}

/// Splits `batch` by the UTC day of column `time_index`, returning `(days since epoch, rows)`
/// in day order, rows in their original order. Fails on a null time value (the row would
/// belong to no partition).
pub(crate) fn split_by_day(batch: &RecordBatch, time_index: usize) -> Result<Vec<(i32, RecordBatch)>, String> {
    let column = batch.column(time_index);
    check_time_type(column.data_type())?;
    let times = column
        .as_any()
        .downcast_ref::<arrow_array::PrimitiveArray<TimestampMicrosecondType>>()
        .ok_or_else(|| format!("must be Timestamp(Microsecond, \"UTC\"), found {}", column.data_type()))?;
    if times.null_count() > 0 {
        let row = (0..times.len()).find(|&i| times.is_null(i)).unwrap_or(0);
        return Err(format!(
            "{} null value(s), first at batch row {row}: every row needs a time",
            times.null_count()
        ));
    }
    // Any i64 of microseconds divides to a day well within i32.
    let days = times.unary::<_, Int32Type>(|us| us.div_euclid(MICROS_PER_DAY) as i32);
    let values = days.values();
    let Some(&first) = values.first() else {
        return Ok(Vec::new());
    };
    if values.iter().all(|&d| d == first) {
        return Ok(vec![(first, batch.clone())]);
    }
    let mut groups: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
    for (row, &day) in values.iter().enumerate() {
        let row = u32::try_from(row).map_err(|_| "batch has more than 2^32 rows".to_string())?;
        groups.entry(day).or_default().push(row);
    }
    groups
        .into_iter()
        .map(|(day, rows)| {
            let indices = UInt32Array::from(rows);
            arrow_select::take::take_record_batch(batch, &indices)
                .map(|b| (day, b))
                .map_err(|e| format!("gathering the rows of day {day}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, TimestampMicrosecondArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    const DAY: i64 = MICROS_PER_DAY;

    fn batch(times: Vec<Option<i64>>) -> RecordBatch {
        let n = times.len() as i64;
        let schema = Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("n", DataType::Int64, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
                Arc::new(Int64Array::from_iter_values(0..n)),
            ],
        )
        .unwrap()
    }

    fn ns(b: &RecordBatch) -> Vec<i64> {
        b.column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec()
    }

    #[test]
    fn one_day_is_returned_whole() {
        let b = batch(vec![Some(3 * DAY), Some(3 * DAY + 5), Some(4 * DAY - 1)]);
        let parts = split_by_day(&b, 0).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].0, 3);
        assert_eq!(ns(&parts[0].1), vec![0, 1, 2]);
    }

    #[test]
    fn rows_are_grouped_by_day_in_order() {
        let b = batch(vec![
            Some(4 * DAY),
            Some(3 * DAY),
            Some(4 * DAY + 1),
            Some(-1),
            Some(3 * DAY + 7),
        ]);
        let parts = split_by_day(&b, 0).unwrap();
        let got: Vec<(i32, Vec<i64>)> = parts.iter().map(|(d, b)| (*d, ns(b))).collect();
        assert_eq!(got, vec![(-1, vec![3]), (3, vec![1, 4]), (4, vec![0, 2])]);
    }

    #[test]
    fn nulls_and_wrong_types_are_refused() {
        let err = split_by_day(&batch(vec![Some(0), None]), 0).unwrap_err();
        assert!(err.contains("first at batch row 1"), "{err}");
        assert!(check_time_type(&DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))).is_err());
        assert!(check_time_type(&DataType::Timestamp(TimeUnit::Microsecond, None)).is_err());
        assert!(check_time_type(&DataType::Timestamp(TimeUnit::Microsecond, Some("+09:00".into()))).is_err());
        assert!(check_time_type(&DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))).is_ok());
    }
}
