//! The event pipeline above the `EventSink` trait, with in-memory sinks that keep every
//! call, reject chosen records, fail whole calls or hold calls open. Events carry real
//! outcomes: [`FLAGS`] compiled and evaluated by the pure evaluator, then recorded, flushed,
//! drained and shut down exactly as `App` does ([`Rig`]), without a cache or a flag store.
//! The same paths against Kinesis (moto), through the real `App`, are in
//! tests/kinesis_events.rs.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use serde_json::Value;
use tokio::sync::Semaphore;

use super::*;
use crate::clock::Clock;
use crate::config::{Config, EventsConfig};
use crate::eval::{EvalInput, Evaluation, Evaluator, FlagSet};
use crate::flag::parse_flags_document;
use crate::sink::{BoxFuture, EventRecord, FailedRecord, SinkError, SinkLimits};

mod batching;
mod bound;
mod event;
mod sampling;
mod shutdown;
mod summary;

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

/// `EVENTS_*` settings as start-up parses them (`Config::from_lookup`).
fn events_config(vars: &[(&str, &str)]) -> EventsConfig {
    Config::from_lookup(|name| match name {
        "FLAGS_FILE" => Some("unused.json".to_owned()),
        _ => vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()),
    })
    .expect("valid settings")
    .events
}

/// The event pipeline as `App` drives it: built from the `EVENTS_*` settings and a sink
/// (`None`: events off), fed the outcomes of [`FLAGS`] at the time of a manual clock.
struct Rig {
    flags: FlagSet,
    events: Arc<EventPipeline>,
    clock: Clock,
}

impl Rig {
    /// A pipeline with `vars` sending to `sink`, over [`FLAGS`], its clock frozen at [`t0`].
    fn new(vars: &[(&str, &str)], sink: Option<Arc<dyn EventSink>>) -> Self {
        let (flags, skipped) = parse_flags_document(FLAGS).expect("flags");
        assert!(skipped.is_empty(), "{skipped:?}");
        Rig {
            flags: FlagSet::new(flags.into_iter().map(Arc::new)),
            events: Arc::new(EventPipeline::new(sink, events_config(vars))),
            clock: Clock::manual_at(t0()),
        }
    }

    /// `App::evaluate_keys` without the cache: one clock reading for the request, `keys`
    /// evaluated in order (unknown ones `flag_not_found`), then the request recorded.
    fn evaluate(&self, subject: &Subject, keys: &[&str]) -> Vec<Outcome> {
        let wall = self.clock.wall();
        let now = wall.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let input = EvalInput { user_id: subject.user_id.as_deref(), context: &subject.context, now };
        let mut evaluator = Evaluator::new(input, &self.flags);
        let outcomes: Vec<Outcome> = keys
            .iter()
            .map(|key| match self.flags.get(key) {
                Some(flag) => Outcome::from_evaluation(Some(flag), key, &evaluator.evaluate(flag), false),
                None => Outcome::from_evaluation(None, key, &Evaluation::not_found(key), false),
            })
            .collect();
        self.events.record(subject, wall, &outcomes);
        outcomes
    }
}

/// A [`Rig`] with `vars` sending events to `sink`.
fn rig(vars: &[(&str, &str)], sink: &Arc<FakeSink>) -> Rig {
    Rig::new(vars, Some(sink.clone()))
}

/// Whether an after-response flush is due by the rig's clock (as `App::after_response` asks).
fn due(rig: &Rig) -> bool {
    rig.events.flush_due(rig.clock.wall())
}

fn subject(user: Option<&str>, context: Value, request_id: &str) -> Subject {
    Subject {
        user_id: user.map(Arc::from),
        context: Arc::new(context.as_object().cloned().unwrap_or_default()),
        request_id: Arc::from(request_id),
    }
}

/// Evaluates `keys` for `user` with an empty context; the request id is `req-<user>`.
fn ask(rig: &Rig, user: &str, keys: &[&str]) -> Vec<Outcome> {
    rig.evaluate(&subject(Some(user), serde_json::json!({}), &format!("req-{user}")), keys)
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
