//! What the stores say about the flags they load: a malformed flag on every load (it
//! answers `PARSE_ERROR` until fixed), and a flag read leniently as the Python service
//! read it (docs/flag-format.md) once per flag version, counted for metrics.
//!
//! Only flag keys and the document's own fields are logged, never user data.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::flag::CompiledFlag;

/// Flag versions remembered as already reported. Past this many, the memory starts over
/// (a version may then be reported once more): bounded whatever the table holds.
const REMEMBERED_VERSIONS: usize = 4096;

/// A flag version: its key and `version`.
type FlagVersion = (Box<str>, u64);

static REPORTED: Mutex<Option<HashSet<FlagVersion>>> = Mutex::new(None);
static LENIENT_READS: AtomicU64 = AtomicU64::new(0);

/// Flag versions read leniently since the process started, each counted once.
pub fn lenient_reads() -> u64 {
    LENIENT_READS.load(Ordering::Relaxed)
}

/// Reports `flag` as just loaded by a store.
pub(crate) fn loaded(flag: &CompiledFlag) {
    // A flagd flag has no Python body by design: only its own problem is reported.
    let problem = match flag.flagd() {
        Some(flagd) => flagd.problem(),
        None => flag.body().err(),
    };
    if let Some(problem) = problem {
        tracing::warn!(flag_key = flag.key(), problem, "malformed flag: it will evaluate to PARSE_ERROR");
    }
    if flag.oddities().is_empty() || !first_report(flag) {
        return;
    }
    LENIENT_READS.fetch_add(1, Ordering::Relaxed);
    let oddities: Vec<&str> = flag.oddities().iter().map(|o| &**o).collect();
    tracing::warn!(
        flag_key = flag.key(),
        version = flag.version(),
        oddities = ?oddities,
        "flag read as the Python service read it; `flagctl validate` would refuse it"
    );
}

/// Whether this flag version has not been reported yet (and remembers it).
fn first_report(flag: &CompiledFlag) -> bool {
    let mut reported = REPORTED.lock().unwrap_or_else(PoisonError::into_inner);
    let reported = reported.get_or_insert_with(HashSet::new);
    let id = (Box::from(flag.key()), flag.version());
    if reported.contains(&id) {
        return false;
    }
    if reported.len() >= REMEMBERED_VERSIONS {
        reported.clear();
    }
    reported.insert(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_lenient_flag_version_is_counted_once() {
        let odd = |version: u64| {
            let doc = serde_json::json!({"key": "report-test-odd", "version": version,
                "targeting_rules": [{"attribute": "a", "operator": "eq"}]});
            CompiledFlag::from_value(doc).expect("keyed")
        };
        let clean = CompiledFlag::from_value(serde_json::json!({"key": "report-test-clean"})).expect("keyed");
        let before = lenient_reads();
        loaded(&odd(1));
        loaded(&odd(1));
        loaded(&clean);
        // Other tests may load lenient flags concurrently: count at least ours, exactly.
        assert!(lenient_reads() > before);
        assert!(!first_report(&odd(1)), "version 1 is remembered");
        assert!(first_report(&odd(2)), "a new version is reported again");
        assert!(!first_report(&odd(2)));
    }

    /// An extension operator or `negate` inside `targeting_rules` is read as Python read
    /// it, so the item is reported (warning and metric) like every other lenient read.
    #[test]
    fn python_readings_of_targeting_rules_are_reported() {
        let clauses = [
            serde_json::json!({"attribute": "plan", "operator": "exists"}),
            serde_json::json!({"attribute": "plan", "operator": "equals", "value": "pro", "negate": true}),
        ];
        for (i, clause) in clauses.into_iter().enumerate() {
            let doc = serde_json::json!({"key": format!("report-test-python-{i}"), "targeting_rules": [clause]});
            let flag = CompiledFlag::from_value(doc).expect("keyed");
            loaded(&flag);
            assert!(!first_report(&flag), "reported when loaded: {:?}", flag.oddities());
        }
    }

    #[test]
    fn the_memory_of_reported_versions_is_bounded() {
        for version in 0..(REMEMBERED_VERSIONS as u64 + 10) {
            let doc = serde_json::json!({"key": "report-test-bound", "version": version});
            first_report(&CompiledFlag::from_value(doc).expect("keyed"));
        }
        let held = REPORTED.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map_or(0, HashSet::len);
        assert!(held <= REMEMBERED_VERSIONS, "{held}");
    }
}
