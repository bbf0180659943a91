//! `EVENTS_MODE`: summaries per group and window, full events, or both.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::*;

// ---- summaries ---------------------------------------------------------------------

type Group = (String, u64, Value, bool, String);

/// The groups of the summary mode, counted from evaluation outcomes.
fn expected_groups(outcomes: &[Outcome]) -> BTreeMap<String, u64> {
    let mut groups = BTreeMap::new();
    for o in outcomes {
        let view = o.view();
        let group: Group =
            (o.key().to_owned(), view.version(), json!(view.variant_key()), o.enabled, o.reason().as_str().to_owned());
        *groups.entry(format!("{group:?}")).or_default() += 1;
    }
    groups
}

/// The summary records' groups and counts; checks each record's shape and window.
fn summary_groups(records: &[EventRecord], window: (&str, &str)) -> BTreeMap<String, u64> {
    let mut groups = BTreeMap::new();
    for record in records {
        let e = event(record);
        let keys: BTreeSet<&str> = e.as_object().expect("object").keys().map(String::as_str).collect();
        let expected_keys = [
            "count",
            "enabled",
            "event_type",
            "flag_id",
            "flag_key",
            "reason",
            "variant",
            "version",
            "window_end",
            "window_start",
        ];
        assert_eq!(keys, BTreeSet::from(expected_keys), "{e}");
        assert_eq!(e["event_type"], "feature_flag_summary");
        assert_eq!((e["window_start"].as_str(), e["window_end"].as_str()), (Some(window.0), Some(window.1)));
        assert_eq!(record.partition_key, e["flag_key"].as_str().expect("flag_key"));
        let group: Group = (
            e["flag_key"].as_str().expect("flag_key").to_owned(),
            e["version"].as_u64().expect("version"),
            e["variant"].clone(),
            e["enabled"].as_bool().expect("enabled"),
            e["reason"].as_str().expect("reason").to_owned(),
        );
        let previous = groups.insert(format!("{group:?}"), e["count"].as_u64().expect("count"));
        assert_eq!(previous, None, "one record per group: {e}");
    }
    groups
}

#[tokio::test]
async fn summary_mode_sends_one_record_per_group_per_flush() {
    let sink = Arc::new(FakeSink::accepting());
    let rig = rig(&[("EVENTS_MODE", "summary")], &sink);
    let mut outcomes = Vec::new();
    for (i, user) in users(0..30).iter().enumerate() {
        if i > 0 {
            rig.clock.advance(Duration::from_secs(1));
        }
        outcomes.extend(ask(&rig, user, &["on", "half", "abc", "off"]));
    }

    rig.events.flush().await;
    let first = sink.accepted();
    let groups = summary_groups(&first, ("2027-01-15T08:00:00.123456Z", "2027-01-15T08:00:29.123456Z"));
    assert_eq!(groups, expected_groups(&outcomes));
    assert!(groups.len() >= 6, "several groups: {groups:?}");
    assert_eq!(groups.values().sum::<u64>(), 120);

    // The next flush summarises only what came after.
    rig.clock.advance(Duration::from_secs(60));
    let later = ask(&rig, "user-1", &["on", "half"]);
    rig.events.flush().await;
    let second = &sink.accepted()[first.len()..];
    let groups = summary_groups(second, ("2027-01-15T08:01:29.123456Z", "2027-01-15T08:01:29.123456Z"));
    assert_eq!(groups, expected_groups(&later));
}

#[tokio::test]
async fn both_mode_sends_full_events_and_summaries() {
    let sink = Arc::new(FakeSink::accepting());
    let rig = rig(&[("EVENTS_MODE", "both")], &sink);
    let mut outcomes = Vec::new();
    for user in users(0..10) {
        outcomes.extend(ask(&rig, &user, &["on", "abc"]));
    }
    rig.events.flush().await;

    let (full, summaries): (Vec<EventRecord>, Vec<EventRecord>) =
        sink.accepted().into_iter().partition(|r| event(r)["event_type"] == "feature_flag_evaluation");
    assert_eq!(full.len(), 20);
    let at = "2027-01-15T08:00:00.123456Z";
    assert_eq!(summary_groups(&summaries, (at, at)), expected_groups(&outcomes));
}

#[tokio::test]
async fn full_mode_sends_no_summaries() {
    let sink = Arc::new(FakeSink::accepting());
    let rig = rig(&[("EVENTS_MODE", "full")], &sink);
    for user in users(0..10) {
        ask(&rig, &user, &["on", "abc"]);
    }
    rig.events.flush().await;
    assert_eq!(fields(&sink.accepted(), "event_type"), vec!["feature_flag_evaluation"; 20]);
}
