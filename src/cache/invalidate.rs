//! Invalidation (docs/operations.md): when the change manifest says flags changed, the cache makes
//! exactly those keys (or everything) due for a re-read, without waiting for their TTL.
//!
//! An invalidated flag is not dropped: it counts as fetched a TTL ago, so the next lookup
//! reads the store, and if the store is failing the old value is still served stale
//! under the usual stale-if-error rule. A not-found entry likewise counts as found
//! missing a negative TTL ago: read again next time, still "not found" while the store
//! fails (the flag may have been created; until the store says so, its last word
//! stands, as for a changed flag). The every-flag snapshot, and with it the OFREP bulk `ETag`
//! (a hash of the body), is invalidated with any key.
//!
//! A store read already under way when an invalidation happens may have read the old
//! value: the cache's generation counter tells, and such a read is cached as expired.

use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use super::{lock, snapshot, FlagCache};

impl FlagCache {
    /// Makes `keys` and the every-flag snapshot due for a re-read at `now`. Returns how
    /// many of the keys were cached (found or not-found).
    pub fn invalidate_keys<'k>(&self, keys: impl IntoIterator<Item = &'k str>, now: SystemTime) -> usize {
        self.generation.fetch_add(1, Relaxed);
        let (expired, missing_expired) = (self.expired_at(now), self.missing_expired_at(now));
        let held = {
            let mut entries = lock(&self.entries);
            keys.into_iter().filter(|key| entries.expire(key, expired, missing_expired)).count()
        };
        self.invalidate_snapshot(now);
        held
    }

    /// [`FlagCache::invalidate_keys`], then reads again at once those of `keys` that held a
    /// flag (one `GetItem`, or one `BatchGetItem` per 100), so the next request for them
    /// is still a hit. Run after the response, never on a request's path; if the store
    /// fails, the old values stay servable stale as usual.
    pub async fn refresh_keys(&self, keys: &[&str], now: SystemTime) {
        let held: Vec<&str> = {
            let entries = lock(&self.entries);
            keys.iter().copied().filter(|key| entries.peek_flag(key).is_some()).collect()
        };
        self.invalidate_keys(keys.iter().copied(), now);
        if !held.is_empty() {
            self.fetch(&held, now).await;
        }
    }

    /// Makes only the every-flag snapshot (and so the OFREP bulk `ETag`) due for a re-scan.
    pub fn invalidate_snapshot(&self, now: SystemTime) {
        self.generation.fetch_add(1, Relaxed);
        snapshot::expire(&mut lock(&self.snapshot), self.expired_at(now));
    }

    /// Makes every cached key and the snapshot due for a re-read (the manifest does not
    /// reach back far enough to say which flags changed).
    pub fn invalidate_all(&self, now: SystemTime) {
        self.generation.fetch_add(1, Relaxed);
        let expired = self.expired_at(now);
        lock(&self.entries).expire_all(expired, self.missing_expired_at(now));
        snapshot::expire(&mut lock(&self.snapshot), expired);
    }

    /// A fetch time that is past its TTL at `now`.
    fn expired_at(&self, now: SystemTime) -> SystemTime {
        now.checked_sub(self.config.ttl).unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// A time a not-found entry is past its negative TTL at `now`.
    fn missing_expired_at(&self, now: SystemTime) -> SystemTime {
        now.checked_sub(self.config.negative_ttl).unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// When a read that started in `generation` counts as fetched: `now`, or already
    /// expired if an invalidation happened while it was under way.
    pub(super) fn fetched_at(&self, now: SystemTime, generation: u64) -> SystemTime {
        if self.generation.load(Relaxed) == generation {
            now
        } else {
            self.expired_at(now)
        }
    }
}
