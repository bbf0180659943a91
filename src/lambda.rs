//! Running inside Lambda: events in, responses out, events flushed after the response.
//!
//! One payload type covers both event shapes (told apart by shape; docs/api.md): a function
//! URL event (API Gateway payload 2.0: `requestContext.http`) becomes an [`api::Request`];
//! a direct invoke (`{"action": "evaluate" | "batch_evaluate", ...}`) becomes a `POST` of
//! the event itself to that route. Both go through [`api::handle`], the same code the
//! local server runs.
//!
//! A third shape, a DynamoDB Streams event (`Records[].eventSource == "aws:dynamodb"`,
//! from the flags table's stream), records the changed keys in the change manifest
//! ([`crate::freshness::stream`]; docs/operations.md, "Freshness").
//!
//! After the response: an internal extension registered for `INVOKE` waits until the
//! runtime has handed the invocation's response to the Runtime API (Lambda has it and
//! returns it to the caller), then runs [`App::after_response`]: the freshness check
//! (one manifest read per `FRESHNESS_SECONDS` at most), and flushes the event
//! buffer — but only when a flush is due
//! (`EVENTS_FLUSH_MIN` events, a full `PutRecords` worth of bytes, or the oldest event
//! older than `EVENTS_FLUSH_MAX_AGE_MS`); otherwise it says "done" at once, so most
//! invocations do not pay for a `PutRecords` in their billed `Duration`. Lambda freezes the
//! environment only when the extension asks for its next event, so events wait frozen in
//! the buffer, each with its own timestamp and request id. On SIGTERM (sent at shutdown
//! because an extension is registered) the buffer is drained within Lambda's shutdown
//! budget and the account `delivered + dropped == recorded` is logged. An environment
//! killed without SIGTERM (crash, timeout) loses what was buffered: at most
//! `EVENTS_FLUSH_MAX_AGE_MS` (or `EVENTS_FLUSH_MIN` events) worth.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use lambda_runtime::tower::layer::layer_fn;
use lambda_runtime::tower::util::MapFuture;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::Notify;

use crate::api::{self, ApiError, BodyEncoding, Method, Request, Response};
use crate::app::App;
use crate::freshness::stream;

/// How long the SIGTERM handler may spend draining events (Lambda allows 500 ms for a
/// function with internal extensions only).
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(400);

/// The fields of either event shape that the function reads; everything else is
/// skipped without being copied.
#[derive(Debug, Deserialize)]
struct Invocation<'a> {
    #[serde(borrow, rename = "rawPath")]
    raw_path: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "rawQueryString")]
    raw_query_string: Option<Cow<'a, str>>,
    #[serde(borrow)]
    headers: Option<Headers<'a>>,
    #[serde(borrow, rename = "requestContext")]
    request_context: Option<RequestContext<'a>>,
    #[serde(borrow)]
    body: Option<Cow<'a, str>>,
    #[serde(rename = "isBase64Encoded", default)]
    is_base64_encoded: bool,
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    /// A DynamoDB Streams (or other event source) batch.
    #[serde(borrow, rename = "Records")]
    records: Option<Vec<EventRecord<'a>>>,
}

/// Where one record of a `Records` batch comes from; the rest is read by the stream
/// handler.
#[derive(Debug, Deserialize)]
struct EventRecord<'a> {
    #[serde(borrow, rename = "eventSource")]
    event_source: Option<Cow<'a, str>>,
}

/// Function URLs send header names in lower case.
#[derive(Debug, Deserialize)]
struct Headers<'a> {
    #[serde(borrow, rename = "if-none-match")]
    if_none_match: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct RequestContext<'a> {
    #[serde(borrow)]
    http: Option<Http<'a>>,
}

#[derive(Debug, Deserialize)]
struct Http<'a> {
    #[serde(borrow)]
    method: Cow<'a, str>,
}

/// The fixed part of the function URL response after the body string.
const URL_RESPONSE_END: &[u8] = br#"","isBase64Encoded":false}"#;

/// Answers one invocation: `event` is the raw payload, the result is the JSON to return.
pub async fn invoke(app: &App, event: &str, request_id: &str) -> String {
    let invocation: Invocation<'_> = match serde_json::from_str(event) {
        Ok(invocation) => invocation,
        Err(error) => {
            // serde's message would quote the event's own values: log where, not what.
            tracing::warn!(category = ?error.classify(), line = error.line(), column = error.column(), "unrecognised event");
            return unrecognised("the event does not have a known shape: expected a function URL event or a direct invoke {\"action\": \"evaluate\" | \"batch_evaluate\", ...}");
        }
    };
    if let Some(http) = invocation.request_context.as_ref().and_then(|c| c.http.as_ref()) {
        return function_url(app, &invocation, &http.method, request_id).await;
    }
    let from_stream = |r: &EventRecord<'_>| r.event_source.as_deref() == Some(stream::EVENT_SOURCE);
    if invocation.records.as_ref().is_some_and(|records| records.iter().any(from_stream)) {
        return stream::record_stream_event(&app.freshness, &app.cache, event, app.clock.wall()).await;
    }
    let path =
        match invocation.action.as_deref() {
            Some("evaluate") => "/evaluate",
            Some("batch_evaluate") => "/batch_evaluate",
            Some(_) => return unrecognised("`action` must be \"evaluate\" or \"batch_evaluate\""),
            None => return unrecognised(
                "expected a function URL event or a direct invoke {\"action\": \"evaluate\" | \"batch_evaluate\", ...}",
            ),
        };
    let request = Request {
        method: Method::Post,
        path,
        query: "",
        if_none_match: None,
        body: event.as_bytes(),
        request_id,
        encoding: BodyEncoding::Json,
    };
    let response = api::handle(app, request).await;
    String::from_utf8(response.body).unwrap_or_default()
}

fn unrecognised(message: &str) -> String {
    let response = ApiError::BadRequest(message.to_owned()).native();
    String::from_utf8(response.body).unwrap_or_default()
}

async fn function_url(app: &App, invocation: &Invocation<'_>, method: &str, request_id: &str) -> String {
    let body: Cow<'_, [u8]> = match (&invocation.body, invocation.is_base64_encoded) {
        (None, _) => Cow::Borrowed(&[]),
        (Some(text), false) => Cow::Borrowed(text.as_bytes()),
        (Some(text), true) => match base64::engine::general_purpose::STANDARD.decode(text.as_bytes()) {
            Ok(bytes) => Cow::Owned(bytes),
            Err(_) => return url_response(&ApiError::BadRequest("body is not valid base64".into()).native()),
        },
    };
    let request = Request {
        method: Method::parse(method),
        path: invocation.raw_path.as_deref().unwrap_or("/"),
        query: invocation.raw_query_string.as_deref().unwrap_or(""),
        if_none_match: invocation.headers.as_ref().and_then(|h| h.if_none_match.as_deref()),
        body: &body,
        request_id,
        // The body travels as a JSON string in the envelope: have it written escaped.
        encoding: BodyEncoding::JsonInString,
    };
    url_response(&api::handle(app, request).await)
}

/// The function URL response (payload 2.0): `{"statusCode", "headers", "body",
/// "isBase64Encoded"}`, written by hand so the body — JSON that must travel as a JSON
/// string — is escaped in one tight pass instead of through a general string escaper.
fn url_response(response: &Response) -> String {
    let body = &response.body;
    let mut out = Vec::with_capacity(body.len() + body.len() / 4 + 640);
    out.extend_from_slice(br#"{"statusCode":"#);
    out.extend_from_slice(response.status.to_string().as_bytes());
    out.extend_from_slice(br#","headers":{"#);
    for (i, (name, value)) in response.headers().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Names are fixed lower-case tokens; values (an ETag has quotes) go through serde.
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        if serde_json::to_writer(&mut out, value).is_err() {
            return url_response_base64(response);
        }
    }
    out.extend_from_slice(br#"},"body":""#);
    match response.encoding {
        BodyEncoding::JsonInString => out.extend_from_slice(body),
        BodyEncoding::Json if api::escape_json_text(&mut out, body) => {}
        BodyEncoding::Json => return url_response_base64(response),
    }
    out.extend_from_slice(URL_RESPONSE_END);
    // The one UTF-8 check of the body (the escaping above only inserts ASCII).
    String::from_utf8(out).unwrap_or_else(|_| url_response_base64(response))
}

/// The fallback for a body that is not plain text: base64, as function URLs allow.
fn url_response_base64(response: &Response) -> String {
    let headers: serde_json::Map<String, serde_json::Value> =
        response.headers().map(|(name, value)| (name.to_owned(), value.into())).collect();
    let body = base64::engine::general_purpose::STANDARD.encode(response.json_text());
    let out =
        serde_json::json!({"statusCode": response.status, "headers": headers, "body": body, "isBase64Encoded": true});
    out.to_string()
}

/// Runs the Lambda loop until the environment shuts down.
pub async fn run(app: Arc<App>) -> Result<(), lambda_runtime::Error> {
    let responded = Arc::new(Notify::new());
    let extension = if app.has_after_response_work() {
        Some(register_flush_extension(app.clone(), responded.clone()).await?)
    } else {
        None
    };
    spawn_shutdown_drain(app.clone());
    let handler = lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<Box<RawValue>>| {
        let app = app.clone();
        async move {
            let text = invoke(&app, event.payload.get(), &event.context.request_id).await;
            RawValue::from_string(text).map_err(lambda_runtime::Error::from)
        }
    });
    // What `lambda_runtime::run` builds (a span per invocation), plus the layer below.
    let runtime = lambda_runtime::Runtime::new(handler).layer(lambda_runtime::layers::TracingLayer::new());
    match extension {
        Some(extension) => {
            // The outermost layer wraps the whole invocation — the handler *and* posting its
            // answer to the Runtime API — so the extension hears of it only once Lambda has
            // the response, however the invocation ended (answer, error or panic).
            let runtime = runtime.layer(layer_fn(move |inner| {
                let responded = responded.clone();
                MapFuture::new(inner, move |invocation| {
                    let notify = NotifyOnDrop(responded.clone());
                    async move {
                        let _notify = notify;
                        invocation.await
                    }
                })
            }));
            tokio::try_join!(runtime.run(), extension).map(|_| ())
        }
        None => runtime.run().await,
    }
}

/// Wakes the flush extension when dropped: the end of one invocation, whatever its outcome.
struct NotifyOnDrop(Arc<Notify>);

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        // A permit is stored if the extension is not waiting yet, so it cannot be missed.
        self.0.notify_one();
    }
}

/// Registers the internal extension (before the runtime starts, as Lambda requires) and
/// returns its run loop: on every INVOKE it waits until the response has been posted,
/// then flushes; it asks for the next event (letting Lambda freeze) only after that.
async fn register_flush_extension(
    app: Arc<App>,
    responded: Arc<Notify>,
) -> Result<impl std::future::Future<Output = Result<(), lambda_runtime::Error>>, lambda_runtime::Error> {
    let processor = lambda_extension::service_fn(move |_event: lambda_extension::LambdaEvent| {
        let (app, responded) = (app.clone(), responded.clone());
        async move {
            responded.notified().await;
            app.after_response().await;
            Ok::<(), lambda_extension::Error>(())
        }
    });
    let extension = lambda_extension::Extension::new()
        .with_extension_name("flagfn-events")
        .with_events(&["INVOKE"])
        .with_events_processor(processor)
        .register()
        .await?;
    Ok(extension.run())
}

/// Drains the event buffer on SIGTERM (one `PutRecords` of up to 500 records / 5 MiB
/// typically takes 10–30 ms, so the budget covers several), then exits.
fn spawn_shutdown_drain(app: Arc<App>) {
    tokio::spawn(async move {
        let Ok(mut sigterm) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            tracing::warn!("cannot listen for SIGTERM: buffered events may be lost at shutdown");
            return;
        };
        sigterm.recv().await;
        // Starts no sink call it cannot finish within the budget, cuts one still in flight
        // at the deadline, counts what is left as dropped and logs the account.
        app.events.shutdown(SHUTDOWN_BUDGET).await;
        // The final metrics, after the drain, so they count its sends and drops.
        app.emit_metrics(true);
        std::process::exit(0);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_url_responses_round_trip() {
        let text = br#"{"k":"v \"x\"","e":"\u0001"}"#;
        let response = Response { etag: Some("\"abc\"".into()), ..Response::json(200, text.to_vec()) };
        let out: serde_json::Value = serde_json::from_str(&url_response(&response)).expect("JSON");
        assert_eq!(out["statusCode"], 200);
        assert_eq!(out["isBase64Encoded"], false);
        assert_eq!(out["headers"]["etag"], "\"abc\"");
        assert_eq!(out["body"].as_str().map(str::as_bytes), Some(&text[..]));
        // A body written already escaped travels as it is, and decodes to the same text.
        let value: serde_json::Value = serde_json::from_slice(text).expect("JSON");
        let escaped = api::encode_body(&value, BodyEncoding::JsonInString).expect("encodes");
        let response = Response { body: escaped, encoding: BodyEncoding::JsonInString, ..response };
        let out: serde_json::Value = serde_json::from_str(&url_response(&response)).expect("JSON");
        let body: serde_json::Value = serde_json::from_str(out["body"].as_str().unwrap_or("")).expect("body JSON");
        assert_eq!(body, value);
        // A body with a raw control character travels as base64 instead.
        let binary = Response { body: vec![b'{', 1, b'}'], ..Response::json(200, Vec::new()) };
        let out: serde_json::Value = serde_json::from_str(&url_response(&binary)).expect("JSON");
        assert_eq!((out["isBase64Encoded"].as_bool(), out["body"].as_str()), (Some(true), Some("ewF9")));
    }
}
