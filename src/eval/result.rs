//! What an evaluation produces: the result, its reason, its error and its OFREP value.

use std::borrow::Cow;

use serde_json::Value;

use crate::flag::{CompiledFlag, DecidedBy, Variant};

/// The native reason of the evaluation order (the strings the Python service returned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The master switch is off.
    FlagDisabled,
    /// A prerequisite did not evaluate as required.
    PrerequisiteFailed,
    /// An entry of `targets` listed the user.
    TargetMatch,
    /// A `rules` entry matched.
    RuleMatch,
    /// `targeting_rules` did not all match.
    TargetingRulesNotMet,
    /// The user is outside the rollout.
    NotInRollout,
    /// On.
    Enabled,
    /// No such flag.
    FlagNotFound,
    /// The evaluation failed; see [`Evaluation::error`].
    Error,
}

impl Reason {
    /// The wire string, as the Python service spelled it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FlagDisabled => "flag_disabled",
            Reason::PrerequisiteFailed => "prerequisite_failed",
            Reason::TargetMatch => "target_match",
            Reason::RuleMatch => "rule_match",
            Reason::TargetingRulesNotMet => "targeting_rules_not_met",
            Reason::NotInRollout => "not_in_rollout",
            Reason::Enabled => "enabled",
            Reason::FlagNotFound => "flag_not_found",
            Reason::Error => "error",
        }
    }
}

/// OFREP error codes (docs/api.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The flag does not exist.
    FlagNotFound,
    /// The flag document is malformed.
    ParseError,
    /// The flag needs a user id and none was given.
    TargetingKeyMissing,
    /// The context is unusable.
    InvalidContext,
    /// Anything else (the store is down and nothing is cached).
    General,
}

impl ErrorCode {
    /// The OFREP spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::General => "GENERAL",
        }
    }
}

/// Why an evaluation failed.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalError<'a> {
    /// The OFREP code.
    pub code: ErrorCode,
    /// A message for humans, naming the problem (never a user id or context value).
    pub message: Cow<'a, str>,
    /// A prerequisite cycle or over-deep chain, which makes every flag above it malformed.
    pub(super) broken_chain: bool,
}

impl<'a> EvalError<'a> {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'a, str>>) -> Self {
        EvalError { code, message: message.into(), broken_chain: false }
    }
}

/// The result of evaluating one flag for one user.
///
/// `reason` and `error` cannot disagree: both are read through accessors, and the only
/// ways to an error are [`Evaluation::failed`] and [`Evaluation::not_found`], which set
/// the reason from the error's code; the evaluator only ever sets served reasons.
#[derive(Debug, Clone)]
pub struct Evaluation<'a> {
    /// The flag key asked for.
    pub key: &'a str,
    /// The flag, when it exists (also when malformed: it carries `flag_id`/`version`).
    pub flag: Option<&'a CompiledFlag>,
    /// Whether the flag is on for this user.
    pub enabled: bool,
    /// The native reason.
    pub(super) reason: Reason,
    /// The variant served, if any.
    pub variant: Option<&'a Variant>,
    /// The `targets` entry or `rules` entry that decided, if any.
    pub decided_by: Option<DecidedBy>,
    /// Set exactly when `reason` is [`Reason::Error`] or [`Reason::FlagNotFound`].
    pub(super) error: Option<EvalError<'a>>,
    /// `targeting_rules` matched on the way to this result.
    pub targeting_matched: bool,
    /// A hash (rollout or split) decided this result.
    pub bucketed: bool,
}

/// The OFREP value of an evaluation (docs/api.md, "OFREP").
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FlagValue<'a> {
    /// A boolean flag: `enabled`.
    Bool(bool),
    /// A variant's `value` (or `payload`).
    Json(&'a Value),
    /// A variant without a value: its key.
    Key(&'a str),
}

impl serde::Serialize for FlagValue<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            FlagValue::Bool(b) => serializer.serialize_bool(*b),
            FlagValue::Json(v) => v.serialize(serializer),
            FlagValue::Key(k) => serializer.serialize_str(k),
        }
    }
}

impl<'a> Evaluation<'a> {
    /// An evaluation of a flag that does not exist.
    pub fn not_found(key: &'a str) -> Self {
        Self::failed(key, None, EvalError::new(ErrorCode::FlagNotFound, "flag not found"))
    }

    /// An evaluation that failed with `error`: reason `flag_not_found` for
    /// `FLAG_NOT_FOUND`, `error` for every other code.
    pub fn failed(key: &'a str, flag: Option<&'a CompiledFlag>, error: EvalError<'a>) -> Self {
        let reason = if error.code == ErrorCode::FlagNotFound { Reason::FlagNotFound } else { Reason::Error };
        Evaluation { error: Some(error), ..Self::off(key, flag, reason) }
    }

    /// An evaluation served with `reason` (never an error reason), off until the fields
    /// say otherwise.
    pub fn served(key: &'a str, flag: Option<&'a CompiledFlag>, reason: Reason) -> Self {
        debug_assert!(!matches!(reason, Reason::Error | Reason::FlagNotFound), "use Evaluation::failed");
        Self::off(key, flag, reason)
    }

    fn off(key: &'a str, flag: Option<&'a CompiledFlag>, reason: Reason) -> Self {
        Evaluation {
            key,
            flag,
            enabled: false,
            reason,
            variant: None,
            decided_by: None,
            error: None,
            targeting_matched: false,
            bucketed: false,
        }
    }

    /// The native reason.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// Why the evaluation failed; `Some` exactly for the error reasons.
    pub fn error(&self) -> Option<&EvalError<'a>> {
        self.error.as_ref()
    }

    /// The id of what decided: `target`, or the matching rule's id.
    pub fn rule_id(&self) -> Option<&'a str> {
        let body = self.flag?.body().ok()?;
        body.decider_id(self.decided_by?)
    }

    /// The flag id (the key when the flag is unknown).
    pub fn flag_id(&self) -> &'a str {
        self.flag.map_or(self.key, CompiledFlag::flag_id)
    }

    /// The flag version (0 when the flag is unknown).
    pub fn version(&self) -> u64 {
        self.flag.map_or(0, CompiledFlag::version)
    }

    /// The variant key served, if any.
    pub fn variant_key(&self) -> Option<&'a str> {
        self.variant.map(Variant::key)
    }

    /// The OFREP value: `enabled` for a boolean flag; the variant's value, else its key,
    /// for a multivariate one; nothing when no variant was served or on error.
    pub fn value(&self) -> Option<FlagValue<'a>> {
        if self.error.is_some() {
            return None;
        }
        let flag = self.flag?;
        if !flag.is_multivariate() {
            return Some(FlagValue::Bool(self.enabled));
        }
        let variant = self.variant?;
        Some(variant.value().map_or(FlagValue::Key(variant.key()), FlagValue::Json))
    }

    /// The OFREP variant: `on`/`off` for a boolean flag, else the variant key.
    pub fn ofrep_variant(&self) -> Option<&'a str> {
        match self.value()? {
            FlagValue::Bool(true) => Some("on"),
            FlagValue::Bool(false) => Some("off"),
            _ => self.variant_key(),
        }
    }
}
