//! Freshness (docs/operations.md): a flag change reaches every warm environment within
//! `FRESHNESS_SECONDS`, without a store call on any request and without a DynamoDB bill
//! that grows with traffic.
//!
//! - [`manifest`] — the change manifest: the table's change version and its newest
//!   changes, and what a reader must invalidate.
//! - [`ManifestStore`] — the port: read the manifest (eventually consistent), record
//!   writes in it (conditional, so concurrent writers never lose a change).
//!   [`DynamoDbManifest`] is the adapter (its own table, `MANIFEST_TABLE`).
//! - [`Freshness`] — what a warm environment keeps: at most one manifest read per
//!   window, run *after* the response (Lambda's after-response phase, or the local
//!   server's background task), invalidating exactly the changed keys in the cache.
//!   A failed read changes nothing, is counted, and is retried in the next window.
//! - [`stream`] — DynamoDB Streams events from the flags table, recorded in the manifest
//!   (so writers that know nothing of it still bump it).

mod dynamodb;
pub mod manifest;
pub mod stream;

pub use dynamodb::{manifest_put, read_consistent, DynamoDbManifest};
pub use manifest::{Invalidation, Manifest, Seen, Written};

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cache::FlagCache;
use crate::store::BoxFuture;

/// How far before its start an environment's first manifest read looks for changes:
/// writers' clocks (flagctl's machine, the stream's record times) may run a little
/// behind this one, and a spurious re-read costs only one store read.
pub const FIRST_READ_SLACK: Duration = Duration::from_secs(10);

/// A manifest call failed. Never means "nothing changed": the caller keeps what it
/// has (TTL and stale-if-error rules still apply) and tries again later.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A DynamoDB call failed (network, timeout, throttling, permissions, no table...).
    #[error("DynamoDB {operation} on the manifest failed: {message}")]
    DynamoDb {
        /// `GetItem` or `PutItem`.
        operation: &'static str,
        /// The SDK's full error context, for logs.
        message: String,
        /// The SDK error itself.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The manifest item is not in the expected shape.
    #[error("the manifest item cannot be read: {0}")]
    Unreadable(String),
    /// Every conditional write lost to a concurrent writer.
    #[error("the manifest kept changing under {0} conditional writes; giving up")]
    Contended(u32),
}

/// Where the change manifest lives.
pub trait ManifestStore: Send + Sync {
    /// The manifest as it is now (eventually consistent: a read a second old is fine,
    /// the next window reads again). A missing item is the empty manifest.
    fn read(&self) -> BoxFuture<'_, Result<Manifest, ManifestError>>;

    /// Records `writes` (each gets the next version), conditionally on the version
    /// read, retrying when another writer got there first. Returns the new manifest.
    fn record<'a>(&'a self, writes: &'a [Written]) -> BoxFuture<'a, Result<Manifest, ManifestError>>;
}

/// Counters for logs and metrics. Monotonic since start-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FreshnessStats {
    /// Manifest reads started.
    pub checks: u64,
    /// Manifest reads that failed.
    pub read_failures: u64,
    /// Changed keys the manifest listed (each counted once, though it is re-read once
    /// more a window later).
    pub invalidated_keys: u64,
    /// Times everything was invalidated (the list did not reach back far enough).
    pub invalidated_all: u64,
}

#[derive(Debug, Default)]
struct Counters {
    checks: AtomicU64,
    read_failures: AtomicU64,
    invalidated_keys: AtomicU64,
    invalidated_all: AtomicU64,
}

/// When the next check is due and what the last one saw.
#[derive(Debug)]
struct Window {
    due: SystemTime,
    seen: Seen,
    /// What the last read invalidated, invalidated once more by the next successful
    /// read: the manifest and the flags are read eventually consistently, so the first
    /// re-read of a changed flag may still have met a replica without the change; a
    /// window later it has caught up. Costs one more read per changed, cached flag.
    recheck: Invalidation,
}

/// What a warm environment keeps to stay fresh: the manifest store (if any), the
/// window, the last version seen.
pub struct Freshness {
    manifest: Option<Arc<dyn ManifestStore>>,
    every: Duration,
    /// A `std` mutex, held only to test and move the window, never across an `.await`.
    window: Mutex<Window>,
    stats: Counters,
    /// The manifest version whose invalidation has been applied, and its newest change's
    /// time (ms): what change streams announce. Set only once the cache has been told.
    applied: Mutex<Option<(u64, u64)>>,
}

impl std::fmt::Debug for Freshness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Freshness").field("every", &self.every).field("stats", &self.stats()).finish()
    }
}

impl Freshness {
    /// Freshness over `manifest`, checked at most once per `every` (zero: never, TTL
    /// only). `started` is when this environment began caching flags.
    pub fn new(manifest: Option<Arc<dyn ManifestStore>>, every: Duration, started: SystemTime) -> Self {
        let since = started.checked_sub(FIRST_READ_SLACK).unwrap_or(UNIX_EPOCH);
        let window = Window { due: started, seen: Seen::Since(millis(since)), recheck: Invalidation::Nothing };
        Freshness { manifest, every, window: Mutex::new(window), stats: Counters::default(), applied: Mutex::new(None) }
    }

    /// Whether checks run at all (a manifest store and a non-zero window).
    pub fn enabled(&self) -> bool {
        self.manifest.is_some() && !self.every.is_zero()
    }

    /// The manifest store, for the stream handler's writes (`None`: no `MANIFEST_TABLE`).
    pub fn manifest(&self) -> Option<&Arc<dyn ManifestStore>> {
        self.manifest.as_ref()
    }

    /// The window, for the local server's background task.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// The counters so far.
    pub fn stats(&self) -> FreshnessStats {
        let s = &self.stats;
        FreshnessStats {
            checks: s.checks.load(Relaxed),
            read_failures: s.read_failures.load(Relaxed),
            invalidated_keys: s.invalidated_keys.load(Relaxed),
            invalidated_all: s.invalidated_all.load(Relaxed),
        }
    }

    /// The manifest version last applied to the cache and its newest change's time (ms).
    pub fn applied(&self) -> Option<(u64, u64)> {
        *self.applied.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the manifest now, whatever the window (a change stream's look, or a
    /// client's report of a newer configuration), and starts a new window.
    pub async fn check_now(&self, cache: &FlagCache, now: SystemTime) {
        self.window.lock().unwrap_or_else(PoisonError::into_inner).due = now;
        self.check_if_due(cache, now).await;
    }

    /// Reads the manifest if a window has passed since the last read (success or not)
    /// and invalidates in `cache` what changed. Never on a request's path: Lambda's
    /// after-response phase and the local server's background task call it.
    pub async fn check_if_due(&self, cache: &FlagCache, now: SystemTime) {
        let Some(manifest) = self.manifest.as_ref().filter(|_| !self.every.is_zero()) else { return };
        {
            let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
            if now < window.due {
                return;
            }
            window.due = now + self.every;
        }
        self.stats.checks.fetch_add(1, Relaxed);
        match manifest.read().await {
            Ok(read) => self.apply(cache, &read, now).await,
            Err(error) => {
                self.stats.read_failures.fetch_add(1, Relaxed);
                tracing::warn!(%error, "manifest read failed; cached flags kept, retried next window");
            }
        }
    }

    /// Invalidates what `read` says changed since the last version seen.
    async fn apply(&self, cache: &FlagCache, read: &Manifest, now: SystemTime) {
        let (invalidation, recheck) = {
            // A version older than the one seen (a recreated manifest, or a slow read
            // overtaken by the next window's) invalidates everything: safe either way.
            let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
            let invalidation = read.invalidation(window.seen);
            window.seen = Seen::Version(read.version);
            let recheck = std::mem::replace(&mut window.recheck, invalidation.clone());
            (invalidation, recheck)
        };
        match &invalidation {
            Invalidation::Nothing => {}
            Invalidation::Keys(keys) => drop(self.stats.invalidated_keys.fetch_add(keys.len() as u64, Relaxed)),
            Invalidation::Everything => drop(self.stats.invalidated_all.fetch_add(1, Relaxed)),
        }
        self.invalidate(cache, &invalidation.and(recheck), now, read.version).await;
        let newest = read.changes.iter().map(|c| c.at).max().unwrap_or(0);
        *self.applied.lock().unwrap_or_else(PoisonError::into_inner) = Some((read.version, newest));
    }

    /// Applies `invalidation` to `cache`. Changed keys that were cached are
    /// read again at once ([`FlagCache::refresh_keys`]) so the next request is a hit;
    /// after "everything", each key is read again when next asked for.
    pub async fn invalidate(&self, cache: &FlagCache, invalidation: &Invalidation, now: SystemTime, version: u64) {
        match invalidation {
            Invalidation::Nothing => {}
            Invalidation::Keys(keys) if keys.is_empty() => {}
            Invalidation::Keys(keys) => {
                let keys_ref: Vec<&str> = keys.iter().map(String::as_str).collect();
                cache.refresh_keys(&keys_ref, now).await;
                tracing::info!(version, keys = keys.len(), "flags changed: invalidated");
            }
            Invalidation::Everything => {
                cache.invalidate_all(now);
                tracing::info!(version, "flags changed beyond the manifest's list: invalidated everything");
            }
        }
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
