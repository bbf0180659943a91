//! Kinesis helpers shared by the integration tests: one moto per test binary, a client
//! that fails fast, stream creation, reading a whole stream back, and a proxy hook that
//! throttles records the way Kinesis does.

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_kinesis::types::{ShardIteratorType, StreamMode, StreamModeDetails};
use aws_sdk_kinesis::Client;
use flagfn::sink::EventRecord;
use serde_json::{json, Value};

use super::moto::fast_sdk_config;
use super::proxy::Proxy;

/// The `X-Amz-Target` of a `PutRecords` call.
pub const PUT_RECORDS: &str = "Kinesis_20131202.PutRecords";
/// The code Kinesis gives a record bound for a shard over its limit.
pub const THROTTLED: &str = "ProvisionedThroughputExceededException";

/// A client for `endpoint` that fails fast ([`fast_sdk_config`]), so an outage fails a
/// test in seconds.
pub async fn client(endpoint: &str) -> Client {
    Client::new(&fast_sdk_config(endpoint).await)
}

/// Creates an ON_DEMAND stream (four shards in moto) and returns its ARN.
pub async fn create_stream(client: &Client, stream: &str) -> String {
    let mode = StreamModeDetails::builder().stream_mode(StreamMode::OnDemand).build().unwrap();
    client.create_stream().stream_name(stream).stream_mode_details(mode).send().await.expect("CreateStream");
    let summary = client.describe_stream_summary().stream_name(stream).send().await.expect("DescribeStreamSummary");
    let summary = summary.stream_description_summary.expect("summary");
    assert_eq!(summary.stream_status.as_str(), "ACTIVE");
    summary.stream_arn
}

/// Every record in the stream, from the start of every shard.
pub async fn read_all(client: &Client, stream: &str) -> Vec<EventRecord> {
    let shards = client.list_shards().stream_name(stream).send().await.expect("ListShards");
    let shards = shards.shards.unwrap_or_default();
    assert!(shards.len() > 1, "the stream has several shards");
    let mut records = Vec::new();
    for shard in shards {
        let iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(&shard.shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator");
        let mut iterator = iterator.shard_iterator;
        while let Some(current) = iterator {
            let page = client.get_records().shard_iterator(current).send().await.expect("GetRecords");
            if page.records.is_empty() {
                break;
            }
            records.extend(page.records.into_iter().map(|r| EventRecord {
                partition_key: r.partition_key.expect("partition key"),
                data: r.data.into_inner(),
            }));
            iterator = page.next_shard_iterator;
        }
    }
    records
}

/// A proxy hook that, in the first `calls` `PutRecords` exchanges, withholds from moto
/// the records whose index `reject` picks and answers them as throttled, at their
/// original positions, as Kinesis does when some shards are over their limit. Later
/// exchanges, and every other call, pass through.
pub fn throttle_first(proxy: &Proxy, calls: usize, reject: impl Fn(usize) -> bool + Send + Sync + 'static) {
    let seen = AtomicUsize::new(0);
    proxy.set_hook(move |target, body, forward| {
        if target != PUT_RECORDS || seen.fetch_add(1, Ordering::SeqCst) >= calls {
            return forward(body);
        }
        let mut request: Value = serde_json::from_slice(&body).expect("PutRecords JSON");
        let all = request["Records"].take();
        let all = all.as_array().expect("Records");
        let kept: Vec<Value> = all.iter().enumerate().filter(|(i, _)| !reject(*i)).map(|(_, r)| r.clone()).collect();
        let mut accepted = if kept.is_empty() {
            Vec::new().into_iter()
        } else {
            request["Records"] = Value::Array(kept);
            let (status, answer) = forward(serde_json::to_vec(&request).expect("JSON"));
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
            let answer: Value = serde_json::from_slice(&answer).expect("PutRecords answer");
            answer["Records"].as_array().expect("Records").clone().into_iter()
        };
        let results: Vec<Value> = (0..all.len())
            .map(|i| match reject(i) {
                true => json!({"ErrorCode": THROTTLED, "ErrorMessage": "Rate exceeded for shard"}),
                false => accepted.next().expect("one result per forwarded record"),
            })
            .collect();
        let failed = (0..all.len()).filter(|&i| reject(i)).count();
        let answer = json!({"FailedRecordCount": failed, "Records": results});
        (200, serde_json::to_vec(&answer).expect("JSON"))
    });
}
