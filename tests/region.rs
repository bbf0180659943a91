//! Every region (docs/operations.md, "Every region"), on two moto servers standing in for
//! two AWS regions: `us-east-1`, the home (write) region, and `eu-west-1`, which holds
//! replicas. A replication stand-in copies new, changed and deleted items of the flags
//! and manifest tables from the home region to the other, as global tables do (it polls
//! with consistent scans; it can be paused). Checked here:
//!
//! - `flagctl apply` / `set` in the home region reaches the real `flagfn` binary serving
//!   from the other region within `FRESHNESS_SECONDS` plus the replication delay (the
//!   cache TTL is 300 s), and not before the change is replicated — the server reads
//!   only its own region; and when the manifest arrives before the flag it announces,
//!   the re-read a window later still finds the flag;
//! - when its region's DynamoDB fails, that server keeps answering from its cache
//!   (stale-if-error; the outage rules themselves are tested in `tests/cache_dynamodb.rs`
//!   and `tests/faults.rs`);
//! - `flagctl` writes only in `FLAGCTL_WRITE_REGION`, refusing before any call
//!   elsewhere, and an unreachable or hanging home region fails fast with a message
//!   that says writes were refused and nothing was written, never the SDK's error text.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, KeyType};
use aws_sdk_dynamodb::Client;
use common::dynamo::create_keyed_table;
use common::moto::{unique_name, Moto};
use serde_json::{json, Value};

const HOME: &str = "us-east-1";
const OTHER: &str = "eu-west-1";
/// The window the server runs with.
const FRESHNESS_SECONDS: u64 = 2;

type Item = std::collections::HashMap<String, AttributeValue>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
}

/// A client of `endpoint` signing for `region` (moto keeps each region's tables apart,
/// as AWS does; here each region also has its own server, so one can be stopped).
async fn client(endpoint: &str, region: &str) -> Client {
    use aws_config::Region;
    let config = flagfn::aws::loader()
        .endpoint_url(endpoint)
        .region(Region::new(region.to_owned()))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "region-tests"))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .load()
        .await;
    Client::new(&config)
}

async fn scan(client: &Client, table: &str) -> Result<Vec<Item>, String> {
    let mut pages = client.scan().table_name(table).consistent_read(true).into_paginator().send();
    let mut items = Vec::new();
    while let Some(page) = pages.try_next().await.map_err(|e| e.to_string())? {
        items.extend(page.items.unwrap_or_default());
    }
    Ok(items)
}

/// One region: its moto, a client, and the table names (the same in every region, as
/// a global table's replicas are).
struct Region {
    moto: Moto,
    name: &'static str,
    client: Client,
}

/// The three tables of a deployment, created in both regions.
struct Deployment {
    home: Region,
    other: Region,
    flags: String,
    audit: String,
    manifest: String,
}

impl Deployment {
    fn new(rt: &tokio::runtime::Runtime) -> Deployment {
        let (flags, audit, manifest) = (unique_name("rg-flags"), unique_name("rg-audit"), unique_name("rg-manifest"));
        let region = |name: &'static str| {
            let moto = Moto::start();
            let client = rt.block_on(client(&moto.endpoint(), name));
            rt.block_on(async {
                create_keyed_table(&client, &flags, &[("key", KeyType::Hash)]).await;
                create_keyed_table(&client, &audit, &[("key", KeyType::Hash), ("at", KeyType::Range)]).await;
                create_keyed_table(&client, &manifest, &[("id", KeyType::Hash)]).await;
            });
            Region { moto, name, client }
        };
        Deployment { home: region(HOME), other: region(OTHER), flags, audit, manifest }
    }

    /// `flagctl args` pointed at `region` (through `endpoint`), the write region being
    /// the home region.
    fn flagctl_at(&self, region: &str, endpoint: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_flagctl"))
            .args(args)
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", region)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env("FLAGS_TABLE", &self.flags)
            .env("FLAGS_AUDIT_TABLE", &self.audit)
            .env("MANIFEST_TABLE", &self.manifest)
            .env("FLAGCTL_WRITE_REGION", HOME)
            .output()
            .expect("run flagctl")
    }

    /// `flagctl args` in the home region; it must succeed.
    fn flagctl(&self, args: &[&str]) {
        let output = self.flagctl_at(HOME, &self.home.moto.endpoint(), args);
        assert!(output.status.success(), "flagctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// The flag `key` as the other region's replica holds it (JSON), if it does.
    async fn replica_flag(&self, key: &str) -> Option<Value> {
        let get = self.other.client.get_item().table_name(&self.flags).key("key", AttributeValue::S(key.into()));
        let item = get.consistent_read(true).send().await.expect("GetItem").item?;
        Some(serde_dynamo::from_item(item).expect("JSON"))
    }

    /// The other region's manifest version.
    async fn replica_manifest_version(&self) -> Option<u64> {
        let get = self.other.client.get_item().table_name(&self.manifest);
        let item = get.key("id", AttributeValue::S(self.flags.clone())).send().await.expect("GetItem").item?;
        serde_dynamo::from_item::<_, Value>(item).expect("JSON")["version"].as_u64()
    }
}

/// The replication stand-in: every 100 ms, copies new and changed items of the flags
/// and manifest tables from the home region to the other, and deletes there what the
/// home region no longer has. Home-to-other only: in these tests every write is made in
/// the home region, as flagctl's rule has it.
struct Replicator {
    /// Per table (flags, manifest): whether its replication is held back.
    paused: Arc<[AtomicBool; 2]>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Replicator {
    fn start(deployment: &Deployment) -> Replicator {
        let (paused, stop) =
            (Arc::new([AtomicBool::new(false), AtomicBool::new(false)]), Arc::new(AtomicBool::new(false)));
        let (from, to) = (deployment.home.client.clone(), deployment.other.client.clone());
        let tables = [(deployment.flags.clone(), "key"), (deployment.manifest.clone(), "id")];
        let (paused_, stop_) = (paused.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            runtime().block_on(async {
                while !stop_.load(Ordering::SeqCst) {
                    for ((table, key), paused) in tables.iter().zip(paused_.iter()) {
                        if !paused.load(Ordering::SeqCst) {
                            // A region down is a replication delay, as in AWS.
                            let _ = replicate(&from, &to, table, key).await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        Replicator { paused, stop, thread: Some(thread) }
    }

    /// Holds back both tables.
    fn pause(&self) {
        self.paused.iter().for_each(|p| p.store(true, Ordering::SeqCst));
    }

    /// Replicates both tables again.
    fn resume(&self) {
        self.paused.iter().for_each(|p| p.store(false, Ordering::SeqCst));
    }

    /// Replicates the manifest only: global tables replicate items independently, so
    /// the manifest may arrive before the flag it announces.
    fn resume_manifest_only(&self) {
        self.paused[1].store(false, Ordering::SeqCst);
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn replicate(from: &Client, to: &Client, table: &str, key: &str) -> Result<(), String> {
    let source = scan(from, table).await?;
    let target = scan(to, table).await?;
    for item in &source {
        if !target.contains(item) {
            to.put_item().table_name(table).set_item(Some(item.clone())).send().await.map_err(|e| e.to_string())?;
        }
    }
    for item in target {
        let id = item.get(key).cloned();
        if let Some(id) = id.filter(|id| !source.iter().any(|s| s.get(key) == Some(id))) {
            to.delete_item().table_name(table).key(key, id).send().await.map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The real `flagfn` binary as a local server in `region`, over that region's tables;
/// killed (by its PID) when dropped.
struct FlagServer {
    child: Child,
    base: String,
}

impl FlagServer {
    fn start(deployment: &Deployment, region: &Region, ttl_seconds: &str) -> FlagServer {
        FlagServer::start_via(deployment, region, &region.moto.endpoint(), ttl_seconds)
    }

    /// The same, calling DynamoDB through `endpoint` (a proxy in front of the region).
    fn start_via(deployment: &Deployment, region: &Region, endpoint: &str, ttl_seconds: &str) -> FlagServer {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_flagfn"))
            .env_clear()
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("FLAGS_TABLE", &deployment.flags)
            .env("MANIFEST_TABLE", &deployment.manifest)
            .env("FRESHNESS_SECONDS", FRESHNESS_SECONDS.to_string())
            .env("CACHE_TTL_SECONDS", ttl_seconds)
            .env("STALE_IF_ERROR_SECONDS", "3600")
            .env("STORE_TIMEOUT_MS", "5000")
            .env("METRICS", "off")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_REGION", region.name)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the flagfn binary");
        let server = FlagServer { child, base: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(&format!("{}/health", server.base)).call().is_err() {
            assert!(Instant::now() < deadline, "flagfn did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The legacy route's answer for `key`.
    fn evaluate(&self, key: &str) -> Value {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{}/evaluate?user_id=user-1&flag_key={key}", self.base);
        let mut response = agent.get(&url).call().expect("GET /evaluate");
        let body = response.body_mut().read_to_string().expect("body");
        serde_json::from_str(&body).expect("JSON")
    }

    fn enabled(&self, key: &str) -> bool {
        let answer = self.evaluate(key);
        answer["enabled"].as_bool().unwrap_or_else(|| panic!("no `enabled`: {answer}"))
    }
}

impl Drop for FlagServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// Waits (generously) until `done`, panicking with `what` after 30 s.
fn eventually(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(30), "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// A flags directory with one flag, `key`, enabled.
fn flags_dir(key: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique_name("rg-files"));
    std::fs::create_dir_all(&dir).expect("dir");
    let doc = json!({"key": key, "enabled": true, "rollout_percentage": 100});
    std::fs::write(dir.join(format!("{key}.json")), doc.to_string()).expect("flag file");
    dir
}

#[test]
fn a_change_written_in_the_home_region_reaches_a_server_in_another_region() {
    let rt = runtime();
    let deployment = Deployment::new(&rt);
    let replicator = Replicator::start(&deployment);
    let dir = flags_dir("kill-me");
    deployment.flagctl(&["apply", dir.to_str().expect("path"), "-m", "import"]);
    eventually("the flag replicated", || rt.block_on(deployment.replica_flag("kill-me")).is_some());

    let server = FlagServer::start(&deployment, &deployment.other, "300");
    assert!(server.enabled("kill-me"), "cached as enabled");

    // Replication held back: the change is in the home region only, and the server,
    // reading its own region, does not see it, however many windows pass.
    replicator.pause();
    deployment.flagctl(&["set", "kill-me", "enabled=false", "-m", "incident"]);
    std::thread::sleep(Duration::from_secs(FRESHNESS_SECONDS + 1));
    assert!(server.enabled("kill-me"), "the other region has not received the change yet");
    assert_eq!(rt.block_on(deployment.replica_flag("kill-me")).expect("flag")["enabled"], json!(true));

    // Replication resumes: the flag and the manifest arrive, and the server flips within
    // the window plus the replication delay, long before the 300 s TTL.
    replicator.resume();
    let replicated =
        eventually("the change replicated", || rt.block_on(deployment.replica_manifest_version()) == Some(2));
    let flipped = eventually("the server in the other region flipped", || !server.enabled("kill-me"));
    eprintln!("replicated after {replicated:?}; the server in {OTHER} answered the change {flipped:?} later");
    assert!(
        flipped <= Duration::from_secs(FRESHNESS_SECONDS + 8),
        "seen {flipped:?} after replication: not the manifest (window {FRESHNESS_SECONDS} s) but something slower"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The manifest replicated ahead of the flag it announces (global tables replicate items
/// independently): the server's check reads the new manifest and re-reads the flag,
/// which has not arrived; the re-read one window later finds it (the TTL is 300 s, so
/// nothing else could). A proxy in front of the other region makes the order certain:
/// it tells when the check has seen the manifest and the flag has been re-read, and
/// holds the next manifest read until the flag has arrived.
#[test]
fn a_manifest_replicated_before_its_flag_is_caught_up_a_window_later() {
    let rt = runtime();
    let deployment = Deployment::new(&rt);
    let replicator = Replicator::start(&deployment);
    let dir = flags_dir("lagging");
    deployment.flagctl(&["apply", dir.to_str().expect("path")]);
    eventually("the flag replicated", || rt.block_on(deployment.replica_flag("lagging")).is_some());

    let proxy = common::proxy::Proxy::start(&deployment.other.moto.endpoint());
    let (seen, reread, arrived) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (seen_, reread_, arrived_, manifest) =
        (seen.clone(), reread.clone(), arrived.clone(), deployment.manifest.clone());
    proxy.set_hook(move |_target, body, forward| {
        let of_manifest = String::from_utf8_lossy(&body).contains(&manifest);
        if of_manifest && seen_.load(Ordering::SeqCst) {
            // The next check: only once the flag is there (bounded, under STORE_TIMEOUT_MS).
            let deadline = Instant::now() + Duration::from_secs(4);
            while !arrived_.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let (status, answer) = forward(body);
        if of_manifest {
            let item: Value = serde_json::from_slice(&answer).unwrap_or_default();
            if item["Item"]["version"]["N"] == json!("2") {
                seen_.store(true, Ordering::SeqCst);
            }
        } else if seen_.load(Ordering::SeqCst) && !arrived_.load(Ordering::SeqCst) {
            reread_.store(true, Ordering::SeqCst);
        }
        (status, answer)
    });
    let server = FlagServer::start_via(&deployment, &deployment.other, &proxy.endpoint(), "300");
    assert!(server.enabled("lagging"));

    replicator.pause();
    deployment.flagctl(&["set", "lagging", "enabled=false"]);
    replicator.resume_manifest_only();
    eventually("a check read the new manifest and re-read the flag", || reread.load(Ordering::SeqCst));
    assert!(server.enabled("lagging"), "the flag itself has not arrived");
    replicator.resume();
    eventually("the flag replicated", || {
        rt.block_on(deployment.replica_flag("lagging")).is_some_and(|f| f["enabled"] == json!(false))
    });
    arrived.store(true, Ordering::SeqCst);
    let flipped =
        eventually("the server caught up (else only the 300 s TTL would bring it)", || !server.enabled("lagging"));
    eprintln!("the flag arrived after its manifest; the server answered it {flipped:?} later");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_region_failure_serves_stale_there_and_flagctl_refuses_writes_with_a_clear_message() {
    let rt = runtime();
    let mut deployment = Deployment::new(&rt);
    let replicator = Replicator::start(&deployment);
    let dir = flags_dir("steady");
    deployment.flagctl(&["apply", dir.to_str().expect("path")]);
    eventually("the flag replicated", || rt.block_on(deployment.replica_flag("steady")).is_some());
    let server = FlagServer::start(&deployment, &deployment.other, "1");
    assert_ne!(server.evaluate("steady")["stale"], json!(true), "fresh while the region answers");

    // The other region's DynamoDB fails: past the 1 s TTL, the cached flag is still
    // served, marked stale.
    deployment.other.moto.stop();
    std::thread::sleep(Duration::from_millis(1500));
    let answer = server.evaluate("steady");
    assert_eq!((&answer["enabled"], &answer["stale"]), (&json!(true), &json!(true)), "{answer}");

    // The home region fails: writes are refused at once, saying so, in flagctl's words.
    drop(replicator);
    deployment.home.moto.stop();
    let started = Instant::now();
    let output = deployment.flagctl_at(HOME, &deployment.home.moto.endpoint(), &["set", "steady", "enabled=false"]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "region us-east-1 unreachable (connection failed, GetItem): writes refused; nothing was written; \
             flags keep serving from replicas and caches"
        ),
        "{stderr}"
    );
    for leaked in ["dispatch failure", "Connection refused", "io error", "127.0.0.1", "hyper"] {
        assert!(!stderr.contains(leaked), "the SDK's error text leaked ({leaked}): {stderr}");
    }
    assert!(took < Duration::from_secs(30), "refused after {took:?}: a dead region must fail fast");
    // A read command says it read nothing (and is no write refusal).
    let output = deployment.flagctl_at(HOME, &deployment.home.moto.endpoint(), &["list"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("region us-east-1 unreachable (connection failed, Scan): nothing was read"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn flagctl_writes_only_in_the_write_region() {
    let rt = runtime();
    let deployment = Deployment::new(&rt);
    let replicator = Replicator::start(&deployment);
    let dir = flags_dir("home-only");
    deployment.flagctl(&["apply", dir.to_str().expect("path")]);
    eventually("the flag replicated", || rt.block_on(deployment.replica_flag("home-only")).is_some());
    drop(replicator);

    // Pointed at the other region: refused before any call. (Through a closed port, so
    // any call would have failed as "unreachable" instead.)
    let closed = format!("http://127.0.0.1:{}", free_port());
    for args in [&["set", "home-only", "enabled=false"][..], &["apply", dir.to_str().expect("path"), "--prune"][..]] {
        let output = deployment.flagctl_at(OTHER, &closed, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("flags are written in us-east-1 only (FLAGCTL_WRITE_REGION), and this is eu-west-1: writes refused; nothing was written"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("AWS_REGION=us-east-1"), "{stderr}");
    }
    // The replica is untouched, and reads there still work (they are only as fresh as
    // replication).
    assert_eq!(rt.block_on(deployment.replica_flag("home-only")).expect("flag")["enabled"], json!(true));
    let output = deployment.flagctl_at(OTHER, &deployment.other.moto.endpoint(), &["get", "home-only"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = deployment.flagctl_at(
        OTHER,
        &deployment.other.moto.endpoint(),
        &["apply", "--dry-run", dir.to_str().expect("path")],
    );
    assert!(output.status.success(), "a dry run writes nothing: {}", String::from_utf8_lossy(&output.stderr));
    let _ = std::fs::remove_dir_all(dir);
}

/// A home region that accepts connections but never answers (a proxy holding every
/// answer for 10 minutes): flagctl gives up within its timeouts (10 s an attempt, 30 s
/// the call) and says so — never a hang.
#[test]
fn a_hanging_home_region_fails_within_the_timeouts() {
    let rt = runtime();
    let deployment = Deployment::new(&rt);
    rt.block_on(common::dynamo::put_flags(
        &deployment.home.client,
        &deployment.flags,
        &[json!({"key": "k", "enabled": true, "version": 1})],
    ));
    let proxy = common::proxy::Proxy::start(&deployment.home.moto.endpoint());
    proxy.set_delay(Duration::from_secs(600));
    let started = Instant::now();
    let output = deployment.flagctl_at(HOME, &proxy.endpoint(), &["set", "k", "enabled=false"]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "region us-east-1 unreachable (no answer within the timeout, GetItem): writes refused; nothing was written"
        ),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(60), "gave up after {took:?}");
    eprintln!("a hanging home region: flagctl gave up after {took:?}");
}
