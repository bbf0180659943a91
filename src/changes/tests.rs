//! Versions, claims, the coalescing that bounds a slow stream, and the re-check's bounds.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::cache::FlagCache;
use crate::config::Config;
use crate::freshness::{Freshness, Manifest, ManifestError, ManifestStore, Written};
use crate::store::fake::FakeStore;
use crate::store::BoxFuture;

fn config(vars: &[(&str, &str)]) -> Config {
    Config::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())).expect("valid")
}

fn version(id: &str, at: u64) -> Version {
    Version { id: id.to_owned(), last_modified: at }
}

/// A manifest that counts its reads and takes `delay` to answer.
struct SlowManifest {
    reads: AtomicUsize,
    delay: Duration,
    version: u64,
}

impl ManifestStore for SlowManifest {
    fn read(&self) -> BoxFuture<'_, Result<Manifest, ManifestError>> {
        Box::pin(async move {
            self.reads.fetch_add(1, Relaxed);
            tokio::time::sleep(self.delay).await;
            Ok(Manifest { version: self.version, changes: Vec::new() })
        })
    }

    fn record<'a>(&'a self, _: &'a [Written]) -> BoxFuture<'a, Result<Manifest, ManifestError>> {
        Box::pin(async { Err(ManifestError::Unreadable("read-only".into())) })
    }
}

fn table_parts(delay: Duration, version: u64) -> (Changes, FlagCache, Freshness, Arc<SlowManifest>) {
    let config = config(&[("FLAGS_TABLE", "flags")]);
    let manifest = Arc::new(SlowManifest { reads: AtomicUsize::new(0), delay, version });
    let freshness = Freshness::new(Some(manifest.clone()), Duration::from_secs(5), SystemTime::now());
    let cache = FlagCache::new(Arc::new(FakeStore::default()), config.cache);
    (Changes::new(&config), cache, freshness, manifest)
}

#[test]
fn claims_are_newer_only_when_they_say_so() {
    let changes = Changes::new(&config(&[("FLAGS_FILE", "f.json")]));
    let claim = |etag: Option<&str>, at: Option<u64>| Claim { etag: etag.map(str::to_owned), last_modified: at };
    assert!(!changes.claims_newer(&claim(None, None)), "no claim, nothing to look for");
    assert!(changes.claims_newer(&claim(None, Some(1))), "nothing seen yet: anything may be newer");
    changes.publish(version("fabc", 100));
    assert!(!changes.claims_newer(&claim(Some("fabc"), Some(100))));
    assert!(!changes.claims_newer(&claim(None, Some(99))));
    assert!(changes.claims_newer(&claim(None, Some(101))));
    assert!(changes.claims_newer(&claim(Some("fdef"), None)), "a file's other etag may be newer");

    let (table, ..) = table_parts(Duration::ZERO, 0);
    table.publish(version("m7", 100));
    assert!(!table.claims_newer(&claim(Some("m6"), None)), "an older manifest version");
    assert!(!table.claims_newer(&claim(Some("m7"), None)));
    assert!(table.claims_newer(&claim(Some("m8"), None)));
    assert!(table.claims_newer(&claim(Some("made-up"), None)), "unknown etags are looked for (rate-limited)");
}

/// A stream that never reads owes one version, however many it missed: the channel
/// keeps the newest only, so memory per stream does not grow with changes.
#[tokio::test]
async fn a_receiver_that_misses_many_changes_sees_only_the_newest() {
    let changes = Changes::new(&config(&[("FLAGS_FILE", "f.json")]));
    let mut receiver = changes.subscribe();
    for n in 0..10_000 {
        changes.publish(version(&format!("f{n}"), n));
    }
    assert!(receiver.has_changed().expect("open"));
    let seen = receiver.borrow_and_update().clone().expect("a version");
    assert_eq!(*seen, version("f9999", 9999));
    assert!(!receiver.has_changed().expect("open"), "nothing else is queued");
    // The same version again is no change.
    changes.publish(version("f9999", 9999));
    assert!(!receiver.has_changed().expect("open"));
}

#[tokio::test]
async fn a_newer_claim_costs_at_most_one_read_shared_by_concurrent_requests() {
    let (changes, cache, freshness, manifest) = table_parts(Duration::from_millis(50), 9);
    let claim = Claim { etag: Some("m9".into()), last_modified: None };
    let now = SystemTime::now();
    let mut all = tokio::task::JoinSet::new();
    let shared = Arc::new((changes, cache, freshness));
    for _ in 0..20 {
        let shared = shared.clone();
        let claim = claim.clone();
        all.spawn(async move { shared.0.refresh_if_claimed_newer(&claim, &shared.1, &shared.2, now).await });
    }
    while all.join_next().await.is_some() {}
    assert_eq!(manifest.reads.load(Relaxed), 1, "one read for twenty requests");
    assert_eq!(shared.0.latest().map(|v| v.id.clone()).as_deref(), Some("m9"));
    // Caught up: the same claim reads nothing more.
    shared.0.refresh_if_claimed_newer(&claim, &shared.1, &shared.2, now).await;
    assert_eq!(manifest.reads.load(Relaxed), 1);
}

#[tokio::test]
async fn made_up_etags_cannot_turn_requests_into_reads() {
    let (changes, cache, freshness, manifest) = table_parts(Duration::ZERO, 3);
    let claim = Claim { etag: Some("m999".into()), last_modified: None };
    let started = std::time::Instant::now();
    while started.elapsed() < RECHECK_MIN_GAP * 4 {
        changes.refresh_if_claimed_newer(&claim, &cache, &freshness, SystemTime::now()).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reads = manifest.reads.load(Relaxed);
    assert!((2..=5).contains(&reads), "one read per {RECHECK_MIN_GAP:?} at most, not one per request: {reads}");
}

#[tokio::test(start_paused = true)]
async fn a_hung_manifest_delays_the_answer_by_the_budget_only() {
    let (changes, cache, freshness, manifest) = table_parts(Duration::from_secs(3600), 1);
    let claim = Claim { etag: Some("m1".into()), last_modified: None };
    let started = tokio::time::Instant::now();
    changes.refresh_if_claimed_newer(&claim, &cache, &freshness, SystemTime::now()).await;
    assert_eq!(started.elapsed(), RECHECK_BUDGET);
    assert_eq!(manifest.reads.load(Relaxed), 1);
    assert!(changes.latest().is_none(), "nothing was learnt; the answer uses what is cached");
}

#[test]
fn file_versions_change_with_the_mtime_or_the_length() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let a = file_version(at, 10);
    assert_eq!(a, file_version(at, 10), "stable: the same file state has the same id");
    assert_eq!(a.last_modified, 1_700_000_000);
    assert_ne!(a.id, file_version(at, 11).id);
    assert_ne!(a.id, file_version(at + Duration::from_nanos(1), 10).id);
    assert!(a.id.starts_with('f') && a.id.len() == 17, "{}", a.id);
}
