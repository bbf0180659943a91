//! `App`: what a warm Lambda keeps between invocations (cache, event pipeline, clock),
//! and the one evaluation path every route goes through: cache → evaluator → events.
//!
//! Results leave as [`Outcome`]s: an `Arc` of the flag plus a few indices, so they are
//! cheap to hand to the renderers and to the event buffer without copying strings.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::cache::{Cached, FlagCache};
use crate::clock::Clock;
use crate::config::Config;
use crate::eval::{ErrorCode, EvalError, EvalInput, Evaluation, Evaluator, FlagSource, NoFlags, Reason};
use crate::flag::CompiledFlag;
use crate::sink::pipeline::EventPipeline;
use crate::sink::EventSink;
use crate::store::FlagStore;

/// The state shared by every request of one Lambda environment (or local server).
#[derive(Debug)]
pub struct App {
    /// Compiled flags, warm across invocations.
    pub cache: FlagCache,
    /// Buffered evaluation events, flushed after the response.
    pub events: Arc<EventPipeline>,
    /// Time source (a manual clock in tests).
    pub clock: Clock,
    /// Most flag keys one batch may name (`MAX_BATCH_FLAGS`).
    pub max_batch_flags: usize,
}

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
    /// The flag (also when malformed); `None` when it is unknown or could not be read.
    pub flag: Option<Arc<CompiledFlag>>,
    /// The key asked for, kept only when there is no flag to take it from.
    missing_key: Option<Box<str>>,
    /// Whether the flag is on for the user.
    pub enabled: bool,
    /// The native reason.
    pub reason: Reason,
    /// Index of the variant served.
    variant: Option<usize>,
    /// What decided: a `targets` entry, or the rule at an index.
    decided_by: Option<DecidedBy>,
    /// The error, if the evaluation failed.
    pub error: Option<(ErrorCode, Box<str>)>,
    /// Served from a stale cache entry while the store is failing.
    pub stale: bool,
    /// `targeting_rules` matched on the way (for the OFREP reason).
    pub targeting_matched: bool,
    /// A hash (rollout or split) decided (for the OFREP reason).
    pub bucketed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecidedBy {
    Target,
    Rule(usize),
}

impl Outcome {
    /// Keeps an evaluation of `flag` (or of an unknown key) as indices.
    fn from_evaluation(flag: Option<&Arc<CompiledFlag>>, key: &str, e: &Evaluation<'_>, stale: bool) -> Self {
        let body = flag.and_then(|f| f.body().ok());
        let decided_by = match (e.reason, e.rule_id, body) {
            (Reason::TargetMatch, _, _) => Some(DecidedBy::Target),
            (Reason::RuleMatch, Some(id), Some(body)) => body.rule_index(id).map(DecidedBy::Rule),
            _ => None,
        };
        Outcome {
            flag: flag.cloned(),
            missing_key: if flag.is_none() { Some(Box::from(key)) } else { None },
            enabled: e.enabled,
            reason: e.reason,
            variant: e.variant.and_then(|v| body.and_then(|b| b.variant_index(v))),
            decided_by,
            error: e.error.as_ref().map(|err| (err.code, Box::from(&*err.message))),
            stale,
            targeting_matched: e.targeting_matched,
            bucketed: e.bucketed,
        }
    }

    /// A failed evaluation with `code` and `message`.
    pub fn failed(flag: Option<Arc<CompiledFlag>>, key: &str, code: ErrorCode, message: String) -> Self {
        Outcome {
            missing_key: if flag.is_none() { Some(Box::from(key)) } else { None },
            flag,
            enabled: false,
            reason: Reason::Error,
            variant: None,
            decided_by: None,
            error: Some((code, message.into())),
            stale: false,
            targeting_matched: false,
            bucketed: false,
        }
    }

    /// The flag key.
    pub fn key(&self) -> &str {
        match (&self.flag, &self.missing_key) {
            (Some(flag), _) => flag.key(),
            (None, Some(key)) => key,
            (None, None) => "",
        }
    }

    /// The error code, if the evaluation failed.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.error.as_ref().map(|(code, _)| *code)
    }

    /// The evaluation again, borrowed: the one place that knows how to map a result to
    /// OFREP values and variants ([`Evaluation::value`]) is reused, not duplicated.
    pub fn view(&self) -> Evaluation<'_> {
        let flag = self.flag.as_deref();
        let body = flag.and_then(|f| f.body().ok());
        Evaluation {
            key: self.key(),
            flag,
            enabled: self.enabled,
            reason: self.reason,
            variant: self.variant.and_then(|i| body.and_then(|b| b.variants().get(i))),
            rule_id: match self.decided_by {
                Some(DecidedBy::Target) => Some("target"),
                Some(DecidedBy::Rule(i)) => body.and_then(|b| b.rule_id(i)),
                None => None,
            },
            error: self.error.as_ref().map(|(code, message)| EvalError::new(*code, &**message)),
            targeting_matched: self.targeting_matched,
            bucketed: self.bucketed,
        }
    }
}

impl App {
    /// An app over `store`, sending events to `sink` (`None`: events off).
    pub fn new(store: Arc<dyn FlagStore>, sink: Option<Arc<dyn EventSink>>, config: &Config, clock: Clock) -> Self {
        App {
            cache: FlagCache::new(store, config.cache),
            events: Arc::new(EventPipeline::new(sink, config.events.clone())),
            clock,
            max_batch_flags: config.max_batch_flags,
        }
    }

    /// Evaluates `keys` (in order, duplicates kept) for `subject` and records the events.
    pub async fn evaluate_keys(&self, subject: &Subject, keys: &[&str]) -> Vec<Outcome> {
        // One clock reading per request: evaluation, cache TTLs and events share it.
        let wall = self.clock.wall();
        let now = wall;
        let input = input(subject, wall);
        let outcomes = match keys {
            [key] => self.evaluate_one(&input, key, now).await,
            _ => {
                let resolved = self.cache.resolve(keys, now).await;
                let mut evaluator = Evaluator::new(input, resolved.source());
                resolved
                    .requested
                    .iter()
                    .map(|(key, cached)| {
                        let (unavailable, prerequisite_stale) =
                            cached.flag().map_or((None, false), |f| resolved.prerequisite_health(f));
                        outcome(&mut evaluator, key, cached, unavailable, prerequisite_stale)
                    })
                    .collect()
            }
        };
        self.events.record(subject, wall, &outcomes);
        outcomes
    }

    /// The common case on its own path: one key, usually a cache hit without
    /// prerequisites, so nothing is allocated for lookups.
    async fn evaluate_one(&self, input: &EvalInput<'_>, key: &str, now: SystemTime) -> Vec<Outcome> {
        let cached = self.cache.get(key, now).await;
        let result = match cached.flag() {
            Some(flag) if flag.has_prerequisites() => {
                let resolved = self.cache.resolve(&[key], now).await;
                let (unavailable, stale) = resolved.prerequisite_health(flag);
                let mut evaluator = Evaluator::new(*input, resolved.source());
                outcome(&mut evaluator, key, &cached, unavailable, stale)
            }
            _ => outcome(&mut Evaluator::new(*input, &NoFlags), key, &cached, None, false),
        };
        vec![result]
    }

    /// Evaluates every flag (in key order) for `subject` and records the events.
    /// `Err` when the store fails and no snapshot can be served.
    pub async fn evaluate_all(&self, subject: &Subject) -> Result<Vec<Outcome>, Arc<str>> {
        let wall = self.clock.wall();
        let snapshot = self.cache.all(wall).await?;
        let mut evaluator = Evaluator::new(input(subject, wall), &*snapshot.flags);
        let outcomes: Vec<Outcome> = snapshot
            .flags
            .iter()
            .map(|flag| {
                let e = evaluator.evaluate(flag);
                Outcome::from_evaluation(Some(flag), flag.key(), &e, snapshot.stale)
            })
            .collect();
        self.events.record(subject, wall, &outcomes);
        Ok(outcomes)
    }
}

fn input(subject: &Subject, wall: SystemTime) -> EvalInput<'_> {
    let now = wall.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    EvalInput { user_id: subject.user_id.as_deref(), context: &subject.context, now }
}

/// One key's outcome from what the cache said about it.
fn outcome<'a, S: FlagSource + ?Sized>(
    evaluator: &mut Evaluator<'a, '_, S>,
    key: &str,
    cached: &'a Cached,
    unavailable_prerequisite: Option<&str>,
    prerequisite_stale: bool,
) -> Outcome {
    match cached {
        Cached::Fresh(flag) | Cached::Stale(flag) => {
            if let Some(missing) = unavailable_prerequisite {
                let message = format!("prerequisite flag `{missing}` could not be read from the flag store");
                return Outcome::failed(Some(flag.clone()), key, ErrorCode::General, message);
            }
            // The evaluator borrows from the flag; the outcome keeps its own `Arc`.
            let e = evaluator.evaluate(flag);
            Outcome::from_evaluation(Some(flag), key, &e, cached.is_stale() || prerequisite_stale)
        }
        Cached::NotFound => Outcome::from_evaluation(None, key, &Evaluation::not_found(key), false),
        Cached::Unavailable => Outcome::failed(None, key, ErrorCode::General, crate::cache::UNAVAILABLE.to_owned()),
    }
}
