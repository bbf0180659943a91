//! The event pipeline above the `EventSink` trait, with in-memory sinks that keep every
//! call, reject chosen records, fail whole calls or hold calls open. Evaluations come
//! from a real `App` over an in-memory flag store, so events carry real outcomes. The
//! same paths against Kinesis (moto) are in tests/kinesis_events.rs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::*;
use crate::app::App;
use crate::clock::Clock;
use crate::config::Config;
use crate::eval::{ErrorCode, FlagSet};
use crate::flag::parse_flags_document;
use crate::sink::{BoxFuture, EventRecord, FailedRecord, SinkError, SinkLimits};
use crate::store::{FlagStore, StoreError};

/// Rollout buckets and variant points of these users are pinned in tests/api.rs:
/// `half` admits user-1 and not user-3; `abc` serves user-1 the variant `b`.
const FLAGS: &str = r#"[
  {"key": "on", "flag_id": "on-id", "enabled": true, "rollout_percentage": 100, "version": 3},
  {"key": "off", "enabled": false, "rollout_percentage": 100, "version": 1},
  {"key": "half", "enabled": true, "rollout_percentage": 50},
  {"key": "abc", "enabled": true, "rollout_percentage": 100, "version": 2, "variants": [
    {"key": "a", "allocation": 0.34}, {"key": "b", "allocation": 0.33}, {"key": "c", "allocation": 0.33}]}
]"#;

/// The manual clock's start: 2027-01-15T08:00:00.123456Z.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_micros(123_456)
}

const THROTTLED: &str = "ProvisionedThroughputExceededException";

struct MemoryStore(FlagSet);

impl FlagStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<crate::flag::CompiledFlag>>, StoreError>> {
        Box::pin(async move { Ok(self.0.get(key).cloned()) })
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Arc<crate::flag::CompiledFlag>>, StoreError>> {
        Box::pin(async move { Ok(keys.iter().filter_map(|k| self.0.get(k).cloned()).collect()) })
    }

    fn scan(&self) -> BoxFuture<'_, Result<Vec<Arc<crate::flag::CompiledFlag>>, StoreError>> {
        Box::pin(async move { Ok(self.0.iter().cloned().collect()) })
    }
}

/// What a [`FakeSink`] does with one call.
enum Answer {
    Accept,
    /// Reject these indices (in this order, duplicates and all); accept the rest.
    Reject(Vec<usize>),
    /// Fail the whole call.
    Fail,
}

type Script = Box<dyn Fn(usize, &[EventRecord]) -> Answer + Send + Sync>;

/// A sink that keeps every call and answers each as its script says.
struct FakeSink {
    limits: SinkLimits,
    /// Given the call's number (from 0) and records, what to answer.
    script: Script,
    /// Every call's records, accepted or not.
    calls: Mutex<Vec<Vec<EventRecord>>>,
    /// Accepted records, in the order they were accepted.
    accepted: Mutex<Vec<EventRecord>>,
    /// When set, every call waits for a permit: a slow (or stuck) sink.
    gate: Option<Arc<Semaphore>>,
}

impl FakeSink {
    fn new(script: impl Fn(usize, &[EventRecord]) -> Answer + Send + Sync + 'static) -> Self {
        FakeSink {
            limits: SinkLimits { max_records: 500, max_bytes: 5 << 20, max_record_bytes: 1 << 20 },
            script: Box::new(script),
            calls: Mutex::new(Vec::new()),
            accepted: Mutex::new(Vec::new()),
            gate: None,
        }
    }

    fn accepting() -> Self {
        Self::new(|_, _| Answer::Accept)
    }

    fn limits(mut self, max_records: usize, max_bytes: usize, max_record_bytes: usize) -> Self {
        self.limits = SinkLimits { max_records, max_bytes, max_record_bytes };
        self
    }

    fn gated(mut self, gate: &Arc<Semaphore>) -> Self {
        self.gate = Some(gate.clone());
        self
    }

    fn calls(&self) -> Vec<Vec<EventRecord>> {
        lock(&self.calls).clone()
    }

    fn accepted(&self) -> Vec<EventRecord> {
        lock(&self.accepted).clone()
    }
}

impl EventSink for FakeSink {
    fn send<'a>(&'a self, records: &'a [EventRecord]) -> BoxFuture<'a, Result<Vec<FailedRecord>, SinkError>> {
        Box::pin(async move {
            let call = {
                let mut calls = lock(&self.calls);
                calls.push(records.to_vec());
                calls.len() - 1
            };
            if let Some(gate) = &self.gate {
                gate.acquire().await.expect("the gate stays open").forget();
            }
            match (self.script)(call, records) {
                Answer::Accept => {
                    lock(&self.accepted).extend_from_slice(records);
                    Ok(Vec::new())
                }
                Answer::Reject(indices) => {
                    let rejected: HashSet<usize> = indices.iter().copied().collect();
                    let accepted = records.iter().enumerate().filter(|(i, _)| !rejected.contains(i));
                    lock(&self.accepted).extend(accepted.map(|(_, r)| r.clone()));
                    Ok(indices.into_iter().map(|index| FailedRecord { index, code: THROTTLED.to_owned() }).collect())
                }
                Answer::Fail => {
                    Err(SinkError::File { path: "fake".into(), source: std::io::Error::other("the sink is down") })
                }
            }
        })
    }

    fn limits(&self) -> SinkLimits {
        self.limits
    }
}

fn config(vars: &[(&str, &str)]) -> Config {
    Config::from_lookup(|name| match name {
        "FLAGS_FILE" => Some("unused.json".to_owned()),
        _ => vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()),
    })
    .expect("valid settings")
}

fn store() -> Arc<MemoryStore> {
    let (flags, skipped) = parse_flags_document(FLAGS).expect("flags");
    assert!(skipped.is_empty(), "{skipped:?}");
    Arc::new(MemoryStore(FlagSet::new(flags.into_iter().map(Arc::new))))
}

/// An app over [`FLAGS`] sending events to `sink`, its clock frozen at [`t0`].
fn app(vars: &[(&str, &str)], sink: &Arc<FakeSink>) -> App {
    App::new(store(), Some(sink.clone()), &config(vars), Clock::manual_at(t0()))
}

fn subject(user: Option<&str>, context: Value, request_id: &str) -> Subject {
    Subject {
        user_id: user.map(Arc::from),
        context: Arc::new(context.as_object().cloned().unwrap_or_default()),
        request_id: Arc::from(request_id),
    }
}

/// Evaluates `keys` for `user` with an empty context; the request id is `req-<user>`.
async fn ask(app: &App, user: &str, keys: &[&str]) -> Vec<Outcome> {
    app.evaluate_keys(&subject(Some(user), json!({}), &format!("req-{user}")), keys).await
}

fn event(record: &EventRecord) -> Value {
    serde_json::from_slice(&record.data).expect("records are JSON")
}

/// The `field` of every record, as strings.
fn fields(records: &[EventRecord], field: &str) -> Vec<String> {
    records.iter().map(|r| event(r)[field].as_str().unwrap_or("<none>").to_owned()).collect()
}

fn users(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("user-{i}")).collect()
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

fn size(records: &[EventRecord]) -> usize {
    records.iter().map(|r| r.data.len() + r.partition_key.len()).sum()
}

// ---- batching ----------------------------------------------------------------------

#[tokio::test]
async fn flushes_cut_batches_to_the_sinks_record_and_byte_limits() {
    let sink = Arc::new(FakeSink::accepting().limits(7, 4_000, 4_000));
    let app = app(&[], &sink);
    for i in 0..60 {
        let context = json!({ "pad": "x".repeat(i * 37 % 900) });
        let user = format!("user-{i}");
        app.evaluate_keys(&subject(Some(&user), context, "req"), &["on"]).await;
    }

    assert_eq!(app.events.flush().await, FlushReport { sent: 60, kept: 0 });
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
    let app = app(&[], &sink);
    for (user, pad) in [("user-0", 10), ("user-1", 5_000), ("user-2", 10)] {
        app.evaluate_keys(&subject(Some(user), json!({ "pad": "x".repeat(pad) }), "req"), &["on"]).await;
    }

    assert_eq!(app.events.flush().await, FlushReport { sent: 2, kept: 0 });
    assert_eq!(fields(&sink.accepted(), "user_id"), ["user-0", "user-2"]);
    assert!(sink.calls().iter().flatten().all(|r| r.data.len() + r.partition_key.len() <= 2_000), "never sent");
    let stats = app.events.stats();
    assert_eq!((stats.dropped, stats.buffered, stats.sent), (1, 0, 2));
    // Not kept for later either.
    assert_eq!(app.events.flush().await, FlushReport::default());
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
    let app = app(&[], &sink);
    for user in users(0..10) {
        ask(&app, &user, &["on"]).await;
    }

    assert_eq!(app.events.flush().await, FlushReport { sent: 10, kept: 0 });
    let calls = sink.calls();
    assert_eq!(calls.len(), 3, "one send and two retries");
    for retry in &calls[1..] {
        assert_eq!(fields(retry, "user_id"), ["user-1", "user-4", "user-5", "user-8"]);
    }
    let accepted = fields(&sink.accepted(), "user_id");
    assert_eq!(sorted(accepted.clone()), sorted(users(0..10)), "each exactly once");
    assert_eq!(accepted[6..], ["user-1", "user-4", "user-5", "user-8"]);
    let stats = app.events.stats();
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
    let app = app(&[], &sink);
    for user in users(0..5) {
        ask(&app, &user, &["on"]).await;
    }

    assert_eq!(app.events.flush().await, FlushReport { sent: 4, kept: 1 });
    assert_eq!(app.events.stats().buffered, 1);
    let sends_of_user_3 = sink.calls().iter().flatten().filter(|r| r.partition_key == "user-3").count();
    assert_eq!(sends_of_user_3, MAX_ATTEMPTS as usize);
    assert!(!fields(&sink.accepted(), "user_id").contains(&"user-3".to_owned()));

    down.store(false, Relaxed);
    ask(&app, "user-5", &["on"]).await;
    assert_eq!(app.events.flush().await, FlushReport { sent: 2, kept: 0 });
    let calls = sink.calls();
    assert_eq!(fields(&calls[calls.len() - 1], "user_id"), ["user-3", "user-5"], "the older record first");
    assert_eq!(sorted(fields(&sink.accepted(), "user_id")), sorted(users(0..6)), "each exactly once");
    let stats = app.events.stats();
    assert_eq!((stats.sent, stats.retried, stats.buffered, stats.dropped), (6, MAX_ATTEMPTS as u64, 0, 0));
}

#[tokio::test]
async fn a_failed_call_keeps_its_batch_and_everything_after_it() {
    let sink = Arc::new(FakeSink::new(|call, _| if call == 1 { Answer::Fail } else { Answer::Accept }).limits(
        5,
        1 << 20,
        1 << 20,
    ));
    let app = app(&[], &sink);
    for user in users(0..20) {
        ask(&app, &user, &["on"]).await;
    }

    assert_eq!(app.events.flush().await, FlushReport { sent: 5, kept: 15 });
    assert_eq!(sink.calls().len(), 2, "nothing more is sent to a sink that just failed");
    assert_eq!(app.events.stats().buffered, 15);

    assert_eq!(app.events.flush().await, FlushReport { sent: 15, kept: 0 });
    assert_eq!(fields(&sink.accepted(), "user_id"), users(0..20), "each exactly once, in order");
    assert_eq!(app.events.stats().buffered, 0);
}

#[tokio::test(start_paused = true)]
async fn odd_failure_reports_cannot_lose_records_or_corrupt_the_counts() {
    // The first call names one index three times and one that does not exist.
    let sink =
        Arc::new(FakeSink::new(|call, _| if call == 0 { Answer::Reject(vec![1, 1, 1, 9]) } else { Answer::Accept }));
    let app = app(&[], &sink);
    for user in users(0..2) {
        ask(&app, &user, &["on"]).await;
    }

    assert_eq!(app.events.flush().await, FlushReport { sent: 2, kept: 0 });
    assert_eq!(fields(&sink.calls()[1], "user_id"), ["user-1"]);
    assert_eq!(fields(&sink.accepted(), "user_id"), ["user-0", "user-1"]);
    assert_eq!(app.events.stats().sent, 2);
}

// ---- the bound ---------------------------------------------------------------------

#[tokio::test]
async fn beyond_the_bound_the_oldest_events_are_dropped_and_counted() {
    let sink = Arc::new(FakeSink::accepting());
    let app = app(&[("EVENTS_BUFFER_MAX", "10")], &sink);
    for user in users(0..25) {
        ask(&app, &user, &["on"]).await;
    }

    let stats = app.events.stats();
    assert_eq!((stats.recorded, stats.dropped, stats.buffered), (25, 15, 10));
    assert_eq!(app.events.counters.unlogged_drops.load(Relaxed), 15);
    assert_eq!(app.events.flush().await, FlushReport { sent: 10, kept: 0 });
    assert_eq!(app.events.counters.unlogged_drops.load(Relaxed), 0, "the flush logged the drops");
    assert_eq!(fields(&sink.accepted(), "user_id"), users(15..25));
    assert_eq!(app.events.stats().dropped, 15);
}

#[tokio::test]
async fn a_request_with_more_events_than_the_bound_keeps_its_newest() {
    let sink = Arc::new(FakeSink::accepting());
    let app = app(&[("EVENTS_BUFFER_MAX", "3")], &sink);
    ask(&app, "user-1", &["on", "off", "half", "abc"]).await;

    let stats = app.events.stats();
    assert_eq!((stats.recorded, stats.dropped, stats.buffered), (4, 1, 3));
    app.events.flush().await;
    assert_eq!(fields(&sink.accepted(), "flag_key"), ["off", "half", "abc"]);
}

#[tokio::test]
async fn sampled_out_evaluations_push_nothing_out_of_a_full_buffer() {
    let sink = Arc::new(FakeSink::accepting());
    let app = app(&[("EVENTS_BUFFER_MAX", "5"), ("EVENTS_SAMPLE_RATE", "0.5")], &sink);
    let (mut sampled_in_users, mut sampled_out_user) = (0, None);
    for user in users(0..100) {
        match sampled_in(Some(&user), "on", 0.5) {
            true if sampled_in_users < 5 => {
                ask(&app, &user, &["on"]).await;
                sampled_in_users += 1;
            }
            false if sampled_out_user.is_none() => sampled_out_user = Some(user),
            _ => {}
        }
    }
    assert_eq!(app.events.stats().buffered, 5, "full");

    ask(&app, &sampled_out_user.expect("some user is sampled out"), &["on"]).await;
    let stats = app.events.stats();
    assert_eq!((stats.buffered, stats.dropped, stats.sampled_out), (5, 0, 1));
}

#[tokio::test]
async fn records_kept_after_a_failed_flush_are_older_than_new_events_and_go_first() {
    // The flush holds 10 events when the sink fails; 10 newer ones were recorded
    // meanwhile. With room for 10, the failed (older) ones are dropped.
    let gate = Arc::new(Semaphore::new(0));
    let sink = Arc::new(FakeSink::new(|call, _| if call == 0 { Answer::Fail } else { Answer::Accept }).gated(&gate));
    let app = app(&[("EVENTS_BUFFER_MAX", "10")], &sink);
    for user in users(0..10) {
        ask(&app, &user, &["on"]).await;
    }
    let events = app.events.clone();
    let flush = tokio::spawn(async move { events.flush().await });
    while sink.calls().is_empty() {
        tokio::task::yield_now().await;
    }
    for user in users(10..20) {
        ask(&app, &user, &["on"]).await;
    }
    gate.add_permits(1);
    assert_eq!(flush.await.expect("flush"), FlushReport { sent: 0, kept: 10 });

    let stats = app.events.stats();
    assert_eq!((stats.buffered, stats.dropped), (10, 10));
    gate.add_permits(1);
    assert_eq!(app.events.flush().await, FlushReport { sent: 10, kept: 0 });
    assert_eq!(fields(&sink.accepted(), "user_id"), users(10..20));
}

#[test]
fn recording_is_a_plain_call_without_a_runtime() {
    let pipeline = EventPipeline::new(Some(Arc::new(FakeSink::accepting())), config(&[]).events);
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
    let app = app(&[], &sink);
    for user in users(0..3) {
        ask(&app, &user, &["on"]).await;
    }
    let events = app.events.clone();
    let flush = tokio::spawn(async move { events.flush().await });
    while sink.calls().is_empty() {
        tokio::task::yield_now().await;
    }

    // The sink holds the flush open; evaluations still record at once.
    for user in users(3..8) {
        ask(&app, &user, &["on"]).await;
    }
    assert_eq!(app.events.stats().buffered, 5);
    gate.add_permits(2);
    assert_eq!(flush.await.expect("flush"), FlushReport { sent: 3, kept: 0 });
    assert_eq!(app.events.flush().await, FlushReport { sent: 5, kept: 0 });
    assert_eq!(fields(&sink.accepted(), "user_id"), users(0..8));
}

#[tokio::test]
async fn concurrent_flushes_send_each_record_once() {
    let gate = Arc::new(Semaphore::new(0));
    let sink = Arc::new(FakeSink::accepting().limits(4, 1 << 20, 1 << 20).gated(&gate));
    let app = app(&[], &sink);
    for user in users(0..20) {
        ask(&app, &user, &["on"]).await;
    }
    let flushes: Vec<_> = (0..3)
        .map(|_| {
            let events = app.events.clone();
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

// ---- sampling ----------------------------------------------------------------------

/// The users whose `flag` evaluation was recorded, out of `users` evaluated.
async fn sampled(rate: &str, flag: &str, users: impl Iterator<Item = String>) -> HashSet<String> {
    let sink = Arc::new(FakeSink::accepting());
    let app = app(&[("EVENTS_SAMPLE_RATE", rate)], &sink);
    let mut evaluated = 0;
    for user in users {
        ask(&app, &user, &[flag]).await;
        evaluated += 1;
    }
    app.events.flush().await;
    let stats = app.events.stats();
    assert_eq!(stats.recorded + stats.sampled_out, evaluated);
    let kept: HashSet<String> = fields(&sink.accepted(), "user_id").into_iter().collect();
    assert_eq!(kept.len() as u64, stats.recorded);
    kept
}

#[tokio::test]
async fn sampling_is_deterministic_per_user_and_flag_and_close_to_the_rate() {
    const USERS: usize = 20_000;
    let on = sampled("0.25", "on", users(0..USERS).into_iter()).await;
    let share = on.len() as f64 / USERS as f64;
    assert!((0.23..=0.27).contains(&share), "{share}");
    // The same pairs, in another order, in another pipeline: the same decisions.
    assert_eq!(sampled("0.25", "on", users(0..USERS).into_iter().rev()).await, on);
    // Per flag, not per user: another flag picks a near-independent quarter.
    let off = sampled("0.25", "off", users(0..USERS).into_iter()).await;
    let both = on.intersection(&off).count() as f64 / USERS as f64;
    assert!((0.25 * 0.25 - 0.015..=0.25 * 0.25 + 0.015).contains(&both), "{both}");
}

#[tokio::test]
async fn sample_rate_zero_records_nothing_and_one_records_everything() {
    assert!(sampled("0", "on", users(0..200).into_iter()).await.is_empty());
    assert_eq!(sampled("1", "on", users(0..200).into_iter()).await.len(), 200);
}

// ---- the event -------------------------------------------------------------------

#[tokio::test]
async fn the_context_is_in_the_event_only_when_configured() {
    let context = json!({"plan": "pro", "n": 1.5, "tags": ["a", "b"], "org": {"id": 7}});
    for (include, expected) in [("true", context.clone()), ("false", Value::Null)] {
        let sink = Arc::new(FakeSink::accepting());
        let app = app(&[("EVENTS_INCLUDE_CONTEXT", include)], &sink);
        app.evaluate_keys(&subject(Some("user-1"), context.clone(), "req"), &["on", "abc"]).await;
        app.events.flush().await;
        let events: Vec<Value> = sink.accepted().iter().map(event).collect();
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e["context"] == expected), "include={include}: {events:?}");
    }
}

#[tokio::test]
async fn full_events_follow_the_python_schema_plus_version_and_request_id() {
    let sink = Arc::new(FakeSink::accepting());
    let app = app(&[], &sink);
    let context = json!({"plan": "pro"});
    let batch = ["on", "abc", "half", "off", "ghost"];
    app.evaluate_keys(&subject(Some("user-1"), context.clone(), "req-batch"), &batch).await;
    app.clock.advance(Duration::from_millis(2_500));
    app.evaluate_keys(&subject(Some("user-3"), json!({}), "req-one"), &["half"]).await;

    assert_eq!(app.events.flush().await, FlushReport { sent: 6, kept: 0 });
    let events: Vec<Value> = sink.accepted().iter().map(event).collect();
    let at = "2027-01-15T08:00:00.123456Z";
    let expected = |key: &str, id: &str, enabled: bool, reason: &str, variant: Value, version: u64| {
        json!({"event_type": "feature_flag_evaluation", "timestamp": at, "user_id": "user-1", "flag_id": id,
               "flag_key": key, "enabled": enabled, "reason": reason, "variant": variant, "context": context,
               "version": version, "request_id": "req-batch"})
    };
    // One event per flag of the batch, in order, with exactly these fields.
    assert_eq!(events[0], expected("on", "on-id", true, "enabled", Value::Null, 3));
    assert_eq!(events[1], expected("abc", "abc", true, "enabled", json!("b"), 2));
    assert_eq!(events[2], expected("half", "half", true, "enabled", Value::Null, 0));
    assert_eq!(events[3], expected("off", "off", false, "flag_disabled", Value::Null, 1));
    let fields: BTreeSet<&str> = events[0].as_object().expect("object").keys().map(String::as_str).collect();
    let ghost = &events[4];
    assert_eq!(ghost.as_object().expect("object").keys().map(String::as_str).collect::<BTreeSet<_>>(), fields);
    assert_eq!(
        (&ghost["flag_key"], &ghost["enabled"], &ghost["reason"]),
        (&json!("ghost"), &json!(false), &json!("flag_not_found"))
    );
    assert_eq!(
        events[5],
        json!({"event_type": "feature_flag_evaluation", "timestamp": "2027-01-15T08:00:02.623456Z",
               "user_id": "user-3", "flag_id": "half", "flag_key": "half", "enabled": false,
               "reason": "not_in_rollout", "variant": null, "context": {}, "version": 0, "request_id": "req-one"})
    );
    // RFC 3339, UTC, the evaluation's own time.
    let parsed = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).expect("RFC 3339");
    assert_eq!((parsed.offset(), SystemTime::from(parsed)), (time::UtcOffset::UTC, t0()));
}

#[tokio::test]
async fn partition_keys_are_user_ids_hashed_when_too_long_else_the_request_id() {
    let sink = Arc::new(FakeSink::accepting());
    let app = app(&[], &sink);
    let (long, other_long, widest) = ("u".repeat(300), "v".repeat(300), "é".repeat(256));
    for user in ["user-1", &long, &long, &other_long, &widest] {
        app.evaluate_keys(&subject(Some(user), json!({}), "req"), &["on"]).await;
    }
    app.evaluate_keys(&subject(None, json!({}), "req-anonymous"), &["on"]).await;
    app.events.flush().await;

    let keys: Vec<String> = sink.accepted().into_iter().map(|r| r.partition_key).collect();
    assert_eq!(keys[0], "user-1");
    assert!(keys[1].chars().count() <= 256 && keys[1] != long, "{}", keys[1]);
    assert_eq!(keys[1], keys[2], "the same user, the same shard");
    assert_ne!(keys[1], keys[3]);
    assert!(keys[3].chars().count() <= 256);
    assert_eq!(keys[4], widest, "256 characters fit, however many bytes");
    assert_eq!(keys[5], "req-anonymous");
    assert_eq!(event(&sink.accepted()[5])["user_id"], Value::Null);
}

// ---- summaries ---------------------------------------------------------------------

type Group = (String, u64, Value, bool, String);

/// The groups of SPEC's summary mode, counted from evaluation outcomes.
fn expected_groups(outcomes: &[Outcome]) -> BTreeMap<String, u64> {
    let mut groups = BTreeMap::new();
    for o in outcomes {
        let view = o.view();
        let group: Group =
            (o.key().to_owned(), view.version(), json!(view.variant_key()), o.enabled, o.reason().as_str().to_owned());
        *groups.entry(format!("{group:?}")).or_default() += 1;
    }
    groups
}

/// The summary records' groups and counts; checks each record's shape and window.
fn summary_groups(records: &[EventRecord], window: (&str, &str)) -> BTreeMap<String, u64> {
    let mut groups = BTreeMap::new();
    for record in records {
        let e = event(record);
        let keys: BTreeSet<&str> = e.as_object().expect("object").keys().map(String::as_str).collect();
        let expected_keys = [
            "count",
            "enabled",
            "event_type",
            "flag_id",
            "flag_key",
            "reason",
            "variant",
            "version",
            "window_end",
            "window_start",
        ];
        assert_eq!(keys, BTreeSet::from(expected_keys), "{e}");
        assert_eq!(e["event_type"], "feature_flag_summary");
        assert_eq!((e["window_start"].as_str(), e["window_end"].as_str()), (Some(window.0), Some(window.1)));
        assert_eq!(record.partition_key, e["flag_key"].as_str().expect("flag_key"));
        let group: Group = (
            e["flag_key"].as_str().expect("flag_key").to_owned(),
            e["version"].as_u64().expect("version"),
            e["variant"].clone(),
            e["enabled"].as_bool().expect("enabled"),
            e["reason"].as_str().expect("reason").to_owned(),
        );
        let previous = groups.insert(format!("{group:?}"), e["count"].as_u64().expect("count"));
        assert_eq!(previous, None, "one record per group: {e}");
    }
    groups
}

#[tokio::test]
async fn summary_mode_sends_one_record_per_group_per_flush() {
    let sink = Arc::new(FakeSink::accepting());
    let app = app(&[("EVENTS_MODE", "summary")], &sink);
    let mut outcomes = Vec::new();
    for (i, user) in users(0..30).iter().enumerate() {
        if i > 0 {
            app.clock.advance(Duration::from_secs(1));
        }
        outcomes.extend(ask(&app, user, &["on", "half", "abc", "off"]).await);
    }

    app.events.flush().await;
    let first = sink.accepted();
    let groups = summary_groups(&first, ("2027-01-15T08:00:00.123456Z", "2027-01-15T08:00:29.123456Z"));
    assert_eq!(groups, expected_groups(&outcomes));
    assert!(groups.len() >= 6, "several groups: {groups:?}");
    assert_eq!(groups.values().sum::<u64>(), 120);

    // The next flush summarises only what came after.
    app.clock.advance(Duration::from_secs(60));
    let later = ask(&app, "user-1", &["on", "half"]).await;
    app.events.flush().await;
    let second = &sink.accepted()[first.len()..];
    let groups = summary_groups(second, ("2027-01-15T08:01:29.123456Z", "2027-01-15T08:01:29.123456Z"));
    assert_eq!(groups, expected_groups(&later));
}

#[tokio::test]
async fn both_mode_sends_full_events_and_summaries() {
    let sink = Arc::new(FakeSink::accepting());
    let app = app(&[("EVENTS_MODE", "both")], &sink);
    let mut outcomes = Vec::new();
    for user in users(0..10) {
        outcomes.extend(ask(&app, &user, &["on", "abc"]).await);
    }
    app.events.flush().await;

    let (full, summaries): (Vec<EventRecord>, Vec<EventRecord>) =
        sink.accepted().into_iter().partition(|r| event(r)["event_type"] == "feature_flag_evaluation");
    assert_eq!(full.len(), 20);
    let at = "2027-01-15T08:00:00.123456Z";
    assert_eq!(summary_groups(&summaries, (at, at)), expected_groups(&outcomes));
}

#[tokio::test]
async fn full_mode_sends_no_summaries() {
    let sink = Arc::new(FakeSink::accepting());
    let app = app(&[("EVENTS_MODE", "full")], &sink);
    for user in users(0..10) {
        ask(&app, &user, &["on", "abc"]).await;
    }
    app.events.flush().await;
    assert_eq!(fields(&sink.accepted(), "event_type"), vec!["feature_flag_evaluation"; 20]);
}

// ---- events off, drain ---------------------------------------------------------------

#[tokio::test]
async fn with_events_off_nothing_is_recorded_or_sent() {
    let app = App::new(store(), None, &config(&[]), Clock::manual_at(t0()));
    assert!(!app.events.enabled());
    for user in users(0..10) {
        ask(&app, &user, &["on", "abc"]).await;
    }
    assert_eq!(app.events.stats(), EventStats::default());
    assert_eq!(app.events.flush().await, FlushReport::default());
    assert_eq!(app.events.drain(Duration::from_secs(1)).await, EventStats::default());

    assert!(self::app(&[], &Arc::new(FakeSink::accepting())).events.enabled());
}

#[tokio::test]
async fn drain_empties_the_buffer_when_the_sink_works() {
    let sink = Arc::new(FakeSink::accepting().limits(5, 1 << 20, 1 << 20));
    let app = app(&[], &sink);
    for user in users(0..23) {
        ask(&app, &user, &["on"]).await;
    }
    let stats = app.events.drain(Duration::from_secs(5)).await;
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
        let app = app(&[], &sink);
        for user in users(0..10) {
            ask(&app, &user, &["on"]).await;
        }
        // Paused time: the bound below is virtual time, exact and independent of load.
        let stats = tokio::time::timeout(2 * budget, app.events.drain(budget)).await.expect("drain gave up in time");
        assert_eq!((stats.buffered, stats.sent, stats.dropped), (10, 0, 0), "kept, not lost");
        assert!(sink.calls().len() > 1, "it kept trying");
    }
}

#[tokio::test]
async fn a_sink_declaring_zero_limits_still_gets_one_record_per_call() {
    let sink = Arc::new(FakeSink::accepting().limits(0, 0, 1 << 20));
    let app = app(&[], &sink);
    for user in users(0..3) {
        ask(&app, &user, &["on"]).await;
    }
    assert_eq!(app.events.flush().await, FlushReport { sent: 3, kept: 0 });
    assert_eq!(sink.calls().iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
}

// ---- bytes, flush policy, shutdown accounting (issues 11 and 16) --------------------

#[tokio::test]
async fn the_buffer_is_bounded_in_bytes_and_drops_the_oldest_requests_first() {
    let sink = Arc::new(FakeSink::accepting());
    let app = app(&[("EVENTS_BUFFER_MAX_BYTES", "1048576")], &sink);
    // 40 requests of two events sharing a ~100 KB context: ~4 MB of contexts.
    for user in users(0..40) {
        let context = json!({ "blob": "x".repeat(100_000) });
        app.evaluate_keys(&subject(Some(&user), context, &format!("req-{user}")), &["on", "off"]).await;
        assert!(app.events.stats().buffered_bytes <= 1 << 20, "{:?}", app.events.stats());
    }
    let stats = app.events.stats();
    assert!(stats.dropped > 0 && stats.buffered > 0, "{stats:?}");
    assert_eq!(stats.recorded, stats.dropped + stats.buffered as u64);
    // Each context is charged once per request, not per event: more than one request
    // fits, though not ten.
    let kept_requests = stats.buffered / 2;
    assert!((2..10).contains(&kept_requests), "{stats:?}");
    app.events.flush().await;
    let kept = fields(&sink.accepted(), "user_id");
    let newest: Vec<String> = users(0..40).into_iter().flat_map(|u| [u.clone(), u]).collect();
    assert_eq!(kept, newest[newest.len() - kept.len()..], "the newest stay, whole requests first");
}

#[tokio::test]
async fn one_request_with_a_large_context_goes_out_in_batches_within_the_byte_limit() {
    let sink = Arc::new(FakeSink::accepting());
    let app = app(&[], &sink);
    let keys: Vec<String> = (0..300).map(|i| format!("ghost-{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let context = json!({ "blob": "y".repeat(60_000) });
    app.evaluate_keys(&subject(Some("user-1"), context.clone(), "req-big"), &keys).await;

    assert_eq!(app.events.flush().await, FlushReport { sent: 300, kept: 0 });
    let calls = sink.calls();
    assert!(calls.len() >= 4, "{} calls for ~18 MB of records", calls.len());
    assert!(calls.iter().all(|c| size(c) <= 5 << 20));
    let accepted = sink.accepted();
    assert!(accepted.iter().all(|r| event(r)["context"] == context), "every event carries the whole context");
    assert_eq!(fields(&accepted, "flag_key"), keys);
}

#[tokio::test(start_paused = true)]
async fn a_flush_is_due_at_the_minimum_count_or_age_and_paused_after_a_failure() {
    let down = Arc::new(AtomicBool::new(false));
    let failing = down.clone();
    let sink = Arc::new(FakeSink::new(move |_, _| if failing.load(Relaxed) { Answer::Fail } else { Answer::Accept }));
    let app = app(&[("EVENTS_FLUSH_MIN", "3"), ("EVENTS_FLUSH_MAX_AGE_MS", "1000")], &sink);
    assert!(!due(&app), "nothing buffered");
    ask(&app, "user-1", &["on", "off"]).await;
    assert!(!due(&app), "two events, young");
    ask(&app, "user-2", &["on"]).await;
    assert!(due(&app), "three events");
    app.events.flush().await;

    ask(&app, "user-3", &["on"]).await;
    app.clock.advance(Duration::from_millis(999));
    assert!(!due(&app));
    app.clock.advance(Duration::from_millis(1));
    assert!(due(&app), "the oldest is a second old by the app's clock");

    // A failed flush pauses after-response flushes (1 s, then 2 s, ...).
    down.store(true, Relaxed);
    assert_eq!(app.events.flush().await.sent, 0);
    ask(&app, "user-4", &["on", "off", "half"]).await;
    assert!(!due(&app), "paused after the failure");
    tokio::time::advance(Duration::from_millis(1_000)).await;
    assert!(due(&app));
    app.events.flush().await;
    tokio::time::advance(Duration::from_millis(1_000)).await;
    assert!(!due(&app), "the pause doubled");
    tokio::time::advance(Duration::from_millis(1_000)).await;
    assert!(due(&app));
    down.store(false, Relaxed);
    assert_eq!(app.events.flush().await, FlushReport { sent: 4, kept: 0 });
    ask(&app, "user-5", &["on", "off", "half"]).await;
    assert!(due(&app), "a success ends the pause");
}

#[tokio::test(start_paused = true)]
async fn events_held_across_flush_decisions_keep_their_own_time_and_request() {
    let sink = Arc::new(FakeSink::accepting());
    let app = app(&[("EVENTS_FLUSH_MIN", "100"), ("EVENTS_FLUSH_MAX_AGE_MS", "60000")], &sink);
    ask(&app, "user-1", &["on"]).await;
    app.clock.advance(Duration::from_secs(7));
    ask(&app, "user-2", &["on"]).await;
    assert!(!due(&app));
    app.events.flush().await;
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
    let app = App::new(store(), Some(sink.clone()), &config(&[]), Clock::manual_at(t0()));
    for user in users(0..40) {
        ask(&app, &user, &["on"]).await;
    }
    let started = tokio::time::Instant::now();
    let stats = app.events.shutdown(Duration::from_millis(250)).await;
    assert!(started.elapsed() <= Duration::from_millis(250), "{:?} (virtual time)", started.elapsed());
    // Calls at 0 and 100 ms finish; the one at 200 ms would end at 300: not started.
    assert_eq!(sink.inner.calls().len(), 2);
    assert_eq!((stats.recorded, stats.delivered, stats.dropped, stats.unconfirmed), (40, 10, 30, 0));
    assert_eq!(stats.delivered as usize, sink.inner.accepted().len());
}

#[tokio::test(start_paused = true)]
async fn a_call_in_flight_at_the_deadline_is_cut_and_counted_unconfirmed() {
    let sink = Arc::new(SlowSink { inner: FakeSink::accepting(), delay: Duration::from_secs(10) });
    let app = App::new(store(), Some(sink.clone()), &config(&[]), Clock::manual_at(t0()));
    for user in users(0..7) {
        ask(&app, &user, &["on"]).await;
    }
    let stats = app.events.shutdown(Duration::from_millis(300)).await;
    assert_eq!((stats.recorded, stats.delivered, stats.dropped, stats.unconfirmed), (7, 0, 7, 7));
    assert_eq!(stats.buffered, 0);
}

/// Whether an after-response flush is due by the app's clock.
fn due(app: &App) -> bool {
    app.events.flush_due(app.clock.wall())
}

/// A sink whose every call takes `delay`.
struct SlowSink {
    inner: FakeSink,
    delay: Duration,
}

impl EventSink for SlowSink {
    fn send<'a>(&'a self, records: &'a [EventRecord]) -> BoxFuture<'a, Result<Vec<FailedRecord>, SinkError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.send(records).await
        })
    }

    fn limits(&self) -> SinkLimits {
        self.inner.limits
    }
}
