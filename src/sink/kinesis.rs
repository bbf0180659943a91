//! `KinesisSink`: evaluation events to a Kinesis data stream (`KINESIS_STREAM_NAME`).
//!
//! One `send` is one `PutRecords` call. Kinesis accepts or rejects each record on its
//! own (a throttled shard fails only the records bound for it), so the answer is the
//! list of rejected records, by index; the event pipeline above decides what to resend
//! and when.
//!
//! With aggregation on ([`KinesisSink::aggregated`]), the events of one `send` are packed
//! in order into KPL aggregated records of at most [`AGGREGATE_BYTES`] (one 25 KB PUT
//! payload unit) — see [`super::kpl`]; a rejected aggregated record reports every event
//! in it, so the pipeline resends exactly those.

use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, PutRecordsResultEntry};
use aws_sdk_kinesis::Client;

use super::{BoxFuture, EventRecord, EventSink, FailedRecord, SinkError, SinkLimits};

/// The code reported for a record Kinesis returned no result for (it always returns
/// one per record; this only guards against a truncated answer).
const NO_RESULT: &str = "NoResultReturned";

/// The code reported for the events of a second `PutRecords` call of one aggregated
/// `send` that failed as a whole (the first call's failure fails the `send` itself).
const CALL_FAILED: &str = "PutRecordsFailed";

/// The size an aggregated record is filled to, data plus partition key: Kinesis bills
/// PUT payload units of 25 KB, so a fuller record would cost a second unit.
pub const AGGREGATE_BYTES: usize = 25_000;

/// `PutRecords`' own limits: records and bytes (data plus partition keys) per call.
const CALL_RECORDS: usize = 500;
const CALL_BYTES: usize = 5 << 20;
/// Most bytes in one Kinesis record (data plus partition key).
const RECORD_BYTES: usize = 1 << 20;

/// Ships records to one Kinesis stream.
///
/// Cheap to clone: the SDK client is a handle to a shared connection pool, built once
/// per Lambda environment by the caller.
#[derive(Debug, Clone)]
pub struct KinesisSink {
    client: Client,
    /// A stream name, or a stream ARN (`arn:...`), which cross-account streams need.
    stream: String,
    /// Pack events into KPL aggregated records.
    aggregate: bool,
}

impl KinesisSink {
    /// A sink writing to `stream`, a stream name or ARN. Nothing is called yet: a
    /// missing stream shows up as [`SinkError::Kinesis`] on the first send.
    pub fn new(client: Client, stream: impl Into<String>) -> Self {
        KinesisSink { client, stream: stream.into(), aggregate: false }
    }

    /// The same sink, packing events into KPL aggregated records when `aggregate`.
    pub fn aggregated(self, aggregate: bool) -> Self {
        KinesisSink { aggregate, ..self }
    }

    async fn put_records(&self, records: &[EventRecord]) -> Result<Vec<FailedRecord>, SinkError> {
        if records.is_empty() {
            // Kinesis rejects an empty `PutRecords`; there is nothing to report either.
            return Ok(Vec::new());
        }
        if self.aggregate {
            return self.put_aggregated(records).await;
        }
        let entries = records.iter().map(|r| entry(&r.partition_key, r.data.clone())).collect::<Result<_, _>>()?;
        let results = self.put(entries).await?;
        let failed = failures(records.len(), results);
        tracing::debug!(stream = %self.stream, sent = records.len(), failed = failed.len(), "PutRecords");
        Ok(failed)
    }

    /// `records` packed into aggregated records, sent in as few calls as `PutRecords`'
    /// limits allow (one, unless the events are tiny); a rejected aggregated record
    /// reports each of its events. A call after the first that fails as a whole reports
    /// its events failed (the earlier calls' events were delivered and must not be sent
    /// twice).
    async fn put_aggregated(&self, records: &[EventRecord]) -> Result<Vec<FailedRecord>, SinkError> {
        let packed = super::kpl::pack(records, AGGREGATE_BYTES);
        let total = packed.len();
        let sizes: Vec<usize> = calls(&packed).map(<[_]>::len).collect();
        let mut packed = packed.into_iter();
        let mut failed = Vec::new();
        for (n, size) in sizes.into_iter().enumerate() {
            // The records' bytes move into the request (no second copy of a flush); only
            // which events each one holds is kept, to report rejections.
            let call: Vec<super::kpl::Packed> = packed.by_ref().take(size).collect();
            let members: Vec<std::ops::Range<usize>> = call.iter().map(|p| p.members.clone()).collect();
            let entries = call.into_iter().map(|p| entry(&p.partition_key, p.data)).collect::<Result<_, _>>()?;
            let rejected = match self.put(entries).await {
                Ok(results) => failures(members.len(), results),
                Err(error) if n == 0 => return Err(error),
                Err(error) => {
                    tracing::warn!(stream = %self.stream, error = %error, "PutRecords failed after an earlier call of the same flush");
                    (0..members.len()).map(|index| FailedRecord { index, code: CALL_FAILED.to_owned() }).collect()
                }
            };
            for rejected in rejected {
                let events = members[rejected.index].clone();
                failed.extend(events.map(|index| FailedRecord { index, code: rejected.code.clone() }));
            }
        }
        tracing::debug!(stream = %self.stream, sent = records.len(), records = total, failed = failed.len(), "PutRecords (aggregated)");
        Ok(failed)
    }

    /// One `PutRecords` call; the results, one per entry.
    async fn put(&self, entries: Vec<PutRecordsRequestEntry>) -> Result<Vec<PutRecordsResultEntry>, SinkError> {
        let request = self.client.put_records().set_records(Some(entries));
        // Stream names cannot contain ':', so an ARN is unambiguous.
        let request = if self.stream.starts_with("arn:") {
            request.stream_arn(&self.stream)
        } else {
            request.stream_name(&self.stream)
        };
        Ok(request.send().await.map_err(kinesis_error)?.records)
    }
}

/// `packed` cut into runs that fit one `PutRecords` call each.
fn calls(packed: &[super::kpl::Packed]) -> impl Iterator<Item = &[super::kpl::Packed]> {
    let mut rest = packed;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut n = 0;
        for p in rest.iter().take(CALL_RECORDS) {
            let size = p.data.len() + p.partition_key.len();
            if n > 0 && bytes + size > CALL_BYTES {
                break;
            }
            bytes += size;
            n += 1;
        }
        let (call, after) = rest.split_at(n);
        rest = after;
        Some(call)
    })
}

impl EventSink for KinesisSink {
    fn send<'a>(&'a self, records: &'a [EventRecord]) -> BoxFuture<'a, Result<Vec<FailedRecord>, SinkError>> {
        Box::pin(self.put_records(records))
    }

    /// The `PutRecords` limits: 500 records, 5 MiB per call, 1 MiB per record (data plus
    /// partition key). Aggregated, one `send` may carry more events (up to 10,000, 5 MiB
    /// of them: they are sent in as many calls as needed), and one event up to what fits
    /// in one aggregated record with its framing.
    fn limits(&self) -> SinkLimits {
        if self.aggregate {
            let framing = super::kpl::PER_EVENT_OVERHEAD + 20 + 256;
            SinkLimits { max_records: 10_000, max_bytes: CALL_BYTES, max_record_bytes: RECORD_BYTES - framing }
        } else {
            SinkLimits { max_records: CALL_RECORDS, max_bytes: CALL_BYTES, max_record_bytes: RECORD_BYTES }
        }
    }
}

/// The SDK entry for one Kinesis record.
fn entry(partition_key: &str, data: Vec<u8>) -> Result<PutRecordsRequestEntry, SinkError> {
    PutRecordsRequestEntry::builder().data(Blob::new(data)).partition_key(partition_key).build().map_err(kinesis_error)
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
    fn aggregated_records_are_cut_into_calls_within_put_records_limits() {
        let packed = |n: usize, bytes: usize| -> Vec<super::super::kpl::Packed> {
            (0..n)
                .map(|i| super::super::kpl::Packed {
                    partition_key: "k".into(),
                    data: vec![0; bytes],
                    members: i..i + 1,
                })
                .collect()
        };
        let sizes = |p: &[super::super::kpl::Packed]| calls(p).map(<[_]>::len).collect::<Vec<_>>();
        assert_eq!(sizes(&packed(1_100, 10)), [500, 500, 100], "500 records per call");
        // 300 records of 24,999 bytes (+ the key): 209 fit in 5 MiB.
        assert_eq!(sizes(&packed(300, 24_999)), [209, 91], "5 MiB per call");
        assert!(sizes(&packed(0, 1)).is_empty());
    }

    #[test]
    fn aggregated_limits_let_a_send_carry_more_events() {
        let config = aws_sdk_kinesis::Config::builder().behavior_version_latest().build();
        let sink = KinesisSink::new(Client::from_conf(config), "events").aggregated(true);
        let limits = sink.limits();
        assert_eq!((limits.max_records, limits.max_bytes), (10_000, 5 << 20));
        assert!(limits.max_record_bytes < 1 << 20, "room for the framing of a lone large event");
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
