//! The change stream as a streaming Lambda function (`LAMBDA_ROLE=stream`): the real
//! binary under a small Runtime API emulator of its own that speaks the streaming
//! response mode (the shared one buffers responses): the response arrives chunk by chunk
//! while the invocation runs, as a function URL in `RESPONSE_STREAM` mode passes it on.
//!
//! The function watches a flags file here (its deployed source, the change manifest, is
//! looked at through the same `Changes::look`, tested with moto in tests/freshness.rs).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::body::HttpBody;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::json;

/// What the emulator saw of the one invocation.
#[derive(Default)]
struct Seen {
    handed_out: bool,
    streaming_mode: bool,
    chunks: Vec<(Instant, Vec<u8>)>,
    ended: Option<Instant>,
    errors: Vec<String>,
}

type Shared = Arc<Mutex<(Seen, u64)>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, (Seen, u64)> {
    shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `GET .../invocation/next`: the one event, then nothing (the runtime waits).
async fn next(State(shared): State<Shared>) -> Response {
    let (first, deadline_ms) = {
        let mut seen = lock(&shared);
        let first = !seen.0.handed_out;
        seen.0.handed_out = true;
        (first, seen.1)
    };
    if !first {
        std::future::pending::<()>().await;
    }
    let event = json!({
        "version": "2.0", "rawPath": "/ofrep/v1/stream", "rawQueryString": "",
        "headers": {"accept": "text/event-stream"},
        "requestContext": {"http": {"method": "GET", "path": "/ofrep/v1/stream"}},
        "isBase64Encoded": false
    });
    Response::builder()
        .header("lambda-runtime-aws-request-id", "stream-1")
        .header("lambda-runtime-deadline-ms", deadline_ms.to_string())
        .header("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:000000000000:function:stream")
        .header("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000")
        .body(Body::from(event.to_string()))
        .unwrap_or_default()
}

/// `POST .../invocation/{id}/response`: read frame by frame, each timed on arrival.
async fn response(State(shared): State<Shared>, Path(_id): Path<String>, headers: HeaderMap, body: Body) -> StatusCode {
    let streaming = headers.get("lambda-runtime-function-response-mode").is_some_and(|v| v == "streaming");
    lock(&shared).0.streaming_mode = streaming;
    let mut body = body;
    while let Some(Ok(frame)) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame.into_data() {
            lock(&shared).0.chunks.push((Instant::now(), data.to_vec()));
        }
    }
    lock(&shared).0.ended = Some(Instant::now());
    StatusCode::ACCEPTED
}

async fn error(State(shared): State<Shared>, body: String) -> StatusCode {
    lock(&shared).0.errors.push(body);
    StatusCode::ACCEPTED
}

fn emulator(shared: Shared) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let app = axum::Router::new()
                .route("/2018-06-01/runtime/invocation/next", get(next))
                .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
                .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
                .route("/2018-06-01/runtime/init/error", post(error))
                .with_state(shared);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("addr");
            let _ = axum::serve(listener, app).await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("emulator address")
}

struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_flags(path: &std::path::Path, enabled: bool, n: u64) {
    let tmp = path.with_extension("tmp");
    let text =
        format!(r#"{{"flags":[{{"key":"banner","enabled":{enabled},"rollout_percentage":100,"version":{n}}}]}}"#);
    std::fs::write(&tmp, text).expect("write");
    let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + n);
    std::fs::File::options().write(true).open(&tmp).and_then(|f| f.set_modified(at)).expect("mtime");
    std::fs::rename(&tmp, path).expect("rename");
}

fn text_of(shared: &Shared) -> String {
    lock(shared).0.chunks.iter().map(|(_, c)| String::from_utf8_lossy(c).into_owned()).collect()
}

#[test]
fn a_streaming_invocation_announces_an_edit_and_ends_before_its_deadline() {
    let dir = std::env::temp_dir().join(format!("flagfn-lambda-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let flags = dir.join("flags.json");
    write_flags(&flags, true, 1);
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64;
    let deadline_ms = now_ms + 8_000;
    let shared: Shared = Arc::new(Mutex::new((Seen::default(), deadline_ms)));
    let addr = emulator(shared.clone());
    let child = Command::new(env!("CARGO_BIN_EXE_flagfn"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "flagfn-stream")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/flagfn-stream")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "stream")
        .env("LAMBDA_ROLE", "stream")
        .env("FLAGS_FILE", &flags)
        .env("METRICS", "off")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flagfn");
    let _function = Function(child);

    let wait = |what: &str, limit: Duration, done: &dyn Fn(&str) -> bool| {
        let start = Instant::now();
        while !done(&text_of(&shared)) {
            assert!(start.elapsed() < limit, "no {what} within {limit:?}: {:?}", text_of(&shared));
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait("opening", Duration::from_secs(10), &|t| t.contains("flagfn change stream"));
    let text = text_of(&shared);
    // The prelude (status and headers as JSON), eight NUL bytes, then the stream.
    let (prelude, _) = text.split_once("\0\0\0\0\0\0\0\0").expect("prelude delimiter");
    let prelude: serde_json::Value = serde_json::from_str(prelude).expect("prelude JSON");
    assert_eq!(prelude["statusCode"], 200, "{prelude}");
    assert_eq!(prelude["headers"]["content-type"], "text/event-stream", "{prelude}");
    assert!(lock(&shared).0.streaming_mode, "the response used the streaming mode");

    let edited = Instant::now();
    write_flags(&flags, false, 2);
    wait("message", Duration::from_secs(5), &|t| t.contains("refetchEvaluation"));
    let arrived = lock(&shared).0.chunks.last().map(|(at, _)| *at).expect("a chunk");
    eprintln!(
        "flags-file edit → refetchEvaluation out of the streaming function: {} ms",
        (arrived - edited).as_millis()
    );
    assert!(text_of(&shared).contains("\"lastModified\":1700000002"), "{}", text_of(&shared));

    // The stream ends cleanly before the deadline (the client reconnects, losing nothing).
    let start = Instant::now();
    while lock(&shared).0.ended.is_none() {
        assert!(start.elapsed() < Duration::from_secs(15), "the invocation did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ended_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64;
    assert!(ended_ms < deadline_ms, "ended {} ms past the deadline", ended_ms - deadline_ms);
    assert!(lock(&shared).0.errors.is_empty(), "{:?}", lock(&shared).0.errors);
    let _ = std::fs::remove_dir_all(dir);
}

/// Reads a streamed response's body to the end (the handler, called directly).
async fn body_text(mut body: lambda_runtime::streaming::Body) -> String {
    let mut text = Vec::new();
    while let Some(Ok(frame)) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame.into_data() {
            text.extend_from_slice(&data);
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[tokio::test]
async fn other_paths_and_methods_get_a_clear_error_not_a_stream() {
    let flags = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/api_flags.json");
    let vars = [("FLAGS_FILE", flags.to_string_lossy().into_owned())];
    let config = flagfn::config::Config::from_lookup(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()))
        .expect("config");
    let store = Arc::new(flagfn::store::FileStore::open(&flags).expect("flags"));
    let app = Arc::new(flagfn::app::App::new(store, None, &config, flagfn::clock::Clock::system()));
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64 + 60_000;
    for (method, path, status, text) in [
        ("POST", "/ofrep/v1/stream", 405, "method not allowed"),
        ("GET", "/evaluate", 404, "no such route"),
        ("GET", "", 404, "no such route"),
    ] {
        let event = json!({"rawPath": path, "requestContext": {"http": {"method": method}}});
        let response = flagfn::lambda_stream::respond(app.clone(), &event, deadline);
        assert_eq!(response.metadata_prelude.status_code.as_u16(), status, "{method} {path}");
        let body = tokio::time::timeout(Duration::from_secs(5), body_text(response.stream)).await.expect("ends");
        assert!(body.contains(text), "{method} {path}: {body}");
    }
    // An event that is not a function URL event at all: the same, never a panic.
    let response = flagfn::lambda_stream::respond(app, &json!(["not", "an", "object"]), deadline);
    assert_eq!(response.metadata_prelude.status_code.as_u16(), 404);
}
