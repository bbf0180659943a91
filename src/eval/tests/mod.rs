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
    // Python, so a Python `greater_than` on `now` never sees the clock.
    assert!(!clause("now", "exists", Value::Null, false, json!({})));
    assert!(!clause("now", "greater_than", json!(0), false, json!({})));
    assert!(clause("now", "greater_than", json!(0), false, json!({"now": 1})));
}

#[test]
fn targeting_rules_never_match_an_empty_or_absent_context() {
    let doc = json!({"key": "t", "enabled": true, "rollout_percentage": 100,
        "targeting_rules": [{"attribute": "y", "operator": "less_than", "value": 2}]});
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
            json!({"key": "m", "rules": [{"id": "r", "clauses": [{"attribute": "a", "operator": "matches", "value": 5}], "serve": {}}]}),
            "rules[0].clauses[0]: `matches` needs a string value",
        ),
        (
            json!({"key": "m", "rules": [{"id": "r", "clauses": [{"attribute": "a", "operator": "exists", "negate": "yes"}], "serve": {}}]}),
            "rules[0].clauses[0]: `negate` must be a boolean",
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

mod batch;
mod prerequisites;
mod python_reading;
