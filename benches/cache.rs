//! The cache's cost on top of evaluation (target: ≤ 50 ns per flag; docs/performance.md).
//!
//! `pure_eval_*` evaluate already-compiled flags; `hit_eval_*` do what a warm request
//! does: look the flags up in the cache (all hits), then evaluate. Both read the clock
//! once, as every request must for the `now` attribute (the cache reuses that reading
//! for its TTLs). The difference per flag is the cache's cost.

mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use flagfn::cache::FlagCache;
use flagfn::config::CacheConfig;
use flagfn::eval::{EvalInput, Evaluator, NoFlags};
use flagfn::resolve::Resolved;
use serde_json::{json, Map, Value};
use std::time::UNIX_EPOCH;
use support::{mixed_flags, ready, users, MemoryStore};

/// The request's clock reading, as the evaluator's `now` (epoch seconds).
fn seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn context() -> Map<String, Value> {
    json!({"country": "US", "plan": "pro"}).as_object().cloned().unwrap_or_default()
}

fn cache(c: &mut Criterion) {
    let flags = mixed_flags(100);
    let keys: Vec<String> = flags.iter().map(|f| f.key().to_owned()).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let cache = FlagCache::new(Arc::new(MemoryStore(flags.clone())), CacheConfig::default());
    ready(cache.get_many(&key_refs, SystemTime::now())); // warm: every lookup below is a hit
    let (users, context) = (users(), context());
    let one = &flags[2]; // targeting clauses + 50 % rollout
    let mut group = c.benchmark_group("cache");
    let mut i = 0usize;

    group.bench_function("pure_eval_1", |b| {
        b.iter(|| {
            i = (i + 1) % users.len();
            let now = seconds(SystemTime::now());
            let input = EvalInput { user_id: Some(&users[i]), context: &context, now };
            black_box(Evaluator::new(input, &NoFlags).evaluate(black_box(one)).enabled)
        })
    });
    group.bench_function("hit_eval_1", |b| {
        b.iter(|| {
            i = (i + 1) % users.len();
            let wall = SystemTime::now();
            let cached = ready(cache.get(black_box(one.key()), wall));
            let flag = cached.flag().expect("hit");
            let input = EvalInput { user_id: Some(&users[i]), context: &context, now: seconds(wall) };
            black_box(Evaluator::new(input, &NoFlags).evaluate(flag).enabled)
        })
    });
    group.bench_function("pure_eval_100", |b| {
        b.iter(|| {
            i = (i + 1) % users.len();
            let now = seconds(SystemTime::now());
            let input = EvalInput { user_id: Some(&users[i]), context: &context, now };
            let mut evaluator = Evaluator::new(input, &NoFlags);
            black_box(flags.iter().filter(|f| evaluator.evaluate(f).enabled).count())
        })
    });
    group.bench_function("hit_eval_100", |b| {
        b.iter(|| {
            i = (i + 1) % users.len();
            let wall = SystemTime::now();
            let resolved = ready(Resolved::load(&cache, black_box(&key_refs), wall));
            let input = EvalInput { user_id: Some(&users[i]), context: &context, now: seconds(wall) };
            let mut evaluator = Evaluator::new(input, resolved.source());
            let on = resolved.requested.iter().filter_map(|(_, c)| c.flag()).filter(|f| evaluator.evaluate(f).enabled);
            black_box(on.count())
        })
    });
    group.finish();
    let stats = cache.stats();
    assert_eq!(stats.store_reads, 1, "every benchmarked lookup was a hit");
}

criterion_group!(benches, cache);
criterion_main!(benches);
