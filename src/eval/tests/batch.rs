//! `Evaluator::evaluate_each` hashes a batch's buckets ahead, several at a time: its
//! answers must be exactly `evaluate`'s, one flag at a time, whatever the flags, the
//! batch size (across the 64-flag chunks) and the user.

use proptest::prelude::*;

use super::*;

/// Flags of every shape that hashes: rollouts, splits (one variant, several, a bad sum),
/// `bucket_by`, targets and rules with their own rollouts, prerequisites, disabled and
/// malformed flags, and keys long enough to need more than one MD5 block.
fn flag_doc(i: usize, shape: u8, rollout: f64) -> Value {
    let key = if shape % 5 == 4 { format!("f{i}-{}", "k".repeat(60)) } else { format!("f{i}") };
    let variants =
        json!([{"key": "a", "allocation": 0.25}, {"key": "b", "allocation": 0.25}, {"key": "c", "allocation": 0.5}]);
    match shape % 10 {
        0 => json!({"key": key, "enabled": true, "rollout_percentage": rollout}),
        1 => json!({"key": key, "enabled": true, "rollout_percentage": rollout, "variants": variants}),
        2 => {
            json!({"key": key, "enabled": true, "rollout_percentage": 100, "variants": [{"key": "only", "allocation": 1}]})
        }
        3 => {
            json!({"key": key, "enabled": true, "rollout_percentage": rollout, "bucket_by": "org", "variants": variants})
        }
        4 => json!({"key": key, "enabled": false, "rollout_percentage": rollout, "variants": variants}),
        5 => json!({"key": key, "enabled": true, "rollout_percentage": rollout,
            "variants": [{"key": "a", "allocation": 0.5}, {"key": "b", "allocation": 0.3}]}),
        6 => json!({"key": key, "enabled": true, "rollout_percentage": rollout, "variants": variants,
            "targets": [{"user_ids": ["u-1"], "serve": {"rollout_percentage": 50}}],
            "rules": [{"id": "pro", "clauses": [{"attribute": "plan", "operator": "equals", "value": "pro"}], "serve": {}}]}),
        7 => json!({"key": key, "enabled": true, "rollout_percentage": rollout,
            "targeting_rules": [{"attribute": "plan", "operator": "equals", "value": "pro"}], "variants": variants}),
        8 => json!({"key": key, "enabled": true, "rollout_percentage": rollout, "prerequisites": [{"key": "f0"}],
            "variants": variants}),
        _ => json!({"key": key, "enabled": true, "rollout_percentage": "half"}),
    }
}

proptest! {
    #[test]
    fn evaluate_each_answers_exactly_as_evaluate(
        shapes in proptest::collection::vec((any::<u8>(), prop_oneof![Just(0.0), Just(100.0), 0.0f64..100.0]), 0..40),
        user in prop_oneof![Just(None), Just(Some(String::new())), "[a-z0-9-]{1,20}".prop_map(Some), "u-[0-9]{1,70}".prop_map(Some)],
        context in prop_oneof![Just(json!({})), Just(json!({"plan": "pro"})), Just(json!({"org": "acme", "plan": "free"})),
            Just(json!({"org": 42}))],
    ) {
        let docs: Vec<Value> =
            shapes.iter().enumerate().map(|(i, (shape, rollout))| flag_doc(i, *shape, *rollout)).collect();
        let flags: Vec<CompiledFlag> = docs.iter().cloned().map(flag).collect();
        let set = FlagSet::new(docs.into_iter().map(|d| Arc::new(flag(d))));
        let context = ctx(context);
        let input = EvalInput { user_id: user.as_deref(), context: &context, now: 1_800_000_000.0 };
        let one_by_one: Vec<String> =
            flags.iter().map(|f| format!("{:?}", Evaluator::new(input, &set).evaluate(f))).collect();
        let mut batched = Vec::new();
        // Every other item names no flag: `each` still gets it, in order, without an evaluation.
        let items: Vec<(usize, Option<&CompiledFlag>)> =
            flags.iter().enumerate().flat_map(|(i, f)| [(i, Some(f)), (usize::MAX, None)]).collect();
        Evaluator::new(input, &set).evaluate_each(items, |(_, f)| *f, |(i, _), e| {
            batched.push((i, e.map(|e| format!("{e:?}"))));
        });
        let expected: Vec<(usize, Option<String>)> =
            one_by_one.into_iter().enumerate().flat_map(|(i, e)| [(i, Some(e)), (usize::MAX, None)]).collect();
        prop_assert_eq!(batched, expected);
    }
}
