//! One evaluation's record: the schema, the context, the partition key.

use std::collections::BTreeSet;

use serde_json::json;

use super::*;

// ---- the event -------------------------------------------------------------------

#[tokio::test]
async fn the_context_is_in_the_event_only_when_configured() {
    let context = json!({"plan": "pro", "n": 1.5, "tags": ["a", "b"], "org": {"id": 7}});
    for (include, expected) in [("true", context.clone()), ("false", Value::Null)] {
        let sink = Arc::new(FakeSink::accepting());
        let rig = rig(&[("EVENTS_INCLUDE_CONTEXT", include)], &sink);
        rig.evaluate(&subject(Some("user-1"), context.clone(), "req"), &["on", "abc"]);
        rig.events.flush().await;
        let events: Vec<Value> = sink.accepted().iter().map(event).collect();
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e["context"] == expected), "include={include}: {events:?}");
    }
}

#[tokio::test]
async fn full_events_follow_the_python_schema_plus_version_and_request_id() {
    let sink = Arc::new(FakeSink::accepting());
    let rig = rig(&[], &sink);
    let context = json!({"plan": "pro"});
    let batch = ["on", "abc", "half", "off", "ghost"];
    rig.evaluate(&subject(Some("user-1"), context.clone(), "req-batch"), &batch);
    rig.clock.advance(Duration::from_millis(2_500));
    rig.evaluate(&subject(Some("user-3"), json!({}), "req-one"), &["half"]);

    assert_eq!(rig.events.flush().await, FlushReport { sent: 6, kept: 0 });
    let events: Vec<Value> = sink.accepted().iter().map(event).collect();
    let at = "2027-01-15T08:00:00.123456Z";
    let expected = |key: &str, id: &str, enabled: bool, reason: &str, variant: Value, version: u64| {
        json!({"event_type": "feature_flag_evaluation", "timestamp": at, "user_id": "user-1", "flag_id": id,
               "flag_key": key, "enabled": enabled, "reason": reason, "variant": variant, "context": context,
               "version": version, "request_id": "req-batch"})
    };
    // One event per flag of the batch, in order, with exactly these fields.
    assert_eq!(events[0], expected("on", "on-id", true, "enabled", Value::Null, 3));
    assert_eq!(events[1], expected("abc", "abc", true, "enabled", json!("b"), 2));
    assert_eq!(events[2], expected("half", "half", true, "enabled", Value::Null, 0));
    assert_eq!(events[3], expected("off", "off", false, "flag_disabled", Value::Null, 1));
    let fields: BTreeSet<&str> = events[0].as_object().expect("object").keys().map(String::as_str).collect();
    let ghost = &events[4];
    assert_eq!(ghost.as_object().expect("object").keys().map(String::as_str).collect::<BTreeSet<_>>(), fields);
    assert_eq!(
        (&ghost["flag_key"], &ghost["enabled"], &ghost["reason"]),
        (&json!("ghost"), &json!(false), &json!("flag_not_found"))
    );
    assert_eq!(
        events[5],
        json!({"event_type": "feature_flag_evaluation", "timestamp": "2027-01-15T08:00:02.623456Z",
               "user_id": "user-3", "flag_id": "half", "flag_key": "half", "enabled": false,
               "reason": "not_in_rollout", "variant": null, "context": {}, "version": 0, "request_id": "req-one"})
    );
    // RFC 3339, UTC, the evaluation's own time.
    let parsed = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).expect("RFC 3339");
    assert_eq!((parsed.offset(), SystemTime::from(parsed)), (time::UtcOffset::UTC, t0()));
}

#[tokio::test]
async fn partition_keys_are_user_ids_hashed_when_too_long_else_the_request_id() {
    let sink = Arc::new(FakeSink::accepting());
    let rig = rig(&[], &sink);
    let (long, other_long, widest) = ("u".repeat(300), "v".repeat(300), "é".repeat(256));
    for user in ["user-1", &long, &long, &other_long, &widest] {
        rig.evaluate(&subject(Some(user), json!({}), "req"), &["on"]);
    }
    rig.evaluate(&subject(None, json!({}), "req-anonymous"), &["on"]);
    rig.events.flush().await;

    let keys: Vec<String> = sink.accepted().into_iter().map(|r| r.partition_key).collect();
    assert_eq!(keys[0], "user-1");
    assert!(keys[1].chars().count() <= 256 && keys[1] != long, "{}", keys[1]);
    assert_eq!(keys[1], keys[2], "the same user, the same shard");
    assert_ne!(keys[1], keys[3]);
    assert!(keys[3].chars().count() <= 256);
    assert_eq!(keys[4], widest, "256 characters fit, however many bytes");
    assert_eq!(keys[5], "req-anonymous");
    assert_eq!(event(&sink.accepted()[5])["user_id"], Value::Null);
}

#[tokio::test]
async fn flagd_flags_events_carry_flagds_reason_beside_the_native_one() {
    let sink = Arc::new(FakeSink::accepting());
    let rig = rig(&[], &sink);
    let set = crate::flagd::parse_document(&json!({"flags": {
        "fixed": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
        "staff": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                  "targeting": {"if": [{"ends_with": [{"var": "email"}, "@staff.test"]}, "on", null]}}}}))
    .expect("a flagd document");
    let subject = subject(Some("user-1"), json!({"email": "a@staff.test"}), "req-flagd");
    let input = crate::flagd::FlagdInput {
        context: &subject.context,
        targeting_key: Some("user-1"),
        timestamp: 1_800_000_000,
        bucketing: crate::flagd::Bucketing::V2,
    };
    let outcomes: Vec<Outcome> = set
        .flags
        .into_iter()
        .map(|flag| {
            let flag = Arc::new(crate::flag::CompiledFlag::from_flagd(flag));
            let evaluation = crate::flagd::evaluate(flag.flagd().expect("a flagd flag"), &input);
            Outcome::from_flagd(&flag, &evaluation, false)
        })
        .collect();
    rig.events.record(&subject, rig.clock.wall(), &outcomes);
    rig.events.flush().await;
    let events: Vec<Value> = sink.accepted().iter().map(event).collect();
    let got: Vec<(&Value, &Value, &Value)> =
        events.iter().map(|e| (&e["reason"], &e["flagd_reason"], &e["variant"])).collect();
    assert_eq!(
        got,
        [
            (&json!("enabled"), &json!("STATIC"), &json!("on")),
            (&json!("rule_match"), &json!("TARGETING_MATCH"), &json!("on"))
        ]
    );
    // Python-schema flags' events keep exactly the Python fields (no `flagd_reason`).
    rig.evaluate(&subject, &["on"]);
    rig.events.flush().await;
    let last = sink.accepted().last().map(event).expect("one more event");
    assert!(last.get("flagd_reason").is_none(), "{last}");
}
