//! flagd's `sem_ver` operator: `[version, operator, version]`.
//!
//! Read as flagd's conformance suite expects: a `v`/`V` prefix is ignored, a partial
//! version (`1`, `1.2`, also as a JSON number) is padded with zeros, build metadata
//! never matters, and pre-releases order before their release. Anything else — a
//! malformed version, an unknown operator, the wrong number of arguments — answers
//! `null` (not `false`), so the flag falls back to its default variant.

use std::borrow::Cow;
use std::cmp::Ordering;

use semver::Version;
use serde_json::Value;

use super::logic::to_text;

/// `sem_ver` over its evaluated arguments.
pub fn evaluate(args: &[Cow<'_, Value>]) -> Value {
    let [left, operator, right] = args else { return Value::Null };
    let (Some(left), Some(right)) = (parse(left), parse(right)) else {
        return Value::Null;
    };
    let order = left.cmp_precedence(&right);
    let holds = match operator.as_str() {
        Some("=") => order == Ordering::Equal,
        Some("!=") => order != Ordering::Equal,
        Some("<") => order == Ordering::Less,
        Some("<=") => order != Ordering::Greater,
        Some(">") => order == Ordering::Greater,
        Some(">=") => order != Ordering::Less,
        Some("^") => left.major == right.major,
        Some("~") => left.major == right.major && left.minor == right.minor,
        _ => return Value::Null,
    };
    Value::Bool(holds)
}

/// A version from a string or number, lenient in flagd's ways only.
fn parse(value: &Value) -> Option<Version> {
    let mut text = String::new();
    match value {
        Value::String(_) | Value::Number(_) => to_text(value, &mut text),
        _ => return None,
    }
    let text = text.strip_prefix(['v', 'V']).unwrap_or(&text);
    let core_end = text.find(['-', '+']).unwrap_or(text.len());
    let (core, tail) = text.split_at(core_end);
    let padding = match core.split('.').count() {
        1 => ".0.0",
        2 => ".0",
        _ => "",
    };
    Version::parse(&format!("{core}{padding}{tail}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sem(v: Value, op: &str, w: &str) -> Value {
        evaluate(&[Cow::Owned(v), Cow::Owned(json!(op)), Cow::Owned(json!(w))])
    }

    #[test]
    fn lenient_in_flagds_ways_and_strict_otherwise() {
        assert_eq!(sem(json!("v1.0.0"), "=", "1.0.0"), json!(true));
        assert_eq!(sem(json!(1.2), ">", "1.1"), json!(true));
        assert_eq!(sem(json!("1.0.0+a"), "=", "1.0.0+b"), json!(true));
        assert_eq!(sem(json!("2.0.0-alpha"), "<", "2.0.0"), json!(true));
        assert_eq!(sem(json!("2.0.0.0"), "=", "2.0.0"), Value::Null);
        assert_eq!(sem(json!("1.0.0"), "===", "1.0.0"), Value::Null);
        assert_eq!(sem(json!(true), "=", "1.0.0"), Value::Null);
        assert_eq!(evaluate(&[Cow::Owned(json!("1.0.0")), Cow::Owned(json!("="))]), Value::Null);
    }
}
