use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::spec::validate;
use super::*;
use crate::config::{MetricsConfig, MetricsOutput};
use crate::events::tally::{OutcomeCounts, OUTCOME_COUNT};

/// An output the test can read back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(std::mem::take(&mut *lock(&self.0))).expect("utf-8");
        text.lines()
            .map(|line| {
                validate(line).unwrap_or_else(|why| panic!("{why}: {line}"));
                let line: Value = serde_json::from_str(line).expect("json");
                // Delivered under the template's ApplicationLogLevel (INFO), whatever the
                // platform's log level.
                assert_eq!(line["level"], "INFO", "{line}");
                line
            })
            .collect()
    }
}

fn metrics(top: usize, interval: Duration) -> (Metrics, Shared) {
    let config = MetricsConfig {
        output: MetricsOutput::Stdout,
        namespace: "flagfn-test".into(),
        service: "svc".into(),
        flag_dimensions: top,
        interval,
    };
    let out = Shared::default();
    (Metrics::new(&config, Box::new(out.clone())), out)
}

fn counts(pairs: &[(usize, u64)]) -> OutcomeCounts {
    let mut c = [0; OUTCOME_COUNT];
    pairs.iter().for_each(|(i, n)| c[*i] = *n);
    c
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

#[test]
fn cumulative_counters_are_reported_as_increases_and_levels_as_they_are() {
    let (m, out) = metrics(20, Duration::ZERO);
    let first = [Reading::Cumulative("CacheHits", 5), Reading::Level("EventsBuffered", 7)];
    assert_eq!(m.emit(&first, FlagCounts::default(), at(0)), 1);
    let second = [Reading::Cumulative("CacheHits", 12), Reading::Level("EventsBuffered", 7)];
    assert_eq!(m.emit(&second, FlagCounts::default(), at(1)), 1);
    let lines = out.lines();
    assert_eq!((lines[0]["CacheHits"].as_u64(), lines[0]["EventsBuffered"].as_u64()), (Some(5), Some(7)));
    assert_eq!(lines[1]["CacheHits"].as_u64(), Some(7));
    assert_eq!(lines[1]["_aws"]["Timestamp"].as_u64(), Some(1_700_000_001_000));
    assert_eq!(lines[1]["_aws"]["CloudWatchMetrics"][0]["Namespace"], "flagfn-test");
    assert_eq!(lines[1]["Service"], "svc");
    // Nothing changed (a level alone is no news): no line at all.
    assert_eq!(m.emit(&second, FlagCounts::default(), at(2)), 0);
    assert!(out.lines().is_empty());
}

#[test]
fn emits_wait_for_the_interval() {
    let (m, _out) = metrics(20, Duration::from_secs(60));
    assert!(m.due(at(0)), "the first emit is due at once");
    m.emit(&[Reading::Cumulative("CacheHits", 1)], FlagCounts::default(), at(0));
    assert!(!m.due(at(59)));
    assert!(m.due(at(60)));
}

#[test]
fn only_the_top_flags_get_a_flag_dimension_and_the_rest_is_summed_per_outcome() {
    let (m, out) = metrics(2, Duration::ZERO);
    let flags = FlagCounts {
        by_flag: vec![
            ("small".into(), counts(&[(6, 1)])),
            ("big".into(), counts(&[(6, 10), (3, 5)])),
            ("mid".into(), counts(&[(0, 4)])),
            ("tie".into(), counts(&[(6, 1)])),
        ],
        untracked: counts(&[(7, 3)]),
    };
    assert_eq!(m.emit(&[], flags, at(0)), 1 + 3 + 2);
    let lines = out.lines();
    assert_eq!(lines[0]["Evaluations"].as_u64(), Some(24));
    let flagged: Vec<(&str, &str, u64)> = lines[1..4]
        .iter()
        .map(|l| (l["Flag"].as_str().unwrap(), l["Outcome"].as_str().unwrap(), l["Evaluations"].as_u64().unwrap()))
        .collect();
    assert_eq!(flagged, [("big", "rule_match", 5), ("big", "enabled", 10), ("mid", "flag_disabled", 4)]);
    // "small" and "tie" (1 each, `enabled`) and the 3 unknown keys: no Flag dimension.
    let rest: Vec<(&str, u64)> =
        lines[4..].iter().map(|l| (l["Outcome"].as_str().unwrap(), l["Evaluations"].as_u64().unwrap())).collect();
    assert_eq!(rest, [("enabled", 2), ("FLAG_NOT_FOUND", 3)]);
    assert!(lines[4..].iter().all(|l| l.get("Flag").is_none()));
    let sets = &lines[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
    assert_eq!(sets, &serde_json::json!([["Service", "Flag", "Outcome"], ["Service", "Flag"], ["Service", "Outcome"]]));
}

#[test]
fn with_flag_dimensions_off_no_line_names_a_flag() {
    let (m, out) = metrics(0, Duration::ZERO);
    let flags = FlagCounts { by_flag: vec![("a".into(), counts(&[(6, 2)]))], untracked: counts(&[]) };
    assert_eq!(m.emit(&[], flags, at(0)), 2);
    assert!(out.lines().iter().all(|l| l.get("Flag").is_none()));
}

#[test]
fn the_checker_rejects_lines_that_break_the_specification() {
    let good = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[["S"]],"Metrics":[{"Name":"m","Unit":"Count"}]}]},"S":"x","m":1}"#;
    assert_eq!(validate(good), Ok(()));
    for (bad, why) in [
        (good.replace(r#""Timestamp":1,"#, ""), "no timestamp"),
        (good.replace(r#""Timestamp":1"#, r#""Timestamp":"1""#), "string timestamp"),
        (good.replace(r#""m":1"#, r#""m":"1""#), "string value"),
        (good.replace(r#","m":1"#, ""), "declared metric without a value"),
        (good.replace(r#""Unit":"Count""#, r#""Unit":"Counts""#), "unknown unit"),
        (good.replace(r#""S":"x","#, ""), "dimension without a value"),
        (good.replace(r#""Namespace":"n","#, ""), "no namespace"),
        (good.replace(r#"[["S"]]"#, r#"[["S","S","S","S","S","S","S","S","S","S"]]"#), "10 keys"),
        (good.replace(r#"[["S"]]"#, &format!("[{}]", vec![r#"["S"]"#; 31].join(","))), "31 sets"),
        (good.replace("_aws", "aws"), "no _aws"),
    ] {
        assert!(validate(&bad).is_err(), "{why}: {bad}");
    }
}

#[test]
fn a_write_error_is_logged_not_raised() {
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let config = MetricsConfig {
        output: MetricsOutput::Stdout,
        namespace: "n".into(),
        service: "s".into(),
        flag_dimensions: 1,
        interval: Duration::ZERO,
    };
    let m = Metrics::new(&config, Box::new(Broken));
    assert_eq!(m.emit(&[Reading::Cumulative("CacheHits", 1)], FlagCounts::default(), at(0)), 0);
}
