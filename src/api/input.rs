//! Request bodies and query strings, checked against the limits of docs/api.md before any
//! flag is looked at. Every problem becomes an [`ApiError`] with a message that names
//! the field — never the user's values.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ApiError;
use crate::flag::MAX_KEY_BYTES;
use crate::outcome::Subject;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longest user id, in bytes.
pub const MAX_USER_ID_BYTES: usize = 1024;
/// Deepest context nesting (the context object itself is depth 1).
pub const MAX_CONTEXT_DEPTH: usize = 10;
/// Most keys in a context, counted through every nested object.
pub const MAX_CONTEXT_KEYS: usize = 200;

/// The body of the native routes (and of direct-invoke events, whose extra `action`
/// field is ignored like any other unknown field).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NativeBody<'a> {
    /// The user id.
    pub user_id: Option<String>,
    /// The flag for `/evaluate`.
    pub flag_key: Option<String>,
    /// The flags for `/batch_evaluate`; absent means every flag. Borrowed from the body
    /// where no escapes force a copy (up to 1,000 keys: 1,000 allocations saved).
    #[serde(borrow)]
    pub flag_keys: Option<Vec<std::borrow::Cow<'a, str>>>,
    /// The evaluation context.
    pub context: Option<Map<String, Value>>,
}

/// The body of the OFREP routes. The context is kept as a raw value so a wrong type is
/// reported as `INVALID_CONTEXT`, not as a parse error.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OfrepBody {
    /// `{"targetingKey": ..., ...attributes}`.
    pub context: Option<Value>,
}

/// Parses a JSON body; an empty body is the type's default.
pub fn parse_body<'de, T: Deserialize<'de> + Default>(body: &'de [u8]) -> Result<T, ApiError> {
    // JSON's whitespace only: a body of a form feed (`is_ascii_whitespace` includes it)
    // is not an empty body but malformed JSON.
    match body.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        None => return Ok(T::default()),
        // serde's derived structs also accept arrays (fields by position): not here.
        Some(b'{') => {}
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() => {
            return Err(ApiError::MalformedJson("request body is not valid JSON".into()));
        }
        Some(_) => return Err(ApiError::BadRequest("request body must be a JSON object".into())),
    }
    // The fast path; only a failure is parsed again to find the path to the bad field.
    serde_json::from_slice(body).map_err(|_| explain::<T>(body))
}

/// Why `body` does not parse as a `T`, naming the field (but never its value).
fn explain<'de, T: Deserialize<'de>>(body: &'de [u8]) -> ApiError {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) if e.inner().is_syntax() || e.inner().is_eof() => {
            ApiError::MalformedJson(format!("request body is not valid JSON: {}", e.inner()))
        }
        Err(e) => ApiError::BadRequest(format!("`{}`: {}", e.path(), without_values(&e.inner().to_string()))),
        Ok(_) => match de.end() {
            Err(e) => ApiError::MalformedJson(format!("request body is not valid JSON: {e}")),
            Ok(()) => ApiError::BadRequest("request body does not have the expected fields".into()),
        },
    }
}

/// serde's messages quote the offending value (``invalid type: string "bob"``,
/// ``invalid type: integer `4155550123` ``); keep the kind and drop every quoted
/// or backticked value, which may be user data.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote = None;
    for c in message.chars() {
        match (quote, c) {
            (None, '"' | '`') => quote = Some(c),
            (Some(open), _) if c == open => quote = None,
            (None, _) => out.push(c),
            (Some(_), _) => {}
        }
    }
    // `integer , expected` → `integer, expected`
    out.replace(" ,", ",").replace("  ", " ").trim_end().to_owned()
}

/// `user_id` and `flag_key` from a query string (percent-decoded).
pub fn query_params(query: &str) -> (Option<String>, Option<String>) {
    let (mut user_id, mut flag_key) = (None, None);
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "user_id" => user_id = Some(value.into_owned()),
            "flag_key" => flag_key = Some(value.into_owned()),
            _ => {}
        }
    }
    (user_id, flag_key)
}

/// The legacy route's parameters, checked in the Python service's order and with its
/// texts (docs/api.md): no parameters at all, no `user_id`, no `flag_key`, a blank `user_id`.
pub fn legacy_params(query: &str) -> Result<(String, String), ApiError> {
    let missing = |text: &str| Err(ApiError::BadRequest(text.to_owned()));
    if form_urlencoded::parse(query.as_bytes()).next().is_none() {
        return missing("Missing query parameters. Required: user_id, flag_key");
    }
    let (user_id, flag_key) = query_params(query);
    // An empty `flag_key=` is as missing as an absent one (Python tested `not flag_key`).
    match (user_id, flag_key.filter(|key| !key.is_empty())) {
        (None, _) => missing("Missing required parameter: user_id"),
        (_, None) => missing("Missing required parameter: flag_key"),
        (Some(user_id), _) if user_id.trim().is_empty() => missing("user_id cannot be empty"),
        (Some(user_id), Some(flag_key)) => Ok((user_id, flag_key)),
    }
}

/// Checks a flag key the caller named: an empty or over-long key could never exist, and
/// sending it to DynamoDB would turn a caller's mistake into a store error.
pub fn check_flag_key(key: &str, field: &str) -> Result<(), ApiError> {
    crate::flag::check_key(key).map_err(|_| {
        ApiError::BadRequest(format!("`{field}` must be 1–{MAX_KEY_BYTES} bytes without control characters"))
    })
}

/// Builds the request's subject after checking the user id and context limits.
pub fn subject(
    user_id: Option<String>,
    context: Option<Map<String, Value>>,
    request_id: &str,
) -> Result<Subject, ApiError> {
    check_user_id(user_id.as_deref(), "user_id").map_err(ApiError::BadRequest)?;
    let context = context.unwrap_or_default();
    check_context(&context)?;
    Ok(new_subject(user_id, context, request_id))
}

/// A user id within [`MAX_USER_ID_BYTES`]; the message names the field as the caller sent it.
fn check_user_id(user_id: Option<&str>, field: &str) -> Result<(), String> {
    match user_id {
        Some(id) if id.len() > MAX_USER_ID_BYTES => Err(format!("`{field}` is longer than {MAX_USER_ID_BYTES} bytes")),
        _ => Ok(()),
    }
}

fn new_subject(user_id: Option<String>, context: Map<String, Value>, request_id: &str) -> Subject {
    Subject { user_id: user_id.map(Arc::from), context: Arc::new(context), request_id: Arc::from(request_id) }
}

/// Depth and size limits on a context.
pub fn check_context(context: &Map<String, Value>) -> Result<(), ApiError> {
    let mut keys = 0usize;
    let mut stack: Vec<(&Value, usize)> = context.values().map(|v| (v, 2)).collect();
    keys += context.len();
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(map) => {
                keys += map.len();
                Box::new(map.values())
            }
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        if depth > MAX_CONTEXT_DEPTH {
            return Err(ApiError::InvalidContext(format!("context is nested deeper than {MAX_CONTEXT_DEPTH} levels")));
        }
        stack.extend(children.map(|v| (v, depth + 1)));
    }
    if keys > MAX_CONTEXT_KEYS {
        return Err(ApiError::InvalidContext(format!("context has more than {MAX_CONTEXT_KEYS} keys")));
    }
    Ok(())
}

/// What an OFREP request without a `context` is told.
const CONTEXT_REQUIRED: &str =
    "the request body must be a JSON object with a `context` object (`{\"context\": {}}` at least)";

/// The OFREP context split into the targeting key and the attributes.
pub fn ofrep_subject(body: OfrepBody, request_id: &str) -> Result<Subject, ApiError> {
    // The protocol requires a body with a `context` object (`{"context": {}}` when there
    // is nothing to say); OpenFeature's providers always send one, so a request without
    // it is a mistake worth naming rather than an empty context to guess.
    let context = match body.context {
        None => return Err(ApiError::InvalidContext(CONTEXT_REQUIRED.into())),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(ApiError::InvalidContext("`context` must be a JSON object".into())),
    };
    // Absent is fine (a flag may need no user); present, it must be a string — `null`
    // included, which OpenFeature never sends for a set key.
    let user_id = match context.get("targetingKey") {
        None => None,
        Some(Value::String(key)) => Some(key.clone()),
        Some(_) => return Err(ApiError::InvalidContext("`context.targetingKey` must be a string".into())),
    };
    check_user_id(user_id.as_deref(), "targetingKey").map_err(ApiError::InvalidContext)?;
    check_context(&context)?;
    Ok(new_subject(user_id, context, request_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Map<String, Value> {
        let mut value = json!(1);
        for _ in 1..depth {
            value = json!({ "n": value });
        }
        json!({ "n": value }).as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn context_depth_limit_is_ten_levels() {
        assert!(check_context(&nested(10)).is_ok());
        assert!(matches!(check_context(&nested(11)), Err(ApiError::InvalidContext(m)) if m.contains("deeper than 10")));
        // Arrays count as levels too.
        let deep_list = json!({"a": [[[[[[[[[[1]]]]]]]]]]}).as_object().cloned().unwrap_or_default();
        assert!(check_context(&deep_list).is_err());
    }

    #[test]
    fn context_key_limit_counts_nested_keys() {
        let flat: Map<String, Value> = (0..200).map(|i| (format!("k{i}"), json!(i))).collect();
        assert!(check_context(&flat).is_ok());
        let mut over = flat.clone();
        over.insert("nested".into(), json!({"x": 1})); // 201 top-level + 1 nested
        assert!(check_context(&over).is_err());
    }

    #[test]
    fn body_errors_name_the_field_but_not_the_value() {
        let err = parse_body::<NativeBody>(br#"{"user_id": "alice", "flag_key": 5}"#).expect_err("wrong type");
        assert_eq!(err.native_status(), 400);
        let message = err.to_string();
        assert!(message.contains("flag_key") && message.contains("integer"), "{message}");
        let err = parse_body::<NativeBody>(br#"{"user_id": ["secret-user"]}"#).expect_err("wrong type");
        assert!(!err.to_string().contains("secret-user"), "{err}");
        let err = parse_body::<NativeBody>(br#"{"context": "secret-value"}"#).expect_err("wrong type");
        assert!(!err.to_string().contains("secret-value"), "{err}");
        // Numbers and booleans are quoted with backticks by serde: dropped too.
        let err = parse_body::<NativeBody>(br#"{"user_id": 4155550123}"#).expect_err("wrong type");
        assert!(err.to_string().starts_with("`user_id`: invalid type: integer, expected a string"), "{err}");
        let err = parse_body::<NativeBody>(br#"{"flag_keys": [true]}"#).expect_err("wrong type");
        assert!(!err.to_string().contains("true"), "{err}");
        assert!(matches!(parse_body::<NativeBody>(b"{nope"), Err(ApiError::MalformedJson(_))));
        assert!(matches!(parse_body::<NativeBody>(b"{} trailing"), Err(ApiError::MalformedJson(_))));
        assert!(matches!(parse_body::<NativeBody>(b"[1]"), Err(ApiError::BadRequest(m)) if m.contains("JSON object")));
        assert!(parse_body::<NativeBody>(b" \t\r\n ").is_ok());
        assert!(matches!(parse_body::<NativeBody>(b"\x0c"), Err(ApiError::MalformedJson(_))));
        assert!(matches!(parse_body::<OfrepBody>(b" \x0c "), Err(ApiError::MalformedJson(_))));
    }

    #[test]
    fn query_strings_are_percent_decoded() {
        let (user, flag) = query_params("flag_key=new%20checkout&user_id=a%2Bb%40x.io&other=1");
        assert_eq!(user.as_deref(), Some("a+b@x.io"));
        assert_eq!(flag.as_deref(), Some("new checkout"));
    }

    #[test]
    fn targeting_key_must_be_a_string() {
        for key in [json!(42), Value::Null, json!(["u"]), json!({"id": "u"})] {
            let body = OfrepBody { context: Some(json!({ "targetingKey": key })) };
            assert!(matches!(ofrep_subject(body, "r"), Err(ApiError::InvalidContext(_))), "{key}");
        }
        let body = OfrepBody { context: Some(json!({"plan": "pro"})) };
        assert_eq!(ofrep_subject(body, "r").expect("no key is fine").user_id, None);
        let body = OfrepBody { context: Some(json!([1])) };
        assert!(matches!(ofrep_subject(body, "r"), Err(ApiError::InvalidContext(_))));
        let body = OfrepBody { context: Some(json!({"targetingKey": "u", "plan": "pro"})) };
        let subject = ofrep_subject(body, "r").expect("valid");
        assert_eq!(subject.user_id.as_deref(), Some("u"));
        assert_eq!(subject.context.get("plan"), Some(&json!("pro")));
    }
}
