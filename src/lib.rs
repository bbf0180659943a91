//! flagfn: feature flags evaluated by an AWS Lambda.
//!
//! Module map, from the pure core outwards:
//!
//! - [`flag`] — the flag document of SPEC §1, validated and compiled once when loaded.
//! - [`eval`] — the pure evaluator (SPEC §2) and the MD5 bucketing formulas (SPEC §3).
//!   No tokio, no AWS, no I/O: trivial to test and to benchmark.
//! - [`config`] — `Config::from_env()`, the only reader of the environment (SPEC §8).
//! - [`store`] — the `FlagStore` port: DynamoDB in Lambda, a JSON file locally.
//! - [`sink`] — the `EventSink` port: Kinesis in Lambda, a JSON-lines file locally.
//! - [`cache`] — the warm LRU + TTL cache of compiled flags in front of the store:
//!   single-flight misses, negative entries, stale-if-error.
//! - [`clock`] — time, read once per request and injectable for tests.
#![deny(missing_docs)]

pub mod cache;
pub mod clock;
pub mod config;
pub mod eval;
pub mod flag;
pub mod sink;
pub mod store;
