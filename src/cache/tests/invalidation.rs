//! Invalidation by the change manifest: exactly the given keys, the
//! snapshot, or everything; the old value stays servable stale; reads racing an
//! invalidation are not trusted.

use super::*;

#[tokio::test]
async fn invalidating_keys_rereads_exactly_those_keys_and_the_snapshot() {
    let (store, cache) = cache(FakeStore::with(&["a", "b"]));
    let t0 = SystemTime::now();
    cache.get("a", t0).await;
    cache.get("b", t0).await;
    assert_eq!(kind(&cache.get("ghost", t0).await), "not_found");
    cache.all(t0).await.expect("snapshot");
    store.put(json!({"key": "a", "enabled": false, "version": 2}));
    store.put(json!({"key": "ghost", "enabled": true, "version": 1}));
    let t1 = t0 + secs(1);
    assert_eq!(cache.invalidate_keys(["a", "ghost", "never-cached"], t1), 2);
    let before = store.calls().len();
    assert_eq!(cache.get("a", t1).await.flag().map(|f| f.version()), Some(2));
    assert_eq!(kind(&cache.get("ghost", t1).await), "fresh", "an invalidated not-found is read again");
    assert_eq!(kind(&cache.get("b", t1).await), "fresh");
    let snapshot = cache.all(t1).await.expect("snapshot");
    assert_eq!(store.calls()[before..], ["get:a", "get:ghost", "scan"], "b stays cached");
    assert_eq!(snapshot.flags.iter().find(|f| f.key() == "a").map(|f| f.version()), Some(2));
}

#[tokio::test]
async fn invalidating_the_snapshot_leaves_the_keys_cached() {
    let (store, cache) = cache(FakeStore::with(&["a"]));
    let t0 = SystemTime::now();
    cache.all(t0).await.expect("snapshot");
    cache.invalidate_snapshot(t0 + secs(1));
    cache.get("a", t0 + secs(1)).await;
    cache.all(t0 + secs(1)).await.expect("snapshot");
    assert_eq!(store.calls(), ["scan", "scan"]);
}

#[tokio::test]
async fn invalidating_everything_rereads_every_key() {
    let (store, cache) = cache(FakeStore::with(&["a", "b"]));
    let t0 = SystemTime::now();
    cache.get("a", t0).await;
    cache.get("b", t0).await;
    cache.get("ghost", t0).await;
    cache.invalidate_all(t0 + secs(1));
    for key in ["a", "b", "ghost"] {
        cache.get(key, t0 + secs(1)).await;
    }
    assert_eq!(store.calls(), ["get:a", "get:b", "get:ghost", "get:a", "get:b", "get:ghost"]);
}

#[tokio::test]
async fn an_invalidated_flag_is_still_served_stale_while_the_store_fails() {
    let (store, cache) = cache(FakeStore::with(&["a"]));
    let t0 = SystemTime::now();
    cache.get("a", t0).await;
    cache.all(t0).await.expect("snapshot");
    store.failing.store(true, Ordering::SeqCst);
    cache.invalidate_all(t0 + secs(1));
    assert_eq!(kind(&cache.get("a", t0 + secs(1)).await), "stale");
    assert!(cache.all(t0 + secs(1)).await.expect("stale snapshot").stale);
}

#[tokio::test(flavor = "current_thread")]
async fn a_read_under_way_during_an_invalidation_is_cached_as_expired() {
    let gate = Arc::new(Semaphore::new(0));
    let store = FakeStore { gate: Some(gate.clone()), ..FakeStore::with(&["a"]) };
    let (store, cache) = cache(store);
    let cache = Arc::new(cache);
    let t0 = SystemTime::now();
    let reader = {
        let cache = cache.clone();
        tokio::spawn(async move { kind(&cache.get("a", t0).await) })
    };
    tokio::task::yield_now().await;
    assert_eq!(store.calls(), ["get:a"], "the read is under way");
    cache.invalidate_keys(["a"], t0);
    gate.add_permits(100);
    assert_eq!(reader.await.expect("task"), "fresh", "the waiting request gets what was read");
    cache.get("a", t0 + secs(1)).await;
    assert_eq!(store.calls(), ["get:a", "get:a"], "what the racing read cached is not trusted");
    cache.get("a", t0 + secs(2)).await;
    assert_eq!(store.calls().len(), 2, "a read after the invalidation is cached normally");
}

#[tokio::test]
async fn refreshing_keys_rereads_the_cached_ones_at_once_so_the_next_lookup_is_a_hit() {
    let (store, cache) = cache(FakeStore::with(&["a", "b"]));
    let t0 = SystemTime::now();
    cache.get("a", t0).await;
    cache.get("b", t0).await;
    store.put(json!({"key": "a", "enabled": false, "version": 2}));
    cache.refresh_keys(&["a", "not-cached"], t0 + secs(1)).await;
    assert_eq!(store.calls(), ["get:a", "get:b", "get:a"], "only the cached key is read again");
    assert_eq!(cache.get("a", t0 + secs(2)).await.flag().map(|f| f.version()), Some(2));
    assert_eq!(store.calls().len(), 3, "and the next lookup is a hit");
}
