//! The HTTP API (docs/api.md), transport-neutral: the Lambda adapter (function URL and
//! direct-invoke events) and the local server both build a [`Request`], call
//! [`handle`], and write out the [`Response`]. One router, one code path.

mod encode;
mod error;
mod input;
mod native;
mod ofrep;
pub mod refetch;

pub use encode::{encode_body, escape_json_text, BodyEncoding};
pub use error::ApiError;
pub use input::MAX_BODY_BYTES;

use crate::app::App;

/// The HTTP methods the API distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: answered as `GET` on `GET` routes, without the body.
    Head,
    /// `POST`.
    Post,
    /// `OPTIONS` (CORS preflight).
    Options,
    /// Anything else (answered 405 on known routes).
    Other,
}

impl Method {
    /// Parses a method name as sent on the wire (case-sensitive, as HTTP is).
    pub fn parse(name: &str) -> Method {
        match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// One request, borrowed from whatever transport carried it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// The path as sent (percent-encoded), without the query.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// The `If-None-Match` header, if any.
    pub if_none_match: Option<&'a str>,
    /// The body (already base64-decoded).
    pub body: &'a [u8],
    /// The request id events carry.
    pub request_id: &'a str,
    /// How the transport wants the response body written.
    pub encoding: BodyEncoding,
}

/// One response: a status, a JSON body (empty for 204/304) and the few headers that
/// vary; [`Response::headers`] adds the fixed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// JSON body, or empty.
    pub body: Vec<u8>,
    /// `ETag` of an OFREP bulk evaluation.
    pub etag: Option<String>,
    /// `Allow` for a 405 or a preflight.
    pub allow: Option<&'static str>,
    /// How `body` is written: the request's encoding for evaluation results; plain JSON
    /// for errors, health and OFREP bulk (whose `ETag` is over the plain JSON text, the
    /// same whichever transport carried it).
    pub encoding: BodyEncoding,
}

/// Headers on every response: the Python handler's security headers and CORS.
pub const FIXED_HEADERS: [(&str, &str); 8] = [
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("strict-transport-security", "max-age=31536000; includeSubDomains"),
    ("access-control-allow-origin", "*"),
    ("access-control-allow-methods", "GET, POST, OPTIONS"),
    ("access-control-allow-headers", "Content-Type, Authorization, If-None-Match, X-Api-Key"),
    ("access-control-expose-headers", "ETag"),
];

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Response { status, body, etag: None, allow: None, encoding: BodyEncoding::Json }
    }

    /// The body as JSON text, whatever its encoding (decoding an escaped one).
    pub fn json_text(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.encoding {
            BodyEncoding::Json => std::borrow::Cow::Borrowed(&self.body),
            BodyEncoding::JsonInString => {
                let mut quoted = Vec::with_capacity(self.body.len() + 2);
                quoted.push(b'"');
                quoted.extend_from_slice(&self.body);
                quoted.push(b'"');
                std::borrow::Cow::Owned(
                    serde_json::from_slice::<String>(&quoted).map(String::into_bytes).unwrap_or_default(),
                )
            }
        }
    }

    fn empty(status: u16) -> Self {
        Response::json(status, Vec::new())
    }

    /// The headers that vary between responses but whose values are constants
    /// (`content-type`, `allow`, `access-control-max-age`); not [`FIXED_HEADERS`], not `etag`.
    pub fn varying_static_headers(&self) -> impl Iterator<Item = (&'static str, &'static str)> {
        let content_type = (!self.body.is_empty()).then_some(("content-type", "application/json"));
        let allow = self.allow.map(|a| ("allow", a));
        let max_age = (self.status == 204).then_some(("access-control-max-age", "86400"));
        content_type.into_iter().chain(allow).chain(max_age)
    }

    /// Every header to send, fixed ones included.
    pub fn headers<'a>(&'a self) -> impl Iterator<Item = (&'static str, &'a str)> + 'a {
        let etag = self.etag.as_deref().map(|e| ("etag", e));
        let constant = FIXED_HEADERS.iter().copied().chain(self.varying_static_headers());
        constant.map(widen).chain(etag)
    }
}

/// A header of constant value, as one whose value is borrowed (so it chains with `etag`).
fn widen<'a>(header: (&'static str, &'static str)) -> (&'static str, &'a str) {
    header
}

/// The routes of docs/api.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Health,
    /// `GET /` — the Python service's root, same as `GET /evaluate`.
    Root,
    Evaluate,
    Batch,
    OfrepBulk,
    /// The flag key, still percent-encoded.
    OfrepOne(&'a str),
}

impl Route<'_> {
    fn allow(self) -> &'static str {
        match self {
            // `HEAD` is answered wherever `GET` is (RFC 9110 §9.3.2), so it is listed.
            Route::Health | Route::Root => "GET, HEAD, OPTIONS",
            Route::Evaluate => "GET, HEAD, POST, OPTIONS",
            Route::Batch | Route::OfrepBulk | Route::OfrepOne(_) => "POST, OPTIONS",
        }
    }
}

fn route(path: &str) -> Option<Route<'_>> {
    // One trailing slash is forgiven (`/evaluate/`), as most routers do.
    let path = if path.len() > 1 { path.strip_suffix('/').unwrap_or(path) } else { path };
    Some(match path {
        "/health" => Route::Health,
        "/" | "" => Route::Root,
        "/evaluate" => Route::Evaluate,
        "/batch_evaluate" => Route::Batch,
        "/ofrep/v1/evaluate/flags" => Route::OfrepBulk,
        // Everything after the prefix is the key: keys may contain `/` (the flag format forbids
        // only control characters), sent raw or as `%2F`.
        _ => match path.strip_prefix("/ofrep/v1/evaluate/flags/") {
            Some(key) if !key.is_empty() => Route::OfrepOne(key),
            _ => return None,
        },
    })
}

/// Answers one request. Never panics on input; every failure is a status and a body.
///
/// A `5xx` body also carries the request id: it says only that the store is
/// unavailable, and the id is how an operator finds the full error in the log.
pub async fn handle(app: &App, request: Request<'_>) -> Response {
    let head = request.method == Method::Head;
    let request = if head { Request { method: Method::Get, ..request } } else { request };
    let mut response = route_request(app, request).await;
    if response.status >= 500 {
        tracing::warn!(request_id = request.request_id, status = response.status, "request failed");
        response = with_request_id(response, request.request_id);
    }
    if head {
        response.body.clear();
    }
    response
}

/// The answer to a body over [`MAX_BODY_BYTES`] that a transport refused to read in
/// full: `413` in the shape of the route's protocol (OFREP's on OFREP routes).
pub fn payload_too_large(path: &str) -> Response {
    match route(path) {
        Some(Route::OfrepBulk | Route::OfrepOne(_)) => ApiError::PayloadTooLarge.ofrep(None),
        _ => ApiError::PayloadTooLarge.native(),
    }
}

/// Adds `"request_id"` to a JSON object body (error bodies are small, so re-encoding
/// one costs nothing that matters).
fn with_request_id(response: Response, request_id: &str) -> Response {
    let Ok(mut body) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&response.json_text())
    else {
        return response;
    };
    body.insert("request_id".to_owned(), request_id.into());
    match encode_body(&body, response.encoding) {
        Ok(bytes) => Response { body: bytes, ..response },
        Err(_) => response,
    }
}

async fn route_request(app: &App, request: Request<'_>) -> Response {
    let Some(route) = route(request.path) else {
        return ApiError::NotFound.native();
    };
    let ofrep = matches!(route, Route::OfrepBulk | Route::OfrepOne(_));
    let fail = |error: ApiError| if ofrep { error.ofrep(None) } else { error.native() };
    match (route, request.method) {
        (_, Method::Options) => Response { allow: Some(route.allow()), ..Response::empty(204) },
        (Route::Health, Method::Get) => Response::json(200, br#"{"status":"ok"}"#.to_vec()),
        _ if request.body.len() > MAX_BODY_BYTES => fail(ApiError::PayloadTooLarge),
        (Route::Root | Route::Evaluate, Method::Get) => native::evaluate_get(app, &request).await,
        (Route::Evaluate, Method::Post) => native::evaluate_post(app, &request).await,
        (Route::Batch, Method::Post) => native::batch(app, &request).await,
        (Route::OfrepOne(key), Method::Post) => ofrep::evaluate_one(app, &request, key).await,
        (Route::OfrepBulk, Method::Post) => ofrep::evaluate_bulk(app, &request).await,
        _ => fail(ApiError::MethodNotAllowed(route.allow())),
    }
}

#[cfg(test)]
mod tests;
