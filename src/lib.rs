//! flagfn: feature flags evaluated by an AWS Lambda.
//!
//! Module map, from the pure core outwards:
//!
//! - [`flag`] — the flag document of SPEC §1, validated and compiled once when loaded.
//! - [`eval`] — the pure evaluator (SPEC §2) and the MD5 bucketing formulas (SPEC §3).
//!   No tokio, no AWS, no I/O: trivial to test and to benchmark.
//! - [`config`] — `Config::from_env()`, the only reader of the environment (SPEC §8).
//! - [`store`] — the `FlagStore` port: DynamoDB in Lambda, a JSON file locally.
//! - [`outcome`] — [`outcome::Outcome`], one evaluation's result, owned, and
//!   [`outcome::Subject`], who asked. Imports only `flag` and `eval`.
//! - [`sink`] — the `EventSink` port: Kinesis in Lambda, a JSON-lines file locally.
//!   Ships bytes only; imports nothing above `store`'s `BoxFuture`.
//! - [`events`] — the event pipeline (SPEC §7): the bounded buffer filled on the request
//!   path, the records, and the flush after the response. Imports `outcome`, `sink`,
//!   `config`; never `app`.
//! - [`cache`] — the warm LRU + TTL cache of compiled flags in front of the store:
//!   single-flight misses, negative entries, stale-if-error.
//! - [`clock`] — time, read once per request and injectable for tests.
//! - [`metrics`] — CloudWatch metrics as EMF log lines, emitted after the response
//!   from the counters the cache and the event pipeline keep (issue 15).
//! - [`app`] — `App`, what a warm Lambda keeps, and the one evaluation path
//!   (cache → evaluator → events) every route uses.
//! - [`api`] — the HTTP API of SPEC §4 over a transport-neutral request/response,
//!   including OFREP, input limits, and the one error → status map.
//! - [`lambda`] — function URL and direct-invoke events, the runtime loop, and the
//!   internal extension that flushes events after each response.
//! - [`server`] — the same routes as a local HTTP server (`make run`).
//! - [`ctl`] — `flagctl`, the safe write path: validate, diff, apply, audit, explain.
#![deny(missing_docs)]

pub mod api;
pub mod app;
pub mod cache;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod eval;
pub mod events;
pub mod flag;
pub mod lambda;
pub mod metrics;
pub mod outcome;
pub mod server;
pub mod sink;
pub mod store;
