//! Table tests of the evaluator: every operator, `negate`, missing attributes, each
//! reason, each malformed cause, prerequisites and `bucket_by`.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::*;
use crate::flag::CompiledFlag;

fn flag(doc: Value) -> CompiledFlag {
    CompiledFlag::from_value(doc).expect("test flags have keys")
}

fn ctx(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("context is an object")
}

/// Evaluates `doc` for `user` in `context` at `now` with no other flags.
fn eval(doc: Value, user: Option<&str>, context: Value) -> (bool, &'static str, Option<String>, Option<ErrorCode>) {
    let f = flag(doc);
    let context = ctx(context);
    let input = EvalInput { user_id: user, context: &context, now: 1_800_000_000.0 };
    let r = Evaluator::new(input, &NoFlags).evaluate(&f);
    (r.enabled, r.reason.as_str(), r.variant_key().map(String::from), r.error.map(|e| e.code))
}

/// Whether a one-clause flag (on for everyone who matches) matches `context`.
fn clause(attribute: &str, operator: &str, value: Value, negate: bool, context: Value) -> bool {
    let doc = json!({"key": "c", "enabled": true, "rollout_percentage": 100,
        "rules": [{"id": "r", "clauses": [{"attribute": attribute, "operator": operator, "value": value, "negate": negate}],
                   "serve": {}}]});
    let (_, reason, _, err) = eval(doc, Some("u"), context);
    assert_eq!(err, None, "{operator}");
    reason == "rule_match"
}

#[test]
fn python_operators_have_python_semantics() {
    let cases: &[(&str, Value, Value, bool)] = &[
        ("equals", json!(1), json!(1.0), true),
        ("equals", json!("1"), json!(1), false),
        ("equals", json!(true), json!(true), true),
        ("equals", json!(1), json!(true), false), // booleans equal only booleans
        ("equals", json!([1, "a"]), json!([1.0, "a"]), true),
        ("equals", json!({"a": 1}), json!({"a": 1.0}), true),
        ("equals", json!(9007199254740993u64), json!(9007199254740992.0), false), // exact int/float
        ("in", json!(["US", "CA"]), json!("CA"), true),
        ("in", json!(["US", "CA"]), json!("DE"), false),
        ("in", json!([1, 2]), json!(2.0), true),
        ("in", json!([true]), json!(1), false),
        ("in", json!("@example.com"), json!("@example"), true), // substring of the value
        ("in", json!("abc"), json!(1), false),                  // Python raised: no match
        ("in", json!({"gold": 1}), json!("gold"), true),        // dict key membership
        ("in", json!(5), json!(5), false),
        ("greater_than", json!(17), json!(18), true),
        ("greater_than", json!(17), json!(17.0), false),
        ("greater_than", json!("m"), json!("n"), true),
        ("greater_than", json!("m"), json!("M"), false), // by code point
        ("greater_than", json!(1), json!("2"), false),   // mixed pairing never matches
        ("greater_than", json!(0), json!(true), false),
        ("less_than", json!(2.5), json!(2.4999), true),
        ("less_than", json!(2.5), json!(2.5), false),
        ("less_than", json!("b"), json!("a"), true),
    ];
    for (op, value, attr, expected) in cases {
        assert_eq!(clause("a", op, value.clone(), false, json!({"a": attr})), *expected, "{op} {value} vs {attr}");
    }
}

#[test]
fn extension_operators() {
    let now = 1_800_000_000.0;
    let cases: &[(&str, Value, Value, bool)] = &[
        ("not_equals", json!("a"), json!("b"), true),
        ("not_equals", json!(1), json!(1.0), false),
        ("not_in", json!(["a"]), json!("b"), true),
        ("not_in", json!(["a"]), json!("a"), false),
        ("greater_than_or_equal", json!(3), json!(3), true),
        ("greater_than_or_equal", json!(3), json!(2.9), false),
        ("less_than_or_equal", json!("b"), json!("b"), true),
        ("less_than_or_equal", json!(3), json!("3"), false),
        ("contains", json!("@acme"), json!("bo@acme.io"), true),
        ("contains", json!("beta"), json!(["staff", "beta"]), true),
        ("contains", json!(2), json!([1, 2.0]), true),
        ("contains", json!("x"), json!(5), false),
        ("not_contains", json!("beta"), json!(["staff"]), true),
        ("not_contains", json!("@acme"), json!("bo@acme.io"), false),
        ("starts_with", json!("en-"), json!("en-GB"), true),
        ("starts_with", json!("en-"), json!(5), false),
        ("ends_with", json!(".io"), json!("a.io"), true),
        ("ends_with", json!(".io"), json!("a.com"), false),
        ("matches", json!("^[a-z]+@acme\\.io$"), json!("bo@acme.io"), true),
        ("matches", json!("^[a-z]+$"), json!("Bo"), false),
        ("semver_equals", json!("1.2.0"), json!("v1.2"), true),
        ("semver_equals", json!("1.2.0"), json!("1.2.0+build5"), true), // build metadata ignored
        ("semver_greater_than", json!("1.9.0"), json!("1.10.0"), true), // numeric, not lexical
        ("semver_greater_than", json!("2.0.0"), json!("2.0.0-rc.1"), false),
        ("semver_less_than", json!("2.0.0"), json!("2.0.0-rc.1"), true),
        ("semver_less_than", json!("2.0.0"), json!("not-a-version"), false),
        ("before", json!("2030-01-01T00:00:00Z"), json!("2029-12-31T23:59:59Z"), true),
        ("before", json!("2030-01-01T00:00:00Z"), json!(1_890_000_000), true),
        ("before", json!("2030-01-01T00:00:00Z"), json!(1_900_000_000), false),
        ("after", json!(now - 1.0), json!("2027-01-15T08:00:00Z"), true),
        ("after", json!("2030-01-01T00:00:00Z"), json!("garbage"), false),
        ("exists", Value::Null, json!(0), true),
        ("not_exists", Value::Null, json!(false), false),
    ];
    for (op, value, attr, expected) in cases {
        assert_eq!(clause("a", op, value.clone(), false, json!({"a": attr})), *expected, "{op} {value} vs {attr}");
    }
}

#[test]
fn negate_inverts_but_absent_attributes_never_match() {
    assert!(clause("a", "equals", json!(1), true, json!({"a": 2})));
    assert!(!clause("a", "equals", json!(1), true, json!({"a": 1})));
    for op in ["equals", "not_equals", "in", "not_in", "contains", "not_contains", "matches", "before"] {
        let value = if op == "before" { json!(0) } else { json!("x") };
        for negate in [false, true] {
            assert!(!clause("a", op, value.clone(), negate, json!({"b": 1})), "{op} negate={negate}");
            assert!(!clause("a", op, value.clone(), negate, json!({"a": null})), "{op} null negate={negate}");
        }
    }
}

#[test]
fn presence_operators_test_presence() {
    assert!(clause("a", "exists", Value::Null, false, json!({"a": "x"})));
    assert!(!clause("a", "exists", Value::Null, false, json!({"b": "x"})));
    assert!(!clause("a", "exists", Value::Null, false, json!({"a": null})));
    assert!(clause("a", "exists", Value::Null, true, json!({"b": "x"})));
    assert!(clause("a", "not_exists", Value::Null, false, json!({"b": "x"})));
    assert!(!clause("a", "not_exists", Value::Null, true, json!({"b": "x"})));
}

#[test]
fn now_defaults_to_the_evaluation_time_unless_the_context_sets_it() {
    // Evaluation time is 1.8e9 (2027-01-15T08:00:00Z).
    assert!(clause("now", "after", json!("2027-01-01T00:00:00Z"), false, json!({})));
    assert!(!clause("now", "after", json!("2028-01-01T00:00:00Z"), false, json!({})));
    assert!(clause("now", "after", json!("2028-01-01T00:00:00Z"), false, json!({"now": "2028-06-01T00:00:00Z"})));
    // Only for `before`/`after`: for any other operator an absent `now` is absent, as in
    // Python (SPEC §1.1), so a Python `greater_than` on `now` never sees the clock.
    assert!(!clause("now", "exists", Value::Null, false, json!({})));
    assert!(!clause("now", "greater_than", json!(0), false, json!({})));
    assert!(clause("now", "greater_than", json!(0), false, json!({"now": 1})));
}

#[test]
fn targeting_rules_never_match_an_empty_or_absent_context() {
    let doc = json!({"key": "t", "enabled": true, "rollout_percentage": 100,
        "targeting_rules": [{"attribute": "x", "operator": "not_exists"}]});
    assert_eq!(eval(doc.clone(), Some("u"), json!({})).1, "targeting_rules_not_met");
    assert_eq!(eval(doc, Some("u"), json!({"y": 1})).1, "enabled");
    // An empty rule list is no rules at all.
    let doc = json!({"key": "t", "enabled": true, "rollout_percentage": 100, "targeting_rules": []});
    assert_eq!(eval(doc, Some("u"), json!({})).1, "enabled");
}

#[test]
fn every_reason() {
    let on = |extra: Value| {
        let mut doc = json!({"key": "f", "enabled": true, "rollout_percentage": 100});
        doc.as_object_mut().expect("object").extend(extra.as_object().cloned().expect("object"));
        doc
    };
    assert_eq!(eval(json!({"key": "f"}), Some("u"), json!({})).1, "flag_disabled");
    assert_eq!(eval(on(json!({})), Some("u"), json!({})), (true, "enabled", None, None));
    assert_eq!(eval(on(json!({"rollout_percentage": 0})), Some("u"), json!({})).1, "not_in_rollout");
    assert_eq!(
        eval(
            on(json!({"targeting_rules": [{"attribute": "a", "operator": "equals", "value": 1}]})),
            Some("u"),
            json!({"a": 2})
        )
        .1,
        "targeting_rules_not_met"
    );
    let targets = on(json!({"targets": [{"user_ids": ["vip"], "serve": {"enabled": false}}]}));
    assert_eq!(eval(targets.clone(), Some("vip"), json!({})), (false, "target_match", None, None));
    assert_eq!(eval(targets, Some("other"), json!({})).1, "enabled");
    let rules = on(json!({"rules": [{"id": "r1", "clauses": [], "serve": {}}]}));
    assert_eq!(eval(rules, Some("u"), json!({})), (true, "rule_match", None, None));
    let prereq = on(json!({"prerequisites": [{"key": "missing"}]}));
    assert_eq!(eval(prereq, Some("u"), json!({})), (false, "prerequisite_failed", None, None));
}

#[test]
fn targets_come_first_then_rules_in_order_then_the_python_pipeline() {
    let doc = json!({"key": "f", "enabled": true, "rollout_percentage": 0,
        "variants": [{"key": "a", "allocation": 0.5}, {"key": "b", "allocation": 0.5}],
        "targets": [{"user_ids": ["u1", "u2"], "serve": {"variant": "b"}},
                    {"user_ids": ["u2", "u3"], "serve": {"variant": "a"}}],
        "rules": [{"id": "pro", "clauses": [{"attribute": "plan", "operator": "equals", "value": "pro"}], "serve": {"variant": "a"}},
                  {"id": "any", "clauses": [{"attribute": "plan", "operator": "exists"}], "serve": {"enabled": false}}]});
    assert_eq!(eval(doc.clone(), Some("u2"), json!({"plan": "pro"})).2.as_deref(), Some("b"));
    assert_eq!(eval(doc.clone(), Some("u3"), json!({})).2.as_deref(), Some("a"));
    assert_eq!(eval(doc.clone(), Some("x"), json!({"plan": "pro"})), (true, "rule_match", Some("a".into()), None));
    assert_eq!(eval(doc.clone(), Some("x"), json!({"plan": "free"})), (false, "rule_match", None, None));
    assert_eq!(eval(doc, Some("x"), json!({})).1, "not_in_rollout");
}

#[test]
fn rule_ids_are_reported() {
    let f = flag(json!({"key": "f", "enabled": true,
        "rules": [{"id": "beta", "clauses": [{"attribute": "beta", "operator": "equals", "value": true}], "serve": {}}],
        "targets": [{"user_ids": ["vip"], "serve": {}}]}));
    let c = ctx(json!({"beta": true}));
    let r = Evaluator::new(EvalInput { user_id: Some("x"), context: &c, now: 0.0 }, &NoFlags).evaluate(&f);
    assert_eq!(r.rule_id(), Some("beta"));
    let r = Evaluator::new(EvalInput { user_id: Some("vip"), context: &c, now: 0.0 }, &NoFlags).evaluate(&f);
    assert_eq!((r.rule_id(), r.reason), (Some("target"), Reason::TargetMatch));
}

#[test]
fn serve_rollout_uses_the_rule_salt() {
    // `serve.rollout_percentage` hashes "{id}:{flag}:{rule_id}", not the flag's own salt.
    let doc = |pct: f64| {
        json!({"key": "f", "enabled": true,
        "rules": [{"id": "r", "clauses": [], "serve": {"rollout_percentage": pct}}]})
    };
    let bucket = bucket::rollout_bucket("user-9", b":f:r");
    let pct = f64::from(bucket);
    assert_eq!(eval(doc(pct + 0.5), Some("user-9"), json!({})), (true, "rule_match", None, None));
    assert_eq!(eval(doc(pct), Some("user-9"), json!({})), (false, "rule_match", None, None));
}

#[test]
fn serve_without_a_variant_uses_the_split() {
    let doc = json!({"key": "f", "enabled": true,
        "variants": [{"key": "a", "allocation": 0.5}, {"key": "b", "allocation": 0.5}],
        "rules": [{"id": "r", "clauses": [], "serve": {}}]});
    let point = bucket::variant_point("u", b":f_variant");
    let expected = if point < 0.5 { "a" } else { "b" };
    assert_eq!(eval(doc, Some("u"), json!({})).2.as_deref(), Some(expected));
}

#[test]
fn default_variant_fills_an_empty_split_result() {
    // Python: `variant if variant else default_variant` — an empty key falls through.
    let doc = json!({"key": "f", "enabled": true, "rollout_percentage": 100,
        "variants": [{"key": "", "allocation": 1.0}, {"key": "fallback", "allocation": 0.0}],
        "default_variant": "fallback"});
    assert_eq!(eval(doc, Some("u"), json!({})).2.as_deref(), Some("fallback"));
}

#[test]
fn default_variant_without_variants_is_inert_as_in_python() {
    let doc = json!({"key": "f", "enabled": true, "rollout_percentage": 100, "default_variant": "control"});
    assert_eq!(eval(doc, Some("u"), json!({})), (true, "enabled", None, None));
}

#[test]
fn malformed_flags_name_their_problem() {
    let cases = [
        (json!({"key": "m", "enabled": "yes"}), "enabled"),
        (json!({"key": "m", "rollout_percentage": 101}), "rollout_percentage"),
        (
            json!({"key": "m", "rules": [{"id": "r", "clauses": [{"attribute": "a", "operator": "like"}], "serve": {}}]}),
            "rules[0].clauses[0]: unknown operator `like`",
        ),
        (
            json!({"key": "m", "rules": [{"id": "r", "clauses": [{"operator": "exists"}], "serve": {}}]}),
            "rules[0].clauses[0]: `attribute` must be a string",
        ),
        (
            json!({"key": "m", "targeting_rules": [{"attribute": "a", "operator": "matches", "value": 5}]}),
            "targeting_rules[0]: `matches` needs a string value",
        ),
        (
            json!({"key": "m", "rules": [{"id": "r", "clauses": [{"attribute": "a", "operator": "matches", "value": "("}], "serve": {}}]}),
            "bad `matches` regex",
        ),
        (json!({"key": "m", "variants": [{"key": "a", "allocation": 1.5}]}), "allocation must be 0–1"),
        (
            json!({"key": "m", "variants": [{"key": "a", "allocation": 1.0}], "targets": [{"user_ids": ["u"], "serve": {"variant": "z"}}]}),
            "targets[0].serve: variant `z`",
        ),
        (json!({"key": "m", "rules": [{"id": "r", "clauses": [], "serve": {"variant": "on"}}]}), "names no variant"),
        (json!({"key": "m", "prerequisites": [{"key": "m"}]}), "prerequisite cycle"),
        (json!({"key": "m", "version": 1.5}), "version"),
        (json!({"key": "", "enabled": true}), "key must be"),
        (json!({"key": "a\u{7}b"}), "control character"),
    ];
    for (doc, expected) in cases {
        let f = flag(doc.clone());
        let message = f.body().expect_err("malformed");
        assert!(message.contains(expected), "{doc}: {message}");
        // Even disabled, a malformed flag evaluates to PARSE_ERROR, never a guess.
        let (enabled, reason, _, code) = eval(doc, Some("u"), json!({}));
        assert_eq!((enabled, reason, code), (false, "error", Some(ErrorCode::ParseError)));
    }
}

#[test]
fn items_without_a_key_cannot_load() {
    assert!(CompiledFlag::from_value(json!({"enabled": true})).is_err());
    assert!(CompiledFlag::from_value(json!({"key": 5})).is_err());
    assert!(CompiledFlag::from_value(json!([1, 2])).is_err());
}

#[test]
fn malformed_flags_keep_their_identity() {
    let f = flag(json!({"key": "m", "flag_id": "id-9", "version": 4, "enabled": 3}));
    assert_eq!((f.flag_id(), f.version()), ("id-9", 4));
}

fn set(docs: Vec<Value>) -> FlagSet {
    FlagSet::new(docs.into_iter().map(|d| Arc::new(flag(d))))
}

fn eval_in(flags: &FlagSet, key: &str, user: &str) -> (bool, &'static str, Option<ErrorCode>, String) {
    let c = Map::new();
    let mut ev = Evaluator::new(EvalInput { user_id: Some(user), context: &c, now: 0.0 }, flags);
    let r = ev.evaluate_key(key);
    (
        r.enabled,
        r.reason.as_str(),
        r.error.as_ref().map(|e| e.code),
        r.error.map(|e| e.message.into_owned()).unwrap_or_default(),
    )
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
fn the_user_id_is_needed_only_when_the_outcome_depends_on_it() {
    let no_user = |doc: Value| eval(doc, None, json!({"plan": "pro"}));
    let missing = Some(ErrorCode::TargetingKeyMissing);
    assert_eq!(no_user(json!({"key": "f", "enabled": false, "rollout_percentage": 50})).1, "flag_disabled");
    assert_eq!(no_user(json!({"key": "f", "enabled": true, "rollout_percentage": 100})).1, "enabled");
    assert_eq!(no_user(json!({"key": "f", "enabled": true, "rollout_percentage": 0})).1, "not_in_rollout");
    assert_eq!(no_user(json!({"key": "f", "enabled": true, "rollout_percentage": 50})).3, missing);
    assert_eq!(
        no_user(json!({"key": "f", "enabled": true, "rollout_percentage": 100,
            "variants": [{"key": "a", "allocation": 0.5}, {"key": "b", "allocation": 0.5}]}))
        .3,
        missing
    );
    assert_eq!(no_user(json!({"key": "f", "enabled": true, "targets": [{"user_ids": ["u"], "serve": {}}]})).3, missing);
    let rules = json!({"key": "f", "enabled": true, "rollout_percentage": 100,
        "targeting_rules": [{"attribute": "plan", "operator": "equals", "value": "pro"}]});
    assert_eq!(no_user(rules).1, "enabled");
    assert_eq!(eval(json!({"key": "f", "enabled": true, "rollout_percentage": 50}), Some("  "), json!({})).3, missing);
}

#[test]
fn bucket_by_hashes_the_attribute_so_a_whole_org_flips_together() {
    let doc = json!({"key": "org-flag", "enabled": true, "rollout_percentage": 50, "bucket_by": "org"});
    let expected = bucket::in_rollout(50.0, "acme", b":org-flag");
    for user in ["u1", "u2", "u3", "u4", "u5", "u6"] {
        assert_eq!(eval(doc.clone(), Some(user), json!({"org": "acme"})).0, expected, "{user}");
    }
    // A number hashes as its string form; an absent attribute falls back to the user id.
    assert_eq!(eval(doc.clone(), Some("u"), json!({"org": 42})).0, bucket::in_rollout(50.0, "42", b":org-flag"));
    assert_eq!(eval(doc.clone(), Some("user-7"), json!({})).0, bucket::in_rollout(50.0, "user-7", b":org-flag"));
    // With the attribute present no user id is needed.
    assert_eq!(eval(doc, None, json!({"org": "acme"})).3, None);
}

#[test]
fn ofrep_values() {
    let c = Map::new();
    let input = EvalInput { user_id: Some("u"), context: &c, now: 0.0 };
    let boolean = flag(json!({"key": "b", "enabled": true, "rollout_percentage": 100}));
    let r = Evaluator::new(input, &NoFlags).evaluate(&boolean);
    assert_eq!((r.value(), r.ofrep_variant()), (Some(FlagValue::Bool(true)), Some("on")));
    let off = flag(json!({"key": "b"}));
    let r = Evaluator::new(input, &NoFlags).evaluate(&off);
    assert_eq!((r.value(), r.ofrep_variant()), (Some(FlagValue::Bool(false)), Some("off")));
    let multi = flag(json!({"key": "m", "enabled": true, "rollout_percentage": 100,
        "variants": [{"key": "blue", "allocation": 1.0, "value": "#00f", "payload": {"x": 1}}]}));
    let r = Evaluator::new(input, &NoFlags).evaluate(&multi);
    assert_eq!(r.value(), Some(FlagValue::Json(&json!("#00f"))));
    let payload = flag(json!({"key": "m", "enabled": true, "rollout_percentage": 100,
        "variants": [{"key": "blue", "allocation": 1.0, "payload": {"x": 1}}]}));
    let r = Evaluator::new(input, &NoFlags).evaluate(&payload);
    assert_eq!(r.value(), Some(FlagValue::Json(&json!({"x": 1}))));
    let bare = flag(
        json!({"key": "m", "enabled": true, "rollout_percentage": 100, "variants": [{"key": "blue", "allocation": 1.0}]}),
    );
    let r = Evaluator::new(input, &NoFlags).evaluate(&bare);
    assert_eq!((r.value(), r.ofrep_variant()), (Some(FlagValue::Key("blue")), Some("blue")));
    let disabled = flag(json!({"key": "m", "variants": [{"key": "blue", "allocation": 1.0}]}));
    let r = Evaluator::new(input, &NoFlags).evaluate(&disabled);
    assert_eq!((r.value(), r.ofrep_variant()), (None, None));
}

#[test]
fn split_and_targeting_markers() {
    let c = ctx(json!({"plan": "pro"}));
    let input = EvalInput { user_id: Some("u"), context: &c, now: 0.0 };
    let run = |doc: Value| {
        let f = flag(doc);
        let r = Evaluator::new(input, &NoFlags).evaluate(&f);
        (r.bucketed, r.targeting_matched)
    };
    assert_eq!(run(json!({"key": "s", "enabled": true, "rollout_percentage": 100})), (false, false));
    assert!(run(json!({"key": "s", "enabled": true, "rollout_percentage": 99.9})).0);
    assert_eq!(
        run(json!({"key": "s", "enabled": true, "rollout_percentage": 100,
            "targeting_rules": [{"attribute": "plan", "operator": "equals", "value": "pro"}]})),
        (false, true)
    );
}

/// SPEC §1.1: items the Python service loaded answer as Python answered them, and say
/// what was read leniently.
mod python_reading {
    use super::*;

    fn oddities(doc: Value) -> Vec<String> {
        flag(doc).oddities().iter().map(|o| o.to_string()).collect()
    }

    #[test]
    fn a_clause_without_a_string_attribute_never_matches() {
        for clause in [json!({"operator": "exists"}), json!({"attribute": 7, "operator": "not_exists"})] {
            let doc = json!({"key": "t", "enabled": true, "rollout_percentage": 100,
                "targeting_rules": [clause]});
            assert_eq!(eval(doc.clone(), Some("u"), json!({"7": 1, "a": 1})).1, "targeting_rules_not_met", "{doc}");
            assert_eq!(oddities(doc), ["targeting_rules[0] has no string `attribute`; it never matches"]);
        }
    }

    #[test]
    fn an_unknown_operator_never_matches_even_negated() {
        for (operator, negate) in [(json!("eq"), false), (json!("Equals"), true), (json!(3), false)] {
            let doc = json!({"key": "t", "enabled": true, "rollout_percentage": 100,
                "targeting_rules": [{"attribute": "a", "operator": operator, "value": 1, "negate": negate}]});
            assert_eq!(eval(doc.clone(), Some("u"), json!({"a": 1})).1, "targeting_rules_not_met", "{doc}");
            assert_eq!(oddities(doc).len(), 1);
        }
        let doc = json!({"key": "t", "targeting_rules": [{"attribute": "a", "operator": "eq"}]});
        assert_eq!(oddities(doc), ["targeting_rules[0] has an unknown operator `eq`; it never matches"]);
    }

    #[test]
    fn an_allocation_sum_off_one_fails_only_users_who_reach_the_split() {
        let doc = json!({"key": "s", "enabled": true, "rollout_percentage": 50,
            "targeting_rules": [{"attribute": "plan", "operator": "equals", "value": "pro"}],
            "variants": [{"key": "a", "allocation": 0.5}, {"key": "b", "allocation": 0.48}]});
        // Targeting not met, not in rollout (user-3 → bucket 98): the normal answers.
        assert_eq!(eval(doc.clone(), Some("u"), json!({"plan": "free"})).1, "targeting_rules_not_met");
        assert_eq!(eval(doc.clone(), Some("user-3"), json!({"plan": "pro"})).1, "not_in_rollout");
        let mut off = doc.clone();
        off["enabled"] = json!(false);
        assert_eq!(eval(off, Some("u"), json!({})).1, "flag_disabled");
        // In the rollout (user-1 → bucket 28): Python's error, with its message.
        let f = flag(doc.clone());
        let context = ctx(json!({"plan": "pro"}));
        let input = EvalInput { user_id: Some("user-1"), context: &context, now: 0.0 };
        let r = Evaluator::new(input, &NoFlags).evaluate(&f);
        let error = r.error.expect("the split fails");
        assert_eq!((r.reason, error.code), (Reason::Error, ErrorCode::ParseError));
        assert_eq!(error.message, "Variant allocations must sum to 1.0, got 0.98");
        assert_eq!(oddities(doc).len(), 1);
    }

    #[test]
    fn allocations_are_summed_as_decimals() {
        // 0.33 × 3 is 0.99 exactly as Python's Decimals sum it (0.9900000000000001 in f64).
        let doc = json!({"key": "d", "enabled": true, "rollout_percentage": 100,
            "variants": [{"key": "a", "allocation": 0.33}, {"key": "b", "allocation": 0.33}, {"key": "c", "allocation": 0.33}]});
        assert_eq!(eval(doc.clone(), Some("u"), json!({})).1, "enabled");
        assert!(oddities(doc).is_empty());
        let doc = json!({"key": "d", "enabled": true, "rollout_percentage": 100,
            "variants": [{"key": "a", "allocation": 0.5}, {"key": "b", "allocation": 0.489}]});
        assert_eq!(eval(doc, Some("u"), json!({})).1, "error");
    }

    #[test]
    fn default_variant_naming_no_variant_is_served_where_python_served_it() {
        // The split lands on the empty key for everyone (it holds all the allocation).
        let doc = json!({"key": "d", "enabled": true, "rollout_percentage": 100,
            "variants": [{"key": "", "allocation": 1.0}, {"key": "b", "allocation": 0}], "default_variant": "legacy"});
        let (enabled, reason, variant, error) = eval(doc.clone(), Some("u"), json!({}));
        assert_eq!((enabled, reason, variant.as_deref(), error), (true, "enabled", Some("legacy"), None));
        assert_eq!(oddities(doc), ["default_variant `legacy` names no variant; it is served as a bare name"]);
        // A split that lands on a real key serves that key, never the bare name.
        let doc = json!({"key": "d", "enabled": true, "rollout_percentage": 100,
            "variants": [{"key": "b", "allocation": 1.0}], "default_variant": "legacy"});
        assert_eq!(eval(doc, Some("u"), json!({})).2.as_deref(), Some("b"));
        // Without variants an enabled user gets no variant, not `default_variant`.
        let doc = json!({"key": "d", "enabled": true, "rollout_percentage": 100, "default_variant": "legacy"});
        assert_eq!(eval(doc.clone(), Some("u"), json!({})).2, None);
        assert!(oddities(doc).is_empty());
    }

    #[test]
    fn in_is_substring_for_a_string_and_membership_for_a_list() {
        let doc = |value: Value| {
            json!({"key": "i", "enabled": true, "rollout_percentage": 100,
                "targeting_rules": [{"attribute": "c", "operator": "in", "value": value}]})
        };
        assert_eq!(eval(doc(json!("US,CA")), Some("u"), json!({"c": "CA"})).1, "enabled");
        assert_eq!(eval(doc(json!("US,CA")), Some("u"), json!({"c": "S,C"})).1, "enabled");
        assert_eq!(eval(doc(json!(["US", "CA"])), Some("u"), json!({"c": "S,C"})).1, "targeting_rules_not_met");
        assert_eq!(eval(doc(json!(["US", 2])), Some("u"), json!({"c": 2.0})).1, "enabled");
    }

    #[test]
    fn numbers_compare_exactly() {
        let doc = |op: &str, value: Value| {
            json!({"key": "n", "enabled": true, "rollout_percentage": 100,
                "targeting_rules": [{"attribute": "n", "operator": op, "value": value}]})
        };
        let big: Value = serde_json::from_str("9007199254740992").expect("number");
        let bigger: Value = serde_json::from_str("9007199254740993").expect("number");
        assert_eq!(eval(doc("greater_than", big.clone()), Some("u"), json!({"n": bigger})).1, "enabled");
        assert_eq!(
            eval(doc("equals", big.clone()), Some("u"), json!({"n": 9007199254740993u64})).1,
            "targeting_rules_not_met"
        );
        assert_eq!(eval(doc("less_than", json!(19.99)), Some("u"), json!({"n": 19.98})).1, "enabled");
        assert_eq!(eval(doc("equals", json!(19.99)), Some("u"), json!({"n": 19.99})).1, "enabled");
    }

    #[test]
    fn clean_documents_have_no_oddities() {
        let doc = json!({"key": "c", "enabled": true, "rollout_percentage": 10,
            "targeting_rules": [{"attribute": "a", "operator": "in", "value": ["x"]}],
            "variants": [{"key": "a", "allocation": 0.5}, {"key": "b", "allocation": 0.5}], "default_variant": "a"});
        assert!(oddities(doc).is_empty());
    }
}

/// Issue 11, finding 8: prerequisite validity is a property of the flag set — the same
/// for every user, alone, in a batch and in bulk, whatever was evaluated first.
mod prerequisite_graph {
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
}
