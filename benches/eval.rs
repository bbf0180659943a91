//! Evaluation cost relative to one raw MD5 bucket (the `md5_bucket` baseline).
//!
//! Targets (ratios to `md5_bucket` in the same run): static ≤ 0.15×, rollout ≤ 0.95×
//! (cheaper than calling `md-5` at all), variant3 ≤ 1.15×, rules_rollout ≤ 1.3×,
//! batch100 ≤ 40× (its hashes in SIMD lanes; `batch100_sequential` is the same flags one
//! MD5 at a time); `numbers` (three number clauses, no hash) has no target beyond not
//! getting slower. `hash_bucket` is `md5_bucket` through flagfn's own kernel (what a rollout
//! hashes), and `hash32_*` time 32 hashes alone (`hash32_lanes_<kernel>` with each kernel
//! this CPU runs). User ids cycle through
//! 1,024 values so nothing is constant-folded; docs/performance.md's eval figures come from this file.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use flagfn::bucket;
use flagfn::eval::{EvalInput, Evaluator, NoFlags};
use flagfn::flag::CompiledFlag;
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

const USERS: usize = 1024;

fn users() -> Vec<String> {
    (0..USERS).map(|i| format!("user-{i:06}")).collect()
}

fn compile(doc: Value) -> CompiledFlag {
    CompiledFlag::from_value(doc).expect("bench flags are keyed")
}

fn static_flag(key: &str) -> Value {
    json!({"key": key, "enabled": true, "rollout_percentage": 100})
}

fn rollout_flag(key: &str) -> Value {
    json!({"key": key, "enabled": true, "rollout_percentage": 50})
}

fn rules_rollout_flag(key: &str) -> Value {
    json!({"key": key, "enabled": true, "rollout_percentage": 50, "targeting_rules": [
        {"attribute": "country", "operator": "in", "value": ["US", "CA", "GB"]},
        {"attribute": "plan", "operator": "equals", "value": "pro"}]})
}

/// Number comparisons alone (no hash: 100 %): integer–integer, float–float and
/// integer–float clauses, the cases exact comparison must keep fast.
fn numbers_flag(key: &str) -> Value {
    json!({"key": key, "enabled": true, "rollout_percentage": 100, "targeting_rules": [
        {"attribute": "age", "operator": "greater_than", "value": 18},
        {"attribute": "score", "operator": "less_than", "value": 0.75},
        {"attribute": "age", "operator": "less_than", "value": 99.5}]})
}

fn variant3_flag(key: &str) -> Value {
    json!({"key": key, "enabled": true, "rollout_percentage": 100, "variants": [
        {"key": "a", "allocation": 0.34}, {"key": "b", "allocation": 0.33}, {"key": "c", "allocation": 0.33}]})
}

fn context() -> Map<String, Value> {
    json!({"country": "US", "plan": "pro", "app_version": "4.2.0", "age": 30, "score": 0.5})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

fn bench_one(c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, id: &str, doc: Value) {
    let flag = compile(doc);
    let users = users();
    let context = context();
    let mut i = 0usize;
    c.bench_function(id, |b| {
        b.iter(|| {
            i = (i + 1) % USERS;
            let input = EvalInput { user_id: Some(&users[i]), context: &context, now: 0.0 };
            let r = Evaluator::new(input, &NoFlags).evaluate(black_box(&flag));
            black_box((r.enabled, r.variant.is_some()))
        })
    });
}

fn eval(c: &mut Criterion) {
    let mut group = c.benchmark_group("eval");

    let keyed: Vec<String> = users().iter().map(|u| format!("{u}:bench-flag")).collect();
    let mut i = 0usize;
    group.bench_function("md5_bucket", |b| {
        b.iter(|| {
            i = (i + 1) % USERS;
            let d = Md5::digest(black_box(keyed[i].as_bytes()));
            black_box(u32::from_le_bytes([d[0], d[1], d[2], d[3]]) % 100)
        })
    });

    // The same bucket through flagfn's one-block kernel, without the evaluator around it.
    let ids = users();
    let mut i = 0usize;
    group.bench_function("hash_bucket", |b| {
        b.iter(|| {
            i = (i + 1) % USERS;
            black_box(bucket::hash(black_box(&ids[i]), b":bench-flag") % 100)
        })
    });

    bench_one(&mut group, "static", static_flag("bench-flag"));
    bench_one(&mut group, "rollout", rollout_flag("bench-flag"));
    bench_one(&mut group, "rules_rollout", rules_rollout_flag("bench-flag"));
    bench_one(&mut group, "variant3", variant3_flag("bench-flag"));
    bench_one(&mut group, "numbers", numbers_flag("bench-flag"));

    // 100 mixed flags for one user: 25 each of static, rollout, rules+rollout, 3-way split.
    let makers: [fn(&str) -> Value; 4] = [static_flag, rollout_flag, rules_rollout_flag, variant3_flag];
    let flags: Vec<Arc<CompiledFlag>> =
        (0..100).map(|n| Arc::new(compile(makers[n % 4](&format!("flag-{n:03}"))))).collect();
    let users = users();
    let context = context();
    let mut i = 0usize;
    // As the function evaluates a batch: the bucket hashes of each 64 flags together,
    // in SIMD lanes, then the flags one by one.
    group.bench_function("batch100", |b| {
        b.iter(|| {
            i = (i + 1) % USERS;
            let input = EvalInput { user_id: Some(&users[i]), context: &context, now: 0.0 };
            let mut evaluator = Evaluator::new(input, &NoFlags);
            let mut on = 0u32;
            evaluator.evaluate_each(
                black_box(&flags),
                |f| Some(&***f),
                |_, e| {
                    on += u32::from(e.is_some_and(|e| e.enabled));
                },
            );
            black_box(on)
        })
    });
    // The same flags, each hashed when its evaluation needs it (one MD5 at a time).
    group.bench_function("batch100_sequential", |b| {
        b.iter(|| {
            i = (i + 1) % USERS;
            let input = EvalInput { user_id: Some(&users[i]), context: &context, now: 0.0 };
            let mut evaluator = Evaluator::new(input, &NoFlags);
            let mut on = 0u32;
            for flag in black_box(&flags) {
                on += u32::from(evaluator.evaluate(flag).enabled);
            }
            black_box(on)
        })
    });

    // The hashes alone: 32 `"{user}:{flag}"` messages, one at a time and in lanes.
    let suffixes: Vec<Vec<u8>> = (0..32).map(|n| format!(":flag-{n:03}").into_bytes()).collect();
    let jobs: Vec<(&str, &[u8])> = suffixes.iter().map(|s| (users[7].as_str(), s.as_slice())).collect();
    group.bench_function("hash32_sequential", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for (id, suffix) in black_box(&jobs) {
                acc ^= bucket::hash(id, suffix);
            }
            black_box(acc)
        })
    });
    group.bench_function("hash32_lanes", |b| {
        let mut out = [0u32; 32];
        b.iter(|| {
            bucket::hash_many(black_box(&jobs), &mut out);
            black_box(out[31])
        })
    });
    // The same with each kernel this CPU runs (the function picks the widest): what a
    // machine without AVX-512, or without AVX2, gets.
    for kernel in bucket::lanes::Kernel::available() {
        group.bench_function(format!("hash32_lanes_{kernel:?}").to_lowercase(), |b| {
            let mut out = [0u32; 32];
            b.iter(|| {
                bucket::hash_many_with(kernel, black_box(&jobs), &mut out);
                black_box(out[31])
            })
        });
    }
    group.finish();
}

criterion_group!(benches, eval);
criterion_main!(benches);
