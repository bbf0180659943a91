//! Where evaluation events go: the `EventSink` port and its adapters.
//!
//! The sink only ships bytes. Buffering, batching to the sink's limits, sampling,
//! summaries and retries live above it (in the `events` module), so every sink gets them
//! and they can be tested without AWS. `PutRecordsRequestEntry` never leaves `kinesis.rs`.

mod file;
mod kinesis;
pub mod kpl;

pub use file::FileSink;
pub use kinesis::{KinesisSink, AGGREGATE_BYTES};

pub use crate::store::BoxFuture;

/// One serialized event, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Kinesis partition key: the user id (or the flag key for summary records).
    pub partition_key: String,
    /// The event as one line of JSON (no trailing newline).
    pub data: Vec<u8>,
}

/// How much one [`EventSink::send`] call may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkLimits {
    /// Most records per call (Kinesis `PutRecords`: 500).
    pub max_records: usize,
    /// Most bytes per call, data plus partition keys (Kinesis: 5 MiB).
    pub max_bytes: usize,
    /// Most bytes in one record, data plus partition key (Kinesis: 1 MiB).
    pub max_record_bytes: usize,
}

/// A record the sink did not accept; it may be sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecord {
    /// Index into the slice passed to [`EventSink::send`].
    pub index: usize,
    /// The sink's error code, e.g. `ProvisionedThroughputExceededException`.
    pub code: String,
}

/// Ships batches of serialized events somewhere.
pub trait EventSink: Send + Sync {
    /// Sends `records` (within [`EventSink::limits`]) and reports the ones that failed.
    /// `Err` means the whole call failed and every record may be retried.
    fn send<'a>(&'a self, records: &'a [EventRecord]) -> BoxFuture<'a, Result<Vec<FailedRecord>, SinkError>>;

    /// The size limits of one call.
    fn limits(&self) -> SinkLimits;
}

/// A send failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The `PutRecords` call failed (network, throttling of the call, missing stream...).
    #[error("Kinesis PutRecords failed: {message}")]
    Kinesis {
        /// The SDK's full error context, for logs.
        message: String,
        /// The SDK error itself.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Writing the local events file failed.
    #[error("cannot write events file {path}: {source}")]
    File {
        /// The file (or `-` for stdout).
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
