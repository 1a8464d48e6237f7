//! The runtime contracts of `etl`: what a unit of work is, what flows between stages, and the
//! runner that wires source -> decode -> transforms -> sink with bounded channels.
//!
//! Every other crate depends on this one and on nothing else of the workspace, so the contracts
//! here are the only coupling between a source, a decoder, a transform and a sink. They are kept
//! small on purpose: a new source implements [`Source`], a new record format implements
//! [`Format`] and [`Decoder`], a new sink implements [`Sink`] and [`UnitWriter`].
//!
//! ```text
//!  Source::plan ─► Unit ─► Source::fetch ─► Payload ─► Decoder ─► RecordBatch ─► Transform* ─► UnitWriter
//!                                   (bounded mpsc)     (blocking pool,           (in order)      │ commit
//!                                                       order kept per unit)                     ▼
//!                                                                     StateStore::mark_done ◄── durable
//! ```

pub mod bad;
pub mod error;
pub mod failpoint;
pub mod payload;
pub mod runner;
pub mod secret;
pub mod shard;
pub mod stage;
pub mod state;
pub mod unit;

pub use bad::{BadRecord, BadRecordPolicy, UnknownFieldPolicy};
pub use error::{DecodeError, ErrorClass, StageError};
pub use payload::{Payload, PayloadBody, PayloadMeta, PayloadSender};
pub use runner::{Pipeline, RunOptions, RunReport, UnitOutcome, UnitStatus};
pub use secret::Secret;
pub use shard::Shard;
pub use stage::{
    BudgetTime, CommitReport, Cost, DecodeContext, Decoder, FetchStats, Format, Plan, PlanRequest, Sink, Source,
    Transform, UnitSummary, UnitWriter,
};
pub use state::{Checkpoint, Claim, Lease, MemoryState, StateStore, UnitRecord, Unshared};
pub use unit::{Unit, Window};

/// Re-exported so that every crate names the same cancellation token type.
pub use tokio_util::sync::CancellationToken;
