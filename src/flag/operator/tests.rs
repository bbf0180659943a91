//! Every operator compiles from its name, and a bad operand is named in the error.

use serde_json::{json, Value};

use crate::flag::{Clause, ClauseDoc};

fn doc(op: &str, value: Value) -> ClauseDoc {
    ClauseDoc { attribute: Some("a".into()), operator: Some(op.into()), value: Some(value), negate: None }
}

fn compile(op: &str, value: Value) -> Result<Clause, String> {
    Clause::compile(&doc(op, value))
}

#[test]
fn every_operator_name_compiles() {
    for (op, value) in [
        ("equals", json!(1)),
        ("not_equals", json!(1)),
        ("in", json!([1])),
        ("not_in", json!([1])),
        ("greater_than", json!(1)),
        ("less_than", json!(1)),
        ("greater_than_or_equal", json!(1)),
        ("less_than_or_equal", json!("a")),
        ("contains", json!("x")),
        ("not_contains", json!("x")),
        ("starts_with", json!("x")),
        ("ends_with", json!("x")),
        ("matches", json!("^x+$")),
        ("semver_equals", json!("1.2.3")),
        ("semver_greater_than", json!("v1.2")),
        ("semver_less_than", json!("2")),
        ("before", json!("2026-01-01T00:00:00Z")),
        ("after", json!(1_700_000_000)),
        ("exists", Value::Null),
        ("not_exists", Value::Null),
    ] {
        assert!(compile(op, value).is_ok(), "{op}");
    }
}

#[test]
fn bad_operands_name_the_problem() {
    let cases = [
        ("nope", json!(1), "unknown operator `nope`"),
        ("matches", json!("(unclosed"), "bad `matches` regex"),
        ("matches", json!(5), "`matches` needs a string value"),
        ("semver_equals", json!("one.two"), "semantic version"),
        ("before", json!("yesterday"), "RFC 3339"),
        ("starts_with", json!(["a"]), "needs a string"),
        ("contains", Value::Null, "needs a value"),
        ("greater_than_or_equal", json!(true), "number or string"),
    ];
    for (op, value, expected) in cases {
        let err = compile(op, value).expect_err(op);
        assert!(err.contains(expected), "{op}: {err}");
    }
}

#[test]
fn oversized_regex_is_rejected() {
    let err = compile("matches", json!("a".repeat(super::text::REGEX_MAX_PATTERN + 1))).expect_err("too long");
    assert!(err.contains("longer than"), "{err}");
    // Small pattern, huge program: bounded repetition of a Unicode class.
    let err = compile("matches", json!(r"\w{1000}\w{1000}")).expect_err("too big");
    assert!(err.contains("bad `matches` regex"), "{err}");
}

#[test]
fn python_operators_never_reject_odd_operands() {
    // Python accepted these items (they just never matched), so they still load.
    for op in ["equals", "in", "greater_than", "less_than"] {
        assert!(compile(op, json!({"a": [true]})).is_ok(), "{op}");
        assert!(compile(op, Value::Null).is_ok(), "{op}");
    }
}
