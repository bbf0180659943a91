//! What changes between two versions of a flag, field by field.
//!
//! Numbers compare by exact value, not by JSON spelling: `100` in a file equals `100.0`
//! as boto3 stored it, an integer equals a double only when the double is exactly that
//! integer, and two doubles only when they are the same double. So a table exported to
//! files diffs as unchanged, and no write is ever made for a change of spelling alone.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// One top-level field that differs. `None` means absent on that side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The top-level field.
    pub field: String,
    /// Its value before (the table), if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// Its value after (the files), if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// The changed top-level fields from `before` to `after` (either may be absent: a new
/// flag, a deleted one), in field-name order.
pub fn field_changes(before: Option<&Map<String, Value>>, after: Option<&Map<String, Value>>) -> Vec<FieldChange> {
    let empty = Map::new();
    let (before, after) = (before.unwrap_or(&empty), after.unwrap_or(&empty));
    let mut fields: Vec<&String> = before.keys().chain(after.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter_map(|field| {
            let (b, a) = (before.get(field), after.get(field));
            let same = match (b, a) {
                (Some(b), Some(a)) => same_value(b, a),
                (None, None) => true,
                _ => false,
            };
            (!same).then(|| FieldChange { field: field.clone(), before: b.cloned(), after: a.cloned() })
        })
        .collect()
}

/// Structural equality with numbers compared by exact value.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => same_number(x, y),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

fn same_number(x: &Number, y: &Number) -> bool {
    let int = |n: &Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    // A double equals an integer only when it is exactly that integer (|f| < 2^127 here).
    let float_is = |f: f64, i: i128| f.fract() == 0.0 && f.abs() < 1.7e38 && f as i128 == i;
    match (int(x), int(y)) {
        (Some(a), Some(b)) => a == b,
        (Some(a), None) => y.as_f64().is_some_and(|f| float_is(f, a)),
        (None, Some(b)) => x.as_f64().is_some_and(|f| float_is(f, b)),
        (None, None) => x.as_f64() == y.as_f64(),
    }
}

/// A value on one line, for diffs and history (`<absent>` for a missing side).
pub fn compact(value: Option<&Value>) -> String {
    match value {
        None => "<absent>".to_owned(),
        Some(v) => serde_json::to_string(v).unwrap_or_else(|_| "<unprintable>".to_owned()),
    }
}

/// Writes `changes` as indented lines: `~ field: before → after`, `+ field: value` for an
/// added field, `- field: value` for a removed one (`key` is left out: it is the heading).
pub fn render_changes(changes: &[FieldChange], out: &mut String) {
    // The key is in the heading of every change; it never changes itself.
    for change in changes.iter().filter(|c| c.field != "key") {
        let line = match (&change.before, &change.after) {
            (None, after) => format!("    + {}: {}\n", change.field, compact(after.as_ref())),
            (before, None) => format!("    - {}: {}\n", change.field, compact(before.as_ref())),
            (before, after) => {
                format!("    ~ {}: {} → {}\n", change.field, compact(before.as_ref()), compact(after.as_ref()))
            }
        };
        out.push_str(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn numbers_compare_by_value_not_spelling() {
        assert!(same_value(&json!(100), &json!(100.0)));
        assert!(same_value(&json!({"a": [0.5, 3]}), &json!({"a": [0.5, 3.0]})));
        assert!(!same_value(&json!(0.1), &json!(0.1000000000000001)));
        // 2^53 + 1 is not the double 2^53, though a cast through f64 would say it is.
        assert!(!same_value(&json!(9_007_199_254_740_993_u64), &json!(9_007_199_254_740_992.0)));
        assert!(same_value(&json!(9_007_199_254_740_992_u64), &json!(9_007_199_254_740_992.0)));
        assert!(!same_value(&json!(1), &json!(true)));
        assert!(!same_value(&json!(-1), &json!(18_446_744_073_709_551_615_u64)));
    }

    #[test]
    fn changes_are_per_field_with_both_sides() {
        let before = map(json!({"key": "f", "enabled": true, "rollout_percentage": 100.0, "bucket_by": "org"}));
        let after = map(json!({"key": "f", "enabled": false, "rollout_percentage": 100, "default_variant": "a"}));
        let changes = field_changes(Some(&before), Some(&after));
        let mut text = String::new();
        render_changes(&changes, &mut text);
        assert_eq!(text, "    - bucket_by: \"org\"\n    + default_variant: \"a\"\n    ~ enabled: true → false\n");
        assert_eq!(field_changes(Some(&before), Some(&before)), []);
        assert_eq!(field_changes(None, Some(&after)).len(), 4);
    }
}
