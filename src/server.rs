//! Running outside Lambda: the same routes as an HTTP server on `BIND_ADDR`.
//!
//! axum only carries bytes here: every request is turned into an [`api::Request`] and
//! answered by [`api::handle`], exactly as in Lambda. Events are flushed by a background
//! task on a short interval and drained on Ctrl-C / SIGTERM.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};

use crate::api::{self, ApiError, Method, Request, Response, MAX_BODY_BYTES};
use crate::app::App;

/// How long shutdown may spend sending buffered events.
const DRAIN_BUDGET: Duration = Duration::from_secs(5);

/// Serves until `shutdown` resolves, then drains the event buffer.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    flush_interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let flusher = tokio::spawn(flush_periodically(app.clone(), flush_interval));
    let router = axum::Router::new().fallback(dispatch).with_state(app.clone());
    let served = axum::serve(listener, router).with_graceful_shutdown(shutdown).await;
    flusher.abort();
    let stats = app.events.drain(DRAIN_BUDGET).await;
    if app.events.enabled() {
        tracing::info!(sent = stats.sent, dropped = stats.dropped, left = stats.buffered, "events drained");
    }
    served
}

async fn flush_periodically(app: Arc<App>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        app.events.flush().await;
    }
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

async fn dispatch(State(app): State<Arc<App>>, request: axum::extract::Request) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => return into_axum(ApiError::PayloadTooLarge.native()),
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let request_id = match header("x-request-id") {
        Some(id) if id.len() <= 128 => id.to_owned(),
        _ => local_request_id(),
    };
    let request = Request {
        method: Method::parse(parts.method.as_str()),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        if_none_match: header("if-none-match"),
        body: &body,
        request_id: &request_id,
    };
    into_axum(api::handle(&app, request).await)
}

/// A request id for local runs: process start time and a counter, unique enough to
/// correlate events with requests.
fn local_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = START
        .get_or_init(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    format!("local-{start:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn into_axum(response: Response) -> axum::response::Response {
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in response.headers() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    let mut out = axum::response::Response::new(Body::from(response.body));
    *out.status_mut() = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *out.headers_mut() = headers;
    out
}

/// What `make run` prints: where the server is and requests to paste.
pub fn print_banner(config: &crate::config::Config, addr: std::net::SocketAddr) {
    let flags = match &config.flags {
        crate::config::FlagSourceConfig::File(path) => path.display().to_string(),
        crate::config::FlagSourceConfig::Table(table) => format!("DynamoDB table {table}"),
    };
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
"#
    );
}
