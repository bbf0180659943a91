//! JSON Logic's JavaScript-flavoured coercions: truthiness, numbers, strings, equality.
//!
//! flagd's evaluators follow `json-logic-js`, whose operators inherit JavaScript's
//! loose rules (`"1" == 1`, `[]` is false); these functions are those rules, written once.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// JSON Logic truthiness: `false`, `null`, `0`, `""` and `[]` are false.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

/// JavaScript `Number(value)`; `None` is `NaN`.
pub fn to_number(value: &Value) -> Option<f64> {
    match value {
        Value::Null => Some(0.0),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                Some(0.0)
            } else {
                t.parse::<f64>().ok().filter(|f| f.is_finite())
            }
        }
        Value::Array(a) if a.is_empty() => Some(0.0),
        Value::Array(a) if a.len() == 1 => to_number(&a[0]),
        _ => None,
    }
}

/// A computed number as JSON: integral values within 2^53 as integers (so `1 + 1`
/// names variant `"2"`, as flagd renders it), `null` for `NaN` or infinity.
pub fn number_value(f: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if f.fract() == 0.0 && f.abs() <= EXACT {
        return Value::Number(Number::from(f as i64));
    }
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// JavaScript `String(value)`, as `cat` and `in` use it.
pub fn to_text(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e21 => out.push_str(&format!("{f:.0}")),
            (_, _, Some(f)) => out.push_str(&f.to_string()),
            _ => {}
        },
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if !item.is_null() {
                    to_text(item, out);
                }
            }
        }
        Value::Object(_) => out.push_str("[object Object]"),
    }
}

/// `===`: same JSON type and value (numbers compared as numbers).
pub fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// `==`: JavaScript abstract equality over JSON values.
pub fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(_), _) | (_, Value::Bool(_)) | (Value::Number(_), _) | (_, Value::Number(_)) => {
            match (to_number(a), to_number(b)) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            }
        }
        _ => a == b,
    }
}

/// `<` and friends: strings compare as strings, everything else as numbers; `None`
/// when either side is `NaN` (every comparison is then false).
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    if let (Value::String(x), Value::String(y)) = (a, b) {
        return Some(x.cmp(y));
    }
    to_number(a)?.partial_cmp(&to_number(b)?)
}
