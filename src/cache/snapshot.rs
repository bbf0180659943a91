//! The every-flag snapshot: one `Scan`, cached as a unit with the same TTL, shared by
//! concurrent requests (single-flight) and served stale while the store fails.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;

use super::{lock, wait, FlagCache};
use crate::eval::FlagSet;

/// The every-flag snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Every flag in the store, by key.
    pub flags: Arc<FlagSet>,
    /// Served from a failed refresh's fallback.
    pub stale: bool,
}

type ScanResult = Result<Arc<FlagSet>, Arc<str>>;

/// The every-flag snapshot and its refresh state.
#[derive(Debug, Default)]
pub(super) struct SnapshotState {
    current: Option<(SystemTime, Arc<FlagSet>)>,
    flight: Option<watch::Receiver<Option<ScanResult>>>,
}

impl FlagCache {
    /// Every flag (a `Scan`, cached as one snapshot with the same TTL). `Err` only when
    /// the store fails and no snapshot is young enough to serve stale.
    pub async fn all(&self, now: SystemTime) -> Result<Snapshot, Arc<str>> {
        loop {
            let (receiver, leader) = {
                let mut state = lock(&self.snapshot);
                if let Some(snapshot) = self.snapshot_without_store(&state, now) {
                    return Ok(snapshot);
                }
                self.stats.misses.fetch_add(1, Relaxed);
                match &state.flight {
                    Some(receiver) => (receiver.clone(), None),
                    None => {
                        let (sender, receiver) = watch::channel(None);
                        state.flight = Some(receiver.clone());
                        (receiver, Some(sender))
                    }
                }
            };
            if let Some(sender) = leader {
                self.lead_scan(sender, now).await;
            }
            if let Some(result) = wait(receiver).await {
                return self.settle_scan(result, now);
            }
            // The scanning request was cancelled mid-read: try again, leading if need be.
        }
    }

    /// The snapshot if it can be served without a store read (fresh, or stale while the
    /// store is in error backoff).
    fn snapshot_without_store(&self, state: &SnapshotState, now: SystemTime) -> Option<Snapshot> {
        let (fetched, flags) = state.current.as_ref()?;
        if now < *fetched + self.config.ttl {
            self.stats.hits.fetch_add(1, Relaxed);
            return Some(Snapshot { flags: flags.clone(), stale: false });
        }
        if self.backing_off(now).is_some() && now < *fetched + self.config.ttl + self.config.stale_if_error {
            self.stats.stale_serves.fetch_add(1, Relaxed);
            return Some(Snapshot { flags: flags.clone(), stale: true });
        }
        None
    }

    async fn lead_scan(&self, sender: watch::Sender<Option<ScanResult>>, now: SystemTime) {
        let _clear = ClearScanFlight(self);
        let generation = self.generation.load(Relaxed);
        let result = self.call_store("scan", 0, now, self.store.scan()).await.map(|flags| {
            let set = Arc::new(FlagSet::new(flags));
            self.insert_all(set.iter().map(|f| (Box::from(f.key()), Some(f.clone()))), now, generation);
            lock(&self.snapshot).current = Some((self.fetched_at(now, generation), set.clone()));
            tracing::debug!(flags = set.len(), "flag snapshot refreshed");
            set
        });
        let _ = sender.send(Some(result));
    }

    fn settle_scan(&self, result: ScanResult, now: SystemTime) -> Result<Snapshot, Arc<str>> {
        match result {
            Ok(flags) => Ok(Snapshot { flags, stale: false }),
            Err(message) => {
                let state = lock(&self.snapshot);
                match &state.current {
                    Some((fetched, flags)) if now < *fetched + self.config.ttl + self.config.stale_if_error => {
                        self.stats.stale_serves.fetch_add(1, Relaxed);
                        Ok(Snapshot { flags: flags.clone(), stale: true })
                    }
                    _ => Err(message),
                }
            }
        }
    }
}

impl SnapshotState {
    /// Makes the snapshot due for a re-scan (still servable stale while the store fails).
    pub(super) fn expire(&mut self, expired: SystemTime) {
        if let Some((fetched, _)) = &mut self.current {
            *fetched = (*fetched).min(expired);
        }
    }
}

struct ClearScanFlight<'a>(&'a FlagCache);

impl Drop for ClearScanFlight<'_> {
    fn drop(&mut self) {
        lock(&self.0.snapshot).flight = None;
    }
}
