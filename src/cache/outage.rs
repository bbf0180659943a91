//! When the store fails: the error backoff and stale-if-error.
//!
//! A store *error* is never remembered as "no such flag". After a failed call the store
//! is left alone for [`ERROR_BACKOFF`]: cached keys are served stale without waiting and
//! uncached ones fail at once, so an outage (or a hanging store) costs one call per
//! second, not one per request. A value is servable stale until `ttl + stale_if_error`
//! after it was fetched; past that, the answer is [`super::Cached::Unavailable`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{lock, Cached, FlagCache, FlightResult};
use crate::store::StoreError;

/// After a failed store call, how long the store is left alone (stale values are served,
/// uncached keys fail at once).
pub const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// What an answer says when the store failed and nothing usable is cached: the same
/// short text whatever went wrong (the details, SDK dumps with endpoints and request
/// ids, go to the log only).
pub const UNAVAILABLE: &str = "flag store unavailable";

impl FlagCache {
    /// Whether a value fetched at `fetched` may still be served stale at `now`.
    pub(super) fn servable_stale(&self, fetched: SystemTime, now: SystemTime) -> bool {
        now < fetched + self.config.ttl + self.config.stale_if_error
    }

    /// Why the store is being left alone at `now`, if it is (after a failed call).
    pub(super) fn backing_off(&self, now: SystemTime) -> Option<Arc<StoreError>> {
        lock(&self.backoff).as_ref().filter(|(until, _)| now < *until).map(|(_, why)| why.clone())
    }

    /// Calls the store unless it failed within [`ERROR_BACKOFF`] — then fails at once with
    /// that error. Counts reads and errors; a failure starts the backoff, a success ends it.
    ///
    /// The backoff runs from when the failure is known: `now` (the request's clock
    /// reading) plus how long the call took. Measured from `now` alone, a call that took
    /// as long as the backoff to time out would leave a backoff that had already ended,
    /// and every request would wait on the hanging store in turn.
    pub(super) async fn call_store<T>(
        &self,
        what: &'static str,
        keys: usize,
        now: SystemTime,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, Arc<StoreError>> {
        if let Some(why) = self.backing_off(now) {
            return Err(why);
        }
        self.count(|c| c.store_reads += 1);
        // tokio's clock, so tests with paused time see a hanging call take its time.
        let started = tokio::time::Instant::now();
        match call.await {
            Ok(value) => {
                *lock(&self.backoff) = None;
                Ok(value)
            }
            Err(error) => {
                self.count(|c| c.store_errors += 1);
                let took = started.elapsed();
                tracing::warn!(error = %error, keys, took_ms = took.as_millis(), "flag store {what} failed; backing off for {ERROR_BACKOFF:?}");
                let why = Arc::new(error);
                *lock(&self.backoff) = Some((now + took + ERROR_BACKOFF, why.clone()));
                Err(why)
            }
        }
    }

    /// Turns a key flight's result into the answer for one key: after a failure, the
    /// cached value if it is young enough to serve stale.
    pub(super) fn settle(&self, key: &str, result: FlightResult, now: SystemTime) -> Cached {
        match result {
            Ok(found) => match found.get(key) {
                Some(Some(flag)) => Cached::Fresh(flag.clone()),
                _ => Cached::NotFound,
            },
            Err(_) => {
                let mut entries = lock(&self.entries);
                let stale =
                    entries.peek_flag(key).filter(|e| self.servable_stale(e.fetched, now)).map(|e| e.flag.clone());
                match stale {
                    Some(flag) => {
                        entries.counts.stale_serves += 1;
                        Cached::Stale(flag)
                    }
                    None => Cached::Unavailable,
                }
            }
        }
    }
}
