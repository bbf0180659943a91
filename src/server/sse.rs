//! The change stream, `GET /ofrep/v1/stream` (docs/api.md, "Change stream"): OFREP's
//! server-sent events, one `refetchEvaluation` message per new configuration version.
//!
//! Each stream waits on [`crate::changes::Changes`]' `watch` channel, which keeps only the
//! newest version: a client that reads slowly, or not at all, is owed at most one
//! message whatever it missed, and hyper asks the body for its next frame only once the
//! last one is written, so nothing queues per stream. Streams are capped
//! (`STREAM_MAX_CLIENTS`), end at shutdown, and end after [`MAX_LIFETIME`] so a client
//! holding a slot forever reconnects (with `Last-Event-ID`, losing nothing).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use hyper::body::Frame;
use tokio::sync::{watch, OwnedSemaphorePermit};

use crate::api;
use crate::app::App;
use crate::changes::Version;

/// The longest one stream stays open before the client is asked to reconnect.
pub const MAX_LIFETIME: Duration = Duration::from_secs(600);
/// What a preflight for the stream allows: the API's own, and what SSE clients send.
const PREFLIGHT_HEADERS: &str = "Content-Type, Authorization, If-None-Match, X-Api-Key, Last-Event-ID, Cache-Control";
/// The reconnection delay suggested to clients (`retry:`), milliseconds.
const RETRY_MS: u32 = 1000;

/// The answer to a request for the stream: the stream itself, `503` at the cap, `405`
/// for another method.
pub(super) fn respond(app: &App, method: &str, query: &str, headers: &HeaderMap) -> axum::response::Response {
    match method {
        "GET" => open(app, query, headers),
        "OPTIONS" => preflight(),
        _ => {
            let mut out = plain(StatusCode::METHOD_NOT_ALLOWED, r#"{"error":"method not allowed; use GET"}"#);
            out.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, OPTIONS"));
            out
        }
    }
}

/// A browser reconnecting from another origin sends `Last-Event-ID`, which is not a
/// CORS-safelisted header: its preflight must be allowed.
fn preflight() -> axum::response::Response {
    let mut out = plain(StatusCode::NO_CONTENT, "");
    let headers = out.headers_mut();
    headers.insert(header::ALLOW, HeaderValue::from_static("GET, OPTIONS"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(PREFLIGHT_HEADERS));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    out
}

/// Opens a stream, if a slot is free.
fn open(app: &App, query: &str, headers: &HeaderMap) -> axum::response::Response {
    let Some(slot) = app.changes.open_stream() else {
        let mut out = plain(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"too many change streams are open"}"#);
        out.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return out;
    };
    let mut updates = app.changes.subscribe();
    let current = updates.borrow_and_update().clone();
    let mut opening = format!("retry: {RETRY_MS}\n: flagfn change stream\n\n").into_bytes();
    match (last_heard_of(query, headers), current) {
        (Some(id), Some(version)) if id != version.id => opening.extend_from_slice(&version.sse_message()),
        _ => {}
    }
    let feed = Feed {
        opening: Some(Bytes::from(opening)),
        updates,
        closing: app.changes.closing(),
        heartbeat: app.changes.heartbeat(),
        ends: tokio::time::Instant::now() + MAX_LIFETIME,
        _slot: slot,
    };
    let mut out = axum::response::Response::new(Body::new(SseBody::new(feed)));
    let headers = out.headers_mut();
    headers.extend(super::fixed_headers().clone());
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    out
}

/// The version the client last heard of: `Last-Event-ID` (a reconnect), else `since`
/// (the version its bulk answer advertised). One that is not current (older, unknown,
/// malformed, not text) means it missed something, and it is told at once; `None`: a
/// client with nothing to compare, told of the next change.
fn last_heard_of(query: &str, headers: &HeaderMap) -> Option<String> {
    match headers.get("last-event-id") {
        Some(id) => Some(id.to_str().unwrap_or("").to_owned()),
        None => form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == api::refetch::SINCE)
            .map(|(_, v)| v.into_owned()),
    }
}

fn plain(status: StatusCode, body: &'static str) -> axum::response::Response {
    let mut out = axum::response::Response::new(Body::from(body));
    *out.status_mut() = status;
    *out.headers_mut() = super::fixed_headers().clone();
    if !body.is_empty() {
        out.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    out
}

/// One stream's state between frames.
struct Feed {
    opening: Option<Bytes>,
    updates: watch::Receiver<Option<Arc<Version>>>,
    closing: watch::Receiver<bool>,
    heartbeat: Duration,
    ends: tokio::time::Instant,
    /// Held for the stream's life: dropped with the body.
    _slot: OwnedSemaphorePermit,
}

impl Feed {
    /// The next frame, or `None` when the stream ends.
    async fn next(mut self) -> Option<(Bytes, Feed)> {
        if let Some(opening) = self.opening.take() {
            return Some((opening, self));
        }
        if *self.closing.borrow() {
            return None;
        }
        let frame = tokio::select! {
            _ = self.closing.changed() => return None,
            () = tokio::time::sleep_until(self.ends) => return None,
            changed = self.updates.changed() => {
                changed.ok()?;
                let version = self.updates.borrow_and_update().clone()?;
                Bytes::from(version.sse_message())
            }
            () = tokio::time::sleep(self.heartbeat) => Bytes::from_static(b":\n\n"),
        };
        Some((frame, self))
    }
}

type Next = Pin<Box<dyn Future<Output = Option<(Bytes, Feed)>> + Send>>;

/// The response body: [`Feed::next`] unfolded into frames, one pending at a time.
pub struct SseBody {
    next: Option<Next>,
}

impl SseBody {
    fn new(feed: Feed) -> Self {
        SseBody { next: Some(Box::pin(feed.next())) }
    }
}

impl HttpBody for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let Some(next) = self.next.as_mut() else { return Poll::Ready(None) };
        match next.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.next = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some((bytes, feed))) => {
                self.next = Some(Box::pin(feed.next()));
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
        }
    }
}
