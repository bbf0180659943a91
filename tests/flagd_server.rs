//! The flagd-testbed evaluator scenarios through the OFREP routes of the real local
//! server (in-process, over real sockets): a flagd document as `FLAGS_FILE`, under the
//! default bucketing and under `FLAGD_FRACTIONAL=v3`.

mod common;
mod flagd;

use std::sync::Arc;

use flagd::cases::{self, Bucketing, Case, Outcome};
use flagfn::app::App;
use flagfn::clock::Clock;
use flagfn::config::Config;
use flagfn::store::FileStore;
use serde_json::{json, Value};

/// The local server over a flags file, stopped when dropped.
struct Server {
    base: String,
    /// Stops the server when dropped.
    _local: common::server::LocalServer,
}

impl Server {
    fn start(flags_file: &std::path::Path, fractional: &str) -> Server {
        let file = flags_file.to_string_lossy().into_owned();
        let vars = [("FLAGS_FILE", file.clone()), ("FLAGD_FRACTIONAL", fractional.to_owned())];
        let config = Config::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
            .expect("valid config");
        let store = Arc::new(FileStore::open(&file).expect("the flagd document loads"));
        let app = Arc::new(App::new(store, None, &config, Clock::system()));
        let local = common::server::LocalServer::start(app);
        Server { base: local.base.clone(), _local: local }
    }

    /// POSTs `body` to `path`: the status and the parsed answer.
    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent
            .post(&format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .send(body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
    }
}

/// The test document written where the server can read it: a file of its own for each
/// caller, as the tests run in parallel and each server watches its file.
fn document_file() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("flagfn-flagd-conformance-{}-{n}.json", std::process::id()));
    std::fs::write(&path, flagd::document::document().to_string()).expect("write the flagd document");
    path
}

/// One case over OFREP, read as an OpenFeature OFREP provider reads the answer.
fn run(server: &Server, case: &Case) -> (Outcome, Value) {
    let (status, body) =
        server.post(&format!("/ofrep/v1/evaluate/flags/{}", case.flag), &json!({"context": case.context}));
    if status != 200 {
        let code = body["errorCode"].as_str().unwrap_or("MISSING_ERROR_CODE").to_owned();
        return (case.finish(None, "ERROR", Some(&code)), Value::Null);
    }
    let reason = body["reason"].as_str().unwrap_or("MISSING_REASON").to_owned();
    (case.finish(body.get("value").cloned(), &reason, None), body["metadata"].clone())
}

fn run_all(bucketing: Bucketing, fractional: &str) {
    let path = document_file();
    let server = Server::start(&path, fractional);
    let all: Vec<Case> = cases::all().into_iter().filter(|c| c.bucketing == bucketing).collect();
    let mut failures = Vec::new();
    for case in &all {
        let (outcome, metadata) = run(&server, case);
        if let Err(panic) = std::panic::catch_unwind(|| case.check(&outcome, &metadata)) {
            failures.push(panic.downcast_ref::<String>().cloned().unwrap_or_default());
        }
    }
    drop(server);
    let _ = std::fs::remove_file(&path);
    assert!(!all.is_empty());
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), all.len(), failures.join("\n"));
}

#[test]
fn every_testbed_scenario_holds_over_ofrep_with_the_default_bucketing() {
    run_all(Bucketing::V2, "v2");
}

#[test]
fn the_fractional_v3_examples_hold_over_ofrep_with_flagd_fractional_v3() {
    run_all(Bucketing::V3, "v3");
}

#[test]
fn bulk_ofrep_answers_every_flagd_flag_as_the_single_route_does() {
    let path = document_file();
    let server = Server::start(&path, "v2");
    let context =
        json!({"context": {"targetingKey": "jon@company.com", "email": "ballmer@macrosoft.com", "version": "2.1.0"}});
    let (status, bulk) = server.post("/ofrep/v1/evaluate/flags", &context);
    assert_eq!(status, 200);
    let items = bulk["flags"].as_array().expect("flags array");
    let expected = flagd::document::document()["flags"].as_object().map_or(0, |f| f.len());
    assert_eq!(items.len(), expected);
    for item in items {
        let key = item.get("key").and_then(Value::as_str).expect("every item names its key");
        let (_, single) = server.post(&format!("/ofrep/v1/evaluate/flags/{key}"), &context);
        assert_eq!(item, &single, "{key}");
    }
    drop(server);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn the_flagd_example_answers_the_readme_requests() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flagd.json");
    let server = Server::start(&path, "v2");
    let ask = |key: &str, context: Value| {
        server.post(&format!("/ofrep/v1/evaluate/flags/{key}"), &json!({"context": context}))
    };
    let (status, staff) = ask("new-checkout", json!({"targetingKey": "user-7", "email": "ana@example.com"}));
    assert_eq!(status, 200);
    assert_eq!(
        staff,
        json!({"key": "new-checkout", "value": true, "reason": "TARGETING_MATCH", "variant": "on",
               "metadata": {"flagSetId": "shop-web", "team": "checkout", "owner": "payments"}})
    );
    let (_, customer) = ask("new-checkout", json!({"targetingKey": "user-7", "email": "bo@mail.test"}));
    assert_eq!((&customer["value"], &customer["reason"]), (&json!(false), &json!("DEFAULT")));
    let (_, banner) = ask("banner-color", json!({"targetingKey": "user-7"}));
    assert_eq!(banner["reason"], "TARGETING_MATCH");
    assert!(["#d33", "#3a3", "#36c"].contains(&banner["value"].as_str().unwrap_or("")), "{banner}");
    let (_, size) = ask("search-page-size", json!({"targetingKey": "user-7", "appVersion": "v2.5.1"}));
    assert_eq!((&size["value"], &size["variant"]), (&json!(50), &json!("large")));
    let (_, holiday) = ask("holiday-theme", json!({}));
    assert_eq!((holiday.get("value"), &holiday["reason"]), (None, &json!("DISABLED")));
    let (status, missing) = ask("no-such-flag", json!({}));
    assert_eq!((status, &missing["errorCode"]), (404, &json!("FLAG_NOT_FOUND")));
}

#[test]
fn native_routes_serve_flagd_flags_with_their_values() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flagd.json");
    let server = Server::start(&path, "v2");
    let body = json!({"user_id": "user-7", "flag_key": "search-page-size", "context": {"appVersion": "2.4.0"}});
    let (status, one) = server.post("/evaluate", &body);
    assert_eq!(status, 200);
    assert_eq!(
        (&one["value"], &one["variant"], &one["reason"], &one["enabled"]),
        (&json!(50), &json!("large"), &json!("rule_match"), &json!(true))
    );
    let body = json!({"user_id": "user-7", "flag_keys": ["holiday-theme", "new-checkout"], "context": {"email": "x@mail.test"}});
    let (status, batch) = server.post("/batch_evaluate", &body);
    assert_eq!(status, 200);
    let results = &batch["results"];
    assert_eq!(
        (&results["holiday-theme"]["reason"], &results["holiday-theme"]["value"]),
        (&json!("flag_disabled"), &Value::Null)
    );
    assert_eq!(
        (&results["new-checkout"]["value"], &results["new-checkout"]["variant"]),
        (&json!(false), &json!("off"))
    );
}

/// The README's flagd requests (`$ curl ... -d '<body>'` with the URL's path, and the
/// answer on the line after), replayed against the server over the same example.
#[test]
fn the_readmes_flagd_requests_get_the_answers_it_shows() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README.md");
    let block = readme
        .split("```console")
        .find(|b| b.contains("FLAGS_FILE=examples/flagd.json make run"))
        .and_then(|b| b.split("```").next())
        .expect("the README's flagd example");
    let lines: Vec<&str> = block.lines().collect();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flagd.json");
    let server = Server::start(&path, "v2");
    let mut checked = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("$ curl") else { continue };
        let url = rest.split_whitespace().find(|w| w.starts_with("http://")).expect("a URL");
        let path = &url[url.find("/ofrep").expect("an OFREP path")..];
        let body = lines[i + 1].split("-d '").nth(1).and_then(|b| b.strip_suffix('\'')).expect("a body");
        let expected: Value = serde_json::from_str(lines[i + 2]).expect("the answer shown");
        let (status, got) = server.post(path, &serde_json::from_str(body).expect("JSON body"));
        assert_eq!((status, got), (200, expected), "README: {line}");
        checked += 1;
    }
    assert_eq!(checked, 2, "both README requests were replayed");
}
