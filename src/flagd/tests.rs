//! The flagd evaluator's own rules and bounds (the conformance suite is in
//! `tests/flagd_evaluator.rs`).

use serde_json::{json, Map, Value};

use super::logic::eval::{MAX_BUILT_BYTES, MAX_BUILT_ITEMS, MAX_STEPS};
use super::logic::{MAX_DEPTH, MAX_NODES, MAX_REF_DEPTH};
use super::*;

fn answer(doc: Value, key: &str, context: Value) -> (Option<Value>, &'static str, Option<ErrorCode>, Value) {
    let set = parse_document(&doc).expect("a flagd document");
    let flag = set.get(key).expect("flag present");
    let context = context.as_object().cloned().unwrap_or_default();
    let input =
        FlagdInput { context: &context, targeting_key: Some("tk-1"), timestamp: 1_234, bucketing: Bucketing::V2 };
    let got = evaluate(flag, &input);
    (got.value.cloned(), got.reason.as_str(), got.error.map(|(c, _)| c), Value::Object(got.metadata.clone()))
}

fn targeted(targeting: Value) -> Value {
    json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": "A", "b": "B", "1234": "T", "tk-1": "K"},
                            "defaultVariant": "a", "targeting": targeting}}})
}

#[test]
fn context_is_enriched_with_flagd_properties_and_the_targeting_key() {
    let by_time = targeted(json!({"var": "$flagd.timestamp"}));
    assert_eq!(answer(by_time, "f", json!({})).0, Some(json!("T")));
    let by_key = targeted(json!({"if": [{"==": [{"var": "$flagd.flagKey"}, "f"]}, {"var": "targetingKey"}, "a"]}));
    assert_eq!(answer(by_key.clone(), "f", json!({})).0, Some(json!("K")));
    // The context's own targetingKey wins over the one sent beside it.
    assert_eq!(answer(by_key, "f", json!({"targetingKey": "b"})).0, Some(json!("B")));
}

#[test]
fn flag_set_metadata_is_merged_under_the_flags_own() {
    let doc = json!({"metadata": {"team": "web", "version": 1, "dropped": null},
                     "flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
                                     "metadata": {"version": 2}}}});
    assert_eq!(answer(doc, "f", json!({})).3, json!({"team": "web", "version": 2}));
}

#[test]
fn a_malformed_flag_answers_parse_error_and_leaves_the_others_alone() {
    let doc = json!({"flags": {
        "unknown-op": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a", "targeting": {"nope": [1]}},
        "bad-default": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "z"},
        "bad-state": {"state": "ON", "variants": {"a": 1}},
        "good": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"},
    }});
    for key in ["unknown-op", "bad-default", "bad-state"] {
        let (value, reason, error, _) = answer(doc.clone(), key, json!({}));
        assert_eq!((value, reason, error), (None, "ERROR", Some(ErrorCode::ParseError)), "{key}");
    }
    assert_eq!(answer(doc, "good", json!({})).1, "STATIC");
}

#[test]
fn a_targeting_result_that_names_no_variant_is_a_general_error() {
    for result in [json!("zzz"), json!(["a"]), json!({"a": 1, "b": 2})] {
        let (value, reason, error, _) = answer(targeted(json!({"if": [true, result]})), "f", json!({}));
        assert_eq!((value, reason, error), (None, "ERROR", Some(ErrorCode::General)));
    }
}

#[test]
fn a_flag_whose_shape_breaks_the_schema_is_malformed_alone() {
    let doc = json!({"flags": {
        "mixed": {"state": "ENABLED", "variants": {"on": true, "off": "false"}, "defaultVariant": "on"},
        "nested-metadata": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "metadata": {"team": {"a": 1}}},
        "good": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "metadata": {"team": "a"}}
    }});
    for key in ["mixed", "nested-metadata"] {
        let (value, reason, error, _) = answer(doc.clone(), key, json!({}));
        assert_eq!((value, reason, error), (None, "ERROR", Some(ErrorCode::ParseError)), "{key}");
    }
    assert_eq!(answer(doc, "good", json!({})).1, "STATIC");
}

#[test]
fn documents_that_are_not_flagd_are_refused_whole() {
    assert_eq!(parse_document(&json!({"flags": []})).err(), Some(DocumentError::Shape));
    assert_eq!(
        parse_document(&json!({"flags": {}, "$evaluators": 3})).err(),
        Some(DocumentError::NotAnObject("$evaluators"))
    );
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!("a"), |inner, _| json!({"if": [true, inner, "b"]}))
}

#[test]
fn bound_targeting_depth() {
    assert_eq!(answer(targeted(nested(MAX_DEPTH / 2)), "f", json!({})).0, Some(json!("A")));
    let (_, reason, error, _) = answer(targeted(nested(MAX_DEPTH + 1)), "f", json!({}));
    assert_eq!((reason, error), ("ERROR", Some(ErrorCode::ParseError)));
}

#[test]
fn bound_targeting_size_even_through_refs() {
    let wide = json!({"or": vec![json!(false); MAX_NODES + 1]});
    assert_eq!(answer(targeted(wide), "f", json!({})).2, Some(ErrorCode::ParseError));
    // Each level references the one below twice: 2^20 nodes if expanded, refused early.
    let mut evaluators = Map::new();
    evaluators.insert("e0".into(), json!(false));
    for i in 1..=20 {
        let below = format!("e{}", i - 1);
        evaluators.insert(format!("e{i}"), json!({"or": [{"$ref": below}, {"$ref": below}]}));
    }
    let mut doc = targeted(json!({"if": [{"$ref": "e20"}, "b", "a"]}));
    doc["$evaluators"] = Value::Object(evaluators);
    assert_eq!(answer(doc, "f", json!({})).2, Some(ErrorCode::ParseError));
}

#[test]
fn bound_ref_chains_and_cycles() {
    let mut doc = targeted(json!({"$ref": "loop"}));
    doc["$evaluators"] = json!({"loop": {"!": [{"$ref": "loop"}]}});
    assert_eq!(answer(doc, "f", json!({})).2, Some(ErrorCode::ParseError));
    let mut chain = Map::new();
    chain.insert("r0".into(), json!("b"));
    for i in 1..=MAX_REF_DEPTH + 1 {
        chain.insert(format!("r{i}"), json!({"$ref": format!("r{}", i - 1)}));
    }
    let mut doc = targeted(json!({"$ref": format!("r{}", MAX_REF_DEPTH + 1)}));
    doc["$evaluators"] = Value::Object(chain);
    assert_eq!(answer(doc, "f", json!({})).2, Some(ErrorCode::ParseError));
}

#[test]
fn bound_evaluation_steps() {
    // A small rule made expensive by the context: nested loops over a large array.
    let rule = json!({"if": [{"some": [{"var": "xs"}, {"some": [{"var": ""}, false]}]}, "b", "a"]});
    let row: Vec<Value> = (0..400).map(Value::from).collect();
    let xs = vec![Value::Array(row); 400];
    const { assert!(400 * 400 > MAX_STEPS) };
    let (value, reason, error, _) = answer(targeted(rule), "f", json!({ "xs": xs }));
    assert_eq!((value, reason, error), (None, "ERROR", Some(ErrorCode::General)));
}

#[test]
fn bound_built_strings() {
    // The accumulator doubles on every element: stopped at the string bound.
    let rule = json!({"reduce": [{"var": "xs"}, {"cat": [{"var": "accumulator"}, {"var": "accumulator"}]}, "ab"]});
    let xs: Vec<Value> = (0..64).map(Value::from).collect();
    const { assert!(64 > MAX_BUILT_BYTES.ilog2()) };
    let (_, _, error, _) = answer(targeted(rule), "f", json!({ "xs": xs }));
    assert_eq!(error, Some(ErrorCode::General));
}

#[test]
fn bound_built_arrays() {
    let rule = json!({"merge": [{"var": "xs"}, {"var": "xs"}]});
    let xs: Vec<Value> = (0..MAX_BUILT_ITEMS).map(Value::from).collect();
    let (_, _, error, _) = answer(targeted(rule), "f", json!({ "xs": xs }));
    assert_eq!(error, Some(ErrorCode::General));
}

#[test]
fn json_logic_basics_follow_json_logic_js() {
    let cases = [
        (json!({"==": [1, "1"]}), true),
        (json!({"===": [1, "1"]}), false),
        (json!({"!": [[]]}), true),
        (json!({"<": [1, 2, 3]}), true),
        (json!({"<=": [1, 1, 0]}), false),
        (json!({"in": ["b", "abc"]}), true),
        (json!({"in": ["b", ["a", "b"]]}), true),
        (json!({"==": [{"+": [1, "2"]}, 3]}), true),
        (json!({"==": [{"substr": ["flagd", -2]}, "gd"]}), true),
        (json!({"==": [{"cat": ["a", 1, true]}, "a1true"]}), true),
        (json!({"all": [[1, 2], {">": [{"var": ""}, 0]}]}), true),
        (json!({"none": [[], true]}), true),
        (json!({"in": ["y", {"missing": ["x", "y"]}]}), true),
        (json!({"in": ["x", {"missing": ["x", "y"]}]}), false),
        (json!({"missing_some": [1, ["x", "nope"]]}), false),
        (json!({"==": [{"var": ["nope", 7]}, 7]}), true),
        (json!({"==": [{"max": [1, 3, 2]}, 3]}), true),
        // Extreme numbers saturate instead of overflowing.
        (json!({"==": [{"substr": ["flagd", 1, 1e300]}, "lagd"]}), true),
        (json!({"==": [{"substr": ["flagd", -1e300, -1e300]}, ""]}), true),
        (json!({"==": [{"+": [1e308, 1e308]}, null]}), true),
    ];
    for (condition, expected) in cases {
        let rule = json!({"if": [condition.clone(), "b", "a"]});
        let want = if expected { "B" } else { "A" };
        assert_eq!(answer(targeted(rule), "f", json!({"x": 1})).0, Some(json!(want)), "{condition}");
    }
}

#[test]
fn explain_names_the_branch_and_the_bucket_under_the_bucketing_in_force() {
    let doc = json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": "A", "b": "B", "c": "C"}, "defaultVariant": "c",
        "targeting": {"if": [{"==": [{"var": "plan"}, "free"]}, "c", {"fractional": [["a", 50], ["b", 50]]}]}}}});
    let set = parse_document(&doc).expect("a flagd document");
    let flag = set.get("f").expect("present");
    let context = json!({"plan": "pro"}).as_object().cloned().unwrap_or_default();
    for bucketing in [Bucketing::V2, Bucketing::V3] {
        let input = FlagdInput { context: &context, targeting_key: Some("user-1"), timestamp: 0, bucketing };
        let text = explain(flag, &input);
        assert!(text.contains("if #1: condition is false -> not taken"), "{text}");
        assert!(text.contains("else:") && text.contains("of 100") && text.contains("<- chosen"), "{text}");
        assert!(text.contains(if bucketing == Bucketing::V2 { "\"fuser-1\"" } else { "bucketing v3" }), "{text}");
        let answer = evaluate(flag, &input);
        let chosen = format!("{:?} weight 50", answer.variant.unwrap_or_default());
        assert!(text.lines().any(|l| l.contains(&chosen) && l.ends_with("<- chosen")), "{text}");
    }
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    const OPERATORS: &[&str] = &[
        "var",
        "if",
        "and",
        "or",
        "==",
        "===",
        "!=",
        "!",
        "!!",
        "<",
        "<=",
        ">",
        "max",
        "+",
        "-",
        "*",
        "/",
        "%",
        "cat",
        "substr",
        "in",
        "merge",
        "missing",
        "missing_some",
        "map",
        "filter",
        "reduce",
        "all",
        "some",
        "none",
        "fractional",
        "sem_ver",
        "starts_with",
        "ends_with",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-c.]{0,4}".prop_map(Value::from),
            Just(json!("targetingKey")),
            Just(json!("$flagd.flagKey")),
        ]
    }

    /// JSON Logic-shaped values: mostly single-operator objects over any arguments.
    fn logic() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                (prop::sample::select(OPERATORS), prop::collection::vec(inner.clone(), 0..4))
                    .prop_map(|(op, args)| json!({ op: args })),
                (prop::sample::select(OPERATORS), inner).prop_map(|(op, arg)| json!({ op: arg })),
            ]
        })
    }

    fn context() -> impl Strategy<Value = Value> {
        prop::collection::btree_map("[a-c]{1,2}", logic(), 0..4).prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        #[test]
        fn any_targeting_over_any_context_answers_without_panicking(rule in logic(), ctx in context()) {
            for bucketing in [Bucketing::V2, Bucketing::V3] {
                let doc = json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "true": 2, "1": 3},
                                                  "defaultVariant": "a", "targeting": rule}}});
                let set = parse_document(&doc).expect("a flagd document");
                let flag = set.get("f").expect("present");
                let context = ctx.as_object().cloned().unwrap_or_default();
                let input = FlagdInput { context: &context, targeting_key: Some("tk"), timestamp: 1, bucketing };
                let answer = evaluate(flag, &input);
                prop_assert!(answer.error.is_some() || answer.value.is_some() || answer.reason == Reason::Default);
                let _ = explain(flag, &input);
            }
        }
    }
}
