//! The native routes, answering exactly as the Python service did (plus `value`,
//! `version`, and `rule_id`/`stale`/`error` when they apply): `GET /evaluate`, `GET /`,
//! `POST /evaluate`, `POST /batch_evaluate`.

use super::encode::{field, written, Writer};
use super::input::{check_flag_key, legacy_params, parse_body, subject, NativeBody};
use super::{ApiError, Request, Response};
use crate::app::App;
use crate::eval::{ErrorCode, FlagValue};
use crate::outcome::Outcome;

/// One flag's result, in the Python service's shape (field order as Python wrote it).
struct NativeResult<'a> {
    user_id: Option<&'a str>,
    flag_key: &'a str,
    flag_id: Option<&'a str>,
    enabled: bool,
    reason: &'static str,
    variant: Option<&'a str>,
    value: Option<FlagValue<'a>>,
    version: Option<u64>,
    /// Written only when set.
    rule_id: Option<&'a str>,
    /// Written only when true.
    stale: bool,
    /// Written only when set.
    error_code: Option<&'static str>,
    /// Written only when set.
    error: Option<&'a str>,
    /// Write `"variant": null` when no variant was served (batches); the single-flag
    /// routes leave the key out, as the Python service did.
    null_variant: bool,
}

impl<'a> NativeResult<'a> {
    fn new(user_id: Option<&'a str>, outcome: &'a Outcome, null_variant: bool) -> Self {
        let view = outcome.view();
        // "Not found" is a reason here, as in Python, not an error.
        let error = outcome.error().filter(|(code, _)| *code != ErrorCode::FlagNotFound);
        // A flagd flag's variant and value come from its own variants only (nothing
        // served: no value, not the native boolean `false`).
        let flagd = outcome.flagd_value();
        let native = outcome.flagd().is_none();
        NativeResult {
            user_id,
            flag_key: outcome.key(),
            flag_id: outcome.flag().map(|f| f.flag_id()),
            enabled: outcome.enabled,
            reason: outcome.reason().as_str(),
            variant: flagd.map(|(name, _)| name).or(view.variant_key().filter(|_| native)),
            value: flagd.map(|(_, value)| FlagValue::Json(value)).or(view.value().filter(|_| native)),
            version: outcome.flag().map(|f| f.version()),
            rule_id: view.rule_id(),
            stale: outcome.stale,
            error_code: error.map(|(code, _)| code.as_str()),
            error: error.map(|(_, message)| message),
            null_variant,
        }
    }

    fn write(&self, w: &mut Writer<'_>) -> serde_json::Result<()> {
        w.raw("{");
        field!(w, "user_id");
        w.optional_string(self.user_id);
        field!(w, , "flag_key");
        w.string(self.flag_key);
        field!(w, , "flag_id");
        w.optional_string(self.flag_id);
        field!(w, , "enabled");
        w.boolean(self.enabled);
        field!(w, , "reason");
        w.string(self.reason);
        if self.variant.is_some() || self.null_variant {
            field!(w, , "variant");
            w.optional_string(self.variant);
        }
        field!(w, , "value");
        match self.value {
            None => w.raw("null"),
            Some(FlagValue::Bool(on)) => w.boolean(on),
            Some(FlagValue::Key(key)) => w.string(key),
            Some(FlagValue::Json(value)) => w.serde(value)?,
        }
        field!(w, , "version");
        w.optional_number(self.version);
        if let Some(rule_id) = self.rule_id {
            field!(w, , "rule_id");
            w.string(rule_id);
        }
        if self.stale {
            field!(w, , "stale");
            w.boolean(true);
        }
        if let Some(code) = self.error_code {
            field!(w, , "error_code");
            w.string(code);
        }
        if let Some(error) = self.error {
            field!(w, , "error");
            w.string(error);
        }
        w.raw("}");
        Ok(())
    }
}

/// `GET /evaluate?user_id=&flag_key=` (and `GET /`): the legacy route, with the Python
/// service's contract (docs/api.md): its status codes and error texts, a user id always
/// required, and an optional JSON body `{"context": {...}}` — a body that is not JSON
/// is ignored, as Python ignored it.
pub async fn evaluate_get(app: &App, request: &Request<'_>) -> Response {
    let (user_id, flag_key) = match legacy_params(request.query) {
        Ok(params) => params,
        Err(error) => return error.native(),
    };
    let context = parse_body::<NativeBody>(request.body).ok().and_then(|body| body.context);
    evaluate(app, Some(user_id), Some(flag_key), context, request).await
}

/// `POST /evaluate` with `{user_id, flag_key, context?}`: the legacy answers, except that
/// a missing user id is an error only where the answer needs one (exception 4 of docs/flag-format.md).
pub async fn evaluate_post(app: &App, request: &Request<'_>) -> Response {
    match parse_body::<NativeBody>(request.body) {
        Ok(body) => evaluate(app, body.user_id, body.flag_key, body.context, request).await,
        Err(error) => error.native(),
    }
}

/// One flag, answered as the Python service answered: `404` for an unknown flag, `400`
/// with the message for an evaluation error, `variant` only when one was served.
async fn evaluate(
    app: &App,
    user_id: Option<String>,
    flag_key: Option<String>,
    context: Option<serde_json::Map<String, serde_json::Value>>,
    request: &Request<'_>,
) -> Response {
    let Some(flag_key) = flag_key else {
        return ApiError::BadRequest("`flag_key` is required".into()).native();
    };
    let subject =
        match check_flag_key(&flag_key, "flag_key").and_then(|()| subject(user_id, context, request.request_id)) {
            Ok(subject) => subject,
            Err(error) => return error.native(),
        };
    let outcome = app.evaluate_one(&subject, &flag_key).await;
    match &outcome.error() {
        None => {
            written(request.encoding, 256, |w| NativeResult::new(subject.user_id.as_deref(), &outcome, false).write(w))
        }
        Some((code, message)) => ApiError::from_evaluation(*code, message, flag_key).native(),
    }
}

/// `POST /batch_evaluate` with `{user_id, flag_keys?, context?}`; no `flag_keys` means
/// every flag.
pub async fn batch(app: &App, request: &Request<'_>) -> Response {
    match batch_outcomes(app, request).await {
        Ok((user_id, outcomes)) => {
            let all_unavailable =
                !outcomes.is_empty() && outcomes.iter().all(|o| o.error_code() == Some(ErrorCode::General));
            if all_unavailable {
                let message = outcomes.first().and_then(Outcome::error).map(|(_, m)| m.to_string());
                return ApiError::Unavailable(message.unwrap_or_default()).native();
            }
            // ~150 bytes a flag (more escaped): sized once rather than grown by copying.
            let size = 64 + outcomes.len() * 192;
            written(request.encoding, size, |w| write_batch(w, user_id.as_deref(), &outcomes))
        }
        Err(error) => error.native(),
    }
}

async fn batch_outcomes(
    app: &App,
    request: &Request<'_>,
) -> Result<(Option<std::sync::Arc<str>>, Vec<Outcome>), ApiError> {
    let body: NativeBody = parse_body(request.body)?;
    if let Some(keys) = &body.flag_keys {
        if keys.len() > app.max_batch_flags {
            return Err(ApiError::BadRequest(format!("`flag_keys` names more than {} flags", app.max_batch_flags)));
        }
        keys.iter().try_for_each(|k| check_flag_key(k, "flag_keys[]"))?;
    }
    let subject = subject(body.user_id, body.context, request.request_id)?;
    let outcomes = match &body.flag_keys {
        Some(keys) => {
            // foldhash rather than SipHash: several times faster on short keys, and its
            // per-set random seed still keeps callers from engineering collisions.
            let mut seen = foldhash::HashSet::with_capacity_and_hasher(keys.len(), Default::default());
            let unique: Vec<&str> = keys.iter().map(|k| &**k).filter(|k| seen.insert(*k)).collect();
            app.evaluate_keys(&subject, &unique).await
        }
        None => app
            .evaluate_all(&subject)
            .await
            .map_err(|why| ApiError::Unavailable(format!("flag store unavailable: {why}")))?,
    };
    Ok((subject.user_id, outcomes))
}

/// `{"user_id": ..., "results": {flag_key: result, ...}}` in request order.
fn write_batch(w: &mut Writer<'_>, user_id: Option<&str>, outcomes: &[Outcome]) -> serde_json::Result<()> {
    w.raw("{");
    field!(w, "user_id");
    w.optional_string(user_id);
    field!(w, , "results");
    w.raw("{");
    for (i, outcome) in outcomes.iter().enumerate() {
        if i > 0 {
            w.raw(",");
        }
        w.string(outcome.key());
        w.raw(":");
        NativeResult::new(user_id, outcome, true).write(w)?;
    }
    w.raw("}}");
    Ok(())
}
