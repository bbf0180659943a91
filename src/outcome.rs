//! What one evaluation produced, owned: [`Outcome`] (an `Arc` of the flag plus a few
//! indices, cheap to hand to the renderers and to the event buffer without copying
//! strings) and [`Subject`], who asked.
//!
//! Imports only `flag` and `eval`, so both the app (which makes outcomes) and the event
//! pipeline (which records them) sit above it.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::eval::{ErrorCode, EvalError, Evaluation, Reason};
use crate::flag::{CompiledFlag, DecidedBy, Variant};
use crate::flagd;

/// Who is asking: the parts of a request every evaluation in it shares.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The user id (`targetingKey`); `None` when the caller sent none.
    pub user_id: Option<Arc<str>>,
    /// The evaluation context, shared with the event buffer without a copy.
    pub context: Arc<Map<String, Value>>,
    /// Request id for events (the Lambda request id, or one made up locally).
    pub request_id: Arc<str>,
}

/// One flag's result, owned and cheap to clone.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The flag evaluated, or the key asked for when there was none.
    subject_flag: OutcomeFlag,
    /// Whether the flag is on for the user.
    pub enabled: bool,
    /// Served with a reason, or failed with an error: one field, so they cannot disagree.
    verdict: Verdict,
    /// Index of the variant served.
    variant: Option<usize>,
    /// What decided: a `targets` entry, or the rule at an index.
    decided_by: Option<DecidedBy>,
    /// Served from a stale cache entry while the store is failing.
    pub stale: bool,
    /// `targeting_rules` matched on the way (for the OFREP reason).
    pub targeting_matched: bool,
    /// A hash (rollout or split) decided (for the OFREP reason).
    pub bucketed: bool,
    /// For a flagd flag: flagd's own reason and variant (the value is read from the flag).
    flagd: Option<FlagdServed>,
}

/// What a flagd evaluation served, kept beside the native fields so routes that speak
/// OpenFeature answer with flagd's reason, variant and metadata.
#[derive(Debug, Clone)]
pub struct FlagdServed {
    /// flagd's reason.
    pub reason: flagd::Reason,
    /// The served variant's name; `None` when the caller's default applies.
    pub variant: Option<Box<str>>,
}

/// The flag an outcome is about: either the flag itself (also when malformed), or only
/// the key asked for when it is unknown or could not be read. Never neither.
#[derive(Debug, Clone)]
enum OutcomeFlag {
    Known(Arc<CompiledFlag>),
    Missing(Box<str>),
}

impl OutcomeFlag {
    fn new(flag: Option<Arc<CompiledFlag>>, key: &str) -> Self {
        match flag {
            Some(flag) => OutcomeFlag::Known(flag),
            None => OutcomeFlag::Missing(Box::from(key)),
        }
    }
}

/// How an evaluation ended. A failure's reason follows from its code
/// (`FLAG_NOT_FOUND` → `flag_not_found`, anything else → `error`).
#[derive(Debug, Clone)]
enum Verdict {
    Served(Reason),
    Failed(ErrorCode, Box<str>),
}

impl Outcome {
    /// Keeps an evaluation of `flag` (or of an unknown key) as indices.
    pub(crate) fn from_evaluation(
        flag: Option<&Arc<CompiledFlag>>,
        key: &str,
        e: &Evaluation<'_>,
        stale: bool,
    ) -> Self {
        let verdict = match e.error() {
            Some(error) => Verdict::Failed(error.code, Box::from(&*error.message)),
            None => Verdict::Served(e.reason()),
        };
        Outcome {
            subject_flag: OutcomeFlag::new(flag.cloned(), key),
            enabled: e.enabled,
            verdict,
            variant: e.variant.map(Variant::index),
            decided_by: e.decided_by,
            stale,
            targeting_matched: e.targeting_matched,
            bucketed: e.bucketed,
            flagd: None,
        }
    }

    /// Keeps a flagd evaluation of `flag`. The native fields get their nearest
    /// meaning (served → enabled, targeting → `rule_match`) for routes and events that
    /// speak the native vocabulary.
    pub(crate) fn from_flagd(flag: &Arc<CompiledFlag>, e: &flagd::FlagdEvaluation<'_>, stale: bool) -> Self {
        let verdict = match &e.error {
            Some((code, message)) => Verdict::Failed(flagd_code(*code), Box::from(&**message)),
            None => Verdict::Served(match e.reason {
                flagd::Reason::Disabled => Reason::FlagDisabled,
                flagd::Reason::TargetingMatch => Reason::RuleMatch,
                flagd::Reason::Error => Reason::Error,
                flagd::Reason::Static => Reason::Enabled,
                // Targeting (or a flag without `defaultVariant`) left the default in place.
                flagd::Reason::Default if e.value.is_some() => Reason::Enabled,
                flagd::Reason::Default => Reason::TargetingRulesNotMet,
            }),
        };
        Outcome {
            subject_flag: OutcomeFlag::Known(flag.clone()),
            enabled: e.value.is_some(),
            verdict,
            variant: None,
            decided_by: None,
            stale,
            targeting_matched: e.reason == flagd::Reason::TargetingMatch,
            bucketed: false,
            flagd: Some(FlagdServed { reason: e.reason, variant: e.variant.map(Box::from) }),
        }
    }

    /// flagd's reason and variant, for a flagd flag.
    pub fn flagd(&self) -> Option<&FlagdServed> {
        self.flagd.as_ref()
    }

    /// A failed evaluation with `code` and `message`.
    pub fn failed(flag: Option<Arc<CompiledFlag>>, key: &str, code: ErrorCode, message: String) -> Self {
        Outcome {
            subject_flag: OutcomeFlag::new(flag, key),
            enabled: false,
            verdict: Verdict::Failed(code, message.into()),
            variant: None,
            decided_by: None,
            stale: false,
            targeting_matched: false,
            bucketed: false,
            flagd: None,
        }
    }

    /// The flag key.
    pub fn key(&self) -> &str {
        match &self.subject_flag {
            OutcomeFlag::Known(flag) => flag.key(),
            OutcomeFlag::Missing(key) => key,
        }
    }

    /// The flag (also when malformed); `None` when it is unknown or could not be read.
    pub fn flag(&self) -> Option<&Arc<CompiledFlag>> {
        match &self.subject_flag {
            OutcomeFlag::Known(flag) => Some(flag),
            OutcomeFlag::Missing(_) => None,
        }
    }

    /// The native reason.
    pub fn reason(&self) -> Reason {
        match &self.verdict {
            Verdict::Served(reason) => *reason,
            Verdict::Failed(ErrorCode::FlagNotFound, _) => Reason::FlagNotFound,
            Verdict::Failed(..) => Reason::Error,
        }
    }

    /// The error code and message, if the evaluation failed.
    pub fn error(&self) -> Option<(ErrorCode, &str)> {
        match &self.verdict {
            Verdict::Served(_) => None,
            Verdict::Failed(code, message) => Some((*code, message)),
        }
    }

    /// The error code, if the evaluation failed.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.error().map(|(code, _)| code)
    }

    /// The flagd variant served and its value, for a flagd flag that served one.
    pub fn flagd_value(&self) -> Option<(&str, &Value)> {
        let name = self.flagd.as_ref()?.variant.as_deref()?;
        self.flag()?.flagd()?.variant(name)
    }

    /// The evaluation again, borrowed: the one place that knows how to map a result to
    /// OFREP values and variants ([`Evaluation::value`]) is reused, not duplicated.
    pub fn view(&self) -> Evaluation<'_> {
        let flag = self.flag().map(|f| &**f);
        let body = flag.and_then(|f| f.body().ok());
        let mut e = match &self.verdict {
            Verdict::Served(reason) => Evaluation::served(self.key(), flag, *reason),
            Verdict::Failed(code, message) => Evaluation::failed(self.key(), flag, EvalError::new(*code, &**message)),
        };
        e.enabled = self.enabled;
        e.variant = self.variant.and_then(|i| body.and_then(|b| b.variants().get(i)));
        e.decided_by = self.decided_by;
        e.targeting_matched = self.targeting_matched;
        e.bucketed = self.bucketed;
        e
    }
}

/// The native code for a flagd one (flagd's codes are a subset).
fn flagd_code(code: flagd::ErrorCode) -> ErrorCode {
    match code {
        flagd::ErrorCode::ParseError => ErrorCode::ParseError,
        flagd::ErrorCode::General | flagd::ErrorCode::TypeMismatch => ErrorCode::General,
    }
}
