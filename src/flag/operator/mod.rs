//! Clause operators, one file per family. Each family prepares its operand once, when a
//! flag is compiled (a regex is compiled, a semver parsed, a list turned into a set), and
//! matches an attribute against it, so the two halves of an operator sit side by side and
//! a new operator is one file (or one arm in a family) plus its tests.
//!
//! Python semantics for the original four: `equals` is Python `==` on JSON values,
//! `in` is Python `in`, and the orderings only compare number with number or string
//! with string (any other pairing raised in Python; here it simply does not match).

mod equality;
mod membership;
mod ordering;
mod semver;
mod text;
mod time;

use regex::Regex;
use serde_json::Value;

pub use membership::{Membership, StrSet};
pub use ordering::Ordinal;
use time::parse_time;

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
    SemverEquals(::semver::Version),
    /// Semantic version greater than.
    SemverGreaterThan(::semver::Version),
    /// Semantic version less than.
    SemverLessThan(::semver::Version),
    /// The attribute's time is before this instant (epoch seconds).
    Before(f64),
    /// The attribute's time is after this instant (epoch seconds).
    After(f64),
    /// The attribute is present (and not null).
    Exists,
    /// The attribute is absent (or null).
    NotExists,
    /// An operator the Python service did not know, or a clause without a string
    /// `attribute`: Python treated the rule as unmet, so it never matches (docs/flag-format.md).
    Never,
}

impl Operator {
    /// The operator `name` with its operand prepared; `Ok(None)` for a name that is not
    /// an operator, `Err` for a known operator with an operand it cannot use.
    pub(crate) fn compile(name: &str, value: Value) -> Result<Option<Operator>, String> {
        use Operator::*;
        Ok(Some(match name {
            "equals" => Equals(value),
            "not_equals" => NotEquals(value),
            "contains" => Contains(equality::needle(name, value)?),
            "not_contains" => NotContains(equality::needle(name, value)?),
            "in" => In(Membership::of(value)),
            "not_in" => NotIn(Membership::of(value)),
            "greater_than" => GreaterThan(Ordinal::of(value)),
            "less_than" => LessThan(Ordinal::of(value)),
            "greater_than_or_equal" => GreaterThanOrEqual(Ordinal::typed(name, value)?),
            "less_than_or_equal" => LessThanOrEqual(Ordinal::typed(name, value)?),
            "starts_with" => StartsWith(text::string(name, value)?.into()),
            "ends_with" => EndsWith(text::string(name, value)?.into()),
            "matches" => Matches(text::regex(&text::string(name, value)?)?),
            "semver_equals" => SemverEquals(semver::operand(name, &value)?),
            "semver_greater_than" => SemverGreaterThan(semver::operand(name, &value)?),
            "semver_less_than" => SemverLessThan(semver::operand(name, &value)?),
            "before" => Before(time::operand(name, &value)?),
            "after" => After(time::operand(name, &value)?),
            "exists" => Exists,
            "not_exists" => NotExists,
            _ => return Ok(None),
        }))
    }

    /// Whether a present (non-null) attribute value satisfies the operator.
    pub(crate) fn matches(&self, attr: &Value) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        use Operator::*;
        match self {
            Equals(v) => equality::json_eq(attr, v),
            NotEquals(v) => !equality::json_eq(attr, v),
            Contains(v) => equality::contains(attr, v),
            NotContains(v) => !equality::contains(attr, v),
            In(m) => m.has(attr),
            NotIn(m) => !m.has(attr),
            GreaterThan(o) => o.compare(attr) == Some(Greater),
            LessThan(o) => o.compare(attr) == Some(Less),
            GreaterThanOrEqual(o) => matches!(o.compare(attr), Some(Greater | Equal)),
            LessThanOrEqual(o) => matches!(o.compare(attr), Some(Less | Equal)),
            StartsWith(s) => attr.as_str().is_some_and(|a| a.starts_with(&**s)),
            EndsWith(s) => attr.as_str().is_some_and(|a| a.ends_with(&**s)),
            Matches(re) => attr.as_str().is_some_and(|a| re.is_match(a)),
            SemverEquals(v) => semver::compare(attr, v) == Some(Equal),
            SemverGreaterThan(v) => semver::compare(attr, v) == Some(Greater),
            SemverLessThan(v) => semver::compare(attr, v) == Some(Less),
            Before(t) => parse_time(attr).is_some_and(|a| a < *t),
            After(t) => parse_time(attr).is_some_and(|a| a > *t),
            Exists => true,
            NotExists | Never => false,
        }
    }

    /// `before`/`after`: the operators for which an absent `now` means the evaluation time.
    pub(crate) fn is_time(&self) -> bool {
        matches!(self, Operator::Before(_) | Operator::After(_))
    }
}

#[cfg(test)]
mod tests;
