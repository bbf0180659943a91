//! `Config::from_env()` — the only place that reads the environment (SPEC §8).
//!
//! Every variable is parsed once at start-up; a bad value stops start-up with a message
//! naming the variable, so a typo in `template.yaml` fails the deploy's first cold start
//! loudly instead of silently running with a default.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The variable is set but its value is not acceptable.
    #[error("{name}={value:?} is invalid: {why}")]
    Invalid {
        /// The environment variable.
        name: &'static str,
        /// What it was set to.
        value: String,
        /// What was expected.
        why: String,
    },
    /// A variable that must be set is not.
    #[error("{0}")]
    Missing(String),
}

/// Where flag definitions come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagSourceConfig {
    /// A DynamoDB table (`FLAGS_TABLE`), partition key `key`.
    Table(String),
    /// A local JSON file (`FLAGS_FILE`): the embedded default for `make run` and tests.
    File(PathBuf),
}

/// What the event pipeline emits (`EVENTS_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventsMode {
    /// One record per evaluation (the Python schema).
    Full,
    /// One record per (flag, version, variant, enabled, reason) per flush, with a count.
    Summary,
    /// Both of the above.
    Both,
}

impl EventsMode {
    /// Whether per-evaluation records are sent.
    pub fn full(self) -> bool {
        matches!(self, EventsMode::Full | EventsMode::Both)
    }

    /// Whether summary records are sent.
    pub fn summary(self) -> bool {
        matches!(self, EventsMode::Summary | EventsMode::Both)
    }
}

/// Cache settings (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long a fetched flag is served without asking the store again.
    pub ttl: Duration,
    /// Most flags held; the least recently used is evicted beyond this.
    pub max_entries: NonZeroUsize,
    /// How long "no such flag" is remembered.
    pub negative_ttl: Duration,
    /// How long past its TTL a flag may still be served while the store is failing.
    pub stale_if_error: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: Duration::from_secs(300),
            max_entries: NonZeroUsize::MIN.saturating_add(9_999),
            negative_ttl: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(3600),
        }
    }
}

/// Evaluation event settings (SPEC §7).
#[derive(Debug, Clone, PartialEq)]
pub struct EventsConfig {
    /// Kinesis stream; `None` means no Kinesis.
    pub stream: Option<String>,
    /// JSON-lines file used when no stream is set (local runs).
    pub file: Option<PathBuf>,
    /// Share of (user, flag) pairs recorded, 0–1, chosen deterministically.
    pub sample_rate: f64,
    /// Whether the request context is copied into each event.
    pub include_context: bool,
    /// Full records, summaries, or both.
    pub mode: EventsMode,
    /// Most events held while the sink is slow or down; older ones are dropped beyond it.
    pub buffer_max: usize,
    /// Most bytes (estimated) the buffer holds; the oldest events are dropped beyond it.
    pub buffer_max_bytes: usize,
    /// Lambda: flush after a response once this many events are buffered...
    pub flush_min: usize,
    /// ...or once the oldest has waited this long (the events a crash can lose).
    pub flush_max_age: Duration,
    /// How often the local server flushes.
    pub flush_interval: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            stream: None,
            file: None,
            sample_rate: 1.0,
            include_context: true,
            mode: EventsMode::Full,
            buffer_max: 100_000,
            buffer_max_bytes: 32 << 20,
            flush_min: 500,
            flush_max_age: Duration::from_secs(1),
            flush_interval: Duration::from_secs(1),
        }
    }
}

/// Everything the function needs to know about its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where flags are read from.
    pub flags: FlagSourceConfig,
    /// Cache sizes and lifetimes.
    pub cache: CacheConfig,
    /// Most flag keys one batch request may name (`MAX_BATCH_FLAGS`).
    pub max_batch_flags: usize,
    /// Event settings.
    pub events: EventsConfig,
    /// The Lambda Runtime API address when running inside Lambda.
    pub lambda_runtime_api: Option<String>,
    /// Address of the local HTTP server (`BIND_ADDR`).
    pub bind_addr: SocketAddr,
    /// Log filter (`RUST_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else `info`).
    pub log_filter: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `var` (the environment in production, a map in tests).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let lambda_runtime_api = get("AWS_LAMBDA_RUNTIME_API");
        // SPEC §8: FLAGS_FILE is "local JSON instead of DynamoDB", so it wins when both are set.
        let flags = match (get("FLAGS_FILE"), get("FLAGS_TABLE")) {
            (Some(file), _) => FlagSourceConfig::File(PathBuf::from(file)),
            (None, Some(table)) => FlagSourceConfig::Table(table.trim().to_owned()),
            (None, None) => {
                return Err(ConfigError::Missing(
                    "set FLAGS_TABLE (a DynamoDB table) or FLAGS_FILE (a local JSON flags file)".into(),
                ))
            }
        };
        let defaults = CacheConfig::default();
        let cache = CacheConfig {
            ttl: seconds(&get, "CACHE_TTL_SECONDS", defaults.ttl)?,
            max_entries: parse(&get, "CACHE_MAX_ENTRIES", defaults.max_entries, "a whole number ≥ 1")?,
            negative_ttl: seconds(&get, "NEGATIVE_CACHE_TTL_SECONDS", defaults.negative_ttl)?,
            stale_if_error: seconds(&get, "STALE_IF_ERROR_SECONDS", defaults.stale_if_error)?,
        };
        let max_batch_flags =
            parse(&get, "MAX_BATCH_FLAGS", NonZeroUsize::MIN.saturating_add(999), "a whole number ≥ 1")?;
        let event_defaults = EventsConfig::default();
        let sample_rate = parse(&get, "EVENTS_SAMPLE_RATE", 1.0f64, "a number from 0 to 1")?;
        if !(0.0..=1.0).contains(&sample_rate) {
            return Err(invalid("EVENTS_SAMPLE_RATE", &sample_rate.to_string(), "a number from 0 to 1"));
        }
        let events = EventsConfig {
            stream: get("KINESIS_STREAM_NAME").map(|s| s.trim().to_owned()),
            file: get("EVENTS_FILE").map(PathBuf::from),
            sample_rate,
            include_context: boolean(&get, "EVENTS_INCLUDE_CONTEXT", true)?,
            mode: events_mode(&get)?,
            buffer_max: parse(
                &get,
                "EVENTS_BUFFER_MAX",
                NonZeroUsize::MIN.saturating_add(99_999),
                "a whole number ≥ 1",
            )?
            .get(),
            buffer_max_bytes: in_range(&get, "EVENTS_BUFFER_MAX_BYTES", 32 << 20, 1 << 20, 1 << 30)? as usize,
            flush_min: in_range(&get, "EVENTS_FLUSH_MIN", 500, 1, 1_000_000)? as usize,
            flush_max_age: Duration::from_millis(in_range(&get, "EVENTS_FLUSH_MAX_AGE_MS", 1_000, 0, 900_000)?),
            flush_interval: match get("EVENTS_FLUSH_INTERVAL_MS") {
                None => event_defaults.flush_interval,
                Some(_) => {
                    Duration::from_millis(parse(&get, "EVENTS_FLUSH_INTERVAL_MS", 1000u64, "milliseconds ≥ 1")?.max(1))
                }
            },
        };
        let bind_addr =
            parse(&get, "BIND_ADDR", SocketAddr::from(([127, 0, 0, 1], 3000)), "an address like 127.0.0.1:3000")?;
        let log_filter = get("RUST_LOG")
            .or_else(|| get("AWS_LAMBDA_LOG_LEVEL").map(|level| level.to_ascii_lowercase()))
            .unwrap_or_else(|| "info".to_owned());
        Ok(Config {
            flags,
            cache,
            max_batch_flags: max_batch_flags.get(),
            events,
            lambda_runtime_api,
            bind_addr,
            log_filter,
        })
    }
}

fn invalid(name: &'static str, value: &str, why: &str) -> ConfigError {
    ConfigError::Invalid { name, value: value.to_owned(), why: format!("expected {why}") }
}

fn parse<T: std::str::FromStr>(
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

fn seconds(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let secs = parse(get, name, default.as_secs_f64(), "seconds (a number ≥ 0)")?;
    Duration::try_from_secs_f64(secs).map_err(|_| invalid(name, &secs.to_string(), "seconds (a number ≥ 0)"))
}

fn boolean(get: &impl Fn(&str) -> Option<String>, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(false),
        Some(v) => Err(invalid(name, &v, "true or false")),
    }
}

/// A whole number from `min` to `max` (both within `usize` on 32-bit targets too).
fn in_range(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let expected = format!("a whole number from {min} to {max}");
    let value = parse(get, name, default, &expected)?;
    match (min..=max).contains(&value) {
        true => Ok(value),
        false => Err(invalid(name, &value.to_string(), &expected)),
    }
}

fn events_mode(get: &impl Fn(&str) -> Option<String>) -> Result<EventsMode, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = config(&[("FLAGS_FILE", "examples/flags.json")]).expect("valid");
        assert_eq!(c.flags, FlagSourceConfig::File("examples/flags.json".into()));
        assert_eq!(c.cache, CacheConfig::default());
        assert_eq!(c.cache.ttl, Duration::from_secs(300));
        assert_eq!(c.cache.max_entries.get(), 10_000);
        assert_eq!(c.cache.negative_ttl, Duration::from_secs(30));
        assert_eq!(c.cache.stale_if_error, Duration::from_secs(3600));
        assert_eq!(c.max_batch_flags, 1000);
        assert_eq!(c.events.sample_rate, 1.0);
        assert!(c.events.include_context);
        assert_eq!(c.events.mode, EventsMode::Full);
        assert_eq!((c.events.buffer_max_bytes, c.events.flush_min), (32 << 20, 500));
        assert_eq!(c.events.flush_max_age, Duration::from_secs(1));
        assert_eq!(c.events.stream, None);
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(c.lambda_runtime_api, None);
        assert_eq!(c.log_filter, "info");
    }

    #[test]
    fn every_variable_is_read() {
        let c = config(&[
            ("FLAGS_TABLE", "flags"),
            ("KINESIS_STREAM_NAME", "evals"),
            ("CACHE_TTL_SECONDS", "60"),
            ("CACHE_MAX_ENTRIES", "5"),
            ("NEGATIVE_CACHE_TTL_SECONDS", "2.5"),
            ("STALE_IF_ERROR_SECONDS", "0"),
            ("MAX_BATCH_FLAGS", "10"),
            ("EVENTS_SAMPLE_RATE", "0.25"),
            ("EVENTS_INCLUDE_CONTEXT", "false"),
            ("EVENTS_MODE", "both"),
            ("EVENTS_BUFFER_MAX", "7"),
            ("EVENTS_BUFFER_MAX_BYTES", "2097152"),
            ("EVENTS_FLUSH_MIN", "50"),
            ("EVENTS_FLUSH_MAX_AGE_MS", "0"),
            ("EVENTS_FILE", "/tmp/e.jsonl"),
            ("EVENTS_FLUSH_INTERVAL_MS", "250"),
            ("BIND_ADDR", "0.0.0.0:8080"),
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("AWS_LAMBDA_LOG_LEVEL", "DEBUG"),
        ])
        .expect("valid");
        assert_eq!(c.flags, FlagSourceConfig::Table("flags".into()));
        assert_eq!(c.events.stream.as_deref(), Some("evals"));
        assert_eq!(c.cache.ttl, Duration::from_secs(60));
        assert_eq!(c.cache.max_entries.get(), 5);
        assert_eq!(c.cache.negative_ttl, Duration::from_millis(2500));
        assert_eq!(c.cache.stale_if_error, Duration::ZERO);
        assert_eq!(c.max_batch_flags, 10);
        assert_eq!(c.events.sample_rate, 0.25);
        assert!(!c.events.include_context);
        assert_eq!(c.events.mode, EventsMode::Both);
        assert_eq!(c.events.buffer_max, 7);
        assert_eq!((c.events.buffer_max_bytes, c.events.flush_min), (2 << 20, 50));
        assert_eq!(c.events.flush_max_age, Duration::ZERO);
        assert_eq!(c.events.file, Some(PathBuf::from("/tmp/e.jsonl")));
        assert_eq!(c.events.flush_interval, Duration::from_millis(250));
        assert_eq!(c.bind_addr.port(), 8080);
        assert_eq!(c.lambda_runtime_api.as_deref(), Some("127.0.0.1:9001"));
        assert_eq!(c.log_filter, "debug");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("CACHE_TTL_SECONDS", "soon"),
            ("CACHE_TTL_SECONDS", "-1"),
            ("CACHE_MAX_ENTRIES", "0"),
            ("NEGATIVE_CACHE_TTL_SECONDS", "x"),
            ("STALE_IF_ERROR_SECONDS", "1h"),
            ("MAX_BATCH_FLAGS", "-3"),
            ("EVENTS_SAMPLE_RATE", "1.5"),
            ("EVENTS_SAMPLE_RATE", "half"),
            ("EVENTS_INCLUDE_CONTEXT", "maybe"),
            ("EVENTS_MODE", "verbose"),
            ("EVENTS_BUFFER_MAX", "0"),
            ("EVENTS_BUFFER_MAX_BYTES", "1000"),
            ("EVENTS_BUFFER_MAX_BYTES", "2000000000"),
            ("EVENTS_BUFFER_MAX_BYTES", "18446744073709551616"),
            ("EVENTS_FLUSH_MIN", "0"),
            ("EVENTS_FLUSH_MAX_AGE_MS", "-1"),
            ("EVENTS_FLUSH_MAX_AGE_MS", "86400000"),
            ("BIND_ADDR", "localhost"),
        ] {
            let err = config(&[("FLAGS_FILE", "f.json"), (name, value)]).expect_err(name).to_string();
            assert!(err.contains(name), "{name}={value}: {err}");
        }
    }

    #[test]
    fn a_flag_source_is_required() {
        let err = config(&[]).expect_err("no source").to_string();
        assert!(err.contains("FLAGS_TABLE") && err.contains("FLAGS_FILE"), "{err}");
        // Blank counts as unset.
        assert!(config(&[("FLAGS_TABLE", "  ")]).is_err());
        // A local file replaces the table when both are set.
        let both = config(&[("FLAGS_TABLE", "t"), ("FLAGS_FILE", "f.json")]).expect("valid");
        assert_eq!(both.flags, FlagSourceConfig::File("f.json".into()));
    }
}
