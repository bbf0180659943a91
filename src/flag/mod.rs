//! The flag document (docs/flag-format.md) and its compilation.
//!
//! A flag arrives as a JSON (or DynamoDB) document, is checked and compiled once when it
//! is loaded ([`CompiledFlag::from_value`]), and is then evaluated many times without
//! any parsing. A document that is wrong in any way still compiles — to a flag that
//! evaluates to a `PARSE_ERROR` naming the problem — so one bad item never takes other
//! flags down and never panics the loader.

mod clause;
mod compile;
mod number;
mod operator;
mod variant;

pub use clause::{not_python, Clause};
pub use compile::{CompiledFlag, DecidedBy, FlagBody, Prerequisite, Rule, Serve};
pub use number::Num;
pub use operator::{Membership, Operator, Ordinal, StrSet};
pub use variant::Variant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest flag key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// Why a string cannot be a flag key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    /// Empty or longer than [`MAX_KEY_BYTES`] (the length in bytes).
    Length(usize),
    /// Holds a control character.
    ControlCharacter,
}

/// The one flag-key check, used when a flag is compiled and when a caller
/// names a key: a key that fails it can never exist.
pub fn check_key(key: &str) -> Result<(), KeyProblem> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(KeyProblem::Length(key.len()));
    }
    if key.chars().any(char::is_control) {
        return Err(KeyProblem::ControlCharacter);
    }
    Ok(())
}

/// Deepest prerequisite chain a flag may have.
pub const MAX_PREREQUISITE_DEPTH: usize = 8;

/// One flag item, field for field as the Python service stored it, plus the extensions.
///
/// Only the shape is checked here; meaning (ranges, references, operators) is checked
/// when the document is compiled. Unknown fields (`created_at`, `description`, ...) are
/// ignored, as the Python service ignored them.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct FlagDoc {
    /// The flag key, the DynamoDB partition key.
    pub key: String,
    /// Stable id echoed in responses and events; defaults to `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag_id: Option<String>,
    /// The master switch; absent means off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Share of eligible users who get the flag, 0–100; absent means 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_percentage: Option<f64>,
    /// Python-style clauses that must all match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targeting_rules: Option<Vec<ClauseDoc>>,
    /// Multivariate split of enabled users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<VariantDoc>>,
    /// Variant served when the split yields none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_variant: Option<String>,
    /// Bumped on every change; a whole number, stored by DynamoDB as a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<f64>,
    /// Flags that must evaluate a given way first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prerequisites: Option<Vec<PrerequisiteDoc>>,
    /// Individual user targeting, checked before everything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<TargetDoc>>,
    /// Ordered rules; the first whose clauses all match decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RuleDoc>>,
    /// Context attribute hashed instead of the user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_by: Option<String>,
}

/// A clause: `{attribute, operator, value, negate?}`.
///
/// `attribute` and `operator` are read leniently (`None` when absent or not a string):
/// the Python service loaded such clauses and they never matched (docs/flag-format.md), so the
/// compiler, not the parser, decides whether that is an oddity or an error.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct ClauseDoc {
    /// Top-level context key, looked up literally.
    #[serde(default, deserialize_with = "lenient_string", skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// One of the operators of docs/flag-format.md.
    #[serde(default, deserialize_with = "lenient_string", skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The operand; absent is the same as `null` (which nothing equals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Inverts the operator's result (but never makes an absent attribute match) in
    /// `rules`, where anything but a boolean is an error. Kept as read because Python
    /// never read it: in `targeting_rules` it is ignored, whatever its type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negate: Option<Value>,
}

/// A string field that may be absent or of another type in items the Python service
/// wrote: anything but a string reads as `None`.
fn lenient_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

/// One arm of a multivariate split.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct VariantDoc {
    /// The variant key reported as `variant`.
    pub key: String,
    /// Share of enabled users, 0–1.
    pub allocation: f64,
    /// Arbitrary configuration carried with the variant (Python's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// The OFREP value of the variant, preferred over `payload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// `{key, enabled?, variant?}`: what another flag must evaluate to.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct PrerequisiteDoc {
    /// The prerequisite flag's key.
    pub key: String,
    /// Required `enabled` result; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Required variant, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// `{user_ids, serve}`: individual targeting.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct TargetDoc {
    /// The user ids this entry decides for.
    pub user_ids: Vec<String>,
    /// What they get.
    pub serve: ServeDoc,
}

/// `{id, clauses, serve}`: an ordered rule.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct RuleDoc {
    /// Reported as OFREP `metadata.rule_id`, and salts the rule's own rollout.
    pub id: String,
    /// All must match.
    #[serde(default)]
    pub clauses: Vec<ClauseDoc>,
    /// What matching users get.
    pub serve: ServeDoc,
}

/// `{enabled?, variant?, rollout_percentage?}`: the outcome of a target or rule.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct ServeDoc {
    /// `false` serves the flag off; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Variant to serve; else the flag's split, else `default_variant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Share of the matched users who get it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_percentage: Option<f64>,
}

/// Why a flags file could not be read at all (single bad flags never cause this).
#[derive(Debug, thiserror::Error)]
pub enum FlagsFileError {
    /// Not JSON.
    #[error("flags file is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but neither `{"flags": [...]}` nor `[...]`.
    #[error("flags file must be a JSON array of flags or an object {{\"flags\": [...]}}")]
    Shape,
    /// Not YAML (for a `.yaml`/`.yml` file).
    #[error("flags file is not valid YAML: {0}")]
    Yaml(String),
    /// A flagd document (`flags` is an object) that cannot be read as one.
    #[error("flagd document: {0}")]
    Flagd(#[from] crate::flagd::DocumentError),
}

/// A flagd document's flags, each wrapped; keys that could never be asked for are
/// returned as messages, as for Python-schema items.
fn parse_flagd_document(doc: &Value) -> Result<(Vec<CompiledFlag>, Vec<String>), FlagsFileError> {
    let set = crate::flagd::parse_document(doc)?;
    let mut flags = Vec::with_capacity(set.flags.len());
    let mut skipped = Vec::new();
    for flag in set.flags {
        match check_key(flag.key()) {
            Ok(()) => flags.push(CompiledFlag::from_flagd(flag)),
            Err(problem) => skipped.push(format!("flagd flag skipped: unusable key ({problem:?})")),
        }
    }
    Ok((flags, skipped))
}

/// Parses a local flags file (`{"flags": [...]}` or `[...]`, or a flagd document whose
/// `flags` is an object) and compiles each item.
///
/// Items without a usable string `key` cannot be addressed and are returned in the
/// second list as messages, for the caller to log; every other item compiles, possibly
/// to a malformed flag.
pub fn parse_flags_document(text: &str) -> Result<(Vec<CompiledFlag>, Vec<String>), FlagsFileError> {
    compile_flags_document(serde_json::from_str(text)?)
}

/// [`parse_flags_document`] for a YAML file (flagd documents are often written in YAML).
pub fn parse_flags_yaml(text: &str) -> Result<(Vec<CompiledFlag>, Vec<String>), FlagsFileError> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| FlagsFileError::Yaml(e.to_string()))?;
    compile_flags_document(doc)
}

fn compile_flags_document(doc: Value) -> Result<(Vec<CompiledFlag>, Vec<String>), FlagsFileError> {
    if crate::flagd::is_flagd_document(&doc) {
        return parse_flagd_document(&doc);
    }
    let items = match doc {
        Value::Array(items) => items,
        Value::Object(mut map) => match map.remove("flags") {
            Some(Value::Array(items)) => items,
            _ => return Err(FlagsFileError::Shape),
        },
        _ => return Err(FlagsFileError::Shape),
    };
    let mut flags = Vec::with_capacity(items.len());
    let mut skipped = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match CompiledFlag::from_value(item) {
            Ok(flag) => flags.push(flag),
            Err(why) => skipped.push(format!("flag #{index} skipped: {why}")),
        }
    }
    Ok((flags, skipped))
}
