//! Python reading (docs/flag-format.md): items the Python service loaded answer as Python answered them, and say
//! what was read leniently.

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
