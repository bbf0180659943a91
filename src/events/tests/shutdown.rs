//! Events off, drains, the after-response flush policy and the shutdown account.

use std::sync::atomic::AtomicBool;

use super::*;

// ---- events off, drain ---------------------------------------------------------------

#[tokio::test]
async fn with_events_off_nothing_is_recorded_or_sent() {
    let rig = Rig::new(&[], None);
    assert!(!rig.events.enabled());
    for user in users(0..10) {
        ask(&rig, &user, &["on", "abc"]);
    }
    assert_eq!(rig.events.stats(), EventStats::default());
    assert_eq!(rig.events.flush().await, FlushReport::default());
    assert_eq!(rig.events.drain(Duration::from_secs(1)).await, EventStats::default());

    assert!(self::rig(&[], &Arc::new(FakeSink::accepting())).events.enabled());
}

#[tokio::test]
async fn drain_empties_the_buffer_when_the_sink_works() {
    let sink = Arc::new(FakeSink::accepting().limits(5, 1 << 20, 1 << 20));
    let rig = rig(&[], &sink);
    for user in users(0..23) {
        ask(&rig, &user, &["on"]);
    }
    let stats = rig.events.drain(Duration::from_secs(5)).await;
    assert_eq!((stats.buffered, stats.sent), (0, 23));
    assert_eq!(fields(&sink.accepted(), "user_id"), users(0..23));
}

#[tokio::test(start_paused = true)]
async fn drain_gives_up_after_its_budget_when_the_sink_keeps_failing() {
    let budget = Duration::from_millis(400);
    let failing_calls = FakeSink::new(|_, _| Answer::Fail);
    let rejecting_all = FakeSink::new(|_, records| Answer::Reject((0..records.len()).collect()));
    for sink in [failing_calls, rejecting_all] {
        let sink = Arc::new(sink);
        let rig = rig(&[], &sink);
        for user in users(0..10) {
            ask(&rig, &user, &["on"]);
        }
        // Paused time: the bound below is virtual time, exact and independent of load.
        let stats = tokio::time::timeout(2 * budget, rig.events.drain(budget)).await.expect("drain gave up in time");
        assert_eq!((stats.buffered, stats.sent, stats.dropped), (10, 0, 0), "kept, not lost");
        assert!(sink.calls().len() > 1, "it kept trying");
    }
}

#[tokio::test]
async fn a_sink_declaring_zero_limits_still_gets_one_record_per_call() {
    let sink = Arc::new(FakeSink::accepting().limits(0, 0, 1 << 20));
    let rig = rig(&[], &sink);
    for user in users(0..3) {
        ask(&rig, &user, &["on"]);
    }
    assert_eq!(rig.events.flush().await, FlushReport { sent: 3, kept: 0 });
    assert_eq!(sink.calls().iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
}

// ---- flush policy, shutdown accounting ----------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_flush_is_due_at_the_minimum_count_or_age_and_paused_after_a_failure() {
    let down = Arc::new(AtomicBool::new(false));
    let failing = down.clone();
    let sink = Arc::new(FakeSink::new(move |_, _| if failing.load(Relaxed) { Answer::Fail } else { Answer::Accept }));
    let rig = rig(&[("EVENTS_FLUSH_MIN", "3"), ("EVENTS_FLUSH_MAX_AGE_MS", "1000")], &sink);
    assert!(!due(&rig), "nothing buffered");
    ask(&rig, "user-1", &["on", "off"]);
    assert!(!due(&rig), "two events, young");
    ask(&rig, "user-2", &["on"]);
    assert!(due(&rig), "three events");
    rig.events.flush().await;

    ask(&rig, "user-3", &["on"]);
    rig.clock.advance(Duration::from_millis(999));
    assert!(!due(&rig));
    rig.clock.advance(Duration::from_millis(1));
    assert!(due(&rig), "the oldest is a second old by the app's clock");

    // A failed flush pauses after-response flushes (1 s, then 2 s, ...).
    down.store(true, Relaxed);
    assert_eq!(rig.events.flush().await.sent, 0);
    ask(&rig, "user-4", &["on", "off", "half"]);
    assert!(!due(&rig), "paused after the failure");
    tokio::time::advance(Duration::from_millis(1_000)).await;
    assert!(due(&rig));
    rig.events.flush().await;
    tokio::time::advance(Duration::from_millis(1_000)).await;
    assert!(!due(&rig), "the pause doubled");
    tokio::time::advance(Duration::from_millis(1_000)).await;
    assert!(due(&rig));
    down.store(false, Relaxed);
    assert_eq!(rig.events.flush().await, FlushReport { sent: 4, kept: 0 });
    ask(&rig, "user-5", &["on", "off", "half"]);
    assert!(due(&rig), "a success ends the pause");
}

#[tokio::test(start_paused = true)]
async fn events_held_across_flush_decisions_keep_their_own_time_and_request() {
    let sink = Arc::new(FakeSink::accepting());
    let rig = rig(&[("EVENTS_FLUSH_MIN", "100"), ("EVENTS_FLUSH_MAX_AGE_MS", "60000")], &sink);
    ask(&rig, "user-1", &["on"]);
    rig.clock.advance(Duration::from_secs(7));
    ask(&rig, "user-2", &["on"]);
    assert!(!due(&rig));
    rig.events.flush().await;
    let events: Vec<Value> = sink.accepted().iter().map(event).collect();
    assert_eq!(events[0]["timestamp"], "2027-01-15T08:00:00.123456Z");
    assert_eq!(events[1]["timestamp"], "2027-01-15T08:00:07.123456Z");
    assert_eq!(
        (events[0]["request_id"].as_str(), events[1]["request_id"].as_str()),
        (Some("req-user-1"), Some("req-user-2"))
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_counts_every_event_delivered_or_dropped_and_starts_nothing_after_its_budget() {
    // Each call takes 100 ms; 5 records per call; 40 events; a 250 ms budget.
    let gate_sink = FakeSink::accepting().limits(5, 1 << 20, 1 << 20);
    let sink = Arc::new(SlowSink { inner: gate_sink, delay: Duration::from_millis(100) });
    let rig = Rig::new(&[], Some(sink.clone()));
    for user in users(0..40) {
        ask(&rig, &user, &["on"]);
    }
    let started = tokio::time::Instant::now();
    let stats = rig.events.shutdown(Duration::from_millis(250)).await;
    assert!(started.elapsed() <= Duration::from_millis(250), "{:?} (virtual time)", started.elapsed());
    // Calls at 0 and 100 ms finish; the one at 200 ms would end at 300: not started.
    assert_eq!(sink.inner.calls().len(), 2);
    assert_eq!((stats.recorded, stats.delivered, stats.dropped, stats.unconfirmed), (40, 10, 30, 0));
    assert_eq!(stats.delivered as usize, sink.inner.accepted().len());
}

#[tokio::test(start_paused = true)]
async fn a_call_in_flight_at_the_deadline_is_cut_and_counted_unconfirmed() {
    let sink = Arc::new(SlowSink { inner: FakeSink::accepting(), delay: Duration::from_secs(10) });
    let rig = Rig::new(&[], Some(sink.clone()));
    for user in users(0..7) {
        ask(&rig, &user, &["on"]);
    }
    let stats = rig.events.shutdown(Duration::from_millis(300)).await;
    assert_eq!((stats.recorded, stats.delivered, stats.dropped, stats.unconfirmed), (7, 0, 7, 7));
    assert_eq!(stats.buffered, 0);
}

// ---- a flush cancelled mid-way (the local server's flusher at shutdown) -------------

#[tokio::test(start_paused = true)]
async fn a_flush_cancelled_during_its_call_counts_that_batch_and_keeps_the_rest() {
    // A sink that never answers in time: the flush is cancelled with its call in flight.
    let inner = FakeSink::accepting().limits(5, 1 << 20, 1 << 20);
    let sink = Arc::new(SlowSink { inner, delay: Duration::from_secs(3600) });
    let rig = Rig::new(&[], Some(sink.clone()));
    for user in users(0..12) {
        ask(&rig, &user, &["on"]);
    }
    assert!(tokio::time::timeout(Duration::from_secs(1), rig.events.flush()).await.is_err(), "cancelled");
    let stats = rig.events.stats();
    // The call carried 5 events the sink may or may not have stored: dropped, unconfirmed.
    // The 7 it had not taken yet are still buffered.
    assert_eq!((stats.recorded, stats.dropped, stats.unconfirmed, stats.buffered), (12, 5, 5, 7));
    let stats = rig.events.shutdown(Duration::from_millis(100)).await;
    assert_eq!((stats.delivered, stats.dropped, stats.buffered), (0, 12, 0));
}

#[tokio::test(start_paused = true)]
async fn a_flush_cancelled_between_retries_puts_its_batch_back() {
    let rejecting = FakeSink::new(|_, records| Answer::Reject((0..records.len()).collect()));
    let sink = Arc::new(rejecting.limits(5, 1 << 20, 1 << 20));
    let rig = rig(&[], &sink);
    for user in users(0..12) {
        ask(&rig, &user, &["on"]);
    }
    // The first call is answered at once (rejected); the flush then sleeps before its
    // retry, and is cancelled there (or, should every jittered sleep be shorter than
    // this, ends by itself keeping the batch: the same account either way).
    let _ = tokio::time::timeout(Duration::from_micros(1), rig.events.flush()).await;
    let stats = rig.events.stats();
    assert_eq!((stats.recorded, stats.dropped, stats.buffered), (12, 0, 12), "nothing lost");
    assert!(!sink.calls().is_empty());
}
