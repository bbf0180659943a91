//! Property tests of the evaluator and loader.

use flagfn::bucket;
use flagfn::eval::{EvalInput, Evaluator, NoFlags, Reason};
use flagfn::flag::{parse_flags_document, CompiledFlag};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn evaluate(flag: &CompiledFlag, user: &str, context: &Map<String, Value>) -> (bool, Reason, Option<String>) {
    let input = EvalInput { user_id: Some(user), context, now: 0.0 };
    let r = Evaluator::new(input, &NoFlags).evaluate(flag);
    (r.enabled, r.reason(), r.variant_key().map(String::from))
}

/// Arbitrary JSON, biased towards the shapes and field names of a flag document so the
/// loader's deeper paths are reached, not just "not an object".
fn arb_json() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "key",
        "enabled",
        "rollout_percentage",
        "targeting_rules",
        "variants",
        "default_variant",
        "version",
        "prerequisites",
        "targets",
        "rules",
        "bucket_by",
        "attribute",
        "operator",
        "value",
        "negate",
        "allocation",
        "user_ids",
        "serve",
        "id",
        "clauses",
        "variant",
        "payload",
        "in",
        "matches",
        "semver_equals",
        "before",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (0.0f64..=100.0).prop_map(Value::from),
        "[a-z_(){}*+?.\\\\0-9-]{0,12}".prop_map(Value::String),
        prop::sample::select(vec!["equals", "in", "matches", "semver_less_than", "after", "exists", "k", "a"])
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_documents_never_panic_the_loader(mut doc in arb_json(), force_key in any::<bool>(), user in "[a-z0-9]{0,8}") {
        if force_key {
            if let Value::Object(map) = &mut doc {
                map.insert("key".into(), json!("k"));
            }
        }
        let text = json!({"flags": [doc.clone(), doc.clone()]}).to_string();
        let (flags, skipped) = parse_flags_document(&text).expect("well-shaped file");
        prop_assert_eq!(flags.len() + skipped.len(), 2);
        if let Ok(flag) = CompiledFlag::from_value(doc.clone()) {
            let context = doc.as_object().cloned().unwrap_or_default();
            let input = EvalInput { user_id: Some(&user), context: &context, now: 0.0 };
            let r = Evaluator::new(input, &NoFlags).evaluate(&flag);
            // Malformed flags are errors, never guesses.
            if flag.body().is_err() {
                prop_assert_eq!(r.reason(), Reason::Error);
            }
        }
    }

    #[test]
    fn evaluation_is_deterministic(user in "\\PC{1,40}", pct in 0.0f64..=100.0, plan in "[a-c]") {
        let flag = CompiledFlag::from_value(json!({"key": "det", "enabled": true, "rollout_percentage": pct,
            "variants": [{"key": "a", "allocation": 0.2}, {"key": "b", "allocation": 0.3}, {"key": "c", "allocation": 0.5}],
            "rules": [{"id": "r", "clauses": [{"attribute": "plan", "operator": "equals", "value": "a"}],
                       "serve": {"rollout_percentage": pct}}]})).expect("keyed");
        let context = json!({"plan": plan}).as_object().cloned().expect("object");
        prop_assert_eq!(evaluate(&flag, &user, &context), evaluate(&flag, &user, &context));
    }

    #[test]
    fn rollout_is_monotonic(user in "\\PC{1,40}", p in 0.0f64..=100.0, q in 0.0f64..=100.0) {
        let (low, high) = if p <= q { (p, q) } else { (q, p) };
        let suffix = bucket::rollout_suffix("mono");
        if bucket::in_rollout(low, &user, &suffix) {
            prop_assert!(bucket::in_rollout(high, &user, &suffix));
        }
    }

    #[test]
    fn context_that_is_not_targeted_never_changes_the_outcome(user in "[a-z]{1,12}", extra in arb_json()) {
        // The Python pipeline with no targeting reads nothing from the context.
        let flag = CompiledFlag::from_value(json!({"key": "plain", "enabled": true, "rollout_percentage": 37.5,
            "variants": [{"key": "x", "allocation": 0.5}, {"key": "y", "allocation": 0.5}]})).expect("keyed");
        let empty = Map::new();
        let context = json!({"extra": extra}).as_object().cloned().expect("object");
        prop_assert_eq!(evaluate(&flag, &user, &empty), evaluate(&flag, &user, &context));
    }
}

#[test]
fn fifty_percent_of_100k_users_is_within_one_point() {
    let flag =
        CompiledFlag::from_value(json!({"key": "half", "enabled": true, "rollout_percentage": 50})).expect("keyed");
    let empty = Map::new();
    let n = 100_000;
    let on = (0..n).filter(|i| evaluate(&flag, &format!("user-{i}"), &empty).0).count();
    let share = on as f64 / n as f64;
    assert!((0.49..=0.51).contains(&share), "{share}");
}

#[test]
fn three_way_split_shares_are_within_one_point() {
    let flag = CompiledFlag::from_value(json!({"key": "three", "enabled": true, "rollout_percentage": 100,
        "variants": [{"key": "a", "allocation": 0.5}, {"key": "b", "allocation": 0.3}, {"key": "c", "allocation": 0.2}]}))
    .expect("keyed");
    let empty = Map::new();
    let n = 100_000;
    let mut counts = [0usize; 3];
    for i in 0..n {
        match evaluate(&flag, &format!("u{i}@example.com"), &empty).2.as_deref() {
            Some("a") => counts[0] += 1,
            Some("b") => counts[1] += 1,
            Some("c") => counts[2] += 1,
            other => panic!("unexpected variant {other:?}"),
        }
    }
    for (count, expected) in counts.iter().zip([0.5, 0.3, 0.2]) {
        let share = *count as f64 / n as f64;
        assert!((share - expected).abs() <= 0.01, "{counts:?}");
    }
}
