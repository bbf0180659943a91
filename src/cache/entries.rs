//! The cached keys: flags in one LRU, "no such flag" in a second, smaller one.
//!
//! Keeping the two apart means a flood of unknown keys (a typo in a client, or a caller
//! probing) can only push out other unknown keys: the flags in use stay cached, so
//! they are still there to be served stale if the store then fails.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::SystemTime;

use lru::LruCache;

use super::CacheStats;
use crate::config::CacheConfig;
use crate::flag::CompiledFlag;

/// Share of `CACHE_MAX_ENTRIES` the not-found LRU may hold, on top of the flags: a
/// negative entry is a key and a time (~100 bytes), so this costs little.
const NEGATIVE_SHARE: usize = 4;

/// One cached flag and when it was read.
#[derive(Debug)]
pub(super) struct Entry {
    pub flag: Arc<CompiledFlag>,
    pub fetched: SystemTime,
}

/// Both LRUs and the cache's counters, behind one lock.
#[derive(Debug)]
pub(super) struct Entries {
    /// Flags the store has, by key.
    flags: LruCache<Box<str>, Entry>,
    /// Keys the store said it does not have, and when.
    missing: LruCache<Box<str>, SystemTime>,
    /// Every counter of the cache (its `entries` field is filled in when read): one set,
    /// kept under the lock the lookups hold anyway, so the hit path does no atomic
    /// operation.
    pub counts: CacheStats,
}

/// What the entries say about one key, before TTLs and backoff are applied.
pub(super) enum Known<'a> {
    Flag(&'a Entry),
    Missing(SystemTime),
    Unknown,
}

impl Entries {
    /// Room for `config.max_entries` flags and a quarter as many unknown keys.
    pub fn new(config: &CacheConfig) -> Self {
        let negative = NonZeroUsize::new(config.max_entries.get() / NEGATIVE_SHARE).unwrap_or(NonZeroUsize::MIN);
        Entries {
            flags: LruCache::new(config.max_entries),
            missing: LruCache::new(negative),
            counts: CacheStats::default(),
        }
    }

    /// What is known about `key`, marking it recently used.
    pub fn get(&mut self, key: &str) -> Known<'_> {
        if let Some(entry) = self.flags.get(key) {
            return Known::Flag(entry);
        }
        match self.missing.get(key) {
            Some(at) => Known::Missing(*at),
            None => Known::Unknown,
        }
    }

    /// The flag cached under `key`, without marking it used.
    pub fn peek_flag(&self, key: &str) -> Option<&Entry> {
        self.flags.peek(key)
    }

    /// Records what the store said about `key`, counting an eviction if another key had
    /// to make room. A key is in at most one of the two LRUs.
    pub fn insert(&mut self, key: Box<str>, flag: Option<Arc<CompiledFlag>>, fetched: SystemTime) {
        let evicted = match flag {
            Some(flag) => {
                self.missing.pop(&key);
                self.flags.push(key.clone(), Entry { flag, fetched }).map(|(old, _)| old)
            }
            None => {
                self.flags.pop(&key);
                self.missing.push(key.clone(), fetched).map(|(old, _)| old)
            }
        };
        if evicted.is_some_and(|old| old != key) {
            self.counts.evictions += 1;
        }
    }

    /// Makes `key` due for a re-read: a cached flag counts as fetched no later than
    /// `expired` (so it is still servable stale if the store fails), a not-found entry is
    /// forgotten (the flag may have been created). `true` if anything was held.
    pub fn expire(&mut self, key: &str, expired: SystemTime) -> bool {
        let flag = self.flags.peek_mut(key).map(|entry| entry.fetched = entry.fetched.min(expired)).is_some();
        self.missing.pop(key).is_some() || flag
    }

    /// [`Entries::expire`] for every key held.
    pub fn expire_all(&mut self, expired: SystemTime) {
        for (_, entry) in self.flags.iter_mut() {
            entry.fetched = entry.fetched.min(expired);
        }
        self.missing.clear();
    }

    /// Flags and not-found keys held.
    pub fn len(&self) -> usize {
        self.flags.len() + self.missing.len()
    }
}
