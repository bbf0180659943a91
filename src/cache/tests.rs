//! Cache logic above the `FlagStore` trait, with an in-memory store that counts calls,
//! can fail on demand and can hold reads open. The same behaviours are tested against
//! real DynamoDB (moto) in `tests/cache_dynamodb.rs`.

use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio::sync::Semaphore;

use super::testing::{cache, cache_with, config, kind};
use super::*;
use crate::store::fake::FakeStore;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test]
async fn hits_within_the_ttl_read_the_store_once() {
    let (store, cache) = cache(FakeStore::with(&["a"]));
    let t0 = SystemTime::now();
    for i in 0..100 {
        let got = cache.get("a", t0 + Duration::from_secs(i)).await;
        assert_eq!(got.flag().map(|f| f.key()), Some("a"));
    }
    assert_eq!(store.calls(), ["get:a"]);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.store_reads), (99, 1, 1));
}

#[tokio::test]
async fn entries_expire_after_the_ttl_and_are_read_again() {
    let (store, cache) = cache(FakeStore::with(&["a"]));
    let t0 = SystemTime::now();
    assert_eq!(kind(&cache.get("a", t0).await), "fresh");
    assert_eq!(kind(&cache.get("a", t0 + secs(299)).await), "fresh");
    assert_eq!(store.calls().len(), 1);
    // A changed flag is seen once the TTL has passed.
    store.put(json!({"key": "a", "enabled": false, "version": 2}));
    let refreshed = cache.get("a", t0 + secs(300)).await;
    assert_eq!(refreshed.flag().map(|f| f.version()), Some(2));
    assert_eq!(store.calls(), ["get:a", "get:a"]);
}

#[tokio::test]
async fn not_found_is_cached_for_the_negative_ttl_only() {
    let (store, cache) = cache(FakeStore::with(&[]));
    let t0 = SystemTime::now();
    assert_eq!(kind(&cache.get("ghost", t0).await), "not_found");
    assert_eq!(kind(&cache.get("ghost", t0 + secs(29)).await), "not_found");
    assert_eq!(store.calls().len(), 1);
    store.put(json!({"key": "ghost", "enabled": true}));
    assert_eq!(kind(&cache.get("ghost", t0 + secs(30)).await), "fresh");
    assert_eq!(store.calls().len(), 2);
}

#[tokio::test]
async fn capacity_evicts_the_least_recently_used() {
    let config = CacheConfig { max_entries: NonZeroUsize::new(2).expect("non-zero"), ..config() };
    let (store, cache) = cache_with(FakeStore::with(&["a", "b", "c"]), config);
    let t0 = SystemTime::now();
    cache.get("a", t0).await;
    cache.get("b", t0).await;
    cache.get("a", t0).await; // a is now more recent than b
    cache.get("c", t0).await; // evicts b
    assert_eq!(cache.stats().evictions, 1);
    assert_eq!(cache.stats().entries, 2);
    cache.get("a", t0).await;
    assert_eq!(store.calls(), ["get:a", "get:b", "get:c"]);
    cache.get("b", t0).await;
    assert_eq!(store.calls().last().map(String::as_str), Some("get:b"));
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_misses_of_one_key_share_one_read() {
    let gate = Arc::new(Semaphore::new(0));
    let store = FakeStore { gate: Some(gate.clone()), ..FakeStore::with(&["hot"]) };
    let (store, cache) = cache(store);
    let cache = Arc::new(cache);
    let t0 = SystemTime::now();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { kind(&cache.get("hot", t0).await) })
        })
        .collect();
    // Let every task run up to the point where it waits (one on the store, 49 on it).
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(store.calls(), ["get:hot"]);
    gate.add_permits(1000);
    for task in tasks {
        assert_eq!(task.await.expect("task"), "fresh");
    }
    assert_eq!(store.calls(), ["get:hot"]);
    assert_eq!(cache.stats().store_reads, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_reader_does_not_strand_the_others() {
    let gate = Arc::new(Semaphore::new(0));
    let store = FakeStore { gate: Some(gate.clone()), ..FakeStore::with(&["k"]) };
    let (store, cache) = cache(store);
    let cache = Arc::new(cache);
    let t0 = SystemTime::now();
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get("k", t0).await })
    };
    tokio::task::yield_now().await;
    let follower = {
        let cache = cache.clone();
        tokio::spawn(async move { kind(&cache.get("k", t0).await) })
    };
    tokio::task::yield_now().await;
    leader.abort();
    gate.add_permits(10);
    assert_eq!(follower.await.expect("follower"), "fresh");
    assert_eq!(store.calls(), ["get:k", "get:k"]);
}

#[tokio::test]
async fn store_errors_serve_stale_values_never_not_found() {
    let (store, cache) = cache(FakeStore::with(&["cached"]));
    let t0 = SystemTime::now();
    cache.get("cached", t0).await;
    store.failing.store(true, Ordering::SeqCst);
    let later = t0 + secs(301);
    // Expired + store down → the last good value, marked stale.
    assert_eq!(kind(&cache.get("cached", later).await), "stale");
    // Nothing cached + store down → unavailable (GENERAL), not "not found". The key is
    // its own target: another key's failure does not keep it from being tried.
    let reads = store.calls().len();
    assert!(matches!(cache.get("never-seen", later).await, Cached::Unavailable));
    assert_eq!(store.calls().len(), reads + 1, "an uncached key is tried");
    // Within its backoff the store is not asked again for the stale key.
    assert_eq!(kind(&cache.get("cached", later + Duration::from_millis(500)).await), "stale");
    assert_eq!(store.calls().len(), reads + 1);
    // After it, it is; and once the store is back, values are fresh again.
    assert_eq!(kind(&cache.get("cached", later + secs(2)).await), "stale");
    assert_eq!(store.calls().len(), reads + 2);
    store.failing.store(false, Ordering::SeqCst);
    assert_eq!(kind(&cache.get("cached", later + secs(4)).await), "fresh");
    assert_eq!(kind(&cache.get("never-seen", later + secs(4)).await), "not_found");
    let stats = cache.stats();
    assert_eq!(stats.stale_serves, 3);
    assert_eq!(stats.store_errors, 3);
}

#[tokio::test]
async fn stale_values_are_served_only_within_the_stale_window() {
    let config = CacheConfig { stale_if_error: secs(60), ..config() };
    let (store, cache) = cache_with(FakeStore::with(&["a"]), config);
    let t0 = SystemTime::now();
    cache.get("a", t0).await;
    store.failing.store(true, Ordering::SeqCst);
    assert_eq!(kind(&cache.get("a", t0 + secs(359)).await), "stale");
    assert_eq!(kind(&cache.get("a", t0 + secs(361)).await), "unavailable");
}

/// Stale-if-error covers "not found" as it covers flags: a key known not to exist stays
/// "not found" while the store fails, for `negative_ttl + stale_if_error`, and its
/// failed re-read holds back only that key.
#[tokio::test]
async fn an_expired_not_found_is_served_stale_during_an_outage_within_the_stale_window() {
    let config = CacheConfig { stale_if_error: secs(60), ..config() };
    let (store, cache) = cache_with(FakeStore::with(&[]), config);
    let clock = crate::clock::Clock::manual();
    assert_eq!(kind(&cache.get("ghost", clock.wall()).await), "not_found");
    store.failing.store(true, Ordering::SeqCst);
    clock.advance(secs(31));
    assert_eq!(kind(&cache.get("ghost", clock.wall()).await), "not_found", "the failed re-read");
    assert_eq!(store.calls().len(), 2);
    clock.advance(Duration::from_millis(500));
    assert_eq!(kind(&cache.get("ghost", clock.wall()).await), "not_found", "within its backoff");
    assert_eq!(store.calls().len(), 2, "not asked again within the key's backoff");
    assert_eq!(cache.stats().stale_serves, 2);
    // 30 s negative TTL + 60 s stale window after the store said so: then an error.
    clock.advance(secs(58));
    assert_eq!(kind(&cache.get("ghost", clock.wall()).await), "not_found");
    clock.advance(secs(1));
    assert_eq!(kind(&cache.get("ghost", clock.wall()).await), "unavailable");
    // The store back: read again, and "not found" is fresh again.
    store.failing.store(false, Ordering::SeqCst);
    clock.advance(secs(2));
    assert_eq!(kind(&cache.get("ghost", clock.wall()).await), "not_found");
    assert_eq!(cache.stats().entries, 1, "one not-found entry, replaced in place");
}

#[tokio::test]
async fn the_snapshot_is_one_scan_per_ttl_and_falls_back_to_stale() {
    let (store, cache) = cache(FakeStore::with(&["a", "b"]));
    let t0 = SystemTime::now();
    let first = cache.all(t0).await.expect("scan");
    assert_eq!((first.flags.len(), first.stale), (2, false));
    cache.all(t0 + secs(10)).await.expect("cached");
    assert_eq!(store.calls(), ["scan"]);
    // The scan also warmed the per-key cache.
    assert_eq!(kind(&cache.get("b", t0 + secs(10)).await), "fresh");
    assert_eq!(store.calls(), ["scan"]);
    store.failing.store(true, Ordering::SeqCst);
    let stale = cache.all(t0 + secs(301)).await.expect("stale snapshot");
    assert!(stale.stale);
    assert!(cache.all(t0 + secs(301 + 3600)).await.is_err());
}

#[tokio::test]
async fn no_snapshot_and_a_failing_store_is_an_error_not_an_empty_set() {
    let store = FakeStore::with(&["a"]);
    store.failing.store(true, Ordering::SeqCst);
    let (store, cache) = cache(store);
    let err = cache.all(SystemTime::now()).await.expect_err("nothing to serve");
    assert!(err.to_string().contains("store is down"), "{err}");
    assert_eq!(store.calls(), ["scan"]);
}

/// A read that hangs for 2 s before failing must not leave a backoff
/// that ended while it hung. Time is paused: the hang takes 2 s of tokio time.
#[tokio::test(start_paused = true)]
async fn the_backoff_runs_from_when_the_failure_is_known() {
    let store = FakeStore { hang: Some(secs(2)), ..FakeStore::with(&["a"]) };
    let (store, cache) = cache(store);
    let t0 = SystemTime::now();
    cache.get("a", t0).await;
    store.failing.store(true, Ordering::SeqCst);
    let t1 = t0 + secs(301);
    assert_eq!(kind(&cache.get("a", t1).await), "stale");
    assert_eq!(store.calls().len(), 2);
    // The failure was known at t1 + 2 s; until t1 + 3 s the store is left alone and the
    // cached flag comes back stale at once (measured from t1, the backoff would have
    // ended at t1 + 1 s and this request would have waited 2 s on the store again).
    for offset in [1_100, 2_000, 2_999] {
        let started = tokio::time::Instant::now();
        assert_eq!(kind(&cache.get("a", t1 + Duration::from_millis(offset)).await), "stale");
        assert_eq!(started.elapsed(), Duration::ZERO, "at +{offset} ms: served without waiting");
    }
    assert_eq!(store.calls().len(), 2, "no store call during the backoff");
    assert_eq!(kind(&cache.get("a", t1 + secs(3)).await), "stale");
    assert_eq!(store.calls().len(), 3, "the backoff is over: the store is tried again");
}

/// A flood of unknown keys cannot evict the flags in use, so they
/// are still there to serve stale when the store then fails.
#[tokio::test]
async fn unknown_keys_never_evict_flags() {
    let config = CacheConfig { max_entries: NonZeroUsize::new(4).expect("non-zero"), ..config() };
    let (store, cache) = cache_with(FakeStore::with(&["a", "b", "c", "d"]), config);
    let t0 = SystemTime::now();
    for key in ["a", "b", "c", "d"] {
        assert_eq!(kind(&cache.get(key, t0).await), "fresh");
    }
    for i in 0..1000 {
        assert_eq!(kind(&cache.get(&format!("ghost-{i}"), t0).await), "not_found");
    }
    // The unknown keys pushed out only each other: one not-found slot (4 / 4).
    assert_eq!(cache.stats().entries, 5);
    assert_eq!(cache.stats().evictions, 999);
    // The most recent unknown key is still remembered; the flags are all still cached.
    let reads = store.calls().len();
    assert_eq!(kind(&cache.get("ghost-999", t0).await), "not_found");
    store.failing.store(true, Ordering::SeqCst);
    let later = t0 + secs(301);
    for key in ["a", "b", "c", "d"] {
        assert_eq!(kind(&cache.get(key, later).await), "stale", "{key}");
    }
    assert_eq!(store.calls().len(), reads + 4, "one failed refresh per flag, within the failure budget");
}

#[tokio::test]
async fn a_deleted_flag_leaves_the_flag_cache_when_its_key_is_found_missing() {
    let (store, cache) = cache(FakeStore::with(&["a"]));
    let t0 = SystemTime::now();
    assert_eq!(kind(&cache.get("a", t0).await), "fresh");
    lock(&store.flags).remove("a");
    assert_eq!(kind(&cache.get("a", t0 + secs(300)).await), "not_found");
    // During an outage the deleted flag is not resurrected as stale: the store's last
    // word, "not found", stands (served stale).
    store.failing.store(true, Ordering::SeqCst);
    assert_eq!(kind(&cache.get("a", t0 + secs(400)).await), "not_found");
    assert_eq!(cache.stats().entries, 1);
}

mod invalidation;
mod outage;
