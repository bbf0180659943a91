//! OpenFeature flag definitions in flagd's format, compiled once and evaluated purely.
//!
//! A flagd document (`{"flags": {key: {state, variants, defaultVariant, targeting,
//! metadata}}, "$evaluators": {...}, "metadata": {...}}`) is read by [`parse_document`]:
//! every `$ref` is inlined, flag-set metadata is merged under each flag's own, and each
//! flag's targeting is compiled to a [`logic::Node`] tree. A flag that is wrong in any way
//! (bad JSON Logic, an unknown `defaultVariant`, a `$ref` to nothing) still loads — as a
//! flag that answers `PARSE_ERROR` — so it never takes other flags down.
//!
//! [`evaluate`] answers as flagd's in-process evaluators do (the flagd-testbed
//! conformance suite is the contract): `STATIC` without targeting, `TARGETING_MATCH` when
//! targeting names a variant, `DEFAULT` when it answers `null`, `DISABLED` for a disabled
//! flag, `ERROR` with a code otherwise. No tokio, no I/O, no JSON parsing at evaluation.

mod cbor;
mod document;
mod explain;
pub mod fractional;
pub mod logic;
mod resolve;
pub mod schema;
mod semver;
pub mod stored;

pub use document::{is_flagd_document, parse_document, parse_flag, DocumentError, FlagdSet};
pub use explain::explain;
pub use fractional::Bucketing;
pub use resolve::{evaluate, ErrorCode, FlagdEvaluation, FlagdInput, Reason, ValueKind};

use serde_json::{Map, Value};

/// One flagd flag, compiled.
#[derive(Debug)]
pub struct FlagdFlag {
    key: Box<str>,
    /// Flag-set metadata overlaid with the flag's own (`null`s dropped, as flagd does).
    metadata: Map<String, Value>,
    /// The evaluable flag, or why the definition is malformed.
    body: Result<FlagdBody, Box<str>>,
}

/// The evaluable part of a well-formed flagd flag.
#[derive(Debug)]
struct FlagdBody {
    /// `state: ENABLED`.
    enabled: bool,
    /// Variant name → value, as written.
    variants: Map<String, Value>,
    /// `defaultVariant`, when set (it is always one of `variants`).
    default_variant: Option<Box<str>>,
    /// Compiled `targeting`; `None` when absent, `null` or `{}`.
    targeting: Option<logic::Node>,
}

impl FlagdFlag {
    /// The flag key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The merged metadata reported with every evaluation.
    pub fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }

    /// The variant `name` and its value, when the flag has it.
    pub fn variant(&self, name: &str) -> Option<(&str, &Value)> {
        let body = self.body.as_ref().ok()?;
        body.variants.get_key_value(name).map(|(k, v)| (k.as_str(), v))
    }

    /// Why the definition is malformed, if it is.
    pub fn problem(&self) -> Option<&str> {
        self.body.as_ref().err().map(|p| &**p)
    }
}

#[cfg(test)]
mod tests;
