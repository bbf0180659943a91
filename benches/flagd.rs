//! flagd flag evaluation, beside flagfn's own MD5 rollout in the same run.
//!
//! Scenarios: a static flagd flag, a `fractional` 50/50 (v2 and v3), a 3-clause
//! targeting rule, and 100 flagd flags for one context; `md5_rollout` is a Python-schema
//! 50 % rollout for the ratio the goal is stated in (`fractional` within 1.5× of it).
//! Targeting keys cycle through 1,024 values so nothing is constant-folded. Side-by-side
//! numbers for the official `flagd-evaluation-engine` are not part of this file yet.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use flagfn::eval::{EvalInput, Evaluator, NoFlags};
use flagfn::flag::CompiledFlag;
use flagfn::flagd::{evaluate, parse_document, Bucketing, FlagdInput, FlagdSet};
use serde_json::{json, Map, Value};

const USERS: usize = 1024;

fn document() -> Value {
    let mut flags = Map::new();
    flags.insert(
        "static".into(),
        json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}),
    );
    flags.insert(
        "split".into(),
        json!({"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": "a",
               "targeting": {"fractional": [["a", 50], ["b", 50]]}}),
    );
    flags.insert(
        "three-clauses".into(),
        json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
               "targeting": {"if": [{"and": [
                   {"in": [{"var": "country"}, ["US", "CA", "GB"]]},
                   {"==": [{"var": "plan"}, "pro"]},
                   {"sem_ver": [{"var": "appVersion"}, ">=", "4.0.0"]}]}, "on", "off"]}}),
    );
    for i in 0..100 {
        let flag = match i % 3 {
            0 => flags["static"].clone(),
            1 => flags["split"].clone(),
            _ => flags["three-clauses"].clone(),
        };
        flags.insert(format!("many-{i:03}"), flag);
    }
    json!({ "flags": flags })
}

fn context(user: &str) -> Map<String, Value> {
    let context = json!({"targetingKey": user, "country": "US", "plan": "pro", "appVersion": "4.2.0"});
    context.as_object().cloned().unwrap_or_default()
}

fn one(
    c: &mut Criterion,
    set: &FlagdSet,
    name: &str,
    key: &str,
    bucketing: Bucketing,
    contexts: &[Map<String, Value>],
) {
    let Some(flag) = set.get(key) else { return };
    let mut i = 0;
    c.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) % USERS;
            let input = FlagdInput { context: &contexts[i], targeting_key: None, timestamp: 0, bucketing };
            black_box(evaluate(flag, black_box(&input)).variant)
        })
    });
}

fn benches(c: &mut Criterion) {
    let set = parse_document(&document()).expect("a flagd document");
    let users: Vec<String> = (0..USERS).map(|i| format!("user-{i:06}")).collect();
    let contexts: Vec<Map<String, Value>> = users.iter().map(|u| context(u)).collect();
    one(c, &set, "flagd_static", "static", Bucketing::V2, &contexts);
    one(c, &set, "flagd_fractional_v2", "split", Bucketing::V2, &contexts);
    one(c, &set, "flagd_fractional_v3", "split", Bucketing::V3, &contexts);
    one(c, &set, "flagd_three_clauses", "three-clauses", Bucketing::V2, &contexts);
    let many: Vec<_> = set.flags.iter().filter(|f| f.key().starts_with("many-")).collect();
    let mut i = 0;
    c.bench_function("flagd_batch100", |b| {
        b.iter(|| {
            i = (i + 1) % USERS;
            let input =
                FlagdInput { context: &contexts[i], targeting_key: None, timestamp: 0, bucketing: Bucketing::V2 };
            for flag in &many {
                black_box(evaluate(flag, &input).variant);
            }
        })
    });
    let rollout = CompiledFlag::from_value(json!({"key": "rollout", "enabled": true, "rollout_percentage": 50}));
    let Ok(rollout) = rollout else { return };
    let empty = Map::new();
    let mut i = 0;
    c.bench_function("md5_rollout", |b| {
        b.iter(|| {
            i = (i + 1) % USERS;
            let input = EvalInput { user_id: Some(&users[i]), context: &empty, now: 0.0 };
            black_box(Evaluator::new(input, &NoFlags).evaluate(&rollout).enabled)
        })
    });
}

criterion_group!(flagd_benches, benches);
criterion_main!(flagd_benches);
