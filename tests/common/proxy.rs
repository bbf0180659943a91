//! A fault-injecting HTTP proxy for tests, put between the real AWS SDK and moto so the
//! SDK sees real failures on a real socket: rewritten requests and responses, delays,
//! 500s and closed connections.
//!
//! The proxy runs on its own thread with its own tokio runtime, so it works the same
//! under any test runtime (and from synchronous code), and it stops when dropped.
//! Upstream calls are made with blocking `ureq` on tokio's blocking pool; that is also
//! where the per-exchange [`Hook`] runs, so a hook is plain synchronous code.
//!
//! AWS signs requests (SigV4) but moto does not check signatures, so rewriting bodies
//! is fine.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Sends a (possibly rewritten) request body upstream and returns the upstream status
/// and body. Unreachable upstream → `502`.
pub type Forward<'a> = dyn FnMut(Vec<u8>) -> (u16, Vec<u8>) + 'a;

/// Decides one exchange: given the `X-Amz-Target` (e.g. `DynamoDB_20120810.BatchGetItem`,
/// empty if absent) and the request body, it may rewrite the body, call `forward`
/// (zero or more times), rewrite the answer, and returns the status and body the SDK
/// gets. State shared between the request and response halves is just local variables.
pub type Hook = dyn Fn(&str, Vec<u8>, &mut Forward<'_>) -> (u16, Vec<u8>) + Send + Sync;

/// What the proxy does to traffic besides the hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Pass everything through.
    None = 0,
    /// Answer every request `500 InternalServerError` without forwarding it.
    Http500 = 1,
    /// Close connections: new ones right after accepting, open ones on their next read
    /// or write (so an in-flight request gets no answer at all).
    CloseConnections = 2,
}

/// A running proxy. Dropping it stops it.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    upstream: String,
    agent: ureq::Agent,
    hook: Mutex<Option<Arc<Hook>>>,
    delay: Mutex<Duration>,
    /// A [`Fault`] as its discriminant, shared with every connection.
    fault: Arc<AtomicU8>,
    /// Requests seen per `X-Amz-Target`.
    counts: Mutex<HashMap<String, usize>>,
    /// A partial outage, when set: see [`Proxy::fail_half`].
    partial: Mutex<Option<Partial>>,
}

/// About half the calls of some targets fail, each call's fate picked once.
struct Partial {
    targets: Vec<String>,
    /// Calls seen, by the SDK's `amz-sdk-invocation-id` (the same for every attempt of
    /// one call), and whether each fails.
    fates: HashMap<String, bool>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Proxy {
    /// Starts a proxy on `127.0.0.1:<free port>` forwarding to `upstream`
    /// (e.g. `http://127.0.0.1:5055`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let config = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build();
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            agent: config.new_agent(),
            hook: Mutex::new(None),
            delay: Mutex::new(Duration::ZERO),
            fault: Arc::new(AtomicU8::new(Fault::None as u8)),
            counts: Mutex::new(HashMap::new()),
            partial: Mutex::new(None),
        });
        let (shutdown, stopped) = tokio::sync::oneshot::channel();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || serve(listener, state, stopped))
            .expect("proxy thread");
        Proxy { addr, shared, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// `http://127.0.0.1:<port>`: the endpoint to give the SDK.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Routes every following exchange through `hook`.
    pub fn set_hook(&self, hook: impl Fn(&str, Vec<u8>, &mut Forward<'_>) -> (u16, Vec<u8>) + Send + Sync + 'static) {
        *lock(&self.shared.hook) = Some(Arc::new(hook));
    }

    /// Back to plain forwarding.
    pub fn clear_hook(&self) {
        *lock(&self.shared.hook) = None;
    }

    /// Waits this long before handling each request.
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.shared.delay) = delay;
    }

    /// Switches the fault mode.
    pub fn set_fault(&self, fault: Fault) {
        self.shared.fault.store(fault as u8, Ordering::SeqCst);
    }

    /// A partial outage: about half the calls to `targets` (e.g.
    /// `DynamoDB_20120810.GetItem`) answer `500 InternalServerError` without being
    /// forwarded. Each call's fate is picked when its first attempt arrives, by a
    /// generator seeded with the call's number (the same calls fail in every run), and
    /// holds for the SDK's retries of it: the caller sees half its *calls* fail.
    pub fn fail_half(&self, targets: &[&str]) {
        let targets = targets.iter().map(|t| t.to_string()).collect();
        *lock(&self.shared.partial) = Some(Partial { targets, fates: HashMap::new() });
    }

    /// Ends the partial outage.
    pub fn clear_partial(&self) {
        *lock(&self.shared.partial) = None;
    }

    /// Requests seen so far with this `X-Amz-Target` (e.g. `Kinesis_20131202.PutRecords`).
    pub fn count(&self, target: &str) -> usize {
        lock(&self.shared.counts).get(target).copied().unwrap_or(0)
    }

    /// Requests seen so far, per `X-Amz-Target`.
    pub fn counts(&self) -> HashMap<String, usize> {
        lock(&self.shared.counts).clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The proxy thread: serves until told to stop, then drops every task and connection
/// without waiting for in-flight upstream calls.
fn serve(listener: std::net::TcpListener, shared: Arc<Shared>, stopped: tokio::sync::oneshot::Receiver<()>) {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("proxy runtime");
    runtime.block_on(async move {
        let inner = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let listener = GuardedListener { inner, fault: shared.fault.clone() };
        let app = axum::Router::new().fallback(exchange).with_state(shared);
        tokio::select! {
            _ = axum::serve(listener, app) => {}
            _ = stopped => {}
        }
    });
    runtime.shutdown_background();
}

/// One request: count it, apply the delay and fault, run the hook (or plain forwarding)
/// on the blocking pool.
async fn exchange(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    *lock(&shared.counts).entry(target.clone()).or_default() += 1;
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return respond(400, HeaderMap::new(), b"unreadable request body".to_vec());
    };
    let delay = *lock(&shared.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if shared.fault.load(Ordering::SeqCst) == Fault::Http500 as u8 || fails_in_partial(&shared, &target, &parts.headers)
    {
        let body = br#"{"__type":"InternalServerError","message":"injected by the test proxy"}"#.to_vec();
        return respond(500, json_headers(&parts.headers), body);
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let handled = tokio::task::spawn_blocking(move || {
        let mut upstream_headers = None;
        let mut upstream_body = None;
        let mut forward = |request_body: Vec<u8>| {
            let (status, headers, body) = call_upstream(&shared, &parts.method, &path, &parts.headers, request_body);
            upstream_headers = Some(headers);
            upstream_body = Some(body.clone());
            (status, body)
        };
        let hook = lock(&shared.hook).clone();
        let (status, body) = match hook {
            Some(hook) => hook(&target, body.to_vec(), &mut forward),
            None => forward(body.to_vec()),
        };
        let mut headers = upstream_headers.unwrap_or_else(|| json_headers(&parts.headers));
        if upstream_body.as_ref() != Some(&body) {
            // The checksum of a body the hook rewrote would be wrong.
            headers.remove("x-amz-crc32");
        }
        (status, headers, body)
    })
    .await;
    match handled {
        Ok((status, headers, body)) => respond(status, headers, body),
        Err(err) => respond(500, HeaderMap::new(), format!("proxy hook failed: {err}").into_bytes()),
    }
}

/// Whether this request belongs to a call the partial outage fails.
fn fails_in_partial(shared: &Shared, target: &str, headers: &HeaderMap) -> bool {
    let mut partial = lock(&shared.partial);
    let Some(partial) = partial.as_mut().filter(|p| p.targets.iter().any(|t| t == target)) else { return false };
    let call = headers.get("amz-sdk-invocation-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let number = partial.fates.len() as u64;
    *partial.fates.entry(call).or_insert_with(|| fastrand::Rng::with_seed(number).bool())
}

/// Headers that describe one hop, not the message, and the ones recomputed per hop.
fn is_hop_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "content-length"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "expect"
    )
}

/// Forwards one request with blocking `ureq`; any transport failure becomes a `502`.
fn call_upstream(
    shared: &Shared,
    method: &http::Method,
    path: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> (u16, HeaderMap, Vec<u8>) {
    let mut request = http::Request::builder().method(method.clone()).uri(format!("{}{path}", shared.upstream));
    for (name, value) in headers.iter().filter(|(name, _)| !is_hop_header(name)) {
        request = request.header(name, value);
    }
    let request = match request.body(body) {
        Ok(request) => request,
        Err(err) => return (502, HeaderMap::new(), format!("proxy: bad request: {err}").into_bytes()),
    };
    match shared.agent.run(request) {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            match response.body_mut().with_config().limit(256 << 20).read_to_vec() {
                Ok(body) => (status, headers, body),
                Err(err) => (502, HeaderMap::new(), format!("proxy: upstream body: {err}").into_bytes()),
            }
        }
        Err(err) => (502, HeaderMap::new(), format!("proxy: upstream unreachable: {err}").into_bytes()),
    }
}

/// `Content-Type` for an answer the proxy made up: the request's own AWS JSON flavour.
fn json_headers(request: &HeaderMap) -> HeaderMap {
    let content_type =
        request.get("content-type").cloned().unwrap_or_else(|| HeaderValue::from_static("application/x-amz-json-1.0"));
    HeaderMap::from_iter([(http::header::CONTENT_TYPE, content_type)])
}

fn respond(status: u16, headers: HeaderMap, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (name, value) in headers.iter().filter(|(name, _)| !is_hop_header(name)) {
        response.headers_mut().append(name, value.clone());
    }
    response
}

/// Accepts connections, dropping them at once while the fault is
/// [`Fault::CloseConnections`].
struct GuardedListener {
    inner: tokio::net::TcpListener,
    fault: Arc<AtomicU8>,
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    if self.fault.load(Ordering::SeqCst) != Fault::CloseConnections as u8 {
                        return (GuardedStream { inner: stream, fault: self.fault.clone() }, addr);
                    }
                    drop(stream);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that fails its next read or write once the fault is
/// [`Fault::CloseConnections`], so keep-alive connections die too.
struct GuardedStream {
    inner: tokio::net::TcpStream,
    fault: Arc<AtomicU8>,
}

impl GuardedStream {
    fn check(&self) -> io::Result<()> {
        if self.fault.load(Ordering::SeqCst) == Fault::CloseConnections as u8 {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "closed by the test proxy"));
        }
        Ok(())
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
