//! The flagd document the conformance cases run against.
//!
//! Every flag here states, in this project's own layout, a flag that the OpenFeature
//! flagd-testbed evaluator suite defines: same keys, variant values, weights, seeds and
//! rules (the facts its scenarios depend on), variant names of our own where no
//! scenario observes them.

use serde_json::{json, Map, Value};

/// Variants whose names are their values.
fn same(names: &[&str]) -> Value {
    Value::Object(names.iter().map(|n| ((*n).to_owned(), json!(n))).collect())
}

/// An enabled flag.
fn on(variants: Value, default: Option<&str>, targeting: Option<Value>) -> Value {
    let mut flag = Map::new();
    flag.insert("state".into(), json!("ENABLED"));
    flag.insert("variants".into(), variants);
    if let Some(default) = default {
        flag.insert("defaultVariant".into(), json!(default));
    }
    if let Some(targeting) = targeting {
        flag.insert("targeting".into(), targeting);
    }
    Value::Object(flag)
}

fn off(variants: Value, default: &str) -> Value {
    json!({"state": "DISABLED", "variants": variants, "defaultVariant": default})
}

/// `{"if": [condition, then, else]}`.
fn when(condition: Value, then: Value, otherwise: Value) -> Value {
    json!({"if": [condition, then, otherwise]})
}

fn semver(operator: &str, version: &str) -> Value {
    json!({"sem_ver": [{"var": "version"}, operator, version]})
}

/// Four equal suits over a bucketing expression.
fn suits(bucket_by: Value) -> Value {
    json!({"fractional": [bucket_by, ["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]})
}

fn pictures() -> Value {
    json!({"showImages": true, "title": "Check out these pics!", "imagesPerPage": 100})
}

fn basic_values(flags: &mut Map<String, Value>) {
    let f = flags;
    f.insert("boolean-flag".into(), on(json!({"yes": true, "no": false}), Some("yes"), None));
    f.insert("string-flag".into(), on(json!({"hello": "hi", "goodbye": "bye"}), Some("hello"), None));
    f.insert("integer-flag".into(), on(json!({"small": 1, "large": 10}), Some("large"), None));
    f.insert("float-flag".into(), on(json!({"tiny": 0.1, "mid": 0.5}), Some("mid"), None));
    f.insert("object-flag".into(), on(json!({"blank": {}, "gallery": pictures()}), Some("gallery"), None));
    f.insert("wrong-flag".into(), on(json!({"first": "uno", "second": "dos"}), Some("first"), None));
    f.insert("large-integer-flag".into(), on(json!({"max-int32": 2_147_483_647, "one": 1}), Some("max-int32"), None));
    f.insert("integral-float-flag".into(), on(json!({"ten": 10.0, "tenth": 0.1}), Some("ten"), None));
    f.insert(
        "huge-integer-flag".into(),
        on(json!({"max-safe": 9_007_199_254_740_991_u64, "one": 1}), Some("max-safe"), None),
    );
    f.insert("metadata-flag".into(), {
        let mut flag = on(json!({"yes": true, "no": false}), Some("yes"), None);
        flag["metadata"] = json!({"string": "1.0.2", "integer": 2, "float": 0.1, "boolean": true});
        flag
    });
    for (kind, value, other) in [
        ("boolean", json!(false), json!(true)),
        ("string", json!(""), json!("str")),
        ("integer", json!(0), json!(1)),
        ("float", json!(0.0), json!(1.0)),
        ("object", json!({}), pictures()),
    ] {
        let variants = json!({"zero": value, "nonzero": other});
        f.insert(format!("{kind}-zero-flag"), on(variants.clone(), Some("zero"), None));
        if kind != "object" {
            let targeting = json!({"if": [{"$ref": "is_ballmer"}, "zero"]});
            f.insert(format!("{kind}-targeted-zero-flag"), on(variants, Some("zero"), Some(targeting)));
        }
    }
    f.insert("disabled-boolean-flag".into(), off(json!({"yes": true, "no": false}), "yes"));
    f.insert("disabled-string-flag".into(), off(json!({"hello": "hi", "goodbye": "bye"}), "hello"));
    f.insert("disabled-integer-flag".into(), off(json!({"small": 1, "large": 10}), "large"));
    f.insert("disabled-float-flag".into(), off(json!({"tiny": 0.1, "mid": 0.5}), "mid"));
    f.insert("disabled-object-flag".into(), off(json!({"blank": {}, "gallery": pictures()}), "gallery"));
}

fn defaults_and_refs(f: &mut Map<String, Value>) {
    let mut null_default = on(json!({"yes": true, "no": false}), None, None);
    null_default["defaultVariant"] = Value::Null;
    f.insert("null-default-flag".into(), null_default);
    f.insert("undefined-default-flag".into(), on(json!({"small": 10, "big": 1000}), None, None));
    let is_jobs = json!({"==": ["jobs@orange.com", {"var": ["email"]}]});
    let officers = json!({"normal": "CFO", "special": "CEO"});
    f.insert(
        "no-default-flag-null-targeting-variant".into(),
        on(officers.clone(), None, Some(when(is_jobs.clone(), json!("special"), Value::Null))),
    );
    f.insert(
        "no-default-flag-undefined-targeting-variant".into(),
        on(officers, None, Some(json!({"if": [is_jobs, "special"]}))),
    );
    let ballmer = json!({"$ref": "is_ballmer"});
    f.insert(
        "some-email-targeted-flag".into(),
        on(same(&["hi", "bye", "none"]), Some("none"), Some(when(ballmer.clone(), json!("hi"), json!("bye")))),
    );
    f.insert(
        "some-other-email-targeted-flag".into(),
        on(same(&["yes", "no", "none"]), Some("none"), Some(when(ballmer, json!("yes"), json!("no")))),
    );
    // The same `$ref` written with three spacings around its colon: read as JSON text.
    for (key, reference) in [
        ("ref-whitespace-compact-flag", r#"{"$ref":"is_ballmer"}"#),
        ("ref-whitespace-space-after-colon-flag", r#"{"$ref": "is_ballmer"}"#),
        ("ref-whitespace-space-around-colon-flag", r#"{"$ref" : "is_ballmer"}"#),
    ] {
        let condition: Value = serde_json::from_str(reference).expect("test JSON");
        let targeting = when(condition, json!("hi"), json!("bye"));
        f.insert(key.into(), on(same(&["hi", "bye", "fallback"]), Some("fallback"), Some(targeting)));
    }
    f.insert(
        "ref-to-nonexistent-evaluator-flag".into(),
        on(
            same(&["hit", "miss", "fallback"]),
            Some("fallback"),
            Some(when(json!({"$ref": "no_such_evaluator"}), json!("hit"), json!("miss"))),
        ),
    );
    let target = json!({"==": [{"var": "targetingKey"}, "5c3d8535-f81a-4478-a6d3-afaa4d51199e"]});
    f.insert(
        "targeting-key-flag".into(),
        on(same(&["miss", "hit"]), Some("miss"), Some(when(target, json!("hit"), Value::Null))),
    );
}

fn fractional(f: &mut Map<String, Value>) {
    let cards = || same(&["clubs", "diamonds", "hearts", "spades", "wild"]);
    let by_key_and_name = json!({"cat": [{"var": "$flagd.flagKey"}, {"var": "user.name"}]});
    let shared = json!({"cat": ["shared-seed", {"var": "user.name"}]});
    f.insert("fractional-flag".into(), on(cards(), Some("wild"), Some(suits(by_key_and_name))));
    f.insert("fractional-flag-A-shared-seed".into(), on(cards(), Some("wild"), Some(suits(shared.clone()))));
    let aces = json!({"clubs": "ace-of-clubs", "diamonds": "ace-of-diamonds", "hearts": "ace-of-hearts",
                      "spades": "ace-of-spades", "wild": "wild"});
    f.insert("fractional-flag-B-shared-seed".into(), on(aces, Some("wild"), Some(suits(shared))));
    f.insert(
        "fractional-flag-shorthand".into(),
        on(same(&["heads", "tails", "draw"]), Some("draw"), Some(json!({"fractional": [["heads"], ["tails", 1]]}))),
    );
    f.insert(
        "fractional-single-entry-flag".into(),
        on(same(&["single", "fallback"]), Some("fallback"), Some(json!({"fractional": [["single", 1]]}))),
    );
    let tk = json!({"var": "targetingKey"});
    let halves = |first: Value, second: Value| json!({"fractional": [tk, first, second]});
    f.insert(
        "fractional-hash-edge-flag".into(),
        on(same(&["lower", "upper"]), Some("lower"), Some(halves(json!(["lower", 50]), json!(["upper", 50])))),
    );
    let premium = json!({"==": [{"var": "tier"}, "premium"]});
    f.insert(
        "fractional-nested-if-flag".into(),
        on(
            same(&["premium", "standard", "fallback"]),
            Some("fallback"),
            Some(halves(
                json!([when(premium.clone(), json!("premium"), json!("standard")), 50]),
                json!(["standard", 50]),
            )),
        ),
    );
    f.insert(
        "fractional-nested-var-flag".into(),
        on(
            same(&["red", "green", "blue", "fallback"]),
            Some("fallback"),
            Some(halves(json!([{"var": "color"}, 50]), json!(["blue", 50]))),
        ),
    );
    f.insert(
        "fractional-nested-weight-flag".into(),
        on(
            same(&["red", "blue", "fallback"]),
            Some("fallback"),
            Some(halves(json!(["red", when(premium, json!(100), json!(0))]), json!(["blue", 10]))),
        ),
    );
    let sizes = json!({"big": "hundreds", "small": "ones", "fallback": "zero"});
    for (key, false_weight, true_weight) in
        [("fractional-as-condition-flag", 0, 100), ("fractional-as-condition-false-flag", 100, 0)]
    {
        let condition = json!({"fractional": [[false, false_weight], [true, true_weight]]});
        f.insert(key.into(), on(sizes.clone(), Some("fallback"), Some(when(condition, json!("big"), json!("small")))));
    }
    let one_two = || same(&["one", "two", "fallback"]);
    let split = |by: Value, a: i64, b: i64| json!({"fractional": [by, ["one", a], ["two", b]]});
    f.insert(
        "fractional-null-bucket-key-flag".into(),
        on(one_two(), Some("fallback"), Some(split(json!({"var": "missing_key"}), 50, 50))),
    );
    f.insert("fractional-zero-weights-flag".into(), on(one_two(), Some("fallback"), Some(split(tk.clone(), 0, 0))));
    f.insert("fractional-negative-weight-flag".into(), on(one_two(), Some("fallback"), Some(split(tk, -50, 100))));
    // 25 buckets of weight 4 over a context value of any type (the v3 bucketing cases).
    let names: Vec<String> = (1..=25).map(|i| format!("bucket{i}")).collect();
    let mut entries = vec![json!({"var": "hashing_input"})];
    entries.extend(names.iter().map(|n| json!([n, 4])));
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.push("fallback");
    f.insert("fractional-basic-flag".into(), on(same(&all), Some("fallback"), Some(json!({"fractional": entries}))));
}

fn operators(f: &mut Map<String, Value>) {
    let verdicts = || same(&["match", "no-match"]);
    let decide = |rule: Value| when(rule, json!("match"), json!("no-match"));
    let ladder = when(
        semver("=", "2.0.0"),
        json!("equal"),
        when(semver(">", "2.0.0"), json!("greater"), when(semver("<", "2.0.0"), json!("lesser"), json!("none"))),
    );
    f.insert(
        "equal-greater-lesser-version-flag".into(),
        on(same(&["equal", "greater", "lesser", "none"]), Some("none"), Some(ladder)),
    );
    let range = when(semver("~", "3.0.0"), json!("minor"), when(semver("^", "3.0.0"), json!("major"), json!("none")));
    f.insert("major-minor-version-flag".into(), on(same(&["minor", "major", "none"]), Some("none"), Some(range)));
    f.insert("semver-v-prefix-flag".into(), on(verdicts(), Some("no-match"), Some(decide(semver("=", "v1.0.0")))));
    f.insert("semver-partial-version-flag".into(), on(verdicts(), Some("no-match"), Some(decide(semver("^", "1")))));
    f.insert(
        "semver-build-metadata-flag".into(),
        on(verdicts(), Some("no-match"), Some(decide(semver("=", "1.0.0+build")))),
    );
    f.insert("semver-numeric-context-flag".into(), on(verdicts(), Some("no-match"), Some(decide(semver(">", "1.1")))));
    let bare = |rule: Value| on(same(&["true", "false", "fallback"]), Some("fallback"), Some(rule));
    f.insert("semver-invalid-version-flag".into(), bare(semver("=", "1.0.0")));
    f.insert("semver-invalid-operator-flag".into(), bare(semver("===", "1.0.0")));
    f.insert("semver-wrong-args-flag".into(), bare(json!({"sem_ver": [{"var": "version"}, "="]})));
    let affixes = when(
        json!({"starts_with": [{"var": "id"}, "abc"]}),
        json!("prefix"),
        when(json!({"ends_with": [{"var": "id"}, "xyz"]}), json!("postfix"), json!("none")),
    );
    f.insert("starts-ends-flag".into(), on(same(&["prefix", "postfix", "none"]), Some("none"), Some(affixes)));
    f.insert("starts-with-non-string-flag".into(), bare(json!({"starts_with": [{"var": "num"}, "abc"]})));
    f.insert("ends-with-non-string-flag".into(), bare(json!({"ends_with": [{"var": "num"}, "xyz"]})));
    f.insert("starts-with-wrong-args-flag".into(), bare(json!({"starts_with": ["abc"]})));
    f.insert("ends-with-wrong-args-flag".into(), bare(json!({"ends_with": ["xyz"]})));
}

/// The whole document.
pub fn document() -> Value {
    let mut flags = Map::new();
    basic_values(&mut flags);
    defaults_and_refs(&mut flags);
    fractional(&mut flags);
    operators(&mut flags);
    json!({
        "$evaluators": {"is_ballmer": {"==": [{"var": ["email"]}, "ballmer@macrosoft.com"]}},
        "flags": flags,
    })
}
