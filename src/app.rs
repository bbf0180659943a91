//! `App`: what a warm Lambda keeps between invocations (cache, event pipeline, clock),
//! and the one evaluation path every route goes through: cache → evaluator → events.
//!
//! Results leave as [`Outcome`]s: an `Arc` of the flag plus a few indices, so they are
//! cheap to hand to the renderers and to the event buffer without copying strings.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cache::{Cached, FlagCache};
use crate::changes::Changes;
use crate::clock::Clock;
use crate::config::Config;
use crate::eval::{ErrorCode, EvalInput, Evaluation, Evaluator, NoFlags};
use crate::events::EventPipeline;
use crate::flag::CompiledFlag;
use crate::flagd::{self, Bucketing, FlagdInput};
use crate::freshness::{Freshness, ManifestStore};
use crate::metrics::{Metrics, Reading};
use crate::outcome::{Outcome, Subject};
use crate::resolve::Resolved;
use crate::sink::EventSink;
use crate::store::{FlagStore, StoreError};

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
    /// The change-manifest check: invalidates changed flags after responses.
    pub freshness: Freshness,
    /// EMF metrics, written after responses (`None`: off). Set by [`App::with_metrics`].
    pub metrics: Option<Metrics>,
    /// The bucketing flagd flags' `fractional` uses (`FLAGD_FRACTIONAL`).
    pub flagd_fractional: Bucketing,
    /// The configuration's version and the change streams on it.
    pub changes: Changes,
}

impl App {
    /// An app over `store`, sending events to `sink` (`None`: events off).
    /// No change manifest: flags change only by TTL until [`App::with_manifest`].
    pub fn new(store: Arc<dyn FlagStore>, sink: Option<Arc<dyn EventSink>>, config: &Config, clock: Clock) -> Self {
        App {
            cache: FlagCache::new(store, config.cache),
            events: Arc::new(EventPipeline::new(sink, config.events.clone())),
            freshness: Freshness::new(None, config.freshness.every, clock.wall()),
            clock,
            max_batch_flags: config.max_batch_flags,
            metrics: None,
            flagd_fractional: config.flagd_fractional,
            changes: Changes::new(config),
        }
    }

    /// The app reading `manifest` at most once per `FRESHNESS_SECONDS` after responses.
    pub fn with_manifest(mut self, manifest: Arc<dyn ManifestStore>) -> Self {
        self.freshness = Freshness::new(Some(manifest), self.freshness.every(), self.clock.wall());
        self
    }

    /// This app with EMF metrics on: evaluations are tallied per flag from now on.
    pub fn with_metrics(mut self, metrics: Option<Metrics>) -> Self {
        self.events.count_flags(metrics.is_some());
        self.metrics = metrics;
        self
    }

    /// Whether anything must run after each response ([`App::after_response`]); when
    /// not, Lambda runs no extension at all.
    pub fn has_after_response_work(&self) -> bool {
        self.events.enabled() || self.freshness.enabled() || self.metrics.is_some()
    }

    /// The freshness check when one is due (at most one manifest read per window). The
    /// local server's background task calls this; Lambda runs it in [`App::after_response`].
    pub async fn check_freshness(&self) {
        self.freshness.check_if_due(&self.cache, self.clock.wall()).await;
    }

    /// The after-response phase: in Lambda, run by the internal extension once the
    /// response has been posted and before the environment may freeze. Nothing here is on
    /// any request's path: the freshness check and the event flush, each only
    /// when due, then the metrics, when `METRICS_INTERVAL_MS` has passed since
    /// the last emit (so the lines also report this flush's sends and drops).
    pub async fn after_response(&self) {
        self.check_freshness().await;
        if self.events.flush_due(self.clock.wall()) {
            let report = self.events.flush().await;
            tracing::debug!(sent = report.sent, kept = report.kept, "events flushed after the response");
        }
        self.emit_metrics(false);
    }

    /// Writes the EMF lines when they are due (or at once with `force`, for the final
    /// account at shutdown, after the last drain). Returns the lines written.
    pub fn emit_metrics(&self, force: bool) -> usize {
        let Some(metrics) = &self.metrics else { return 0 };
        let now = self.clock.wall();
        if !force && !metrics.due(now) {
            return 0;
        }
        metrics.emit(&self.readings(), self.events.take_flag_counts(), now)
    }

    /// Every counter the metrics report, read now: cumulative ones are turned into
    /// increases since the last emit. One line per metric: add a counter here.
    fn readings(&self) -> Vec<Reading> {
        let cache = self.cache.stats();
        let events = self.events.stats();
        let freshness = self.freshness.stats();
        vec![
            Reading::Cumulative("CacheHits", cache.hits),
            Reading::Cumulative("CacheMisses", cache.misses),
            Reading::Cumulative("CacheStaleServes", cache.stale_serves),
            Reading::Cumulative("CacheEvictions", cache.evictions),
            Reading::Cumulative("StoreReads", cache.store_reads),
            Reading::Cumulative("StoreErrors", cache.store_errors),
            Reading::Cumulative("LenientReads", crate::store::lenient_reads()),
            Reading::Cumulative("EventsRecorded", events.recorded),
            Reading::Cumulative("EventsSampledOut", events.sampled_out),
            Reading::Cumulative("EventsDelivered", events.delivered),
            Reading::Cumulative("EventsDropped", events.dropped),
            Reading::Cumulative("EventRecordsSent", events.sent),
            Reading::Cumulative("EventRecordsRetried", events.retried),
            Reading::Level("EventsBuffered", events.buffered as u64),
            Reading::Cumulative("ManifestChecks", freshness.checks),
            Reading::Cumulative("ManifestReadFailures", freshness.read_failures),
            Reading::Cumulative("ManifestInvalidatedKeys", freshness.invalidated_keys),
            Reading::Cumulative("ManifestInvalidatedAll", freshness.invalidated_all),
        ]
    }

    /// Evaluates one flag for `subject` and records its event: the single-flag routes.
    pub async fn evaluate_one(&self, subject: &Subject, key: &str) -> Outcome {
        // One clock reading per request: evaluation, cache TTLs and events share it.
        let wall = self.clock.wall();
        let inputs = Inputs::new(subject, wall, self.flagd_fractional);
        let outcome = self.outcome_of(&inputs, key, wall).await;
        self.events.record(subject, wall, std::slice::from_ref(&outcome));
        outcome
    }

    /// Evaluates `keys` (in order, duplicates kept) for `subject` and records the events.
    pub async fn evaluate_keys(&self, subject: &Subject, keys: &[&str]) -> Vec<Outcome> {
        let wall = self.clock.wall();
        let inputs = Inputs::new(subject, wall, self.flagd_fractional);
        let outcomes = match keys {
            [key] => vec![self.outcome_of(&inputs, key, wall).await],
            _ => {
                let resolved = Resolved::load(&self.cache, keys, wall).await;
                let mut evaluator = Evaluator::new(inputs.native, resolved.source());
                let mut outcomes = Vec::with_capacity(resolved.requested.len());
                let requested = resolved.requested.iter().map(|(key, cached)| {
                    let health = cached.flag().map_or((None, false), |f| resolved.prerequisite_health(f));
                    (*key, cached, health)
                });
                evaluator.evaluate_each(requested, evaluable, |(key, cached, (unavailable, stale)), e| {
                    outcomes.push(outcome(key, cached, e, &inputs.flagd, unavailable, stale));
                });
                outcomes
            }
        };
        self.events.record(subject, wall, &outcomes);
        outcomes
    }

    /// The common case on its own path: one key, usually a cache hit without
    /// prerequisites, so nothing is allocated for lookups.
    async fn outcome_of(&self, inputs: &Inputs<'_>, key: &str, now: SystemTime) -> Outcome {
        let cached = self.cache.get(key, now).await;
        match cached.flag() {
            Some(flag) if flag.has_prerequisites() => {
                let resolved = Resolved::load(&self.cache, &[key], now).await;
                let (unavailable, stale) = resolved.prerequisite_health(flag);
                let e = native(&cached).map(|flag| Evaluator::new(inputs.native, resolved.source()).evaluate(flag));
                outcome(key, &cached, e.filter(|_| unavailable.is_none()), &inputs.flagd, unavailable, stale)
            }
            _ => {
                let e = native(&cached).map(|flag| Evaluator::new(inputs.native, &NoFlags).evaluate(flag));
                outcome(key, &cached, e, &inputs.flagd, None, false)
            }
        }
    }

    /// Evaluates every flag (in key order) for `subject` and records the events.
    /// `Err` when the store fails and no snapshot can be served.
    pub async fn evaluate_all(&self, subject: &Subject) -> Result<Vec<Outcome>, Arc<StoreError>> {
        let wall = self.clock.wall();
        let snapshot = self.cache.all(wall).await?;
        let inputs = Inputs::new(subject, wall, self.flagd_fractional);
        let mut evaluator = Evaluator::new(inputs.native, &*snapshot.flags);
        let mut outcomes = Vec::with_capacity(snapshot.flags.len());
        // Native flags in SIMD-hashed batches; flagd flags by their own evaluator.
        evaluator.evaluate_each(snapshot.flags.iter(), native_in_snapshot, |flag, e| {
            outcomes.push(match (flag.flagd(), e) {
                (Some(f), _) => Outcome::from_flagd(flag, &flagd::evaluate(f, &inputs.flagd), snapshot.stale),
                (None, Some(e)) => Outcome::from_evaluation(Some(flag), flag.key(), &e, snapshot.stale),
                (None, None) => {
                    Outcome::from_evaluation(Some(flag), flag.key(), &Evaluation::not_found(flag.key()), snapshot.stale)
                }
            });
        });
        self.events.record(subject, wall, &outcomes);
        Ok(outcomes)
    }
}

/// One request's evaluation inputs, for each of the two flag formats.
struct Inputs<'s> {
    native: EvalInput<'s>,
    flagd: FlagdInput<'s>,
}

impl<'s> Inputs<'s> {
    fn new(subject: &'s Subject, wall: SystemTime, bucketing: Bucketing) -> Self {
        let since_epoch = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let user_id = subject.user_id.as_deref();
        Inputs {
            native: EvalInput { user_id, context: &subject.context, now: since_epoch.as_secs_f64() },
            flagd: FlagdInput {
                context: &subject.context,
                targeting_key: user_id,
                timestamp: i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX),
                bucketing,
            },
        }
    }
}

/// A cached Python-schema flag (the native evaluator's), not a flagd one.
fn native(cached: &Cached) -> Option<&CompiledFlag> {
    cached.flag().filter(|f| f.flagd().is_none()).map(|f| &**f)
}

/// A snapshot's flag, when the native evaluator's (not a flagd one).
fn native_in_snapshot<'a>(flag: &&'a Arc<CompiledFlag>) -> Option<&'a CompiledFlag> {
    flag.flagd().is_none().then_some(&***flag)
}

/// The flag a batch item evaluates natively: a cached Python-schema flag whose
/// prerequisites could all be read.
fn evaluable<'a>((_, cached, (unavailable, _)): &(&str, &'a Cached, (Option<&str>, bool))) -> Option<&'a CompiledFlag> {
    native(cached).filter(|_| unavailable.is_none())
}

/// One key's outcome from what the cache said about it and, for a cached native flag
/// whose prerequisites could all be read, its evaluation `e`; a flagd flag is evaluated
/// here.
fn outcome(
    key: &str,
    cached: &Cached,
    e: Option<Evaluation<'_>>,
    flagd_input: &FlagdInput<'_>,
    unavailable_prerequisite: Option<&str>,
    prerequisite_stale: bool,
) -> Outcome {
    match cached {
        Cached::Fresh(flag) | Cached::Stale(flag) => {
            if let Some(missing) = unavailable_prerequisite {
                let message = format!("prerequisite flag `{missing}` could not be read from the flag store");
                return Outcome::failed(Some(flag.clone()), key, ErrorCode::General, message);
            }
            if let Some(f) = flag.flagd() {
                return Outcome::from_flagd(flag, &flagd::evaluate(f, flagd_input), cached.is_stale());
            }
            let Some(e) = e else {
                // Callers evaluate every cached native flag whose prerequisites were
                // read; were one not, a general error is the honest answer, never a panic.
                let message = "the flag was not evaluated".to_owned();
                return Outcome::failed(Some(flag.clone()), key, ErrorCode::General, message);
            };
            Outcome::from_evaluation(Some(flag), key, &e, cached.is_stale() || prerequisite_stale)
        }
        Cached::NotFound => Outcome::from_evaluation(None, key, &Evaluation::not_found(key), false),
        Cached::Unavailable => Outcome::failed(None, key, ErrorCode::General, crate::cache::UNAVAILABLE.to_owned()),
    }
}
