//! Aggregated events, consumer side: events sent by `KinesisSink` with KPL aggregation
//! into a Kinesis stream (moto), read back by a consumer written as analytics teams write
//! one — boto3 and AWS's own de-aggregation module (`aws_kinesis_agg`,
//! `tests/support/kinesis_consumer.py`) — come out exactly as sent: every event once,
//! its partition key, its bytes; and the stream held far
//! fewer records than events. Throttled aggregated records are resent whole, through
//! the event pipeline's own retries.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use base64::Engine;
use common::kinesis::{client, create_stream, throttle_first};
use common::moto::{shared_moto, unique_name};
use common::proxy::Proxy;
use flagfn::sink::{EventRecord, EventSink, KinesisSink};
use serde_json::{json, Value};

/// What the consumer read: how many Kinesis records the stream held, and the user
/// records it de-aggregated, as (partition key, data).
fn consume(endpoint: &str, stream: &str) -> (usize, Vec<(String, Vec<u8>)>) {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new(format!("{root}/.venv/bin/python"))
        .arg(format!("{root}/tests/support/kinesis_consumer.py"))
        .args(["--endpoint", endpoint, "--stream", stream])
        .output()
        .expect("run the consumer (make test installs .venv)");
    assert!(output.status.success(), "consumer failed: {}", String::from_utf8_lossy(&output.stderr));
    let mut lines = std::str::from_utf8(&output.stdout).expect("utf-8").lines();
    let head: Value = serde_json::from_str(lines.next().expect("count line")).expect("JSON");
    let records = lines
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("JSON line");
            let data =
                base64::engine::general_purpose::STANDARD.decode(v["data"].as_str().expect("data")).expect("b64");
            (v["partition_key"].as_str().expect("key").to_owned(), data)
        })
        .collect();
    (head["kinesis_records"].as_u64().expect("count") as usize, records)
}

/// Events of realistic and awkward shapes: many users, repeated keys, non-ASCII keys,
/// one event larger than an aggregated record's 25 kB target.
fn events(n: usize) -> Vec<EventRecord> {
    (0..n)
        .map(|i| {
            let user = match i % 7 {
                0 => "org-7/ü".to_owned(),
                _ => format!("user-{}", i % 40),
            };
            let padding = if i == n / 2 { "z".repeat(30_000) } else { "x".repeat(i % 300) };
            let data = json!({"event_type": "feature_flag_evaluation", "user_id": user, "flag_key": format!("flag-{i}"),
                              "seq": i, "context": {"pad": padding}});
            EventRecord { partition_key: user, data: serde_json::to_vec(&data).expect("JSON") }
        })
        .collect()
}

/// Per partition key, the data in order.
fn by_key(records: &[(String, Vec<u8>)]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut map: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (key, data) in records {
        map.entry(key.clone()).or_default().push(data.clone());
    }
    map
}

#[tokio::test]
async fn aggregated_events_de_aggregate_to_exactly_the_events_sent() {
    let moto = shared_moto();
    let kinesis = client(&moto.endpoint()).await;
    let stream = unique_name("kpl");
    create_stream(&kinesis, &stream).await;
    let sink = KinesisSink::new(kinesis.clone(), &stream).aggregated(true);
    let sent = events(1_500);
    // As the pipeline sends them: batches within the sink's limits.
    let limits = sink.limits();
    for batch in sent.chunks(limits.max_records.min(700)) {
        let failed = sink.send(batch).await.expect("PutRecords");
        assert!(failed.is_empty(), "{failed:?}");
    }
    let (kinesis_records, received) = consume(&moto.endpoint(), &stream);
    let sent_pairs: Vec<(String, Vec<u8>)> = sent.iter().map(|r| (r.partition_key.clone(), r.data.clone())).collect();
    assert_eq!(received.len(), sent.len(), "every event once");
    let (got, want) = (by_key(&received), by_key(&sent_pairs));
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "the same partition keys");
    for (key, events) in &want {
        // The same events; not necessarily in order: a record's partition key is its
        // first event's, so one user's events in two records may sit on two shards
        // (documented: order by `timestamp` when packing is on).
        let (mut got, mut events) = (got[key].clone(), events.clone());
        got.sort();
        events.sort();
        assert!(got == events, "{key}: the same events ({} vs {})", got.len(), events.len());
    }
    let bytes: usize = sent.iter().map(|r| r.data.len()).sum();
    assert!(
        kinesis_records <= bytes / 20_000 + 10,
        "{kinesis_records} Kinesis records for {} events ({bytes} bytes): aggregated",
        sent.len()
    );
}

#[tokio::test]
async fn a_throttled_aggregated_record_reports_each_of_its_events() {
    let moto = shared_moto();
    let kinesis = client(&moto.endpoint()).await;
    let stream = unique_name("kpl-throttled");
    create_stream(&kinesis, &stream).await;
    let proxy = Proxy::start(&moto.endpoint());
    // The first PutRecords call: moto never sees its first record; the SDK's caller is
    // told that record was throttled.
    throttle_first(&proxy, 1, |index| index == 0);
    let sink = KinesisSink::new(client(&proxy.endpoint()).await, &stream).aggregated(true);
    let sent = events(300);
    let failed = sink.send(&sent).await.expect("PutRecords");
    // The first aggregated record held the first events: each is reported, in order.
    assert!(!failed.is_empty());
    let indices: Vec<usize> = failed.iter().map(|f| f.index).collect();
    assert_eq!(indices, (0..failed.len()).collect::<Vec<_>>(), "the first record's events");
    assert!(failed.iter().all(|f| f.code == common::kinesis::THROTTLED), "{failed:?}");
    // Resending them (as the pipeline does) delivers every event exactly once.
    let retry: Vec<EventRecord> = indices.iter().map(|&i| sent[i].clone()).collect();
    assert!(sink.send(&retry).await.expect("retry").is_empty());
    let (_, received) = consume(&moto.endpoint(), &stream);
    assert_eq!(received.len(), sent.len(), "every event once, none twice");
    let mut received_data: Vec<Vec<u8>> = received.into_iter().map(|(_, d)| d).collect();
    let mut sent_data: Vec<Vec<u8>> = sent.into_iter().map(|r| r.data).collect();
    received_data.sort();
    sent_data.sort();
    assert!(received_data == sent_data, "the same events");
}
