//! Evaluations per flag and outcome since the last metrics emit, counted in
//! [`super::EventPipeline::record`] — the one place every evaluation already passes —
//! so the metrics need no work of their own on the request path.
//!
//! The cost per evaluation is one pointer hash and one increment: entries are keyed by
//! the address of the flag's `Arc` (the cache hands every request the same `Arc` until
//! the flag is reloaded), not by hashing its key string. A reloaded flag gets a second
//! entry under the same key; [`FlagTally::take`] merges them by key.
//!
//! Bounded: at most [`MAX_TRACKED`] distinct flag `Arc`s per interval; evaluations past
//! that, and those of keys the store does not have (caller-chosen strings never become
//! metric dimensions), are counted per outcome only.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::eval::{ErrorCode, Reason};
use crate::flag::CompiledFlag;
use crate::outcome::Outcome;

/// Most distinct flags tallied between two emits: a bound on the tally's memory
/// (each entry holds the flag's `Arc` until the emit, ~1–2 KB per flag).
pub const MAX_TRACKED: usize = 1024;

/// The outcome labels, as metric dimension values: the native reasons of a successful
/// evaluation, then the OFREP error codes of a failed one.
pub const OUTCOMES: [&str; OUTCOME_COUNT] = [
    "flag_disabled",
    "prerequisite_failed",
    "target_match",
    "rule_match",
    "targeting_rules_not_met",
    "not_in_rollout",
    "enabled",
    "FLAG_NOT_FOUND",
    "PARSE_ERROR",
    "TARGETING_KEY_MISSING",
    "INVALID_CONTEXT",
    "GENERAL",
];
/// How many outcome labels there are.
pub const OUTCOME_COUNT: usize = 12;

/// Evaluations per outcome, indexed like [`OUTCOMES`].
pub type OutcomeCounts = [u64; OUTCOME_COUNT];

/// Which [`OUTCOMES`] label an evaluation falls under.
pub fn outcome_index(outcome: &Outcome) -> usize {
    match outcome.error_code() {
        Some(ErrorCode::FlagNotFound) => 7,
        Some(ErrorCode::ParseError) => 8,
        Some(ErrorCode::TargetingKeyMissing) => 9,
        Some(ErrorCode::InvalidContext) => 10,
        Some(ErrorCode::General) => 11,
        None => match outcome.reason() {
            Reason::FlagDisabled => 0,
            Reason::PrerequisiteFailed => 1,
            Reason::TargetMatch => 2,
            Reason::RuleMatch => 3,
            Reason::TargetingRulesNotMet => 4,
            Reason::NotInRollout => 5,
            Reason::Enabled => 6,
            Reason::FlagNotFound => 7,
            Reason::Error => 11,
        },
    }
}

/// A hasher for pointer addresses: one multiply, no SipHash over a key string.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        // Allocations are 16-byte aligned: drop the always-zero bits, then spread.
        self.0 = ((n as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Evaluations since the last [`FlagTally::take`].
#[derive(Debug, Default)]
pub struct FlagTally {
    by_flag: HashMap<usize, (Arc<CompiledFlag>, OutcomeCounts), BuildHasherDefault<AddressHasher>>,
    /// Evaluations not attributed to a flag (unknown keys, or past [`MAX_TRACKED`]).
    untracked: OutcomeCounts,
}

/// What [`FlagTally::take`] hands the metrics: counts per flag key, and the rest.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlagCounts {
    /// Per flag key (merged across reloads), in no particular order.
    pub by_flag: Vec<(Box<str>, OutcomeCounts)>,
    /// Evaluations not attributed to any flag.
    pub untracked: OutcomeCounts,
}

impl FlagCounts {
    /// Evaluations per outcome over everything counted.
    pub fn per_outcome(&self) -> OutcomeCounts {
        let mut total = self.untracked;
        for (_, counts) in &self.by_flag {
            add(&mut total, counts);
        }
        total
    }
}

/// Adds `more` into `into`, label by label.
pub fn add(into: &mut OutcomeCounts, more: &OutcomeCounts) {
    into.iter_mut().zip(more).for_each(|(a, b)| *a += b);
}

impl FlagTally {
    /// Counts a request's evaluations.
    pub fn count(&mut self, outcomes: &[Outcome]) {
        for outcome in outcomes {
            let index = outcome_index(outcome);
            let Some(flag) = outcome.flag() else {
                self.untracked[index] += 1;
                continue;
            };
            let address = Arc::as_ptr(flag) as usize;
            if let Some((_, counts)) = self.by_flag.get_mut(&address) {
                counts[index] += 1;
            } else if self.by_flag.len() < MAX_TRACKED {
                let mut counts = [0; OUTCOME_COUNT];
                counts[index] = 1;
                self.by_flag.insert(address, (flag.clone(), counts));
            } else {
                self.untracked[index] += 1;
            }
        }
    }

    /// The counts so far, merged by key; the tally starts again from zero (and lets go
    /// of the flags it held).
    pub fn take(&mut self) -> FlagCounts {
        let mut merged: HashMap<&str, OutcomeCounts> = HashMap::with_capacity(self.by_flag.len());
        for (flag, counts) in self.by_flag.values() {
            add(merged.entry(flag.key()).or_insert([0; OUTCOME_COUNT]), counts);
        }
        let by_flag = merged.into_iter().map(|(key, counts)| (Box::from(key), counts)).collect();
        let untracked = std::mem::take(&mut self.untracked);
        self.by_flag.clear();
        self.by_flag.shrink_to(64);
        FlagCounts { by_flag, untracked }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;
    use crate::eval::{EvalInput, Evaluator, NoFlags};

    fn flag(key: &str, enabled: bool) -> Arc<CompiledFlag> {
        let doc = format!(r#"{{"key": "{key}", "enabled": {enabled}, "rollout_percentage": 100}}"#);
        Arc::new(CompiledFlag::from_json(&doc).expect("valid flag"))
    }

    fn evaluated(flag: &Arc<CompiledFlag>) -> Outcome {
        let context = Map::new();
        let input = EvalInput { user_id: Some("u"), context: &context, now: 0.0 };
        let e = Evaluator::new(input, &NoFlags).evaluate(flag);
        Outcome::from_evaluation(Some(flag), flag.key(), &e, false)
    }

    #[test]
    fn labels_are_the_wire_spellings_of_reasons_and_error_codes() {
        let on = evaluated(&flag("a", true));
        assert_eq!(OUTCOMES[outcome_index(&on)], on.reason().as_str());
        let off = evaluated(&flag("b", false));
        assert_eq!(OUTCOMES[outcome_index(&off)], "flag_disabled");
        for code in [
            ErrorCode::FlagNotFound,
            ErrorCode::ParseError,
            ErrorCode::TargetingKeyMissing,
            ErrorCode::InvalidContext,
            ErrorCode::General,
        ] {
            let failed = Outcome::failed(None, "k", code, String::new());
            assert_eq!(OUTCOMES[outcome_index(&failed)], code.as_str());
        }
    }

    #[test]
    fn counts_merge_a_reloaded_flag_and_leave_unknown_keys_unattributed() {
        let mut tally = FlagTally::default();
        let (first, reloaded) = (flag("a", true), flag("a", true));
        let missing = Outcome::failed(None, "caller-chosen", ErrorCode::FlagNotFound, String::new());
        tally.count(&[evaluated(&first), evaluated(&first), evaluated(&reloaded), missing]);
        let counts = tally.take();
        assert_eq!(counts.by_flag.len(), 1);
        assert_eq!((&*counts.by_flag[0].0, counts.by_flag[0].1[6]), ("a", 3));
        assert_eq!(counts.untracked[7], 1);
        assert_eq!(counts.per_outcome().iter().sum::<u64>(), 4);
        assert_eq!(tally.take(), FlagCounts::default(), "take starts again from zero");
    }

    #[test]
    fn a_thousand_and_more_distinct_flags_stay_within_the_bound_and_are_all_counted() {
        let mut tally = FlagTally::default();
        let flags: Vec<_> = (0..MAX_TRACKED + 500).map(|i| flag(&format!("f{i}"), true)).collect();
        for f in &flags {
            tally.count(&[evaluated(f)]);
        }
        assert_eq!(tally.by_flag.len(), MAX_TRACKED);
        let counts = tally.take();
        assert_eq!(counts.by_flag.len(), MAX_TRACKED);
        assert_eq!(counts.untracked[6], 500);
        assert_eq!(counts.per_outcome()[6], (MAX_TRACKED + 500) as u64);
    }
}
