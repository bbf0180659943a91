//! One request's flags plus every flag their prerequisites name, transitively, with
//! what the cache knows about each (so an unreadable or stale prerequisite is reported).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::{Cached, FlagCache};
use crate::eval::{FlagSet, FlagSource};
use crate::flag::CompiledFlag;

/// Most rounds of prerequisite loading (a chain deeper than this is malformed anyway).
const PREREQUISITE_ROUNDS: usize = crate::flag::MAX_PREREQUISITE_DEPTH + 1;

impl FlagCache {
    /// Several flags (one lock for all hits, one store read for all misses), plus every
    /// flag their prerequisites name, transitively, so the evaluator has what it needs.
    pub async fn resolve<'k>(&self, keys: &[&'k str], now: SystemTime) -> Resolved<'k> {
        let requested = self.lookup_or_fetch(keys, now).await;
        let prerequisites = self.load_prerequisites(&requested, now).await;
        Resolved { requested, prerequisites }
    }

    /// Loads, round by round, every flag the resolved flags name as prerequisites.
    /// `None` when no flag has prerequisites (the common case: nothing to build).
    async fn load_prerequisites(&self, requested: &[(&str, Cached)], now: SystemTime) -> Option<Prerequisites> {
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
                self.lookup_or_fetch(&wanted, now).await.into_iter().map(|(k, c)| (Box::from(k), c)).collect();
            frontier = next.iter().filter_map(|(_, c)| c.flag().cloned()).collect();
            known.extend(next);
        }
        Some(Prerequisites::new(known))
    }
}

/// The flags one request asked for, in its order, plus their prerequisites.
#[derive(Debug)]
pub struct Resolved<'k> {
    /// Each requested key (duplicates kept) with what the cache knows about it.
    pub requested: Vec<(&'k str, Cached)>,
    /// Every flag reachable through prerequisites; `None` when there are none.
    pub(super) prerequisites: Option<Prerequisites>,
}

impl Resolved<'_> {
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
pub(super) struct Prerequisites {
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
