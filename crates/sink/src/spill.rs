//! Keeps the bytes of a Parquet file being written in temporary files, not on the heap.
//!
//! Parquet stores each column of a row group contiguously, but batches arrive with every column
//! at once: a writer holds all of a row group's encoded pages until the row group is complete,
//! then writes them out column by column. On the heap (parquet's default) that is up to
//! `row_group_rows` rows' worth per open file, and the file being assembled is as large again
//! before its upload: the part of `etl run`'s memory that grew with a unit's volume, so that 10x
//! the data raised the peak by 2-3x. Here the finished pages wait in a [`Spill`] file and the
//! assembled file in a spool file, both anonymous temporary files (in `$TMPDIR`, removed by the
//! OS when closed, even after a crash). What stays in memory per open file is what parquet is
//! still encoding (a page per column, the dictionaries), whatever the row group size; the page
//! cache keeps the temporary bytes while memory allows, so little of this reaches the disk.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use parquet::column::page_store::{PageKey, PageStore, PageStoreArgs, PageStoreFactory};
use parquet::errors::{ParquetError, Result};

/// An anonymous temporary file in `$TMPDIR` (no name: nothing to clean up, even after a crash).
pub(crate) fn temp_file() -> std::io::Result<File> {
    tempfile::tempfile()
}

/// One temporary file shared by the page stores of one Parquet file's columns (they are used
/// from one thread at a time; the lock is never contended).
struct SpillFile {
    file: File,
    /// Where the next page goes.
    end: u64,
    /// Bytes put and not yet taken: once a row group is written out it is zero, and the next
    /// row group's pages reuse the file from its start.
    live: u64,
}

/// Creates the page stores of one Parquet file: every column chunk's pages go to the same
/// temporary file.
pub(crate) struct Spill {
    shared: Arc<Mutex<SpillFile>>,
}

impl Spill {
    pub(crate) fn new() -> std::io::Result<Self> {
        Ok(Self {
            shared: Arc::new(Mutex::new(SpillFile {
                file: temp_file()?,
                end: 0,
                live: 0,
            })),
        })
    }
}

impl fmt::Debug for Spill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Spill")
    }
}

impl PageStoreFactory for Spill {
    fn create(&self, _args: &PageStoreArgs<'_>) -> Result<Box<dyn PageStore>> {
        Ok(Box::new(SpillStore {
            shared: Arc::clone(&self.shared),
            pages: Vec::new(),
        }))
    }
}

/// The pages of one column chunk: where each lies in the shared file.
struct SpillStore {
    shared: Arc<Mutex<SpillFile>>,
    /// Offset and length of page `key`.
    pages: Vec<(u64, usize)>,
}

fn spill_error(what: &str, e: std::io::Error) -> ParquetError {
    ParquetError::General(format!(
        "{what} the temporary file of encoded pages (in {}): {e}",
        std::env::temp_dir().display()
    ))
}

impl PageStore for SpillStore {
    fn put(&mut self, value: Bytes) -> Result<PageKey> {
        let mut spill = self
            .shared
            .lock()
            .map_err(|_| ParquetError::General("page spill lock poisoned".into()))?;
        let at = spill.end;
        spill
            .file
            .write_all_at(&value, at)
            .map_err(|e| spill_error("writing to", e))?;
        spill.end += value.len() as u64;
        spill.live += value.len() as u64;
        self.pages.push((at, value.len()));
        Ok(PageKey::new(self.pages.len() as u64 - 1))
    }

    fn take(&mut self, key: PageKey) -> Result<Bytes> {
        let (at, len) = usize::try_from(key.get())
            .ok()
            .and_then(|i| self.pages.get(i).copied())
            .ok_or_else(|| ParquetError::General(format!("invalid page key {}", key.get())))?;
        let mut spill = self
            .shared
            .lock()
            .map_err(|_| ParquetError::General("page spill lock poisoned".into()))?;
        let mut page = vec![0u8; len];
        spill
            .file
            .read_exact_at(&mut page, at)
            .map_err(|e| spill_error("reading from", e))?;
        spill.live -= len as u64;
        if spill.live == 0 {
            spill.end = 0;
        }
        Ok(Bytes::from(page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_writer::ArrowWriterOptions;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;

    fn batches() -> Vec<RecordBatch> {
        (0..7)
            .map(|b| {
                let n = 3_000;
                let ids = Int64Array::from_iter_values((0..n).map(|i| b * n + i));
                // Few distinct values (stays a dictionary) and one per row (falls back to plain).
                let kinds = StringArray::from_iter_values((0..n).map(|i| format!("kind-{}", i % 5)));
                let urls = StringArray::from_iter_values(
                    (0..n).map(|i| format!("/p/{b}/{i}/{}", "x".repeat((i % 40) as usize))),
                );
                let mut tags = ListBuilder::new(StringBuilder::new());
                for i in 0..n {
                    for t in 0..(i % 3) {
                        tags.values().append_value(format!("t{t}"));
                    }
                    tags.append(i % 7 != 0);
                }
                RecordBatch::try_from_iter([
                    ("id", Arc::new(ids) as ArrayRef),
                    ("kind", Arc::new(kinds) as ArrayRef),
                    ("url", Arc::new(urls) as ArrayRef),
                    ("tags", Arc::new(tags.finish()) as ArrayRef),
                ])
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_file_written_through_the_spill_and_spool_is_byte_for_byte_the_heap_writers() {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))
            .set_max_row_group_row_count(Some(5_000))
            .set_dictionary_page_size_limit(16 * 1024)
            .set_data_page_size_limit(4 * 1024)
            .build();
        let batches = batches();
        let schema = batches[0].schema();

        let mut heap = ArrowWriter::try_new(Vec::new(), Arc::clone(&schema), Some(props.clone())).unwrap();
        let options = ArrowWriterOptions::new()
            .with_properties(props)
            .with_page_store_factory(Arc::new(Spill::new().unwrap()));
        let mut spilled = ArrowWriter::try_new_with_options(temp_file().unwrap(), schema, options).unwrap();
        for batch in &batches {
            heap.write(batch).unwrap();
            spilled.write(batch).unwrap();
            // The heap writer holds the row group's finished pages; the spilling one does not
            // (both hold nothing right after a row group ended with the batch).
            assert!(
                spilled.memory_size() < heap.memory_size() || heap.in_progress_rows() == 0,
                "{} vs {}",
                spilled.memory_size(),
                heap.memory_size()
            );
        }
        let expected = heap.into_inner().unwrap();
        let metadata = spilled.finish().unwrap();
        assert_eq!(metadata.num_row_groups(), 5, "21,000 rows in row groups of 5,000");
        assert_eq!(spilled.bytes_written(), expected.len());
        let mut got = Vec::new();
        let mut spool = spilled.inner();
        std::io::Seek::rewind(&mut spool).unwrap();
        spool.read_to_end(&mut got).unwrap();
        assert!(
            got == expected,
            "the files differ ({} and {} bytes)",
            got.len(),
            expected.len()
        );
    }

    #[test]
    fn pages_come_back_as_put_and_the_file_is_reused_once_all_are_taken() {
        let spill = Spill::new().unwrap();
        let store = |spill: &Spill| {
            Box::new(SpillStore {
                shared: Arc::clone(&spill.shared),
                pages: Vec::new(),
            })
        };
        let (mut a, mut b) = (store(&spill), store(&spill));
        let a0 = a.put(Bytes::from_static(b"alpha")).unwrap();
        let b0 = b.put(Bytes::from_static(b"beta")).unwrap();
        let a1 = a.put(Bytes::from(vec![7u8; 100_000])).unwrap();
        assert_eq!(spill.shared.lock().unwrap().end, 100_009);
        assert_eq!(&a.take(a0).unwrap()[..], b"alpha");
        assert_eq!(&b.take(b0).unwrap()[..], b"beta");
        assert_eq!(spill.shared.lock().unwrap().end, 100_009, "a page is still out");
        assert_eq!(a.take(a1).unwrap(), vec![7u8; 100_000]);
        assert_eq!(
            spill.shared.lock().unwrap().end,
            0,
            "all taken: the next row group starts over"
        );
        let mut c = store(&spill);
        let c0 = c.put(Bytes::from_static(b"gamma")).unwrap();
        assert_eq!(&c.take(c0).unwrap()[..], b"gamma");
        assert!(a.take(PageKey::new(9)).is_err());
    }
}
