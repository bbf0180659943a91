//! `before`, `after`: instants as epoch seconds, from RFC 3339 text or numbers.

use serde_json::Value;

/// A time operand.
pub(super) fn operand(op: &str, value: &Value) -> Result<f64, String> {
    parse_time(value).ok_or_else(|| format!("`{op}` needs an RFC 3339 timestamp or epoch seconds, got {value}"))
}

/// A time as epoch seconds: a JSON number, or a string holding an RFC 3339 timestamp
/// or a number.
pub(super) fn parse_time(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = ::time::OffsetDateTime::parse(s, &::time::format_description::well_known::Rfc3339) {
                return Some(t.unix_timestamp_nanos() as f64 / 1e9);
            }
            s.parse::<f64>().ok().filter(|v| v.is_finite())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
