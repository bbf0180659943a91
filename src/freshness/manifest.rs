//! The change manifest (docs/operations.md): one small item per flags table recording the table's
//! change version and its most recent changes, so a warm environment learns with one
//! `GetItem` which cached flags are out of date.
//!
//! Pure data and rules, no I/O: how a write extends the manifest (each changed key gets
//! the next version; only the newest [`MAX_CHANGES`] are kept) and what a reader that
//! has seen version `s` must invalidate (exactly the keys changed since `s`, or
//! everything when the list no longer reaches back to `s`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Most changes the manifest keeps. At ≤ ~300 bytes each (a 256-byte key at most) the
/// item stays well inside DynamoDB's 400 KB, and a reader more than this many changes
/// behind simply invalidates everything.
pub const MAX_CHANGES: usize = 64;

/// One flag write, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The flag key.
    pub key: String,
    /// The manifest version this change was given.
    pub version: u64,
    /// When it was written, milliseconds since the Unix epoch (the writer's clock).
    pub at: u64,
}

/// The manifest item's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The table's change version: bumped once per changed flag, never reused.
    #[serde(default)]
    pub version: u64,
    /// The newest changes, oldest first, at most [`MAX_CHANGES`].
    #[serde(default)]
    pub changes: Vec<Change>,
}

/// A write to record: which flag, and when (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The flag key.
    pub key: String,
    /// When it was written, ms since the epoch.
    pub at: u64,
}

/// What a reader knows about the manifest so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Nothing read yet: the environment cached flags from this time (ms) on.
    Since(u64),
    /// The version read last.
    Version(u64),
}

/// What a reader must invalidate after reading the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// Nothing changed.
    Nothing,
    /// Exactly these flags (distinct, sorted) changed.
    Keys(Vec<String>),
    /// More changed than the list says (or the manifest was recreated): everything.
    Everything,
}

impl Invalidation {
    /// Both invalidations at once.
    pub fn and(self, other: Invalidation) -> Invalidation {
        match (self, other) {
            (Invalidation::Everything, _) | (_, Invalidation::Everything) => Invalidation::Everything,
            (Invalidation::Nothing, other) | (other, Invalidation::Nothing) => other,
            (Invalidation::Keys(mut a), Invalidation::Keys(b)) => {
                a.extend(b);
                a.sort_unstable();
                a.dedup();
                Invalidation::Keys(a)
            }
        }
    }
}

impl Manifest {
    /// The manifest after `writes`: each gets the next version, in order; the oldest
    /// changes beyond [`MAX_CHANGES`] are dropped.
    pub fn with(&self, writes: &[Written]) -> Manifest {
        let mut version = self.version;
        let mut changes = self.changes.clone();
        for write in writes {
            version += 1;
            changes.push(Change { key: write.key.clone(), version, at: write.at });
        }
        let excess = changes.len().saturating_sub(MAX_CHANGES);
        changes.drain(..excess);
        Manifest { version, changes }
    }

    /// What a reader that knew `seen` must invalidate now.
    pub fn invalidation(&self, seen: Seen) -> Invalidation {
        match seen {
            Seen::Version(seen) if self.version == seen => Invalidation::Nothing,
            // Recreated (or rolled back): nothing it says can be matched with what we saw.
            Seen::Version(seen) if self.version < seen => Invalidation::Everything,
            Seen::Version(seen) => {
                let reaches_back = self.changes.first().is_some_and(|oldest| oldest.version <= seen + 1);
                if !reaches_back {
                    return Invalidation::Everything;
                }
                keys(self.changes.iter().filter(|c| c.version > seen))
            }
            Seen::Since(at) => {
                let newer = || self.changes.iter().filter(|c| c.at >= at);
                // Changes before the oldest kept one were dropped: they may be newer than `at`.
                let dropped_may_matter =
                    self.changes.first().is_some_and(|oldest| oldest.at >= at && oldest.version > 1);
                match (dropped_may_matter, newer().next()) {
                    (true, _) => Invalidation::Everything,
                    (false, None) => Invalidation::Nothing,
                    (false, Some(_)) => keys(newer()),
                }
            }
        }
    }
}

fn keys<'c>(changes: impl Iterator<Item = &'c Change>) -> Invalidation {
    let keys: BTreeSet<&str> = changes.map(|c| c.key.as_str()).collect();
    if keys.is_empty() {
        return Invalidation::Nothing;
    }
    Invalidation::Keys(keys.into_iter().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(keys: &[&str], at: u64) -> Vec<Written> {
        keys.iter().map(|k| Written { key: (*k).to_owned(), at }).collect()
    }

    fn listed(keys: &[&str]) -> Invalidation {
        Invalidation::Keys(keys.iter().map(|k| (*k).to_owned()).collect())
    }

    #[test]
    fn each_write_gets_the_next_version_and_the_list_stays_bounded() {
        let m = Manifest::default().with(&written(&["a", "b"], 10));
        assert_eq!(m.version, 2);
        assert_eq!(m.changes.iter().map(|c| (c.key.as_str(), c.version)).collect::<Vec<_>>(), [("a", 1), ("b", 2)]);
        let keys: Vec<String> = (0..MAX_CHANGES * 3).map(|i| format!("k{i}")).collect();
        let many: Vec<Written> = keys.iter().map(|k| Written { key: k.clone(), at: 20 }).collect();
        let m = m.with(&many);
        assert_eq!(m.version, 2 + 3 * MAX_CHANGES as u64);
        assert_eq!(m.changes.len(), MAX_CHANGES);
        assert_eq!(m.changes.first().map(|c| c.version), Some(m.version - MAX_CHANGES as u64 + 1));
        assert_eq!(m.changes.last().map(|c| c.key.clone()), keys.last().cloned());
    }

    #[test]
    fn a_reader_invalidates_exactly_what_changed_since_its_version() {
        let m = Manifest::default().with(&written(&["a", "b", "a", "c"], 10));
        assert_eq!(m.invalidation(Seen::Version(4)), Invalidation::Nothing);
        assert_eq!(m.invalidation(Seen::Version(3)), listed(&["c"]));
        assert_eq!(m.invalidation(Seen::Version(1)), listed(&["a", "b", "c"]));
        assert_eq!(m.invalidation(Seen::Version(0)), listed(&["a", "b", "c"]));
        assert_eq!(m.invalidation(Seen::Version(9)), Invalidation::Everything, "recreated manifest");
    }

    #[test]
    fn a_reader_further_behind_than_the_list_invalidates_everything() {
        let keys: Vec<String> = (0..MAX_CHANGES + 5).map(|i| format!("k{i}")).collect();
        let many: Vec<Written> = keys.iter().map(|k| Written { key: k.clone(), at: 1 }).collect();
        let m = Manifest::default().with(&many);
        let oldest = m.changes[0].version;
        assert_eq!(m.invalidation(Seen::Version(oldest - 2)), Invalidation::Everything);
        assert!(matches!(m.invalidation(Seen::Version(oldest - 1)), Invalidation::Keys(k) if k.len() == MAX_CHANGES));
    }

    #[test]
    fn invalidations_combine() {
        assert_eq!(listed(&["b", "a"]).and(listed(&["c", "a"])), listed(&["a", "b", "c"]));
        assert_eq!(Invalidation::Nothing.and(listed(&["a"])), listed(&["a"]));
        assert_eq!(listed(&["a"]).and(Invalidation::Everything), Invalidation::Everything);
        assert_eq!(Invalidation::Nothing.and(Invalidation::Nothing), Invalidation::Nothing);
    }

    #[test]
    fn a_first_read_invalidates_what_changed_since_the_environment_started() {
        let m = Manifest::default().with(&written(&["old"], 100)).with(&written(&["new"], 500));
        assert_eq!(m.invalidation(Seen::Since(50)), listed(&["new", "old"]));
        assert_eq!(m.invalidation(Seen::Since(200)), listed(&["new"]));
        assert_eq!(m.invalidation(Seen::Since(600)), Invalidation::Nothing);
        assert_eq!(Manifest::default().invalidation(Seen::Since(0)), Invalidation::Nothing);
        // Older changes were dropped and the oldest kept is after the start: unknown.
        let keys: Vec<String> = (0..MAX_CHANGES + 1).map(|i| format!("k{i}")).collect();
        let many: Vec<Written> = keys.iter().map(|k| Written { key: k.clone(), at: 300 }).collect();
        assert_eq!(Manifest::default().with(&many).invalidation(Seen::Since(200)), Invalidation::Everything);
        assert_eq!(Manifest::default().with(&many).invalidation(Seen::Since(400)), Invalidation::Nothing);
    }
}
