//! Batches cut to the sink's limits; rejected records retried; failed calls kept.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use serde_json::json;

use super::*;

// ---- batching ----------------------------------------------------------------------

#[tokio::test]
async fn flushes_cut_batches_to_the_sinks_record_and_byte_limits() {
    let sink = Arc::new(FakeSink::accepting().limits(7, 4_000, 4_000));
    let rig = rig(&[], &sink);
    for i in 0..60 {
        let context = json!({ "pad": "x".repeat(i * 37 % 900) });
        let user = format!("user-{i}");
        rig.evaluate(&subject(Some(&user), context, "req"), &["on"]);
    }

    assert_eq!(rig.events.flush().await, FlushReport { sent: 60, kept: 0 });
    let calls = sink.calls();
    for call in &calls {
        assert!(call.len() <= 7, "{} records in one call", call.len());
        assert!(size(call) <= 4_000, "{} bytes in one call", size(call));
    }
    // Both limits were reached: some calls are full, some were cut short by size.
    assert!(calls.iter().any(|c| c.len() == 7));
    assert!(calls[..calls.len() - 1].iter().any(|c| c.len() < 7));
    assert_eq!(fields(&sink.accepted(), "user_id"), users(0..60), "everything, once, in order");
}

#[tokio::test]
async fn a_record_too_large_for_the_sink_is_dropped_and_counted_and_the_rest_go_out() {
    let sink = Arc::new(FakeSink::accepting().limits(500, 1 << 20, 2_000));
    let rig = rig(&[], &sink);
    for (user, pad) in [("user-0", 10), ("user-1", 5_000), ("user-2", 10)] {
        rig.evaluate(&subject(Some(user), json!({ "pad": "x".repeat(pad) }), "req"), &["on"]);
    }

    assert_eq!(rig.events.flush().await, FlushReport { sent: 2, kept: 0 });
    assert_eq!(fields(&sink.accepted(), "user_id"), ["user-0", "user-2"]);
    assert!(sink.calls().iter().flatten().all(|r| r.data.len() + r.partition_key.len() <= 2_000), "never sent");
    let stats = rig.events.stats();
    assert_eq!((stats.dropped, stats.buffered, stats.sent), (1, 0, 2));
    // Not kept for later either.
    assert_eq!(rig.events.flush().await, FlushReport::default());
    assert_eq!(sink.calls().len(), 1);
}

// ---- rejected records and failed calls ---------------------------------------------

#[tokio::test(start_paused = true)]
async fn rejected_records_are_retried_until_accepted_once_each_in_order() {
    // Rejects user-1, -4, -5 and -8 on their first two sends, naming them in reverse
    // order: the retries must still carry them in their original order.
    let attempts: Mutex<HashMap<Vec<u8>, u32>> = Mutex::new(HashMap::new());
    let sink = Arc::new(FakeSink::new(move |_, records| {
        let mut attempts = lock(&attempts);
        let mut rejected: Vec<usize> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| ["user-1", "user-4", "user-5", "user-8"].contains(&r.partition_key.as_str()))
            .filter(|(_, r)| {
                let n = attempts.entry(r.data.clone()).or_default();
                *n += 1;
                *n <= 2
            })
            .map(|(i, _)| i)
            .collect();
        rejected.reverse();
        Answer::Reject(rejected)
    }));
    let rig = rig(&[], &sink);
    for user in users(0..10) {
        ask(&rig, &user, &["on"]);
    }

    assert_eq!(rig.events.flush().await, FlushReport { sent: 10, kept: 0 });
    let calls = sink.calls();
    assert_eq!(calls.len(), 3, "one send and two retries");
    for retry in &calls[1..] {
        assert_eq!(fields(retry, "user_id"), ["user-1", "user-4", "user-5", "user-8"]);
    }
    let accepted = fields(&sink.accepted(), "user_id");
    assert_eq!(sorted(accepted.clone()), sorted(users(0..10)), "each exactly once");
    assert_eq!(accepted[6..], ["user-1", "user-4", "user-5", "user-8"]);
    let stats = rig.events.stats();
    assert_eq!((stats.sent, stats.retried, stats.buffered), (10, 8, 0));
}

#[tokio::test(start_paused = true)]
async fn records_rejected_on_every_attempt_stay_buffered_for_the_next_flush() {
    let down = Arc::new(AtomicBool::new(true));
    let throttled = down.clone();
    let sink = Arc::new(FakeSink::new(move |_, records| match throttled.load(Relaxed) {
        true => Answer::Reject(
            records.iter().enumerate().filter(|(_, r)| r.partition_key == "user-3").map(|(i, _)| i).collect(),
        ),
        false => Answer::Accept,
    }));
    let rig = rig(&[], &sink);
    for user in users(0..5) {
        ask(&rig, &user, &["on"]);
    }

    assert_eq!(rig.events.flush().await, FlushReport { sent: 4, kept: 1 });
    assert_eq!(rig.events.stats().buffered, 1);
    let sends_of_user_3 = sink.calls().iter().flatten().filter(|r| r.partition_key == "user-3").count();
    assert_eq!(sends_of_user_3, MAX_ATTEMPTS as usize);
    assert!(!fields(&sink.accepted(), "user_id").contains(&"user-3".to_owned()));

    down.store(false, Relaxed);
    ask(&rig, "user-5", &["on"]);
    assert_eq!(rig.events.flush().await, FlushReport { sent: 2, kept: 0 });
    let calls = sink.calls();
    assert_eq!(fields(&calls[calls.len() - 1], "user_id"), ["user-3", "user-5"], "the older record first");
    assert_eq!(sorted(fields(&sink.accepted(), "user_id")), sorted(users(0..6)), "each exactly once");
    let stats = rig.events.stats();
    assert_eq!((stats.sent, stats.retried, stats.buffered, stats.dropped), (6, MAX_ATTEMPTS as u64, 0, 0));
}

#[tokio::test]
async fn a_failed_call_keeps_its_batch_and_everything_after_it() {
    let sink = Arc::new(FakeSink::new(|call, _| if call == 1 { Answer::Fail } else { Answer::Accept }).limits(
        5,
        1 << 20,
        1 << 20,
    ));
    let rig = rig(&[], &sink);
    for user in users(0..20) {
        ask(&rig, &user, &["on"]);
    }

    assert_eq!(rig.events.flush().await, FlushReport { sent: 5, kept: 15 });
    assert_eq!(sink.calls().len(), 2, "nothing more is sent to a sink that just failed");
    assert_eq!(rig.events.stats().buffered, 15);

    assert_eq!(rig.events.flush().await, FlushReport { sent: 15, kept: 0 });
    assert_eq!(fields(&sink.accepted(), "user_id"), users(0..20), "each exactly once, in order");
    assert_eq!(rig.events.stats().buffered, 0);
}

#[tokio::test(start_paused = true)]
async fn odd_failure_reports_cannot_lose_records_or_corrupt_the_counts() {
    // The first call names one index three times and one that does not exist.
    let sink =
        Arc::new(FakeSink::new(|call, _| if call == 0 { Answer::Reject(vec![1, 1, 1, 9]) } else { Answer::Accept }));
    let rig = rig(&[], &sink);
    for user in users(0..2) {
        ask(&rig, &user, &["on"]);
    }

    assert_eq!(rig.events.flush().await, FlushReport { sent: 2, kept: 0 });
    assert_eq!(fields(&sink.calls()[1], "user_id"), ["user-1"]);
    assert_eq!(fields(&sink.accepted(), "user_id"), ["user-0", "user-1"]);
    assert_eq!(rig.events.stats().sent, 2);
}
