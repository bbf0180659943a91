//! `equals`, `not_equals`, `contains`, `not_contains`: Python `==` on JSON values, and
//! containment built on it.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use crate::flag::Num;

/// The operand of `contains`: anything but `null`.
pub(super) fn needle(op: &str, value: Value) -> Result<Value, String> {
    if value.is_null() {
        Err(format!("`{op}` needs a value"))
    } else {
        Ok(value)
    }
}

/// Python `==` on JSON values: numbers by value across int/float, booleans only with
/// booleans, lists and maps structurally.
pub(super) fn json_eq(a: &Value, b: &Value) -> bool {
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
    // Exactly, as Python compared int with int and int with Decimal.
    matches!(Num::of(x).zip(Num::of(y)), Some((a, b)) if a.compare(b) == Some(Ordering::Equal))
}

/// The attribute string contains the needle string, or the attribute list has an
/// element `==` to the needle.
pub(super) fn contains(attr: &Value, needle: &Value) -> bool {
    match (attr, needle) {
        (Value::String(hay), Value::String(n)) => hay.contains(n.as_str()),
        (Value::Array(items), _) => items.iter().any(|item| json_eq(item, needle)),
        _ => false,
    }
}
