//! `KinesisSink` against a real Kinesis wire-protocol server (moto): records are read
//! back from the stream, and partial failures and outages are injected by a proxy the
//! real SDK talks through.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use aws_sdk_kinesis::types::{ShardIteratorType, StreamMode, StreamModeDetails};
use aws_sdk_kinesis::Client;
use common::moto::{sdk_config_for, unique_name, Moto};
use common::proxy::{Fault, Proxy};
use flagfn::sink::{EventRecord, EventSink, FailedRecord, KinesisSink, SinkError};
use serde_json::{json, Value};

const PUT_RECORDS: &str = "Kinesis_20131202.PutRecords";
const THROTTLED: &str = "ProvisionedThroughputExceededException";

/// One moto for the tests that share it, killed when the last of them finishes (a
/// `static` would never be dropped and would leak the process).
fn shared_moto() -> Arc<Moto> {
    static SHARED: Mutex<Weak<Moto>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(moto) = shared.upgrade() {
        return moto;
    }
    let moto = Arc::new(Moto::start());
    *shared = Arc::downgrade(&moto);
    moto
}

/// A client for `endpoint` with few, quick retries and short timeouts, so an outage
/// fails a test in seconds.
async fn client(endpoint: &str) -> Client {
    let config = aws_sdk_kinesis::config::Builder::from(&sdk_config_for(endpoint).await)
        .retry_config(
            aws_smithy_types::retry::RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .timeout_config(
            aws_smithy_types::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(10))
                .build(),
        )
        .build();
    Client::from_conf(config)
}

/// Creates an ON_DEMAND stream (four shards in moto) and returns its ARN.
async fn create_stream(client: &Client, stream: &str) -> String {
    let mode = StreamModeDetails::builder().stream_mode(StreamMode::OnDemand).build().unwrap();
    client.create_stream().stream_name(stream).stream_mode_details(mode).send().await.expect("CreateStream");
    let summary = client.describe_stream_summary().stream_name(stream).send().await.expect("DescribeStreamSummary");
    let summary = summary.stream_description_summary.expect("summary");
    assert_eq!(summary.stream_status.as_str(), "ACTIVE");
    summary.stream_arn
}

/// Every record in the stream, from the start of every shard.
async fn read_all(client: &Client, stream: &str) -> Vec<EventRecord> {
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

/// Records like the event pipeline's: JSON lines keyed by user id, of varied sizes, plus
/// one that is not UTF-8 at all (Kinesis carries bytes).
fn records(count: usize, tag: &str) -> Vec<EventRecord> {
    (0..count)
        .map(|i| {
            let data = if i == 7 {
                (0..=255u8).collect()
            } else {
                let event = json!({"event_type": "feature_flag_evaluation", "tag": tag, "i": i,
                                   "user_id": format!("user-{}", i % 37), "pad": "p".repeat(i % 50 * 20)});
                serde_json::to_vec(&event).expect("JSON")
            };
            EventRecord { partition_key: format!("user-{}", i % 37), data }
        })
        .collect()
}

fn sorted(records: &[EventRecord]) -> Vec<(String, Vec<u8>)> {
    let mut pairs: Vec<_> = records.iter().map(|r| (r.partition_key.clone(), r.data.clone())).collect();
    pairs.sort();
    pairs
}

#[tokio::test]
async fn five_hundred_records_arrive_intact() {
    let moto = shared_moto();
    let stream = unique_name("events");
    let kinesis = client(&moto.endpoint()).await;
    create_stream(&kinesis, &stream).await;
    let sink = KinesisSink::new(kinesis.clone(), &stream);
    let sent = records(sink.limits().max_records, "bulk");

    let failed = sink.send(&sent).await.expect("PutRecords");
    assert_eq!(failed, vec![]);
    assert_eq!(sorted(&read_all(&kinesis, &stream).await), sorted(&sent), "every record once, bytes intact");
}

#[tokio::test]
async fn a_stream_arn_addresses_the_stream_too() {
    let moto = shared_moto();
    let stream = unique_name("by-arn");
    let kinesis = client(&moto.endpoint()).await;
    let arn = create_stream(&kinesis, &stream).await;
    let sink = KinesisSink::new(kinesis.clone(), arn);
    let sent = records(5, "arn");

    assert_eq!(sink.send(&sent).await.expect("PutRecords"), vec![]);
    assert_eq!(sorted(&read_all(&kinesis, &stream).await), sorted(&sent));
}

/// A proxy hook that, in the first `PutRecords` exchange only, withholds the records at
/// `rejected` from moto and answers them as throttled, at their original positions, as
/// Kinesis does when some shards are over their limit.
fn throttle_once(proxy: &Proxy, rejected: BTreeSet<usize>) {
    let done = AtomicBool::new(false);
    proxy.set_hook(move |target, body, forward| {
        if target != PUT_RECORDS || done.swap(true, Ordering::SeqCst) {
            return forward(body);
        }
        let mut request: Value = serde_json::from_slice(&body).expect("PutRecords JSON");
        let all = request["Records"].take();
        let all = all.as_array().expect("Records");
        let kept: Vec<Value> =
            all.iter().enumerate().filter(|(i, _)| !rejected.contains(i)).map(|(_, r)| r.clone()).collect();
        request["Records"] = Value::Array(kept);
        let (status, answer) = forward(serde_json::to_vec(&request).expect("JSON"));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        let answer: Value = serde_json::from_slice(&answer).expect("PutRecords answer");
        let mut accepted = answer["Records"].as_array().expect("Records").iter().cloned();
        let results: Vec<Value> = (0..all.len())
            .map(|i| match rejected.contains(&i) {
                true => json!({"ErrorCode": THROTTLED, "ErrorMessage": "Rate exceeded for shard"}),
                false => accepted.next().expect("one result per forwarded record"),
            })
            .collect();
        let answer = json!({"FailedRecordCount": rejected.len(), "Records": results});
        (200, serde_json::to_vec(&answer).expect("JSON"))
    });
}

#[tokio::test]
async fn throttled_records_are_reported_at_their_index_and_resent() {
    let moto = shared_moto();
    let stream = unique_name("throttled");
    let direct = client(&moto.endpoint()).await;
    create_stream(&direct, &stream).await;
    let proxy = Proxy::start(&moto.endpoint());
    let rejected = BTreeSet::from([0, 3, 17, 250, 499]);
    throttle_once(&proxy, rejected.clone());
    let sink = KinesisSink::new(client(&proxy.endpoint()).await, &stream);
    let sent = records(500, "throttled");

    let failed = sink.send(&sent).await.expect("the call itself succeeds");
    let expected: Vec<FailedRecord> =
        rejected.iter().map(|&index| FailedRecord { index, code: THROTTLED.to_owned() }).collect();
    assert_eq!(failed, expected);

    let again: Vec<EventRecord> = failed.iter().map(|f| sent[f.index].clone()).collect();
    assert_eq!(sink.send(&again).await.expect("resend"), vec![]);
    assert_eq!(proxy.count(PUT_RECORDS), 2);
    assert_eq!(sorted(&read_all(&direct, &stream).await), sorted(&sent), "each record exactly once");
}

#[tokio::test]
async fn an_unreachable_stream_fails_the_whole_call() {
    let moto = shared_moto();
    let stream = unique_name("down");
    let direct = client(&moto.endpoint()).await;
    create_stream(&direct, &stream).await;
    let proxy = Proxy::start(&moto.endpoint());
    let sink = KinesisSink::new(client(&proxy.endpoint()).await, &stream);
    let sent = records(3, "down");

    for (fault, expected) in [(Fault::CloseConnections, "dispatch failure"), (Fault::Http500, "InternalServerError")] {
        proxy.set_fault(fault);
        let err = sink.send(&sent).await.expect_err("nothing was accepted");
        let SinkError::Kinesis { message, .. } = &err else { panic!("{err:?}") };
        assert!(message.contains(expected), "{fault:?}: {message}");
    }
    proxy.set_fault(Fault::None);
    assert_eq!(sink.send(&sent).await.expect("recovered"), vec![]);
    assert_eq!(sorted(&read_all(&direct, &stream).await), sorted(&sent), "the failed calls stored nothing");
}

#[tokio::test]
async fn a_stopped_server_fails_the_whole_call() {
    let mut moto = Moto::start();
    let stream = unique_name("stopped");
    let kinesis = client(&moto.endpoint()).await;
    create_stream(&kinesis, &stream).await;
    let sink = KinesisSink::new(kinesis, &stream);
    assert_eq!(sink.send(&records(2, "up")).await.expect("up"), vec![]);

    moto.stop();
    let err = sink.send(&records(2, "down")).await.expect_err("down");
    assert!(matches!(err, SinkError::Kinesis { .. }), "{err:?}");
}

#[tokio::test]
async fn a_missing_stream_is_an_error_with_the_service_message() {
    let moto = shared_moto();
    let sink = KinesisSink::new(client(&moto.endpoint()).await, unique_name("absent"));
    let err = sink.send(&records(1, "absent")).await.expect_err("no stream");
    let SinkError::Kinesis { message, .. } = &err else { panic!("{err:?}") };
    assert!(message.contains("ResourceNotFoundException"), "{message}");
    assert_eq!(sink.send(&[]).await.expect("nothing to send is no call"), vec![]);
}
