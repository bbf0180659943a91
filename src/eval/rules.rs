//! Clause matching: the operators of SPEC §1 over a request context.
//!
//! Python semantics for the original four: `equals` is Python `==` on JSON values,
//! `in` is Python `in`, and the orderings only compare number with number or string
//! with string (any other pairing raised in Python; here it simply does not match).

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use super::Trace;
use crate::flag::{parse_semver, parse_time, Clause, Membership, Num, Operator, Ordinal};

/// Whether every clause matches (an empty list matches); each verdict is told to `trace`.
pub(crate) fn all_match(clauses: &[Clause], context: &Map<String, Value>, now: f64, trace: &impl Trace) -> bool {
    clauses.iter().all(|c| {
        let matched = clause_matches(c, context, now);
        trace.clause(c, matched);
        matched
    })
}

/// One clause. A missing (or `null`) attribute never matches, negated or not, except
/// for `exists`/`not_exists`; `now` defaults to the evaluation time.
pub(crate) fn clause_matches(clause: &Clause, context: &Map<String, Value>, now: f64) -> bool {
    let default_now;
    let attribute = match context.get(&*clause.attribute) {
        Some(v) if !v.is_null() => Some(v),
        _ if clause.is_now => {
            default_now = Value::from(now);
            Some(&default_now)
        }
        _ => None,
    };
    match attribute {
        Some(value) => operator_matches(&clause.operator, value) != clause.negate,
        None => match clause.operator {
            Operator::NotExists => !clause.negate,
            Operator::Exists => clause.negate,
            _ => false,
        },
    }
}

fn operator_matches(operator: &Operator, attr: &Value) -> bool {
    use Operator::*;
    match operator {
        Equals(v) => json_eq(attr, v),
        NotEquals(v) => !json_eq(attr, v),
        In(m) => member_of(attr, m),
        NotIn(m) => !member_of(attr, m),
        GreaterThan(o) => compare(attr, o) == Some(Ordering::Greater),
        LessThan(o) => compare(attr, o) == Some(Ordering::Less),
        GreaterThanOrEqual(o) => matches!(compare(attr, o), Some(Ordering::Greater | Ordering::Equal)),
        LessThanOrEqual(o) => matches!(compare(attr, o), Some(Ordering::Less | Ordering::Equal)),
        Contains(v) => contains(attr, v),
        NotContains(v) => !contains(attr, v),
        StartsWith(s) => attr.as_str().is_some_and(|a| a.starts_with(&**s)),
        EndsWith(s) => attr.as_str().is_some_and(|a| a.ends_with(&**s)),
        Matches(re) => attr.as_str().is_some_and(|a| re.is_match(a)),
        SemverEquals(v) => semver_cmp(attr, v) == Some(Ordering::Equal),
        SemverGreaterThan(v) => semver_cmp(attr, v) == Some(Ordering::Greater),
        SemverLessThan(v) => semver_cmp(attr, v) == Some(Ordering::Less),
        Before(t) => parse_time(attr).is_some_and(|a| a < *t),
        After(t) => parse_time(attr).is_some_and(|a| a > *t),
        Exists => true,
        NotExists => false,
        Never => false,
    }
}

/// Python `==` on JSON values: numbers by value across int/float, booleans only with
/// booleans, lists and maps structurally.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => number_eq(x, y),
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => false,
    }
}

fn number_eq(x: &Number, y: &Number) -> bool {
    // Exactly, as Python compared int with int and int with Decimal (SPEC §1.1).
    matches!(Num::of(x).zip(Num::of(y)), Some((a, b)) if a.compare(b) == Some(Ordering::Equal))
}

fn member_of(attr: &Value, set: &Membership) -> bool {
    match (set, attr) {
        (Membership::List { strings, .. }, Value::String(s)) => strings.contains(s.as_str()),
        (Membership::List { others, .. }, _) => others.iter().any(|o| json_eq(attr, o)),
        (Membership::Substring(hay), Value::String(s)) => hay.contains(s.as_str()),
        (Membership::Keys(keys), Value::String(s)) => keys.contains(s.as_str()),
        _ => false,
    }
}

fn compare(attr: &Value, operand: &Ordinal) -> Option<Ordering> {
    match (attr, operand) {
        (Value::Number(a), Ordinal::Number(b)) => Num::of(a)?.compare(*b),
        (Value::String(a), Ordinal::Text(b)) => Some(a.as_str().cmp(&**b)),
        _ => None,
    }
}

fn contains(attr: &Value, needle: &Value) -> bool {
    match (attr, needle) {
        (Value::String(hay), Value::String(n)) => hay.contains(n.as_str()),
        (Value::Array(items), _) => items.iter().any(|item| json_eq(item, needle)),
        _ => false,
    }
}

fn semver_cmp(attr: &Value, operand: &semver::Version) -> Option<Ordering> {
    Some(parse_semver(attr.as_str()?)?.cmp_precedence(operand))
}
