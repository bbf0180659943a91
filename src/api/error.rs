//! The one place where failures become HTTP statuses and bodies (docs/api.md, "Errors and limits").
//!
//! Native routes answer `{"error": "<message>"}`; OFREP routes answer
//! `{"key"?, "errorCode", "errorDetails"}` as the protocol's schema has them.

use serde::Serialize;

use super::Response;
use crate::cache::UNAVAILABLE;
use crate::eval::ErrorCode;

/// Why a request could not be answered with an evaluation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No such route (404).
    #[error("no such route")]
    NotFound,
    /// Known route, wrong method (405); carries the `Allow` header.
    #[error("method not allowed; use {0}")]
    MethodNotAllowed(&'static str),
    /// Body over the size limit (413).
    #[error("request body is larger than {} KiB", super::MAX_BODY_BYTES / 1024)]
    PayloadTooLarge,
    /// The body is not JSON (400, OFREP `PARSE_ERROR`).
    #[error("{0}")]
    MalformedJson(String),
    /// A query parameter out of its schema (400, OFREP `PARSE_ERROR`); the text never
    /// repeats the value.
    #[error("{0}")]
    BadParameter(String),
    /// JSON of the wrong shape, or values out of bounds (400).
    #[error("{0}")]
    BadRequest(String),
    /// The evaluation context is unusable (400, OFREP `INVALID_CONTEXT`).
    #[error("{0}")]
    InvalidContext(String),
    /// The flag needs a user id and none was given (400, `TARGETING_KEY_MISSING`).
    #[error("{0}")]
    TargetingKeyMissing(String),
    /// A single-flag route named a flag that does not exist (404; native
    /// `{"error": "Feature flag not found: <key>"}` as the Python service answered).
    #[error("Feature flag not found: {0}")]
    FlagNotFound(String),
    /// The flag store failed and nothing usable is cached (native 503, OFREP 500
    /// `GENERAL`). The text is for the log only: the answer says just
    /// "flag store unavailable" (an SDK error names endpoints, request ids, accounts).
    #[error("{UNAVAILABLE}")]
    Unavailable(String),
}

#[derive(Serialize)]
struct NativeError<'a> {
    error: &'a str,
}

/// OFREP `evaluationFailure` / `flagNotFound` / `bulkEvaluationFailure`.
#[derive(Serialize)]
pub(super) struct OfrepError<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    #[serde(rename = "errorCode")]
    pub error_code: &'a str,
    #[serde(rename = "errorDetails")]
    pub error_details: &'a str,
}

impl ApiError {
    /// The status for a native route.
    pub fn native_status(&self) -> u16 {
        match self {
            ApiError::NotFound | ApiError::FlagNotFound(_) => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::PayloadTooLarge => 413,
            ApiError::MalformedJson(_)
            | ApiError::BadParameter(_)
            | ApiError::BadRequest(_)
            | ApiError::InvalidContext(_)
            | ApiError::TargetingKeyMissing(_) => 400,
            ApiError::Unavailable(_) => 503,
        }
    }

    /// The OFREP error code.
    pub fn ofrep_code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) | ApiError::BadParameter(_) => ErrorCode::ParseError.as_str(),
            ApiError::InvalidContext(_) | ApiError::BadRequest(_) => ErrorCode::InvalidContext.as_str(),
            ApiError::TargetingKeyMissing(_) => ErrorCode::TargetingKeyMissing.as_str(),
            ApiError::FlagNotFound(_) => ErrorCode::FlagNotFound.as_str(),
            ApiError::NotFound => "NOT_FOUND",
            ApiError::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            ApiError::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ApiError::Unavailable(_) => ErrorCode::General.as_str(),
        }
    }

    /// `{"error": ...}` with the native status.
    pub fn native(&self) -> Response {
        self.log();
        let body = serde_json::to_vec(&NativeError { error: &self.to_string() }).unwrap_or_default();
        self.with_headers(Response::json(self.native_status(), body))
    }

    /// `{"errorCode", "errorDetails"}` (and `key` for single-flag routes), with OFREP's
    /// status: the store being down is a 500 `GENERAL` there, as the protocol lists.
    pub fn ofrep(&self, key: Option<&str>) -> Response {
        self.log();
        let status = match self {
            ApiError::Unavailable(_) => 500,
            other => other.native_status(),
        };
        let details = self.to_string();
        let body = OfrepError { key, error_code: self.ofrep_code(), error_details: &details };
        self.with_headers(Response::json(status, serde_json::to_vec(&body).unwrap_or_default()))
    }

    /// Logs what an answer leaves out (the caller's values are never in it).
    fn log(&self) {
        if let ApiError::Unavailable(detail) = self {
            tracing::warn!(detail = %detail, "answering: {UNAVAILABLE}");
        }
    }

    fn with_headers(&self, response: Response) -> Response {
        match self {
            ApiError::MethodNotAllowed(allow) => Response { allow: Some(allow), ..response },
            _ => response,
        }
    }
}

impl ApiError {
    /// A single-flag native route's answer to a failed evaluation of `key`: the legacy
    /// service's status for each error code (docs/api.md).
    pub(super) fn from_evaluation(code: ErrorCode, message: &str, key: String) -> Self {
        match code {
            ErrorCode::FlagNotFound => ApiError::FlagNotFound(key),
            ErrorCode::TargetingKeyMissing => ApiError::TargetingKeyMissing(message.to_owned()),
            ErrorCode::General => ApiError::Unavailable(message.to_owned()),
            ErrorCode::ParseError | ErrorCode::InvalidContext => ApiError::BadRequest(message.to_owned()),
        }
    }
}

/// An evaluation error's OFREP status.
pub(super) fn ofrep_status(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::FlagNotFound => 404,
        ErrorCode::ParseError | ErrorCode::TargetingKeyMissing | ErrorCode::InvalidContext => 400,
        ErrorCode::General => 500,
    }
}
