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
use crate::eval::{ErrorCode, EvalInput, Evaluation, Evaluator, FlagSource, NoFlags};
use crate::events::EventPipeline;
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
        let outcome = self.outcome_of(&input(subject, wall), key, wall).await;
        self.events.record(subject, wall, std::slice::from_ref(&outcome));
        outcome
    }

    /// Evaluates `keys` (in order, duplicates kept) for `subject` and records the events.
    pub async fn evaluate_keys(&self, subject: &Subject, keys: &[&str]) -> Vec<Outcome> {
        let wall = self.clock.wall();
        let input = input(subject, wall);
        let outcomes = match keys {
            [key] => vec![self.outcome_of(&input, key, wall).await],
            _ => {
                let resolved = Resolved::load(&self.cache, keys, wall).await;
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
    async fn outcome_of(&self, input: &EvalInput<'_>, key: &str, now: SystemTime) -> Outcome {
        let cached = self.cache.get(key, now).await;
        match cached.flag() {
            Some(flag) if flag.has_prerequisites() => {
                let resolved = Resolved::load(&self.cache, &[key], now).await;
                let (unavailable, stale) = resolved.prerequisite_health(flag);
                let mut evaluator = Evaluator::new(*input, resolved.source());
                outcome(&mut evaluator, key, &cached, unavailable, stale)
            }
            _ => outcome(&mut Evaluator::new(*input, &NoFlags), key, &cached, None, false),
        }
    }

    /// Evaluates every flag (in key order) for `subject` and records the events.
    /// `Err` when the store fails and no snapshot can be served.
    pub async fn evaluate_all(&self, subject: &Subject) -> Result<Vec<Outcome>, Arc<StoreError>> {
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
