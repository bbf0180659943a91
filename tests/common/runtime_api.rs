//! An emulator of the Lambda Runtime API and Extensions API, for running the real binary
//! as Lambda runs it: `AWS_LAMBDA_RUNTIME_API=<address>`, then the binary's own
//! `lambda_runtime` and `lambda-extension` clients poll it. Paths and headers are the ones
//! lambda_runtime 1.5 and lambda-extension 1.1 use.
//!
//! It follows Lambda's lifecycle where the order of things matters:
//! - extensions register during init, before the runtime first asks for an invocation
//!   (later registrations are refused, as Lambda refuses them);
//! - an invocation is handed out only when the runtime *and* every registered extension
//!   are waiting for their next event — the moment Lambda would freeze the environment —
//!   and then goes to all of them at once: the payload to the runtime, an `INVOKE` event to
//!   each extension. So an invocation never starts while an extension is still busy with
//!   the previous one.
//!
//! Every step is appended, in the order it happened, to a [`Timeline`] the test reads (and
//! may add its own [`Entry::Mark`]s to, e.g. from a proxy hook): tests assert on the order of
//! entries, never on wall-clock times. Like `proxy.rs`, the emulator runs on its own thread
//! and tokio runtime, so it works under any test runtime, and stops when dropped.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};

/// One step, as the emulator (or a test's hook) saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// An extension registered during init.
    Registered { name: String, events: Vec<String> },
    /// A registration arrived after init and was refused.
    RegistrationRefused { name: String },
    /// The runtime asked for its next invocation (it is done with the previous one).
    RuntimeNext,
    /// An extension asked for its next event: it is done with the previous one, and the
    /// environment may be frozen as far as it is concerned.
    ExtensionNext,
    /// An invocation went to the runtime, and its `INVOKE` event to every extension.
    HandedOut { request_id: String },
    /// The runtime posted the invocation's response (recorded before it is acknowledged).
    Response { request_id: String, body: String },
    /// The runtime posted an invocation error.
    InvocationError { request_id: String, error_type: String, body: String },
    /// The runtime reported an init error.
    InitError { error_type: String, body: String },
    /// An extension reported an `init` or `exit` error.
    ExtensionError { kind: String, error_type: String },
    /// A request the emulator does not serve.
    Unexpected { method: String, path: String },
    /// A test's own step, e.g. a sink call a proxy saw, with the request ids it concerns.
    Mark { label: String, request_ids: Vec<String> },
}

/// The ordered log of [`Entry`]s, shared by the emulator, the test and its hooks.
#[derive(Clone)]
pub struct Timeline {
    inner: Arc<TimelineInner>,
}

struct TimelineInner {
    entries: Mutex<Vec<Entry>>,
    /// Bumped on every push, so waiters re-check without polling.
    changed: watch::Sender<usize>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline { inner: Arc::new(TimelineInner { entries: Mutex::new(Vec::new()), changed: watch::Sender::new(0) }) }
    }
}

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// Appends `entry`; returns its position.
    pub fn push(&self, entry: Entry) -> usize {
        let mut entries = lock(&self.inner.entries);
        entries.push(entry);
        let len = entries.len();
        drop(entries);
        self.inner.changed.send_replace(len);
        len - 1
    }

    /// Appends a test's own mark.
    pub fn mark(&self, label: &str, request_ids: Vec<String>) -> usize {
        self.push(Entry::Mark { label: label.to_owned(), request_ids })
    }

    /// Everything so far, in order.
    pub fn entries(&self) -> Vec<Entry> {
        lock(&self.inner.entries).clone()
    }

    /// Waits until `found` finds something in the entries; panics with the whole timeline
    /// if that takes longer than `limit` (a guard against hanging, not a measurement).
    pub async fn wait_for<T>(&self, what: &str, limit: Duration, mut found: impl FnMut(&[Entry]) -> Option<T>) -> T {
        let mut changes = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(result) = found(&lock(&self.inner.entries)) {
                return result;
            }
            if tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
                panic!("no {what} after {limit:?}; the timeline:\n{}", self.render());
            }
        }
    }

    /// The entries, one a line, numbered; response bodies and repeated ids shortened.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, entry) in lock(&self.inner.entries).iter().enumerate() {
            let line = match entry {
                Entry::Response { request_id, body } => {
                    format!("Response {{ {request_id}, {} bytes }}", body.len())
                }
                Entry::Mark { label, request_ids } => format!("{label}: {}", counted(request_ids)),
                other => format!("{other:?}"),
            };
            let _ = writeln!(out, "{i:4} {line}");
        }
        out
    }
}

/// `a a a b` as `a ×3, b`.
fn counted(ids: &[String]) -> String {
    let mut runs: Vec<(&str, usize)> = Vec::new();
    for id in ids {
        match runs.last_mut() {
            Some((last, n)) if *last == id => *n += 1,
            _ => runs.push((id, 1)),
        }
    }
    let runs: Vec<String> =
        runs.into_iter().map(|(id, n)| if n == 1 { id.to_owned() } else { format!("{id} ×{n}") }).collect();
    runs.join(", ")
}

/// How an invocation ended, as the runtime reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `POST /runtime/invocation/{id}/response`.
    Response(String),
    /// `POST /runtime/invocation/{id}/error`.
    Error { error_type: String, body: String },
}

/// A running emulator. Dropping it stops it.
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    function_name: String,
    timeline: Timeline,
    dispatch: Mutex<Dispatch>,
    next_invocation: AtomicU64,
}

/// Who is waiting for what. A `std` mutex: held only to update these fields, never across
/// an `.await`.
#[derive(Default)]
struct Dispatch {
    queue: VecDeque<Invocation>,
    /// The runtime's pending `invocation/next`, if it is waiting.
    runtime: Option<oneshot::Sender<Invocation>>,
    /// The runtime has asked for an invocation at least once: init is over.
    init_done: bool,
    extensions: Vec<ExtensionSlot>,
}

struct ExtensionSlot {
    id: String,
    /// Its pending `event/next`, if it is waiting.
    waiting: Option<oneshot::Sender<Value>>,
}

#[derive(Debug, Clone)]
struct Invocation {
    request_id: String,
    payload: String,
    deadline_ms: u64,
    function_arn: String,
    trace_id: String,
}

impl RuntimeApi {
    /// Starts an emulator for the function `function_name` on `127.0.0.1:<free port>`,
    /// recording into `timeline`.
    pub fn start(function_name: &str, timeline: Timeline) -> RuntimeApi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the runtime API");
        let addr = listener.local_addr().expect("runtime API address");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let shared = Arc::new(Shared {
            function_name: function_name.to_owned(),
            timeline,
            dispatch: Mutex::new(Dispatch::default()),
            next_invocation: AtomicU64::new(1),
        });
        let (shutdown, stopped) = oneshot::channel();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("runtime-api-{}", addr.port()))
            .spawn(move || serve(listener, state, stopped))
            .expect("runtime API thread");
        RuntimeApi { addr, shared, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// `127.0.0.1:<port>`: the value of `AWS_LAMBDA_RUNTIME_API`, as Lambda sets it.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The timeline this emulator records into.
    pub fn timeline(&self) -> &Timeline {
        &self.shared.timeline
    }

    /// Queues an invocation with `payload` (JSON text); returns its request id. It is
    /// handed out as soon as the runtime and the extensions are all waiting.
    pub fn invoke(&self, payload: &str) -> String {
        let n = self.shared.next_invocation.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let invocation = Invocation {
            request_id: format!("{:08x}-{:04x}-4000-8000-{n:012x}", std::process::id(), self.addr.port()),
            payload: payload.to_owned(),
            deadline_ms: u64::try_from((now + Duration::from_secs(60)).as_millis()).unwrap_or(u64::MAX),
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{}", self.shared.function_name),
            trace_id: format!("Root=1-{:08x}-{n:024x};Parent={n:016x};Sampled=0", now.as_secs()),
        };
        let request_id = invocation.request_id.clone();
        let mut dispatch = lock(&self.shared.dispatch);
        dispatch.queue.push_back(invocation);
        hand_out(&self.shared.timeline, &mut dispatch);
        request_id
    }

    /// Waits for the runtime's answer to `request_id` (a hang guard of `limit`).
    pub async fn answer(&self, request_id: &str, limit: Duration) -> Answer {
        let what = format!("answer to {request_id}");
        self.shared
            .timeline
            .wait_for(&what, limit, |entries| {
                entries.iter().find_map(|entry| match entry {
                    Entry::Response { request_id: id, body } if id == request_id => {
                        Some(Answer::Response(body.clone()))
                    }
                    Entry::InvocationError { request_id: id, error_type, body } if id == request_id => {
                        Some(Answer::Error { error_type: error_type.clone(), body: body.clone() })
                    }
                    _ => None,
                })
            })
            .await
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Hands the oldest queued invocation out if the runtime and every extension are waiting.
fn hand_out(timeline: &Timeline, dispatch: &mut Dispatch) {
    let everyone_waiting = dispatch.runtime.is_some() && dispatch.extensions.iter().all(|e| e.waiting.is_some());
    if !everyone_waiting || dispatch.queue.is_empty() {
        return;
    }
    let (Some(invocation), Some(runtime)) = (dispatch.queue.pop_front(), dispatch.runtime.take()) else { return };
    timeline.push(Entry::HandedOut { request_id: invocation.request_id.clone() });
    let event = json!({
        "eventType": "INVOKE",
        "deadlineMs": invocation.deadline_ms,
        "requestId": invocation.request_id,
        "invokedFunctionArn": invocation.function_arn,
        "tracing": {"type": "X-Amzn-Trace-Id", "value": invocation.trace_id},
    });
    for extension in &mut dispatch.extensions {
        if let Some(waiting) = extension.waiting.take() {
            let _ = waiting.send(event.clone());
        }
    }
    let _ = runtime.send(invocation);
}

fn serve(listener: std::net::TcpListener, shared: Arc<Shared>, stopped: oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime API runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let app = axum::Router::new()
            .route("/2020-01-01/extension/register", post(register))
            .route("/2020-01-01/extension/event/next", get(extension_next))
            .route("/2020-01-01/extension/{kind}/error", post(extension_error))
            .route("/2018-06-01/runtime/invocation/next", get(runtime_next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(invocation_response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(invocation_error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .fallback(unexpected)
            .with_state(shared);
        tokio::select! {
            _ = axum::serve(listener, app) => {}
            _ = stopped => {}
        }
    });
    runtime.shutdown_background();
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

fn respond(status: StatusCode, headers: &[(&str, String)], body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (http::HeaderName::try_from(*name), http::HeaderValue::try_from(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn accepted() -> Response {
    respond(StatusCode::ACCEPTED, &[("content-type", "application/json".into())], r#"{"status":"OK"}"#)
}

/// `POST /2020-01-01/extension/register`: only during init.
async fn register(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let name = header(&headers, "lambda-extension-name");
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let events: Vec<String> =
        request["events"].as_array().into_iter().flatten().filter_map(|e| e.as_str().map(str::to_owned)).collect();
    let mut dispatch = lock(&shared.dispatch);
    if dispatch.init_done {
        shared.timeline.push(Entry::RegistrationRefused { name });
        let body = r#"{"errorMessage":"extensions must register during init","errorType":"Extension.Forbidden"}"#;
        return respond(StatusCode::FORBIDDEN, &[], body);
    }
    let id = format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), dispatch.extensions.len() + 1);
    dispatch.extensions.push(ExtensionSlot { id: id.clone(), waiting: None });
    shared.timeline.push(Entry::Registered { name, events });
    let mut answer =
        json!({"functionName": shared.function_name, "functionVersion": "$LATEST", "handler": "bootstrap"});
    if header(&headers, "lambda-extension-accept-feature").contains("accountId") {
        answer["accountId"] = json!("123456789012");
    }
    respond(
        StatusCode::OK,
        &[("lambda-extension-identifier", id), ("content-type", "application/json".into())],
        answer.to_string(),
    )
}

/// `GET /2020-01-01/extension/event/next`: long-polls until an invocation is handed out.
async fn extension_next(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let id = header(&headers, "lambda-extension-identifier");
    let (waiting, event) = oneshot::channel();
    {
        let mut dispatch = lock(&shared.dispatch);
        let Some(slot) = dispatch.extensions.iter_mut().find(|e| e.id == id) else {
            shared.timeline.push(Entry::Unexpected { method: "GET".into(), path: format!("event/next as {id:?}") });
            return respond(StatusCode::FORBIDDEN, &[], r#"{"errorType":"Extension.UnknownExtensionIdentifier"}"#);
        };
        slot.waiting = Some(waiting);
        shared.timeline.push(Entry::ExtensionNext);
        hand_out(&shared.timeline, &mut dispatch);
    }
    match event.await {
        Ok(event) => {
            let event_id = event["requestId"].as_str().unwrap_or("").to_owned();
            let headers =
                [("lambda-extension-event-identifier", event_id), ("content-type", "application/json".into())];
            respond(StatusCode::OK, &headers, event.to_string())
        }
        Err(_) => respond(StatusCode::INTERNAL_SERVER_ERROR, &[], "emulator stopped"),
    }
}

/// `POST /2020-01-01/extension/{init|exit}/error`.
async fn extension_error(State(shared): State<Arc<Shared>>, Path(kind): Path<String>, headers: HeaderMap) -> Response {
    let error_type = header(&headers, "lambda-extension-function-error-type");
    shared.timeline.push(Entry::ExtensionError { kind, error_type });
    accepted()
}

/// `GET /2018-06-01/runtime/invocation/next`: long-polls until an invocation is handed out.
async fn runtime_next(State(shared): State<Arc<Shared>>) -> Response {
    let (waiting, invocation) = oneshot::channel();
    {
        let mut dispatch = lock(&shared.dispatch);
        dispatch.init_done = true;
        dispatch.runtime = Some(waiting);
        shared.timeline.push(Entry::RuntimeNext);
        hand_out(&shared.timeline, &mut dispatch);
    }
    match invocation.await {
        Ok(invocation) => {
            let headers = [
                ("lambda-runtime-aws-request-id", invocation.request_id),
                ("lambda-runtime-deadline-ms", invocation.deadline_ms.to_string()),
                ("lambda-runtime-invoked-function-arn", invocation.function_arn),
                ("lambda-runtime-trace-id", invocation.trace_id),
                ("content-type", "application/json".into()),
            ];
            respond(StatusCode::OK, &headers, invocation.payload)
        }
        Err(_) => respond(StatusCode::INTERNAL_SERVER_ERROR, &[], "emulator stopped"),
    }
}

/// `POST /2018-06-01/runtime/invocation/{id}/response`.
async fn invocation_response(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    let body = String::from_utf8_lossy(&body).into_owned();
    shared.timeline.push(Entry::Response { request_id: id, body });
    accepted()
}

/// `POST /2018-06-01/runtime/invocation/{id}/error`.
async fn invocation_error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let error_type = header(&headers, "lambda-runtime-function-error-type");
    let body = String::from_utf8_lossy(&body).into_owned();
    shared.timeline.push(Entry::InvocationError { request_id: id, error_type, body });
    accepted()
}

/// `POST /2018-06-01/runtime/init/error`.
async fn init_error(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let error_type = header(&headers, "lambda-runtime-function-error-type");
    let body = String::from_utf8_lossy(&body).into_owned();
    shared.timeline.push(Entry::InitError { error_type, body });
    accepted()
}

async fn unexpected(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    shared.timeline.push(Entry::Unexpected { method: method.to_string(), path: uri.to_string() });
    respond(StatusCode::NOT_FOUND, &[], "not served by the emulator")
}
