//! Compiled clauses: each operator's operand is checked and converted once (a regex is
//! compiled, a semver parsed, a list turned into a set), so matching is a lookup.

use regex::Regex;
use semver::Version;
use serde_json::Value;

use super::{ClauseDoc, Num};

/// Largest compiled `matches` program, in bytes. Keeps a hostile pattern from costing
/// memory or load time; the regex engine itself is linear-time.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Longest `matches` pattern accepted, in bytes.
const REGEX_MAX_PATTERN: usize = 4096;

/// One compiled clause.
#[derive(Debug)]
pub struct Clause {
    /// Top-level context key, looked up literally.
    pub(crate) attribute: Box<str>,
    /// The attribute is `now` and the operator `before`/`after`: an absent `now` is the
    /// evaluation time (for any other operator it is absent, as in Python).
    pub(crate) is_now: bool,
    /// The operator with its prepared operand.
    pub(crate) operator: Operator,
    /// Invert the operator's result (absent attributes still never match).
    pub(crate) negate: bool,
}

/// An operator with its operand prepared for matching.
#[derive(Debug)]
pub enum Operator {
    /// Python `==` on JSON values (`1 == 1.0`, `"1" != 1`, booleans only equal booleans).
    Equals(Value),
    /// Negation of `Equals`.
    NotEquals(Value),
    /// Python `in`: list membership, substring, or (for a map) key membership.
    In(Membership),
    /// Negation of `In`.
    NotIn(Membership),
    /// Number > number, or string > string by code point.
    GreaterThan(Ordinal),
    /// Number < number, or string < string by code point.
    LessThan(Ordinal),
    /// `>=` with the pairing rules of `GreaterThan`.
    GreaterThanOrEqual(Ordinal),
    /// `<=` with the pairing rules of `LessThan`.
    LessThanOrEqual(Ordinal),
    /// The attribute string contains the operand, or the attribute list has it.
    Contains(Value),
    /// Negation of `Contains`.
    NotContains(Value),
    /// String prefix.
    StartsWith(Box<str>),
    /// String suffix.
    EndsWith(Box<str>),
    /// Regular expression search (linear-time engine).
    Matches(Regex),
    /// Semantic version equality (build metadata ignored).
    SemverEquals(Version),
    /// Semantic version greater than.
    SemverGreaterThan(Version),
    /// Semantic version less than.
    SemverLessThan(Version),
    /// The attribute's time is before this instant (epoch seconds).
    Before(f64),
    /// The attribute's time is after this instant (epoch seconds).
    After(f64),
    /// The attribute is present (and not null).
    Exists,
    /// The attribute is absent (or null).
    NotExists,
    /// An operator the Python service did not know, or a clause without a string
    /// `attribute`: Python treated the rule as unmet, so it never matches (SPEC §1.1).
    Never,
}

/// The operand of `in`, prepared by its JSON type.
#[derive(Debug)]
pub enum Membership {
    /// A list: strings in a set, other members compared by Python `==`.
    List {
        /// String members.
        strings: StrSet,
        /// Non-string members.
        others: Box<[Value]>,
    },
    /// A string: substring test.
    Substring(Box<str>),
    /// A map: key membership (Python `x in dict`).
    Keys(StrSet),
    /// Anything else: Python raised, so it never matches.
    Nothing,
}

/// Strings to test membership in: a linear scan over the handful most clauses list
/// (cheaper than hashing the attribute), a foldhash set beyond that.
#[derive(Debug)]
pub enum StrSet {
    /// Up to [`StrSet::FEW`] strings.
    Few(Box<[Box<str>]>),
    /// More.
    Many(foldhash::HashSet<Box<str>>),
}

impl StrSet {
    /// Largest set scanned rather than hashed.
    pub const FEW: usize = 8;

    /// A set of `items` (duplicates allowed).
    pub fn new(items: Vec<Box<str>>) -> Self {
        if items.len() <= Self::FEW {
            StrSet::Few(items.into())
        } else {
            StrSet::Many(items.into_iter().collect())
        }
    }

    /// Whether `item` is in the set.
    pub fn contains(&self, item: &str) -> bool {
        match self {
            StrSet::Few(items) => items.iter().any(|i| **i == *item),
            StrSet::Many(set) => set.contains(item),
        }
    }
}

/// The operand of an ordering comparison.
#[derive(Debug)]
pub enum Ordinal {
    /// Compared with numbers, exactly.
    Number(Num),
    /// Compared with strings, by code point.
    Text(Box<str>),
    /// Any other type: never matches.
    Nothing,
}

impl Clause {
    /// Checks and compiles one clause of an extension field (`rules`): everything must be
    /// right, or the flag is malformed.
    pub fn compile(doc: &ClauseDoc) -> Result<Self, String> {
        let attribute = doc.attribute.as_deref().ok_or("`attribute` must be a string")?;
        let name = doc.operator.as_deref().ok_or("`operator` must be a string")?;
        let operator = compile_operator(name, operand(doc))?.ok_or_else(|| format!("unknown operator `{name}`"))?;
        Ok(Clause::new(attribute, operator, doc.negate.unwrap_or(false)))
    }

    /// Compiles one clause of Python's `targeting_rules` as the Python service read it
    /// (SPEC §1.1): a clause without a string `attribute`, or with an operator Python did
    /// not know, never matches, and comes back with the oddity to report. A bad operand
    /// of an extension operator is still an error.
    pub fn compile_python(doc: &ClauseDoc) -> Result<(Self, Option<String>), String> {
        let known = match doc.operator.as_deref() {
            Some(name) => compile_operator(name, operand(doc))?,
            None => None,
        };
        let (operator, oddity) = match (doc.attribute.as_deref(), known) {
            (Some(attribute), Some(operator)) => {
                return Ok((Clause::new(attribute, operator, doc.negate.unwrap_or(false)), None))
            }
            (None, _) => (Operator::Never, "has no string `attribute`; it never matches".to_owned()),
            (Some(_), None) => match doc.operator.as_deref() {
                Some(name) => (Operator::Never, format!("has an unknown operator `{name}`; it never matches")),
                None => (Operator::Never, "has no string `operator`; it never matches".to_owned()),
            },
        };
        // `negate` must not turn "never" into "always".
        Ok((Clause::new(doc.attribute.as_deref().unwrap_or_default(), operator, false), Some(oddity)))
    }

    fn new(attribute: &str, operator: Operator, negate: bool) -> Self {
        let is_now = attribute == "now" && matches!(operator, Operator::Before(_) | Operator::After(_));
        Clause { is_now, attribute: attribute.into(), operator, negate }
    }
}

/// A clause's operand; absent is `null`.
fn operand(doc: &ClauseDoc) -> Value {
    doc.value.clone().unwrap_or(Value::Null)
}

/// The operator `name` with its operand prepared; `Ok(None)` for a name that is not an
/// operator, `Err` for a known operator with an operand it cannot use.
fn compile_operator(name: &str, value: Value) -> Result<Option<Operator>, String> {
    use Operator::*;
    Ok(Some(match name {
        "equals" => Equals(value),
        "not_equals" => NotEquals(value),
        "in" => In(membership(value)),
        "not_in" => NotIn(membership(value)),
        "greater_than" => GreaterThan(ordinal(value)),
        "less_than" => LessThan(ordinal(value)),
        "greater_than_or_equal" => GreaterThanOrEqual(typed_ordinal(name, value)?),
        "less_than_or_equal" => LessThanOrEqual(typed_ordinal(name, value)?),
        "contains" => Contains(non_null(name, value)?),
        "not_contains" => NotContains(non_null(name, value)?),
        "starts_with" => StartsWith(string(name, value)?.into()),
        "ends_with" => EndsWith(string(name, value)?.into()),
        "matches" => Matches(regex(&string(name, value)?)?),
        "semver_equals" => SemverEquals(semver_operand(name, &value)?),
        "semver_greater_than" => SemverGreaterThan(semver_operand(name, &value)?),
        "semver_less_than" => SemverLessThan(semver_operand(name, &value)?),
        "before" => Before(time_operand(name, &value)?),
        "after" => After(time_operand(name, &value)?),
        "exists" => Exists,
        "not_exists" => NotExists,
        _ => return Ok(None),
    }))
}

fn membership(value: Value) -> Membership {
    match value {
        Value::Array(items) => {
            let mut strings = Vec::new();
            let mut others = Vec::new();
            for item in items {
                match item {
                    Value::String(s) => strings.push(s.into_boxed_str()),
                    other => others.push(other),
                }
            }
            Membership::List { strings: StrSet::new(strings), others: others.into() }
        }
        Value::String(s) => Membership::Substring(s.into()),
        Value::Object(map) => Membership::Keys(StrSet::new(map.into_iter().map(|(k, _)| k.into()).collect())),
        _ => Membership::Nothing,
    }
}

fn ordinal(value: Value) -> Ordinal {
    match value {
        Value::Number(n) => Num::of(&n).map_or(Ordinal::Nothing, Ordinal::Number),
        Value::String(s) => Ordinal::Text(s.into()),
        _ => Ordinal::Nothing,
    }
}

fn typed_ordinal(op: &str, value: Value) -> Result<Ordinal, String> {
    match ordinal(value) {
        Ordinal::Nothing => Err(format!("`{op}` needs a number or string value")),
        ok => Ok(ok),
    }
}

fn non_null(op: &str, value: Value) -> Result<Value, String> {
    if value.is_null() {
        Err(format!("`{op}` needs a value"))
    } else {
        Ok(value)
    }
}

fn string(op: &str, value: Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err(format!("`{op}` needs a string value")),
    }
}

fn regex(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > REGEX_MAX_PATTERN {
        return Err(format!("`matches` pattern longer than {REGEX_MAX_PATTERN} bytes"));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("bad `matches` regex: {e}"))
}

fn semver_operand(op: &str, value: &Value) -> Result<Version, String> {
    value.as_str().and_then(parse_semver).ok_or_else(|| format!("`{op}` needs a semantic version string, got {value}"))
}

fn time_operand(op: &str, value: &Value) -> Result<f64, String> {
    parse_time(value).ok_or_else(|| format!("`{op}` needs an RFC 3339 timestamp or epoch seconds, got {value}"))
}

/// Parses a version leniently: surrounding space and a leading `v` are ignored, and a
/// missing minor or patch counts as 0 (`"2"` is `2.0.0`, `"v1.4"` is `1.4.0`).
pub(crate) fn parse_semver(text: &str) -> Option<Version> {
    let text = text.trim();
    let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
    if let Ok(v) = Version::parse(text) {
        return Some(v);
    }
    let split = text.find(['-', '+']).unwrap_or(text.len());
    let (core, rest) = text.split_at(split);
    let padded = match core.matches('.').count() {
        0 => format!("{core}.0.0{rest}"),
        1 => format!("{core}.0{rest}"),
        _ => return None,
    };
    Version::parse(&padded).ok()
}

/// A time as epoch seconds: a JSON number, or a string holding an RFC 3339 timestamp
/// or a number.
pub(crate) fn parse_time(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
                return Some(t.unix_timestamp_nanos() as f64 / 1e9);
            }
            s.parse::<f64>().ok().filter(|v| v.is_finite())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let err = compile("matches", json!("a".repeat(REGEX_MAX_PATTERN + 1))).expect_err("too long");
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

    #[test]
    fn lenient_semver() {
        assert_eq!(parse_semver("v1.4"), Version::parse("1.4.0").ok());
        assert_eq!(parse_semver(" 2 "), Version::parse("2.0.0").ok());
        assert_eq!(parse_semver("1.2-beta.1"), Version::parse("1.2.0-beta.1").ok());
        assert_eq!(parse_semver("1.2.3.4"), None);
        assert_eq!(parse_semver("abc"), None);
    }

    #[test]
    fn times_parse_as_epoch_seconds() {
        assert_eq!(parse_time(&json!("1970-01-01T00:01:00Z")), Some(60.0));
        assert_eq!(parse_time(&json!("1970-01-01T01:00:00+01:00")), Some(0.0));
        assert_eq!(parse_time(&json!(1.5)), Some(1.5));
        assert_eq!(parse_time(&json!("90")), Some(90.0));
        assert_eq!(parse_time(&json!(true)), None);
        assert_eq!(parse_time(&json!("soon")), None);
    }
}

#[cfg(test)]
mod strset_tests {
    use super::StrSet;

    #[test]
    fn few_and_many_sets_agree() {
        for n in [0, 1, StrSet::FEW, StrSet::FEW + 1, 50] {
            let items: Vec<Box<str>> = (0..n).map(|i| format!("v{i}").into()).collect();
            let set = StrSet::new(items);
            assert_eq!(matches!(set, StrSet::Few(_)), n <= StrSet::FEW);
            for i in 0..n {
                assert!(set.contains(&format!("v{i}")), "{n}: v{i}");
            }
            assert!(!set.contains("v"), "{n}");
            assert!(!set.contains(&format!("v{n}")), "{n}");
        }
    }
}
