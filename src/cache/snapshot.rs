//! The every-flag snapshot: one `Scan`, cached as a unit with the same TTL, shared by
//! concurrent requests (single-flight) and served stale while the store fails.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::SystemTime;

use super::{lock, wait, FlagCache, Target};
use crate::eval::FlagSet;
use crate::store::StoreError;

/// The every-flag snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Every flag in the store, by key.
    pub flags: Arc<FlagSet>,
    /// Served from a failed refresh's fallback.
    pub stale: bool,
}

/// What a scan flight publishes.
pub(super) type ScanResult = Result<Arc<FlagSet>, Arc<StoreError>>;

impl FlagCache {
    /// Every flag (a `Scan`, cached as one snapshot with the same TTL). `Err` only when
    /// the store fails and no snapshot is young enough to serve stale.
    pub async fn all(&self, now: SystemTime) -> Result<Snapshot, Arc<StoreError>> {
        loop {
            if let Some(snapshot) = self.snapshot_without_store(now) {
                return Ok(snapshot);
            }
            self.count(|c| c.misses += 1);
            let (lead, receivers) = self.scans.join([()]);
            if let Some(lead) = lead {
                let result = self.scan(now).await;
                lead.publish(result);
            }
            for receiver in receivers {
                if let Some(result) = wait(receiver).await {
                    return self.settle_scan(result, now);
                }
            }
            // The scanning request was cancelled mid-read: try again, leading if need be.
        }
    }

    /// The snapshot if it can be served without a store read (fresh, or stale while its
    /// last scan failed less than a backoff ago or the failure budget is spent).
    fn snapshot_without_store(&self, now: SystemTime) -> Option<Snapshot> {
        let (fetched, flags) = lock(&self.snapshot).clone()?;
        if now < fetched + self.config.ttl {
            self.count(|c| c.hits += 1);
            return Some(Snapshot { flags, stale: false });
        }
        let retry_at = lock(&self.outage).snapshot_retry_at;
        if self.servable_stale(fetched, now) && self.holding_off(retry_at, now) {
            self.count(|c| c.stale_serves += 1);
            return Some(Snapshot { flags, stale: true });
        }
        None
    }

    /// Scans the store and caches the result, as the snapshot and key by key.
    async fn scan(&self, now: SystemTime) -> ScanResult {
        let generation = self.generation.load(Relaxed);
        let flags = self.call_store(Target::Snapshot, now, self.store.scan()).await?;
        let set = Arc::new(FlagSet::new(flags));
        self.insert_all(set.iter().map(|f| (Box::from(f.key()), Some(f.clone()))), now, generation);
        *lock(&self.snapshot) = Some((self.fetched_at(now, generation), set.clone()));
        tracing::debug!(flags = set.len(), "flag snapshot refreshed");
        Ok(set)
    }

    /// A scan's result as an answer: after a failure, the last snapshot if it is young
    /// enough to serve stale.
    fn settle_scan(&self, result: ScanResult, now: SystemTime) -> Result<Snapshot, Arc<StoreError>> {
        let why = match result {
            Ok(flags) => return Ok(Snapshot { flags, stale: false }),
            Err(why) => why,
        };
        match lock(&self.snapshot).clone() {
            Some((fetched, flags)) if self.servable_stale(fetched, now) => {
                self.count(|c| c.stale_serves += 1);
                Ok(Snapshot { flags, stale: true })
            }
            _ => Err(why),
        }
    }
}

/// Makes a snapshot due for a re-scan (still servable stale while the store fails).
pub(super) fn expire(snapshot: &mut Option<(SystemTime, Arc<FlagSet>)>, expired: SystemTime) {
    if let Some((fetched, _)) = snapshot {
        *fetched = (*fetched).min(expired);
    }
}
