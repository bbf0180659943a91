//! Running outside Lambda: the same routes as an HTTP server on `BIND_ADDR`.
//!
//! axum only carries bytes here: every request is turned into an [`api::Request`] and
//! answered by [`api::handle`], exactly as in Lambda. Events are flushed by a background
//! task on a short interval and drained on Ctrl-C / SIGTERM. With a change manifest
//! (`MANIFEST_TABLE`), another background task runs the freshness check (docs/operations.md).
//!
//! Connections are accepted by [`connections`] (hyper's HTTP/1 with timeouts, a
//! connection cap and a bounded graceful shutdown; see [`ServerLimits`]).
//!
//! Performance (`make loadtest`): a flush serialises every buffered event at once, so it
//! runs on a thread of its own rather than on a runtime worker, where it would stall
//! every connection that worker serves, and it starts early once a few hundred events
//! are waiting, so each burst stays short (the interval is the longest an event waits);
//! there is no router (every path goes to [`api::handle`]); sockets are `TCP_NODELAY`;
//! the fixed response headers are built once.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, HttpBody as _};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::api::{self, BodyEncoding, Method, Request, Response, MAX_BODY_BYTES};
use crate::app::App;

mod connections;
mod sse;

pub use connections::ServerLimits;

/// How long shutdown may spend sending buffered events.
const DRAIN_BUDGET: Duration = Duration::from_secs(5);

/// Serves until `shutdown` resolves, then drains the event buffer and logs its account.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    flush_interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(app, listener, flush_interval, shutdown, ServerLimits::default()).await
}

/// [`serve`] with other connection limits (tests use small ones).
pub async fn serve_with(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    flush_interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServerLimits,
) -> std::io::Result<()> {
    let flusher = Flusher::start(app.clone(), flush_interval)?;
    let freshness = app.freshness.enabled().then(|| tokio::spawn(check_freshness_periodically(app.clone())));
    // The first version is known before the first request (bulk answers carry it).
    app.changes.look(&app.cache, &app.freshness, app.clock.wall(), false).await;
    let (changes, shutdown) = watch_changes(app.clone(), shutdown);
    connections::serve_connections(app.clone(), listener, limits, shutdown).await;
    changes.abort();
    if let Some(task) = freshness {
        task.abort();
    }
    // A flush the stop cuts short puts back what it had not sent (and counts a call it
    // cut as dropped): the shutdown account below then covers every recorded event.
    flusher.stop().await;
    // The same last word as in Lambda: drain within the budget, count what is left as
    // dropped, log `delivered + dropped == recorded`, then the final metrics line.
    app.events.shutdown(DRAIN_BUDGET).await;
    app.emit_metrics(true);
    Ok(())
}

/// The periodic flush, on a dedicated thread driving the server's runtime
/// ([`tokio::runtime::Handle::block_on`]): the serialisation of a whole interval's events
/// is CPU work that must not occupy a worker, and I/O and timers stay on the one runtime
/// (so a Kinesis client's connections are shared with the final drain).
struct Flusher {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Flusher {
    fn start(app: Arc<App>, every: Duration) -> std::io::Result<Flusher> {
        let runtime = tokio::runtime::Handle::current();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("flagfn-events".into()).spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = stopped => {}
                    () = flush_periodically(app, every) => {}
                }
            });
        })?;
        Ok(Flusher { stop, thread })
    }

    /// Stops the loop (cancelling a flush under way at its next await: the flush returns
    /// what it held to the buffer, see `events::send::Taken`) and waits for the thread
    /// without blocking the runtime.
    async fn stop(self) {
        let _ = self.stop.send(());
        let thread = self.thread;
        if let Ok(Err(_)) = tokio::task::spawn_blocking(move || thread.join()).await {
            tracing::error!("the event flush thread panicked");
        }
    }
}

/// A flush starts once `every` has passed since the last one, or earlier when this many
/// events are waiting: serialising events is a CPU burst, and small bursts keep it from
/// holding a core (and the requests behind it) for long under load.
const FLUSH_EARLY_AT: usize = 256;
/// How often the buffer is looked at for [`FLUSH_EARLY_AT`] while events are coming in...
const FLUSH_POLL: Duration = Duration::from_millis(5);
/// ...and while none are (an idle server wakes rarely).
const FLUSH_POLL_IDLE: Duration = Duration::from_millis(50);

async fn flush_periodically(app: Arc<App>, every: Duration) {
    let mut last = tokio::time::Instant::now();
    let mut poll = FLUSH_POLL_IDLE;
    // Early flushes only while the sink takes everything: a failing sink is retried at
    // the configured interval, not every poll.
    let mut sink_healthy = true;
    loop {
        let next_poll = tokio::time::Instant::now() + poll;
        tokio::time::sleep_until(last.checked_add(every).map_or(next_poll, |due| due.min(next_poll))).await;
        let buffered = app.events.stats().buffered;
        if last.elapsed() >= every || (sink_healthy && buffered >= FLUSH_EARLY_AT) {
            last = tokio::time::Instant::now();
            sink_healthy = app.events.flush().await.kept == 0;
            app.emit_metrics(false);
        }
        poll = if buffered == 0 { FLUSH_POLL_IDLE } else { FLUSH_POLL };
    }
}

/// The local server's freshness check, off every request's path: it looks
/// ten times per window whether a check is due, so a change is seen within one window
/// plus a tenth (and the read), while [`App::check_freshness`] itself keeps it to one
/// manifest read per window.
async fn check_freshness_periodically(app: Arc<App>) {
    let tick = (app.freshness.every() / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        app.check_freshness().await;
    }
}

/// The change streams' watcher ([`crate::changes::Changes::watch`]), and `shutdown`
/// extended to end every open stream first, so streams never hold up the drain.
fn watch_changes(
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (tokio::task::JoinHandle<()>, impl Future<Output = ()> + Send + 'static) {
    app.changes.serve();
    let watcher = app.clone();
    let task =
        tokio::spawn(async move { watcher.changes.watch(&watcher.cache, &watcher.freshness, &watcher.clock).await });
    let shutdown = async move {
        shutdown.await;
        app.changes.close_streams();
    };
    (task, shutdown)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

async fn dispatch(app: Arc<App>, request: axum::extract::Request, body_timeout: Duration) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    if parts.uri.path() == api::refetch::STREAM_PATH && app.changes.served() {
        return sse::respond(&app, parts.method.as_str(), parts.uri.query().unwrap_or(""), &parts.headers);
    }
    let body = if body.is_end_stream() {
        axum::body::Bytes::new() // a GET: nothing to collect
    } else {
        match tokio::time::timeout(body_timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => return into_axum(api::payload_too_large(parts.uri.path())),
            Err(_) => {
                let body = br#"{"error":"the request body did not arrive in time"}"#.to_vec();
                return into_axum(Response::json(408, body));
            }
        }
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    // A caller's id is kept only if it is a plain token: it is written back in 5xx bodies.
    let request_id = match header("x-request-id") {
        Some(id) if is_plain_id(id) => id.to_owned(),
        _ => local_request_id(),
    };
    let request = Request {
        method: Method::parse(parts.method.as_str()),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        if_none_match: header("if-none-match"),
        body: &body,
        request_id: &request_id,
        encoding: BodyEncoding::Json,
    };
    into_axum(api::handle(&app, request).await)
}

/// Up to 128 letters, digits and `-_.:`.
fn is_plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// A request id for local runs: process start time and a counter, unique enough to
/// correlate events with requests.
fn local_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PREFIX: OnceLock<String> = OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        format!("local-{start:x}-")
    });
    let mut id = String::with_capacity(prefix.len() + 20);
    id.push_str(prefix);
    let _ = write!(id, "{}", NEXT.fetch_add(1, Ordering::Relaxed));
    id
}

/// [`api::FIXED_HEADERS`] as a ready `HeaderMap` of static values, built once: each
/// response clones it rather than parsing and validating the same eight values again.
fn fixed_headers() -> &'static HeaderMap {
    static FIXED: OnceLock<HeaderMap> = OnceLock::new();
    FIXED.get_or_init(|| {
        let mut map = HeaderMap::with_capacity(api::FIXED_HEADERS.len() + 4);
        for (name, value) in api::FIXED_HEADERS {
            map.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        map
    })
}

fn into_axum(response: Response) -> axum::response::Response {
    let mut headers = fixed_headers().clone();
    for (name, value) in response.varying_static_headers() {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    // An ETag is our own hex in quotes, always a valid value; one that were not is dropped.
    if let Some(etag) = response.etag.as_deref().and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert(axum::http::header::ETAG, etag);
    }
    let mut out = axum::response::Response::new(Body::from(response.body));
    *out.status_mut() = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *out.headers_mut() = headers;
    out
}

/// What `make run` prints: where the server is and requests to paste.
/// `flags` is the store's own [`crate::store::FlagStore::describe`].
pub fn print_banner(config: &crate::config::Config, flags: &str, addr: std::net::SocketAddr) {
    let events = match (&config.events.stream, &config.events.file) {
        (Some(stream), _) => format!("Kinesis stream {stream}"),
        (None, Some(file)) => file.display().to_string(),
        (None, None) => "off".to_owned(),
    };
    let base = format!("http://{addr}");
    println!(
        r#"flagfn listening on {base}  (flags: {flags}; events: {events}; Ctrl-C to stop)

Try:
  curl -s '{base}/health'
  curl -s '{base}/evaluate?user_id=user-2009&flag_key=dark-mode'
  curl -s -X POST '{base}/evaluate' -H 'content-type: application/json' \
       -d '{{"user_id":"user-2009","flag_key":"new-checkout","context":{{"country":"US","locale":"en-US"}}}}'
  curl -s -X POST '{base}/batch_evaluate' -H 'content-type: application/json' \
       -d '{{"user_id":"user-2003","flag_keys":["search-ranking","pricing-page","beta-dashboard"],"context":{{"locale":"en-GB","org_id":"org-initech"}}}}'
  curl -s -X POST '{base}/ofrep/v1/evaluate/flags/search-ranking' -H 'content-type: application/json' \
       -d '{{"context":{{"targetingKey":"user-2003"}}}}'
  curl -si -X POST '{base}/ofrep/v1/evaluate/flags' -H 'content-type: application/json' \
       -d '{{"context":{{"targetingKey":"user-2003","country":"US"}}}}'
  curl -sN '{base}/ofrep/v1/stream'     # then edit the flags file
"#
    );
}
