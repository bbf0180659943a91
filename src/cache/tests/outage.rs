//! The retry policy under failing stores, driven by the manual clock: per-target
//! backoff (a key, the snapshot), the store-wide failure budget, and a store that fails
//! half its calls.

use super::*;
use crate::clock::Clock;

/// A cache with a 1 s TTL (so keys and the snapshot expire every second, as after a
/// stream of changes) over `keys`, everything read once at the clock's start.
async fn warmed(keys: &[&str]) -> (Arc<FakeStore>, FlagCache, Clock) {
    let config = CacheConfig { ttl: secs(1), negative_ttl: secs(1), ..config() };
    let (store, cache) = cache_with(FakeStore::with(keys), config);
    let clock = Clock::manual();
    cache.all(clock.wall()).await.expect("snapshot");
    (store, cache, clock)
}

fn scans(store: &FakeStore) -> usize {
    store.calls().iter().filter(|c| *c == "scan").count()
}

#[tokio::test]
async fn a_failed_key_holds_back_neither_other_keys_nor_the_snapshot() {
    let (store, cache, clock) = warmed(&["a", "b"]).await;
    store.failing.store(true, Ordering::SeqCst);
    clock.advance(secs(2));
    let now = clock.wall();
    assert_eq!(kind(&cache.get("a", now).await), "stale");
    // Not held back by a's failure: b and the snapshot are each tried (and fail).
    assert_eq!(kind(&cache.get("b", now).await), "stale");
    assert!(cache.all(now).await.expect("stale snapshot").stale);
    assert_eq!(store.calls()[1..], ["get:a", "get:b", "scan"]);
    // Each is left alone for its own backoff ...
    clock.advance(Duration::from_millis(999));
    let now = clock.wall();
    assert_eq!(kind(&cache.get("a", now).await), "stale");
    assert!(cache.all(now).await.expect("stale snapshot").stale);
    assert_eq!(store.calls().len(), 4, "nothing retried within the backoff");
    // ... and retried after it (which runs from when the failure was known, the few µs
    // the call took after `now`); a success ends it.
    store.failing.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_millis(2));
    let now = clock.wall();
    assert_eq!(kind(&cache.get("a", now).await), "fresh");
    assert!(!cache.all(now).await.expect("snapshot").stale);
    assert_eq!(store.calls()[4..], ["get:a", "scan"]);
}

/// Every other store call fails; requests ask for three keys and every flag ten times
/// a second for 20 s, the TTL being 1 s. Nothing starves: the snapshot and each key
/// are refreshed every few seconds (a shared backoff read the snapshot once in 20 s),
/// and the store sees at most one call per target per second after a failure.
#[tokio::test]
async fn a_store_failing_half_its_calls_keeps_every_target_refreshed() {
    let (store, cache, clock) = warmed(&["a", "b", "c"]).await;
    store.half_failing.store(true, Ordering::SeqCst);
    let started = store.calls().len();
    let (mut last_fresh_snapshot, mut longest_stale) = (clock.wall(), Duration::ZERO);
    for _ in 0..200 {
        clock.advance(Duration::from_millis(100));
        let now = clock.wall();
        for key in ["a", "b", "c"] {
            assert_ne!(kind(&cache.get(key, now).await), "unavailable", "{key}");
        }
        let snapshot = cache.all(now).await.expect("a snapshot, fresh or stale");
        if !snapshot.stale {
            longest_stale = longest_stale.max(now.duration_since(last_fresh_snapshot).unwrap_or_default());
            last_fresh_snapshot = now;
        }
    }
    let calls = store.calls()[started..].to_vec();
    let scans = calls.iter().filter(|c| *c == "scan").count();
    eprintln!("{} store calls in 20 s, {scans} scans; longest without a fresh snapshot {longest_stale:?}", calls.len());
    assert!(scans >= 5, "the snapshot was tried {scans} times in 20 s");
    assert!(longest_stale <= secs(5), "the snapshot went {longest_stale:?} without a refresh");
    // Four targets, each read at most once per TTL when fresh and once per backoff
    // after a failure: at most 4 × 20 × 2 calls, whatever the request rate (800 asks).
    assert!(calls.len() <= 160, "{} calls", calls.len());
}

/// A full outage with many keys: the failure budget, not the number of keys, bounds
/// the calls; what is held is served stale meanwhile, and the budget refills.
#[tokio::test]
async fn the_failure_budget_bounds_a_full_outage_however_many_keys_are_asked() {
    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (store, cache, clock) = warmed(&refs).await;
    store.failing.store(true, Ordering::SeqCst);
    clock.advance(secs(2));
    let before = store.calls().len();
    for key in &refs {
        assert_eq!(kind(&cache.get(key, clock.wall()).await), "stale", "{key}");
    }
    assert_eq!(store.calls().len() - before, FAILURE_BURST as usize, "the burst, then nothing");
    // Ten seconds of every key asked ten times a second: the budget refills at its rate.
    for _ in 0..100 {
        clock.advance(Duration::from_millis(100));
        for key in &refs {
            assert_eq!(kind(&cache.get(key, clock.wall()).await), "stale", "{key}");
        }
    }
    let calls = store.calls().len() - before;
    let bound = (FAILURE_BURST + 10.0 * FAILURES_PER_SECOND) as usize + 1;
    assert!(calls <= bound, "{calls} calls in 10 s (bound {bound}); 5,000 asks");
    assert!(calls >= bound - 5, "{calls} calls: the budget refills, the store is still tried");
    // An uncached key with the budget spent fails at once, without a call.
    let before = store.calls().len();
    assert_eq!(kind(&cache.get("never-seen", clock.wall()).await), "unavailable");
    assert_eq!(store.calls().len(), before);
}

/// The change manifest invalidates a not-found key during an outage: it is still "not
/// found" (the store's last word), not an error, and read again once the store is back.
#[tokio::test]
async fn an_invalidated_not_found_stays_not_found_while_the_store_fails() {
    let (store, cache, clock) = warmed(&["a"]).await;
    assert_eq!(kind(&cache.get("ghost", clock.wall()).await), "not_found");
    store.failing.store(true, Ordering::SeqCst);
    cache.invalidate_all(clock.wall());
    assert_eq!(kind(&cache.get("ghost", clock.wall()).await), "not_found");
    assert_eq!(kind(&cache.get("a", clock.wall()).await), "stale");
    store.failing.store(false, Ordering::SeqCst);
    store.put(json!({"key": "ghost", "enabled": true}));
    clock.advance(secs(2));
    assert_eq!(kind(&cache.get("ghost", clock.wall()).await), "fresh");
    assert_eq!(scans(&store), 1);
}
