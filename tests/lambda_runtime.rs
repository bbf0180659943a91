//! The real `flagfn` binary, run as Lambda runs it — against a Runtime API and Extensions
//! API emulator (tests/common/runtime_api.rs) — streaming evaluation events to a Kinesis
//! stream (moto) through a proxy that holds every `PutRecords` for 200 ms: a slow sink.
//!
//! Every claim is an ORDER of steps on one timeline, never a wall-clock threshold. The
//! emulator records when it hands an invocation out, when the response is posted and when
//! the internal extension asks for its next event (= the environment may be frozen); the
//! proxy hook records when a `PutRecords` arrives, when it is forwarded to moto (200 ms
//! later) and when moto has answered — with the request ids of the events it carries, so
//! each call is tied to its invocation.
//!
//! - events leave only after the response was posted, and the response never waited for
//!   the slow sink (posted before the sink call even started);
//! - the environment is ready to freeze only after the events were stored;
//! - every evaluation reaches the stream exactly once;
//! - SIGTERM drains what a Kinesis outage left buffered before the process exits.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use base64::Engine;
use common::kinesis::{client, create_stream, read_all, PUT_RECORDS};
use common::moto::{unique_name, Moto};
use common::proxy::{Fault, Proxy};
use common::runtime_api::{Answer, Entry, RuntimeApi, Timeline};
use flagfn::sink::EventRecord;
use serde_json::Value;

/// How long the proxy holds each `PutRecords` before forwarding it: the slow sink.
const SINK_DELAY: Duration = Duration::from_millis(200);
/// Hang guard for every wait; never a measurement.
const LIMIT: Duration = Duration::from_secs(20);
const FUNCTION: &str = "flagfn";

/// Marks the proxy hook and the test put on the timeline.
const RECEIVED: &str = "PutRecords received by the proxy";
const FORWARDED: &str = "PutRecords forwarded to moto";
const STORED: &str = "PutRecords answered 200 by moto";
const FAILED: &str = "PutRecords answered an error";
const SIGTERM: &str = "SIGTERM sent";
const EXITED: &str = "process exited";

// ---------------------------------------------------------------------------------------
// Harness: the function process, the slow sink, the stream.

/// The real binary, polling the emulator. Killed (by its PID) when dropped.
struct Function {
    child: Child,
    log: PathBuf,
    /// Standard output: the EMF metrics lines.
    out: PathBuf,
}

impl Function {
    fn start(api: &RuntimeApi, aws_endpoint: &str, stream: &str, settings: &[(&str, &str)]) -> Function {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let log = std::env::temp_dir().join(format!("flagfn-lambda-{}.log", unique_name("run")));
        let stderr = std::fs::File::create(&log).expect("log file");
        let out = log.with_extension("out");
        let stdout = std::fs::File::create(&out).expect("stdout file");
        let child = Command::new(env!("CARGO_BIN_EXE_flagfn"))
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("FLAGS_FILE", root.join("examples/flags.json"))
            .env("KINESIS_STREAM_NAME", stream)
            .env("AWS_ENDPOINT_URL", aws_endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info,flagfn=debug")
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start the flagfn binary");
        Function { child, log, out }
    }

    /// Sends SIGTERM, as Lambda does at shutdown when an extension is registered.
    fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
    }

    /// Waits for the process to exit on its own (hang guard: [`LIMIT`]).
    async fn exit_status(&mut self) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for flagfn") {
                return status;
            }
            assert!(tokio::time::Instant::now() < deadline, "flagfn did not exit; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The EMF totals lines written to standard output (those with only the `Service`
    /// dimension), in order.
    fn metrics_totals(&self) -> Vec<Value> {
        let out = std::fs::read_to_string(&self.out).unwrap_or_default();
        let lines = out.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok());
        lines.filter(|l| l["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == serde_json::json!([["Service"]])).collect()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(&self.out);
    }
}

/// The request ids of the events a `PutRecords` body carries, one per record.
fn request_ids(body: &[u8]) -> Vec<String> {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let records = request["Records"].as_array().cloned().unwrap_or_default();
    records
        .iter()
        .map(|record| {
            let data = record["Data"].as_str().unwrap_or("");
            let data = base64::engine::general_purpose::STANDARD.decode(data).unwrap_or_default();
            let event: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
            event["request_id"].as_str().unwrap_or("<no request id>").to_owned()
        })
        .collect()
}

/// Makes the proxy a slow sink that reports every `PutRecords` on the timeline: when it
/// arrives, when it goes on to moto ([`SINK_DELAY`] later) and when moto has answered.
/// (The delay is here rather than `Proxy::set_delay`, which would hide the arrival.)
fn slow_sink(proxy: &Proxy, timeline: Timeline) {
    proxy.set_hook(move |target, body, forward| {
        if target != PUT_RECORDS {
            return forward(body);
        }
        let ids = request_ids(&body);
        timeline.mark(RECEIVED, ids.clone());
        std::thread::sleep(SINK_DELAY);
        timeline.mark(FORWARDED, ids.clone());
        let (status, answer) = forward(body);
        timeline.mark(if status == 200 { STORED } else { FAILED }, ids);
        (status, answer)
    });
}

/// The stream's events as `(request id, flag key)`, sorted.
fn stored_evaluations(records: &[EventRecord]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            let e: Value = serde_json::from_slice(&r.data).expect("events are JSON");
            assert_eq!(e["event_type"], "feature_flag_evaluation", "{e}");
            (e["request_id"].as_str().unwrap_or("").to_owned(), e["flag_key"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    pairs.sort();
    pairs
}

// ---------------------------------------------------------------------------------------
// The sample events and their expected answers (the same checks as tests/events.rs).

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn event(name: &str) -> String {
    std::fs::read_to_string(root().join("events").join(name)).expect("event file")
}

/// Checks `answer` against tests/fixtures/events_expected.json; returns the response body.
fn check_expected(name: &str, answer: &Answer) -> Value {
    let Answer::Response(text) = answer else { panic!("{name}: the runtime posted an error: {answer:?}") };
    let output: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: answer is not JSON: {e}"));
    let expected = std::fs::read_to_string(root().join("tests/fixtures/events_expected.json")).expect("expectations");
    let expected: Value = serde_json::from_str(&expected).expect("expectations are JSON");
    let want = &expected[name];
    assert!(want.is_object(), "{name}: no expectation in events_expected.json");
    let body = match want.get("status") {
        Some(status) => {
            assert_eq!(&output["statusCode"], status, "{name}: {output}");
            assert_eq!(output["isBase64Encoded"], false, "{name}");
            match output["body"].as_str() {
                Some("") => Value::Null,
                Some(text) => serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: body: {e}")),
                None => panic!("{name}: no body string: {output}"),
            }
        }
        None => output,
    };
    for (pointer, value) in want["body"].as_object().into_iter().flatten() {
        assert_eq!(body.pointer(pointer), Some(value), "{name} {pointer}: {body}");
    }
    body
}

/// The flag keys a response body reports evaluations of: one for `evaluate`, one per
/// result for `batch_evaluate`, none for anything else.
fn evaluated_keys(body: &Value) -> Vec<String> {
    match (body.get("results").and_then(Value::as_object), body.get("flag_key").and_then(Value::as_str)) {
        (Some(results), _) => results.keys().cloned().collect(),
        (None, Some(key)) => vec![key.to_owned()],
        (None, None) => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Reading the timeline.

fn position(entries: &[Entry], what: &str, pred: impl Fn(&Entry) -> bool) -> usize {
    entries.iter().position(pred).unwrap_or_else(|| panic!("no {what} in the timeline"))
}

fn handed_out(entries: &[Entry], id: &str) -> usize {
    position(entries, "hand-out", |e| matches!(e, Entry::HandedOut { request_id } if request_id == id))
}

fn response(entries: &[Entry], id: &str) -> usize {
    position(entries, "response", |e| matches!(e, Entry::Response { request_id, .. } if request_id == id))
}

/// The extension's first next-event request after `id` was handed out: the extension is
/// done with `id`, and the environment may be frozen.
fn ready_after(entries: &[Entry], id: &str) -> Option<usize> {
    let start = entries.iter().position(|e| matches!(e, Entry::HandedOut { request_id } if request_id == id))?;
    entries.iter().skip(start).position(|e| *e == Entry::ExtensionNext).map(|i| start + i)
}

/// Positions of the marks labelled `label` that carry events of `id`.
fn marks_with(entries: &[Entry], label: &str, id: &str) -> Vec<usize> {
    let carries = |e: &Entry| match e {
        Entry::Mark { label: l, request_ids } => l == label && request_ids.iter().any(|r| r == id),
        _ => false,
    };
    entries.iter().enumerate().filter(|(_, e)| carries(e)).map(|(i, _)| i).collect()
}

fn mark_ids(entries: &[Entry], at: usize) -> &[String] {
    match &entries[at] {
        Entry::Mark { request_ids, .. } => request_ids,
        other => panic!("not a mark: {other:?}"),
    }
}

/// Nothing went wrong on the emulator's side: the extension registered during init, for
/// INVOKE only, before the runtime's first poll; no errors, no unknown requests.
fn assert_clean_lifecycle(entries: &[Entry], timeline: &Timeline) {
    let registered = Entry::Registered { name: "flagfn-events".into(), events: vec!["INVOKE".into()] };
    assert_eq!(entries.first(), Some(&registered), "{}", timeline.render());
    assert!(entries.iter().filter(|e| **e == Entry::RuntimeNext).count() > 0);
    let bad = entries.iter().find(|e| {
        matches!(
            e,
            Entry::RegistrationRefused { .. }
                | Entry::InvocationError { .. }
                | Entry::InitError { .. }
                | Entry::ExtensionError { .. }
                | Entry::Unexpected { .. }
        )
    });
    assert_eq!(bad, None, "{}", timeline.render());
}

/// A moto server with a fresh stream, the slow sink in front of it, the emulator and the
/// binary, all recording on one timeline. Fields drop in declaration order: the binary is
/// killed before the emulator, the proxy and moto go.
struct Setup {
    function: Function,
    api: RuntimeApi,
    proxy: Proxy,
    timeline: Timeline,
    kinesis: Client,
    stream: String,
    _moto: Moto,
}

/// [`setup_with`] flushing after every invocation (`EVENTS_FLUSH_MAX_AGE_MS=0`), so each
/// invocation's events can be followed on their own.
async fn setup() -> Setup {
    setup_with(&[("EVENTS_FLUSH_MAX_AGE_MS", "0")]).await
}

async fn setup_with(settings: &[(&str, &str)]) -> Setup {
    let moto = Moto::start();
    let kinesis = client(&moto.endpoint()).await;
    let stream = unique_name("lambda-events");
    create_stream(&kinesis, &stream).await;
    let timeline = Timeline::new();
    let proxy = Proxy::start(&moto.endpoint());
    slow_sink(&proxy, timeline.clone());
    let api = RuntimeApi::start(FUNCTION, timeline.clone());
    let function = Function::start(&api, &proxy.endpoint(), &stream, settings);
    Setup { function, api, proxy, timeline, kinesis, stream, _moto: moto }
}

impl Setup {
    /// Waits until the extension is done with `id` (asked for its next event).
    async fn ready_after(&self, id: &str) -> usize {
        self.timeline.wait_for(&format!("extension next-event request after {id}"), LIMIT, |e| ready_after(e, id)).await
    }
}

// ---------------------------------------------------------------------------------------

/// For each invocation: handed out < response posted < its PutRecords arrives at the
/// proxy < forwarded to moto (200 ms later) < stored < the extension asks for the next
/// event < the next invocation is handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_leave_after_the_response_and_before_the_environment_freezes() {
    let mut s = setup().await;
    // All queued at once: the emulator hands each out only when the previous one is
    // finished by both the runtime and the extension, as Lambda does.
    let files = ["url-evaluate-post.json", "url-batch-evaluate.json", "invoke-evaluate.json", "url-health.json"];
    let ids: Vec<String> = files.iter().map(|f| s.api.invoke(&event(f))).collect();

    let mut expected_stored = Vec::new();
    let mut evaluations = BTreeMap::new();
    for (file, id) in files.iter().zip(&ids) {
        let body = check_expected(file, &s.api.answer(id, LIMIT).await);
        let keys = evaluated_keys(&body);
        expected_stored.extend(keys.iter().map(|k| (id.clone(), k.clone())));
        evaluations.insert(id.clone(), keys.len());
    }
    s.ready_after(ids.last().expect("ids")).await;
    let entries = s.timeline.entries();
    let render = s.timeline.render();
    assert_clean_lifecycle(&entries, &s.timeline);

    for (i, (file, id)) in files.iter().zip(&ids).enumerate() {
        let handed = handed_out(&entries, id);
        let posted = response(&entries, id);
        let ready = ready_after(&entries, id).expect("ready");
        assert!(handed < posted && posted < ready, "{file}: hand-out, response, ready out of order\n{render}");
        if let Some(next) = ids.get(i + 1) {
            assert!(ready < handed_out(&entries, next), "{file}: next invocation before ready\n{render}");
        }

        let received = marks_with(&entries, RECEIVED, id);
        if evaluations[id] == 0 {
            // Nothing to send: no sink call at all (not an empty PutRecords).
            let any_call =
                entries[handed..ready].iter().any(|e| matches!(e, Entry::Mark { label, .. } if label == RECEIVED));
            assert!(!any_call, "{file}: a PutRecords without events\n{render}");
            continue;
        }
        // Its events left only after the response was posted: no PutRecords carrying any
        // of them reached the proxy earlier ...
        let early = received.iter().any(|&at| at < posted);
        assert!(!early, "{file}: events sent before the response was posted\n{render}");
        // ... and the environment became freezable only once they were stored.
        let stored = marks_with(&entries, STORED, id);
        let stored_in_time = stored.first().is_some_and(|&at| at < ready);
        assert!(stored_in_time, "{file}: ready to freeze before its events were stored\n{render}");
        // All of this invocation's events, and nothing else, in one call ...
        assert_eq!(received.len(), 1, "{file}: its events in one PutRecords\n{render}");
        let ids_sent = mark_ids(&entries, received[0]);
        assert_eq!(ids_sent, vec![id.clone(); evaluations[id]].as_slice(), "{file}: what the call carried\n{render}");
        // ... so the response did not wait for the slow sink: the caller had it before the
        // call started, while the proxy then held the events 200 ms before moto saw them.
        let forwarded = marks_with(&entries, FORWARDED, id);
        let steps = [handed, posted, received[0], forwarded[0], stored[0], ready];
        assert!(steps.is_sorted(), "{file}: out of order: {steps:?}\n{render}");
    }

    expected_stored.sort();
    assert_eq!(expected_stored.len(), 1 + 5 + 1, "the evaluations these events make");
    assert_eq!(stored_evaluations(&read_all(&s.kinesis, &s.stream).await), expected_stored, "each exactly once");
    assert!(s.function.child.try_wait().expect("status").is_none(), "still running; log:\n{}", s.function.log());
}

/// Events an outage left buffered are sent on SIGTERM, before the process exits, and
/// the process exits successfully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_what_an_outage_left_buffered() {
    let mut s = setup().await;
    let before = s.api.invoke(&event("url-evaluate-post.json"));
    check_expected("url-evaluate-post.json", &s.api.answer(&before, LIMIT).await);
    s.ready_after(&before).await;

    // Kinesis unreachable: the flushes fail and the events stay buffered, but the
    // answers are right and the environment still becomes ready after each invocation.
    s.proxy.set_fault(Fault::CloseConnections);
    let during_files = ["url-batch-evaluate.json", "invoke-batch-evaluate.json"];
    let mut during = Vec::new();
    let mut expected_stored = vec![(before.clone(), "new-checkout".to_owned())];
    for file in during_files {
        let id = s.api.invoke(&event(file));
        let body = check_expected(file, &s.api.answer(&id, LIMIT).await);
        expected_stored.extend(evaluated_keys(&body).into_iter().map(|k| (id.clone(), k)));
        s.ready_after(&id).await;
        during.push(id);
    }
    s.proxy.set_fault(Fault::None);

    let sigterm = s.timeline.mark(SIGTERM, Vec::new());
    s.function.terminate();
    let status = s.function.exit_status().await;
    let exited = s.timeline.mark(EXITED, Vec::new());
    assert!(status.success(), "exit status {status}; log:\n{}", s.function.log());

    let entries = s.timeline.entries();
    let render = s.timeline.render();
    assert_clean_lifecycle(&entries, &s.timeline);
    for id in &during {
        // Nothing of these invocations reached the sink while it was down ...
        let calls = marks_with(&entries, RECEIVED, id);
        assert!(calls.iter().all(|&at| at > sigterm), "{id} reached the proxy before SIGTERM\n{render}");
        // ... and all of it was stored between SIGTERM and the exit.
        let stored = marks_with(&entries, STORED, id);
        let drained = stored.iter().filter(|&&at| sigterm < at && at < exited);
        let count: usize = drained.map(|&at| mark_ids(&entries, at).iter().filter(|r| *r == id).count()).sum();
        let expected = expected_stored.iter().filter(|(r, _)| r == id).count();
        assert_eq!(count, expected, "{id}: events stored by the drain\n{render}");
    }

    expected_stored.sort();
    assert_eq!(expected_stored.len(), 1 + 5 + 5);
    assert_eq!(stored_evaluations(&read_all(&s.kinesis, &s.stream).await), expected_stored, "each exactly once");
}

/// The account the binary logs at shutdown: (recorded, delivered, dropped, unconfirmed).
fn shutdown_account(log: &str) -> (u64, u64, u64, u64) {
    let line = log.lines().find(|l| l.contains("events at shutdown")).unwrap_or_else(|| panic!("no account:\n{log}"));
    let line: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let field = |name: &str| line[name].as_u64().unwrap_or_else(|| panic!("no {name} in {line}"));
    (field("recorded"), field("delivered"), field("dropped"), field("unconfirmed"))
}

/// With a flush minimum of 6 events and a long age bound, invocations answer
/// without any sink call until six events are buffered; then one `PutRecords` carries the
/// events of both invocations, each with its own request id; what is left when SIGTERM
/// comes is delivered before the exit, and the log's account adds up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_the_flush_minimum_and_sigterm_delivers_the_rest() {
    let mut s = setup_with(&[("EVENTS_FLUSH_MIN", "6"), ("EVENTS_FLUSH_MAX_AGE_MS", "600000")]).await;
    let files = ["url-evaluate-post.json", "url-batch-evaluate.json", "invoke-evaluate.json"];
    let mut ids = Vec::new();
    let mut expected_stored = Vec::new();
    for file in files {
        let id = s.api.invoke(&event(file));
        let body = check_expected(file, &s.api.answer(&id, LIMIT).await);
        expected_stored.extend(evaluated_keys(&body).into_iter().map(|k| (id.clone(), k)));
        s.ready_after(&id).await;
        ids.push(id);
    }
    let entries = s.timeline.entries();
    let render = s.timeline.render();
    let calls: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Entry::Mark { label, .. } if label == RECEIVED))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(calls.len(), 1, "one PutRecords for three invocations\n{render}");
    let call = calls[0];
    assert!(response(&entries, &ids[1]) < call && call < ready_after(&entries, &ids[1]).expect("ready"), "{render}");
    let mut carried = mark_ids(&entries, call).to_vec();
    carried.dedup();
    assert_eq!(carried, [ids[0].clone(), ids[1].clone()], "both invocations' events, in order\n{render}");

    let sigterm = s.timeline.mark(SIGTERM, Vec::new());
    s.function.terminate();
    assert!(s.function.exit_status().await.success(), "log:\n{}", s.function.log());
    let entries = s.timeline.entries();
    let last = marks_with(&entries, STORED, &ids[2]);
    let render = s.timeline.render();
    assert!(last.len() == 1 && last[0] > sigterm, "the last event left at SIGTERM\n{render}\n{}", s.function.log());
    expected_stored.sort();
    assert_eq!(expected_stored.len(), 1 + 5 + 1);
    assert_eq!(stored_evaluations(&read_all(&s.kinesis, &s.stream).await), expected_stored, "each exactly once");
    assert_eq!(shutdown_account(&s.function.log()), (7, 7, 0, 0));
}

/// 5,000 events buffered, a sink that takes 200 ms per call and a
/// 400 ms shutdown budget. The drain starts no call it cannot finish (one or two, not
/// ten), the process exits, and the logged account holds: delivered + dropped ==
/// recorded, with delivered matching what the stream holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_slow_sink_stops_at_its_budget_and_counts_what_it_could_not_send() {
    let mut s = setup_with(&[("EVENTS_FLUSH_MIN", "1000000"), ("EVENTS_FLUSH_MAX_AGE_MS", "600000")]).await;
    let keys: Vec<String> = (0..1_000).map(|i| format!("unknown-{i:04}")).collect();
    let payload = serde_json::json!({"action": "batch_evaluate", "user_id": "user-1", "flag_keys": keys});
    for _ in 0..5 {
        let id = s.api.invoke(&payload.to_string());
        let Answer::Response(text) = s.api.answer(&id, LIMIT).await else { panic!("an error answer") };
        assert!(text.contains("flag_not_found"), "{}", &text[..text.len().min(300)]);
        s.ready_after(&id).await;
    }
    let sigterm = s.timeline.mark(SIGTERM, Vec::new());
    s.function.terminate();
    assert!(s.function.exit_status().await.success(), "log:\n{}", s.function.log());

    let entries = s.timeline.entries();
    let calls = entries
        .iter()
        .enumerate()
        .filter(|(i, e)| *i > sigterm && matches!(e, Entry::Mark { label, .. } if label == RECEIVED))
        .count();
    assert!((1..=2).contains(&calls), "{calls} PutRecords started within the budget\n{}", s.timeline.render());
    let (recorded, delivered, dropped, unconfirmed) = shutdown_account(&s.function.log());
    eprintln!("{calls} PutRecords after SIGTERM; recorded {recorded}, delivered {delivered}, dropped {dropped}");
    assert_eq!(recorded, 5_000);
    assert_eq!(delivered + dropped, recorded, "log:\n{}", s.function.log());
    assert!(dropped >= 4_000, "at most two calls of 500 went out: {dropped}");
    let stored = read_all(&s.kinesis, &s.stream).await.len() as u64;
    assert!(delivered <= stored && stored <= delivered + unconfirmed, "{stored} stored, {delivered} delivered");
}

/// SIGTERM while Kinesis hangs with the after-response flush's `PutRecords` in flight:
/// the drain cannot take the buffer from that flush, and the events it holds are counted
/// dropped and unconfirmed, never lost from the account. The log's account adds up, and
/// so do the metrics lines, the last of which (written after the drain) says nothing is
/// left buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_hanging_flush_accounts_for_every_event_and_the_last_metrics_line_says_so() {
    let mut s = setup_with(&[("EVENTS_FLUSH_MAX_AGE_MS", "0"), ("METRICS_INTERVAL_MS", "0")]).await;
    let first = s.api.invoke(&event("url-batch-evaluate.json"));
    check_expected("url-batch-evaluate.json", &s.api.answer(&first, LIMIT).await);
    s.ready_after(&first).await;
    // Kinesis stops answering: each PutRecords hangs far past the shutdown budget.
    s.proxy.set_hook(|target, body, forward| {
        if target == PUT_RECORDS {
            std::thread::sleep(Duration::from_secs(60));
        }
        forward(body)
    });
    let calls = s.proxy.count(PUT_RECORDS);
    let second = s.api.invoke(&event("url-batch-evaluate.json"));
    check_expected("url-batch-evaluate.json", &s.api.answer(&second, LIMIT).await);
    let deadline = tokio::time::Instant::now() + LIMIT;
    while s.proxy.count(PUT_RECORDS) == calls {
        assert!(tokio::time::Instant::now() < deadline, "no PutRecords after the second invocation");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.function.terminate();
    assert!(s.function.exit_status().await.success(), "log:\n{}", s.function.log());

    let (recorded, delivered, dropped, unconfirmed) = shutdown_account(&s.function.log());
    assert_eq!((recorded, delivered, dropped, unconfirmed), (10, 5, 5, 5), "log:\n{}", s.function.log());
    let lines = s.function.metrics_totals();
    let sum = |name: &str| lines.iter().map(|l| l[name].as_u64().unwrap_or(0)).sum::<u64>();
    let last = lines.last().unwrap_or_else(|| panic!("no metrics lines; log:\n{}", s.function.log()));
    assert_eq!(last["EventsBuffered"], 0, "{last}");
    assert_eq!((sum("EventsRecorded"), sum("EventsDelivered"), sum("EventsDropped")), (recorded, delivered, dropped));
}
