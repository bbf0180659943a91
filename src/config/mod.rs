//! `Config::from_env()` — the only place that reads the environment.
//! Every variable read here has a row in the configuration table of
//! docs/operations.md (`tests/docs.rs` checks it).
//!
//! Every variable is parsed once at start-up; a bad value stops start-up with a message
//! naming the variable, so a typo in `template.yaml` fails the deploy's first cold start
//! loudly instead of silently running with a default.
//!
//! This file says which variables exist, their defaults and ranges, and what they build;
//! `parse.rs` holds the parsers they go through (numbers in range, seconds, milliseconds,
//! booleans, the events mode, the metrics section).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use parse::{boolean, events_mode, flagd_fractional, metrics, millis, nonzero, number, parse, seconds, stream_url};

pub use crate::flagd::Bucketing;

mod parse;

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

/// Cache settings (docs/operations.md, "Cache and store").
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

/// Evaluation event settings (docs/operations.md, "Evaluation events").
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
    /// Pack events into KPL aggregated Kinesis records (`EVENTS_KPL_AGGREGATION`): one
    /// record and PUT unit for many events; consumers de-aggregate (KCL, Firehose, AWS's
    /// de-aggregation modules). Off: one JSON event per record, as before.
    pub kpl_aggregation: bool,
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
            kpl_aggregation: false,
            buffer_max: 100_000,
            buffer_max_bytes: 32 << 20,
            flush_min: 500,
            flush_max_age: Duration::from_secs(1),
            flush_interval: Duration::from_secs(1),
        }
    }
}

/// Freshness settings (docs/operations.md, "Freshness"): how warm environments learn of
/// flag changes before their cache TTL runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreshnessConfig {
    /// The change-manifest table (`MANIFEST_TABLE`); `None`: no manifest, TTL only.
    pub table: Option<String>,
    /// How often a warm environment reads the manifest (`FRESHNESS_SECONDS`, default 5);
    /// zero turns the check off (TTL only).
    pub every: Duration,
}

impl Default for FreshnessConfig {
    fn default() -> Self {
        FreshnessConfig { table: None, every: Duration::from_secs(5) }
    }
}

/// Longest `FRESHNESS_SECONDS`: an hour (past that the cache TTL is the better tool).
pub const MAX_FRESHNESS: Duration = Duration::from_secs(3600);

/// Where EMF metric lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsOutput {
    /// No metrics (`METRICS=off`, or the local server without `METRICS_FILE`).
    Off,
    /// Standard output: the function's log in Lambda, or `METRICS_FILE=-` locally.
    Stdout,
    /// A file, appended to (`METRICS_FILE`, local server only).
    File(PathBuf),
}

/// CloudWatch embedded-metric-format settings (docs/operations.md, "Metrics").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where the lines go.
    pub output: MetricsOutput,
    /// CloudWatch namespace (`METRICS_NAMESPACE`).
    pub namespace: String,
    /// The `Service` dimension's value: the Lambda function's name, or `flagfn-local`.
    pub service: String,
    /// Flags given their own `Flag` dimension per emit, the most evaluated first
    /// (`EMF_FLAG_DIMENSIONS=off|top:N`; 0 = off).
    pub flag_dimensions: usize,
    /// Least time between two emits (`METRICS_INTERVAL_MS`).
    pub interval: Duration,
}

/// Most `EMF_FLAG_DIMENSIONS=top:N`: each flag costs up to one EMF line per outcome per
/// emit, and one CloudWatch custom metric per (flag, outcome).
pub const MAX_FLAG_DIMENSIONS: usize = 100;

/// Everything the function needs to know about its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where flags are read from.
    pub flags: FlagSourceConfig,
    /// Cache sizes and lifetimes.
    pub cache: CacheConfig,
    /// Most flag keys one batch request may name (`MAX_BATCH_FLAGS`).
    pub max_batch_flags: usize,
    /// Longest one DynamoDB call may take, connecting included (`STORE_TIMEOUT_MS`):
    /// past it the read fails and the cache serves stale flags instead of waiting.
    pub store_timeout: Duration,
    /// Event settings.
    pub events: EventsConfig,
    /// Change-manifest settings (`MANIFEST_TABLE`, `FRESHNESS_SECONDS`).
    pub freshness: FreshnessConfig,
    /// The Lambda Runtime API address when running inside Lambda.
    pub lambda_runtime_api: Option<String>,
    /// Address of the local HTTP server (`BIND_ADDR`).
    pub bind_addr: SocketAddr,
    /// Log filter (`RUST_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else `info`).
    pub log_filter: String,
    /// EMF metrics.
    pub metrics: MetricsConfig,
    /// The bucketing of flagd's `fractional` (`FLAGD_FRACTIONAL`, `v2` or `v3`).
    pub flagd_fractional: Bucketing,
    /// Most connections the local server keeps open (`SERVER_MAX_CONNECTIONS`).
    pub server_max_connections: usize,
    /// Most change streams (`/ofrep/v1/stream`) the local server keeps open at once
    /// (`STREAM_MAX_CLIENTS`; 0: no stream, none advertised).
    pub stream_max_clients: usize,
    /// A change stream served elsewhere that bulk responses advertise instead of the local
    /// server's own (`EVENT_STREAM_URL`; in Lambda, the only way one is advertised).
    /// Treated as a secret: never logged, never in an error.
    pub event_stream_url: Option<String>,
    /// What a Lambda function of this binary serves (`LAMBDA_ROLE`).
    pub lambda_role: LambdaRole,
}

/// What a Lambda function of this binary serves (`LAMBDA_ROLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LambdaRole {
    /// The API (`api`, the default).
    Api,
    /// The change stream, behind a function URL in `RESPONSE_STREAM` mode (`stream`).
    Stream,
}

/// Range of `SERVER_MAX_CONNECTIONS`: each connection is a file descriptor, so past the
/// process's open-file limit accepts fail (and are retried) instead.
pub const SERVER_CONNECTIONS: std::ops::RangeInclusive<usize> = 16..=65_536;
/// Default `SERVER_MAX_CONNECTIONS`: below the usual 1,024 open-file limit.
pub const DEFAULT_SERVER_CONNECTIONS: usize = 512;
/// Default `STREAM_MAX_CLIENTS`: a quarter of the default connection cap.
pub const DEFAULT_STREAM_CLIENTS: usize = 128;

/// Most `STREAM_MAX_CLIENTS` for a connection cap: each open stream holds a connection,
/// so three quarters of them at most, leaving ordinary requests the rest.
pub fn max_stream_clients(server_max_connections: usize) -> usize {
    server_max_connections / 4 * 3
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
        // FLAGS_FILE is the local replacement for DynamoDB, so it wins when both are set.
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
            ttl: seconds(&get, "CACHE_TTL_SECONDS", defaults.ttl, MAX_TTL)?,
            max_entries: nonzero(number(&get, "CACHE_MAX_ENTRIES", defaults.max_entries.get(), 1..=MAX_CACHE_ENTRIES)?),
            negative_ttl: seconds(&get, "NEGATIVE_CACHE_TTL_SECONDS", defaults.negative_ttl, MAX_TTL)?,
            stale_if_error: seconds(&get, "STALE_IF_ERROR_SECONDS", defaults.stale_if_error, MAX_STALE_IF_ERROR)?,
        };
        let max_batch_flags = number(&get, "MAX_BATCH_FLAGS", 1000, 1..=MAX_BATCH_FLAGS)?;
        let store_timeout = millis(&get, "STORE_TIMEOUT_MS", DEFAULT_STORE_TIMEOUT, 10..=30_000)?;
        let event_defaults = EventsConfig::default();
        let sample_rate = number(&get, "EVENTS_SAMPLE_RATE", event_defaults.sample_rate, 0.0..=1.0)?;
        let events = EventsConfig {
            stream: get("KINESIS_STREAM_NAME").map(|s| s.trim().to_owned()),
            file: get("EVENTS_FILE").map(PathBuf::from),
            sample_rate,
            include_context: boolean(&get, "EVENTS_INCLUDE_CONTEXT", true)?,
            mode: events_mode(&get)?,
            kpl_aggregation: boolean(&get, "EVENTS_KPL_AGGREGATION", false)?,
            buffer_max: number(&get, "EVENTS_BUFFER_MAX", event_defaults.buffer_max, 1..=10_000_000)?,
            buffer_max_bytes: number(&get, "EVENTS_BUFFER_MAX_BYTES", 32 << 20, (1 << 20)..=(1 << 30))?,
            flush_min: number(&get, "EVENTS_FLUSH_MIN", 500, 1..=1_000_000)?,
            flush_max_age: millis(&get, "EVENTS_FLUSH_MAX_AGE_MS", Duration::from_secs(1), 0..=900_000)?,
            flush_interval: millis(&get, "EVENTS_FLUSH_INTERVAL_MS", event_defaults.flush_interval, 1..=3_600_000)?,
        };
        let freshness = FreshnessConfig {
            table: get("MANIFEST_TABLE").map(|t| t.trim().to_owned()),
            every: seconds(&get, "FRESHNESS_SECONDS", FreshnessConfig::default().every, MAX_FRESHNESS)?,
        };
        let bind_addr =
            parse(&get, "BIND_ADDR", SocketAddr::from(([127, 0, 0, 1], 3000)), "an address like 127.0.0.1:3000")?;
        let log_filter = get("RUST_LOG")
            .or_else(|| get("AWS_LAMBDA_LOG_LEVEL").map(|level| level.to_ascii_lowercase()))
            .unwrap_or_else(|| "info".to_owned());
        let metrics = metrics(&get, lambda_runtime_api.is_some())?;
        let flagd_fractional = flagd_fractional(&get)?;
        let server_max_connections =
            number(&get, "SERVER_MAX_CONNECTIONS", DEFAULT_SERVER_CONNECTIONS, SERVER_CONNECTIONS)?;
        let most_streams = max_stream_clients(server_max_connections);
        let stream_max_clients =
            number(&get, "STREAM_MAX_CLIENTS", DEFAULT_STREAM_CLIENTS.min(most_streams), 0..=most_streams)?;
        Ok(Config {
            flags,
            cache,
            max_batch_flags,
            store_timeout,
            events,
            freshness,
            lambda_runtime_api,
            bind_addr,
            log_filter,
            metrics,
            flagd_fractional,
            server_max_connections,
            stream_max_clients,
            event_stream_url: stream_url(&get)?,
            lambda_role: match get("LAMBDA_ROLE").as_deref().map(str::trim) {
                None | Some("api") => LambdaRole::Api,
                Some("stream") => LambdaRole::Stream,
                Some(other) => {
                    let why = "expected api or stream".to_owned();
                    return Err(ConfigError::Invalid { name: "LAMBDA_ROLE", value: other.to_owned(), why });
                }
            },
        })
    }
}

/// Longest `CACHE_TTL_SECONDS` / `NEGATIVE_CACHE_TTL_SECONDS`: a day. Anything longer
/// is almost certainly a unit mistake, and an unbounded one overflows time arithmetic.
pub const MAX_TTL: Duration = Duration::from_secs(86_400);
/// Longest `STALE_IF_ERROR_SECONDS`: a week of serving the last good flags.
pub const MAX_STALE_IF_ERROR: Duration = Duration::from_secs(7 * 86_400);
/// Most `CACHE_MAX_ENTRIES`: compiled flags are ~1–2 KB, so this stays well inside a
/// Lambda's memory.
pub const MAX_CACHE_ENTRIES: usize = 100_000;
/// Most `MAX_BATCH_FLAGS` (a 256 KiB body cannot name many more keys anyway).
pub const MAX_BATCH_FLAGS: usize = 10_000;
/// Default `STORE_TIMEOUT_MS`: a healthy DynamoDB answers in ~10 ms; half a second
/// leaves room for a slow cold connection and still answers (stale) quickly when it hangs.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(500);

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
        assert_eq!(c.store_timeout, Duration::from_millis(500));
        assert_eq!(c.events.sample_rate, 1.0);
        assert!(c.events.include_context);
        assert_eq!(c.events.mode, EventsMode::Full);
        assert_eq!((c.events.buffer_max_bytes, c.events.flush_min), (32 << 20, 500));
        assert_eq!(c.events.flush_max_age, Duration::from_secs(1));
        assert_eq!(c.events.stream, None);
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(c.lambda_runtime_api, None);
        assert_eq!(c.log_filter, "info");
        assert_eq!(c.freshness, FreshnessConfig { table: None, every: Duration::from_secs(5) });
    }

    #[test]
    fn flagd_fractional_is_v2_unless_set_to_v3() {
        assert_eq!(config(&[("FLAGS_FILE", "f")]).expect("valid").flagd_fractional, Bucketing::V2);
        let v3 = config(&[("FLAGS_FILE", "f"), ("FLAGD_FRACTIONAL", " V3 ")]).expect("valid");
        assert_eq!(v3.flagd_fractional, Bucketing::V3);
        for bad in ["v1", "3", "latest"] {
            let err = config(&[("FLAGS_FILE", "f"), ("FLAGD_FRACTIONAL", bad)]).expect_err("out of range");
            assert!(err.to_string().contains("v2 or v3"), "{err}");
        }
    }

    #[test]
    fn freshness_variables_are_read_and_range_checked() {
        let c = config(&[("FLAGS_TABLE", "f"), ("MANIFEST_TABLE", " m "), ("FRESHNESS_SECONDS", "0")]).expect("valid");
        assert_eq!(c.freshness, FreshnessConfig { table: Some("m".into()), every: Duration::ZERO });
        let c = config(&[("FLAGS_TABLE", "f"), ("FRESHNESS_SECONDS", "3600")]).expect("largest");
        assert_eq!(c.freshness.every, MAX_FRESHNESS);
        for bad in ["3600.5", "-1", "soon", "NaN", "inf", "1e19"] {
            let err = config(&[("FLAGS_TABLE", "f"), ("FRESHNESS_SECONDS", bad)]).expect_err(bad).to_string();
            assert!(err.contains("FRESHNESS_SECONDS") && err.contains("from"), "{bad}: {err}");
        }
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
            ("EVENTS_KPL_AGGREGATION", "on"),
            ("EVENTS_BUFFER_MAX", "7"),
            ("EVENTS_BUFFER_MAX_BYTES", "2097152"),
            ("EVENTS_FLUSH_MIN", "50"),
            ("EVENTS_FLUSH_MAX_AGE_MS", "0"),
            ("EVENTS_FILE", "/tmp/e.jsonl"),
            ("EVENTS_FLUSH_INTERVAL_MS", "250"),
            ("STORE_TIMEOUT_MS", "120"),
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
        assert!(c.events.kpl_aggregation);
        assert_eq!(c.events.buffer_max, 7);
        assert_eq!((c.events.buffer_max_bytes, c.events.flush_min), (2 << 20, 50));
        assert_eq!(c.events.flush_max_age, Duration::ZERO);
        assert_eq!(c.events.file, Some(PathBuf::from("/tmp/e.jsonl")));
        assert_eq!(c.events.flush_interval, Duration::from_millis(250));
        assert_eq!(c.store_timeout, Duration::from_millis(120));
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
            ("EVENTS_KPL_AGGREGATION", "kpl"),
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

    /// Every numeric variable: the largest accepted value and the values just past each
    /// end, plus the overflowing and non-finite ones that used to panic later.
    #[test]
    fn every_numeric_variable_is_range_checked_at_start_up() {
        let edges: [(&str, &str, &[&str]); 11] = [
            ("CACHE_TTL_SECONDS", "86400", &["86400.5", "1e19", "1e400", "inf", "NaN", "-0.1"]),
            ("NEGATIVE_CACHE_TTL_SECONDS", "86400", &["86401", "1e19", "-1", "NaN"]),
            ("STALE_IF_ERROR_SECONDS", "604800", &["604801", "1e19", "-1", "inf"]),
            ("CACHE_MAX_ENTRIES", "100000", &["100001", "18446744073709551615", "99999999999999999999", "0"]),
            ("MAX_BATCH_FLAGS", "10000", &["10001", "18446744073709551615", "0"]),
            ("STORE_TIMEOUT_MS", "30000", &["30001", "9", "0", "18446744073709551616", "0.5"]),
            ("EVENTS_BUFFER_MAX", "10000000", &["10000001", "18446744073709551615", "0"]),
            ("EVENTS_FLUSH_INTERVAL_MS", "3600000", &["3600001", "0", "18446744073709551615"]),
            ("EVENTS_SAMPLE_RATE", "1", &["1.0000001", "-0.0001", "NaN", "inf"]),
            ("STREAM_MAX_CLIENTS", "384", &["385", "-1", "18446744073709551616", "0.5"]),
            ("SERVER_MAX_CONNECTIONS", "65536", &["65537", "15", "0", "-1"]),
        ];
        for (name, largest, bad) in edges {
            assert!(config(&[("FLAGS_FILE", "f.json"), (name, largest)]).is_ok(), "{name}={largest}");
            for value in bad {
                let err = config(&[("FLAGS_FILE", "f.json"), (name, value)]).expect_err(name).to_string();
                assert!(err.contains(name) && err.contains("from"), "{name}={value}: {err}");
            }
        }
        let c = config(&[("FLAGS_FILE", "f.json"), ("CACHE_TTL_SECONDS", "0"), ("STORE_TIMEOUT_MS", "10")]);
        let c = c.expect("the smallest values are accepted");
        assert_eq!((c.cache.ttl, c.store_timeout), (Duration::ZERO, Duration::from_millis(10)));
    }

    /// The stream cap follows the connection cap: three quarters of it at most.
    #[test]
    fn the_stream_cap_is_checked_against_the_connection_cap() {
        let c =
            config(&[("FLAGS_FILE", "f.json"), ("SERVER_MAX_CONNECTIONS", "16384"), ("STREAM_MAX_CLIENTS", "12288")]);
        let c = c.expect("three quarters");
        assert_eq!((c.server_max_connections, c.stream_max_clients), (16384, 12288));
        let over = [("FLAGS_FILE", "f.json"), ("SERVER_MAX_CONNECTIONS", "16384"), ("STREAM_MAX_CLIENTS", "12289")];
        let err = config(&over).expect_err("over").to_string();
        assert!(err.contains("STREAM_MAX_CLIENTS") && err.contains("0 to 12288"), "{err}");
        // A small connection cap lowers the default too, rather than failing start-up.
        let small = config(&[("FLAGS_FILE", "f.json"), ("SERVER_MAX_CONNECTIONS", "16")]).expect("valid");
        assert_eq!(small.stream_max_clients, 12);
    }

    #[test]
    fn the_lambda_role_is_api_or_stream() {
        assert_eq!(config(&[("FLAGS_TABLE", "f")]).expect("valid").lambda_role, LambdaRole::Api);
        let stream = config(&[("FLAGS_TABLE", "f"), ("LAMBDA_ROLE", "stream")]).expect("valid");
        assert_eq!(stream.lambda_role, LambdaRole::Stream);
        let err = config(&[("FLAGS_TABLE", "f"), ("LAMBDA_ROLE", "both")]).expect_err("bad").to_string();
        assert!(err.contains("LAMBDA_ROLE") && err.contains("api or stream"), "{err}");
    }

    #[test]
    fn event_stream_urls_are_absolute_and_never_shown_in_errors() {
        let url = "https://sse.example.com/stream?token=s3cret";
        let c = config(&[("FLAGS_TABLE", "f"), ("EVENT_STREAM_URL", url)]).expect("valid");
        assert_eq!(c.event_stream_url.as_deref(), Some(url));
        assert_eq!(config(&[("FLAGS_TABLE", "f")]).expect("valid").event_stream_url, None);
        let long = format!("https://h/{}", "a".repeat(2048));
        for bad in
            ["/relative?token=s3cret", "ftp://h/s3cret", "https://", "https:///s3cret", "https://h/a b s3cret", &long]
        {
            let err = config(&[("FLAGS_TABLE", "f"), ("EVENT_STREAM_URL", bad)]).expect_err(bad).to_string();
            assert!(err.contains("EVENT_STREAM_URL") && !err.contains("s3cret") && !err.contains("aaaa"), "{err}");
        }
    }

    /// The largest values the checks let through leave the cache's time arithmetic in
    /// range (the panic `CACHE_TTL_SECONDS=1e19` used to cause on every hit).
    #[test]
    fn the_largest_accepted_durations_do_not_overflow_time_arithmetic() {
        let c =
            config(&[("FLAGS_FILE", "f.json"), ("CACHE_TTL_SECONDS", "86400"), ("STALE_IF_ERROR_SECONDS", "604800")])
                .expect("valid");
        let now = std::time::SystemTime::now();
        assert!(now.checked_add(c.cache.ttl + c.cache.stale_if_error + c.cache.negative_ttl).is_some());
    }
}
