//! `in`, `not_in`: Python's `in` — list membership, substring, or key of a map.

use serde_json::Value;

use super::equality::json_eq;

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

impl Membership {
    /// Prepares any JSON operand (Python accepted every one; most just never match).
    pub(super) fn of(value: Value) -> Self {
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

    /// Python `attr in operand`.
    pub(super) fn has(&self, attr: &Value) -> bool {
        match (self, attr) {
            (Membership::List { strings, .. }, Value::String(s)) => strings.contains(s.as_str()),
            (Membership::List { others, .. }, _) => others.iter().any(|o| json_eq(attr, o)),
            (Membership::Substring(hay), Value::String(s)) => hay.contains(s.as_str()),
            (Membership::Keys(keys), Value::String(s)) => keys.contains(s.as_str()),
            _ => false,
        }
    }
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

#[cfg(test)]
mod tests {
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
