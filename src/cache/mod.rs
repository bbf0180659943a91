//! The warm flag cache (SPEC §6): an LRU of compiled flags with a TTL, in front of a
//! [`FlagStore`].
//!
//! - Hits cost one lock, one hash lookup and an `Arc` clone; evaluation runs on the
//!   `Arc`ed flag after the lock is released.
//! - Misses are read through *flights*: the first request to miss a key reads it (one
//!   `GetItem`, or one `BatchGetItem` for many keys) and every concurrent request for the
//!   same key waits for that read instead of issuing its own (single-flight).
//! - "No such flag" is remembered for `negative_ttl`, in an LRU of its own
//!   ([`entries`]), so unknown keys can never push real flags out.
//! - A store *error* is never remembered as "no such flag". The last good value is served,
//!   marked stale, until `ttl + stale_if_error` after it was fetched. After a failed
//!   store call the store is left alone for [`ERROR_BACKOFF`], counted from when the
//!   failure was *known* (a call that hangs until its timeout has taken time already):
//!   cached keys are served stale without waiting and uncached ones fail at once, so an
//!   outage (or a hanging store) does not make every request wait on it. With nothing
//!   cached, the answer is [`Cached::Unavailable`] (a `GENERAL` error), never "not
//!   found". What failed goes to the log; answers only say that the store is unavailable.
//! - The every-flag snapshot (a `Scan`) is cached the same way, as one unit.
//!
//! Time is passed in by the caller: the request's one wall-clock reading, which it needs
//! anyway for evaluation (`now`) and event timestamps. That keeps TTL tests deterministic
//! and clock reads off the per-flag path. A wall clock can be stepped; a step only moves
//! TTL expiries by its size (Lambda's clock is slewed, not stepped), which is harmless
//! for TTLs of seconds to minutes and not worth a second clock read per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::config::CacheConfig;
use crate::flag::CompiledFlag;
use crate::store::FlagStore;

/// After a failed store call, how long the store is left alone (stale values are served,
/// uncached keys fail at once).
pub const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// What an answer says when the store failed and nothing usable is cached: the same
/// short text whatever went wrong (the details, SDK dumps with endpoints and request
/// ids, go to the log only).
pub const UNAVAILABLE: &str = "flag store unavailable";

mod entries;
mod invalidate;
mod resolve;
mod snapshot;

use entries::{Entries, Entry, Known};
pub use resolve::Resolved;
pub use snapshot::Snapshot;
use snapshot::SnapshotState;

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

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    store_reads: AtomicU64,
    stale_serves: AtomicU64,
    store_errors: AtomicU64,
    evictions: AtomicU64,
}

/// What a flight publishes: the flags it read (`None` = not in the store) or the error.
type FlightResult = Result<Arc<HashMap<Box<str>, Option<Arc<CompiledFlag>>>>, Arc<str>>;
type FlightSender = watch::Sender<Option<FlightResult>>;
type FlightReceiver = watch::Receiver<Option<FlightResult>>;

/// LRU + TTL cache of compiled flags over a store. Shared by every request of a warm
/// Lambda (or of the local server).
pub struct FlagCache {
    store: Arc<dyn FlagStore>,
    config: CacheConfig,
    /// `std` mutexes: each is held for a few hash-map operations and never across an
    /// `.await`, which is cheaper than an async mutex on the hit path.
    entries: Mutex<Entries>,
    /// Keys being read right now, and where their result will be published.
    flights: Mutex<HashMap<Box<str>, FlightReceiver>>,
    snapshot: Mutex<SnapshotState>,
    /// After a failed store call: until when the store is left alone, and why it failed.
    backoff: Mutex<Option<(SystemTime, Arc<str>)>>,
    /// Bumped by every invalidation ([`invalidate`]): a store read that started before an
    /// invalidation and ends after it may hold the old value, so it is cached as expired.
    generation: AtomicU64,
    stats: Counters,
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
            flights: Mutex::new(HashMap::new()),
            snapshot: Mutex::new(SnapshotState::default()),
            backoff: Mutex::new(None),
            generation: AtomicU64::new(0),
            stats: Counters::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        let s = &self.stats;
        let entries = lock(&self.entries);
        CacheStats {
            hits: s.hits.load(Relaxed) + entries.tally.hits,
            misses: s.misses.load(Relaxed) + entries.tally.misses,
            store_reads: s.store_reads.load(Relaxed),
            stale_serves: s.stale_serves.load(Relaxed) + entries.tally.stale,
            store_errors: s.store_errors.load(Relaxed),
            evictions: s.evictions.load(Relaxed),
            entries: entries.len(),
        }
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

    /// Each key's answer, in order: hits under one lock, then one store read for all the
    /// misses.
    async fn lookup_or_fetch<'k>(&self, keys: &[&'k str], now: SystemTime) -> Vec<(&'k str, Cached)> {
        let looked = self.lookup_all(keys.iter().copied(), now, |key, cached| (key, cached));
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
            Known::Flag(entry) if self.servable_stale(entry, now) && self.backing_off(now).is_some() => {
                let flag = entry.flag.clone();
                entries.tally.stale += 1;
                return Some(Cached::Stale(flag));
            }
            Known::Missing(at) if now < at + self.config.negative_ttl => Some(Cached::NotFound),
            Known::Flag(_) | Known::Missing(_) | Known::Unknown => None,
        };
        match answer {
            Some(_) => entries.tally.hits += 1,
            None => entries.tally.misses += 1,
        }
        answer
    }

    /// Looks up every key under one lock.
    fn lookup_all<'k, T>(
        &self,
        keys: impl Iterator<Item = &'k str>,
        now: SystemTime,
        mut out: impl FnMut(&'k str, Option<Cached>) -> T,
    ) -> Vec<T> {
        let mut entries = lock(&self.entries);
        keys.map(|key| out(key, self.lookup(&mut entries, key, now))).collect()
    }

    fn servable_stale(&self, entry: &Entry, now: SystemTime) -> bool {
        now < entry.fetched + self.config.ttl + self.config.stale_if_error
    }

    /// Reads `keys` from the store through flights; answers in the order of `keys`.
    async fn fetch(&self, keys: &[&str], now: SystemTime) -> Vec<Cached> {
        let mut answers: Vec<Option<Cached>> = vec![None; keys.len()];
        loop {
            let pending: Vec<usize> = (0..keys.len()).filter(|&i| answers[i].is_none()).collect();
            if pending.is_empty() {
                return answers.into_iter().map(|a| a.unwrap_or(Cached::NotFound)).collect();
            }
            // Join flights already reading a key; start one flight for all the others.
            let mut receivers = Vec::with_capacity(pending.len());
            let mut lead_keys: Vec<Box<str>> = Vec::new();
            let (sender, own) = watch::channel(None);
            {
                let mut flights = lock(&self.flights);
                for &i in &pending {
                    let receiver = flights.entry(Box::from(keys[i])).or_insert_with(|| {
                        lead_keys.push(Box::from(keys[i]));
                        own.clone()
                    });
                    receivers.push((i, receiver.clone()));
                }
            }
            // Lead before waiting on anyone else's flight, so two requests that each lead
            // some keys and wait on the other's can never deadlock.
            if !lead_keys.is_empty() {
                self.lead(lead_keys, sender, now).await;
            }
            for (i, receiver) in receivers {
                if let Some(result) = wait(receiver).await {
                    answers[i] = Some(self.settle(keys[i], result, now));
                }
                // else: that flight's leader was cancelled; the key is read again next round.
            }
        }
    }

    /// Reads `keys` from the store, caches the answers and publishes them.
    async fn lead(&self, keys: Vec<Box<str>>, sender: FlightSender, now: SystemTime) {
        let _clear = ClearFlights { cache: self, keys: &keys };
        let generation = self.generation.load(Relaxed);
        let owned: Vec<String>;
        let read = match &keys[..] {
            [key] => {
                let get = async { self.store.get(key).await.map(|flag| flag.into_iter().collect::<Vec<_>>()) };
                self.call_store("read", 1, now, get).await
            }
            _ => {
                owned = keys.iter().map(|k| String::from(&**k)).collect();
                self.call_store("read", keys.len(), now, self.store.get_many(&owned)).await
            }
        };
        let result = match read {
            Ok(flags) => {
                let mut found: HashMap<Box<str>, Option<Arc<CompiledFlag>>> =
                    keys.iter().map(|k| (k.clone(), None)).collect();
                for flag in flags {
                    if let Some(slot) = found.get_mut(flag.key()) {
                        *slot = Some(flag);
                    }
                }
                self.insert_all(found.iter().map(|(k, f)| (k.clone(), f.clone())), now, generation);
                Ok(Arc::new(found))
            }
            Err(why) => Err(why),
        };
        let _ = sender.send(Some(result));
    }

    /// Why the store is being left alone at `now`, if it is (after a failed call).
    fn backing_off(&self, now: SystemTime) -> Option<Arc<str>> {
        lock(&self.backoff).as_ref().filter(|(until, _)| now < *until).map(|(_, why)| why.clone())
    }

    /// Calls the store unless it failed within [`ERROR_BACKOFF`] — then fails at once with
    /// that error, so a dead or hanging store costs one call per second, not one per
    /// request. Counts reads and errors; a failure starts the backoff, a success ends it.
    ///
    /// The backoff runs from when the failure is known: `now` (the request's clock
    /// reading) plus how long the call took. Measured from `now` alone, a call that took
    /// as long as the backoff to time out would leave a backoff that had already ended,
    /// and every request would wait on the hanging store in turn.
    async fn call_store<T>(
        &self,
        what: &'static str,
        keys: usize,
        now: SystemTime,
        call: impl std::future::Future<Output = Result<T, crate::store::StoreError>>,
    ) -> Result<T, Arc<str>> {
        if let Some(why) = self.backing_off(now) {
            return Err(why);
        }
        self.stats.store_reads.fetch_add(1, Relaxed);
        // tokio's clock, so tests with paused time see a hanging call take its time.
        let started = tokio::time::Instant::now();
        match call.await {
            Ok(value) => {
                *lock(&self.backoff) = None;
                Ok(value)
            }
            Err(error) => {
                self.stats.store_errors.fetch_add(1, Relaxed);
                let took = started.elapsed();
                tracing::warn!(error = %error, keys, took_ms = took.as_millis(), "flag store {what} failed; backing off for {ERROR_BACKOFF:?}");
                let why: Arc<str> = Arc::from(error.to_string());
                *lock(&self.backoff) = Some((now + took + ERROR_BACKOFF, why.clone()));
                Err(why)
            }
        }
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
            if entries.insert(key, flag, now) {
                self.stats.evictions.fetch_add(1, Relaxed);
            }
        }
    }

    /// Turns a flight's result into the answer for one key.
    fn settle(&self, key: &str, result: FlightResult, now: SystemTime) -> Cached {
        match result {
            Ok(found) => match found.get(key) {
                Some(Some(flag)) => Cached::Fresh(flag.clone()),
                _ => Cached::NotFound,
            },
            Err(_) => {
                let entries = lock(&self.entries);
                match entries.peek_flag(key) {
                    Some(entry) if self.servable_stale(entry, now) => {
                        self.stats.stale_serves.fetch_add(1, Relaxed);
                        Cached::Stale(entry.flag.clone())
                    }
                    _ => Cached::Unavailable,
                }
            }
        }
    }
}

/// Waits for a flight's result; `None` if its leader went away without publishing.
async fn wait<T: Clone>(mut receiver: watch::Receiver<Option<T>>) -> Option<T> {
    receiver.wait_for(Option::is_some).await.ok().and_then(|v| v.clone())
}

/// Removes a flight's keys when its leader finishes *or is cancelled*, so a dropped
/// request never leaves other requests waiting forever.
struct ClearFlights<'a> {
    cache: &'a FlagCache,
    keys: &'a [Box<str>],
}

impl Drop for ClearFlights<'_> {
    fn drop(&mut self) {
        let mut flights = lock(&self.cache.flights);
        for key in self.keys {
            flights.remove(key);
        }
    }
}

#[cfg(test)]
mod tests;
