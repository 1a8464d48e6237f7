//! `etl preview`: the first page or file of the first unit, shown on the terminal.
//!
//! While a pipeline is being set up, the question is "what do the records look like?", and a
//! full run is the wrong tool to answer it: it writes a dataset, marks units done, and may
//! take minutes. A preview plans like `run`, then fetches the first unit only until the source
//! hands over its first payload, decodes that payload with the pipeline's format, applies the
//! transforms and prints the first records. Then it stops the source (the fetch task is
//! aborted, so no further page is requested and no download goes on). It reads no state (the
//! first unit is shown even when it is done) and writes nothing: the pipeline comes from
//! [`registry::prepare_preview`], whose sink is JSON lines on standard output (`--json`) and
//! whose state is in memory, and the configured sink is never opened.

use std::io::Write;
use std::sync::Arc;

use arrow_array::RecordBatch;
use chrono::Utc;
use etl_core::{
    DecodeContext, ErrorClass, Payload, PayloadBody, PayloadSender, PlanRequest, StageError, Unit, UnitSummary,
};
use tokio::sync::mpsc;

use crate::exit;
use crate::registry::{self, Prepared};

/// What `etl preview` was asked.
#[derive(Debug)]
pub struct Args {
    pub file: std::path::PathBuf,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Records shown at most.
    pub limit: usize,
    /// JSON lines (the jsonl sink's encoding) instead of a table.
    pub json: bool,
}

/// Runs the preview; returns the exit code, with the classes of `etl run`.
pub async fn preview(args: Args) -> u8 {
    let (prepared, req) = match crate::load(
        &args.file,
        args.from.as_deref(),
        args.to.as_deref(),
        registry::prepare_preview,
    ) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let (from, to) = (req.from, req.to);
    let Some((unit, planned)) = (match first_unit(&prepared, &req).await {
        Ok(u) => u,
        Err(code) => return code,
    }) else {
        eprintln!(
            "{}: nothing to preview: the plan from {} to {} has no unit",
            prepared.config.path.display(),
            from.format("%Y-%m-%dT%H:%M:%SZ"),
            to.format("%Y-%m-%dT%H:%M:%SZ")
        );
        return exit::OK;
    };
    let shown = match first_payload(&prepared, &unit, args.limit).await {
        Ok(shown) => shown,
        Err(e) => {
            eprintln!(
                "error: {}: preview of unit {}: {e}",
                prepared.config.path.display(),
                unit.id
            );
            return crate::code_for(e.class());
        }
    };
    let Some(shown) = shown else {
        eprintln!(
            "{}: unit {} (the first of {planned}) has no page or file: nothing to preview",
            prepared.config.path.display(),
            unit.id
        );
        return exit::OK;
    };
    let about = describe(&unit, planned, &shown);
    let printed = if args.json {
        eprintln!("{about}");
        print_json(&prepared, &unit, &shown).await
    } else {
        print_table(&shown, &about)
    };
    match printed {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: printing the preview: {e:#}");
            exit::INTERNAL
        }
    }
}

/// Plans like `run` (a listing for sources whose units are files on the server, else the pure
/// plan) with no state, and returns the first unit and the number of units planned.
async fn first_unit(prepared: &Prepared, req: &PlanRequest) -> Result<Option<(Unit, usize)>, u8> {
    let cfg = &prepared.config;
    let source = &prepared.pipeline.source;
    let no_state = Default::default();
    let discovered = source.discover(req, &no_state).await.map_err(|e| {
        eprintln!("error: {}: listing the source's files: {e}", cfg.path.display());
        crate::code_for(e.class())
    })?;
    let plan = discovered.map_or_else(|| source.plan(req), Ok).map_err(|e| {
        eprintln!("error: {}: planning: {e}", cfg.path.display());
        if e.class() == ErrorClass::Permanent {
            exit::USAGE
        } else {
            exit::RETRYABLE
        }
    })?;
    for note in &plan.notes {
        tracing::warn!(pipeline = %cfg.name, "{note}");
    }
    let planned = plan.units.len();
    Ok(plan.units.into_iter().next().map(|u| (u, planned)))
}

/// The first payload of a unit, decoded and transformed.
#[derive(Debug)]
struct Shown {
    /// The payload's name (`page 1`, a file name).
    payload: String,
    /// Records the decoder produced from the payload.
    decoded: u64,
    /// Records left after the transforms (filters drop some).
    kept: u64,
    /// Records skipped under `on_bad_record: skip`.
    skipped: u64,
    /// The first `limit` records after the transforms.
    batches: Vec<RecordBatch>,
    schema: arrow_schema::SchemaRef,
}

impl Shown {
    fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Starts the unit's fetch, takes its first payload, decodes it and stops the fetch. `None`
/// when the unit ended without any payload.
async fn first_payload(prepared: &Prepared, unit: &Unit, limit: usize) -> Result<Option<Shown>, StageError> {
    let pipeline = &prepared.pipeline;
    let schema = pipeline.output_schema()?;
    // Capacity 1: the source fetches at most one payload ahead of the one shown.
    let (tx, mut rx) = mpsc::channel::<Payload>(1);
    let source = Arc::clone(&pipeline.source);
    let fetched_unit = unit.clone();
    // Without a checkpoint (no state), a source that starts server-side work starts it afresh.
    let fetch = tokio::spawn(async move { source.fetch(&fetched_unit, PayloadSender::new(tx)).await });
    // Aborted on every return path: nothing more is requested once the first payload is read.
    let _stop = AbortOnDrop(fetch.abort_handle());
    let Some(payload) = rx.recv().await else {
        // The source finished (or failed) before handing over anything.
        return match fetch.await {
            Ok(Ok(_)) => Ok(None),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(StageError::internal(format!("the fetch task failed: {e}"))),
        };
    };
    let cfg = &prepared.config;
    let ctx = DecodeContext {
        policy: cfg.on_bad_record,
        batch_size: cfg.runtime.batch_size,
        unknown_fields: cfg.on_unknown_field,
    };
    let mut decoder = pipeline.format.decoder(&payload.meta, ctx);
    let mut shown = Shown {
        payload: payload.meta.name.clone(),
        decoded: 0,
        kept: 0,
        skipped: 0,
        batches: Vec::new(),
        schema,
    };
    let in_payload = |e: StageError| e.context(format!("payload {:?}", payload.meta.name));
    let mut out = Vec::new();
    // A second payload is of no interest: closing the channel makes the source's next send
    // fail, and the source stops. A streamed file is read to its end first: its chunks come
    // from a download the source runs, which stops with the source.
    match payload.body {
        PayloadBody::Bytes(bytes) => {
            rx.close();
            tokio::task::block_in_place(|| decoder.decode(&bytes, &mut out)).map_err(|e| in_payload(e.into()))?;
            keep(&mut shown, &mut out, pipeline, limit).map_err(in_payload)?;
        }
        PayloadBody::Chunks(mut chunks) => {
            while let Some(chunk) = chunks.recv().await {
                let chunk = chunk.map_err(in_payload)?;
                tokio::task::block_in_place(|| decoder.decode(&chunk, &mut out)).map_err(|e| in_payload(e.into()))?;
                keep(&mut shown, &mut out, pipeline, limit).map_err(in_payload)?;
            }
            rx.close();
        }
    }
    decoder.finish(&mut out).map_err(|e| in_payload(e.into()))?;
    keep(&mut shown, &mut out, pipeline, limit).map_err(in_payload)?;
    shown.skipped = decoder.take_bad_records().len() as u64;
    Ok(Some(shown))
}

/// Aborts the fetch task when the preview is done with it, however it returns.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Applies the transforms to freshly decoded batches, counts them, and keeps rows up to `limit`.
fn keep(
    shown: &mut Shown,
    decoded: &mut Vec<RecordBatch>,
    pipeline: &etl_core::Pipeline,
    limit: usize,
) -> Result<(), StageError> {
    for mut batch in decoded.drain(..) {
        shown.decoded += batch.num_rows() as u64;
        for t in &pipeline.transforms {
            batch = t
                .apply(batch)
                .map_err(|e| e.context(format!("transform {}", t.describe())))?;
        }
        shown.kept += batch.num_rows() as u64;
        let room = limit.saturating_sub(shown.rows());
        if room > 0 && batch.num_rows() > 0 {
            shown.batches.push(batch.slice(0, room.min(batch.num_rows())));
        }
    }
    Ok(())
}

/// `unit mail_delivery-2025-09-11 (1 of 7 planned; 2025-09-11T00:00:00Z to ...), payload "page 1": ...`
fn describe(unit: &Unit, planned: usize, shown: &Shown) -> String {
    let fmt = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut about = format!(
        "unit {} (first of {planned} planned; {} to {}",
        unit.id,
        fmt(unit.window.start),
        fmt(unit.window.end)
    );
    for (k, v) in &unit.partitions {
        about.push_str(&format!("; {k}={v}"));
    }
    about.push_str(&format!("), payload {:?}: {} record(s)", shown.payload, shown.decoded));
    if shown.kept != shown.decoded {
        about.push_str(&format!(", {} after the transforms", shown.kept));
    }
    if shown.skipped > 0 {
        about.push_str(&format!(", {} bad record(s) skipped", shown.skipped));
    }
    about.push_str(&format!(", {} shown", shown.rows()));
    about
}

fn print_table(shown: &Shown, about: &str) -> anyhow::Result<()> {
    let mut batches = shown
        .batches
        .iter()
        .map(etl_sink::utc_fixed_offset)
        .collect::<Result<Vec<_>, _>>()?;
    if batches.is_empty() {
        // A table with the column names only.
        batches.push(etl_sink::utc_fixed_offset(&RecordBatch::new_empty(Arc::clone(
            &shown.schema,
        )))?);
    }
    let table = arrow_cast::pretty::pretty_format_batches(&batches)?;
    write_stdout(format!("{table}\n{about}\n").as_bytes())
}

/// Writes the records through the pipeline's preview sink (JSON lines on standard output),
/// the same encoding as `sink: {type: jsonl}`.
async fn print_json(prepared: &Prepared, unit: &Unit, shown: &Shown) -> anyhow::Result<()> {
    let sink = &prepared.pipeline.sink;
    let mut writer = sink.begin_unit(unit, Arc::clone(&shown.schema)).await?;
    for batch in &shown.batches {
        writer.write(batch.clone()).await?;
    }
    writer.commit(UnitSummary::default()).await?;
    Ok(())
}

/// Standard output, where a closed pipe (`etl preview ... | head`) is not an error.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
