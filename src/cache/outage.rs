//! When the store fails: the retry policy and stale-if-error.
//!
//! A store *error* is never remembered as "no such flag". Two rules decide when the
//! store is asked again after failures:
//!
//! - **Per target.** A failed read leaves *that* key (or the every-flag snapshot) alone
//!   for [`ERROR_BACKOFF`], counted from when the failure is known; meanwhile what is
//!   held for it is served stale (a flag, or "not found"). Every other key and the
//!   snapshot keep being read: a store that fails part of its calls costs each target
//!   some retries, and never stops one because others failed (one shared backoff did:
//!   with half the calls failing, the snapshot, asked for less often than keys, was read
//!   once in 20 s).
//! - **Store-wide, a failure budget.** At most [`FAILURE_BURST`] failed calls at once,
//!   refilled at [`FAILURES_PER_SECOND`]; with it spent, no call is made until it
//!   refills (stale values are served, uncached keys fail at once). Successes cost
//!   nothing, so a partial outage whose failures stay under the rate is not held back,
//!   while a full outage (or a hanging store) costs a few calls a second however many
//!   keys are asked for, never one per request.
//!
//! A value is servable stale until `ttl + stale_if_error` after it was fetched, a
//! not-found until `negative_ttl + stale_if_error` after the store said so; past that,
//! the answer is [`super::Cached::Unavailable`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{lock, Cached, FlagCache, FlightResult};
use crate::store::StoreError;

/// After a failed read, how long that key (or the snapshot) is left alone: what is held
/// for it is served stale meanwhile.
pub const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Failed store calls allowed at once before the failure budget holds calls back.
pub const FAILURE_BURST: f64 = 10.0;

/// Failed store calls allowed per second once the burst is spent.
pub const FAILURES_PER_SECOND: f64 = 5.0;

/// What an answer says when the store failed and nothing usable is cached: the same
/// short text whatever went wrong (the details, SDK dumps with endpoints and request
/// ids, go to the log only).
pub const UNAVAILABLE: &str = "flag store unavailable";

/// What a store call reads: its failure holds back only that.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target<'a> {
    /// These keys (one `get`, or one `get_many`).
    Keys(&'a [Box<str>]),
    /// The every-flag snapshot (a `Scan`).
    Snapshot,
}

/// The store-wide failure budget (a token bucket over the requests' clock) and the
/// snapshot's own retry time. Behind one `std` mutex, taken only off the hit path.
#[derive(Debug)]
pub(super) struct Outage {
    /// Failed calls that may still be made now.
    tokens: f64,
    /// The time `tokens` was last refilled to.
    refilled: Option<SystemTime>,
    /// The last failure: what a call the budget refuses fails with.
    why: Option<Arc<StoreError>>,
    /// After a failed scan: not scanned again before this.
    pub(super) snapshot_retry_at: Option<SystemTime>,
}

impl Default for Outage {
    fn default() -> Self {
        Outage { tokens: FAILURE_BURST, refilled: None, why: None, snapshot_retry_at: None }
    }
}

impl Outage {
    /// Adds what the budget earned since the last refill (a `now` older than that, from
    /// a request that read the clock earlier, earns nothing).
    fn refill(&mut self, now: SystemTime) {
        if let Some(earned) = self.refilled.and_then(|last| now.duration_since(last).ok()) {
            self.tokens = (self.tokens + earned.as_secs_f64() * FAILURES_PER_SECOND).min(FAILURE_BURST);
        }
        if self.refilled.is_none_or(|last| now > last) {
            self.refilled = Some(now);
        }
    }

    /// Why no call may be made at `now`, if the failure budget is spent.
    pub(super) fn refused(&mut self, now: SystemTime) -> Option<Arc<StoreError>> {
        self.refill(now);
        if self.tokens >= 1.0 {
            return None;
        }
        self.why.clone()
    }

    /// A call failed, known at `known`: it is paid from the budget.
    fn failed(&mut self, known: SystemTime, why: Arc<StoreError>) {
        self.refill(known);
        self.tokens = (self.tokens - 1.0).max(0.0);
        self.why = Some(why);
    }
}

impl FlagCache {
    /// Whether a value fetched at `fetched` may still be served stale at `now`.
    pub(super) fn servable_stale(&self, fetched: SystemTime, now: SystemTime) -> bool {
        now < fetched + self.config.ttl + self.config.stale_if_error
    }

    /// Whether a not-found said at `at` may still be served stale at `now`.
    pub(super) fn servable_stale_missing(&self, at: SystemTime, now: SystemTime) -> bool {
        now < at + self.config.negative_ttl + self.config.stale_if_error
    }

    /// Whether a target whose own retry time is `retry_at` is left alone at `now`: its
    /// last read failed less than [`ERROR_BACKOFF`] ago, or the failure budget is spent.
    pub(super) fn holding_off(&self, retry_at: Option<SystemTime>, now: SystemTime) -> bool {
        retry_at.is_some_and(|at| now < at) || lock(&self.outage).refused(now).is_some()
    }

    /// Calls the store for `target` unless the failure budget is spent — then fails at
    /// once with the last error. Counts reads and errors. A failure leaves `target` alone
    /// for [`ERROR_BACKOFF`] and is paid from the budget.
    ///
    /// Backoffs run from when the failure is known: `now` (the request's clock reading)
    /// plus how long the call took. Measured from `now` alone, a call that took as long as
    /// the backoff to time out would leave a backoff that had already ended, and every
    /// request would wait on the hanging store in turn.
    pub(super) async fn call_store<T>(
        &self,
        target: Target<'_>,
        now: SystemTime,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, Arc<StoreError>> {
        if let Some(why) = lock(&self.outage).refused(now) {
            return Err(why);
        }
        self.count(|c| c.store_reads += 1);
        // tokio's clock, so tests with paused time see a hanging call take its time.
        let started = tokio::time::Instant::now();
        let result = call.await;
        let took = started.elapsed();
        match result {
            Ok(value) => {
                if let Target::Snapshot = target {
                    lock(&self.outage).snapshot_retry_at = None;
                }
                Ok(value)
            }
            Err(error) => {
                self.count(|c| c.store_errors += 1);
                let (what, keys) = match target {
                    Target::Keys(keys) => ("read", keys.len()),
                    Target::Snapshot => ("scan", 0),
                };
                tracing::warn!(error = %error, keys, took_ms = took.as_millis(), "flag store {what} failed; not retried for {ERROR_BACKOFF:?}");
                let why = Arc::new(error);
                let known = now + took;
                let until = known + ERROR_BACKOFF;
                if let Target::Keys(keys) = target {
                    let mut entries = lock(&self.entries);
                    keys.iter().for_each(|key| entries.retry_at(key, until));
                }
                let mut outage = lock(&self.outage);
                if let Target::Snapshot = target {
                    outage.snapshot_retry_at = Some(until);
                }
                outage.failed(known, why.clone());
                Err(why)
            }
        }
    }

    /// Turns a key flight's result into the answer for one key: after a failure, what is
    /// held for it (a flag or a not-found) if it is young enough to serve stale.
    pub(super) fn settle(&self, key: &str, result: FlightResult, now: SystemTime) -> Cached {
        match result {
            Ok(found) => match found.get(key) {
                Some(Some(flag)) => Cached::Fresh(flag.clone()),
                _ => Cached::NotFound,
            },
            Err(_) => {
                let mut entries = lock(&self.entries);
                let stale = match entries.peek_flag(key) {
                    Some(e) => self.servable_stale(e.fetched, now).then(|| Cached::Stale(e.flag.clone())),
                    None => entries
                        .peek_missing(key)
                        .filter(|at| self.servable_stale_missing(*at, now))
                        .map(|_| Cached::NotFound),
                };
                match stale {
                    Some(answer) => {
                        entries.counts.stale_serves += 1;
                        answer
                    }
                    None => Cached::Unavailable,
                }
            }
        }
    }
}
