//! The schema's own accept/reject cases, restated as facts about our checks.

use serde_json::{json, Value};

use super::{check_flag, check_set};

fn flag_with(targeting: Value) -> Value {
    json!({"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": "a", "targeting": targeting})
}

/// The pointers of every violation in flag `f`.
fn pointers(flag: &Value) -> Vec<String> {
    check_flag("f", flag).into_iter().map(|v| v.pointer).collect()
}

#[track_caller]
fn rejected_at(flag: Value, pointer: &str) {
    let found = pointers(&flag);
    assert!(found.iter().any(|p| p == pointer), "expected a violation at {pointer}, found {found:?}");
}

#[track_caller]
fn accepted(flag: Value) {
    let found = check_flag("f", &flag);
    assert!(found.is_empty(), "expected no violation, found {found:?}");
}

#[test]
fn flag_shape() {
    rejected_at(json!({"state": "ENABLED", "variants": {}, "defaultVariant": "a"}), "/flags/f/variants");
    rejected_at(json!({"state": "ENABLED", "defaultVariant": "a"}), "/flags/f/variants");
    rejected_at(json!({}), "/flags/f/state");
    rejected_at(json!({"state": "SOMETIMES", "variants": {"a": true}}), "/flags/f/state");
    rejected_at(json!({"state": "ENABLED", "variants": {"a": true, "b": "false"}}), "/flags/f/variants");
    rejected_at(json!({"state": "ENABLED", "variants": {"a": [1], "b": [2]}}), "/flags/f/variants/a");
    rejected_at(json!({"state": "ENABLED", "variants": {"a": true}, "defaultVariant": 1}), "/flags/f/defaultVariant");
    rejected_at(
        json!({"state": "ENABLED", "variants": {"a": true}, "metadata": {"team": {"x": 1}}}),
        "/flags/f/metadata/team",
    );
    rejected_at(json!("ENABLED"), "/flags/f");
    // Every variant type the schema names, a null or absent default, scalar metadata.
    for variants in [
        json!({"a": true, "b": false}),
        json!({"a": "x"}),
        json!({"a": 1, "b": 2.5}),
        json!({"a": {}, "b": {"k": [1]}}),
    ] {
        accepted(json!({"state": "DISABLED", "variants": variants}));
    }
    accepted(
        json!({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": null, "metadata": {"n": 1, "b": true, "s": "x"}}),
    );
}

#[test]
fn set_level() {
    let bad =
        json!({"flags": {"": {}}, "metadata": {"flagSetId": 7, "owner": ["x"]}, "$evaluators": {"e": {"nope": [1]}}});
    let found: Vec<String> = check_set(&bad).into_iter().map(|v| v.pointer).collect();
    for pointer in ["/flags", "/metadata/owner", "/metadata/flagSetId", "/$evaluators/e/nope"] {
        assert!(found.iter().any(|p| p == pointer), "{pointer} not in {found:?}");
    }
    assert!(check_set(&json!({"flags": {"f": {}}, "metadata": {"flagSetId": "s", "version": "1"}})).is_empty());
    assert_eq!(check_set(&json!({"flags": {}, "$evaluators": []}))[0].pointer, "/$evaluators");
}

#[test]
fn rules_the_schema_rejects() {
    rejected_at(flag_with(json!({"not-a-real-rule": [1, 2]})), "/flags/f/targeting/not-a-real-rule");
    rejected_at(flag_with(json!({"==": [1, 2], "!=": [1, 2]})), "/flags/f/targeting");
    rejected_at(flag_with(json!({"==": [1]})), "/flags/f/targeting/==");
    rejected_at(flag_with(json!({"<": [1, 2, 3, 4]})), "/flags/f/targeting/<");
    rejected_at(flag_with(json!({"*": [2]})), "/flags/f/targeting/*");
    rejected_at(flag_with(json!({"reduce": [[1], {"var": "current"}]})), "/flags/f/targeting/reduce");
    rejected_at(flag_with(json!({"missing": ["a", 1]})), "/flags/f/targeting/missing");
    rejected_at(flag_with(json!({"missing_some": [1, "a"]})), "/flags/f/targeting/missing_some/1");
    rejected_at(flag_with(json!({"var": 3})), "/flags/f/targeting/var");
    rejected_at(
        flag_with(json!({"if": [{"==": [{"var": "$flagd.invalidProp"}, 1]}, "a", "b"]})),
        "/flags/f/targeting/if/0/==/0/var",
    );
    // starts_with / ends_with compare with a string, not a number.
    rejected_at(
        flag_with(json!({"if": [{"starts_with": [{"var": "id"}, 0]}, "a", "b"]})),
        "/flags/f/targeting/if/0/starts_with/1",
    );
    rejected_at(
        flag_with(json!({"if": [{"ends_with": [{"var": "id"}, 0]}, "a", "b"]})),
        "/flags/f/targeting/if/0/ends_with/1",
    );
    // sem_ver: one of eight operators, full MAJOR.MINOR.PATCH literals.
    rejected_at(
        flag_with(json!({"if": [{"sem_ver": [{"var": "v"}, "*", "2.0.0"]}, "a", "b"]})),
        "/flags/f/targeting/if/0/sem_ver/1",
    );
    rejected_at(
        flag_with(json!({"if": [{"sem_ver": [{"var": "v"}, "=", "2.0.0.0"]}, "a", "b"]})),
        "/flags/f/targeting/if/0/sem_ver/2",
    );
    rejected_at(
        flag_with(json!({"if": [{"sem_ver": [{"var": "v"}, "=", "v2.0.0"]}, "a", "b"]})),
        "/flags/f/targeting/if/0/sem_ver/2",
    );
    // fractional: weights are non-negative integers, the bucketing value is a rule.
    rejected_at(flag_with(json!({"fractional": [["a", 25], ["b", 25.5]]})), "/flags/f/targeting/fractional/1/1");
    rejected_at(flag_with(json!({"fractional": [["a", 25], ["b", "25"]]})), "/flags/f/targeting/fractional/1/1");
    rejected_at(flag_with(json!({"fractional": [["a", 25], ["b", -25]]})), "/flags/f/targeting/fractional/1/1");
    rejected_at(flag_with(json!({"fractional": ["invalid", ["a", 25], ["b", 25]]})), "/flags/f/targeting/fractional/0");
    rejected_at(flag_with(json!({"fractional": [["a", 1, 2]]})), "/flags/f/targeting/fractional/0");
    rejected_at(flag_with(json!({"fractional": []})), "/flags/f/targeting/fractional");
    rejected_at(flag_with(json!("a")), "/flags/f/targeting");
    rejected_at(flag_with(json!({"$ref": 1})), "/flags/f/targeting/$ref");
}

#[test]
fn rules_the_schema_accepts() {
    let ops = json!({"*": [
        {"if": [false, "x", false, "y", true, "z"]}, {"if": [true, "yes", "no"]}, {"if": [true, "yes"]}, {"if": [true]},
        {"==": [1, 1]}, {"===": [1, 1]}, {"!=": [1, 2]}, {"!==": [1, 2]}, {"!": [true]}, {"!": true}, {"!!": ["0"]},
        {"or": [true, false]}, {"and": [true, "a", 3]}, {">": [2, 1]}, {">=": [1, 1]}, {"<": [1, 2]}, {"<=": [1, 2, 3]},
        {"max": [1, 2]}, {"min": [1, 2]}, {"+": ["3.14"]}, {"-": [2]}, {"/": [4, 2]}, {"%": [7, 2]},
        {"map": [{"var": "xs"}, {"*": [{"var": ""}, 2]}]}, {"filter": [{"var": "xs"}, {"%": [{"var": ""}, 2]}]},
        {"reduce": [{"var": "xs"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]},
        {"all": [[1, 2], {">": [{"var": ""}, 0]}]}, {"some": [[1], {">": [{"var": ""}, 0]}]}, {"none": [[-1], {">": [{"var": ""}, 0]}]},
        {"merge": [1, [2, 3]]}, {"in": ["b", ["a", "b"]]}, {"in": ["Spring", "Springfield"]}, {"cat": ["a", "b"]},
        {"substr": ["abc", 1]}, {"substr": ["abc", 1, 1]}, {"var": ["x", null]}, {"missing": ["a"]}, {"missing_some": [1, ["a", "b"]]}
    ]});
    accepted(flag_with(ops));
    let custom = json!({"*": [
        {"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "email"}]}, ["a", 25], ["b", 75]]},
        {"fractional": [["a"], ["b", 1]]},
        {"fractional": [["only", 1]]},
        {"fractional": [["a", {"-": [{"var": "$flagd.timestamp"}, 1740000000]}], ["b", 100]]},
        {"fractional": [["a", 1], [true, 1], [1, 1], [{"fractional": [["a", 1], ["b", 1]]}, 1]]},
        {"if": [{"starts_with": [{"var": "id"}, "abc"]}, "a", {"if": [{"ends_with": [{"var": "id"}, "xyz"]}, "b", null]}]},
        {"if": [{"sem_ver": [{"var": "version"}, "~", "3.0.0-rc.1+build.5"]}, "a", "b"]},
        {"if": [{">": [{"var": "$flagd.timestamp"}, {"var": "time"}]}, "a", "b"]},
        {"if": [{"$ref": "shared"}, "a", "b"]}
    ]});
    accepted(flag_with(custom));
    accepted(flag_with(json!({})));
    accepted(flag_with(Value::Null));
}
