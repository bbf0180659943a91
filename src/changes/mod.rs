//! The flag configuration's version, and telling clients when it changes
//! (docs/api.md, "Change stream"; OFREP's event streams).
//!
//! A [`Version`] names one state of the flag configuration: for a flags file, its
//! modification time and length; for a table with a change manifest, the manifest's
//! version (the same number in every environment, so ids agree across instances).
//! [`Changes`] keeps the newest version seen in a `watch` channel: a stream waiting on
//! it sees only the latest value, never a queue, so a client that reads slowly (or not
//! at all) costs one version however many changes it misses.
//!
//! Versions move forward two ways, neither on an ordinary request's path:
//! - [`Changes::watch`], the local server's background task, looks at the source every
//!   [`LOOK_EVERY`] and, on a change, makes the cache re-read before announcing it (so
//!   the re-fetch a client makes on the announcement already sees the new flags);
//! - [`Changes::refresh_if_claimed_newer`], on a bulk request whose `flagConfigEtag` /
//!   `flagConfigLastModified` say the client has heard of a newer configuration: one
//!   look, bounded by [`RECHECK_BUDGET`], shared by every request that asks at once and
//!   at most one per [`RECHECK_MIN_GAP`] (so a client repeating a made-up etag cannot turn
//!   requests into store reads).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::cache::FlagCache;
use crate::clock::Clock;
use crate::config::{Config, FlagSourceConfig};
use crate::freshness::Freshness;

/// How often the background task looks at the source: a flags-file edit is announced
/// within this (plus the cache re-read), well inside the 2 s the stream promises.
pub const LOOK_EVERY: Duration = Duration::from_millis(250);
/// How often, while any stream is open, the manifest is read for the stream's sake (the
/// ordinary freshness window may be longer than the 2 s a stream promises).
pub const MANIFEST_LOOK_EVERY: Duration = Duration::from_secs(1);
/// The longest a bulk request waits for a freshness re-check before answering with
/// what it has.
pub const RECHECK_BUDGET: Duration = Duration::from_secs(1);
/// Least time between two re-checks triggered by requests.
pub const RECHECK_MIN_GAP: Duration = Duration::from_millis(250);

/// The change stream bulk responses point clients at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advert<'a> {
    /// This server's own stream (advertised by path, under the client's base URL).
    Here,
    /// A stream served elsewhere (`EVENT_STREAM_URL`).
    Url(&'a str),
}

/// One state of the flag configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Opaque, stable id: the SSE event id and the `etag` of a change event
    /// (`f` + 16 hex digits for a file, `m` + the manifest version for a table).
    pub id: String,
    /// When the configuration last changed, Unix seconds (0: unknown).
    pub last_modified: u64,
}

impl Version {
    /// This version as one OFREP `refetchEvaluation` message: the id is also the `etag`
    /// (ids are ours, `f…` / `m…`: nothing to escape).
    pub fn sse_message(&self) -> Vec<u8> {
        format!(
            "id: {id}\nevent: message\ndata: {{\"type\":\"refetchEvaluation\",\"etag\":\"{id}\",\"lastModified\":{at}}}\n\n",
            id = self.id,
            at = self.last_modified
        )
        .into_bytes()
    }
}

/// What a client says it has heard of (`flagConfigEtag`, `flagConfigLastModified`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    /// An etag from a change event.
    pub etag: Option<String>,
    /// A last-modified time from a change event, Unix seconds.
    pub last_modified: Option<u64>,
}

/// Where versions come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A local flags file: its modification time and length.
    File(PathBuf),
    /// A table: the change manifest, read through [`Freshness`].
    Manifest,
}

/// The newest version seen, the streams open on it, and the re-check gate.
#[derive(Debug)]
pub struct Changes {
    source: Source,
    latest: watch::Sender<Option<Arc<Version>>>,
    /// Set at shutdown: every stream ends.
    closing: watch::Sender<bool>,
    /// When the last request-triggered re-check ran (a tokio mutex: held across it).
    recheck: tokio::sync::Mutex<Option<Instant>>,
    slots: Arc<Semaphore>,
    max_streams: usize,
    /// Whether a server is serving the stream (so bulk responses advertise it).
    served: AtomicBool,
    /// A stream served elsewhere, advertised instead (`EVENT_STREAM_URL`).
    elsewhere: Option<String>,
    heartbeat: Duration,
}

/// How often an open stream sends a comment line, so proxies and clients see it alive.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

impl Changes {
    /// The changes of the configuration's flag source, with at most `max_streams`
    /// streams open at once.
    pub fn new(config: &Config) -> Self {
        let source = match &config.flags {
            FlagSourceConfig::File(path) => Source::File(path.clone()),
            FlagSourceConfig::Table(_) => Source::Manifest,
        };
        let max_streams = config.stream_max_clients;
        Changes {
            source,
            latest: watch::channel(None).0,
            closing: watch::channel(false).0,
            recheck: tokio::sync::Mutex::new(None),
            slots: Arc::new(Semaphore::new(max_streams)),
            max_streams,
            served: AtomicBool::new(false),
            elsewhere: config.event_stream_url.clone(),
            heartbeat: HEARTBEAT,
        }
    }

    /// These changes with another heartbeat interval (tests use a short one).
    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(10));
        self
    }

    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// The newest version seen (`None` before the first look).
    pub fn latest(&self) -> Option<Arc<Version>> {
        self.latest.borrow().clone()
    }

    /// A receiver that wakes on each new version (only the newest is kept).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Version>>> {
        self.latest.subscribe()
    }

    /// A receiver that turns `true` at shutdown.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Ends every open stream (shutdown).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// A stream slot, or `None` at `STREAM_MAX_CLIENTS` (or when streams are off).
    pub fn open_stream(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.max_streams - self.slots.available_permits()
    }

    /// Whether this process serves the stream: a server runs and streams are on.
    pub fn served(&self) -> bool {
        self.max_streams > 0 && self.served.load(Ordering::Relaxed)
    }

    /// What bulk responses advertise: `EVENT_STREAM_URL` when set, else this server's
    /// own stream when it serves one.
    pub fn advertised(&self) -> Option<Advert<'_>> {
        match &self.elsewhere {
            Some(url) => Some(Advert::Url(url)),
            None => self.served().then_some(Advert::Here),
        }
    }

    /// From now on bulk responses advertise the stream (a server serves it).
    pub fn serve(&self) {
        self.served.store(true, Ordering::Relaxed);
    }

    /// Looks at the source every [`LOOK_EVERY`] until dropped: the local server's task.
    pub async fn watch(&self, cache: &FlagCache, freshness: &Freshness, clock: &Clock) {
        let mut last_manifest_read = Instant::now();
        let mut tick = tokio::time::interval(LOOK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let read_manifest = self.open_streams() > 0 && last_manifest_read.elapsed() >= MANIFEST_LOOK_EVERY;
            if read_manifest {
                last_manifest_read = Instant::now();
            }
            self.look(cache, freshness, clock.wall(), read_manifest).await;
        }
    }

    /// One look at the source; a new version is announced after the cache has been told.
    /// `read_manifest`: read the manifest now rather than take what the last freshness
    /// check saw.
    pub async fn look(&self, cache: &FlagCache, freshness: &Freshness, now: SystemTime, read_manifest: bool) {
        match &self.source {
            Source::File(path) => {
                // A file that cannot be read keeps the last version: the store reports it.
                let Ok(meta) = tokio::fs::metadata(path).await else { return };
                let Ok(modified) = meta.modified() else { return };
                let version = file_version(modified, meta.len());
                if self.latest().is_some_and(|v| v.id == version.id) {
                    return;
                }
                cache.invalidate_all(now);
                self.publish(version);
            }
            Source::Manifest => {
                if read_manifest {
                    freshness.check_now(cache, now).await;
                }
                self.note_manifest(freshness);
            }
        }
    }

    /// Takes the manifest version the last freshness check applied (a table's source;
    /// cheap: one uncontended lock). Lambda's bulk route calls it, having no watcher.
    pub fn note_manifest(&self, freshness: &Freshness) {
        if self.source != Source::Manifest {
            return;
        }
        if let Some((version, at_ms)) = freshness.applied() {
            self.publish(Version { id: format!("m{version}"), last_modified: at_ms / 1000 });
        }
    }

    fn publish(&self, version: Version) {
        self.latest.send_if_modified(|latest| {
            if latest.as_ref().is_some_and(|l| **l == version) {
                return false;
            }
            *latest = Some(Arc::new(version));
            true
        });
    }

    /// Whether `claim` names a configuration this environment may not have seen yet.
    pub fn claims_newer(&self, claim: &Claim) -> bool {
        if claim.etag.is_none() && claim.last_modified.is_none() {
            return false;
        }
        let Some(latest) = self.latest() else { return true };
        let etag_newer = claim.etag.as_deref().is_some_and(|etag| match (manifest_number(etag), &self.source) {
            (Some(theirs), Source::Manifest) => manifest_number(&latest.id).is_none_or(|ours| theirs > ours),
            _ => etag != latest.id,
        });
        etag_newer || claim.last_modified.is_some_and(|at| at > latest.last_modified)
    }

    /// The server side of "re-fetch after a change event": when `claim` is newer than
    /// what this environment has, one look at the source (the manifest read, or the
    /// file's metadata) before the request is answered, within [`RECHECK_BUDGET`].
    /// Concurrent requests share one look; looks are [`RECHECK_MIN_GAP`] apart at least.
    pub async fn refresh_if_claimed_newer(
        &self,
        claim: &Claim,
        cache: &FlagCache,
        freshness: &Freshness,
        now: SystemTime,
    ) {
        self.note_manifest(freshness);
        if !self.claims_newer(claim) {
            return;
        }
        let recheck = async {
            let mut last = self.recheck.lock().await;
            if !self.claims_newer(claim) || last.is_some_and(|at| at.elapsed() < RECHECK_MIN_GAP) {
                return;
            }
            *last = Some(Instant::now());
            self.look(cache, freshness, now, true).await;
        };
        if tokio::time::timeout(RECHECK_BUDGET, recheck).await.is_err() {
            tracing::warn!("the freshness re-check took over a second; answering with the flags at hand");
        }
    }
}

/// A file's version: `f` and a hash of its modification time and length.
fn file_version(modified: SystemTime, len: u64) -> Version {
    let since = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut bytes = [0u8; 24];
    bytes[..8].copy_from_slice(&since.as_secs().to_le_bytes());
    bytes[8..16].copy_from_slice(&u64::from(since.subsec_nanos()).to_le_bytes());
    bytes[16..].copy_from_slice(&len.to_le_bytes());
    Version { id: format!("f{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)), last_modified: since.as_secs() }
}

/// The manifest version in an id of ours (`m42`).
fn manifest_number(id: &str) -> Option<u64> {
    id.strip_prefix('m')?.parse().ok()
}

#[cfg(test)]
mod tests;
