//! flagfn: feature flags evaluated by an AWS Lambda.
//!
//! Module map, from the pure core outwards:
//!
//! - [`flag`] — the flag document of SPEC §1, validated and compiled once when loaded.
//! - [`eval`] — the pure evaluator (SPEC §2) and the MD5 bucketing formulas (SPEC §3).
//!   No tokio, no AWS, no I/O: trivial to test and to benchmark.
#![deny(missing_docs)]

pub mod eval;
pub mod flag;
