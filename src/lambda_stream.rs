//! The change stream as a Lambda function (`LAMBDA_ROLE=stream`; docs/api.md, "Change
//! stream"): the same binary behind a second function URL with
//! `InvokeMode: RESPONSE_STREAM`, one invocation per connected client.
//!
//! Each invocation answers a function URL `GET /ofrep/v1/stream` with `text/event-stream`
//! and then, once a second, looks at the configuration (the change manifest, one read)
//! and writes a `refetchEvaluation` message for each new version, with comment heartbeats
//! in between. It ends [`END_BEFORE_DEADLINE`] before the invocation's deadline, cleanly,
//! so the client reconnects with `Last-Event-ID` and misses nothing. The body is written
//! through the runtime's bounded channel: a client that does not read holds one pending
//! frame, never a queue. Each connection is billed for as long as it is open (docs/cost.md
//! prices it).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use lambda_runtime::streaming::{channel, Body, Response, Sender};
use lambda_runtime::{LambdaEvent, MetadataPrelude};
use serde_json::Value;

use crate::api::refetch::{SINCE, STREAM_PATH};
use crate::app::App;

/// How long before the invocation's deadline the stream ends, so the end is clean.
pub const END_BEFORE_DEADLINE: Duration = Duration::from_secs(2);
/// How often the configuration is looked at (one manifest read each time).
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Serves change streams until the runtime stops.
pub async fn run(app: Arc<App>) -> Result<(), lambda_runtime::Error> {
    let handler = lambda_runtime::service_fn(move |event: LambdaEvent<Value>| {
        let app = app.clone();
        async move { Ok::<_, lambda_runtime::Error>(respond(app, &event.payload, event.context.deadline)) }
    });
    lambda_runtime::run(handler).await
}

/// The streamed answer to one function URL event. `deadline_ms`: the invocation's
/// deadline, ms since the Unix epoch.
pub fn respond(app: Arc<App>, event: &Value, deadline_ms: u64) -> Response<Body> {
    let method = event.pointer("/requestContext/http/method").and_then(Value::as_str).unwrap_or("");
    let path = event.get("rawPath").and_then(Value::as_str).unwrap_or("");
    let (tx, body) = channel();
    let (status, content_type) = match (path == STREAM_PATH, method) {
        (true, "GET") => (200, "text/event-stream"),
        (true, _) => (405, "application/json"),
        (false, _) => (404, "application/json"),
    };
    let prelude = prelude(status, content_type);
    if status != 200 {
        let text: &'static [u8] =
            if status == 405 { br#"{"error":"method not allowed; use GET"}"# } else { br#"{"error":"no such route"}"# };
        tokio::spawn(write_once(tx, Bytes::from_static(text)));
    } else {
        let last = last_heard_of(event);
        let ends = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms);
        let ends = ends.checked_sub(END_BEFORE_DEADLINE).unwrap_or(SystemTime::UNIX_EPOCH);
        tokio::spawn(feed(app, tx, last, ends));
    }
    Response { metadata_prelude: prelude, stream: body }
}

fn prelude(status: u16, content_type: &'static str) -> MetadataPrelude {
    let mut headers = http::HeaderMap::new();
    for (name, value) in crate::api::FIXED_HEADERS {
        headers.insert(name, http::HeaderValue::from_static(value));
    }
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    let status_code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    MetadataPrelude { status_code, headers, cookies: Vec::new() }
}

async fn write_once(mut tx: Sender, bytes: Bytes) {
    let _ = tx.send_data(bytes).await;
}

/// `Last-Event-ID` (a reconnect), else the `since` query parameter (see the local
/// server's stream: the same rules).
fn last_heard_of(event: &Value) -> Option<String> {
    if let Some(id) = event.pointer("/headers/last-event-id") {
        return Some(id.as_str().unwrap_or("").to_owned());
    }
    let query = event.get("rawQueryString").and_then(Value::as_str).unwrap_or("");
    form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == SINCE).map(|(_, v)| v.into_owned())
}

/// Writes the stream until `ends` or until the client is gone.
async fn feed(app: Arc<App>, mut tx: Sender, last_heard: Option<String>, ends: SystemTime) {
    app.changes.look(&app.cache, &app.freshness, app.clock.wall(), true).await;
    let mut sent = app.changes.latest();
    let mut opening = b"retry: 1000\n: flagfn change stream\n\n".to_vec();
    if let (Some(id), Some(version)) = (&last_heard, &sent) {
        if *id != version.id {
            opening.extend_from_slice(&version.sse_message());
        }
    }
    if tx.send_data(Bytes::from(opening)).await.is_err() {
        return;
    }
    let mut quiet = Duration::ZERO;
    while app.clock.wall() + LOOK_EVERY < ends {
        tokio::time::sleep(LOOK_EVERY).await;
        app.changes.look(&app.cache, &app.freshness, app.clock.wall(), true).await;
        let latest = app.changes.latest();
        let frame = match (&latest, &sent) {
            (Some(new), old) if old.as_ref().is_none_or(|o| o.id != new.id) => Some(new.sse_message()),
            _ if quiet >= app.changes.heartbeat() => Some(b":\n\n".to_vec()),
            _ => None,
        };
        quiet = if frame.is_some() { Duration::ZERO } else { quiet + LOOK_EVERY };
        sent = latest.or(sent);
        if let Some(frame) = frame {
            if tx.send_data(Bytes::from(frame)).await.is_err() {
                return;
            }
        }
    }
}
