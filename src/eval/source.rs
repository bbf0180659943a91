//! Where the evaluator finds other flags (for prerequisites and batches).

use std::collections::HashMap;
use std::sync::Arc;

use crate::flag::CompiledFlag;

/// Looks flags up by key. The evaluator needs nothing else from storage, which keeps it
/// pure: the caller resolves what a request needs first, then evaluates.
pub trait FlagSource {
    /// The flag stored under `key`, if any.
    fn flag(&self, key: &str) -> Option<&CompiledFlag>;
}

/// A source with no flags, for flags without prerequisites.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFlags;

impl FlagSource for NoFlags {
    fn flag(&self, _key: &str) -> Option<&CompiledFlag> {
        None
    }
}

/// An immutable set of compiled flags by key: a flags file, a table scan, or the flags
/// one request needs. Flags are `Arc`ed so a set can share them with the cache.
#[derive(Debug, Default, Clone)]
pub struct FlagSet {
    flags: HashMap<Box<str>, Arc<CompiledFlag>>,
}

impl FlagSet {
    /// Builds a set; a later flag with the same key replaces an earlier one.
    pub fn new(flags: impl IntoIterator<Item = Arc<CompiledFlag>>) -> Self {
        FlagSet { flags: flags.into_iter().map(|f| (Box::from(f.key()), f)).collect() }
    }

    /// Adds (or replaces) one flag.
    pub fn insert(&mut self, flag: Arc<CompiledFlag>) {
        self.flags.insert(Box::from(flag.key()), flag);
    }

    /// The flag under `key`, shared.
    pub fn get(&self, key: &str) -> Option<&Arc<CompiledFlag>> {
        self.flags.get(key)
    }

    /// Number of flags.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// All flags, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<CompiledFlag>> {
        self.flags.values()
    }

    /// All keys, sorted (stable output for "every flag" responses).
    pub fn sorted_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.flags.keys().map(|k| &**k).collect();
        keys.sort_unstable();
        keys
    }
}

impl FlagSource for FlagSet {
    fn flag(&self, key: &str) -> Option<&CompiledFlag> {
        self.flags.get(key).map(|f| &**f)
    }
}

impl<T: FlagSource + ?Sized> FlagSource for &T {
    fn flag(&self, key: &str) -> Option<&CompiledFlag> {
        (**self).flag(key)
    }
}
