//! Where the evaluator finds other flags (for prerequisites and batches).

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
/// one request needs. Flags are `Arc`ed so a set can share them with the cache; they are
/// kept in key order (sorted once, when the set is built) for stable every-flag answers.
#[derive(Debug, Default, Clone)]
pub struct FlagSet {
    /// Sorted by key, one flag per key.
    sorted: Vec<Arc<CompiledFlag>>,
    /// Key → position in `sorted`. foldhash: evaluation looks keys up on hot paths.
    index: foldhash::HashMap<Box<str>, usize>,
}

impl FlagSet {
    /// Builds a set; a later flag with the same key replaces an earlier one.
    pub fn new(flags: impl IntoIterator<Item = Arc<CompiledFlag>>) -> Self {
        let mut by_key: foldhash::HashMap<Box<str>, Arc<CompiledFlag>> = foldhash::HashMap::default();
        for flag in flags {
            by_key.insert(Box::from(flag.key()), flag);
        }
        let mut sorted: Vec<Arc<CompiledFlag>> = by_key.into_values().collect();
        sorted.sort_unstable_by(|a, b| a.key().cmp(b.key()));
        let index = sorted.iter().enumerate().map(|(i, f)| (Box::from(f.key()), i)).collect();
        FlagSet { sorted, index }
    }

    /// The flag under `key`, shared.
    pub fn get(&self, key: &str) -> Option<&Arc<CompiledFlag>> {
        self.index.get(key).map(|&i| &self.sorted[i])
    }

    /// Number of flags.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// All flags, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<CompiledFlag>> {
        self.sorted.iter()
    }
}

impl FlagSource for FlagSet {
    fn flag(&self, key: &str) -> Option<&CompiledFlag> {
        self.get(key).map(|f| &**f)
    }
}

impl<T: FlagSource + ?Sized> FlagSource for &T {
    fn flag(&self, key: &str) -> Option<&CompiledFlag> {
        (**self).flag(key)
    }
}
