//! One request's flags plus every flag their prerequisites name, transitively, with
//! what the cache knows about each (so an unreadable or stale prerequisite is reported).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::cache::{Cached, FlagCache};
use crate::eval::{FlagSet, FlagSource};
use crate::flag::CompiledFlag;

/// Most rounds of prerequisite loading (a chain deeper than this is malformed anyway).
const PREREQUISITE_ROUNDS: usize = crate::flag::MAX_PREREQUISITE_DEPTH + 1;

/// The flags one request asked for, in its order, plus their prerequisites.
#[derive(Debug)]
pub struct Resolved<'k> {
    /// Each requested key (duplicates kept) with what the cache knows about it.
    pub requested: Vec<(&'k str, Cached)>,
    /// Every flag reachable through prerequisites; `None` when there are none.
    prerequisites: Option<Prerequisites>,
}

impl<'k> Resolved<'k> {
    /// Several flags from `cache` (one lock for all hits, one store read for all misses),
    /// plus every flag their prerequisites name, transitively, so the evaluator has what
    /// it needs.
    pub async fn load(cache: &FlagCache, keys: &[&'k str], now: SystemTime) -> Resolved<'k> {
        let requested = cache.get_many(keys, now).await;
        let prerequisites = load_prerequisites(cache, &requested, now).await;
        Resolved { requested, prerequisites }
    }

    /// Where the evaluator looks up prerequisite flags.
    pub fn source(&self) -> &dyn FlagSource {
        match &self.prerequisites {
            Some(p) => p,
            None => &crate::eval::NoFlags,
        }
    }

    /// Whether `flag`'s prerequisites (transitively) include one the store could not
    /// provide, or one served stale: `(unavailable key, any stale)`.
    pub fn prerequisite_health<'a>(&'a self, flag: &'a CompiledFlag) -> (Option<&'a str>, bool) {
        match &self.prerequisites {
            Some(p) => p.health(flag),
            None => (None, false),
        }
    }
}

/// Flags by key for prerequisite lookups, with their cache status.
#[derive(Debug)]
struct Prerequisites {
    flags: FlagSet,
    status: HashMap<Box<str>, Cached>,
}

impl Prerequisites {
    fn new(status: HashMap<Box<str>, Cached>) -> Self {
        let flags = FlagSet::new(status.values().filter_map(|c| c.flag().cloned()));
        Prerequisites { flags, status }
    }

    fn health<'a>(&'a self, flag: &'a CompiledFlag) -> (Option<&'a str>, bool) {
        let mut stale = false;
        let mut stack: Vec<(&str, usize)> = flag.prerequisite_keys().map(|k| (k, 1)).collect();
        while let Some((key, depth)) = stack.pop() {
            if depth > PREREQUISITE_ROUNDS {
                continue; // the evaluator reports the over-deep chain itself
            }
            match self.status.get(key) {
                Some(Cached::Unavailable) => return (Some(key), stale),
                Some(cached) => {
                    stale |= cached.is_stale();
                    if let Some(next) = cached.flag() {
                        stack.extend(next.prerequisite_keys().map(|k| (k, depth + 1)));
                    }
                }
                None => {}
            }
        }
        (None, stale)
    }
}

impl FlagSource for Prerequisites {
    fn flag(&self, key: &str) -> Option<&CompiledFlag> {
        self.flags.flag(key)
    }
}

/// Loads, round by round, every flag the resolved flags name as prerequisites.
/// `None` when no flag has prerequisites (the common case: nothing to build).
async fn load_prerequisites(cache: &FlagCache, requested: &[(&str, Cached)], now: SystemTime) -> Option<Prerequisites> {
    if !requested.iter().any(|(_, c)| c.flag().is_some_and(|f| f.has_prerequisites())) {
        return None;
    }
    let mut known: HashMap<Box<str>, Cached> =
        requested.iter().map(|(key, cached)| (Box::from(*key), cached.clone())).collect();
    let mut frontier: Vec<Arc<CompiledFlag>> = requested.iter().filter_map(|(_, c)| c.flag().cloned()).collect();
    for _ in 0..PREREQUISITE_ROUNDS {
        let mut wanted: Vec<&str> = frontier.iter().flat_map(|f| f.prerequisite_keys()).collect();
        wanted.sort_unstable();
        wanted.dedup();
        wanted.retain(|k| !known.contains_key(*k));
        if wanted.is_empty() {
            break;
        }
        let next: Vec<(Box<str>, Cached)> =
            cache.get_many(&wanted, now).await.into_iter().map(|(k, c)| (Box::from(k), c)).collect();
        frontier = next.iter().filter_map(|(_, c)| c.flag().cloned()).collect();
        known.extend(next);
    }
    Some(Prerequisites::new(known))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::cache::testing::{cache, kind};
    use crate::store::fake::FakeStore;

    #[tokio::test]
    async fn batches_read_every_miss_in_one_call_and_follow_prerequisites() {
        let store = FakeStore::with(&["a", "b", "base"]);
        store.put(json!({"key": "mid", "enabled": true, "prerequisites": [{"key": "base"}]}));
        store.put(json!({"key": "top", "enabled": true, "prerequisites": [{"key": "mid"}, {"key": "gone"}]}));
        let (store, cache) = cache(store);
        let t0 = SystemTime::now();
        cache.get("a", t0).await;
        let resolved = Resolved::load(&cache, &["a", "b", "top", "nope", "b"], t0).await;
        let kinds: Vec<_> = resolved.requested.iter().map(|(k, c)| (*k, kind(c))).collect();
        assert_eq!(kinds, [("a", "fresh"), ("b", "fresh"), ("top", "fresh"), ("nope", "not_found"), ("b", "fresh")]);
        assert_eq!(
            store.calls(),
            ["get:a", "get_many:b,nope,top", "get_many:gone,mid", "get:base"],
            "hits are not re-read; each prerequisite round is one read"
        );
        assert_eq!(resolved.source().flag("base").map(CompiledFlag::key), Some("base"));
        assert!(resolved.source().flag("gone").is_none());
    }

    #[tokio::test]
    async fn batches_without_prerequisites_build_no_lookup_table() {
        let (_, cache) = cache(FakeStore::with(&["a"]));
        let resolved = Resolved::load(&cache, &["a"], SystemTime::now()).await;
        assert!(resolved.prerequisites.is_none());
    }

    #[tokio::test]
    async fn unavailable_or_stale_prerequisites_are_reported() {
        let store = FakeStore::with(&["base"]);
        store.put(json!({"key": "top", "enabled": true, "prerequisites": [{"key": "base"}]}));
        store.put(json!({"key": "needs-missing", "enabled": true, "prerequisites": [{"key": "unread"}]}));
        let (store, cache) = cache(store);
        let t0 = SystemTime::now();
        Resolved::load(&cache, &["top"], t0).await;
        cache.get("needs-missing", t0).await;
        store.failing.store(true, Ordering::SeqCst);
        let later = t0 + Duration::from_secs(400);
        let resolved = Resolved::load(&cache, &["top", "needs-missing"], later).await;
        let top = resolved.requested[0].1.flag().cloned().expect("stale top");
        assert_eq!(resolved.prerequisite_health(&top), (None, true));
        let other = resolved.requested[1].1.flag().cloned().expect("stale needs-missing");
        // `unread` was never cached, so the store outage leaves it unavailable.
        assert_eq!(resolved.prerequisite_health(&other), (Some("unread"), false));
    }
}
