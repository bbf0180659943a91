//! Prerequisites: what they require, and that their validity is a
//! property of the flag set — the same for every user, alone, in a batch and in bulk,
//! whatever was evaluated first.

use super::*;

fn chain(len: usize) -> FlagSet {
    set((0..=len)
        .map(|i| {
            let mut d = json!({"key": format!("d{i}"), "enabled": true, "rollout_percentage": 100});
            if i < len {
                d["prerequisites"] = json!([{"key": format!("d{}", i + 1)}]);
            }
            d
        })
        .collect())
}

/// Evaluates `keys` in order with one evaluator (a batch), returning each error message.
fn batch(flags: &FlagSet, keys: &[&str], user: &str) -> Vec<Option<String>> {
    let c = Map::new();
    let mut ev = Evaluator::new(EvalInput { user_id: Some(user), context: &c, now: 0.0 }, flags);
    keys.iter().map(|k| ev.evaluate_key(k).error.map(|e| e.message.into_owned())).collect()
}

#[test]
fn a_too_deep_chain_is_an_error_alone_in_a_batch_and_in_bulk() {
    let flags = chain(9);
    let alone = batch(&flags, &["d0"], "u").remove(0).expect("d0 is too deep");
    assert_eq!(alone, "prerequisite chain deeper than 8: d0 → d1 → d2 → d3 → d4 → d5 → d6 → d7 → d8 → d9");
    // Deepest first (memoised outcomes below d0), then d0: the same error.
    let order: Vec<String> = (0..=9).rev().map(|i| format!("d{i}")).collect();
    let keys: Vec<&str> = order.iter().map(String::as_str).collect();
    let results = batch(&flags, &keys, "u");
    assert_eq!(results[9].as_deref(), Some(alone.as_str()), "d0 in a batch");
    assert!(results[..9].iter().all(Option::is_none), "d1..d9 are fine: {results:?}");
    // Bulk: every flag of the set, in key order.
    let bulk: Vec<&str> = flags.iter().map(|f| f.key()).collect();
    assert_eq!(batch(&flags, &bulk, "u")[0].as_deref(), Some(alone.as_str()));
}

#[test]
fn a_cycle_behind_a_rollout_is_an_error_for_every_user() {
    let flags = set(vec![
        json!({"key": "gate", "enabled": true, "rollout_percentage": 50, "prerequisites": [{"key": "a"}]}),
        json!({"key": "a", "enabled": true, "rollout_percentage": 100, "prerequisites": [{"key": "b"}]}),
        json!({"key": "b", "enabled": true, "rollout_percentage": 50, "prerequisites": [{"key": "a"}]}),
    ]);
    for user in (0..40).map(|i| format!("user-{i}")) {
        let results = batch(&flags, &["gate", "a", "b"], &user);
        assert_eq!(results[0].as_deref(), Some("prerequisite cycle: gate → a → b → a"), "{user}");
        assert_eq!(results[1].as_deref(), Some("prerequisite cycle: a → b → a"), "{user}");
        assert_eq!(results[2].as_deref(), Some("prerequisite cycle: b → a → b"), "{user}");
    }
}

#[test]
fn a_cycle_through_a_disabled_flag_is_reported() {
    let flags = set(vec![
        json!({"key": "on", "enabled": true, "rollout_percentage": 100, "prerequisites": [{"key": "off"}]}),
        json!({"key": "off", "enabled": false, "prerequisites": [{"key": "on"}]}),
    ]);
    for keys in [["on", "off"], ["off", "on"]] {
        let results = batch(&flags, &keys, "u");
        assert!(
            results.iter().all(|r| r.as_deref().is_some_and(|m| m.starts_with("prerequisite cycle"))),
            "{results:?}"
        );
    }
}

#[test]
fn a_shared_prerequisite_met_deeper_still_counts_its_depth() {
    // `d1` is reached at level 1 from `top` directly, and at level 2 through `mid`:
    // the deeper path decides (d1 → … → d8 is 7 levels below d1: level 9 via mid).
    let mut docs: Vec<Value> = (1..=8)
        .map(|i| {
            let mut d = json!({"key": format!("d{i}"), "enabled": true, "rollout_percentage": 100});
            if i < 8 {
                d["prerequisites"] = json!([{"key": format!("d{}", i + 1)}]);
            }
            d
        })
        .collect();
    docs.push(json!({"key": "mid", "enabled": true, "rollout_percentage": 100, "prerequisites": [{"key": "d1"}]}));
    docs.push(json!({"key": "top", "enabled": true, "rollout_percentage": 100,
        "prerequisites": [{"key": "d1"}, {"key": "mid"}]}));
    let flags = set(docs);
    let message = batch(&flags, &["top"], "u").remove(0).expect("too deep through mid");
    assert_eq!(message, "prerequisite chain deeper than 8: top → mid → d1 → d2 → d3 → d4 → d5 → d6 → d7 → d8");
    assert_eq!(batch(&flags, &["mid"], "u")[0], None);
}

#[test]
fn prerequisites_require_enabled_and_variant() {
    let flags = set(vec![
        json!({"key": "base", "enabled": true, "rollout_percentage": 100,
               "variants": [{"key": "x", "allocation": 1.0}]}),
        json!({"key": "off", "enabled": false}),
        json!({"key": "needs-base", "enabled": true, "rollout_percentage": 100, "prerequisites": [{"key": "base"}]}),
        json!({"key": "needs-x", "enabled": true, "rollout_percentage": 100, "prerequisites": [{"key": "base", "variant": "x"}]}),
        json!({"key": "needs-y", "enabled": true, "rollout_percentage": 100, "prerequisites": [{"key": "base", "variant": "y"}]}),
        json!({"key": "needs-off", "enabled": true, "rollout_percentage": 100, "prerequisites": [{"key": "off", "enabled": false}]}),
        json!({"key": "needs-on-off", "enabled": true, "rollout_percentage": 100, "prerequisites": [{"key": "off"}]}),
    ]);
    assert_eq!(eval_in(&flags, "needs-base", "u").1, "enabled");
    assert_eq!(eval_in(&flags, "needs-x", "u").1, "enabled");
    assert_eq!(eval_in(&flags, "needs-y", "u").1, "prerequisite_failed");
    assert_eq!(eval_in(&flags, "needs-off", "u").1, "enabled");
    assert_eq!(eval_in(&flags, "needs-on-off", "u").1, "prerequisite_failed");
    assert_eq!(eval_in(&flags, "nope", "u").1, "flag_not_found");
}

#[test]
fn prerequisite_cycles_and_deep_chains_are_malformed() {
    let flags = set(vec![
        json!({"key": "a", "enabled": true, "rollout_percentage": 100, "prerequisites": [{"key": "b"}]}),
        json!({"key": "b", "enabled": true, "rollout_percentage": 100, "prerequisites": [{"key": "a"}]}),
        json!({"key": "c", "enabled": true, "rollout_percentage": 100, "prerequisites": [{"key": "a"}]}),
    ]);
    for key in ["a", "b", "c"] {
        let (enabled, _, code, message) = eval_in(&flags, key, "u");
        assert_eq!((enabled, code), (false, Some(ErrorCode::ParseError)), "{key}");
        assert!(message.contains("prerequisite cycle"), "{message}");
    }
    // A chain of 9 prerequisites (d0 → d1 → … → d9) is one too deep; 8 is fine.
    let chain: Vec<Value> = (0..=9)
        .map(|i| {
            let mut d = json!({"key": format!("d{i}"), "enabled": true, "rollout_percentage": 100});
            if i < 9 {
                d["prerequisites"] = json!([{"key": format!("d{}", i + 1)}]);
            }
            d
        })
        .collect();
    let flags = set(chain);
    let (_, _, code, message) = eval_in(&flags, "d0", "u");
    assert_eq!(code, Some(ErrorCode::ParseError));
    assert!(message.contains("deeper than 8"), "{message}");
    assert_eq!(eval_in(&flags, "d1", "u").1, "enabled");
}

#[test]
fn a_broken_prerequisite_only_fails_its_dependants() {
    let flags = set(vec![
        json!({"key": "bad", "enabled": true, "rollout_percentage": 400}),
        json!({"key": "dep", "enabled": true, "rollout_percentage": 100, "prerequisites": [{"key": "bad"}]}),
        json!({"key": "fine", "enabled": true, "rollout_percentage": 100}),
    ]);
    assert_eq!(eval_in(&flags, "dep", "u").1, "prerequisite_failed");
    assert_eq!(eval_in(&flags, "fine", "u").1, "enabled");
}

#[test]
fn batches_memoise_prerequisites() {
    let flags = set(vec![
        json!({"key": "base", "enabled": true, "rollout_percentage": 50}),
        json!({"key": "x", "enabled": true, "rollout_percentage": 100, "prerequisites": [{"key": "base"}]}),
        json!({"key": "y", "enabled": true, "rollout_percentage": 100, "prerequisites": [{"key": "base"}]}),
    ]);
    let c = Map::new();
    for user in ["u1", "u2", "u3", "u4"] {
        let mut ev = Evaluator::new(EvalInput { user_id: Some(user), context: &c, now: 0.0 }, &flags);
        let base = ev.evaluate_key("base").enabled;
        let (x, y) = (ev.evaluate_key("x"), ev.evaluate_key("y"));
        assert_eq!((x.enabled, y.enabled), (base, base), "{user}");
        assert_eq!(ev.memo.len(), 1, "base is evaluated once as a prerequisite");
    }
}

#[test]
fn a_flagd_flag_as_a_prerequisite_makes_the_flag_malformed_for_everyone() {
    let flagd = crate::flagd::parse_document(&json!({"flags": {"new-checkout": {
        "state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}}}))
    .expect("a flagd document");
    let mut flags: Vec<Arc<CompiledFlag>> =
        flagd.flags.into_iter().map(|f| Arc::new(CompiledFlag::from_flagd(f))).collect();
    for doc in [
        json!({"key": "banner", "enabled": false, "prerequisites": [{"key": "new-checkout"}]}),
        json!({"key": "plain", "enabled": true, "rollout_percentage": 100}),
    ] {
        flags.push(Arc::new(CompiledFlag::from_value(doc).expect("compiles")));
    }
    let flags = FlagSet::new(flags);
    for user in ["u1", "u2"] {
        let results = batch(&flags, &["banner", "plain"], user);
        assert_eq!(
            results[0].as_deref(),
            Some("a prerequisite must be a Python-schema flag, and this one is a flagd flag: banner → new-checkout"),
            "even off, for every user"
        );
        assert_eq!(results[1], None, "other flags are untouched");
    }
    let c = Map::new();
    let got = Evaluator::new(EvalInput { user_id: Some("u1"), context: &c, now: 0.0 }, &flags).evaluate_key("banner");
    assert_eq!(got.error.map(|e| e.code), Some(ErrorCode::ParseError));
}
