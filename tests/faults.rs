//! Faults behind a fault-injecting proxy in front of moto: what must hold when Kinesis
//! hangs at shutdown, when the store fails half its calls, and when a key known not to
//! exist outlives its not-found entry in an outage.

mod common;

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use common::app::Captured;
use common::kinesis::{client as kinesis_client, create_stream, read_all, PUT_RECORDS};
use common::moto::{shared_moto, unique_name};
use common::proxy::Proxy;
use flagfn::app::App;
use flagfn::clock::Clock;
use flagfn::config::{MetricsConfig, MetricsOutput};
use flagfn::metrics::Metrics;
use flagfn::sink::{EventSink, KinesisSink};
use flagfn::store::FileStore;
use serde_json::{json, Value};

/// Reading the captured EMF lines.
impl Captured {
    /// The totals lines (those with only the `Service` dimension), in order.
    fn totals(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let text = String::from_utf8(bytes).expect("UTF-8");
        let lines = text.lines().map(|l| serde_json::from_str::<Value>(l).expect("EMF JSON"));
        lines.filter(|l| l["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == json!([["Service"]])).collect()
    }
}

/// `name` summed over the totals lines (a line that did not change it may omit it).
fn sum(lines: &[Value], name: &str) -> u64 {
    lines.iter().map(|l| l[name].as_u64().unwrap_or(0)).sum()
}

/// The local server in-process, its events going to a Kinesis stream in moto through
/// `proxy`, its metrics to memory. Returns the app, the captured metrics, the server's
/// base URL, the trigger of its shutdown (as SIGTERM) and its thread.
async fn server_over(proxy: &Proxy, stream: &str) -> (Arc<App>, Captured, String, impl FnOnce()) {
    let config = common::app::config("tests/fixtures/api_flags.json", &[("METRICS_INTERVAL_MS", "0")]);
    let flags = format!("{}/tests/fixtures/api_flags.json", env!("CARGO_MANIFEST_DIR"));
    let store = Arc::new(FileStore::open(flags).expect("flags file"));
    let sink: Arc<dyn EventSink> = Arc::new(KinesisSink::new(kinesis_client(&proxy.endpoint()).await, stream));
    let metrics_config = MetricsConfig { output: MetricsOutput::Stdout, ..config.metrics.clone() };
    let captured = Captured::default();
    let metrics = Metrics::new(&metrics_config, Box::new(captured.clone()));
    let app = Arc::new(App::new(store, Some(sink), &config, Clock::system()).with_metrics(Some(metrics)));
    let mut local = common::server::LocalServer::start(app.clone());
    let addr = local.addr;
    let terminate = move || {
        local.stop();
    };
    (app, captured, format!("http://{addr}"), terminate)
}

/// `count` `POST /batch_evaluate` of three flags each, over HTTP (on the blocking pool).
async fn batches(base: &str, from: usize, count: usize) {
    let url = format!("{base}/batch_evaluate");
    tokio::task::spawn_blocking(move || {
        for i in from..from + count {
            let body = json!({"user_id": format!("user-{i}"), "flag_keys": ["on", "half", "abc"]}).to_string();
            let answer = ureq::post(&url).content_type("application/json").send(body.as_bytes());
            assert_eq!(answer.expect("answer").status().as_u16(), 200);
        }
    })
    .await
    .expect("requests");
}

/// Waits (generously) until `done`; the bound only keeps a broken build from hanging.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Shutdown (the local server's SIGTERM path) while Kinesis hangs: the periodic flush
/// has a `PutRecords` in flight and more events wait. Every recorded event ends up
/// delivered or counted dropped — none vanish — and the metrics lines add up to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_kinesis_hangs_accounts_for_every_event_on_the_local_server() {
    let moto = shared_moto();
    let direct = kinesis_client(&moto.endpoint()).await;
    let stream = unique_name("faults-sigterm");
    create_stream(&direct, &stream).await;
    let proxy = Proxy::start(&moto.endpoint());
    let (app, metrics, base, terminate) = server_over(&proxy, &stream).await;

    batches(&base, 0, 40).await;
    eventually("the first events delivered", || app.events.stats().delivered >= 120).await;
    // Kinesis stops answering: calls hang (far longer than the drain's budget).
    proxy.set_delay(Duration::from_secs(120));
    let calls_before = proxy.count(PUT_RECORDS);
    batches(&base, 40, 40).await;
    eventually("a PutRecords in flight", || proxy.count(PUT_RECORDS) > calls_before).await;
    batches(&base, 80, 40).await;
    tokio::task::spawn_blocking(terminate).await.expect("shutdown");

    let stats = app.events.stats();
    assert_eq!(stats.recorded, 360);
    assert_eq!(stats.buffered, 0, "{stats:?}");
    assert_eq!(stats.delivered + stats.dropped, stats.recorded, "every event delivered or counted: {stats:?}");
    assert!(stats.dropped > 0 && stats.unconfirmed > 0, "the hanging call was counted: {stats:?}");
    let stored = read_all(&direct, &stream).await.len() as u64;
    assert!(stored >= stats.delivered && stored <= stats.delivered + stats.unconfirmed, "{stored} stored: {stats:?}");
    // The metrics lines, the last one written after the drain, add up the same way.
    let lines = metrics.totals();
    let last = lines.last().expect("a final metrics line");
    assert_eq!(last["EventsBuffered"], 0, "{last}");
    assert_eq!(sum(&lines, "EventsRecorded"), stats.recorded);
    assert_eq!(sum(&lines, "EventsDelivered"), stats.delivered);
    assert_eq!(sum(&lines, "EventsDropped"), stats.dropped);
}

// ---- the store failing half its calls; known-absent keys in an outage ----------------

const GET_ITEM: &str = "DynamoDB_20120810.GetItem";
const BATCH_GET_ITEM: &str = "DynamoDB_20120810.BatchGetItem";
const SCAN: &str = "DynamoDB_20120810.Scan";

fn flag(key: &str, version: u64) -> Value {
    json!({"key": key, "enabled": true, "rollout_percentage": 100, "version": version})
}

/// A table holding `flags` in the shared moto, and an app over it that reads through a
/// fresh proxy, with the manual clock. Returns the app, the proxy, a writer straight to
/// moto, the table and the clock.
async fn table_app(
    flags: &[Value],
    settings: &[(&str, &str)],
) -> (Arc<App>, Proxy, aws_sdk_dynamodb::Client, String, Clock, Arc<common::moto::Moto>) {
    use common::dynamo::{client, create_table, dynamo_app, put_flags, Operations};
    let moto = shared_moto();
    let proxy = Proxy::start(&moto.endpoint());
    let writer = client(&moto.endpoint(), &Operations::default()).await;
    let table = unique_name("faults");
    create_table(&writer, &table).await;
    put_flags(&writer, &table, flags).await;
    let clock = Clock::manual();
    let reader = client(&proxy.endpoint(), &Operations::default()).await;
    let (app, _events) = dynamo_app(reader, &table, settings, clock.clone());
    (app, proxy, writer, table, clock, moto)
}

/// The OFREP bulk answer: (status, version of `key`, whether it was served stale).
async fn bulk_version(app: &App, key: &str) -> (u16, Option<u64>, bool) {
    let reply = common::app::post(app, "/ofrep/v1/evaluate/flags", &json!({"context": {"targetingKey": "u"}})).await;
    let flags = reply.body["flags"].as_array().cloned().unwrap_or_default();
    let found = flags.iter().find(|f| f["key"] == key);
    let version = found.and_then(|f| f["metadata"]["version"].as_u64());
    (reply.status, version, found.is_some_and(|f| f["reason"] == "STALE"))
}

/// Half of every DynamoDB read fails (whole calls, the SDK's retries included). Requests
/// ask for three flags one by one and for every flag (OFREP bulk, the snapshot) ten
/// times a second by the manual clock; the TTL is 1 s, so everything is re-read all the
/// time, and a flag changes at 5 s. Every answer is served (fresh or stale), and the
/// change reaches the bulk answer within a few seconds: a failed key read no longer
/// holds back the snapshot (one shared backoff kept it stale for 20 s).
#[tokio::test]
async fn a_store_failing_half_its_calls_still_refreshes_the_snapshot() {
    let flags = [flag("a", 1), flag("b", 1), flag("c", 1)];
    let settings = [("CACHE_TTL_SECONDS", "1"), ("NEGATIVE_CACHE_TTL_SECONDS", "1")];
    let (app, proxy, writer, table, clock, _moto) = table_app(&flags, &settings).await;
    assert_eq!(bulk_version(&app, "a").await, (200, Some(1), false));
    proxy.fail_half(&[GET_ITEM, BATCH_GET_ITEM, SCAN]);
    let (mut seen_after, mut stale_run, mut longest_stale) = (None, 0u32, 0u32);
    for tick in 1..=200u32 {
        clock.advance(Duration::from_millis(100));
        if tick == 50 {
            common::dynamo::put_flags(&writer, &table, &[flag("a", 2)]).await;
        }
        for key in ["a", "b", "c"] {
            let reply = common::app::post(&app, "/evaluate", &json!({"user_id": "u", "flag_key": key})).await;
            assert_eq!(reply.status, 200, "tick {tick}, {key}: {}", reply.body);
        }
        let (status, version, stale) = bulk_version(&app, "a").await;
        assert_eq!(status, 200, "tick {tick}");
        stale_run = if stale { stale_run + 1 } else { 0 };
        longest_stale = longest_stale.max(stale_run);
        if tick >= 50 && seen_after.is_none() && version == Some(2) && !stale {
            seen_after = Some(Duration::from_millis(100) * (tick - 50));
        }
    }
    let reads = proxy.count(GET_ITEM) + proxy.count(BATCH_GET_ITEM) + proxy.count(SCAN);
    let seen_after = seen_after.unwrap_or_else(|| panic!("the change never showed in 15 s ({reads} reads)"));
    let longest_stale = Duration::from_millis(100) * longest_stale;
    eprintln!("the change showed {seen_after:?} after it, the bulk answer was stale for {longest_stale:?} at most (manual clock); {reads} store requests");
    assert!(seen_after <= Duration::from_secs(5), "the change took {seen_after:?} to show");
    assert!(longest_stale <= Duration::from_secs(5), "the bulk answer was stale for {longest_stale:?} in a row");
}

/// A key known not to exist keeps answering "not found" when its negative entry expires
/// during an outage (stale-if-error covers not-found as it covers flags), on every
/// route, until `NEGATIVE_CACHE_TTL_SECONDS + STALE_IF_ERROR_SECONDS` — then, with
/// nothing left to vouch for it, the store error.
#[tokio::test]
async fn a_key_known_absent_stays_not_found_through_an_outage() {
    let settings =
        [("CACHE_TTL_SECONDS", "60"), ("NEGATIVE_CACHE_TTL_SECONDS", "30"), ("STALE_IF_ERROR_SECONDS", "600")];
    let (app, proxy, _writer, _table, clock, _moto) = table_app(&[flag("a", 1)], &settings).await;
    let evaluate = |key: &'static str| {
        let app = app.clone();
        async move { common::app::post(&app, "/evaluate", &json!({"user_id": "u", "flag_key": key})).await }
    };
    assert_eq!(evaluate("ghost").await.status, 404);
    proxy.set_fault(common::proxy::Fault::Http500);
    clock.advance(Duration::from_secs(31));
    let reply = evaluate("ghost").await;
    assert_eq!((reply.status, &reply.body), (404, &json!({"error": "Feature flag not found: ghost"})));
    let context = json!({"context": {"targetingKey": "u"}});
    let reply = common::app::post(&app, "/ofrep/v1/evaluate/flags/ghost", &context).await;
    assert_eq!((reply.status, &reply.body["errorCode"]), (404, &json!("FLAG_NOT_FOUND")), "{}", reply.body);
    let batch = json!({"user_id": "u", "flag_keys": ["ghost", "a"]});
    let reply = common::app::post(&app, "/batch_evaluate", &batch).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["results"]["ghost"]["reason"], "flag_not_found", "{}", reply.body);
    assert!(app.cache.stats().store_errors >= 1, "the store was failing");
    // Past the negative TTL and the stale window: nothing vouches for it any more.
    clock.advance(Duration::from_secs(600));
    assert_eq!(evaluate("ghost").await.status, 503);
}
