//! Shared by the benches: an in-memory store and a way to run futures that never wait.
#![allow(dead_code)] // each bench uses a different part

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use flagfn::flag::CompiledFlag;
use flagfn::store::{BoxFuture, FlagStore, StoreError};
use serde_json::{json, Value};

/// Polls `future` once. Cache hits, evaluation and event recording never wait, so this
/// measures the work itself rather than an executor's overhead. Panics if it would wait
/// (which would mean the bench is not measuring a cache hit).
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("benchmarked future waited: not a cache hit"),
    }
}

/// Flags held in memory: the bench's store.
pub struct MemoryStore(pub Vec<Arc<CompiledFlag>>);

impl FlagStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<CompiledFlag>>, StoreError>> {
        Box::pin(async move { Ok(self.0.iter().find(|f| f.key() == key).cloned()) })
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Arc<CompiledFlag>>, StoreError>> {
        Box::pin(async move { Ok(self.0.iter().filter(|f| keys.iter().any(|k| k == f.key())).cloned().collect()) })
    }

    fn scan(&self) -> BoxFuture<'_, Result<Vec<Arc<CompiledFlag>>, StoreError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

/// The four flag shapes of benches/eval.rs, in rotation: static, 50 % rollout,
/// two targeting clauses + 50 %, a three-way split.
pub fn mixed_flag(n: usize) -> Value {
    let key = format!("flag-{n:03}");
    match n % 4 {
        0 => json!({"key": key, "enabled": true, "rollout_percentage": 100}),
        1 => json!({"key": key, "enabled": true, "rollout_percentage": 50}),
        2 => json!({"key": key, "enabled": true, "rollout_percentage": 50, "targeting_rules": [
            {"attribute": "country", "operator": "in", "value": ["US", "CA", "GB"]},
            {"attribute": "plan", "operator": "equals", "value": "pro"}]}),
        _ => json!({"key": key, "enabled": true, "rollout_percentage": 100, "variants": [
            {"key": "a", "allocation": 0.34}, {"key": "b", "allocation": 0.33}, {"key": "c", "allocation": 0.33}]}),
    }
}

/// `n` mixed flags, compiled.
pub fn mixed_flags(n: usize) -> Vec<Arc<CompiledFlag>> {
    (0..n).map(|i| Arc::new(CompiledFlag::from_value(mixed_flag(i)).expect("bench flags are keyed"))).collect()
}

/// 1,024 user ids, cycled so nothing is constant-folded.
pub fn users() -> Vec<String> {
    (0..1024).map(|i| format!("user-{i:06}")).collect()
}

/// A sink that accepts everything (the benches measure recording, not sending).
pub struct NullSink;

impl flagfn::sink::EventSink for NullSink {
    fn send<'a>(
        &'a self,
        _records: &'a [flagfn::sink::EventRecord],
    ) -> BoxFuture<'a, Result<Vec<flagfn::sink::FailedRecord>, flagfn::sink::SinkError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn limits(&self) -> flagfn::sink::SinkLimits {
        flagfn::sink::SinkLimits { max_records: 500, max_bytes: 5 << 20, max_record_bytes: 1 << 20 }
    }
}

/// Default settings with flags from a (never read) file path and events on.
pub fn config() -> flagfn::config::Config {
    flagfn::config::Config::from_lookup(|name| (name == "FLAGS_FILE").then(|| "unused.json".to_owned()))
        .expect("valid bench config")
}

/// Times `run` (one request's hot-path work: it records events), flushing the event
/// buffer every 32 runs *outside* the timing, as a deployment does after responding
/// (Lambda: the flush extension; locally: the flush thread). Without it the buffer
/// would sit at `EVENTS_BUFFER_MAX` and every run would also pay for dropping the
/// oldest events — the overload path, not the normal one.
pub fn time_with_flushes(
    iters: u64,
    events: &flagfn::events::EventPipeline,
    mut run: impl FnMut(),
) -> std::time::Duration {
    let mut total = std::time::Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let chunk = left.min(32);
        let start = std::time::Instant::now();
        for _ in 0..chunk {
            run();
        }
        total += start.elapsed();
        left -= chunk;
        let report = ready(events.flush());
        assert_eq!(report.kept, 0, "the bench sink takes every record");
    }
    total
}
