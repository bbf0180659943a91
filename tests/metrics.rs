//! The EMF metrics from real request sequences: through `api::handle` over a
//! DynamoDB table in moto (stopped for the stale serves), over a flags file with a
//! bounded event buffer (drops), through the real local server with `METRICS_FILE`, and
//! with 1,000 distinct flags (bounded cardinality). Every line written is checked
//! against the EMF specification's rules (`flagfn::metrics::spec::validate`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use common::app::Captured;
use common::dynamo::{client, create_table, dynamo_app, put_flags, Operations};
use common::moto::{unique_name, Moto};
use flagfn::app::App;
use flagfn::clock::Clock;
use flagfn::config::{MetricsConfig, MetricsOutput};
use flagfn::metrics::spec::validate;
use flagfn::metrics::Metrics;
use flagfn::sink::EventRecord;
use flagfn::store::FileStore;
use serde_json::{json, Value};

/// Reading the captured EMF lines.
impl Captured {
    /// The lines written since the last call, each validated against the specification.
    fn take(&self) -> Vec<Value> {
        let bytes = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        parse(&String::from_utf8(bytes).expect("UTF-8"))
    }
}

fn parse(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| {
            validate(line).unwrap_or_else(|why| panic!("invalid EMF ({why}): {line}"));
            let line: Value = serde_json::from_str(line).expect("JSON");
            // Lambda's JSON log format filters by `level`; the template's
            // ApplicationLogLevel is INFO, so every metric line is delivered.
            assert_eq!(line["level"], "INFO", "{line}");
            line
        })
        .collect()
}

fn metrics_config(flag_dimensions: usize) -> MetricsConfig {
    MetricsConfig {
        output: MetricsOutput::Stdout,
        namespace: "flagfn".into(),
        service: "test".into(),
        flag_dimensions,
        interval: Duration::ZERO,
    }
}

/// `app` with metrics written to memory.
fn with_metrics(app: App, flag_dimensions: usize) -> (App, Captured) {
    let out = Captured::default();
    let app = app.with_metrics(Some(Metrics::new(&metrics_config(flag_dimensions), Box::new(out.clone()))));
    (app, out)
}

/// The status of `POST path` with `body`.
async fn post(app: &App, path: &str, body: &Value) -> u16 {
    common::app::post(app, path, body).await.status
}

async fn evaluate(app: &App, key: &str) -> u16 {
    post(app, "/evaluate", &json!({"user_id": "u", "flag_key": key})).await
}

/// The totals line (the one with only the `Service` dimension).
fn totals(lines: &[Value]) -> &Value {
    let only_service = |l: &&Value| l["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == json!([["Service"]]);
    lines.iter().find(only_service).expect("a totals line")
}

/// `Evaluations` by (flag or "-", outcome) over the per-flag and per-outcome lines.
/// Summed over emits.
fn evaluations(lines: &[Value]) -> BTreeMap<(String, String), u64> {
    let mut by = BTreeMap::new();
    for l in lines {
        let Some(outcome) = l.get("Outcome").and_then(Value::as_str) else { continue };
        let flag = l.get("Flag").and_then(Value::as_str).unwrap_or("-").to_owned();
        *by.entry((flag, outcome.to_owned())).or_insert(0) += count(l, "Evaluations");
    }
    by
}

fn count(line: &Value, name: &str) -> u64 {
    line[name].as_u64().unwrap_or_else(|| panic!("{name} missing: {line}"))
}

#[tokio::test]
async fn hits_misses_and_stale_serves_against_dynamodb_count_exactly() {
    let mut moto = Moto::start();
    let table = unique_name("metrics");
    let client = client(&moto.endpoint(), &Operations::default()).await;
    create_table(&client, &table).await;
    let flag = json!({"key": "a", "enabled": true, "rollout_percentage": 100, "version": 1});
    put_flags(&client, &table, &[flag]).await;
    let clock = Clock::manual();
    let settings = [("CACHE_TTL_SECONDS", "60"), ("STALE_IF_ERROR_SECONDS", "600")];
    let (app, _sink) = dynamo_app(client, &table, &settings, clock.clone());
    let (app, out) = with_metrics(Arc::into_inner(app).expect("one owner"), 20);

    // a: one miss (one store read), then two hits; ghost: a miss, not found.
    assert_eq!([evaluate(&app, "a").await, evaluate(&app, "a").await, evaluate(&app, "a").await], [200; 3]);
    assert_eq!(evaluate(&app, "ghost").await, 404);
    assert_eq!(app.emit_metrics(true), 3, "totals, a/enabled, FLAG_NOT_FOUND");
    let lines = out.take();
    let t = totals(&lines);
    assert_eq!(
        [count(t, "Evaluations"), count(t, "CacheHits"), count(t, "CacheMisses"), count(t, "StoreReads")],
        [4, 2, 2, 2],
        "{t}"
    );
    assert_eq!([count(t, "StoreErrors"), count(t, "CacheStaleServes"), count(t, "EventsRecorded")], [0, 0, 4]);
    let expected: BTreeMap<(String, String), u64> =
        [(("a".into(), "enabled".into()), 3), (("-".into(), "FLAG_NOT_FOUND".into()), 1)].into();
    assert_eq!(evaluations(&lines), expected);

    // The outage: the TTL has passed and DynamoDB is gone, so `a` is served stale.
    moto.stop();
    clock.advance(Duration::from_secs(61));
    assert_eq!(evaluate(&app, "a").await, 200);
    app.emit_metrics(true);
    let lines = out.take();
    let t = totals(&lines);
    assert_eq!(
        [count(t, "Evaluations"), count(t, "CacheHits"), count(t, "CacheMisses"), count(t, "StoreReads")],
        [1, 0, 1, 1],
        "counts since the last emit only: {t}"
    );
    assert_eq!([count(t, "StoreErrors"), count(t, "CacheStaleServes")], [1, 1], "{t}");
    assert_eq!(evaluations(&lines), [(("a".into(), "enabled".into()), 1)].into());
}

fn file_app(events: &[(&str, &str)], clock: Clock) -> (App, Arc<common::app::MemorySink>) {
    let config = common::app::config("tests/fixtures/api_flags.json", events);
    let store = FileStore::open(format!("{}/tests/fixtures/api_flags.json", env!("CARGO_MANIFEST_DIR")));
    let sink = Arc::new(common::app::MemorySink::default());
    (App::new(Arc::new(store.expect("flags file")), Some(sink.clone()), &config, clock), sink)
}

#[tokio::test]
async fn events_dropped_by_the_bounded_buffer_are_reported_after_the_response() {
    let clock = Clock::manual();
    let (app, sink) = file_app(&[("EVENTS_BUFFER_MAX", "2")], clock.clone());
    let (app, out) = with_metrics(app, 20);
    assert!(app.has_after_response_work());
    for _ in 0..5 {
        assert_eq!(evaluate(&app, "on").await, 200);
    }
    // The buffer's oldest event is past EVENTS_FLUSH_MAX_AGE_MS (1 s): the after-response
    // phase flushes, then emits (METRICS_INTERVAL_MS=0 here).
    clock.advance(Duration::from_secs(2));
    app.after_response().await;
    assert_eq!(sink.events().len(), 2);
    let lines = out.take();
    let t = totals(&lines);
    assert_eq!([count(t, "EventsRecorded"), count(t, "EventsDropped"), count(t, "EventsDelivered")], [5, 3, 2], "{t}");
    assert_eq!([count(t, "EventRecordsSent"), count(t, "EventsBuffered"), count(t, "Evaluations")], [2, 0, 5]);
    assert_eq!(evaluations(&lines), [(("on".into(), "enabled".into()), 5)].into());
    // Nothing new: the next after-response phase writes nothing.
    app.after_response().await;
    assert!(out.take().is_empty());
}

#[tokio::test]
async fn with_events_off_the_metrics_still_run_after_the_response() {
    let config = common::app::config("tests/fixtures/api_flags.json", &[]);
    let path = format!("{}/tests/fixtures/api_flags.json", env!("CARGO_MANIFEST_DIR"));
    let app = App::new(Arc::new(FileStore::open(path).expect("flags")), None, &config, Clock::manual());
    assert!(!app.has_after_response_work(), "no events, no metrics: no extension");
    let (app, out) = with_metrics(app, 20);
    assert!(app.has_after_response_work());
    assert_eq!(evaluate(&app, "off").await, 200);
    app.after_response().await;
    let lines = out.take();
    assert_eq!(count(totals(&lines), "EventsRecorded"), 0);
    assert_eq!(evaluations(&lines), [(("off".into(), "flag_disabled".into()), 1)].into());
}

#[tokio::test]
async fn a_thousand_distinct_flags_give_a_bounded_number_of_lines_and_dimensions() {
    let flags: Vec<Value> = (0..1000)
        .map(|i| json!({"key": format!("flag-{i:04}"), "enabled": i % 2 == 0, "rollout_percentage": 100}))
        .collect();
    let dir = std::env::temp_dir().join(unique_name("flagfn-metrics"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("flags.json");
    std::fs::write(&file, json!({ "flags": flags }).to_string()).expect("flags file");
    let config = common::app::config(file.to_str().expect("path"), &[]);
    let store = Arc::new(FileStore::open(&file).expect("flags"));
    let (app, out) = with_metrics(App::new(store, None, &config, Clock::manual()), 20);
    // Every flag once (the bulk route), then flag-0999 four more times: it leads the top 20.
    assert_eq!(post(&app, "/ofrep/v1/evaluate/flags", &json!({"context": {"targetingKey": "u"}})).await, 200);
    for _ in 0..4 {
        assert_eq!(evaluate(&app, "flag-0999").await, 200);
    }
    let written = app.emit_metrics(true);
    let lines = out.take();
    assert_eq!(written, lines.len());
    // One totals line, one per (top flag, outcome), one per outcome for the rest.
    assert_eq!(lines.len(), 1 + 20 + 2, "{lines:?}");
    let named: BTreeSet<&str> = lines.iter().filter_map(|l| l.get("Flag")?.as_str()).collect();
    assert_eq!(named.len(), 20);
    assert!(named.contains("flag-0999"));
    let by = evaluations(&lines);
    assert_eq!(by.values().sum::<u64>(), 1004, "every evaluation counted once");
    assert_eq!(by[&("flag-0999".to_owned(), "flag_disabled".to_owned())], 5);
    assert_eq!(count(totals(&lines), "Evaluations"), 1004);
    let _ = std::fs::remove_dir_all(dir);
}

/// The real local server with `METRICS_FILE` set (and `METRICS_INTERVAL_MS`=`interval`),
/// flushing every `flush`: three requests, then `wait_before_stop` sees the file, then
/// shutdown. Returns the file's lines.
fn serve_three_requests(
    flush: Duration,
    interval: &str,
    wait_before_stop: impl FnOnce(&PathBuf) + Send + 'static,
) -> Vec<Value> {
    let dir = std::env::temp_dir().join(unique_name("flagfn-metrics-server"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let metrics_file: PathBuf = dir.join("metrics.jsonl");
    let mut config = common::app::config(
        "tests/fixtures/api_flags.json",
        &[("METRICS_FILE", metrics_file.to_str().expect("path")), ("METRICS_INTERVAL_MS", interval)],
    );
    assert_eq!(config.metrics.output, MetricsOutput::File(metrics_file.clone()));
    config.metrics.service = "server-test".into();
    let metrics = Metrics::open(&config.metrics).expect("open METRICS_FILE");
    let store = FileStore::open(format!("{}/tests/fixtures/api_flags.json", env!("CARGO_MANIFEST_DIR")));
    let app = App::new(Arc::new(store.expect("flags")), None, &config, Clock::system()).with_metrics(metrics);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let file = metrics_file.clone();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/evaluate?user_id=u&flag_key=on", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(flagfn::server::serve(Arc::new(app), listener, flush, async {
            let _ = stopped.await;
        }));
        let statuses = tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let statuses: Vec<u16> =
                (0..3).map(|_| agent.get(&url).call().map(|r| r.status().as_u16()).unwrap_or(0)).collect();
            wait_before_stop(&file);
            statuses
        });
        assert_eq!(statuses.await.expect("requests"), [200; 3]);
        let _ = stop.send(());
        server.await.expect("server task").expect("serve");
    });
    let lines = parse(&std::fs::read_to_string(&metrics_file).unwrap_or_default());
    let _ = std::fs::remove_dir_all(dir);
    lines
}

/// The sum of `Evaluations` over the totals lines.
fn total_evaluations(lines: &[Value]) -> u64 {
    lines.iter().filter(|l| l.get("Outcome").is_none()).map(|l| count(l, "Evaluations")).sum()
}

#[test]
fn the_local_server_writes_metrics_from_its_periodic_flush() {
    // Flushes every 20 ms, metrics due at each: the lines appear while the server runs.
    let lines = serve_three_requests(Duration::from_millis(20), "0", |file| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if parse(&text).iter().filter(|l| l.get("Outcome").is_none()).map(|l| count(l, "Evaluations")).sum::<u64>()
                == 3
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no metrics for the three requests while the server ran");
    });
    assert_eq!(total_evaluations(&lines), 3, "{lines:?}");
    assert_eq!(evaluations(&lines), [(("on".into(), "enabled".into()), 3)].into());
    assert!(lines.iter().all(|l| l["Service"] == "server-test"));
}

#[test]
fn the_local_server_writes_the_final_account_at_shutdown() {
    // No periodic flush within the test (an hour apart): only the shutdown writes.
    let lines = serve_three_requests(Duration::from_secs(3600), "3600000", |file| {
        assert!(std::fs::read_to_string(file).unwrap_or_default().is_empty(), "nothing before shutdown");
    });
    assert_eq!(total_evaluations(&lines), 3, "{lines:?}");
    assert_eq!(evaluations(&lines), [(("on".into(), "enabled".into()), 3)].into());
}

/// `scripts/cost_inputs.json`, the cost model's one table of figures.
fn cost_inputs() -> Value {
    let path = format!("{}/scripts/cost_inputs.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("cost inputs")).expect("cost inputs are JSON")
}

/// Within 10 % of what the cost model assumes.
fn assert_near(measured: usize, input: &Value, what: &str) {
    let assumed = input.as_f64().unwrap_or_else(|| panic!("{what} missing from cost_inputs.json"));
    let ratio = measured as f64 / assumed;
    assert!((0.9..=1.1).contains(&ratio), "{what}: measured {measured} bytes, cost_inputs.json says {assumed}");
}

/// The record sizes and EMF bytes `make cost` uses are measured here from real records
/// and real lines, for the sample request docs/cost.md assumes: a user id, a
/// three-attribute context, one flag with variants; ten hot flags per emit.
#[tokio::test]
async fn the_cost_model_uses_the_measured_record_and_emf_sizes() {
    let inputs = cost_inputs();
    let body = json!({"user_id": "user-12345", "flag_key": "abc",
                      "context": {"plan": "pro", "country": "DE", "app_version": "5.2.1"}});
    let mut sizes = Vec::new();
    for mode in ["full", "summary"] {
        let clock = Clock::manual();
        let (app, sink) = file_app(&[("EVENTS_MODE", mode)], clock.clone());
        assert_eq!(post(&app, "/evaluate", &body).await, 200);
        app.events.flush().await;
        let records = sink.records.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(records.len(), 1, "{mode}");
        sizes.push(records[0].data.len() + records[0].partition_key.len());
    }
    assert_near(sizes[0], &inputs["kinesis_record_bytes_full"], "a full event record");
    assert_near(sizes[1], &inputs["kinesis_record_bytes_summary"], "a summary record");

    // Packed: full events of that size, from distinct users (each key in the record's
    // table), into one aggregated record of at most the sink's target size.
    let full = "x".repeat(sizes[0] - "user-10000".len());
    let events: Vec<EventRecord> = (0..200)
        .map(|i| EventRecord { partition_key: format!("user-{}", 10_000 + i), data: full.clone().into_bytes() })
        .collect();
    let first = &flagfn::sink::kpl::pack(&events, flagfn::sink::AGGREGATE_BYTES)[0];
    assert_eq!(inputs["kinesis_aggregate_bytes"].as_u64(), Some(flagfn::sink::AGGREGATE_BYTES as u64));
    assert_near(first.members.len(), &inputs["kpl_events_per_record"], "full events per aggregated record");
    assert_near(first.data.len() + first.partition_key.len(), &inputs["kpl_record_bytes"], "an aggregated record");

    let flags: Vec<Value> =
        (0..10).map(|i| json!({"key": format!("hot-flag-{i}"), "enabled": true, "rollout_percentage": 100})).collect();
    let dir = std::env::temp_dir().join(unique_name("flagfn-cost"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("flags.json");
    std::fs::write(&file, json!({ "flags": flags }).to_string()).expect("flags file");
    let config = common::app::config(file.to_str().expect("path"), &[]);
    let store = Arc::new(FileStore::open(&file).expect("flags"));
    let sink = Arc::new(common::app::MemorySink::default());
    let app = App::new(store, Some(sink), &config, Clock::manual());
    let (app, out) = with_metrics(app, 20);
    for i in 0..10 {
        assert_eq!(evaluate(&app, &format!("hot-flag-{i}")).await, 200);
    }
    app.emit_metrics(true);
    let bytes = out.0.lock().unwrap_or_else(PoisonError::into_inner).len();
    assert_near(bytes, &inputs["emf_bytes_per_emit"], "one emit with ten hot flags");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn flagd_flags_are_counted_streamed_and_answered_on_direct_invoke_like_any_flag() {
    let flags_file = "examples/flagd.json";
    let config = common::app::config(flags_file, &[]);
    let path = format!("{}/{flags_file}", env!("CARGO_MANIFEST_DIR"));
    let sink = Arc::new(common::app::MemorySink::default());
    let app = App::new(
        Arc::new(FileStore::open(path).expect("the flagd example")),
        Some(sink.clone()),
        &config,
        Clock::manual(),
    );
    let (app, out) = with_metrics(app, 20);

    // Direct invoke, both actions, with the Python service's payloads.
    let one = r#"{"action": "evaluate", "user_id": "user-7", "flag_key": "new-checkout", "context": {"email": "ana@example.com"}}"#;
    let answer: Value = serde_json::from_str(&flagfn::lambda::invoke(&app, one, "req-1").await).expect("JSON");
    assert_eq!(
        (&answer["value"], &answer["variant"], &answer["reason"]),
        (&json!(true), &json!("on"), &json!("rule_match"))
    );
    let batch = r#"{"action": "batch_evaluate", "user_id": "user-7", "flag_keys": ["search-page-size", "holiday-theme"], "context": {"appVersion": "2.3.9"}}"#;
    let answer: Value = serde_json::from_str(&flagfn::lambda::invoke(&app, batch, "req-2").await).expect("JSON");
    let results = &answer["results"];
    assert_eq!(
        (&results["search-page-size"]["value"], &results["search-page-size"]["variant"]),
        (&json!(10), &json!("small"))
    );
    assert_eq!(results["holiday-theme"]["reason"], "flag_disabled");
    // And OFREP.
    assert_eq!(
        post(&app, "/ofrep/v1/evaluate/flags/new-checkout", &json!({"context": {"email": "bo@mail.test"}})).await,
        200
    );

    app.events.flush().await;
    let events = sink.events();
    let reasons: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["flag_key"].as_str().unwrap_or(""), e["flagd_reason"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        reasons,
        [
            ("new-checkout", "TARGETING_MATCH"),
            ("search-page-size", "TARGETING_MATCH"),
            ("holiday-theme", "DISABLED"),
            ("new-checkout", "DEFAULT")
        ]
    );
    assert_eq!(app.emit_metrics(true), 5, "totals and one line per (flag, outcome)");
    let lines = out.take();
    assert_eq!(count(totals(&lines), "Evaluations"), 4);
    assert_eq!(
        evaluations(&lines),
        [
            (("holiday-theme".into(), "flag_disabled".into()), 1),
            (("new-checkout".into(), "enabled".into()), 1),
            (("new-checkout".into(), "rule_match".into()), 1),
            (("search-page-size".into(), "rule_match".into()), 1),
        ]
        .into()
    );
}
