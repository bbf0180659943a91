//! Test helpers for code above the cache: a cache over the in-memory
//! [`FakeStore`] and a one-word name for each kind of answer.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use super::{Cached, FlagCache};
use crate::config::CacheConfig;
use crate::store::fake::FakeStore;

/// TTL 300 s, 100 entries, not-found kept 30 s, stale served up to an hour.
pub(crate) fn config() -> CacheConfig {
    CacheConfig {
        ttl: Duration::from_secs(300),
        max_entries: NonZeroUsize::new(100).expect("non-zero"),
        negative_ttl: Duration::from_secs(30),
        stale_if_error: Duration::from_secs(3600),
    }
}

/// A cache with [`config`] over `store`, and the store to script and inspect.
pub(crate) fn cache(store: FakeStore) -> (Arc<FakeStore>, FlagCache) {
    cache_with(store, config())
}

/// A cache with `config` over `store`, and the store to script and inspect.
pub(crate) fn cache_with(store: FakeStore, config: CacheConfig) -> (Arc<FakeStore>, FlagCache) {
    let store = Arc::new(store);
    (store.clone(), FlagCache::new(store, config))
}

/// The kind of answer, for comparing lists of answers.
pub(crate) fn kind(c: &Cached) -> &'static str {
    match c {
        Cached::Fresh(_) => "fresh",
        Cached::Stale(_) => "stale",
        Cached::NotFound => "not_found",
        Cached::Unavailable => "unavailable",
    }
}
