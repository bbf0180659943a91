//! The OpenFeature Remote Evaluation Protocol (docs/api.md; open-feature/protocol
//! `service/openapi.yaml`): `POST /ofrep/v1/evaluate/flags/{key}` and the bulk
//! `POST /ofrep/v1/evaluate/flags` with `ETag` / `If-None-Match`.

use serde::Serialize;

use super::encode::json;
use super::error::{ofrep_status, OfrepError};
use super::input::{check_flag_key, ofrep_subject, parse_body, OfrepBody};
use super::refetch;
use super::{ApiError, BodyEncoding, Request, Response};
use crate::app::App;
use crate::eval::{FlagValue, Reason};
use crate::outcome::{Outcome, Subject};

/// `evaluationSuccess`: `value` is omitted when the user gets no variant, so the SDK's
/// code default applies (protocol ADR 0006).
#[derive(Serialize)]
struct Success<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<FlagValue<'a>>,
    reason: &'static str,
    variant: Option<&'a str>,
    metadata: Metadata<'a>,
}

/// A flag's metadata: the native flag's identity, or a flagd flag's own (flag-set
/// metadata merged under the flag's), as flagd reports it.
#[derive(Serialize)]
#[serde(untagged)]
enum Metadata<'a> {
    Native(NativeMetadata<'a>),
    Flagd(&'a serde_json::Map<String, serde_json::Value>),
}

/// Flat metadata, as the protocol allows (string, number, boolean values only).
#[derive(Serialize)]
struct NativeMetadata<'a> {
    flag_id: &'a str,
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Item<'a> {
    Success(Success<'a>),
    Failure(OfrepError<'a>),
}

impl<'a> Item<'a> {
    fn new(outcome: &'a Outcome) -> Self {
        if let Some((code, message)) = &outcome.error() {
            return Item::Failure(OfrepError {
                key: Some(outcome.key()),
                error_code: code.as_str(),
                error_details: message,
            });
        }
        if let (Some(served), Some(flagd)) = (outcome.flagd(), outcome.flag().and_then(|f| f.flagd())) {
            let value = outcome.flagd_value();
            return Item::Success(Success {
                key: outcome.key(),
                value: value.map(|(_, v)| FlagValue::Json(v)),
                reason: if outcome.stale { "STALE" } else { served.reason.as_str() },
                variant: value.map(|(name, _)| name),
                metadata: Metadata::Flagd(flagd.metadata()),
            });
        }
        let view = outcome.view();
        Item::Success(Success {
            key: outcome.key(),
            value: view.value(),
            reason: reason(outcome),
            variant: view.ofrep_variant(),
            metadata: Metadata::Native(NativeMetadata {
                flag_id: view.flag_id(),
                version: view.version(),
                rule_id: view.rule_id(),
            }),
        })
    }
}

/// The OpenFeature reason for a native one (docs/api.md, "OFREP").
fn reason(outcome: &Outcome) -> &'static str {
    if outcome.stale {
        return "STALE";
    }
    match outcome.reason() {
        Reason::FlagDisabled => "DISABLED",
        Reason::TargetMatch | Reason::RuleMatch => "TARGETING_MATCH",
        // Neither is in the protocol's mapping: a failed prerequisite serves the off value,
        // which is what OpenFeature calls DEFAULT.
        Reason::TargetingRulesNotMet | Reason::PrerequisiteFailed => "DEFAULT",
        Reason::NotInRollout => "SPLIT",
        Reason::Enabled if outcome.bucketed => "SPLIT",
        Reason::Enabled if outcome.targeting_matched => "TARGETING_MATCH",
        Reason::Enabled => "STATIC",
        Reason::FlagNotFound | Reason::Error => "ERROR",
    }
}

fn subject(request: &Request<'_>) -> Result<Subject, ApiError> {
    let body: OfrepBody = parse_body(request.body)?;
    ofrep_subject(body, request.request_id)
}

/// Single-flag evaluation; errors answer with the protocol's status for their code.
pub async fn evaluate_one(app: &App, request: &Request<'_>, raw_key: &str) -> Response {
    let key = percent_encoding::percent_decode_str(raw_key).decode_utf8_lossy();
    let subject = match check_flag_key(&key, "key").and_then(|()| subject(request)) {
        Ok(subject) => subject,
        Err(error) => return error.ofrep(Some(&key)),
    };
    let outcome = app.evaluate_one(&subject, &key).await;
    let status = outcome.error_code().map_or(200, ofrep_status);
    json(request.encoding, status, &Item::new(&outcome))
}

/// Bulk evaluation of every flag, with an `ETag` over the evaluated results. A client
/// re-fetching after a change event names the configuration it heard of; a newer one
/// than this environment has is looked for first (bounded; see [`crate::changes`]).
pub async fn evaluate_bulk(app: &App, request: &Request<'_>) -> Response {
    let claim = refetch::parse_claim(request.query);
    let subject = match claim.and_then(|claim| Ok((claim, subject(request)?))) {
        Ok((claim, subject)) => {
            app.changes.refresh_if_claimed_newer(&claim, &app.cache, &app.freshness, app.clock.wall()).await;
            subject
        }
        Err(error) => return error.ofrep(None),
    };
    let version = app.changes.latest();
    let outcomes = match app.evaluate_all(&subject).await {
        Ok(outcomes) => outcomes,
        Err(why) => return ApiError::Unavailable(format!("flag store unavailable: {why}")).ofrep(None),
    };
    #[derive(Serialize)]
    struct Bulk<'a> {
        flags: Vec<Item<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        metadata: Option<refetch::SetMetadata<'a>>,
        #[serde(rename = "eventStreams", skip_serializing_if = "Option::is_none")]
        event_streams: Option<[refetch::EventStream<'a>; 1]>,
    }
    let bulk = Bulk {
        flags: outcomes.iter().map(Item::new).collect(),
        metadata: refetch::set_metadata(version.as_deref()),
        event_streams: refetch::event_streams(&app.changes, version.as_deref()),
    };
    // Plain JSON whatever the transport: the ETag is over this text.
    let response = json(BodyEncoding::Json, 200, &bulk);
    if response.status != 200 {
        return response;
    }
    let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&response.body));
    if request.if_none_match.is_some_and(|header| etag_matches(header, &etag)) {
        return Response { etag: Some(etag), ..Response::json(304, Vec::new()) };
    }
    Response { etag: Some(etag), ..response }
}

/// `If-None-Match` semantics: a list of tags, weak or strong, or `*`.
fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::etag_matches;

    #[test]
    fn if_none_match_lists_weak_tags_and_star() {
        let etag = "\"abc\"";
        assert!(etag_matches("\"abc\"", etag));
        assert!(etag_matches("W/\"abc\"", etag));
        assert!(etag_matches("\"x\", \"abc\"", etag));
        assert!(etag_matches("*", etag));
        assert!(!etag_matches("\"abcd\"", etag));
        assert!(!etag_matches("abc", etag));
    }
}
