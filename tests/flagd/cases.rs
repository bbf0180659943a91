//! The flagd-testbed evaluator scenarios (and the provider suite's `fractional` v3
//! examples) as tables: flag, context, the caller's fallback, and what the caller must
//! end with. Restated from the suite's facts in this project's own shape.

use serde_json::{json, Map, Value};

/// The type the caller asks for, as an OpenFeature client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Boolean,
    String,
    Integer,
    Float,
    Object,
}

impl Kind {
    /// Whether a served value is of this type.
    pub fn fits(self, value: &Value) -> bool {
        match self {
            Kind::Boolean => value.is_boolean(),
            Kind::String => value.is_string(),
            Kind::Integer => value.as_f64().is_some_and(|f| f.fract() == 0.0),
            Kind::Float => value.is_number(),
            Kind::Object => value.is_object(),
        }
    }
}

/// Which `fractional` bucketing the case runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucketing {
    V2,
    V3,
}

/// One scenario example.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub flag: &'static str,
    pub kind: Kind,
    pub fallback: Value,
    pub context: Map<String, Value>,
    pub value: Option<Value>,
    pub reason: Option<&'static str>,
    pub error: Option<&'static str>,
    /// `Some` when the scenario checks metadata (an empty object: "is empty").
    pub metadata: Option<Value>,
    /// The scenario checks the value only; any error code may come with it.
    pub any_error: bool,
    pub bucketing: Bucketing,
}

/// What a caller ends with, given what the evaluator served.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub value: Value,
    pub reason: String,
    pub error: Option<String>,
}

impl Case {
    fn new(name: &str, flag: &'static str, kind: Kind, fallback: Value) -> Case {
        Case {
            name: format!("{name}: {flag}"),
            flag,
            kind,
            fallback,
            context: Map::new(),
            value: None,
            reason: None,
            error: None,
            metadata: None,
            any_error: false,
            bucketing: Bucketing::V2,
        }
    }
    fn with(mut self, key: &str, value: Value) -> Case {
        self.name.push_str(&format!(" {key}={value}"));
        self.context.insert(key.into(), value);
        self
    }
    fn tk(self, key: &str) -> Case {
        self.with("targetingKey", json!(key))
    }
    fn user_name(self, name: &str) -> Case {
        self.with("user", json!({"name": name}))
    }
    fn gives(mut self, value: Value) -> Case {
        self.value = Some(value);
        self
    }
    fn reason(mut self, reason: &'static str) -> Case {
        self.reason = Some(reason);
        self
    }
    fn error(mut self, code: &'static str) -> Case {
        self.error = Some(code);
        self
    }
    fn v3(mut self) -> Case {
        self.bucketing = Bucketing::V3;
        self
    }

    /// The OpenFeature client's rule: an error, nothing served, or a value of another
    /// type leaves the caller with its fallback.
    pub fn finish(&self, served: Option<Value>, reason: &str, error: Option<&str>) -> Outcome {
        match (served, error) {
            (_, Some(code)) => {
                Outcome { value: self.fallback.clone(), reason: reason.into(), error: Some(code.into()) }
            }
            (Some(value), None) if !self.kind.fits(&value) => {
                Outcome { value: self.fallback.clone(), reason: "ERROR".into(), error: Some("TYPE_MISMATCH".into()) }
            }
            (Some(value), None) => Outcome { value, reason: reason.into(), error: None },
            (None, None) => Outcome { value: self.fallback.clone(), reason: reason.into(), error: None },
        }
    }

    /// Panics with the case's name when `got` departs from what the suite expects.
    pub fn check(&self, got: &Outcome, metadata: &Value) {
        let name = &self.name;
        if let Some(value) = &self.value {
            assert_eq!(&got.value, value, "{name}: value ({got:?})");
        }
        if let Some(reason) = self.reason {
            assert_eq!(got.reason, reason, "{name}: reason ({got:?})");
        }
        if !self.any_error {
            assert_eq!(got.error.as_deref(), self.error, "{name}: error code ({got:?})");
        }
        if let Some(expected) = &self.metadata {
            assert_eq!(metadata, expected, "{name}: metadata");
        }
    }
}

fn basic() -> Vec<Case> {
    use Kind::*;
    let mut cases = vec![
        Case::new("static value", "boolean-flag", Boolean, json!(false)).gives(json!(true)),
        Case::new("static value", "string-flag", String, json!("bye")).gives(json!("hi")),
        Case::new("static value", "integer-flag", Integer, json!(1)).gives(json!(10)),
        Case::new("static value", "float-flag", Float, json!(0.1)).gives(json!(0.5)),
        Case::new("static value", "object-flag", Object, json!({}))
            .gives(json!({"showImages": true, "title": "Check out these pics!", "imagesPerPage": 100})),
        Case::new("not found", "missing-flag", String, json!("uh-oh")).error("FLAG_NOT_FOUND"),
        Case::new("type mismatch", "wrong-flag", Integer, json!(13)).error("TYPE_MISMATCH"),
        // Precision: the value written is the value served, unrounded and unnarrowed.
        Case::new("precision", "large-integer-flag", Integer, json!(1)).gives(json!(2_147_483_647)).reason("STATIC"),
        Case::new("precision", "integral-float-flag", Float, json!(0.1)).gives(json!(10.0)).reason("STATIC"),
        Case::new("precision", "huge-integer-flag", Integer, json!(1))
            .gives(json!(9_007_199_254_740_991_u64))
            .reason("STATIC"),
    ];
    // Asked for as another type, a flag leaves the caller with its fallback and
    // TYPE_MISMATCH (no numeric coercion is asserted either way).
    for (flag, kind, fallback) in [
        ("boolean-flag", String, json!("fallback")),
        ("boolean-flag", Integer, json!(1)),
        ("boolean-flag", Float, json!(0.1)),
        ("string-flag", Boolean, json!(false)),
        ("string-flag", Integer, json!(1)),
        ("string-flag", Float, json!(0.1)),
        ("integer-flag", Boolean, json!(false)),
        ("integer-flag", String, json!("fallback")),
        ("float-flag", Boolean, json!(false)),
        ("float-flag", String, json!("fallback")),
    ] {
        cases.push(Case::new("type mismatch", flag, kind, fallback.clone()).gives(fallback).error("TYPE_MISMATCH"));
    }
    for (flag, kind, fallback) in [
        ("disabled-boolean-flag", Boolean, json!(false)),
        ("disabled-string-flag", String, json!("bye")),
        ("disabled-integer-flag", Integer, json!(1)),
        ("disabled-float-flag", Float, json!(0.1)),
        ("disabled-object-flag", Object, json!({})),
    ] {
        cases.push(Case::new("disabled", flag, kind, fallback.clone()).gives(fallback).reason("DISABLED"));
    }
    let zeros = [
        ("boolean", Boolean, json!(true), json!(false)),
        ("string", String, json!("hi"), json!("")),
        ("integer", Integer, json!(1), json!(0)),
        ("float", Float, json!(0.1), json!(0.0)),
    ];
    cases.push(Case::new("zero value", "object-zero-flag", Object, json!({"a": 1})).gives(json!({})).reason("STATIC"));
    for (kind_name, kind, fallback, zero) in zeros {
        let flag: &'static str = Box::leak(format!("{kind_name}-zero-flag").into_boxed_str());
        cases.push(Case::new("zero value", flag, kind, fallback.clone()).gives(zero.clone()).reason("STATIC"));
        let flag: &'static str = Box::leak(format!("{kind_name}-targeted-zero-flag").into_boxed_str());
        cases.push(
            Case::new("zero by targeting", flag, kind, fallback.clone())
                .with("email", json!("ballmer@macrosoft.com"))
                .gives(zero.clone())
                .reason("TARGETING_MATCH"),
        );
        cases.push(
            Case::new("zero by default", flag, kind, fallback)
                .with("email", json!("ballmer@none.com"))
                .gives(zero)
                .reason("DEFAULT"),
        );
    }
    cases
}

fn defaults_metadata_refs() -> Vec<Case> {
    use Kind::*;
    let mut cases = vec![
        Case::new("no default", "null-default-flag", Boolean, json!(true)).gives(json!(true)).reason("DEFAULT"),
        Case::new("no default", "null-default-flag", Boolean, json!(false)).gives(json!(false)).reason("DEFAULT"),
        Case::new("no default", "undefined-default-flag", Integer, json!(100)).gives(json!(100)).reason("DEFAULT"),
        Case::new("no default", "no-default-flag-null-targeting-variant", String, json!("Inventor"))
            .with("email", json!("wozniak@orange.com"))
            .gives(json!("Inventor"))
            .reason("DEFAULT"),
        Case::new("no default", "no-default-flag-null-targeting-variant", String, json!("CEO"))
            .with("email", json!("jobs@orange.com"))
            .gives(json!("CEO"))
            .reason("TARGETING_MATCH"),
        Case::new("no default", "no-default-flag-undefined-targeting-variant", String, json!("Retired"))
            .with("email", json!("wozniak@orange.com"))
            .gives(json!("Retired"))
            .reason("DEFAULT"),
    ];
    let mut with_metadata = Case::new("metadata", "metadata-flag", Boolean, json!(false));
    with_metadata.metadata = Some(json!({"string": "1.0.2", "integer": 2, "float": 0.1, "boolean": true}));
    cases.push(with_metadata);
    for (flag, kind, fallback) in [
        ("boolean-flag", Boolean, json!(true)),
        ("integer-flag", Integer, json!(23)),
        ("float-flag", Float, json!(2.3)),
        ("string-flag", String, json!("value")),
    ] {
        let mut case = Case::new("no metadata", flag, kind, fallback);
        case.metadata = Some(json!({}));
        cases.push(case);
    }
    for (flag, value) in [("some-email-targeted-flag", "hi"), ("some-other-email-targeted-flag", "yes")] {
        cases.push(
            Case::new("evaluator reuse", flag, String, json!("fallback"))
                .with("email", json!("ballmer@macrosoft.com"))
                .gives(json!(value)),
        );
    }
    for flag in [
        "ref-whitespace-compact-flag",
        "ref-whitespace-space-after-colon-flag",
        "ref-whitespace-space-around-colon-flag",
    ] {
        for (email, value) in [("ballmer@macrosoft.com", "hi"), ("user@example.com", "bye")] {
            cases.push(
                Case::new("$ref spacing", flag, String, json!("fallback"))
                    .with("email", json!(email))
                    .gives(json!(value))
                    .reason("TARGETING_MATCH"),
            );
        }
    }
    cases.push(
        Case::new("$ref to nothing", "ref-to-nonexistent-evaluator-flag", String, json!("fallback"))
            .gives(json!("fallback"))
            .error("PARSE_ERROR"),
    );
    for (key, value, reason) in [
        ("5c3d8535-f81a-4478-a6d3-afaa4d51199e", "hit", "TARGETING_MATCH"),
        ("f20bd32d-703b-48b6-bc8e-79d53c85134a", "miss", "DEFAULT"),
    ] {
        cases.push(
            Case::new("targeting key", "targeting-key-flag", String, json!("fallback"))
                .tk(key)
                .gives(json!(value))
                .reason(reason),
        );
    }
    cases
}

fn by_name(cases: &mut Vec<Case>, flag: &'static str, rows: &[(&str, &str)], v3: bool) {
    for (name, value) in rows {
        let case = Case::new("fractional", flag, Kind::String, json!("fallback")).user_name(name).gives(json!(value));
        cases.push(if v3 { case.v3() } else { case });
    }
}

fn fractional_v2() -> Vec<Case> {
    let s = Kind::String;
    let mut cases = Vec::new();
    let rows = [("jack", "hearts"), ("queen", "spades"), ("ten", "clubs"), ("nine", "diamonds"), ("3", "clubs")];
    by_name(&mut cases, "fractional-flag", &rows, false);
    let shared = [("seven", "hearts"), ("eight", "diamonds"), ("nine", "clubs"), ("two", "spades")];
    by_name(&mut cases, "fractional-flag-A-shared-seed", &shared, false);
    let aces =
        [("seven", "ace-of-hearts"), ("eight", "ace-of-diamonds"), ("nine", "ace-of-clubs"), ("two", "ace-of-spades")];
    by_name(&mut cases, "fractional-flag-B-shared-seed", &aces, false);
    for (key, value) in [("jon@company.com", "heads"), ("jane@company.com", "tails")] {
        cases.push(
            Case::new("shorthand", "fractional-flag-shorthand", s, json!("fallback")).tk(key).gives(json!(value)),
        );
    }
    cases.push(
        Case::new("single entry", "fractional-single-entry-flag", s, json!("fallback"))
            .tk("some-targeting-key")
            .gives(json!("single")),
    );
    for (key, value) in
        [("ejOoVL", "lower"), ("bY9fO-", "lower"), ("SI7p-", "lower"), ("6LvT0", "upper"), ("ceQdGm", "upper")]
    {
        cases.push(
            Case::new("hash edge", "fractional-hash-edge-flag", s, json!("fallback")).tk(key).gives(json!(value)),
        );
    }
    for (key, tier, value) in [
        ("jon@company.com", "premium", "premium"),
        ("jon@company.com", "basic", "standard"),
        ("user1", "premium", "standard"),
        ("user1", "basic", "standard"),
    ] {
        cases.push(
            Case::new("nested if name", "fractional-nested-if-flag", s, json!("fallback"))
                .tk(key)
                .with("tier", json!(tier))
                .gives(json!(value)),
        );
    }
    for (key, color, value) in [
        ("jon@company.com", "red", "red"),
        ("jon@company.com", "green", "green"),
        ("user1", "red", "blue"),
        ("jon@company.com", "yellow", "fallback"),
        ("jon@company.com", "", "fallback"),
    ] {
        // A bucket named by a context value that is no variant: the suite checks only
        // that the caller keeps its fallback (flagfn answers ERROR/GENERAL, as flagd does).
        let mut case = Case::new("nested var name", "fractional-nested-var-flag", s, json!("fallback"));
        case.any_error = value == "fallback";
        cases.push(case.tk(key).with("color", json!(color)).gives(json!(value)));
    }
    for (key, tier, value) in [
        ("jon@company.com", "premium", "red"),
        ("jon@company.com", "basic", "blue"),
        ("user1", "premium", "red"),
        ("user1", "basic", "blue"),
    ] {
        cases.push(
            Case::new("nested weight", "fractional-nested-weight-flag", s, json!("fallback"))
                .tk(key)
                .with("tier", json!(tier))
                .gives(json!(value)),
        );
    }
    cases.push(
        Case::new("as condition", "fractional-as-condition-flag", s, json!("zero"))
            .tk("some-targeting-key")
            .gives(json!("hundreds")),
    );
    cases.push(
        Case::new("as condition", "fractional-as-condition-false-flag", s, json!("zero"))
            .tk("some-targeting-key")
            .gives(json!("ones")),
    );
    cases.push(
        Case::new("no bucket key", "fractional-null-bucket-key-flag", s, json!("wrong"))
            .gives(json!("fallback"))
            .reason("DEFAULT"),
    );
    cases.push(
        Case::new("zero weights", "fractional-zero-weights-flag", s, json!("wrong"))
            .tk("any-user")
            .gives(json!("fallback"))
            .reason("DEFAULT"),
    );
    cases.push(
        Case::new("negative weight", "fractional-negative-weight-flag", s, json!("wrong"))
            .tk("any-user")
            .gives(json!("two")),
    );
    cases
}

fn fractional_v3() -> Vec<Case> {
    let mut cases = Vec::new();
    let rows = [("jack", "diamonds"), ("queen", "diamonds"), ("ten", "clubs"), ("nine", "clubs"), ("3", "spades")];
    by_name(&mut cases, "fractional-flag", &rows, true);
    let shared = [("seven", "hearts"), ("eight", "hearts"), ("nine", "diamonds"), ("two", "diamonds")];
    by_name(&mut cases, "fractional-flag-A-shared-seed", &shared, true);
    let aces = [
        ("seven", "ace-of-hearts"),
        ("eight", "ace-of-hearts"),
        ("nine", "ace-of-diamonds"),
        ("two", "ace-of-diamonds"),
    ];
    by_name(&mut cases, "fractional-flag-B-shared-seed", &aces, true);
    for key in ["jon@company.com", "jane@company.com"] {
        cases.push(
            Case::new("shorthand", "fractional-flag-shorthand", Kind::String, json!("fallback"))
                .tk(key)
                .gives(json!("tails"))
                .v3(),
        );
    }
    for (input, bucket) in v3_inputs() {
        let value = json!(format!("bucket{bucket}"));
        cases.push(
            Case::new("typed input", "fractional-basic-flag", Kind::String, json!("fallback"))
                .with("hashing_input", input)
                .gives(value)
                .v3(),
        );
    }
    cases
}

/// Bucketing values of every JSON type and the bucket (1–25) each lands in under v3.
fn v3_inputs() -> Vec<(Value, u32)> {
    let parse = |text: &str| serde_json::from_str::<Value>(text).expect("test JSON");
    let mut rows = vec![
        (json!(true), 5),
        (json!(false), 1),
        (json!("user1"), 22),
        (json!("user2"), 16),
        (json!(123), 20),
        (json!(456), 12),
        (json!(1.23), 14),
        (json!(4.56), 18),
        (json!("123"), 22),
        (json!("true"), 24),
        (json!("false"), 1),
        (json!("1.23"), 4),
        (json!(0), 8),
        (json!(0.0), 8),
        (json!(-0.0), 8),
        (json!("null"), 8),
    ];
    let numbers = [
        ("1.0", 23),
        ("1", 23),
        ("1.0000000000000001", 23),
        ("-2.0", 12),
        ("-2", 12),
        ("9007199254740992.0", 10),
        ("9007199254740992", 10),
        ("2147483647", 10),
        ("2147483648", 25),
        ("-2147483648", 8),
        ("-2147483649", 18),
        ("9007199254740991", 2),
        ("23", 21),
        ("24", 11),
        ("255", 13),
        ("256", 13),
        ("65535", 4),
        ("65536", 11),
        ("4294967295", 14),
        ("4294967296", 19),
        ("-24", 4),
        ("-25", 16),
        ("1e20", 19),
        ("-1e20", 25),
        ("65504.0", 16),
        ("-65504.0", 9),
        ("0.00006103515625", 22),
        ("0.000000059604644775390625", 23),
        ("65505.0", 17),
        ("-65505.0", 17),
        ("3.4028234663852886e+38", 10),
        ("-3.4028234663852886e+38", 3),
        ("1.1754943508222875e-38", 24),
        ("3.5e+38", 1),
        ("-3.5e+38", 6),
        ("1.7976931348623157e+308", 17),
        ("-1.7976931348623157e+308", 9),
        ("2.2250738585072014e-308", 11),
        ("4.9406564584124654e-324", 2),
    ];
    rows.extend(numbers.iter().map(|(text, bucket)| (parse(text), *bucket)));
    let objects = [
        (r#"{"a": 1, "b": 2}"#, 23),
        (r#"{"b": 2, "a": 1}"#, 23),
        (r#"{"a": 1, "b": 2, "c": 3}"#, 18),
        (r#"{"c": 3, "a": 1, "b": 2}"#, 18),
        (r#"{"z": 1, "aa": 2}"#, 21),
        (r#"{"aa": 2, "z": 1}"#, 21),
        (r#"{"a": {"b": 1}, "b": 2}"#, 9),
        (r#"{"b": 2, "a": {"b": 1}}"#, 9),
        (r#"{"a": true, "bbb": 1, "c": "text", "dddd": 2.5}"#, 25),
        (r#"{"c": "text", "bbb": 1, "a": true, "dddd": 2.5}"#, 25),
        (r#"{"aaa": 1, "ÿ": 2}"#, 12),
        (r#"{"ÿ": 2, "aaa": 1}"#, 12),
        (r#"{"": 2, "abc": 1}"#, 25),
        (r#"{"key": -0.0}"#, 10),
        (r#"{"key": 0}"#, 10),
        (r#"{"key": 0.0}"#, 10),
        (r#"{"b": -0.0, "a": {"b": 1}, "c": 0.0}"#, 8),
        (r#"{"c": 0.0, "b": -0.0, "a": {"b": 1}}"#, 8),
        (r#"{"café": "façade", "b": {"résumé": {"ÿ": true}}}"#, 22),
        ("{}", 3),
        (r#"{"a": {}}"#, 20),
        (r#"{"b": 2, "a": {}}"#, 20),
        (r#"{"a": {}, "b": {}}"#, 21),
        (r#"{"a": {}, "b": []}"#, 7),
        (r#"{"c": 0.0, "a": []}"#, 18),
        (r#"{"c": 0.0, "b": -0.0, "a": {"b": []}}"#, 9),
        (r#"{"a": []}"#, 12),
        (r#"{"a": [1, [], 3], "b": null}"#, 3),
        (r#"{"a": ["a", "b", {}], "b": [1, null, 2]}"#, 23),
        (r#"{"a": [1, "two", true, [], null]}"#, 23),
        (r#"{"a": [false, 2.5, ""], "b": [], "c": [{}], "c": null}"#, 15),
        (r#"{"x": [{"a": 1}, {"b": 2}, {"b": null}]}"#, 3),
        (r#"{"x": [{"a": {"b": []}}]}"#, 16),
        (r#"{"x": [{"a": {"b": null}}]}"#, 6),
        (r#"{"x": [{"a": {"b": {}}}]}"#, 2),
    ];
    rows.extend(objects.iter().map(|(text, bucket)| (parse(text), *bucket)));
    rows
}

fn operators() -> Vec<Case> {
    let s = Kind::String;
    let mut cases = Vec::new();
    let mut version = |flag: &'static str, fallback: &str, input: Value, value: &str| {
        cases.push(Case::new("sem_ver", flag, s, json!(fallback)).with("version", input).gives(json!(value)));
    };
    for (v, value) in
        [("2.0.0", "equal"), ("2.1.0", "greater"), ("1.9.0", "lesser"), ("2.0.0-alpha", "lesser"), ("2.0.0.0", "none")]
    {
        version("equal-greater-lesser-version-flag", "fallback", json!(v), value);
    }
    for (v, value) in [("3.0.1", "minor"), ("3.1.0", "major"), ("4.0.0", "none")] {
        version("major-minor-version-flag", "fallback", json!(v), value);
    }
    for (v, value) in [("1.0.0", "match"), ("v1.0.0", "match"), ("V1.0.0", "match"), ("2.0.0", "no-match")] {
        version("semver-v-prefix-flag", "fallback", json!(v), value);
    }
    for (v, value) in [
        (json!("1.5.0"), "match"),
        (json!("1.0.0"), "match"),
        (json!("1.0"), "match"),
        (json!("1"), "match"),
        (json!(1), "match"),
        (json!(1.0), "match"),
        (json!(1.2), "match"),
        (json!("2.0.0"), "no-match"),
    ] {
        version("semver-partial-version-flag", "fallback", v, value);
    }
    for (v, value) in [
        (json!(1.2), "match"),
        (json!(1.1), "no-match"),
        (json!(2), "match"),
        (json!(1), "no-match"),
        (json!("1.2"), "match"),
    ] {
        version("semver-numeric-context-flag", "fallback", v, value);
    }
    for (v, value) in [("1.0.0", "match"), ("1.0.0+other", "match"), ("2.0.0", "no-match")] {
        version("semver-build-metadata-flag", "fallback", json!(v), value);
    }
    for (flag, v) in [
        ("semver-invalid-version-flag", "not-a-version"),
        ("semver-invalid-operator-flag", "1.0.0"),
        ("semver-wrong-args-flag", "1.0.0"),
    ] {
        cases.push(
            Case::new("sem_ver null", flag, s, json!("wrong"))
                .with("version", json!(v))
                .gives(json!("fallback"))
                .reason("DEFAULT"),
        );
    }
    for (id, value) in [("abcdef", "prefix"), ("uvwxyz", "postfix"), ("abcxyz", "prefix"), ("lmnopq", "none")] {
        cases.push(
            Case::new("affixes", "starts-ends-flag", s, json!("fallback")).with("id", json!(id)).gives(json!(value)),
        );
    }
    for flag in ["starts-with-non-string-flag", "ends-with-non-string-flag"] {
        cases.push(
            Case::new("affix null", flag, s, json!("wrong"))
                .with("num", json!(123))
                .gives(json!("fallback"))
                .reason("DEFAULT"),
        );
    }
    for flag in ["starts-with-wrong-args-flag", "ends-with-wrong-args-flag"] {
        cases.push(Case::new("affix null", flag, s, json!("wrong")).gives(json!("fallback")).reason("DEFAULT"));
    }
    cases
}

/// Every case.
pub fn all() -> Vec<Case> {
    let mut cases = basic();
    cases.extend(defaults_metadata_refs());
    cases.extend(fractional_v2());
    cases.extend(fractional_v3());
    cases.extend(operators());
    cases
}
