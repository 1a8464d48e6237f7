//! Writing one unit's batches as hive-partitioned Parquet, committed exactly once.
//!
//! ```text
//!  batch ─► drop partition columns ─► split by UTC day of time_column ─┬─► dt=D1 writer ─► part 0000, 0001 ...
//!                                                                       └─► dt=D2 writer ─► part 0000 ...
//!                                                   (at most max_open_files writers; least recently used closed)
//! ```
//!
//! The commit protocol and what a crash leaves behind are described in the crate docs.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use chrono::Utc;
use etl_core::Secret;
use etl_core::{CommitReport, Sink, StageError, Unit, UnitSummary, UnitWriter};
use futures::future::BoxFuture;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use tokio::io::AsyncWriteExt;

use crate::error::SinkError;
use crate::layout::{self, DataFile, MetaKind};
use crate::manifest::{
    Intent, Manifest, ManifestFile, delete_if_exists, get_json, get_json_versioned, put_bytes, put_json, put_json_if,
};
use crate::partition::{check_time_type, split_by_day};
use crate::spill::{Spill, temp_file};
use crate::state::ObjectStoreState;

/// A writer whose row group grows past this (encoded) is flushed early: its spill file stays
/// bounded even when `row_group_rows` rows of a wide schema are large.
const FLUSH_BYTES: usize = 128 * 1024 * 1024;
/// Bytes buffered per file before the upload switches to multipart (S3 parts must be >= 5 MiB).
const UPLOAD_BUFFER: usize = 8 * 1024 * 1024;
/// The same on a local filesystem, where a part has no minimum size: up to
/// `UPLOAD_CONCURRENCY` parts of 8 MiB held per completing file cost more memory than all of
/// the encoding (heaptrack of a 10x CDN run: 35 of 70 MB at the peak).
const LOCAL_UPLOAD_BUFFER: usize = 1024 * 1024;
/// Parts of one file in flight at once.
const UPLOAD_CONCURRENCY: usize = 4;
/// A completed file is read back from its spool file in pieces of this size for its upload.
const UPLOAD_READ: usize = 1024 * 1024;

/// How the Parquet files of a dataset are cut and encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParquetSinkOptions {
    /// UTC `Timestamp(Microsecond)` column the `dt` partition is derived from (the format's
    /// `time_column`). It stays in the files; `dt` does not.
    pub time_column: String,
    /// zstd level (1-22; 1 is fast and already small for logs).
    pub compression_level: i32,
    /// Rows per row group (DuckDB reads 100k-1M row groups best).
    pub row_group_rows: usize,
    /// Statistics written: none, per column chunk, or per chunk and page (the page index).
    pub statistics: EnabledStatistics,
    /// Dictionary-encode columns (each falls back to plain once its dictionary passes 1 MiB).
    pub dictionary: bool,
    /// Top-level columns written without a dictionary even when `dictionary` is on.
    pub plain_columns: Vec<String>,
    /// A file rolls to the next part once it passes this many bytes.
    pub max_file_size: u64,
    /// Files open at once per unit; beyond it the least recently used one is completed and a
    /// later batch of its partition starts the next part.
    pub max_open_files: usize,
}

impl Default for ParquetSinkOptions {
    fn default() -> Self {
        Self {
            time_column: "time".to_string(),
            compression_level: 1,
            row_group_rows: 262_144,
            statistics: EnabledStatistics::Page,
            dictionary: true,
            plain_columns: Vec::new(),
            max_file_size: 512 * 1024 * 1024,
            max_open_files: 16,
        }
    }
}

impl ParquetSinkOptions {
    fn check(&self) -> Result<(), SinkError> {
        let bad = |what: &str| Err(SinkError::Options(what.to_string()));
        if self.time_column.is_empty() {
            return bad("time_column is empty");
        }
        if self.row_group_rows == 0 {
            return bad("row_group_rows must be at least 1");
        }
        if self.max_file_size == 0 {
            return bad("max_file_size must be at least 1 byte");
        }
        if self.max_open_files == 0 {
            return bad("max_open_files must be at least 1");
        }
        self.writer_properties(None).map(|_| ())
    }

    /// The writer settings; with the files' `schema`, `plain_columns` are resolved against it.
    fn writer_properties(&self, schema: Option<&Schema>) -> Result<WriterProperties, SinkError> {
        let level = ZstdLevel::try_new(self.compression_level)
            .map_err(|e| SinkError::Options(format!("compression_level {}: {e}", self.compression_level)))?;
        // Arrow `Timestamp(Microsecond, "UTC")` maps to TIMESTAMP(MICROS, isAdjustedToUTC=true)
        // as long as types are not coerced; the Arrow schema is embedded too (the default), so
        // Arrow readers get the exact type back.
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_statistics_enabled(self.statistics)
            .set_dictionary_enabled(self.dictionary)
            .set_coerce_types(false);
        if let Some(schema) = schema {
            for column in self.plain_columns(schema)? {
                props = props.set_column_dictionary_enabled(column, false);
            }
        }
        Ok(props.build())
    }

    /// The leaf columns of `plain_columns` in `schema` (a list or struct column has several),
    /// or an error naming a column the schema does not have.
    fn plain_columns(&self, schema: &Schema) -> Result<Vec<ColumnPath>, SinkError> {
        if self.plain_columns.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(missing) = self.plain_columns.iter().find(|c| schema.field_with_name(c).is_err()) {
            let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(SinkError::Options(format!(
                "plain_columns: `{missing}` is not a column of the files (columns: {})",
                names.join(", ")
            )));
        }
        let descr = ArrowSchemaConverter::new()
            .with_coerce_types(false)
            .convert(schema)
            .map_err(|e| SinkError::Options(format!("plain_columns: {e}")))?;
        Ok(descr
            .columns()
            .iter()
            .filter(|c| {
                c.path()
                    .parts()
                    .first()
                    .is_some_and(|top| self.plain_columns.contains(top))
            })
            .map(|c| c.path().clone())
            .collect())
    }
}

/// How to reach an S3-compatible store. Every field left `None` comes from the standard `AWS_*`
/// environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`), then object_store's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    pub allow_http: Option<bool>,
    /// `<endpoint>/<bucket>/<key>` addressing (the default); false for virtual-hosted style.
    pub path_style: Option<bool>,
}

impl S3Options {
    fn builder(&self, url: &str) -> AmazonS3Builder {
        let mut b = AmazonS3Builder::from_env().with_url(url);
        if let Some(v) = &self.endpoint {
            b = b.with_endpoint(v);
        }
        if let Some(v) = &self.region {
            b = b.with_region(v);
        }
        if let Some(v) = &self.access_key_id {
            b = b.with_access_key_id(v);
        }
        if let Some(v) = &self.secret_access_key {
            b = b.with_secret_access_key(v.expose());
        }
        if let Some(v) = &self.session_token {
            b = b.with_token(v.expose());
        }
        if let Some(v) = self.allow_http {
            b = b.with_allow_http(v);
        }
        if let Some(v) = self.path_style {
            b = b.with_virtual_hosted_style_request(!v);
        }
        // Conditional writes (claims, manifests) use If-None-Match / If-Match, which AWS S3 and
        // the common S3-compatible servers support.
        b.with_conditional_put(S3ConditionalPut::ETagMatch)
    }
}

/// A hive-partitioned Parquet dataset on an object store (local directory, memory or S3).
#[derive(Clone, Debug)]
pub struct ParquetSink {
    store: Arc<dyn ObjectStore>,
    root: Path,
    opts: ParquetSinkOptions,
    /// The directory the store's root maps to, when the store is a local filesystem: staging
    /// leftovers of crashed uploads are removed through it.
    local_root: Option<PathBuf>,
    location: String,
    upload_buffer: usize,
}

impl ParquetSink {
    /// Opens the dataset root at `url`: a local path (relative or absolute; created if
    /// missing), `file:///abs/path`, or `s3://bucket/prefix` (credentials and region from the
    /// `AWS_*` environment, see `AmazonS3Builder::from_env`). Opens no connection.
    pub fn open(url: &str, opts: ParquetSinkOptions) -> Result<Self, SinkError> {
        Self::open_with(url, opts, &S3Options::default())
    }

    /// [`open`](Self::open), with the connection of an `s3://` URL given explicitly (fields left
    /// `None` still come from the `AWS_*` environment). Ignored for local paths.
    pub fn open_with(url: &str, opts: ParquetSinkOptions, s3: &S3Options) -> Result<Self, SinkError> {
        opts.check()?;
        let url = url.trim();
        let shown = redact_url(url);
        let location_error = |reason: String| SinkError::Location {
            location: shown.clone(),
            reason,
        };
        if url.is_empty() {
            return Err(location_error("empty".into()));
        }
        if !url.contains("://") {
            return Self::open_local(FsPath::new(url), opts);
        }
        let parsed = url::Url::parse(url).map_err(|e| location_error(e.to_string()))?;
        match parsed.scheme() {
            "file" => {
                let path = parsed
                    .to_file_path()
                    .map_err(|()| location_error("a file:// URL must name an absolute local path".into()))?;
                Self::open_local(&path, opts)
            }
            "s3" => {
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(location_error("an s3:// URL needs a bucket: s3://bucket/prefix".into()));
                }
                if !parsed.username().is_empty() || parsed.password().is_some() {
                    return Err(location_error(
                        "credentials do not belong in the URL; use the AWS_* environment variables".into(),
                    ));
                }
                let store = s3.builder(url).build().map_err(|source| SinkError::StoreConfig {
                    location: shown.clone(),
                    source,
                })?;
                let root = Path::from_url_path(parsed.path())
                    .map_err(|e| location_error(format!("prefix {:?}: {e}", parsed.path())))?;
                let mut sink = Self::with_store(Arc::new(store), root, opts, None);
                sink.location = url.trim_end_matches('/').to_string();
                Ok(sink)
            }
            other => Err(location_error(format!(
                "unsupported scheme {other:?}: use a local path, file:///absolute/path or s3://bucket/prefix"
            ))),
        }
    }

    fn open_local(path: &FsPath, opts: ParquetSinkOptions) -> Result<Self, SinkError> {
        std::fs::create_dir_all(path).map_err(|source| SinkError::LocalIo {
            what: "creating the dataset directory",
            path: path.to_path_buf(),
            source,
        })?;
        let root = std::fs::canonicalize(path).map_err(|source| SinkError::LocalIo {
            what: "resolving the dataset directory",
            path: path.to_path_buf(),
            source,
        })?;
        // fsync: a unit is acknowledged only once its files are durable.
        let store = LocalFileSystem::new_with_prefix(&root)
            .map_err(|source| SinkError::StoreConfig {
                location: root.display().to_string(),
                source,
            })?
            .with_fsync(true);
        Ok(Self::with_store(Arc::new(store), Path::default(), opts, Some(root)))
    }

    /// The dataset at `prefix` in `store`. `local_root` is the directory the store's root maps
    /// to when `store` is a [`LocalFileSystem`] (so staged uploads of a crashed attempt can be
    /// removed), `None` otherwise. Options are checked by `begin_unit`.
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        opts: ParquetSinkOptions,
        local_root: Option<PathBuf>,
    ) -> Self {
        let location = match &local_root {
            Some(dir) => prefix
                .parts()
                .fold(dir.clone(), |p, part| p.join(part.as_ref()))
                .display()
                .to_string(),
            None => format!("{store}/{prefix}"),
        };
        Self {
            store,
            root: prefix,
            opts,
            upload_buffer: if local_root.is_some() {
                LOCAL_UPLOAD_BUFFER
            } else {
                UPLOAD_BUFFER
            },
            local_root,
            location,
        }
    }

    /// Uploads switch to multipart past this many bytes (tests force multipart with a small one).
    #[cfg(test)]
    pub(crate) fn with_upload_buffer(mut self, bytes: usize) -> Self {
        self.upload_buffer = bytes;
        self
    }

    /// The state store of this dataset: `_etl/state/` under the same root, same store.
    pub fn state_store(&self) -> ObjectStoreState {
        ObjectStoreState::new(Arc::clone(&self.store), self.root.clone())
    }

    /// The manifest of the last commit of `unit_id`, if it was ever committed.
    pub async fn read_manifest(&self, unit_id: &str) -> Result<Option<Manifest>, SinkError> {
        layout::check_unit_id(unit_id)?;
        let location = layout::meta_object(&self.root, MetaKind::Manifests, unit_id);
        get_json(self.store.as_ref(), &location, "reading manifest").await
    }

    async fn begin(&self, unit: &Unit, schema: SchemaRef) -> Result<ParquetUnitWriter, SinkError> {
        layout::check_unit_id(&unit.id)?;
        self.opts.check()?;
        let mut partitions = Vec::with_capacity(unit.partitions.len());
        let mut dropped: HashSet<String> = HashSet::from([layout::DT.to_string()]);
        for (key, value) in &unit.partitions {
            partitions.push(layout::partition_segment(&unit.id, key, value)?);
            if !dropped.insert(key.clone()) {
                return Err(SinkError::UnsafeSegment {
                    unit: unit.id.clone(),
                    what: "partition key",
                    value: key.clone(),
                    reason: "it appears twice".into(),
                });
            }
        }
        let time_column = self.opts.time_column.clone();
        let time_error = |reason: String| SinkError::TimeColumn {
            unit: unit.id.clone(),
            column: time_column.clone(),
            reason,
        };
        if dropped.contains(&time_column) {
            return Err(time_error(
                "it has the name of a partition column, which is never stored in the files".into(),
            ));
        }
        // Partition values live in the directory names only: DuckDB would silently prefer the
        // folder value over a column of the same name.
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .filter(|f| !dropped.contains(f.name()))
            .cloned()
            .collect();
        let file_schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        let time_index = file_schema.index_of(&time_column).map_err(|_| {
            let names: Vec<_> = file_schema.fields().iter().map(|f| f.name().as_str()).collect();
            time_error(format!("not in the schema (columns: {})", names.join(", ")))
        })?;
        check_time_type(file_schema.field(time_index).data_type()).map_err(time_error)?;
        let props = self.opts.writer_properties(Some(&file_schema))?;

        self.remove_unfinished_attempt(&unit.id).await?;
        let manifest_location = layout::meta_object(&self.root, MetaKind::Manifests, &unit.id);
        let (previous, previous_version) = match get_json_versioned::<Manifest>(
            self.store.as_ref(),
            &manifest_location,
            "reading the previous manifest",
        )
        .await?
        {
            Some((manifest, version)) => (Some(manifest), Some(version)),
            None => (None, None),
        };

        Ok(ParquetUnitWriter {
            store: Arc::clone(&self.store),
            root: self.root.clone(),
            unit: unit.clone(),
            partitions,
            file_schema,
            time_index,
            time_column,
            dropped,
            props,
            max_file_size: self.opts.max_file_size,
            max_open_files: self.opts.max_open_files,
            upload_buffer: self.upload_buffer,
            previous,
            previous_version,
            local_root: self.local_root.clone(),
            files: Vec::new(),
            open: HashMap::new(),
            next_part: HashMap::new(),
            tick: 0,
        })
    }

    /// Deletes every file an earlier, unfinished attempt of the unit recorded in its intent,
    /// with their local staging leftovers, then the intent. The intent stays if anything could
    /// not be deleted, so a later attempt tries again.
    async fn remove_unfinished_attempt(&self, unit_id: &str) -> Result<(), SinkError> {
        // A process killed while putting one of the unit's small control objects leaves that
        // put's staging file behind on local disk; it is invisible to the store but litter.
        if let Some(local_root) = &self.local_root {
            for kind in [
                MetaKind::Intents,
                MetaKind::Manifests,
                MetaKind::DeadLetter,
                MetaKind::State,
            ] {
                remove_staged_uploads(local_root, &layout::meta_object(&self.root, kind, unit_id)).await?;
            }
        }
        let intent_location = layout::meta_object(&self.root, MetaKind::Intents, unit_id);
        let Some(intent) = get_json::<Intent>(self.store.as_ref(), &intent_location, "reading intent").await? else {
            return Ok(());
        };
        let corrupt = |reason: String| SinkError::Corrupt {
            what: "intent",
            path: intent_location.to_string(),
            reason,
        };
        if intent.unit != unit_id {
            return Err(corrupt(format!("it belongs to unit {:?}", intent.unit)));
        }
        for relative in &intent.files {
            let file = layout::stored_data_file(&self.root, relative).map_err(corrupt)?;
            delete_if_exists(
                self.store.as_ref(),
                &file.location,
                "deleting a file of an unfinished attempt",
            )
            .await?;
            if let Some(local_root) = &self.local_root {
                remove_staged_uploads(local_root, &file.location).await?;
            }
        }
        delete_if_exists(self.store.as_ref(), &intent_location, "deleting intent").await?;
        tracing::info!(
            unit = unit_id,
            files = intent.files.len(),
            "removed what an unfinished attempt of the unit wrote"
        );
        Ok(())
    }
}

impl Sink for ParquetSink {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn begin_unit<'a>(
        &'a self,
        unit: &'a Unit,
        schema: SchemaRef,
    ) -> BoxFuture<'a, Result<Box<dyn UnitWriter>, StageError>> {
        Box::pin(async move {
            let writer = self.begin(unit, schema).await?;
            Ok(Box::new(writer) as Box<dyn UnitWriter>)
        })
    }
}

/// `url` with any password replaced by `***`, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password fails only for URLs that cannot have one, which this one has.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// Removes LocalFileSystem's staging files of `location` (`<file>#<digits>` beside it), which a
/// killed process leaves behind.
async fn remove_staged_uploads(local_root: &FsPath, location: &Path) -> Result<(), SinkError> {
    let file = location
        .parts()
        .fold(local_root.to_path_buf(), |p, part| p.join(part.as_ref()));
    let (Some(dir), Some(name)) = (file.parent(), file.file_name().and_then(|n| n.to_str())) else {
        return Ok(());
    };
    let io_error = |what: &'static str, path: &FsPath| {
        let path = path.to_path_buf();
        move |source| SinkError::LocalIo { what, path, source }
    };
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("listing staged uploads in", dir)(e)),
    };
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(io_error("listing staged uploads in", dir))?
    {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|candidate| is_staged_upload_of(candidate, name))
        {
            let path = entry.path();
            match tokio::fs::remove_file(&path).await {
                Ok(()) => tracing::debug!(path = %path.display(), "removed staged upload"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("removing staged upload", &path)(e)),
            }
        }
    }
    Ok(())
}

/// Makes a delete in the directory of `location` durable (fsync of the directory itself).
async fn sync_parent_dir(local_root: &FsPath, location: &Path) -> Result<(), SinkError> {
    let file = location
        .parts()
        .fold(local_root.to_path_buf(), |p, part| p.join(part.as_ref()));
    let Some(dir) = file.parent() else {
        return Ok(());
    };
    let io_error = |source| SinkError::LocalIo {
        what: "syncing directory",
        path: dir.to_path_buf(),
        source,
    };
    let handle = tokio::fs::File::open(dir).await.map_err(io_error)?;
    handle.sync_all().await.map_err(io_error)
}

/// `<name>#<digits>`: how LocalFileSystem names the staging file of an upload to `<name>`.
fn is_staged_upload_of(candidate: &str, name: &str) -> bool {
    candidate
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('#'))
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// The bytes of one Parquet file on their way to the store.
///
/// Wraps [`BufWriter`] to remember whether shutdown (completing the upload) has begun:
/// `BufWriter::abort` panics after that point, and a failed completion has already aborted
/// its multipart upload itself.
struct Upload {
    inner: BufWriter,
    completing: bool,
}

impl Upload {
    /// Uploads the first `len` bytes of `spool` (a complete Parquet file) and completes the
    /// upload: the file becomes visible.
    async fn send(&mut self, spool: &File, len: u64) -> parquet::errors::Result<()> {
        let mut at = 0u64;
        while at < len {
            let n = UPLOAD_READ.min(usize::try_from(len - at).unwrap_or(UPLOAD_READ));
            let mut piece = vec![0u8; n];
            spool.read_exact_at(&mut piece, at).map_err(|e| {
                ParquetError::General(format!(
                    "reading back the temporary file it was written to (in {}): {e}",
                    std::env::temp_dir().display()
                ))
            })?;
            at += n as u64;
            self.inner
                .put(bytes::Bytes::from(piece))
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))?;
        }
        self.completing = true;
        self.inner
            .shutdown()
            .await
            .map_err(|e| ParquetError::External(Box::new(e)))
    }

    /// Aborts the upload if it is still in flight; errors are logged (abort is cleanup).
    async fn abort(mut self, location: &Path) {
        if self.completing {
            return;
        }
        if let Err(e) = self.inner.abort().await {
            tracing::warn!(path = %location, error = %e, "aborting upload failed");
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileState {
    /// Being written; not visible (the upload completes at close).
    Open,
    /// Complete and visible.
    Complete,
    /// Its completion failed: probably not visible, but treated as if it might be.
    Failed,
}

/// A file this attempt opened, in opening order.
struct FileEntry {
    file: DataFile,
    rows: u64,
    bytes: u64,
    state: FileState,
}

struct OpenFile {
    /// Encodes into a spool file (its pages wait in a spill file): see [`crate::spill`].
    writer: ArrowWriter<File>,
    upload: Upload,
    /// Index into `ParquetUnitWriter::files`.
    entry: usize,
    rows: u64,
    last_used: u64,
}

/// One attempt at writing one unit.
struct ParquetUnitWriter {
    store: Arc<dyn ObjectStore>,
    root: Path,
    unit: Unit,
    /// `k=v` directory segments, checked.
    partitions: Vec<String>,
    /// The unit's schema without partition columns: what every file holds.
    file_schema: SchemaRef,
    time_index: usize,
    time_column: String,
    /// Columns removed from every batch (partition keys and `dt`).
    dropped: HashSet<String>,
    props: WriterProperties,
    max_file_size: u64,
    max_open_files: usize,
    upload_buffer: usize,
    /// The unit's last commit, whose files not rewritten now are deleted at commit.
    previous: Option<Manifest>,
    /// The version of that manifest as read at begin: the manifest is replaced only if it is
    /// still that one (or created only if there was none), so two workers cannot both commit.
    previous_version: Option<object_store::UpdateVersion>,
    /// The local directory the store maps to, when it is a local filesystem (for fsync).
    local_root: Option<PathBuf>,
    files: Vec<FileEntry>,
    /// Open writers by day (days since the epoch).
    open: HashMap<i32, OpenFile>,
    next_part: HashMap<i32, u32>,
    /// Counts writes, for least-recently-used closing.
    tick: u64,
}

impl ParquetUnitWriter {
    async fn write_batch(&mut self, batch: RecordBatch) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = self.conform(batch)?;
        let days = split_by_day(&batch, self.time_index).map_err(|reason| SinkError::TimeColumn {
            unit: self.unit.id.clone(),
            column: self.time_column.clone(),
            reason,
        })?;
        for (day, rows) in days {
            self.write_day(day, &rows).await?;
        }
        Ok(())
    }

    /// Drops partition columns and checks the rest against the unit's schema.
    fn conform(&self, batch: RecordBatch) -> Result<RecordBatch, SinkError> {
        let schema = batch.schema();
        let (names, columns): (Vec<&str>, Vec<_>) = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(f, _)| !self.dropped.contains(f.name()))
            .map(|(f, c)| (f.name().as_str(), Arc::clone(c)))
            .unzip();
        let expected: Vec<&str> = self.file_schema.fields().iter().map(|f| f.name().as_str()).collect();
        if names != expected {
            return Err(SinkError::Schema {
                unit: self.unit.id.clone(),
                reason: format!(
                    "batch columns [{}] differ from the unit's [{}]",
                    names.join(", "),
                    expected.join(", ")
                ),
            });
        }
        RecordBatch::try_new(Arc::clone(&self.file_schema), columns).map_err(|e| SinkError::Schema {
            unit: self.unit.id.clone(),
            reason: format!("batch does not fit the unit's schema: {e}"),
        })
    }

    async fn write_day(&mut self, day: i32, rows: &RecordBatch) -> Result<(), SinkError> {
        self.tick += 1;
        let mut file = match self.open.remove(&day) {
            Some(file) => file,
            None => self.open_file(day).await?,
        };
        file.last_used = self.tick;
        if let Err(e) = file.writer.write(rows) {
            return Err(self.fail(file, "writing", e).await);
        }
        file.rows += rows.num_rows() as u64;
        let size = (file.writer.bytes_written() + file.writer.in_progress_size()) as u64;
        if size > self.max_file_size {
            return self.finish(file).await;
        }
        if file.writer.in_progress_size() > FLUSH_BYTES
            && let Err(e) = file.writer.flush()
        {
            return Err(self.fail(file, "flushing a row group of", e).await);
        }
        self.open.insert(day, file);
        Ok(())
    }

    /// Opens the next part of `day`'s partition, first completing the least recently used
    /// file if too many are open, and recording the new file in the intent before any byte.
    async fn open_file(&mut self, day: i32) -> Result<OpenFile, SinkError> {
        while self.open.len() >= self.max_open_files {
            let Some(lru) = self.open.iter().min_by_key(|(_, f)| f.last_used).map(|(d, _)| *d) else {
                break;
            };
            if let Some(file) = self.open.remove(&lru) {
                self.finish(file).await?;
            }
        }
        let dt = layout::dt_segment(day).map_err(|reason| SinkError::TimeColumn {
            unit: self.unit.id.clone(),
            column: self.time_column.clone(),
            reason,
        })?;
        let part = self.next_part.entry(day).or_insert(0);
        let file = layout::data_file(&self.root, &self.partitions, &dt, &self.unit.id, *part);
        *part += 1;
        let location = file.location.clone();
        self.files.push(FileEntry {
            file,
            rows: 0,
            bytes: 0,
            state: FileState::Open,
        });
        self.write_intent().await?;

        let temp = |source| SinkError::LocalIo {
            what: "creating a temporary file for the Parquet file being written in",
            path: std::env::temp_dir(),
            source,
        };
        let spool = temp_file().map_err(temp)?;
        let spill = Spill::new().map_err(temp)?;
        let options = ArrowWriterOptions::new()
            .with_properties(self.props.clone())
            .with_page_store_factory(Arc::new(spill));
        let writer = ArrowWriter::try_new_with_options(spool, Arc::clone(&self.file_schema), options)
            .map_err(|e| SinkError::parquet("starting", &location, e))?;
        let upload = Upload {
            inner: BufWriter::with_capacity(Arc::clone(&self.store), location.clone(), self.upload_buffer)
                .with_max_concurrency(UPLOAD_CONCURRENCY),
            completing: false,
        };
        tracing::debug!(unit = %self.unit.id, path = %location, "opened data file");
        Ok(OpenFile {
            writer,
            upload,
            entry: self.files.len() - 1,
            rows: 0,
            last_used: self.tick,
        })
    }

    /// Completes a file: footer written, upload completed, the file visible.
    async fn finish(&mut self, mut file: OpenFile) -> Result<(), SinkError> {
        let location = self.files[file.entry].file.location.clone();
        if let Err(e) = file.writer.finish() {
            return Err(self.fail(file, "completing", e).await);
        }
        let bytes = file.writer.bytes_written() as u64;
        if let Err(e) = file.upload.send(file.writer.inner(), bytes).await {
            return Err(self.fail(file, "completing", e).await);
        }
        let entry = &mut self.files[file.entry];
        entry.rows = file.rows;
        entry.bytes = bytes;
        entry.state = FileState::Complete;
        tracing::debug!(unit = %self.unit.id, path = %location, rows = entry.rows, bytes = entry.bytes, "completed data file");
        Ok(())
    }

    /// A file's write failed: aborts its upload and returns the error to report.
    async fn fail(&mut self, file: OpenFile, what: &'static str, e: ParquetError) -> SinkError {
        let entry = &mut self.files[file.entry];
        entry.state = FileState::Failed;
        let location = entry.file.location.clone();
        file.upload.abort(&location).await;
        SinkError::parquet(what, &location, e)
    }

    // `&mut self`: the writer is Send but not Sync, and this future must be Send.
    async fn write_intent(&mut self) -> Result<(), SinkError> {
        let intent = Intent {
            unit: self.unit.id.clone(),
            files: self.files.iter().map(|f| f.file.relative.clone()).collect(),
        };
        let location = layout::meta_object(&self.root, MetaKind::Intents, &self.unit.id);
        put_json(self.store.as_ref(), &location, &intent, "writing intent").await
    }

    async fn commit(mut self, summary: UnitSummary) -> Result<CommitReport, SinkError> {
        let manifest = match self.publish(&summary).await {
            Ok(manifest) => manifest,
            // The files carry the winner's names: deleting them would delete its commit.
            Err(e @ SinkError::Conflict { .. }) => return Err(e),
            Err(e) => {
                self.discard().await;
                return Err(e);
            }
        };
        // From here the unit is committed: if deleting the intent fails, the next attempt
        // deletes the files it lists and writes them again, which is still exactly once.
        let intent = layout::meta_object(&self.root, MetaKind::Intents, &self.unit.id);
        delete_if_exists(self.store.as_ref(), &intent, "deleting intent").await?;
        if summary.rows != manifest.rows {
            tracing::warn!(unit = %self.unit.id, counted = summary.rows, written = manifest.rows, "row counts differ");
        }
        Ok(CommitReport {
            files: manifest.files.iter().map(|f| f.path.clone()).collect(),
            rows: manifest.rows,
            bytes: manifest.files.iter().map(|f| f.bytes).sum(),
            bad_records: summary.bad_records.len() as u64,
        })
    }

    /// Everything up to and including the manifest write.
    async fn publish(&mut self, summary: &UnitSummary) -> Result<Manifest, SinkError> {
        // In opening order; files not reached stay open, so that `discard` aborts them.
        let mut days: Vec<(usize, i32)> = self.open.iter().map(|(day, f)| (f.entry, *day)).collect();
        days.sort_unstable();
        for (_, day) in days {
            if let Some(file) = self.open.remove(&day) {
                self.finish(file).await?;
            }
        }
        if let Some(failed) = self.files.iter().find(|f| f.state != FileState::Complete) {
            return Err(SinkError::FailedEarlier {
                unit: self.unit.id.clone(),
                path: failed.file.relative.clone(),
            });
        }
        let files: Vec<ManifestFile> = self
            .files
            .iter()
            .map(|f| ManifestFile {
                path: f.file.relative.clone(),
                rows: f.rows,
                bytes: f.bytes,
            })
            .collect();

        // Old parts that this commit did not overwrite (a provisional unit rewritten smaller).
        // Deleted before the manifest is replaced: a crash in between leaves the intent, and the
        // next attempt still finds every file to clean up.
        if let Some(previous) = &self.previous {
            let current: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
            for old in previous.files.iter().filter(|f| !current.contains(f.path.as_str())) {
                let manifest = layout::meta_object(&self.root, MetaKind::Manifests, &self.unit.id);
                let file = layout::stored_data_file(&self.root, &old.path).map_err(|reason| SinkError::Corrupt {
                    what: "manifest",
                    path: manifest.to_string(),
                    reason,
                })?;
                delete_if_exists(
                    self.store.as_ref(),
                    &file.location,
                    "deleting a stale part of the previous commit",
                )
                .await?;
                // object_store does not sync a directory after a delete: without this, a power
                // loss after the new manifest could bring the stale part (and its rows) back.
                if let Some(local_root) = &self.local_root {
                    sync_parent_dir(local_root, &file.location).await?;
                }
            }
        }

        let dead_letter = layout::meta_object(&self.root, MetaKind::DeadLetter, &self.unit.id);
        if summary.bad_records.is_empty() {
            delete_if_exists(self.store.as_ref(), &dead_letter, "deleting dead-letter file").await?;
        } else {
            let mut body = Vec::new();
            for record in &summary.bad_records {
                serde_json::to_writer(&mut body, record).map_err(|source| SinkError::Json {
                    what: "encoding dead-letter record for",
                    path: dead_letter.to_string(),
                    source,
                })?;
                body.push(b'\n');
            }
            put_bytes(self.store.as_ref(), &dead_letter, body, "writing dead-letter file").await?;
        }

        etl_core::failpoint::failpoint("sink.before_manifest").await;
        let manifest = Manifest {
            unit: self.unit.clone(),
            rows: files.iter().map(|f| f.rows).sum(),
            files,
            committed_at: Utc::now(),
        };
        let location = layout::meta_object(&self.root, MetaKind::Manifests, &self.unit.id);
        put_json_if(
            self.store.as_ref(),
            &location,
            &manifest,
            self.previous_version.clone(),
            &self.unit.id,
            "writing manifest",
        )
        .await?;
        Ok(manifest)
    }

    /// Aborts in-flight uploads, deletes the files this attempt completed, then the intent.
    /// Best effort: failures are logged, and the intent is kept when a file could not be
    /// deleted so that the next attempt removes it.
    async fn discard(&mut self) {
        for (_, file) in self.open.drain() {
            let location = self.files[file.entry].file.location.clone();
            file.upload.abort(&location).await;
        }
        let mut clean = true;
        for entry in self.files.iter().filter(|f| f.state != FileState::Open) {
            if let Err(e) = delete_if_exists(self.store.as_ref(), &entry.file.location, "deleting aborted file").await {
                tracing::warn!(unit = %self.unit.id, error = %e, "cleanup after abort failed");
                clean = false;
            }
        }
        if clean {
            let intent = layout::meta_object(&self.root, MetaKind::Intents, &self.unit.id);
            if let Err(e) = delete_if_exists(self.store.as_ref(), &intent, "deleting intent").await {
                tracing::warn!(unit = %self.unit.id, error = %e, "cleanup after abort failed");
            }
        } else {
            tracing::warn!(unit = %self.unit.id, "kept the unit's intent: its next attempt removes the remaining files");
        }
    }
}

impl UnitWriter for ParquetUnitWriter {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<(), StageError>> {
        Box::pin(async move { self.write_batch(batch).await.map_err(StageError::from) })
    }

    fn commit(self: Box<Self>, summary: UnitSummary) -> BoxFuture<'static, Result<CommitReport, StageError>> {
        Box::pin(async move { (*self).commit(summary).await.map_err(StageError::from) })
    }

    fn abort(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut writer = *self;
            writer.discard().await;
            tracing::info!(unit = %writer.unit.id, "unit aborted");
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_upload_names() {
        assert!(is_staged_upload_of("u-0000.parquet#1", "u-0000.parquet"));
        assert!(is_staged_upload_of("u-0000.parquet#123", "u-0000.parquet"));
        assert!(!is_staged_upload_of("u-0000.parquet", "u-0000.parquet"));
        assert!(!is_staged_upload_of("u-0000.parquet#", "u-0000.parquet"));
        assert!(!is_staged_upload_of("u-0000.parquet#1a", "u-0000.parquet"));
        assert!(!is_staged_upload_of("u-0000.parquet.bak#1", "u-0000.parquet"));
        assert!(!is_staged_upload_of("u-00001.parquet#1", "u-0000.parquet"));
    }

    #[test]
    fn options_are_checked() {
        assert!(ParquetSinkOptions::default().check().is_ok());
        for opts in [
            ParquetSinkOptions {
                compression_level: 99,
                ..Default::default()
            },
            ParquetSinkOptions {
                row_group_rows: 0,
                ..Default::default()
            },
            ParquetSinkOptions {
                max_open_files: 0,
                ..Default::default()
            },
            ParquetSinkOptions {
                max_file_size: 0,
                ..Default::default()
            },
            ParquetSinkOptions {
                time_column: String::new(),
                ..Default::default()
            },
        ] {
            assert!(opts.check().is_err(), "{opts:?}");
        }
    }

    #[test]
    fn open_understands_paths_and_urls() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        let sink = ParquetSink::open(nested.to_str().unwrap(), ParquetSinkOptions::default()).unwrap();
        assert!(nested.is_dir());
        assert_eq!(
            sink.location(),
            std::fs::canonicalize(&nested).unwrap().display().to_string()
        );
        let url = url::Url::from_file_path(dir.path().join("c")).unwrap();
        let sink = ParquetSink::open(url.as_str(), ParquetSinkOptions::default()).unwrap();
        assert!(dir.path().join("c").is_dir());
        assert!(sink.local_root.is_some());
        let s3 = ParquetSink::open("s3://bucket/some/prefix/", ParquetSinkOptions::default()).unwrap();
        assert_eq!(s3.root.as_ref(), "some/prefix");
        assert_eq!(s3.location(), "s3://bucket/some/prefix");
        assert!(s3.local_root.is_none());
        for bad in ["", "gs://bucket/x", "s3:///x", "s3://key:secret@bucket/x"] {
            assert!(ParquetSink::open(bad, ParquetSinkOptions::default()).is_err(), "{bad}");
        }
        let err = ParquetSink::open("s3://key:secret@bucket/x", ParquetSinkOptions::default()).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(err.to_string().contains("s3://key:***@bucket/x"), "{err}");
    }
}
