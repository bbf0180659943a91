//! The cached keys: flags in one LRU, "no such flag" in a second, smaller one.
//!
//! Keeping the two apart means a flood of unknown keys (a typo in a client, or a caller
//! probing) can only push out other unknown keys: the flags in use stay cached, so
//! they are still there to be served stale if the store then fails.
//!
//! Each entry also carries its own retry time after a failed read (`retry_at`): a key
//! whose read failed is left alone for a while without holding back any other key or
//! the snapshot. Kept on the entries, this state is bounded by the same LRUs.

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
    /// After a failed re-read: not read again before this (served stale meanwhile).
    pub retry_at: Option<SystemTime>,
}

/// One key the store said it does not have.
#[derive(Debug, Clone, Copy)]
pub(super) struct Missing {
    /// When the store said so.
    pub at: SystemTime,
    /// After a failed re-read: not read again before this (still "not found" meanwhile).
    pub retry_at: Option<SystemTime>,
}

/// Both LRUs and the cache's counters, behind one lock.
#[derive(Debug)]
pub(super) struct Entries {
    /// Flags the store has, by key.
    flags: LruCache<Box<str>, Entry>,
    /// Keys the store said it does not have, and when.
    missing: LruCache<Box<str>, Missing>,
    /// Every counter of the cache (its `entries` field is filled in when read): one set,
    /// kept under the lock the lookups hold anyway, so the hit path does no atomic
    /// operation.
    pub counts: CacheStats,
}

/// What the entries say about one key, before TTLs and backoff are applied.
pub(super) enum Known<'a> {
    Flag(&'a Entry),
    Missing(Missing),
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
            Some(missing) => Known::Missing(*missing),
            None => Known::Unknown,
        }
    }

    /// The flag cached under `key`, without marking it used.
    pub fn peek_flag(&self, key: &str) -> Option<&Entry> {
        self.flags.peek(key)
    }

    /// When the store said it has no `key`, if that is what is held, without marking it used.
    pub fn peek_missing(&self, key: &str) -> Option<SystemTime> {
        self.missing.peek(key).map(|missing| missing.at)
    }

    /// A read of `key` failed: whatever is held for it is not read again before `until`.
    /// Nothing is held for a key never read: there is nothing to serve in its place.
    pub fn retry_at(&mut self, key: &str, until: SystemTime) {
        if let Some(entry) = self.flags.peek_mut(key) {
            entry.retry_at = Some(until);
        } else if let Some(missing) = self.missing.peek_mut(key) {
            missing.retry_at = Some(until);
        }
    }

    /// Records what the store said about `key`, counting an eviction if another key had
    /// to make room. A key is in at most one of the two LRUs.
    pub fn insert(&mut self, key: Box<str>, flag: Option<Arc<CompiledFlag>>, fetched: SystemTime) {
        let evicted = match flag {
            Some(flag) => {
                self.missing.pop(&key);
                self.flags.push(key.clone(), Entry { flag, fetched, retry_at: None }).map(|(old, _)| old)
            }
            None => {
                self.flags.pop(&key);
                self.missing.push(key.clone(), Missing { at: fetched, retry_at: None }).map(|(old, _)| old)
            }
        };
        if evicted.is_some_and(|old| old != key) {
            self.counts.evictions += 1;
        }
    }

    /// Makes `key` due for a re-read: a cached flag counts as fetched no later than
    /// `expired`, a not-found entry as found missing no later than `missing_expired`, so
    /// the next lookup reads the store, and if the store fails, either is still served
    /// stale (the flag may have been created meanwhile; it is not read, so the last word
    /// of the store stands). `true` if anything was held.
    pub fn expire(&mut self, key: &str, expired: SystemTime, missing_expired: SystemTime) -> bool {
        let flag = self.flags.peek_mut(key).map(|entry| entry.fetched = entry.fetched.min(expired)).is_some();
        let missing = self.missing.peek_mut(key).map(|m| m.at = m.at.min(missing_expired)).is_some();
        flag || missing
    }

    /// [`Entries::expire`] for every key held.
    pub fn expire_all(&mut self, expired: SystemTime, missing_expired: SystemTime) {
        for (_, entry) in self.flags.iter_mut() {
            entry.fetched = entry.fetched.min(expired);
        }
        for (_, missing) in self.missing.iter_mut() {
            missing.at = missing.at.min(missing_expired);
        }
    }

    /// Flags and not-found keys held.
    pub fn len(&self) -> usize {
        self.flags.len() + self.missing.len()
    }
}
