//! `KinesisSink` against a real Kinesis wire-protocol server (moto): records are read
//! back from the stream, and partial failures and outages are injected by a proxy the
//! real SDK talks through.

mod common;

use std::collections::BTreeSet;

use common::kinesis::{client, create_stream, read_all, throttle_first, PUT_RECORDS, THROTTLED};
use common::moto::shared_moto;
use common::moto::{unique_name, Moto};
use common::proxy::{Fault, Proxy};
use flagfn::sink::{EventRecord, EventSink, FailedRecord, KinesisSink, SinkError};
use serde_json::json;

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

/// Withholds the records at `rejected` from the first `PutRecords` exchange only and
/// answers them as throttled, at their original positions.
fn throttle_once(proxy: &Proxy, rejected: BTreeSet<usize>) {
    throttle_first(proxy, 1, move |i| rejected.contains(&i));
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
