//! The warm flag cache (docs/operations.md): an LRU of compiled flags with a TTL, in front of a
//! [`FlagStore`].
//!
//! - Hits cost one lock, one hash lookup and an `Arc` clone; evaluation runs on the
//!   `Arc`ed flag after the lock is released.
//! - Misses are read through *flights*: the first request to miss a key reads it (one
//!   `GetItem`, or one `BatchGetItem` for many keys) and every concurrent request for the
//!   same key waits for that read instead of issuing its own (single-flight).
//! - "No such flag" is remembered for `negative_ttl`, in an LRU of its own
//!   (`entries`), so unknown keys can never push real flags out.
//! - A store *error* is never remembered as "no such flag". What is held (a flag, or a
//!   not-found) is served, marked stale for flags, until `stale_if_error` past its TTL.
//!   After a failed read, that key (or the snapshot) is left alone for [`ERROR_BACKOFF`],
//!   counted from when the failure was *known* (a call that hangs until its timeout has
//!   taken time already), and a store-wide failure budget bounds how many failed calls
//!   an outage costs (`outage`). With nothing usable held, the answer is
//!   [`Cached::Unavailable`] (a `GENERAL` error), never "not found". What failed goes to
//!   the log; answers only say that the store is unavailable.
//! - The every-flag snapshot (a `Scan`) is cached the same way, as one unit, through the
//!   same single-flight.
//!
//! Files: `entries` (the two LRUs and the one set of counters, behind one lock),
//! `flight` (single-flight, for keys and the snapshot), `outage` (the retry policy and
//! stale-if-error), `snapshot` (the `Scan`), `invalidate` (the change manifest's expiry).
//!
//! Time is passed in by the caller: the request's one wall-clock reading, which it needs
//! anyway for evaluation (`now`) and event timestamps. That keeps TTL tests deterministic
//! and clock reads off the per-flag path. A wall clock can be stepped; a step only moves
//! TTL expiries by its size (Lambda's clock is slewed, not stepped), which is harmless
//! for TTLs of seconds to minutes and not worth a second clock read per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::config::CacheConfig;
use crate::eval::FlagSet;
use crate::flag::CompiledFlag;
use crate::store::{FlagStore, StoreError};

mod entries;
mod flight;
mod invalidate;
mod outage;
mod snapshot;

use entries::{Entries, Known};
use flight::{wait, Flights};
use outage::{Outage, Target};
pub use outage::{ERROR_BACKOFF, FAILURES_PER_SECOND, FAILURE_BURST, UNAVAILABLE};
use snapshot::ScanResult;
pub use snapshot::Snapshot;

/// What the cache knows about one key.
#[derive(Debug, Clone)]
pub enum Cached {
    /// The flag, within its TTL (or just read).
    Fresh(Arc<CompiledFlag>),
    /// The last good value, past its TTL, served because the store is failing.
    Stale(Arc<CompiledFlag>),
    /// The store has no such flag.
    NotFound,
    /// The store failed and nothing usable is cached. Why is in the log (the cache logs
    /// each failed store call); answers say only that the store is unavailable.
    Unavailable,
}

impl Cached {
    /// The flag, fresh or stale.
    pub fn flag(&self) -> Option<&Arc<CompiledFlag>> {
        match self {
            Cached::Fresh(flag) | Cached::Stale(flag) => Some(flag),
            Cached::NotFound | Cached::Unavailable => None,
        }
    }

    /// Whether this is a stale value served during a store failure.
    pub fn is_stale(&self) -> bool {
        matches!(self, Cached::Stale(_))
    }
}

/// Counters for logs and tests. Monotonic since start-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache within TTL (found or not-found).
    pub hits: u64,
    /// Lookups that needed the store.
    pub misses: u64,
    /// Calls made to the store (`get`, `get_many` or `scan`).
    pub store_reads: u64,
    /// Lookups answered with a stale value because the store failed.
    pub stale_serves: u64,
    /// Store calls that failed.
    pub store_errors: u64,
    /// Entries pushed out by the capacity limit.
    pub evictions: u64,
    /// Entries currently held.
    pub entries: usize,
}

/// What a key flight publishes: the flags it read (`None` = not in the store) or why the
/// store failed.
type FlightResult = Result<Arc<HashMap<Box<str>, Option<Arc<CompiledFlag>>>>, Arc<StoreError>>;

/// LRU + TTL cache of compiled flags over a store. Shared by every request of a warm
/// Lambda (or of the local server).
pub struct FlagCache {
    store: Arc<dyn FlagStore>,
    config: CacheConfig,
    /// `std` mutexes: each is held for a few hash-map operations and never across an
    /// `.await`, which is cheaper than an async mutex on the hit path. The entries lock
    /// also guards every counter.
    entries: Mutex<Entries>,
    /// Keys being read right now.
    flights: Flights<Box<str>, FlightResult>,
    /// The every-flag snapshot and when it was read.
    snapshot: Mutex<Option<(SystemTime, Arc<FlagSet>)>>,
    /// The `Scan` being run right now, if any.
    scans: Flights<(), ScanResult>,
    /// The store-wide failure budget and the snapshot's retry time (`outage`).
    outage: Mutex<Outage>,
    /// Bumped by every invalidation ([`invalidate`]): a store read that started before an
    /// invalidation and ends after it may hold the old value, so it is cached as expired.
    generation: AtomicU64,
}

impl std::fmt::Debug for FlagCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagCache").field("config", &self.config).field("stats", &self.stats()).finish()
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical
/// section here is a handful of map operations that cannot leave it half-written).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FlagCache {
    /// An empty cache over `store`.
    pub fn new(store: Arc<dyn FlagStore>, config: CacheConfig) -> Self {
        FlagCache {
            store,
            config,
            entries: Mutex::new(Entries::new(&config)),
            flights: Flights::default(),
            snapshot: Mutex::new(None),
            scans: Flights::default(),
            outage: Mutex::new(Outage::default()),
            generation: AtomicU64::new(0),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        let entries = lock(&self.entries);
        CacheStats { entries: entries.len(), ..entries.counts }
    }

    /// Counts something that happened off the lookup path (store calls, snapshot reads).
    fn count(&self, what: impl FnOnce(&mut CacheStats)) {
        what(&mut lock(&self.entries).counts);
    }

    /// One flag: from the cache if fresh, else from the store (shared with concurrent
    /// readers of the same key).
    pub async fn get(&self, key: &str, now: SystemTime) -> Cached {
        let hit = self.lookup(&mut lock(&self.entries), key, now);
        if let Some(hit) = hit {
            return hit;
        }
        let mut fetched = self.fetch(&[key], now).await;
        fetched.pop().unwrap_or(Cached::NotFound)
    }

    /// Each key's answer, in order (duplicates kept): hits under one lock, then one store
    /// read for all the misses.
    pub async fn get_many<'k>(&self, keys: &[&'k str], now: SystemTime) -> Vec<(&'k str, Cached)> {
        let looked: Vec<(&str, Option<Cached>)> = {
            let mut entries = lock(&self.entries);
            keys.iter().map(|key| (*key, self.lookup(&mut entries, key, now))).collect()
        };
        let missing: Vec<&str> = looked.iter().filter(|(_, c)| c.is_none()).map(|(k, _)| *k).collect();
        let mut fetched = if missing.is_empty() { Vec::new() } else { self.fetch(&missing, now).await }.into_iter();
        looked
            .into_iter()
            .map(|(key, cached)| (key, cached.or_else(|| fetched.next()).unwrap_or(Cached::NotFound)))
            .collect()
    }

    /// The answer for `key` if the cache can give one without the store.
    fn lookup(&self, entries: &mut Entries, key: &str, now: SystemTime) -> Option<Cached> {
        let answer = match entries.get(key) {
            Known::Flag(entry) if now < entry.fetched + self.config.ttl => Some(Cached::Fresh(entry.flag.clone())),
            Known::Flag(entry) if self.servable_stale(entry.fetched, now) && self.holding_off(entry.retry_at, now) => {
                let flag = entry.flag.clone();
                entries.counts.stale_serves += 1;
                return Some(Cached::Stale(flag));
            }
            Known::Missing(missing) if now < missing.at + self.config.negative_ttl => Some(Cached::NotFound),
            Known::Missing(missing)
                if self.servable_stale_missing(missing.at, now) && self.holding_off(missing.retry_at, now) =>
            {
                entries.counts.stale_serves += 1;
                return Some(Cached::NotFound);
            }
            Known::Flag(_) | Known::Missing(_) | Known::Unknown => None,
        };
        match answer {
            Some(_) => entries.counts.hits += 1,
            None => entries.counts.misses += 1,
        }
        answer
    }

    /// Reads `keys` from the store through flights; answers in the order of `keys`.
    async fn fetch(&self, keys: &[&str], now: SystemTime) -> Vec<Cached> {
        let mut answers: Vec<Option<Cached>> = vec![None; keys.len()];
        loop {
            let pending: Vec<usize> = (0..keys.len()).filter(|&i| answers[i].is_none()).collect();
            if pending.is_empty() {
                return answers.into_iter().map(|a| a.unwrap_or(Cached::NotFound)).collect();
            }
            let (lead, receivers) = self.flights.join(pending.iter().map(|&i| Box::from(keys[i])));
            if let Some(lead) = lead {
                let result = self.read(lead.keys(), now).await;
                lead.publish(result);
            }
            for (i, receiver) in pending.into_iter().zip(receivers) {
                if let Some(result) = wait(receiver).await {
                    answers[i] = Some(self.settle(keys[i], result, now));
                }
                // else: that flight's leader was cancelled; the key is read again next round.
            }
        }
    }

    /// Reads `keys` from the store (one `get`, or one `get_many`) and caches the answers.
    async fn read(&self, keys: &[Box<str>], now: SystemTime) -> FlightResult {
        let generation = self.generation.load(Relaxed);
        let flags = match keys {
            [key] => {
                let get = async { self.store.get(key).await.map(|flag| flag.into_iter().collect::<Vec<_>>()) };
                self.call_store(Target::Keys(keys), now, get).await?
            }
            _ => {
                let owned: Vec<String> = keys.iter().map(|k| String::from(&**k)).collect();
                self.call_store(Target::Keys(keys), now, self.store.get_many(&owned)).await?
            }
        };
        let mut found: HashMap<Box<str>, Option<Arc<CompiledFlag>>> = keys.iter().map(|k| (k.clone(), None)).collect();
        for flag in flags {
            if let Some(slot) = found.get_mut(flag.key()) {
                *slot = Some(flag);
            }
        }
        self.insert_all(found.iter().map(|(k, f)| (k.clone(), f.clone())), now, generation);
        Ok(Arc::new(found))
    }

    /// Caches what a store read returned; `generation` is the one the read started in.
    fn insert_all(
        &self,
        flags: impl Iterator<Item = (Box<str>, Option<Arc<CompiledFlag>>)>,
        now: SystemTime,
        generation: u64,
    ) {
        let mut entries = lock(&self.entries);
        let now = self.fetched_at(now, generation);
        for (key, flag) in flags {
            entries.insert(key, flag, now);
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
