//! One flagd flag evaluated for one context: flagd's answer rules.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::logic::eval::{self, Env};
use super::logic::to_text;
use super::{Bucketing, FlagdBody, FlagdFlag};

/// Who is asking, with what context, and when.
#[derive(Debug, Clone, Copy)]
pub struct FlagdInput<'a> {
    /// The evaluation context.
    pub context: &'a Map<String, Value>,
    /// The targeting key, when the caller sends it beside the context (the context's own
    /// `targetingKey` wins).
    pub targeting_key: Option<&'a str>,
    /// `$flagd.timestamp`, epoch seconds.
    pub timestamp: i64,
    /// The `fractional` bucketing in force.
    pub bucketing: Bucketing,
}

impl<'a> FlagdInput<'a> {
    /// The interpreter's environment for evaluating flag `flag_key` with this input
    /// (resolution and `explain` evaluate with the same one).
    pub(super) fn env(&self, flag_key: &'a str) -> Env<'a> {
        Env {
            context: self.context,
            flag_key,
            timestamp: self.timestamp,
            targeting_key: self.targeting_key,
            bucketing: self.bucketing,
        }
    }
}

/// flagd's resolution reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No targeting: the default variant.
    Static,
    /// Targeting answered `null`: the default variant (or the caller's default).
    Default,
    /// Targeting named a variant (`fractional` included: flagd reports no `SPLIT`).
    TargetingMatch,
    /// The flag is disabled: the caller's default.
    Disabled,
    /// See [`FlagdEvaluation::error`].
    Error,
}

impl Reason {
    /// The OpenFeature spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::Default => "DEFAULT",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        }
    }
}

/// OpenFeature error codes a flagd evaluation can end with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The definition is malformed.
    ParseError,
    /// Targeting named no variant of the flag, or stopped at an evaluation bound.
    General,
    /// The value is not of the type the caller asked for ([`FlagdEvaluation::check`]).
    TypeMismatch,
}

impl ErrorCode {
    /// The OpenFeature spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::General => "GENERAL",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
        }
    }
}

/// The value types an OpenFeature client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// `true`/`false`.
    Boolean,
    /// A string.
    String,
    /// A whole number.
    Integer,
    /// Any number.
    Float,
    /// A JSON object.
    Object,
}

/// One evaluation's answer, borrowing from the flag.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagdEvaluation<'a> {
    /// The served value; `None` means the caller's own default applies.
    pub value: Option<&'a Value>,
    /// The served variant's name.
    pub variant: Option<&'a str>,
    /// Why.
    pub reason: Reason,
    /// The error, with a message that never quotes the caller's context.
    pub error: Option<(ErrorCode, Cow<'a, str>)>,
    /// Merged flag-set and flag metadata.
    pub metadata: &'a Map<String, Value>,
}

impl<'a> FlagdEvaluation<'a> {
    fn served(flag: &'a FlagdFlag, body: &'a FlagdBody, name: Option<&'a str>, reason: Reason) -> Self {
        let found = name.and_then(|n| body.variants.get_key_value(n));
        FlagdEvaluation {
            value: found.map(|(_, v)| v),
            variant: found.map(|(k, _)| k.as_str()),
            reason,
            error: None,
            metadata: &flag.metadata,
        }
    }

    fn failed(flag: &'a FlagdFlag, code: ErrorCode, message: Cow<'a, str>) -> Self {
        FlagdEvaluation {
            value: None,
            variant: None,
            reason: Reason::Error,
            error: Some((code, message)),
            metadata: &flag.metadata,
        }
    }

    /// The typed check an OpenFeature client makes: a served value of another type is
    /// `TYPE_MISMATCH` (the caller's default applies). Nothing served passes.
    pub fn check(&self, kind: ValueKind) -> Result<(), ErrorCode> {
        let Some(value) = self.value else { return Ok(()) };
        let fits = match kind {
            ValueKind::Boolean => value.is_boolean(),
            ValueKind::String => value.is_string(),
            ValueKind::Integer => value.as_f64().is_some_and(|f| f.fract() == 0.0),
            ValueKind::Float => value.is_number(),
            ValueKind::Object => value.is_object(),
        };
        if fits {
            Ok(())
        } else {
            Err(ErrorCode::TypeMismatch)
        }
    }
}

/// Evaluates `flag` for `input`, as flagd answers.
pub fn evaluate<'a>(flag: &'a FlagdFlag, input: &FlagdInput<'a>) -> FlagdEvaluation<'a> {
    let body = match &flag.body {
        Ok(body) => body,
        Err(problem) => return FlagdEvaluation::failed(flag, ErrorCode::ParseError, Cow::Borrowed(problem)),
    };
    if !body.enabled {
        return FlagdEvaluation::served(flag, body, None, Reason::Disabled);
    }
    let Some(targeting) = &body.targeting else {
        let reason = if body.default_variant.is_some() { Reason::Static } else { Reason::Default };
        return FlagdEvaluation::served(flag, body, body.default_variant.as_deref(), reason);
    };
    let env = input.env(&flag.key);
    let result = match eval::evaluate(targeting, &env) {
        Ok(result) => result,
        Err(eval::Halt) => {
            return FlagdEvaluation::failed(
                flag,
                ErrorCode::General,
                Cow::Borrowed("targeting exceeded its evaluation bounds"),
            )
        }
    };
    if result.is_null() {
        return FlagdEvaluation::served(flag, body, body.default_variant.as_deref(), Reason::Default);
    }
    match variant_name(&result).and_then(|name| body.variants.get_key_value(name.as_ref())) {
        Some((name, _)) => FlagdEvaluation::served(flag, body, Some(name), Reason::TargetingMatch),
        None => {
            FlagdEvaluation::failed(flag, ErrorCode::General, Cow::Borrowed("targeting named no variant of the flag"))
        }
    }
}

/// The variant a targeting result names: a string as is, a boolean or number by its
/// JSON spelling (flagd reads `true` as variant `"true"`); arrays and objects name none.
fn variant_name(result: &Value) -> Option<Cow<'_, str>> {
    match result {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(_) | Value::Number(_) => {
            let mut text = String::new();
            to_text(result, &mut text);
            Some(Cow::Owned(text))
        }
        _ => None,
    }
}
