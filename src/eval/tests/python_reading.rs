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
    for (operator, negate) in [(json!("eq"), json!(false)), (json!("Equals"), json!(true)), (json!(3), json!(null))] {
        let doc = json!({"key": "t", "enabled": true, "rollout_percentage": 100,
            "targeting_rules": [{"attribute": "a", "operator": operator, "value": 1, "negate": negate}]});
        assert_eq!(eval(doc.clone(), Some("u"), json!({"a": 1})).1, "targeting_rules_not_met", "{doc}");
        assert_eq!(oddities(doc).len(), 1 + usize::from(!negate.is_null()));
    }
    let doc = json!({"key": "t", "targeting_rules": [{"attribute": "a", "operator": "eq"}]});
    assert_eq!(
        oddities(doc),
        ["targeting_rules[0] operator `eq` is not one Python knew: never matches in targeting_rules; \
          use `equals`, `in`, `greater_than` or `less_than`"]
    );
}

/// Python knew four operators in `targeting_rules`; the extension operators, which work
/// in `rules`, never match there, whatever their operand (a bad one included: Python
/// loaded the item) and whatever the context.
#[test]
fn an_extension_operator_in_targeting_rules_never_matches() {
    let cases = [
        ("exists", json!(null), json!({"plan": "pro"})),
        ("not_exists", json!(null), json!({"other": 1})),
        ("not_equals", json!("free"), json!({"plan": "pro"})),
        ("not_in", json!(["free"]), json!({"plan": "pro"})),
        ("contains", json!("r"), json!({"plan": "pro"})),
        ("starts_with", json!("p"), json!({"plan": "pro"})),
        ("matches", json!("^p"), json!({"plan": "pro"})),
        ("matches", json!("("), json!({"plan": "pro"})),
        ("greater_than_or_equal", json!(1), json!({"plan": 2})),
        ("semver_greater_than", json!("1.0.0"), json!({"plan": "2.0.0"})),
        ("after", json!(0), json!({"plan": 1})),
        ("after", json!(0), json!({})),
    ];
    for (operator, value, context) in cases {
        let attribute =
            if operator == "after" && context.as_object().is_some_and(|c| c.is_empty()) { "now" } else { "plan" };
        let doc = json!({"key": "x", "enabled": true, "rollout_percentage": 100,
            "targeting_rules": [{"attribute": attribute, "operator": operator, "value": value}]});
        assert_eq!(eval(doc.clone(), Some("u"), context.clone()).1, "targeting_rules_not_met", "{doc} {context}");
        assert!(flag(doc.clone()).body().is_ok(), "loadable, as Python loaded it: {doc}");
        assert_eq!(
            oddities(doc),
            [format!(
                "targeting_rules[0] operator `{operator}` is not one Python knew: never matches in targeting_rules; \
                 move this clause to `rules`"
            )]
        );
        // The same clause in `rules` (a valid operand) evaluates.
        if value != json!("(") && attribute == "plan" {
            let doc = json!({"key": "x", "enabled": true, "rollout_percentage": 0,
                "rules": [{"id": "r", "clauses": [{"attribute": "plan", "operator": operator, "value": value}], "serve": {}}]});
            assert_eq!(eval(doc.clone(), Some("u"), context).1, "rule_match", "{doc}");
        }
    }
}

/// Python never read `negate`: a `targeting_rules` clause is evaluated plainly, whatever
/// `negate` says (a non-boolean included).
#[test]
fn negate_is_ignored_in_targeting_rules() {
    for negate in [json!(true), json!(false), json!("yes"), json!(1)] {
        let doc = json!({"key": "n", "enabled": true, "rollout_percentage": 100,
            "targeting_rules": [{"attribute": "plan", "operator": "equals", "value": "pro", "negate": negate}]});
        assert_eq!(eval(doc.clone(), Some("u"), json!({"plan": "pro"})).1, "enabled", "{doc}");
        assert_eq!(eval(doc.clone(), Some("u"), json!({"plan": "free"})).1, "targeting_rules_not_met", "{doc}");
        assert_eq!(
            oddities(doc),
            ["targeting_rules[0] has `negate`, which Python never read: ignored in targeting_rules; \
              move this clause to `rules`"]
        );
    }
    // In `rules`, `negate` inverts.
    let doc = json!({"key": "n", "enabled": true, "rollout_percentage": 0,
        "rules": [{"id": "r", "clauses": [{"attribute": "plan", "operator": "equals", "value": "pro", "negate": true}], "serve": {}}]});
    assert_eq!(eval(doc.clone(), Some("u"), json!({"plan": "free"})).1, "rule_match");
    assert_eq!(eval(doc, Some("u"), json!({"plan": "pro"})).1, "not_in_rollout");
}

mod never_matching {
    use proptest::prelude::*;

    use super::*;

    /// Operator names that are not Python's four: every extension operator, case and
    /// spelling variants, and arbitrary text.
    fn foreign_operator() -> impl Strategy<Value = String> {
        const EXTENSIONS: &[&str] = &[
            "not_equals",
            "not_in",
            "greater_than_or_equal",
            "less_than_or_equal",
            "contains",
            "not_contains",
            "starts_with",
            "ends_with",
            "matches",
            "semver_equals",
            "semver_greater_than",
            "semver_less_than",
            "before",
            "after",
            "exists",
            "not_exists",
            "Equals",
            "IN",
            "greater than",
            "",
        ];
        prop_oneof![
            proptest::sample::select(EXTENSIONS).prop_map(str::to_owned),
            "[a-z_]{1,12}".prop_filter("not a Python operator", |s| {
                !matches!(s.as_str(), "equals" | "in" | "greater_than" | "less_than")
            }),
        ]
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-z0-9.^$()*:-]{0,8}".prop_map(Value::from),
        ]
    }

    fn operand() -> impl Strategy<Value = Value> {
        prop_oneof![scalar(), proptest::collection::vec(scalar(), 0..4).prop_map(Value::from)]
    }

    /// `negate` absent, a boolean, or something else.
    fn negate() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![Just(None), any::<bool>().prop_map(|b| Some(Value::from(b))), scalar().prop_map(Some)]
    }

    fn clause() -> impl Strategy<Value = Value> {
        ("[abn]|now", foreign_operator(), operand(), negate()).prop_map(|(attribute, operator, value, negate)| {
            let mut clause = json!({"attribute": attribute, "operator": operator, "value": value});
            if let Some(negate) = negate {
                clause["negate"] = negate;
            }
            clause
        })
    }

    fn context() -> impl Strategy<Value = Value> {
        proptest::collection::btree_map("[abn]|now|x", operand(), 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        /// Any `targeting_rules` list made only of operators Python did not know never
        /// matches, negated or not, in any context: the user is never eligible, and the
        /// item still loads (Python served it).
        #[test]
        fn only_foreign_operators_never_match(
            clauses in proptest::collection::vec(clause(), 1..4),
            context in context(),
            user in "[a-z0-9-]{1,12}",
        ) {
            let doc = json!({"key": "p", "enabled": true, "rollout_percentage": 100, "targeting_rules": clauses});
            prop_assert!(flag(doc.clone()).body().is_ok(), "loads: {}", doc);
            let (enabled, reason, _, error) = eval(doc.clone(), Some(&user), context.clone());
            prop_assert_eq!((enabled, reason, error), (false, "targeting_rules_not_met", None), "{} {}", doc, context);
        }
    }
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
