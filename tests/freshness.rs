//! Freshness end to end on moto: a running local server over a DynamoDB
//! table, with a 300 s cache TTL, sees a flag change within `FRESHNESS_SECONDS` + 1 s —
//! for `flagctl set` (which bumps the manifest in its transaction) and for a direct
//! table write recorded by the stream handler (driven with a DynamoDB Streams event
//! through the Lambda entry point). The bound is a correctness bound (the TTL alone
//! would take 300 s), not a speed benchmark. Also: a failed manifest read changes
//! nothing and is retried next window; concurrent manifest writers lose no change.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::KeyType;
use aws_sdk_dynamodb::Client;
use common::app::table_config;
use common::dynamo::{client, create_keyed_table, create_table, put_flags, Operations, RELAXED_STORE_TIMEOUT};
use common::moto::{shared_moto, unique_name};
use common::runtime_api::{Answer, Entry, RuntimeApi, Timeline};
use flagfn::app::App;
use flagfn::clock::Clock;
use flagfn::freshness::{DynamoDbManifest, ManifestStore, Written};
use flagfn::outcome::Subject;
use flagfn::store::DynamoDbStore;
use serde_json::{json, Value};

/// The window the servers here run with.
const FRESHNESS_SECONDS: u64 = 2;

/// Flags, audit and manifest tables on moto.
struct Tables {
    endpoint: String,
    flags: String,
    audit: String,
    manifest: String,
    client: Client,
}

impl Tables {
    async fn new(endpoint: &str) -> Tables {
        let client = client(endpoint, &Operations::default()).await;
        let (flags, audit, manifest) = (unique_name("fr-flags"), unique_name("fr-audit"), unique_name("fr-manifest"));
        create_table(&client, &flags).await;
        create_keyed_table(&client, &audit, &[("key", KeyType::Hash), ("at", KeyType::Range)]).await;
        create_keyed_table(&client, &manifest, &[("id", KeyType::Hash)]).await;
        Tables { endpoint: endpoint.to_owned(), flags, audit, manifest, client }
    }

    fn manifest_store(&self, table: &str) -> Arc<dyn ManifestStore> {
        Arc::new(DynamoDbManifest::new(self.client.clone(), table, &self.flags, RELAXED_STORE_TIMEOUT))
    }

    /// An app over the flags table with a 300 s TTL, checking `manifest_table`.
    fn app(&self, manifest_table: &str, clock: Clock) -> App {
        let every = FRESHNESS_SECONDS.to_string();
        let config = table_config(&self.flags, &[("CACHE_TTL_SECONDS", "300"), ("FRESHNESS_SECONDS", &every)]);
        let store = DynamoDbStore::with_timeout(self.client.clone(), &self.flags, RELAXED_STORE_TIMEOUT);
        App::new(Arc::new(store), None, &config, clock).with_manifest(self.manifest_store(manifest_table))
    }

    /// `flagctl args` with these tables in its environment.
    fn flagctl(&self, args: &[&str]) -> std::process::Output {
        self.flagctl_via(&self.endpoint, args)
    }

    /// `flagctl args` through `endpoint` (e.g. a proxy); it must succeed.
    fn flagctl_via(&self, endpoint: &str, args: &[&str]) -> std::process::Output {
        let output = self.flagctl_run(endpoint, &self.manifest, args);
        assert!(output.status.success(), "flagctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output
    }

    /// `flagctl args` with `manifest` as its `MANIFEST_TABLE`, whatever its outcome.
    fn flagctl_run(&self, endpoint: &str, manifest: &str, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_flagctl"))
            .args(args)
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env("FLAGS_TABLE", &self.flags)
            .env("FLAGS_AUDIT_TABLE", &self.audit)
            .env("MANIFEST_TABLE", manifest)
            .output()
            .expect("run flagctl")
    }

    async fn manifest_item(&self) -> Value {
        let key = aws_sdk_dynamodb::types::AttributeValue::S(self.flags.clone());
        let output = self.client.get_item().table_name(&self.manifest).key("id", key).consistent_read(true).send();
        let item = output.await.expect("GetItem").item.expect("a manifest item");
        serde_dynamo::from_item(item).expect("manifest as JSON")
    }
}

/// The local server in-process on a free port, over `app`; stops when dropped.
struct Server {
    base: String,
    /// Stops the server when dropped.
    _local: common::server::LocalServer,
}

impl Server {
    fn start(app: App) -> Server {
        let local = common::server::LocalServer::start(Arc::new(app));
        Server { base: local.base.clone(), _local: local }
    }

    /// The server's `enabled` for `key` (legacy route).
    fn enabled(&self, key: &str) -> bool {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{}/evaluate?user_id=user-1&flag_key={key}", self.base);
        let mut response = agent.get(&url).call().expect("GET /evaluate");
        let body = response.body_mut().read_to_string().expect("body");
        let body: Value = serde_json::from_str(&body).expect("JSON");
        body["enabled"].as_bool().unwrap_or_else(|| panic!("no `enabled`: {body}"))
    }

    /// The server's `value` for `key` (legacy route).
    fn value(&self, key: &str) -> Value {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{}/evaluate?user_id=user-1&flag_key={key}", self.base);
        let mut response = agent.get(&url).call().expect("GET /evaluate");
        let body = response.body_mut().read_to_string().expect("body");
        serde_json::from_str::<Value>(&body).expect("JSON")["value"].clone()
    }

    /// Polls `key` until it answers `enabled == want`; how long that took, or `None`
    /// if it did not within `limit`.
    fn until(&self, key: &str, want: bool, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() <= limit {
            if self.enabled(key) == want {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

fn target() -> Duration {
    Duration::from_secs(FRESHNESS_SECONDS + 1)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
}

#[test]
fn flagctl_set_flips_a_running_server_within_the_target() {
    let moto = shared_moto();
    let rt = runtime();
    let tables = rt.block_on(Tables::new(&moto.endpoint()));
    let dir = std::env::temp_dir().join(unique_name("fr-files"));
    std::fs::create_dir_all(&dir).expect("dir");
    let doc = json!({"key": "kill-me", "enabled": true, "rollout_percentage": 100});
    std::fs::write(dir.join("kill-me.json"), doc.to_string()).expect("flag file");
    tables.flagctl(&["apply", dir.to_str().expect("path")]);
    assert_eq!(rt.block_on(tables.manifest_item())["version"], 1, "apply bumps the manifest");

    let server = Server::start(tables.app(&tables.manifest, Clock::system()));
    assert!(server.enabled("kill-me"), "cached as enabled");
    tables.flagctl(&["set", "kill-me", "enabled=false", "-m", "incident"]);
    let took = server.until("kill-me", false, target());
    assert!(took.is_some(), "not flipped within FRESHNESS_SECONDS + 1 s (the TTL is 300 s)");
    eprintln!("flagctl set seen by the running server after {took:?} (FRESHNESS_SECONDS={FRESHNESS_SECONDS})");
    let manifest = rt.block_on(tables.manifest_item());
    assert_eq!(manifest["version"], 2);
    assert_eq!(manifest["changes"][1]["key"], "kill-me");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_flagd_file_applied_again_changes_a_running_server_within_the_target() {
    let moto = shared_moto();
    let rt = runtime();
    let tables = rt.block_on(Tables::new(&moto.endpoint()));
    let dir = std::env::temp_dir().join(unique_name("fr-flagd"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("set.json");
    let mut doc = json!({"flags": {"theme": {"state": "ENABLED", "variants": {"light": "L", "dark": "D"},
                                             "defaultVariant": "light"}}});
    std::fs::write(&file, doc.to_string()).expect("flagd file");
    tables.flagctl(&["apply", file.to_str().expect("path")]);

    let server = Server::start(tables.app(&tables.manifest, Clock::system()));
    assert_eq!(server.value("theme"), json!("L"), "cached");
    doc["flags"]["theme"]["defaultVariant"] = json!("dark");
    std::fs::write(&file, doc.to_string()).expect("flagd file");
    tables.flagctl(&["apply", file.to_str().expect("path"), "-m", "dark by default"]);
    let start = Instant::now();
    while server.value("theme") != json!("D") && start.elapsed() <= target() {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.value("theme"), json!("D"), "not changed within FRESHNESS_SECONDS + 1 s (the TTL is 300 s)");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_direct_table_write_flips_a_running_server_through_the_stream_handler() {
    let moto = shared_moto();
    let rt = runtime();
    let tables = rt.block_on(Tables::new(&moto.endpoint()));
    let flag = |enabled: bool| json!({"key": "direct", "enabled": enabled, "rollout_percentage": 100, "version": 1});
    rt.block_on(put_flags(&tables.client, &tables.flags, &[flag(true)]));
    let server = Server::start(tables.app(&tables.manifest, Clock::system()));
    assert!(server.enabled("direct"));

    // A write that knows nothing of the manifest: unseen, however long we wait...
    rt.block_on(put_flags(&tables.client, &tables.flags, &[flag(false)]));
    assert_eq!(server.until("direct", false, target()), None, "a direct write alone is not seen before the TTL");
    // ...until the table's stream delivers it to the function (another environment).
    let stream_env = tables.app(&tables.manifest, Clock::system());
    let event = include_str!("../events/dynamodb-stream.json").replace("\"dark-mode\"", "\"direct\"");
    let answer = rt.block_on(flagfn::lambda::invoke(&stream_env, &event, "stream-1"));
    assert_eq!(answer, r#"{"batchItemFailures":[]}"#);
    let took = server.until("direct", false, target());
    assert!(took.is_some(), "not flipped within FRESHNESS_SECONDS + 1 s");
    eprintln!(
        "stream-recorded write seen by the running server after {took:?} (FRESHNESS_SECONDS={FRESHNESS_SECONDS})"
    );
    let manifest = rt.block_on(tables.manifest_item());
    assert_eq!(manifest["version"], 3, "one version per stream record");
    assert_eq!(manifest["changes"][0]["key"], "direct");
}

#[test]
fn flagctl_retries_when_only_the_manifest_moved_under_it() {
    let moto = shared_moto();
    let rt = runtime();
    let tables = rt.block_on(Tables::new(&moto.endpoint()));
    rt.block_on(put_flags(&tables.client, &tables.flags, &[json!({"key": "k", "enabled": true, "version": 1})]));
    // Another writer (a stream batch) bumps the manifest just before flagctl's
    // transaction arrives, so its manifest condition fails the first time.
    let proxy = common::proxy::Proxy::start(&moto.endpoint());
    let (endpoint, manifest, flags) = (moto.endpoint(), tables.manifest.clone(), tables.flags.clone());
    let once = std::sync::atomic::AtomicBool::new(false);
    proxy.set_hook(move |target, body, forward| {
        if target.ends_with("TransactWriteItems") && !once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let (endpoint, manifest, flags) = (endpoint.clone(), manifest.clone(), flags.clone());
            std::thread::spawn(move || {
                runtime().block_on(async {
                    let client = client(&endpoint, &Operations::default()).await;
                    let store = DynamoDbManifest::new(client, &manifest, &flags, RELAXED_STORE_TIMEOUT);
                    store.record(&[Written { key: "other".into(), at: 1 }]).await.expect("concurrent bump");
                });
            })
            .join()
            .expect("writer");
        }
        forward(body)
    });
    tables.flagctl_via(&proxy.endpoint(), &["set", "k", "enabled=false"]);
    assert_eq!(proxy.count("DynamoDB_20120810.TransactWriteItems"), 2, "cancelled once on the manifest, then written");
    let manifest = rt.block_on(tables.manifest_item());
    assert_eq!(manifest["version"], 2, "both bumps kept");
    let keys: Vec<&str> =
        manifest["changes"].as_array().expect("list").iter().filter_map(|c| c["key"].as_str()).collect();
    assert_eq!(keys, ["other", "k"]);
}

const MANIFEST_READ: &str = "manifest GetItem";
const FLAG_READ: &str = "flag GetItem";

/// Index of the first entry at or after `from` matching `pred`.
fn find(entries: &[Entry], from: usize, pred: impl Fn(&Entry) -> bool) -> Option<usize> {
    entries.iter().skip(from).position(pred).map(|i| i + from)
}

/// The real binary in the Lambda lifecycle (Runtime + Extensions API emulator), flags
/// and manifest on moto through a proxy that marks each `GetItem` on the timeline, events
/// off: the extension is registered for freshness alone; the flag is read before the
/// response, the manifest only after it (before the environment may freeze), at most
/// once per window; a change is served from the first invocation after the check that
/// saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_lambda_the_manifest_is_read_after_the_response_once_per_window() {
    let moto = shared_moto();
    let tables = Tables::new(&moto.endpoint()).await;
    let flag = |enabled: bool| json!({"key": "dark-mode", "enabled": enabled, "rollout_percentage": 100});
    put_flags(&tables.client, &tables.flags, &[flag(true)]).await;
    let timeline = Timeline::new();
    let proxy = common::proxy::Proxy::start(&moto.endpoint());
    let (marks, manifest_table) = (timeline.clone(), tables.manifest.clone());
    proxy.set_hook(move |target, body, forward| {
        if target.ends_with(".GetItem") {
            let manifest = String::from_utf8_lossy(&body).contains(&manifest_table);
            marks.mark(if manifest { MANIFEST_READ } else { FLAG_READ }, Vec::new());
        }
        forward(body)
    });
    let api = RuntimeApi::start("flagfn", timeline.clone());
    let _function = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_flagfn"))
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", "flagfn")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("FLAGS_TABLE", &tables.flags)
            .env("MANIFEST_TABLE", &tables.manifest)
            .env("FRESHNESS_SECONDS", "2")
            .env("AWS_ENDPOINT_URL", proxy.endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the flagfn binary"),
    );
    let event = r#"{"action": "evaluate", "user_id": "u", "flag_key": "dark-mode"}"#;
    let limit = Duration::from_secs(20);
    let enabled = |answer: Answer| match answer {
        Answer::Response(body) => serde_json::from_str::<Value>(&body).expect("JSON")["enabled"] == true,
        Answer::Error { body, .. } => panic!("invocation error: {body}"),
    };
    let first = api.invoke(event);
    assert!(enabled(api.answer(&first, limit).await));
    let second = api.invoke(event);
    assert!(enabled(api.answer(&second, limit).await));
    timeline
        .wait_for("ready after the second", limit, |e| {
            let posted = find(e, 0, |x| matches!(x, Entry::Response { request_id, .. } if *request_id == second))?;
            find(e, posted, |x| matches!(x, Entry::ExtensionNext))
        })
        .await;
    let entries = timeline.entries();
    let render = timeline.render();
    let is_mark = |label: &'static str| move |e: &Entry| matches!(e, Entry::Mark { label: l, .. } if l == label);
    assert!(entries.iter().any(|e| matches!(e, Entry::Registered { events, .. } if events == &["INVOKE"])), "{render}");
    let posted =
        find(&entries, 0, |e| matches!(e, Entry::Response { request_id, .. } if *request_id == first)).expect("posted");
    let flag_read = find(&entries, 0, is_mark(FLAG_READ)).expect("flag read");
    let manifest_read = find(&entries, 0, is_mark(MANIFEST_READ)).expect("manifest read");
    let ready = find(&entries, posted, |e| matches!(e, Entry::ExtensionNext)).expect("ready");
    assert!(flag_read < posted && posted < manifest_read && manifest_read < ready, "{render}");
    assert_eq!(entries.iter().filter(|e| is_mark(MANIFEST_READ)(e)).count(), 1, "one read per window\n{render}");

    // A change, recorded in the manifest; the next check after the window sees it.
    put_flags(&tables.client, &tables.flags, &[flag(false)]).await;
    let at = flagfn::freshness::millis(std::time::SystemTime::now());
    tables.manifest_store(&tables.manifest).record(&[Written { key: "dark-mode".into(), at }]).await.expect("record");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let third = api.invoke(event);
    let third_enabled = enabled(api.answer(&third, limit).await);
    let fourth = api.invoke(event);
    assert!(
        !enabled(api.answer(&fourth, limit).await),
        "served from the invocation after the check\n{}",
        timeline.render()
    );
    // The third was answered from the cache before its check ran (no read on the request path).
    assert!(third_enabled, "{}", timeline.render());
}

/// The function process, killed (by its PID) when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn flagctl_with_an_unusable_manifest_table_writes_nothing_and_says_why() {
    let moto = shared_moto();
    let tables = Tables::new(&moto.endpoint()).await;
    put_flags(&tables.client, &tables.flags, &[json!({"key": "k", "enabled": true, "version": 1})]).await;
    let output = tables.flagctl_run(&tables.endpoint, "no-such-manifest", &["set", "k", "enabled=false"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("change manifest"), "{stderr}");
    let key = aws_sdk_dynamodb::types::AttributeValue::S("k".into());
    let item = tables.client.get_item().table_name(&tables.flags).key("key", key).send().await.expect("GetItem");
    let doc: Value = serde_dynamo::from_item(item.item.expect("flag")).expect("JSON");
    assert_eq!((doc["enabled"].as_bool(), doc["version"].as_u64()), (Some(true), Some(1)), "nothing written");
}

fn subject() -> Subject {
    Subject { user_id: Some(Arc::from("user-1")), context: Arc::default(), request_id: Arc::from("r") }
}

#[tokio::test]
async fn a_failed_manifest_read_changes_nothing_and_is_retried_next_window() {
    let moto = shared_moto();
    let tables = Tables::new(&moto.endpoint()).await;
    let flag = |enabled: bool| json!({"key": "f", "enabled": enabled, "rollout_percentage": 100});
    put_flags(&tables.client, &tables.flags, &[flag(true)]).await;
    let clock = Clock::manual();
    let missing = unique_name("fr-not-yet");
    let app = tables.app(&missing, clock.clone());
    assert!(app.evaluate_one(&subject(), "f").await.enabled);
    put_flags(&tables.client, &tables.flags, &[flag(false)]).await;
    app.after_response().await;
    assert_eq!((app.freshness.stats().checks, app.freshness.stats().read_failures), (1, 1), "no such table: a failure");
    assert!(app.evaluate_one(&subject(), "f").await.enabled, "nothing invalidated, nothing lost: still cached");
    // The manifest appears and records the change; the next window reads it.
    create_keyed_table(&tables.client, &missing, &[("id", KeyType::Hash)]).await;
    let at = flagfn::freshness::millis(clock.wall());
    tables.manifest_store(&missing).record(&[Written { key: "f".into(), at }]).await.expect("record");
    clock.advance(Duration::from_secs(1));
    app.after_response().await;
    assert_eq!(app.freshness.stats().checks, 1, "not retried within the window");
    clock.advance(Duration::from_secs(FRESHNESS_SECONDS));
    app.after_response().await;
    assert_eq!(
        app.freshness.stats(),
        flagfn::freshness::FreshnessStats { checks: 2, read_failures: 1, invalidated_keys: 1, invalidated_all: 0 }
    );
    assert!(!app.evaluate_one(&subject(), "f").await.enabled, "the change is seen");
}

/// A manifest read that hangs is cut at `STORE_TIMEOUT_MS` (a correctness bound: the
/// proxy holds the answer 30 s), counted as a failure, and changes nothing.
#[tokio::test]
async fn a_hanging_manifest_read_is_cut_at_the_store_timeout() {
    let moto = shared_moto();
    let tables = Tables::new(&moto.endpoint()).await;
    put_flags(&tables.client, &tables.flags, &[json!({"key": "f", "enabled": true, "rollout_percentage": 100})]).await;
    let proxy = common::proxy::Proxy::start(&moto.endpoint());
    let slow = client(&proxy.endpoint(), &Operations::default()).await;
    let manifest = DynamoDbManifest::new(slow, &tables.manifest, &tables.flags, Duration::from_millis(200));
    let config = table_config(&tables.flags, &[("FRESHNESS_SECONDS", "1")]);
    let store = DynamoDbStore::with_timeout(tables.client.clone(), &tables.flags, RELAXED_STORE_TIMEOUT);
    let app = App::new(Arc::new(store), None, &config, Clock::manual()).with_manifest(Arc::new(manifest));
    assert!(app.evaluate_one(&subject(), "f").await.enabled);
    proxy.set_delay(Duration::from_secs(30));
    let started = Instant::now();
    app.after_response().await;
    assert!(started.elapsed() < Duration::from_secs(10), "cut at the timeout, not after the 30 s hang");
    assert_eq!(app.freshness.stats().read_failures, 1);
    let reads = app.cache.stats().store_reads;
    assert!(app.evaluate_one(&subject(), "f").await.enabled);
    assert_eq!(app.cache.stats().store_reads, reads, "nothing invalidated");
}

/// Two stream batches racing: the second's write lands between the first's read and
/// its conditional `PutItem`, whose condition then fails; it reads again and retries, so
/// both batches are kept. (The race is provoked deterministically through a proxy:
/// moto's condition check is not atomic under truly concurrent requests — six
/// concurrent writers there once kept 15 of 18 changes — while DynamoDB's is.)
#[test]
fn a_stream_batch_that_loses_the_race_reads_again_and_keeps_both() {
    let moto = shared_moto();
    let rt = runtime();
    let tables = rt.block_on(Tables::new(&moto.endpoint()));
    let proxy = common::proxy::Proxy::start(&moto.endpoint());
    let (endpoint, manifest, flags) = (moto.endpoint(), tables.manifest.clone(), tables.flags.clone());
    let once = std::sync::atomic::AtomicBool::new(false);
    proxy.set_hook(move |target, body, forward| {
        if target.ends_with("PutItem") && !once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let (endpoint, manifest, flags) = (endpoint.clone(), manifest.clone(), flags.clone());
            std::thread::spawn(move || {
                runtime().block_on(async {
                    let client = client(&endpoint, &Operations::default()).await;
                    let other = DynamoDbManifest::new(client, &manifest, &flags, RELAXED_STORE_TIMEOUT);
                    let writes: Vec<Written> = (0..3).map(|i| Written { key: format!("b{i}"), at: 1 }).collect();
                    other.record(&writes).await.expect("the other batch");
                });
            })
            .join()
            .expect("other writer");
        }
        forward(body)
    });
    let slow = rt.block_on(client(&proxy.endpoint(), &Operations::default()));
    let first = DynamoDbManifest::new(slow, &tables.manifest, &tables.flags, RELAXED_STORE_TIMEOUT);
    let writes: Vec<Written> = (0..2).map(|i| Written { key: format!("a{i}"), at: 1 }).collect();
    let recorded = rt.block_on(first.record(&writes)).expect("recorded after a retry");
    assert_eq!(recorded.version, 5);
    assert_eq!(proxy.count("DynamoDB_20120810.PutItem"), 2, "the first conditional write failed, the retry won");
    let manifest = rt.block_on(tables.manifest_item());
    assert_eq!(manifest["version"], 5);
    let keys: Vec<&str> =
        manifest["changes"].as_array().expect("list").iter().filter_map(|c| c["key"].as_str()).collect();
    assert_eq!(keys, ["b0", "b1", "b2", "a0", "a1"], "every change kept, in the order written");
}

/// A change recorded in the manifest reaches an open change stream (docs/api.md, "Change
/// stream") well before the freshness window (60 s here) would, as a message whose id is
/// the manifest version; the re-fetch it triggers sees the change.
#[test]
fn flagctl_set_reaches_an_open_change_stream_as_the_manifest_version() {
    use std::io::{Read, Write};
    let moto = shared_moto();
    let rt = runtime();
    let tables = rt.block_on(Tables::new(&moto.endpoint()));
    let dir = std::env::temp_dir().join(unique_name("fr-stream"));
    std::fs::create_dir_all(&dir).expect("dir");
    let doc = json!({"key": "streamed", "enabled": true, "rollout_percentage": 100});
    std::fs::write(dir.join("streamed.json"), doc.to_string()).expect("flag file");
    tables.flagctl(&["apply", dir.to_str().expect("path")]);
    let config = table_config(&tables.flags, &[("CACHE_TTL_SECONDS", "300"), ("FRESHNESS_SECONDS", "60")]);
    let store = DynamoDbStore::with_timeout(tables.client.clone(), &tables.flags, RELAXED_STORE_TIMEOUT);
    let app = App::new(Arc::new(store), None, &config, Clock::system())
        .with_manifest(tables.manifest_store(&tables.manifest));
    let server = Server::start(app);
    assert!(server.enabled("streamed"));

    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    stream.write_all(b"GET /ofrep/v1/stream HTTP/1.1\r\nHost: test\r\n\r\n").expect("send");
    stream.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    let mut text = String::new();
    let mut read_until = |text: &mut String, want: &str, limit: Duration| {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while !text.contains(want) && Instant::now() < deadline {
            if let Ok(n) = stream.read(&mut buf) {
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
        text.contains(want)
    };
    assert!(read_until(&mut text, "flagfn change stream", Duration::from_secs(10)), "{text}");
    let set = Instant::now();
    tables.flagctl(&["set", "streamed", "enabled=false", "-m", "incident"]);
    // (A server learns a table's version at its first manifest read, and says so: `m1`.)
    assert!(read_until(&mut text, r#""etag":"m2""#, Duration::from_secs(20)), "no message for m2: {text}");
    eprintln!("flagctl set → refetchEvaluation on the stream after {} ms (window 60 s)", set.elapsed().as_millis());
    assert!(text.contains("id: m2\n"), "the id is the manifest version: {text}");
    assert!(!server.enabled("streamed"), "the re-fetch after the message sees the change");
    let _ = std::fs::remove_dir_all(dir);
}

/// In Lambda (no stream served there), a bulk re-fetch naming a newer manifest version
/// (`flagConfigEtag=m2`, as a stream served elsewhere announces it) reads the manifest
/// before answering, so it sees the change at once rather than after the window (60 s
/// here) and the TTL (300 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn in_lambda_a_refetch_naming_a_newer_version_reads_the_manifest_first() {
    let moto = shared_moto();
    let tables = Tables::new(&moto.endpoint()).await;
    let dir = std::env::temp_dir().join(unique_name("fr-refetch"));
    std::fs::create_dir_all(&dir).expect("dir");
    let doc = json!({"key": "refetched", "enabled": true, "rollout_percentage": 100});
    std::fs::write(dir.join("refetched.json"), doc.to_string()).expect("flag file");
    tables.flagctl(&["apply", dir.to_str().expect("path")]);
    let config = table_config(&tables.flags, &[("CACHE_TTL_SECONDS", "300"), ("FRESHNESS_SECONDS", "60")]);
    let store = DynamoDbStore::with_timeout(tables.client.clone(), &tables.flags, RELAXED_STORE_TIMEOUT);
    let app = App::new(Arc::new(store), None, &config, Clock::system())
        .with_manifest(tables.manifest_store(&tables.manifest));
    let event = |query: &str| {
        let text = include_str!("../events/url-evaluate-post.json");
        let mut event: Value = serde_json::from_str(text).expect("event");
        event["rawPath"] = json!("/ofrep/v1/evaluate/flags");
        event["requestContext"]["http"]["path"] = json!("/ofrep/v1/evaluate/flags");
        event["rawQueryString"] = json!(query);
        event["body"] = json!(r#"{"context":{"targetingKey":"user-1"}}"#);
        event.to_string()
    };
    let value = |answer: String| -> Value {
        let answer: Value = serde_json::from_str(&answer).expect("answer");
        let body: Value = serde_json::from_str(answer["body"].as_str().expect("body")).expect("body JSON");
        assert!(body.get("eventStreams").is_none(), "Lambda serves no stream: {body}");
        body["flags"][0]["value"].clone()
    };
    app.after_response().await; // the first manifest read: version 1
    assert_eq!(value(flagfn::lambda::invoke(&app, &event(""), "r1").await), json!(true));
    tables.flagctl(&["set", "refetched", "enabled=false", "-m", "incident"]);
    // An old version changes nothing (the window and the TTL rule)...
    assert_eq!(value(flagfn::lambda::invoke(&app, &event("flagConfigEtag=m1"), "r2").await), json!(true));
    // ...the announced one is looked for first.
    let started = Instant::now();
    assert_eq!(value(flagfn::lambda::invoke(&app, &event("flagConfigEtag=m2"), "r3").await), json!(false));
    eprintln!("re-fetch naming m2 answered with the change in {} ms", started.elapsed().as_millis());
    let _ = std::fs::remove_dir_all(dir);
}
