//! The pure evaluator: the evaluation order of docs/flag-format.md, over compiled flags.
//!
//! No I/O, no async, no clock: the caller passes the user, the context and the time.
//! Evaluation never fails with `Err` — a malformed flag, a missing user id or an
//! unknown prerequisite are outcomes ([`Evaluation::error`]), exactly like LaunchDarkly's
//! `Reason::Error`. Nothing is parsed or formatted on the way; a hash costs one MD5.

mod batch;
mod graph;
mod result;
mod source;
mod trace;

pub use result::{ErrorCode, EvalError, Evaluation, FlagValue, Reason};
pub use source::{FlagSet, FlagSource, NoFlags};
pub use trace::{NoTrace, Trace};

/// Checks the prerequisite graph below `flag` in `source` as the evaluator does before
/// evaluating it: `Err` (`PARSE_ERROR`) names a cycle or a chain deeper than
/// [`crate::flag::MAX_PREREQUISITE_DEPTH`]. `flagctl validate` uses it, so what it rejects is
/// exactly what the function would answer as malformed.
pub fn check_prerequisites<'a, S: FlagSource + ?Sized>(
    flag: &'a CompiledFlag,
    source: &'a S,
) -> Result<(), EvalError<'a>> {
    graph::check(flag, source)
}

use serde_json::{Map, Value};

use crate::bucket;
use crate::flag::{Clause, CompiledFlag, FlagBody, Prerequisite, Serve, Variant};

/// Who is asking, with what context, and when.
#[derive(Debug, Clone, Copy)]
pub struct EvalInput<'c> {
    /// The user id (OFREP `targetingKey`); `None` or blank when the caller sent none.
    pub user_id: Option<&'c str>,
    /// Top-level context attributes.
    pub context: &'c Map<String, Value>,
    /// Evaluation time in epoch seconds: the value of the `now` attribute unless the
    /// context sets one.
    pub now: f64,
}

/// Evaluates flags for one user and context, sharing both across many flags and
/// memoising prerequisite outcomes within the call (a batch is one `Evaluator`).
///
/// `T` observes the decisions ([`Trace`], for `flagctl explain`); the default,
/// [`NoTrace`], compiles away.
pub struct Evaluator<'a, 'c, S: ?Sized, T: Trace = NoTrace> {
    input: EvalInput<'c>,
    source: &'a S,
    /// Prerequisite key → (enabled, variant), for outcomes that do not depend on the
    /// chain they were reached through. Batches have few prerequisites: a Vec is fastest.
    memo: Vec<(&'a str, bool, Option<&'a str>)>,
    trace: T,
    /// The next root flag's hashes, computed ahead by [`Evaluator::evaluate_each`]
    /// (empty otherwise); taken by that flag's evaluation.
    pre: batch::Prehashed,
}

impl<'a, 'c, S: FlagSource + ?Sized> Evaluator<'a, 'c, S> {
    /// An evaluator for `input`; prerequisites are looked up in `source`.
    pub fn new(input: EvalInput<'c>, source: &'a S) -> Self {
        Evaluator { input, source, memo: Vec::new(), trace: NoTrace, pre: batch::Prehashed::default() }
    }
}

impl<'a, 'c, S: FlagSource + ?Sized, T: Trace> Evaluator<'a, 'c, S, T> {
    /// An evaluator that reports its decisions to `trace` (see [`Trace`]).
    pub fn with_trace(input: EvalInput<'c>, source: &'a S, trace: T) -> Self {
        Evaluator { input, source, memo: Vec::new(), trace, pre: batch::Prehashed::default() }
    }

    /// Evaluates the flag stored under `key` in the source (or `flag_not_found`).
    pub fn evaluate_key(&mut self, key: &'a str) -> Evaluation<'a> {
        match self.source.flag(key) {
            Some(flag) => self.evaluate(flag),
            None => Evaluation::not_found(key),
        }
    }

    /// Evaluates one flag.
    #[inline]
    pub fn evaluate(&mut self, flag: &'a CompiledFlag) -> Evaluation<'a> {
        self.eval_flag(flag, true)
    }

    // Inlined into the caller, so the result is built in the caller's frame and its
    // fields read from there: returning it from a call, after its one-byte fields were
    // just set, means copying it with wide loads over narrow stores, which stalls the
    // CPU for longer than the rest of a rollout's bookkeeping takes.
    #[inline]
    fn eval_flag(&mut self, flag: &'a CompiledFlag, root: bool) -> Evaluation<'a> {
        let mut result = Evaluation::served(flag.key(), Some(flag), Reason::FlagDisabled);
        if let Err(error) = self.eval_into(flag, root, &mut result) {
            result = Evaluation::failed(flag.key(), Some(flag), error);
        }
        result
    }

    /// The evaluation order for `flag`, writing into `out` (which starts as "off"). `root`: the flag
    /// asked for, not one of its prerequisites.
    #[inline(never)]
    fn eval_into(&mut self, flag: &'a CompiledFlag, root: bool, out: &mut Evaluation<'a>) -> Result<(), EvalError<'a>> {
        // Hashes computed ahead belong to the root flag, never to its prerequisites.
        let pre = if root { std::mem::take(&mut self.pre) } else { batch::Prehashed::default() };
        let body = flag.body().map_err(|message| EvalError::new(ErrorCode::ParseError, message))?;
        if root && !body.prerequisites.is_empty() {
            // The whole graph below, before anything user-dependent: a cycle or an
            // over-deep chain is malformed for everyone, even when the flag is off. Every
            // prerequisite below a valid root is valid too, so only roots are walked.
            graph::check(flag, self.source)?;
        }
        if !body.enabled {
            return Ok(());
        }
        for prerequisite in body.prerequisites.iter() {
            if !self.prerequisite_holds(prerequisite)? {
                out.reason = Reason::PrerequisiteFailed;
                return Ok(());
            }
        }
        self.decide(body, out, pre)
    }

    /// Steps 4–8 of the evaluation order, writing into `out` (which starts as "off").
    fn decide(&self, body: &'a FlagBody, out: &mut Evaluation<'a>, pre: batch::Prehashed) -> Result<(), EvalError<'a>> {
        let context = self.input.context;
        if !body.targets.is_empty() {
            let user = self.user_id()?;
            if let Some(&i) = body.target_index.get(user) {
                return self.serve(body, &body.targets[i], Reason::TargetMatch, out, pre);
            }
        }
        if let Some(rule) = body.rules.iter().find(|r| all_match(&r.clauses, context, self.input.now, &self.trace)) {
            return self.serve(body, &rule.serve, Reason::RuleMatch, out, pre);
        }
        if !body.targeting_rules.is_empty() {
            // Python: a non-empty rule list never matches an empty or absent context.
            if context.is_empty() || !all_match(&body.targeting_rules, context, self.input.now, &self.trace) {
                out.reason = Reason::TargetingRulesNotMet;
                return Ok(());
            }
            out.targeting_matched = true;
        }
        if body.rollout < 100.0 {
            // 0 % needs no hash (and no user); anything between is a split.
            let admitted = body.rollout > 0.0 && {
                out.bucketed = true;
                bucket::admits(body.rollout, self.hash(body, &body.rollout_suffix, pre.rollout)?)
            };
            if !admitted {
                out.reason = Reason::NotInRollout;
                return Ok(());
            }
        }
        out.enabled = true;
        out.reason = Reason::Enabled;
        out.variant = self.split(body, out, pre)?;
        Ok(())
    }

    /// A target's or rule's `serve`.
    fn serve(
        &self,
        body: &'a FlagBody,
        serve: &'a Serve,
        reason: Reason,
        out: &mut Evaluation<'a>,
        pre: batch::Prehashed,
    ) -> Result<(), EvalError<'a>> {
        out.reason = reason;
        out.decided_by = Some(serve.decided_by);
        if !serve.enabled {
            return Ok(());
        }
        if let Some((percentage, suffix)) = &serve.rollout {
            out.bucketed = *percentage > 0.0 && *percentage < 100.0;
            let admitted = if out.bucketed {
                bucket::admits(*percentage, self.hash(body, suffix, None)?)
            } else {
                // 0 % or 100 %: no hash, but still no bucketing without an id.
                self.bucket_id(body)?;
                *percentage >= 100.0
            };
            if !admitted {
                return Ok(());
            }
        }
        out.enabled = true;
        out.variant = match serve.variant {
            Some(i) => Some(&body.variants[i]),
            None => self.split(body, out, pre)?,
        };
        Ok(())
    }

    /// The variant split (docs/flag-format.md), then Python's `variant or default_variant`.
    fn split(
        &self,
        body: &'a FlagBody,
        out: &mut Evaluation<'a>,
        pre: batch::Prehashed,
    ) -> Result<Option<&'a Variant>, EvalError<'a>> {
        if let Some(message) = &body.split_error {
            return Err(EvalError::new(ErrorCode::ParseError, &**message));
        }
        let chosen = match &body.variants[..body.split_len] {
            [] => return Ok(None),
            // One variant is served whatever the hash says (the walk falls back to the last).
            [only] => only,
            variants => {
                out.bucketed = true;
                // `h / 4294967295.0 < cumulative`, as an integer comparison (`below`).
                let h = u64::from(self.hash(body, &body.variant_suffix, pre.variant)?);
                variants.iter().find(|v| h < v.below).unwrap_or(&variants[variants.len() - 1])
            }
        };
        Ok(if chosen.key.is_empty() { body.default_variant.map(|i| &body.variants[i]) } else { Some(chosen) })
    }

    fn user_id(&self) -> Result<&'c str, EvalError<'a>> {
        // Blank is `id.trim().is_empty()`: every character whitespace. Asked this way the
        // answer comes at the first character of an ordinary id, inline (`trim` is a call
        // that looks at both ends).
        match self.input.user_id {
            Some(id) if !id.chars().all(char::is_whitespace) => Ok(id),
            _ => Err(no_user_id()),
        }
    }

    /// `h("{id}{suffix}")` where the id is the `bucket_by` attribute's string form, else
    /// the user id; `pre` when [`Evaluator::evaluate_each`] computed it ahead (only
    /// untraced evaluators do, so a trace sees every hash). (Hashing here rather than
    /// returning the id keeps the common path — no `bucket_by` — free of copying an id
    /// buffer through a `Result`.) Always inlined: the hash then stays in a register
    /// instead of coming back through a `Result` in memory.
    #[inline(always)]
    fn hash(&self, body: &FlagBody, suffix: &[u8], pre: Option<u32>) -> Result<u32, EvalError<'a>> {
        if let Some(h) = pre {
            return Ok(h);
        }
        if let Some(attribute) = &body.bucket_by {
            if let Some(id) = self.input.context.get(&**attribute).and_then(BucketId::of) {
                let h = bucket::hash(id.as_str(), suffix);
                self.trace.hash(id.as_str(), suffix, h);
                return Ok(h);
            }
        }
        let id = self.user_id()?;
        let h = bucket::hash(id, suffix);
        self.trace.hash(id, suffix, h);
        Ok(h)
    }

    /// The id hashed for buckets: the `bucket_by` attribute's string form, else the user id.
    fn bucket_id(&self, body: &FlagBody) -> Result<BucketId<'c>, EvalError<'a>> {
        if let Some(attribute) = &body.bucket_by {
            if let Some(id) = self.input.context.get(&**attribute).and_then(BucketId::of) {
                return Ok(id);
            }
        }
        self.user_id().map(BucketId::Str)
    }

    /// Whether prerequisite `p` holds. The graph below the root was checked first
    /// ([`graph::check`]), so this recursion ends within the depth limit, and an
    /// outcome is the same whichever flag reached it (hence the memo).
    fn prerequisite_holds(&mut self, p: &'a Prerequisite) -> Result<bool, EvalError<'a>> {
        let key: &'a str = &p.key;
        let (enabled, variant) = match self.memo.iter().find(|m| m.0 == key) {
            Some(&(_, enabled, variant)) => (enabled, variant),
            None => {
                let Some(flag) = self.source.flag(key) else {
                    return Ok(false); // a missing prerequisite fails it
                };
                let result = self.eval_flag(flag, false);
                match result.error {
                    Some(e) if e.broken_chain || e.code == ErrorCode::TargetingKeyMissing => return Err(e),
                    Some(_) => return Ok(false),
                    None => {
                        self.memo.push((key, result.enabled, result.variant_key()));
                        (result.enabled, result.variant_key())
                    }
                }
            }
        };
        Ok(enabled == p.enabled && p.variant.as_deref().is_none_or(|want| variant == Some(want)))
    }
}

#[cold]
fn no_user_id<'a>() -> EvalError<'a> {
    EvalError::new(ErrorCode::TargetingKeyMissing, "this flag needs a user id (targetingKey) and none was given")
}

/// The string hashed for a bucket, borrowed when it already is a string.
enum BucketId<'c> {
    Str(&'c str),
    /// A number or boolean attribute, written out (serde_json's form, at most 24 bytes).
    Owned([u8; 32], usize),
}

impl<'c> BucketId<'c> {
    fn of(value: &'c Value) -> Option<Self> {
        use std::io::Write;
        let mut buf = [0u8; 32];
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        match value {
            Value::String(s) if !s.is_empty() => return Some(BucketId::Str(s)),
            Value::Number(n) => write!(cursor, "{n}").ok()?,
            Value::Bool(b) => write!(cursor, "{b}").ok()?,
            _ => return None,
        }
        let len = cursor.position() as usize;
        Some(BucketId::Owned(buf, len))
    }

    fn as_str(&self) -> &str {
        match self {
            BucketId::Str(s) => s,
            // Only ASCII digits, signs, '.', 'e' and letters of true/false are written.
            BucketId::Owned(buf, len) => std::str::from_utf8(&buf[..*len]).unwrap_or_default(),
        }
    }
}

/// Whether every clause matches (an empty list matches); each verdict is told to `trace`.
fn all_match(clauses: &[Clause], context: &Map<String, Value>, now: f64, trace: &impl Trace) -> bool {
    clauses.iter().all(|c| {
        let matched = c.matches(context, now);
        trace.clause(c, matched);
        matched
    })
}

#[cfg(test)]
mod tests;
