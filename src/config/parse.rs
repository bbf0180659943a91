//! The parsers every variable goes through: each reads one variable through `get`, falls
//! back to its default when it is unset (or blank), and otherwise either returns a value in
//! range or a [`ConfigError::Invalid`] naming the variable and what was expected.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use super::{Bucketing, ConfigError, EventsMode, MetricsConfig, MetricsOutput, MAX_FLAG_DIMENSIONS};

fn invalid(name: &'static str, value: &str, why: &str) -> ConfigError {
    ConfigError::Invalid { name, value: value.to_owned(), why: format!("expected {why}") }
}

pub(super) fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    expected: &str,
) -> Result<T, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| invalid(name, &raw, expected)),
    }
}

/// Reads a number that must lie in `range`; out of range is an error naming the
/// variable and the range. The one range check every numeric variable goes through
/// (integers of any width, or floats).
pub(super) fn number<T>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let expected = || format!("a number from {} to {}", range.start(), range.end());
    let Some(raw) = get(name) else { return Ok(default) };
    match raw.trim().parse::<T>() {
        Ok(value) if range.contains(&value) => Ok(value),
        _ => Err(invalid(name, &raw, &expected())),
    }
}

pub(super) fn nonzero(value: usize) -> NonZeroUsize {
    NonZeroUsize::new(value).unwrap_or(NonZeroUsize::MIN)
}

/// Seconds (fractions allowed) from 0 to `max`.
pub(super) fn seconds(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let secs = number(get, name, default.as_secs_f64(), 0.0..=max.as_secs_f64())?;
    Ok(Duration::from_secs_f64(secs))
}

/// Whole milliseconds within `range`.
pub(super) fn millis(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Duration,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
    number(get, name, default, range).map(Duration::from_millis)
}

pub(super) fn boolean(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(false),
        Some(v) => Err(invalid(name, &v, "true or false")),
    }
}

pub(super) fn events_mode(get: &impl Fn(&str) -> Option<String>) -> Result<EventsMode, ConfigError> {
    match get("EVENTS_MODE").map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(EventsMode::Full),
        Some(v) => match v.as_str() {
            "full" => Ok(EventsMode::Full),
            "summary" => Ok(EventsMode::Summary),
            "both" => Ok(EventsMode::Both),
            _ => Err(invalid("EVENTS_MODE", &v, "full, summary or both")),
        },
    }
}

/// `FLAGD_FRACTIONAL`: which bucketing flagd's `fractional` uses. Switching re-buckets
/// every user of every flagd flag that splits, so it is a deliberate, documented choice.
pub(super) fn flagd_fractional(get: &impl Fn(&str) -> Option<String>) -> Result<Bucketing, ConfigError> {
    match get("FLAGD_FRACTIONAL").map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(Bucketing::V2),
        Some(v) => match v.as_str() {
            "v2" => Ok(Bucketing::V2),
            "v3" => Ok(Bucketing::V3),
            _ => Err(invalid("FLAGD_FRACTIONAL", &v, "v2 or v3")),
        },
    }
}

pub(super) fn metrics(get: &impl Fn(&str) -> Option<String>, in_lambda: bool) -> Result<MetricsConfig, ConfigError> {
    let on = boolean(get, "METRICS", true)?;
    let output = match (on, in_lambda, get("METRICS_FILE")) {
        (false, _, _) => MetricsOutput::Off,
        (true, true, _) => MetricsOutput::Stdout,
        (true, false, Some(file)) if file.trim() == "-" => MetricsOutput::Stdout,
        (true, false, Some(file)) => MetricsOutput::File(PathBuf::from(file)),
        (true, false, None) => MetricsOutput::Off,
    };
    let namespace = get("METRICS_NAMESPACE").map_or_else(|| "flagfn".to_owned(), |n| n.trim().to_owned());
    if !valid_namespace(&namespace) {
        let why = "1-255 characters of A-Z a-z 0-9 . - _ / # :, not starting with AWS/";
        return Err(invalid("METRICS_NAMESPACE", &namespace, why));
    }
    let flag_dimensions = match get("EMF_FLAG_DIMENSIONS").map(|v| v.trim().to_ascii_lowercase()) {
        None => 20,
        Some(v) if v == "off" => 0,
        Some(v) => match v.strip_prefix("top:").map(str::parse::<usize>) {
            Some(Ok(n)) if (1..=MAX_FLAG_DIMENSIONS).contains(&n) => n,
            _ => return Err(invalid("EMF_FLAG_DIMENSIONS", &v, "off or top:N with N from 1 to 100")),
        },
    };
    Ok(MetricsConfig {
        output,
        namespace,
        service: get("AWS_LAMBDA_FUNCTION_NAME").map_or_else(|| "flagfn-local".to_owned(), |n| n.trim().to_owned()),
        flag_dimensions,
        interval: millis(get, "METRICS_INTERVAL_MS", Duration::from_secs(60), 0..=3_600_000)?,
    })
}

/// CloudWatch's namespace rules: printable ASCII from a small set, at most 255
/// characters, and `AWS/` is reserved for AWS services.
fn valid_namespace(namespace: &str) -> bool {
    (1..=255).contains(&namespace.len())
        && !namespace.starts_with("AWS/")
        && namespace.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_/#:".contains(&b))
}

/// Most characters of `EVENT_STREAM_URL`.
pub const MAX_STREAM_URL_CHARS: usize = 2048;

/// `EVENT_STREAM_URL`: an absolute `http(s)` URL of printable ASCII. It may carry a
/// token, so an error names the variable and the rule but never shows the value.
pub(super) fn stream_url(get: &impl Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(raw) = get("EVENT_STREAM_URL") else { return Ok(None) };
    let url = raw.trim();
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let host_ok = rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'));
    if !host_ok || url.len() > MAX_STREAM_URL_CHARS || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::Invalid {
            name: "EVENT_STREAM_URL",
            value: "(not shown: it may hold a token)".to_owned(),
            why: format!(
                "expected an absolute http:// or https:// URL of at most {MAX_STREAM_URL_CHARS} printable ASCII characters"
            ),
        });
    }
    Ok(Some(url.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::collections::HashMap;

    fn metrics_config(vars: &[(&str, &str)]) -> Result<MetricsConfig, ConfigError> {
        let mut map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        map.insert("FLAGS_FILE".into(), "examples/flags.json".into());
        Config::from_lookup(|name| map.get(name).cloned()).map(|c| c.metrics)
    }

    #[test]
    fn metrics_default_to_stdout_in_lambda_and_off_locally_without_a_file() {
        let local = metrics_config(&[]).expect("valid");
        assert_eq!(local.output, MetricsOutput::Off);
        assert_eq!((local.namespace.as_str(), local.service.as_str()), ("flagfn", "flagfn-local"));
        assert_eq!((local.flag_dimensions, local.interval), (20, Duration::from_secs(60)));
        let lambda =
            metrics_config(&[("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"), ("AWS_LAMBDA_FUNCTION_NAME", "flags-fn")])
                .expect("valid");
        assert_eq!((lambda.output, lambda.service.as_str()), (MetricsOutput::Stdout, "flags-fn"));
        let off = metrics_config(&[("AWS_LAMBDA_RUNTIME_API", "x"), ("METRICS", "off")]).expect("valid");
        assert_eq!(off.output, MetricsOutput::Off);
        assert_eq!(metrics_config(&[("METRICS_FILE", "-")]).expect("valid").output, MetricsOutput::Stdout);
        let file = metrics_config(&[
            ("METRICS_FILE", "m.jsonl"),
            ("METRICS_NAMESPACE", "Team/flags_1"),
            ("EMF_FLAG_DIMENSIONS", "top:100"),
            ("METRICS_INTERVAL_MS", "0"),
        ])
        .expect("valid");
        assert_eq!(file.output, MetricsOutput::File("m.jsonl".into()));
        assert_eq!(
            (file.namespace.as_str(), file.flag_dimensions, file.interval),
            ("Team/flags_1", 100, Duration::ZERO)
        );
        assert_eq!(metrics_config(&[("EMF_FLAG_DIMENSIONS", "OFF")]).expect("valid").flag_dimensions, 0);
    }

    #[test]
    fn bad_metrics_settings_name_the_variable() {
        let long = "n".repeat(256);
        for (name, value) in [
            ("METRICS", "maybe"),
            ("METRICS_NAMESPACE", "AWS/Lambda"),
            ("METRICS_NAMESPACE", "has space"),
            ("METRICS_NAMESPACE", long.as_str()),
            ("METRICS_NAMESPACE", "é"),
            ("EMF_FLAG_DIMENSIONS", "top:0"),
            ("EMF_FLAG_DIMENSIONS", "top:101"),
            ("EMF_FLAG_DIMENSIONS", "20"),
            ("EMF_FLAG_DIMENSIONS", "top:-1"),
            ("METRICS_INTERVAL_MS", "3600001"),
            ("METRICS_INTERVAL_MS", "-5"),
        ] {
            let error = metrics_config(&[(name, value)]).expect_err(value).to_string();
            assert!(error.starts_with(name), "{name}={value}: {error}");
        }
    }
}
