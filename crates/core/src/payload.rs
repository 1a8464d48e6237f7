//! What a source hands to a decoder: the raw bytes of one page, or one file as a stream of
//! chunks. Sources do I/O only; they never parse records.

use std::collections::BTreeMap;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::StageError;

/// Describes a payload: enough for the decoder to pick its behaviour and for errors to say
/// where a bad record came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayloadMeta {
    /// Human-readable name: `page 3`, a file name. Used in errors and dead-letter records.
    pub name: String,
    /// The content type the server announced, if any.
    pub content_type: Option<String>,
    /// Free-form labels (domain, file name...) a decoder may use.
    pub labels: BTreeMap<String, String>,
}

/// The bytes of a payload.
#[derive(Debug)]
pub enum PayloadBody {
    /// A whole page (bounded by the API's page size).
    Bytes(Bytes),
    /// A file streamed in chunks, in order; an `Err` ends the stream and fails the unit.
    Chunks(mpsc::Receiver<Result<Bytes, StageError>>),
}

/// One page or file of a unit, numbered in fetch order.
#[derive(Debug)]
pub struct Payload {
    /// 0-based position within the unit; batches are committed in this order.
    pub seq: u64,
    pub meta: PayloadMeta,
    pub body: PayloadBody,
}

/// The sending half a source writes a unit's payloads into. It numbers payloads and applies
/// backpressure: `send` waits while the decoders are behind.
#[derive(Debug)]
pub struct PayloadSender {
    tx: mpsc::Sender<Payload>,
    next_seq: u64,
    checkpoint: Option<crate::state::Checkpoint>,
}

impl PayloadSender {
    pub fn new(tx: mpsc::Sender<Payload>) -> Self {
        Self {
            tx,
            next_seq: 0,
            checkpoint: None,
        }
    }

    /// The same sender with the unit's checkpoint (the runner sets it).
    pub fn with_checkpoint(mut self, checkpoint: crate::state::Checkpoint) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }

    /// Where the source may record progress that must survive a crash (an export job id).
    /// `None` outside a run (tests, previews): such a source then simply starts afresh.
    pub fn checkpoint(&self) -> Option<&crate::state::Checkpoint> {
        self.checkpoint.as_ref()
    }

    /// Sends one payload; fails only when the pipeline has stopped (cancelled or failed).
    pub async fn send(&mut self, meta: PayloadMeta, body: PayloadBody) -> Result<(), StageError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.tx
            .send(Payload { seq, meta, body })
            .await
            .map_err(|_| StageError::cancelled().context("pipeline stopped"))
    }

    /// Sends a whole page.
    pub async fn send_bytes(&mut self, meta: PayloadMeta, bytes: Bytes) -> Result<(), StageError> {
        self.send(meta, PayloadBody::Bytes(bytes)).await
    }

    /// Number of payloads sent so far.
    pub fn sent(&self) -> u64 {
        self.next_seq
    }
}
