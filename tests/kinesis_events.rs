//! Evaluation events end to end: requests through the real API, the event
//! pipeline, `KinesisSink` and the AWS SDK into a Kinesis stream (moto), read back from
//! every shard. Throttling and outages are injected by a proxy the SDK talks through.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::kinesis::{client, create_stream, read_all, throttle_first, PUT_RECORDS};
use common::moto::shared_moto;
use common::moto::{unique_name, Moto};
use common::proxy::{Fault, Proxy};
use flagfn::api::{handle, BodyEncoding, Method, Request};
use flagfn::app::App;
use flagfn::clock::Clock;
use flagfn::sink::{EventRecord, EventSink, KinesisSink};
use flagfn::store::FileStore;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const FLAGS: &str = "tests/fixtures/api_flags.json";
/// Every well-formed flag of the fixture, plus one that does not exist.
const KEYS: [&str; 11] =
    ["on", "off", "half", "abc", "pro-only", "ruled", "vip", "needs-on", "needs-off", "multi-off", "ghost"];
const USERS: [&str; 7] = ["user-1", "user-2", "user-3", "user-9", "alice", "bob", "org-7/ü"];

/// The clock's start: whole microseconds, so event timestamps are exact.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_micros(250)
}

/// An app over the fixture flags whose events go to `stream` through `endpoint`
/// (`None`: events off). Its clock starts at [`t0`].
async fn build_app(endpoint: Option<&str>, stream: &str, settings: &[(&str, &str)]) -> App {
    let config = common::app::config(FLAGS, settings);
    let store = Arc::new(FileStore::open(format!("{}/{FLAGS}", env!("CARGO_MANIFEST_DIR"))).expect("flags file"));
    let sink: Option<Arc<dyn EventSink>> = match endpoint {
        Some(endpoint) => Some(Arc::new(KinesisSink::new(client(endpoint).await, stream))),
        None => None,
    };
    App::new(store, sink, &config, Clock::manual_at(t0()))
}

/// A fresh stream in the shared moto, and what a test needs to use it.
struct Stream {
    /// Held for the whole test: the shared moto stops when its last holder is dropped.
    moto: Arc<Moto>,
    /// A client straight to moto, for reading the stream back.
    kinesis: aws_sdk_kinesis::Client,
    name: String,
}

async fn stream(prefix: &str) -> Stream {
    let moto = shared_moto();
    let kinesis = client(&moto.endpoint()).await;
    let name = unique_name(prefix);
    create_stream(&kinesis, &name).await;
    Stream { moto, kinesis, name }
}

/// One API request of a workload.
struct Call {
    request_id: String,
    path: &'static str,
    user: &'static str,
    context: Value,
    keys: Vec<&'static str>,
}

impl Call {
    fn body(&self) -> Vec<u8> {
        let body = match self.path {
            "/evaluate" => json!({"user_id": self.user, "flag_key": self.keys[0], "context": self.context}),
            _ => json!({"user_id": self.user, "flag_keys": self.keys, "context": self.context}),
        };
        body.to_string().into_bytes()
    }
}

/// Requests producing exactly `events` evaluations: single `POST /evaluate`s and
/// `POST /batch_evaluate`s of four flags, over several users and contexts.
fn workload(events: usize) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut count = 0;
    while count < events {
        let i = calls.len();
        let batch = i % 3 == 2 && events - count >= 4;
        let keys: Vec<&str> = match batch {
            true => (0..4).map(|k| KEYS[(i + k) % KEYS.len()]).collect(),
            // `ghost` (last) only in batches: a single-flag route answers it 404.
            false => vec![KEYS[i % (KEYS.len() - 1)]],
        };
        count += keys.len();
        calls.push(Call {
            request_id: format!("req-{i}"),
            path: if batch { "/batch_evaluate" } else { "/evaluate" },
            user: USERS[i % USERS.len()],
            context: json!({"plan": if i % 2 == 0 { "pro" } else { "free" }, "beta": i % 5 == 0, "n": i}),
            keys,
        });
    }
    calls
}

/// The event a flag's result in an answer implies.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    request_id: String,
    user: String,
    context: Value,
    at: SystemTime,
    result: Value,
}

/// Sends `call` through the API (one millisecond after the previous one) and returns
/// the answer's body and the events it implies, keyed by (request id, flag key).
async fn send(app: &App, call: &Call) -> (Value, Vec<((String, String), Expected)>) {
    app.clock.advance(Duration::from_millis(1));
    let body = call.body();
    let request = Request {
        method: Method::Post,
        path: call.path,
        query: "",
        if_none_match: None,
        body: &body,
        request_id: &call.request_id,
        encoding: BodyEncoding::Json,
    };
    let response = handle(app, request).await;
    let answer: Value = serde_json::from_slice(&response.body).expect("JSON answer");
    assert_eq!(response.status, 200, "{}: {answer}", call.request_id);
    let expected = call
        .keys
        .iter()
        .map(|key| {
            let result = if call.path == "/evaluate" { answer.clone() } else { answer["results"][key].clone() };
            assert_eq!(result["flag_key"], *key, "{answer}");
            let expected = Expected {
                request_id: call.request_id.clone(),
                user: call.user.to_owned(),
                context: call.context.clone(),
                at: app.clock.wall(),
                result,
            };
            ((call.request_id.clone(), (*key).to_owned()), expected)
        })
        .collect();
    (answer, expected)
}

/// Checks every record against the schema and the answer it came from; every expected
/// event must be there exactly once and nothing else.
fn assert_events_match(records: &[EventRecord], expected: &BTreeMap<(String, String), Expected>) {
    let schema: BTreeSet<&str> = [
        "event_type",
        "timestamp",
        "user_id",
        "flag_id",
        "flag_key",
        "enabled",
        "reason",
        "variant",
        "context",
        "version",
        "request_id",
    ]
    .into();
    let mut seen = BTreeSet::new();
    for record in records {
        let event: Value = serde_json::from_slice(&record.data).expect("a JSON event");
        let fields: BTreeSet<&str> = event.as_object().expect("an object").keys().map(String::as_str).collect();
        assert_eq!(fields, schema, "{event}");
        let key = (
            event["request_id"].as_str().expect("request_id").to_owned(),
            event["flag_key"].as_str().expect("flag_key").to_owned(),
        );
        let want = expected.get(&key).unwrap_or_else(|| panic!("an event nobody asked for: {event}"));
        assert!(seen.insert(key.clone()), "a duplicate: {event}");
        assert_eq!(event["event_type"], "feature_flag_evaluation");
        let timestamp = event["timestamp"].as_str().expect("timestamp");
        let parsed = OffsetDateTime::parse(timestamp, &Rfc3339).expect("RFC 3339");
        assert!(timestamp.ends_with('Z') && parsed.offset().is_utc(), "{timestamp}");
        assert_eq!(SystemTime::from(parsed), want.at, "{event}");
        assert_eq!(event["user_id"], want.user.as_str());
        assert_eq!(record.partition_key, want.user, "partition key = user id");
        assert_eq!(event["context"], want.context);
        let r = &want.result;
        // Unknown flags have no id or version in the answer; the event names the key.
        let flag_id = if r["flag_id"].is_null() { json!(key.1) } else { r["flag_id"].clone() };
        let version = if r["version"].is_null() { json!(0) } else { r["version"].clone() };
        assert!(event["version"].is_u64() && event["enabled"].is_boolean() && event["reason"].is_string());
        assert_eq!(
            (&event["flag_id"], &event["enabled"], &event["reason"], &event["variant"], &event["version"]),
            (&flag_id, &r["enabled"], &r["reason"], &r["variant"], &version),
            "{event} vs the answer {r}"
        );
    }
    assert_eq!(seen.len(), expected.len(), "every evaluation has its event");
}

/// The (user id, flag key) pairs of `records`, sorted: a multiset to compare.
fn user_flag_pairs(records: &[EventRecord]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            let event: Value = serde_json::from_slice(&r.data).expect("JSON");
            (
                event["user_id"].as_str().unwrap_or_default().to_owned(),
                event["flag_key"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

#[tokio::test]
async fn a_thousand_evaluations_arrive_once_each_in_the_event_schema() {
    let stream = stream("evaluations").await;
    let app = build_app(Some(&stream.moto.endpoint()), &stream.name, &[]).await;
    let calls = workload(1_000);
    assert!(calls.iter().any(|c| c.path == "/batch_evaluate") && calls.iter().any(|c| c.path == "/evaluate"));
    let mut expected = BTreeMap::new();
    for call in &calls {
        expected.extend(send(&app, call).await.1);
    }
    assert_eq!(expected.len(), 1_000);

    let report = app.events.flush().await;
    assert_eq!((report.sent, report.kept), (1_000, 0));
    let records = read_all(&stream.kinesis, &stream.name).await;
    assert_eq!(records.len(), 1_000);
    assert_events_match(&records, &expected);
    let mut evaluated: Vec<(String, String)> =
        calls.iter().flat_map(|c| c.keys.iter().map(|k| (c.user.to_owned(), (*k).to_owned()))).collect();
    evaluated.sort();
    assert_eq!(user_flag_pairs(&records), evaluated);
}

#[tokio::test]
async fn throttled_records_are_resent_until_each_event_is_in_the_stream_once() {
    let stream = stream("throttled").await;
    let proxy = Proxy::start(&stream.moto.endpoint());
    // The first three PutRecords calls lose every seventh record to throttling.
    throttle_first(&proxy, 3, |i| i % 7 == 3);
    let app = build_app(Some(&proxy.endpoint()), &stream.name, &[]).await;
    let mut expected = BTreeMap::new();
    for call in &workload(600) {
        expected.extend(send(&app, call).await.1);
    }

    for _ in 0..5 {
        app.events.flush().await;
        if app.events.stats().buffered == 0 {
            break;
        }
    }
    let stats = app.events.stats();
    assert_eq!((stats.buffered, stats.sent, stats.dropped), (0, 600, 0));
    assert!(stats.retried > 0, "{stats:?}");
    assert!(proxy.count(PUT_RECORDS) > 2, "more calls than the two batches");
    let records = read_all(&stream.kinesis, &stream.name).await;
    assert_eq!(records.len(), 600);
    assert_events_match(&records, &expected);
}

#[tokio::test]
async fn while_the_stream_is_unreachable_answers_are_unchanged_and_the_newest_events_wait() {
    let stream = stream("outage").await;
    let proxy = Proxy::start(&stream.moto.endpoint());
    proxy.set_fault(Fault::CloseConnections);
    let app = build_app(Some(&proxy.endpoint()), &stream.name, &[("EVENTS_BUFFER_MAX", "50")]).await;
    let reference = build_app(None, &stream.name, &[]).await;
    assert!(!reference.events.enabled());

    let calls = workload(80);
    let mut events = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let (answer, expected) = send(&app, call).await;
        let (same, _) = send(&reference, call).await;
        assert_eq!(answer, same, "{}: streaming changes no answer", call.request_id);
        events.extend(expected);
        if i % 10 == 9 {
            // What the Lambda extension does after each response.
            assert_eq!(app.events.flush().await.sent, 0);
        }
    }
    let stats = app.events.stats();
    assert_eq!((stats.buffered, stats.dropped, stats.sent, stats.recorded), (50, 30, 0, 80));

    proxy.set_fault(Fault::None);
    let report = app.events.flush().await;
    assert_eq!((report.sent, report.kept), (50, 0));
    let newest: BTreeMap<_, _> = events.split_off(30).into_iter().collect();
    let records = read_all(&stream.kinesis, &stream.name).await;
    assert_eq!(records.len(), 50);
    assert_events_match(&records, &newest);
}

#[tokio::test]
async fn summary_mode_puts_one_record_per_group_with_its_count() {
    let stream = stream("summary").await;
    let app = build_app(Some(&stream.moto.endpoint()), &stream.name, &[("EVENTS_MODE", "summary")]).await;
    let mut groups: BTreeMap<String, u64> = BTreeMap::new();
    let mut times = Vec::new();
    for call in &workload(300) {
        for (_, e) in send(&app, call).await.1 {
            let r = &e.result;
            let version = if r["version"].is_null() { json!(0) } else { r["version"].clone() };
            let group = json!([r["flag_key"], version, r["variant"], r["enabled"], r["reason"]]);
            *groups.entry(group.to_string()).or_default() += 1;
            times.push(e.at);
        }
    }

    let report = app.events.flush().await;
    assert_eq!((report.sent, report.kept), (groups.len(), 0));
    let records = read_all(&stream.kinesis, &stream.name).await;
    let (first, last) = (times.iter().min().expect("events"), times.iter().max().expect("events"));
    let mut found = BTreeMap::new();
    for record in &records {
        let e: Value = serde_json::from_slice(&record.data).expect("JSON");
        assert_eq!(e["event_type"], "feature_flag_summary", "{e}");
        assert_eq!(record.partition_key, e["flag_key"].as_str().expect("flag_key"));
        let start =
            OffsetDateTime::parse(e["window_start"].as_str().expect("window_start"), &Rfc3339).expect("RFC 3339");
        let end = OffsetDateTime::parse(e["window_end"].as_str().expect("window_end"), &Rfc3339).expect("RFC 3339");
        assert!(start <= end);
        assert_eq!((SystemTime::from(start), SystemTime::from(end)), (*first, *last), "the window covers every event");
        let group = json!([e["flag_key"], e["version"], e["variant"], e["enabled"], e["reason"]]);
        assert_eq!(found.insert(group.to_string(), e["count"].as_u64().expect("count")), None, "one per group");
    }
    assert_eq!(found, groups);
    assert_eq!(found.values().sum::<u64>(), 300);
}
