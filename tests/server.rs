//! The local server over real sockets, and the real binary: what `make run` starts.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flagfn::clock::Clock;
use serde_json::{json, Value};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn send(method: &str, url: &str, body: Option<&[u8]>, headers: &[(&str, &str)]) -> Reply {
    let agent = agent();
    let mut response = match (method, body) {
        ("GET", _) => headers.iter().fold(agent.get(url), |r, (k, v)| r.header(*k, *v)).call(),
        ("OPTIONS", _) => headers.iter().fold(agent.options(url), |r, (k, v)| r.header(*k, *v)).call(),
        ("DELETE", _) => agent.delete(url).call(),
        (_, body) => headers.iter().fold(agent.post(url), |r, (k, v)| r.header(*k, *v)).send(body.unwrap_or(b"")),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let headers =
        response.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Reply { status, headers, body }
}

/// The local server in-process on a free port; stops (and drains events) when dropped.
struct Server {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> (Server, Arc<common::app::MemorySink>) {
        Server::start_with(flagfn::server::ServerLimits::default())
    }

    fn start_with(limits: flagfn::server::ServerLimits) -> (Server, Arc<common::app::MemorySink>) {
        let (app, sink) = common::app::file_app("tests/fixtures/api_flags.json", Clock::manual());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
            let runtime = runtime.expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                addr_tx.send(listener.local_addr().expect("addr")).expect("send addr");
                let shutdown = async move {
                    let _ = stopped.await;
                };
                let flush = Duration::from_millis(50);
                flagfn::server::serve_with(app, listener, flush, shutdown, limits).await.expect("serve");
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).expect("server address");
        (Server { base: format!("http://{addr}"), stop: Some(stop), done: Some(done) }, sink)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn the_local_server_answers_like_the_function() {
    let (server, _) = Server::start();
    let reply = send("GET", &server.url("/evaluate?user_id=user-1&flag_key=on"), None, &[]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["flag_id"], "on-id");
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    assert_eq!(reply.header("content-type"), Some("application/json"));

    let body = json!({"user_id": "alice", "flag_keys": ["vip", "ghost"]}).to_string();
    let reply = send("POST", &server.url("/batch_evaluate"), Some(body.as_bytes()), &[]);
    assert_eq!(reply.json()["results"]["vip"]["reason"], "target_match");

    let reply = send("DELETE", &server.url("/evaluate"), None, &[]);
    assert_eq!((reply.status, reply.header("allow")), (405, Some("GET, HEAD, POST, OPTIONS")));
    let reply = send("GET", &server.url("/no/such/route"), None, &[]);
    assert_eq!(reply.status, 404);
    assert!(reply.json()["error"].is_string());
    let reply = send("OPTIONS", &server.url("/evaluate"), None, &[("origin", "https://shop.example")]);
    assert_eq!(reply.status, 204);
}

#[test]
fn bodies_over_256_kib_are_refused_with_413_over_the_wire() {
    let (server, _) = Server::start();
    let mut big = br#"{"user_id": "u", "flag_key": "on", "context": {"pad": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 300 * 1024));
    big.extend(br#""}}"#);
    let reply = send("POST", &server.url("/evaluate"), Some(&big), &[("content-type", "application/json")]);
    assert_eq!(reply.status, 413);
    assert!(reply.json()["error"].as_str().is_some_and(|m| m.contains("256 KiB")), "{}", reply.body);
    // Exactly at the limit is still accepted (and then fails on its content, not its size).
    let at_limit = vec![b' '; flagfn::api::MAX_BODY_BYTES];
    let reply = send("POST", &server.url("/evaluate"), Some(&at_limit), &[]);
    assert_eq!(reply.status, 400, "{}", reply.body);
}

#[test]
fn ofrep_bulk_etags_work_over_http() {
    let (server, _) = Server::start();
    let body = json!({"context": {"targetingKey": "user-1"}}).to_string();
    let url = server.url("/ofrep/v1/evaluate/flags");
    let first = send("POST", &url, Some(body.as_bytes()), &[]);
    assert_eq!(first.status, 200);
    let etag = first.header("etag").expect("ETag").to_owned();
    assert_eq!(first.header("access-control-expose-headers"), Some("ETag"));
    let second = send("POST", &url, Some(body.as_bytes()), &[("if-none-match", &etag)]);
    assert_eq!((second.status, second.body.as_str()), (304, ""));
}

#[test]
fn events_are_flushed_by_the_background_task_and_on_shutdown() {
    let (mut server, sink) = Server::start();
    for i in 0..20 {
        let body = json!({"user_id": format!("user-{i}"), "flag_key": "half"}).to_string();
        assert_eq!(send("POST", &server.url("/evaluate"), Some(body.as_bytes()), &[]).status, 200);
    }
    // The periodic flush (every 50 ms here) delivers without any request waiting on it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.events().len() < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sink.events().len(), 20);
    let body = json!({"user_id": "last", "flag_key": "on"}).to_string();
    send("POST", &server.url("/evaluate"), Some(body.as_bytes()), &[]);
    server.stop(); // graceful shutdown drains whatever the timer has not sent yet
    let events = sink.events();
    assert_eq!(events.len(), 21);
    assert_eq!(events.last().map(|e| e["user_id"].clone()), Some(json!("last")));
}

/// Runs the real binary locally (as `make run` does) with debug logging, sends requests
/// full of recognisable user data — valid ones and each kind of bad one — and checks
/// that none of it reaches the logs, while the events file does hold it.
#[test]
fn the_binary_never_logs_user_ids_or_context_values() {
    let dir = std::env::temp_dir().join(format!("flagfn-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let events_file = dir.join("events.jsonl");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flagfn"))
        .env_clear()
        .env("FLAGS_FILE", format!("{}/tests/fixtures/api_flags.json", env!("CARGO_MANIFEST_DIR")))
        .env("EVENTS_FILE", &events_file)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flagfn");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent().get(&format!("{base}/health")).call().is_err() {
        assert!(Instant::now() < deadline, "flagfn did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let secret_user = "secret-user-8f3a";
    let secret_value = "secret-value-71c2";
    let bodies = [
        json!({"user_id": secret_user, "flag_key": "half", "context": {"email": secret_value}}),
        json!({"user_id": secret_user, "flag_keys": ["on", "broken", "ghost"], "context": {"email": secret_value}}),
        json!({"user_id": [secret_user], "flag_key": "on"}),
        json!({"user_id": secret_user, "flag_key": "on", "context": secret_value}),
        json!({"user_id": format!("{secret_user}{}", "x".repeat(1100)), "flag_key": "on"}),
        json!({"flag_key": "half", "context": {"email": secret_value}}),
    ];
    for body in &bodies {
        let path = if body.get("flag_keys").is_some() { "/batch_evaluate" } else { "/evaluate" };
        send("POST", &format!("{base}{path}"), Some(body.to_string().as_bytes()), &[]);
    }
    let ofrep = json!({"context": {"targetingKey": secret_user, "email": secret_value}}).to_string();
    send("POST", &format!("{base}/ofrep/v1/evaluate/flags/broken"), Some(ofrep.as_bytes()), &[]);
    send("POST", &format!("{base}/ofrep/v1/evaluate/flags"), Some(ofrep.as_bytes()), &[]);
    // SIGTERM: graceful shutdown, which also drains the events.
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("flagfn exits");
    assert!(exit.success(), "{exit}");
    let mut logs = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut logs).expect("logs");
    child.stdout.take().expect("stdout").read_to_string(&mut logs).expect("stdout");
    assert!(logs.contains("flags file loaded"), "trace logging was on: {logs}");
    assert!(!logs.contains(secret_user), "a user id reached the logs:\n{logs}");
    assert!(!logs.contains(secret_value), "a context value reached the logs:\n{logs}");
    let events = std::fs::read_to_string(&events_file).expect("events file");
    assert!(events.contains(secret_user) && events.contains(secret_value), "the requests were evaluated: {events}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends raw bytes and reads until the server closes or `wait` passes.
fn raw(base: &str, request: &[u8], wait: Duration) -> String {
    use std::io::Write;
    let mut tcp = std::net::TcpStream::connect(base.trim_start_matches("http://")).expect("connect");
    tcp.set_read_timeout(Some(wait)).expect("timeout");
    tcp.write_all(request).expect("send");
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Clients that never finish their request head hold connections,
/// but at the cap the oldest of them is closed for a new client, and shutdown closes
/// what is left after its grace instead of waiting for them.
#[test]
fn stalled_clients_neither_lock_out_others_nor_block_shutdown() {
    use std::io::Write;
    let limits = flagfn::server::ServerLimits {
        max_connections: 16,
        header_read_timeout: Duration::from_secs(60),
        body_read_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_millis(500),
    };
    let (mut server, _) = Server::start_with(limits);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut tcp = std::net::TcpStream::connect(&addr).expect("connect");
        tcp.write_all(b"POST /evaluate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n").expect("half");
        stalled.push(tcp);
    }
    // One more is inside a request: its head is complete, its body never comes.
    let mut mid_body = std::net::TcpStream::connect(&addr).expect("connect");
    mid_body.write_all(b"POST /evaluate HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{").expect("head");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    for _ in 0..5 {
        let reply = agent.get(&server.url("/evaluate?user_id=u&flag_key=on")).call().expect("served despite stalls");
        assert_eq!(reply.status().as_u16(), 200);
    }
    let started = Instant::now();
    server.stop();
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown took {:?}", started.elapsed());
    drop((stalled, mid_body));
}

/// Responses hyper writes itself carry the security headers too.
#[test]
fn http_layer_errors_carry_the_security_headers() {
    let (server, _) = Server::start();
    let long_uri = format!("GET /health?pad={} HTTP/1.1\r\nhost: x\r\n\r\n", "x".repeat(70_000));
    let bad_header = b"GET /health HTTP/1.1\r\nhost: x\r\nbad header: y\r\n\r\n".to_vec();
    for (request, status) in [(long_uri.into_bytes(), "414"), (bad_header, "400")] {
        let reply = raw(&server.base, &request, Duration::from_secs(5));
        assert!(reply.starts_with(&format!("HTTP/1.1 {status}")), "{reply}");
        let lower = reply.to_ascii_lowercase();
        for header in ["x-content-type-options: nosniff", "x-frame-options: deny", "cache-control: no-store"] {
            assert!(lower.contains(header), "{status} lacks {header}: {reply}");
        }
    }
}

/// `HEAD` on `GET` routes; an OFREP body over 256 KiB gets the OFREP
/// error shape, as it does from Lambda.
#[test]
fn head_requests_and_oversized_ofrep_bodies() {
    let (server, _) = Server::start();
    let reply =
        raw(&server.base, b"HEAD /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", Duration::from_secs(5));
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.to_ascii_lowercase().contains("x-content-type-options: nosniff"), "{reply}");
    assert!(reply.ends_with("\r\n\r\n"), "no body: {reply}");

    let mut big = br#"{"context": {"targetingKey": "u", "pad": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 300 * 1024));
    big.extend(br#""}}"#);
    for path in ["/ofrep/v1/evaluate/flags", "/ofrep/v1/evaluate/flags/on"] {
        let reply = send("POST", &server.url(path), Some(&big), &[("content-type", "application/json")]);
        assert_eq!(reply.status, 413, "{path}");
        let body = reply.json();
        assert_eq!(body["errorCode"], "PAYLOAD_TOO_LARGE", "{path}: {body}");
        assert!(body["errorDetails"].is_string() && body.get("error").is_none(), "{path}: {body}");
    }
}

/// A connection that does not finish its request head, or sits idle
/// after a response, is closed after the header-read timeout.
#[test]
fn half_sent_and_idle_connections_are_closed_after_the_header_timeout() {
    use std::io::Write;
    let limits = flagfn::server::ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        ..flagfn::server::ServerLimits::default()
    };
    let (server, _) = Server::start_with(limits);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let requests: [&[u8]; 2] = [
        b"GET /health HTTP/1.1\r\nhost: x\r\n",
        b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n", // answered, then left idle (keep-alive)
    ];
    for request in requests {
        let mut tcp = std::net::TcpStream::connect(&addr).expect("connect");
        // Far longer than the timeout: a read that returns early means the server closed.
        tcp.set_read_timeout(Some(Duration::from_secs(20))).expect("read timeout");
        tcp.write_all(request).expect("send");
        let started = Instant::now();
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).expect("closed by the server, not timed out here");
        assert!(started.elapsed() < Duration::from_secs(10), "closed after {:?}", started.elapsed());
        let text = String::from_utf8_lossy(&out);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 200"), "{text}");
    }
}
