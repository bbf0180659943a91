//! `greater_than`, `less_than`, `greater_than_or_equal`, `less_than_or_equal`: numbers
//! with numbers (exactly, across int and float), strings with strings by code point.

use std::cmp::Ordering;

use serde_json::Value;

use crate::flag::Num;

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

impl Ordinal {
    /// Any operand (Python's `greater_than`/`less_than` accepted every one).
    pub(super) fn of(value: Value) -> Self {
        match value {
            Value::Number(n) => Num::of(&n).map_or(Ordinal::Nothing, Ordinal::Number),
            Value::String(s) => Ordinal::Text(s.into()),
            _ => Ordinal::Nothing,
        }
    }

    /// A number or string operand (the extension operators `>=`/`<=` insist).
    pub(super) fn typed(op: &str, value: Value) -> Result<Self, String> {
        match Ordinal::of(value) {
            Ordinal::Nothing => Err(format!("`{op}` needs a number or string value")),
            ok => Ok(ok),
        }
    }

    /// How `attr` orders against the operand; `None` for a pairing that never matches.
    pub(super) fn compare(&self, attr: &Value) -> Option<Ordering> {
        match (attr, self) {
            (Value::Number(a), Ordinal::Number(b)) => Num::of(a)?.compare(*b),
            (Value::String(a), Ordinal::Text(b)) => Some(a.as_str().cmp(&**b)),
            _ => None,
        }
    }
}
