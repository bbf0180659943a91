//! flagfn: feature flags evaluated by an AWS Lambda.
//!
//! Module map, from the leaves outwards. Each line says what the module owns and what
//! it may import; a module imports only modules listed before it, so there are no
//! circles (`tests/layers.rs` reads every `crate::` path outside test code and fails
//! on an import that points outwards).
//!
//! ```text
//! leaves        bucket   backoff   clock   aws   flagd   config ──► flagd
//! pure core     flag ──► eval ──► outcome   flag ──► flagd   (flag, flagd, eval: no tokio, no AWS, no I/O)
//! ports         store (FlagStore)      sink (EventSink)
//! above ports   cache ──► store        resolve ──► cache     events ──► sink, outcome
//!               freshness ──► cache, store      metrics ──► events
//!               changes ──► freshness, cache
//! the app       app ──► resolve, cache, freshness, changes, events, metrics, eval, outcome
//! edges         api ──► app     lambda, lambda_stream, server ──► api, app     ctl ──► flag, eval, store, freshness, aws
//! ```
//!
//! - [`bucket`] — the MD5 bucketing formulas (docs/flag-format.md), several at once in SIMD lanes. A leaf: imports nothing.
//! - [`backoff`] — the one full-jitter backoff formula for every retry loop. A leaf.
//! - [`clock`] — time, read once per request and injectable for tests. A leaf.
//! - [`aws`] — the AWS SDK's settings loader with the build's one HTTPS client (rustls
//!   over ring), for everything that talks to AWS. A leaf.
//! - [`flagd`] — OpenFeature flag definitions in flagd's format: the document, a
//!   compiled JSON Logic interpreter with flagd's operators, flagd's answer rules, the
//!   stored-item layout and `explain`'s narration. Pure like `flag`; a leaf: imports
//!   nothing.
//! - [`config`] — `Config::from_env()`, the only reader of the environment (docs/operations.md),
//!   every value range-checked. Imports `flagd` (the `fractional` bucketing it names).
//! - [`flag`] — the flag document (docs/flag-format.md), validated and compiled once when loaded;
//!   one file per operator family (`flag/operator/`). A `CompiledFlag` may wrap a flagd
//!   flag instead, so both formats travel the same store → cache → app path. Imports
//!   `bucket`, `flagd`.
//! - [`eval`] — the pure evaluator (docs/flag-format.md): clauses, targets, rules, rollouts,
//!   prerequisites. Imports `flag`, `bucket`.
//! - [`outcome`] — [`outcome::Outcome`], one evaluation's result, owned, and
//!   [`outcome::Subject`], who asked. Imports `flag`, `eval`, `flagd` (a flagd flag's
//!   reason and variant).
//! - [`store`] — the `FlagStore` port: DynamoDB in Lambda, a JSON file locally. Imports
//!   `flag`, `eval` (the file store's flag set), `config`, `backoff`.
//! - [`sink`] — the `EventSink` port: Kinesis in Lambda, a JSON-lines file locally.
//!   Ships bytes only. Imports `store` (for `BoxFuture`) only.
//! - [`cache`] — the warm LRU + TTL cache of compiled flags in front of the store: one
//!   single-flight for keys and the snapshot, negative entries, stale-if-error and the
//!   error backoff, one set of counters. Store errors stay `Arc<StoreError>`. Imports
//!   `store`, `flag`, `eval`, `config`.
//! - [`resolve`] — one request's flags plus every flag their prerequisites name, read
//!   through the cache, with each one's health (unreadable, stale). Imports `cache`,
//!   `flag`, `eval`.
//! - [`events`] — the event pipeline (docs/operations.md): the bounded buffer filled on the request
//!   path, the records, and the flush after the response. Imports `outcome`, `sink`,
//!   `config`, `backoff`; never `app` (its unit tests drive it directly, with outcomes from
//!   the pure evaluator).
//! - [`freshness`] — the change manifest (docs/operations.md): warm environments learn of flag
//!   changes within `FRESHNESS_SECONDS`, checked after responses, never on a request;
//!   and the DynamoDB Streams handler that bumps it. Imports `cache`, `store`.
//! - [`metrics`] — CloudWatch metrics as EMF log lines, written after the response from
//!   the counters the cache, freshness and the event pipeline keep (docs/operations.md); the
//!   per-flag tally lives in `events`. Imports `config`, `events`.
//! - [`changes`] — the flag configuration's version (a file's mtime, the manifest's
//!   version) and the announcement of each new one to change streams (docs/api.md,
//!   "Change stream"). Imports `cache`, `freshness`, `config`, `clock`.
//! - [`app`] — `App`, what a warm Lambda keeps, the one evaluation path (cache →
//!   evaluator → events) every route uses — the evaluator picked per flag, Python-schema
//!   or flagd — and the after-response phase (the freshness check, the event flush, the
//!   metrics).
//! - [`api`] — the HTTP API of docs/api.md over a transport-neutral request/response,
//!   including OFREP, input limits, and the one error → status map. Imports `app`.
//! - [`lambda`] — function URL, direct-invoke and DynamoDB Streams events, the runtime
//!   loop, and the internal extension that runs the after-response phase. Imports
//!   `api`, `app`, `freshness`.
//! - [`lambda_stream`] — the change stream as a streaming Lambda function
//!   (`LAMBDA_ROLE=stream`). Imports `api`, `app`, `changes`.
//! - [`server`] — the same routes as a local HTTP server (`make run`), plus the OFREP change
//!   stream (`server/sse.rs`). Imports `api`, `app`, `changes`.
//! - [`ctl`] — `flagctl`, the safe write path: validate, diff, apply, audit, explain.
//!   Imports `flag`, `eval`, `store`, `bucket`, `freshness` (to bump the manifest), `aws`.
#![deny(missing_docs)]

pub mod api;
pub mod app;
pub mod aws;
pub mod backoff;
pub mod bucket;
pub mod cache;
pub mod changes;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod eval;
pub mod events;
pub mod flag;
pub mod flagd;
pub mod freshness;
pub mod lambda;
pub mod lambda_stream;
pub mod metrics;
pub mod outcome;
pub mod resolve;
pub mod server;
pub mod sink;
pub mod store;
