//! The buffer's bounds in entries and bytes, and recording beside flushes in flight.

use serde_json::json;

use super::*;
use crate::eval::ErrorCode;

// ---- the bound ---------------------------------------------------------------------

#[tokio::test]
async fn beyond_the_bound_the_oldest_events_are_dropped_and_counted() {
    let sink = Arc::new(FakeSink::accepting());
    let rig = rig(&[("EVENTS_BUFFER_MAX", "10")], &sink);
    for user in users(0..25) {
        ask(&rig, &user, &["on"]);
    }

    let stats = rig.events.stats();
    assert_eq!((stats.recorded, stats.dropped, stats.buffered), (25, 15, 10));
    assert_eq!(rig.events.counters.unlogged_drops.load(Relaxed), 15);
    assert_eq!(rig.events.flush().await, FlushReport { sent: 10, kept: 0 });
    assert_eq!(rig.events.counters.unlogged_drops.load(Relaxed), 0, "the flush logged the drops");
    assert_eq!(fields(&sink.accepted(), "user_id"), users(15..25));
    assert_eq!(rig.events.stats().dropped, 15);
}

#[tokio::test]
async fn a_request_with_more_events_than_the_bound_keeps_its_newest() {
    let sink = Arc::new(FakeSink::accepting());
    let rig = rig(&[("EVENTS_BUFFER_MAX", "3")], &sink);
    ask(&rig, "user-1", &["on", "off", "half", "abc"]);

    let stats = rig.events.stats();
    assert_eq!((stats.recorded, stats.dropped, stats.buffered), (4, 1, 3));
    rig.events.flush().await;
    assert_eq!(fields(&sink.accepted(), "flag_key"), ["off", "half", "abc"]);
}

#[tokio::test]
async fn sampled_out_evaluations_push_nothing_out_of_a_full_buffer() {
    let sink = Arc::new(FakeSink::accepting());
    let rig = rig(&[("EVENTS_BUFFER_MAX", "5"), ("EVENTS_SAMPLE_RATE", "0.5")], &sink);
    let (mut sampled_in_users, mut sampled_out_user) = (0, None);
    for user in users(0..100) {
        match sampled_in(Some(&user), "on", 0.5) {
            true if sampled_in_users < 5 => {
                ask(&rig, &user, &["on"]);
                sampled_in_users += 1;
            }
            false if sampled_out_user.is_none() => sampled_out_user = Some(user),
            _ => {}
        }
    }
    assert_eq!(rig.events.stats().buffered, 5, "full");

    ask(&rig, &sampled_out_user.expect("some user is sampled out"), &["on"]);
    let stats = rig.events.stats();
    assert_eq!((stats.buffered, stats.dropped, stats.sampled_out), (5, 0, 1));
}

#[tokio::test]
async fn records_kept_after_a_failed_flush_are_older_than_new_events_and_go_first() {
    // The flush holds 10 events when the sink fails; 10 newer ones were recorded
    // meanwhile. With room for 10, the failed (older) ones are dropped.
    let gate = Arc::new(Semaphore::new(0));
    let sink = Arc::new(FakeSink::new(|call, _| if call == 0 { Answer::Fail } else { Answer::Accept }).gated(&gate));
    let rig = rig(&[("EVENTS_BUFFER_MAX", "10")], &sink);
    for user in users(0..10) {
        ask(&rig, &user, &["on"]);
    }
    let events = rig.events.clone();
    let flush = tokio::spawn(async move { events.flush().await });
    while sink.calls().is_empty() {
        tokio::task::yield_now().await;
    }
    for user in users(10..20) {
        ask(&rig, &user, &["on"]);
    }
    gate.add_permits(1);
    assert_eq!(flush.await.expect("flush"), FlushReport { sent: 0, kept: 10 });

    let stats = rig.events.stats();
    assert_eq!((stats.buffered, stats.dropped), (10, 10));
    gate.add_permits(1);
    assert_eq!(rig.events.flush().await, FlushReport { sent: 10, kept: 0 });
    assert_eq!(fields(&sink.accepted(), "user_id"), users(10..20));
}

#[test]
fn recording_is_a_plain_call_without_a_runtime() {
    let pipeline = EventPipeline::new(Some(Arc::new(FakeSink::accepting())), events_config(&[]));
    let outcome = Outcome::failed(None, "on", ErrorCode::General, "store down".into());
    for _ in 0..3 {
        pipeline.record(&subject(Some("user-1"), json!({}), "req"), t0(), std::slice::from_ref(&outcome));
    }
    assert_eq!(pipeline.stats().buffered, 3);
}

#[tokio::test]
async fn recording_never_waits_for_a_flush_in_flight() {
    let gate = Arc::new(Semaphore::new(0));
    let sink = Arc::new(FakeSink::accepting().gated(&gate));
    let rig = rig(&[], &sink);
    for user in users(0..3) {
        ask(&rig, &user, &["on"]);
    }
    let events = rig.events.clone();
    let flush = tokio::spawn(async move { events.flush().await });
    while sink.calls().is_empty() {
        tokio::task::yield_now().await;
    }

    // The sink holds the flush open; evaluations still record at once.
    for user in users(3..8) {
        ask(&rig, &user, &["on"]);
    }
    assert_eq!(rig.events.stats().buffered, 5);
    gate.add_permits(2);
    assert_eq!(flush.await.expect("flush"), FlushReport { sent: 3, kept: 0 });
    assert_eq!(rig.events.flush().await, FlushReport { sent: 5, kept: 0 });
    assert_eq!(fields(&sink.accepted(), "user_id"), users(0..8));
}

#[tokio::test]
async fn concurrent_flushes_send_each_record_once() {
    let gate = Arc::new(Semaphore::new(0));
    let sink = Arc::new(FakeSink::accepting().limits(4, 1 << 20, 1 << 20).gated(&gate));
    let rig = rig(&[], &sink);
    for user in users(0..20) {
        ask(&rig, &user, &["on"]);
    }
    let flushes: Vec<_> = (0..3)
        .map(|_| {
            let events = rig.events.clone();
            tokio::spawn(async move { events.flush().await })
        })
        .collect();
    gate.add_permits(100);
    let mut sent = 0;
    for flush in flushes {
        sent += flush.await.expect("flush").sent;
    }
    assert_eq!(sent, 20);
    assert_eq!(fields(&sink.accepted(), "user_id"), users(0..20));
}

// ---- bytes ---------------------------------------------------------------------------

#[tokio::test]
async fn the_buffer_is_bounded_in_bytes_and_drops_the_oldest_requests_first() {
    let sink = Arc::new(FakeSink::accepting());
    let rig = rig(&[("EVENTS_BUFFER_MAX_BYTES", "1048576")], &sink);
    // 40 requests of two events sharing a ~100 KB context: ~4 MB of contexts.
    for user in users(0..40) {
        let context = json!({ "blob": "x".repeat(100_000) });
        rig.evaluate(&subject(Some(&user), context, &format!("req-{user}")), &["on", "off"]);
        assert!(rig.events.stats().buffered_bytes <= 1 << 20, "{:?}", rig.events.stats());
    }
    let stats = rig.events.stats();
    assert!(stats.dropped > 0 && stats.buffered > 0, "{stats:?}");
    assert_eq!(stats.recorded, stats.dropped + stats.buffered as u64);
    // Each context is charged once per request, not per event: more than one request
    // fits, though not ten.
    let kept_requests = stats.buffered / 2;
    assert!((2..10).contains(&kept_requests), "{stats:?}");
    rig.events.flush().await;
    let kept = fields(&sink.accepted(), "user_id");
    let newest: Vec<String> = users(0..40).into_iter().flat_map(|u| [u.clone(), u]).collect();
    assert_eq!(kept, newest[newest.len() - kept.len()..], "the newest stay, whole requests first");
}

#[tokio::test]
async fn one_request_with_a_large_context_goes_out_in_batches_within_the_byte_limit() {
    let sink = Arc::new(FakeSink::accepting());
    let rig = rig(&[], &sink);
    let keys: Vec<String> = (0..300).map(|i| format!("ghost-{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let context = json!({ "blob": "y".repeat(60_000) });
    rig.evaluate(&subject(Some("user-1"), context.clone(), "req-big"), &keys);

    assert_eq!(rig.events.flush().await, FlushReport { sent: 300, kept: 0 });
    let calls = sink.calls();
    assert!(calls.len() >= 4, "{} calls for ~18 MB of records", calls.len());
    assert!(calls.iter().all(|c| size(c) <= 5 << 20));
    let accepted = sink.accepted();
    assert!(accepted.iter().all(|r| event(r)["context"] == context), "every event carries the whole context");
    assert_eq!(fields(&accepted, "flag_key"), keys);
}
