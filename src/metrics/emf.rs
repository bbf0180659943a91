//! Rendering one emit as CloudWatch embedded-metric-format lines (the published
//! specification): each line is a JSON object whose `_aws` member holds `Timestamp`
//! (ms since the epoch) and one `CloudWatchMetrics` directive naming the `Namespace`,
//! the `Dimensions` (sets of dimension keys) and the `Metrics` (name and unit); the
//! dimension values and metric values are members of the line itself.
//!
//! Every line says `"level": "INFO"`: Lambda's JSON log format filters application lines
//! by that key, and the template sets `ApplicationLogLevel: INFO`, so metric lines are
//! always delivered (docs/operations.md, "Metrics").
//!
//! A dimension value is one string per line, so counts that differ by dimension value
//! (per flag, per outcome) need a line each: one totals line, one line per (flag,
//! outcome) for the flags given a `Flag` dimension, one per outcome for the rest.

use serde_json::{json, Map, Value};

use crate::events::tally::{add, OutcomeCounts, OUTCOMES, OUTCOME_COUNT};
use crate::events::FlagCounts;

/// The specification's limits, checked by the tests on every line rendered.
pub const MAX_METRICS_PER_DIRECTIVE: usize = 100;
/// Most dimension sets in one directive.
pub const MAX_DIMENSION_SETS: usize = 30;
/// Most keys in one dimension set (CloudWatch's per-metric dimension limit was 9 for
/// years; kept at that so the lines work whatever the account's limit).
pub const MAX_DIMENSION_KEYS: usize = 9;

/// The metric every per-flag and per-outcome line carries.
pub const EVALUATIONS: &str = "Evaluations";

/// What is constant across an emit's lines.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// CloudWatch namespace.
    pub namespace: &'a str,
    /// The `Service` dimension's value.
    pub service: &'a str,
    /// Milliseconds since the epoch.
    pub timestamp_ms: u64,
}

/// One EMF line: `dimensions` sets over `members` (which hold the dimension values),
/// and `metrics` (name, unit, value).
fn line(
    frame: &Frame<'_>,
    dimensions: &[&[&str]],
    mut members: Map<String, Value>,
    metrics: &[(&str, &str, u64)],
) -> String {
    let definitions: Vec<Value> = metrics.iter().map(|(name, unit, _)| json!({ "Name": name, "Unit": unit })).collect();
    let directive = json!({ "Namespace": frame.namespace, "Dimensions": dimensions, "Metrics": definitions });
    members.insert("Service".into(), frame.service.into());
    // Lambda's JSON log format filters application lines by `level` (a line without
    // one counts as INFO); saying INFO outright, with the template's ApplicationLogLevel
    // fixed at INFO, keeps every metric line delivered whatever the platform log level.
    members.insert("level".into(), "INFO".into());
    for (name, _, value) in metrics {
        members.insert((*name).into(), (*value).into());
    }
    members.insert("_aws".into(), json!({ "Timestamp": frame.timestamp_ms, "CloudWatchMetrics": [directive] }));
    Value::Object(members).to_string()
}

/// The totals line: every counter, with the `Service` dimension only.
pub fn totals(frame: &Frame<'_>, counters: &[(&str, u64)], evaluations: u64) -> String {
    let mut metrics: Vec<(&str, &str, u64)> = vec![(EVALUATIONS, "Count", evaluations)];
    metrics.extend(counters.iter().map(|(name, value)| (*name, "Count", *value)));
    metrics.truncate(MAX_METRICS_PER_DIRECTIVE);
    line(frame, &[&["Service"]], Map::new(), &metrics)
}

/// The per-flag and per-outcome lines: the `top` most evaluated flags (ties by key)
/// get a line per outcome with `Flag` and `Outcome` dimensions; every other
/// evaluation is summed into a line per outcome with the `Outcome` dimension only.
pub fn evaluations(frame: &Frame<'_>, mut counts: FlagCounts, top: usize) -> Vec<String> {
    let total = |c: &OutcomeCounts| c.iter().sum::<u64>();
    counts.by_flag.sort_unstable_by(|(ka, a), (kb, b)| total(b).cmp(&total(a)).then_with(|| ka.cmp(kb)));
    let rest = counts.by_flag.split_off(top.min(counts.by_flag.len()));
    let mut lines = Vec::new();
    for (key, per_outcome) in &counts.by_flag {
        for (label, count) in labelled(per_outcome) {
            let mut members = Map::new();
            members.insert("Flag".into(), (**key).into());
            members.insert("Outcome".into(), label.into());
            let dimensions: [&[&str]; 3] =
                [&["Service", "Flag", "Outcome"], &["Service", "Flag"], &["Service", "Outcome"]];
            lines.push(line(frame, &dimensions, members, &[(EVALUATIONS, "Count", count)]));
        }
    }
    let mut others = counts.untracked;
    rest.iter().for_each(|(_, c)| add(&mut others, c));
    for (label, count) in labelled(&others) {
        let mut members = Map::new();
        members.insert("Outcome".into(), label.into());
        lines.push(line(frame, &[&["Service", "Outcome"]], members, &[(EVALUATIONS, "Count", count)]));
    }
    lines
}

/// The non-zero counts with their outcome labels.
fn labelled(counts: &OutcomeCounts) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    (0..OUTCOME_COUNT).filter(|&i| counts[i] > 0).map(|i| (OUTCOMES[i], counts[i]))
}
