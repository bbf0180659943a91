//! The embedded-metric-format specification's rules, as a checker: the tests run every
//! line flagfn emits through it, and it can check lines captured from a real log.

use serde_json::Value;

use super::emf::{MAX_DIMENSION_KEYS, MAX_DIMENSION_SETS, MAX_METRICS_PER_DIRECTIVE};

/// The units CloudWatch accepts (`MetricDatum.Unit`).
pub const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Checks one line against the specification; `Err` says which rule it breaks.
pub fn validate(line: &str) -> Result<(), String> {
    let root: Value = serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let root = root.as_object().ok_or("the root is not an object")?;
    let aws = root.get("_aws").and_then(Value::as_object).ok_or("no `_aws` object")?;
    let timestamp = aws.get("Timestamp").ok_or("no `_aws.Timestamp`")?;
    if !timestamp.is_u64() {
        return Err("`_aws.Timestamp` is not a non-negative integer (ms since the epoch)".into());
    }
    let directives = aws.get("CloudWatchMetrics").and_then(Value::as_array).ok_or("no `CloudWatchMetrics` array")?;
    if directives.is_empty() {
        return Err("`CloudWatchMetrics` is empty".into());
    }
    directives.iter().try_for_each(|d| directive(d, root))
}

fn directive(directive: &Value, root: &serde_json::Map<String, Value>) -> Result<(), String> {
    let directive = directive.as_object().ok_or("a directive is not an object")?;
    let namespace = directive.get("Namespace").and_then(Value::as_str).ok_or("no `Namespace` string")?;
    if namespace.is_empty() || namespace.len() > 255 {
        return Err(format!("namespace {namespace:?} is not 1-255 characters"));
    }
    let sets = directive.get("Dimensions").and_then(Value::as_array).ok_or("no `Dimensions` array")?;
    if sets.len() > MAX_DIMENSION_SETS {
        return Err(format!("{} dimension sets (most {MAX_DIMENSION_SETS})", sets.len()));
    }
    for set in sets {
        let keys = set.as_array().ok_or("a dimension set is not an array")?;
        if keys.len() > MAX_DIMENSION_KEYS {
            return Err(format!("a dimension set has {} keys (most {MAX_DIMENSION_KEYS})", keys.len()));
        }
        for key in keys {
            let key = key.as_str().ok_or("a dimension key is not a string")?;
            match root.get(key) {
                Some(Value::String(value)) if !value.is_empty() && value.len() <= 1024 => {}
                _ => return Err(format!("dimension {key:?} has no 1-1024 character string value")),
            }
        }
    }
    let metrics = directive.get("Metrics").and_then(Value::as_array).ok_or("no `Metrics` array")?;
    if metrics.is_empty() || metrics.len() > MAX_METRICS_PER_DIRECTIVE {
        return Err(format!("{} metrics (1 to {MAX_METRICS_PER_DIRECTIVE})", metrics.len()));
    }
    metrics.iter().try_for_each(|m| metric(m, root))
}

fn metric(metric: &Value, root: &serde_json::Map<String, Value>) -> Result<(), String> {
    let metric = metric.as_object().ok_or("a metric definition is not an object")?;
    let name = metric.get("Name").and_then(Value::as_str).ok_or("a metric has no `Name` string")?;
    if name.is_empty() || name.len() > 1024 {
        return Err(format!("metric name {name:?} is not 1-1024 characters"));
    }
    if let Some(unit) = metric.get("Unit") {
        if !unit.as_str().is_some_and(|u| UNITS.contains(&u)) {
            return Err(format!("metric {name:?} has unit {unit}, not one CloudWatch accepts"));
        }
    }
    match root.get(name) {
        Some(Value::Number(_)) => Ok(()),
        Some(Value::Array(values)) if values.len() <= 100 && values.iter().all(Value::is_number) => Ok(()),
        _ => Err(format!("metric {name:?} has no numeric value")),
    }
}
