//! flagd flag evaluation, beside flagfn's own MD5 rollout in the same run.
//!
//! Scenarios: a static flagd flag, a `fractional` 50/50 (v2 and v3), a 3-clause
//! targeting rule, and 100 flagd flags for one context; `md5_rollout` is a Python-schema
//! 50 % rollout for the ratio the goal is stated in (`fractional` within 1.5× of it).
//! Targeting keys cycle through 1,024 values so nothing is constant-folded. Each flagd
//! scenario also runs on the official `flagd-evaluation-engine` (`official_*`), used as
//! its in-process provider uses it: the flag set parsed once, each targeting rule kept
//! as its JSON text, `Operator::apply` per evaluation (which compiles the rule and
//! round-trips the context through JSON text on every call), then the variant looked up.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use flagd_evaluation_engine::{FlagParser, Operator};
use flagfn::eval::{EvalInput, Evaluator, NoFlags};
use flagfn::flag::CompiledFlag;
use flagfn::flagd::{evaluate, parse_document, Bucketing, FlagdInput, FlagdSet};
use open_feature::EvaluationContext;
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

/// The official engine's answer for one flag: the variant's value.
fn official_value<'p>(
    operator: &Operator,
    key: &str,
    flag: &'p flagd_evaluation_engine::FeatureFlag,
    targeting: Option<&str>,
    context: &EvaluationContext,
) -> Option<&'p Value> {
    let variant = match targeting {
        Some(rule) => operator.apply(key, rule, context).ok().flatten()?,
        None => flag.default_variant.clone(),
    };
    flag.variants.get(&variant)
}

fn official(c: &mut Criterion) {
    let parsed = FlagParser::parse_string(&document().to_string()).expect("the official engine parses the document");
    let operator = Operator::new();
    let contexts: Vec<EvaluationContext> = (0..USERS)
        .map(|i| {
            EvaluationContext::default()
                .with_targeting_key(format!("user-{i:06}"))
                .with_custom_field("country", "US")
                .with_custom_field("plan", "pro")
                .with_custom_field("appVersion", "4.2.0")
        })
        .collect();
    let rules: Vec<(&String, &flagd_evaluation_engine::FeatureFlag, Option<String>)> =
        parsed.flags.iter().map(|(k, f)| (k, f, f.targeting.as_ref().map(|_| f.get_targeting()))).collect();
    for (name, key) in
        [("official_static", "static"), ("official_fractional", "split"), ("official_three_clauses", "three-clauses")]
    {
        let Some((key, flag, rule)) = rules.iter().find(|(k, _, _)| k.as_str() == key) else { continue };
        let mut i = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % USERS;
                black_box(official_value(&operator, key, flag, rule.as_deref(), &contexts[i]))
            })
        });
    }
    let many: Vec<_> = rules.iter().filter(|(k, _, _)| k.starts_with("many-")).collect();
    let mut i = 0;
    c.bench_function("official_batch100", |b| {
        b.iter(|| {
            i = (i + 1) % USERS;
            for (key, flag, rule) in &many {
                black_box(official_value(&operator, key, flag, rule.as_deref(), &contexts[i]));
            }
        })
    });
}

criterion_group!(flagd_benches, benches, official);
criterion_main!(flagd_benches);
