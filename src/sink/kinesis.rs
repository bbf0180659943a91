//! `KinesisSink`: evaluation events to a Kinesis data stream (`KINESIS_STREAM_NAME`).
//!
//! One `send` is one `PutRecords` call. Kinesis accepts or rejects each record on its
//! own (a throttled shard fails only the records bound for it), so the answer is the
//! list of rejected records, by index; the event pipeline above decides what to resend
//! and when.

use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, PutRecordsResultEntry};
use aws_sdk_kinesis::Client;

use super::{BoxFuture, EventRecord, EventSink, FailedRecord, SinkError, SinkLimits};

/// The code reported for a record Kinesis returned no result for (it always returns
/// one per record; this only guards against a truncated answer).
const NO_RESULT: &str = "NoResultReturned";

/// Ships records to one Kinesis stream.
///
/// Cheap to clone: the SDK client is a handle to a shared connection pool, built once
/// per Lambda environment by the caller.
#[derive(Debug, Clone)]
pub struct KinesisSink {
    client: Client,
    /// A stream name, or a stream ARN (`arn:...`), which cross-account streams need.
    stream: String,
}

impl KinesisSink {
    /// A sink writing to `stream`, a stream name or ARN. Nothing is called yet: a
    /// missing stream shows up as [`SinkError::Kinesis`] on the first send.
    pub fn new(client: Client, stream: impl Into<String>) -> Self {
        KinesisSink { client, stream: stream.into() }
    }

    async fn put_records(&self, records: &[EventRecord]) -> Result<Vec<FailedRecord>, SinkError> {
        if records.is_empty() {
            // Kinesis rejects an empty `PutRecords`; there is nothing to report either.
            return Ok(Vec::new());
        }
        let entries = records.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
        let request = self.client.put_records().set_records(Some(entries));
        // Stream names cannot contain ':', so an ARN is unambiguous.
        let request = if self.stream.starts_with("arn:") {
            request.stream_arn(&self.stream)
        } else {
            request.stream_name(&self.stream)
        };
        let output = request.send().await.map_err(kinesis_error)?;
        let failed = failures(records.len(), output.records);
        tracing::debug!(stream = %self.stream, sent = records.len(), failed = failed.len(), "PutRecords");
        Ok(failed)
    }
}

impl EventSink for KinesisSink {
    fn send<'a>(&'a self, records: &'a [EventRecord]) -> BoxFuture<'a, Result<Vec<FailedRecord>, SinkError>> {
        Box::pin(self.put_records(records))
    }

    /// The `PutRecords` limits: 500 records, 5 MiB per call, 1 MiB per record (data plus
    /// partition key).
    fn limits(&self) -> SinkLimits {
        SinkLimits { max_records: 500, max_bytes: 5 << 20, max_record_bytes: 1 << 20 }
    }
}

/// The SDK entry for one record.
fn entry(record: &EventRecord) -> Result<PutRecordsRequestEntry, SinkError> {
    PutRecordsRequestEntry::builder()
        .data(Blob::new(record.data.clone()))
        .partition_key(&record.partition_key)
        .build()
        .map_err(kinesis_error)
}

/// The rejected records of a call that sent `sent` records. Kinesis answers one result
/// per record, in request order; a result with an `ErrorCode` is a rejected record.
/// Records without a result at all are reported failed too, so they are resent rather
/// than silently lost.
fn failures(sent: usize, results: Vec<PutRecordsResultEntry>) -> Vec<FailedRecord> {
    let answered = results.len().min(sent);
    let mut failed: Vec<FailedRecord> = results
        .into_iter()
        .take(sent)
        .enumerate()
        .filter_map(|(index, result)| result.error_code.map(|code| FailedRecord { index, code }))
        .collect();
    failed.extend((answered..sent).map(|index| FailedRecord { index, code: NO_RESULT.to_owned() }));
    failed
}

/// Wraps an SDK failure with its full context (the SDK's own `Display` says only
/// "service error"); the SDK type itself stays inside as the `source`.
fn kinesis_error<E>(err: E) -> SinkError
where
    E: std::error::Error + Send + Sync + 'static,
{
    SinkError::Kinesis { message: DisplayErrorContext(&err).to_string(), source: Box::new(err) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> PutRecordsResultEntry {
        PutRecordsResultEntry::builder().sequence_number("1").shard_id("shardId-000000000000").build()
    }

    fn rejected(code: &str) -> PutRecordsResultEntry {
        PutRecordsResultEntry::builder().error_code(code).error_message("slow down").build()
    }

    #[test]
    fn rejected_results_are_reported_at_their_index() {
        let results = vec![ok(), rejected("ProvisionedThroughputExceededException"), ok(), rejected("InternalFailure")];
        assert_eq!(
            failures(4, results),
            vec![
                FailedRecord { index: 1, code: "ProvisionedThroughputExceededException".into() },
                FailedRecord { index: 3, code: "InternalFailure".into() },
            ]
        );
    }

    #[test]
    fn all_accepted_is_an_empty_report() {
        assert_eq!(failures(3, vec![ok(), ok(), ok()]), vec![]);
    }

    #[test]
    fn records_without_a_result_are_reported_failed() {
        let failed = failures(3, vec![ok()]);
        assert_eq!(failed.iter().map(|f| f.index).collect::<Vec<_>>(), vec![1, 2]);
        assert!(failed.iter().all(|f| f.code == NO_RESULT));
    }

    #[test]
    fn limits_are_the_put_records_limits() {
        let config = aws_sdk_kinesis::Config::builder().behavior_version_latest().build();
        let sink = KinesisSink::new(Client::from_conf(config), "events");
        assert_eq!(
            sink.limits(),
            SinkLimits { max_records: 500, max_bytes: 5 * 1024 * 1024, max_record_bytes: 1024 * 1024 }
        );
    }
}
