//! Property tests of the OFREP routes against the protocol's OpenAPI document, written
//! from its facts: the bulk route's query parameters (`flagConfigEtag`: a string;
//! `flagConfigLastModified`: an integer ≥ 0 or a `date-time`) and both routes' request
//! bodies (`evaluationRequest`/`bulkEvaluationRequest`: an object with a required
//! `context` object). Whatever is sent, the answer is one the document lists for it — a
//! 200 in the success shape, a 400 with one of its error codes, a 404 `FLAG_NOT_FOUND` —
//! with a schema-valid request never refused as malformed, a schema-invalid one never
//! accepted, no error repeating what was sent, and never a 5xx.

mod common;

use std::sync::Arc;

use flagfn::api::{handle, BodyEncoding, Method, Request};
use flagfn::app::App;
use flagfn::clock::Clock;
use proptest::prelude::*;
use serde_json::Value;

/// What a generated value should get, when the schema says.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Valid,
    Invalid,
    Either,
}

fn last_modified() -> impl Strategy<Value = (String, Expect)> {
    let date = (0u32..=9999, 1u32..=12, 1u32..=28, 0u32..24, 0u32..60, 0u32..60);
    let fraction = prop_oneof![Just(String::new()), (0u32..1_000_000).prop_map(|f| format!(".{f}"))];
    let offset = prop_oneof![
        Just("Z".to_owned()),
        Just("z".to_owned()),
        (prop::bool::ANY, 0u32..24, 0u32..60)
            .prop_map(|(plus, h, m)| format!("{}{h:02}:{m:02}", if plus { '+' } else { '-' })),
    ];
    prop_oneof![
        any::<u64>().prop_map(|n| (n.to_string(), Expect::Valid)),
        "[0-9]{20,40}".prop_map(|n| (n, Expect::Valid)),
        (i64::MIN..0).prop_map(|n| (n.to_string(), Expect::Invalid)),
        (any::<f64>()).prop_filter("not integral", |f| f.fract() != 0.0).prop_map(|f| (f.to_string(), Expect::Invalid)),
        (date, fraction, offset).prop_map(|((y, mo, d, h, mi, s), f, o)| {
            (format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{f}{o}"), Expect::Valid)
        }),
        "\\PC{0,40}".prop_map(|s| (s, Expect::Either)),
        ".{0,40}".prop_map(|s| (s, Expect::Either)),
    ]
}

/// Any string is a valid `flagConfigEtag` (the schema says `string`).
fn etag() -> impl Strategy<Value = (String, Expect)> {
    prop_oneof![
        "\\PC{0,300}".prop_map(|s| (s, Expect::Valid)),
        "[a-z]{0,5}[\\x00-\\x1f][a-z]{0,5}".prop_map(|s| (s, Expect::Valid)),
        ".{0,300}".prop_map(|s| (s, Expect::Valid)),
    ]
}

fn query(etag: Option<&str>, last_modified: Option<&str>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(etag) = etag {
        query.append_pair("flagConfigEtag", etag);
    }
    if let Some(at) = last_modified {
        query.append_pair("flagConfigLastModified", at);
    }
    query.finish()
}

fn app() -> Arc<App> {
    let (app, _) = common::app::file_app("tests/fixtures/api_flags.json", Clock::system());
    app.changes.serve();
    app
}

async fn bulk(app: &App, query: &str) -> (u16, Value) {
    let request = Request {
        method: Method::Post,
        path: "/ofrep/v1/evaluate/flags",
        query,
        if_none_match: None,
        body: br#"{"context":{"targetingKey":"user-1","plan":"pro"}}"#,
        request_id: "req-prop",
        encoding: BodyEncoding::Json,
    };
    let response = handle(app, request).await;
    (response.status, serde_json::from_slice(&response.body).unwrap_or(Value::Null))
}

/// `metadata`: an object whose values are booleans, strings or numbers.
fn check_metadata(metadata: &Value) {
    let object = metadata.as_object().unwrap_or_else(|| panic!("metadata is an object: {metadata}"));
    assert!(object.values().all(|v| v.is_boolean() || v.is_string() || v.is_number()), "{metadata}");
}

/// `bulkEvaluationSuccess` as the protocol's schema has it (items: `evaluationSuccess`,
/// `evaluationFailure` or `flagNotFound`; `eventStreams`; `metadata`).
fn check_success(body: &Value) {
    let flags = body["flags"].as_array().unwrap_or_else(|| panic!("flags is an array: {body}"));
    for item in flags {
        assert!(item["key"].is_string(), "{item}");
        if let Some(code) = item.get("errorCode") {
            let known = ["PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "GENERAL", "FLAG_NOT_FOUND"];
            assert!(known.contains(&code.as_str().unwrap_or("")), "{item}");
        } else {
            // Not checked against the schema's `reason` enum: flagfn also answers OpenFeature's
            // `DEFAULT` and `STALE`, which it lacks (docs/api.md, "Reasons").
            assert!(item["reason"].is_string(), "{item}");
            assert!(item.get("variant").is_none_or(|v| v.is_string() || v.is_null()), "{item}");
        }
        if let Some(metadata) = item.get("metadata") {
            check_metadata(metadata);
        }
    }
    if let Some(metadata) = body.get("metadata") {
        check_metadata(metadata);
    }
    let streams = body["eventStreams"].as_array().unwrap_or_else(|| panic!("a stream is served: {body}"));
    for stream in streams {
        assert!(stream["type"].is_string(), "{stream}");
        assert!(stream.get("url").is_some() != stream.get("endpoint").is_some(), "exactly one of url, endpoint");
        if let Some(endpoint) = stream.get("endpoint") {
            assert!(endpoint["requestUri"].as_str().is_some_and(|u| u.starts_with('/')), "{stream}");
        }
        assert!(stream["inactivityDelaySec"].as_u64().is_some_and(|s| s >= 1), "{stream}");
    }
}

fn check(status: u16, body: &Value, sent: &[&str], expect: Expect) {
    match status {
        200 => {
            assert_ne!(expect, Expect::Invalid, "accepted a value outside the schema: {sent:?}");
            check_success(body);
        }
        400 => {
            assert_ne!(expect, Expect::Valid, "refused a value the schema allows: {sent:?}: {body}");
            assert_eq!(body["errorCode"], "PARSE_ERROR", "{body}");
            let details = body["errorDetails"].as_str().unwrap_or_else(|| panic!("errorDetails: {body}"));
            for value in sent.iter().filter(|v| v.chars().count() >= 4) {
                assert!(!details.contains(*value), "the answer repeats {value:?}: {details}");
            }
        }
        other => panic!("status {other} for {sent:?}: {body}"),
    }
}

fn combine(a: Expect, b: Expect) -> Expect {
    match (a, b) {
        (Expect::Invalid, _) | (_, Expect::Invalid) => Expect::Invalid,
        (Expect::Valid, Expect::Valid) => Expect::Valid,
        _ => Expect::Either,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_refetch_parameters_get_a_schema_shaped_answer(
        at in prop::option::of(last_modified()),
        tag in prop::option::of(etag()),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let app = app();
        let query = query(tag.as_ref().map(|t| t.0.as_str()), at.as_ref().map(|a| a.0.as_str()));
        let (status, body) = runtime.block_on(bulk(&app, &query));
        let expect = combine(tag.as_ref().map_or(Expect::Valid, |t| t.1), at.as_ref().map_or(Expect::Valid, |a| a.1));
        let sent: Vec<&str> = tag.iter().map(|t| t.0.as_str()).chain(at.iter().map(|a| a.0.as_str())).collect();
        check(status, &body, &sent, expect);
    }
}

#[test]
fn a_value_given_twice_is_refused() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let app = app();
    let (status, body) = runtime.block_on(bulk(&app, "flagConfigLastModified=1&flagConfigLastModified=2"));
    assert_eq!((status, &body["errorCode"]), (400, &Value::from("PARSE_ERROR")), "{body}");
}

// ---- request bodies -----------------------------------------------------------------

/// A plain JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-z0-9 ]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request body and whether the protocol's schema allows it. A schema-valid context is
/// any object; its `targetingKey`, when present, is a string (OpenFeature's type).
fn request_body() -> impl Strategy<Value = (Vec<u8>, Expect)> {
    let marker = "[a-f0-9]{16}".prop_map(|hex| format!("secret-{hex}"));
    let context = (prop::collection::btree_map("[a-zA-Z]{1,8}", json_value(), 0..6), prop::option::of(marker.clone()));
    let valid = context.prop_map(|(attributes, key)| {
        let mut context: serde_json::Map<String, Value> = attributes.into_iter().collect();
        context.remove("targetingKey");
        if let Some(key) = key {
            context.insert("targetingKey".into(), Value::from(key));
        }
        (serde_json::json!({"context": context}).to_string().into_bytes(), Expect::Valid)
    });
    let invalid = prop_oneof![
        Just(Vec::new()),
        Just(b"{}".to_vec()),
        json_value().prop_filter("not an object", |v| !v.is_object()).prop_map(|v| v.to_string().into_bytes()),
        json_value()
            .prop_filter("not an object", |v| !v.is_object())
            .prop_map(|v| serde_json::json!({"context": v}).to_string().into_bytes()),
        (marker, json_value().prop_filter("not a string", |v| !v.is_string()))
            .prop_map(|(m, k)| serde_json::json!({"context": {"targetingKey": k, "note": m}}).to_string().into_bytes()),
        "[{\\[\"a-z:,]{1,12}"
            .prop_filter("not JSON", |t| serde_json::from_str::<Value>(t).is_err())
            .prop_map(String::into_bytes),
    ];
    prop_oneof![3 => valid, 2 => invalid.prop_map(|body| (body, Expect::Invalid))]
}

async fn post(app: &App, path: &str, body: &[u8]) -> (u16, Value) {
    let request = Request {
        method: Method::Post,
        path,
        query: "",
        if_none_match: None,
        body,
        request_id: "req-prop",
        encoding: BodyEncoding::Json,
    };
    let response = handle(app, request).await;
    (response.status, serde_json::from_slice(&response.body).unwrap_or(Value::Null))
}

/// The single-flag answers the document lists: `serverEvaluationSuccess`, 400
/// `evaluationFailure` (its four codes), 404 `flagNotFound`.
fn check_single(key: &str, status: u16, body: &Value, expect: Expect) {
    assert_eq!(body["key"], key, "{body}");
    match status {
        200 => {
            assert_ne!(expect, Expect::Invalid, "accepted a body outside the schema: {body}");
            assert!(body["reason"].is_string() && body.get("errorCode").is_none(), "{body}");
            assert!(body.get("variant").is_none_or(|v| v.is_string()), "{body}");
            if let Some(metadata) = body.get("metadata") {
                check_metadata(metadata);
            }
        }
        400 => {
            let code = body["errorCode"].as_str().unwrap_or("");
            assert!(["PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "GENERAL"].contains(&code), "{body}");
            if expect == Expect::Valid {
                // A schema-valid request may lack what a flag needs, or ask for a malformed
                // flag; it is never itself refused as malformed.
                let flag_is_malformed = key == "broken" && code == "PARSE_ERROR";
                assert!(
                    code == "TARGETING_KEY_MISSING" || flag_is_malformed,
                    "refused a body the schema allows: {body}"
                );
            }
        }
        404 => assert_eq!(body["errorCode"], "FLAG_NOT_FOUND", "{body}"),
        other => panic!("status {other}: {body}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn any_request_body_gets_an_answer_the_protocol_lists(
        (body, expect) in request_body(),
        key in prop_oneof![
            Just("on".to_owned()), Just("abc".to_owned()), Just("half".to_owned()), Just("broken".to_owned()),
            Just("ghost".to_owned()), "[a-z-]{1,12}",
        ],
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let app = app();
        let text = String::from_utf8_lossy(&body).into_owned();
        let secrets: Vec<&str> = text.match_indices("secret-").map(|(i, _)| &text[i..(i + 23).min(text.len())]).collect();

        let (status, answer) = runtime.block_on(post(&app, &format!("/ofrep/v1/evaluate/flags/{key}"), &body));
        check_single(&key, status, &answer, expect);
        let (status, bulk_answer) = runtime.block_on(post(&app, "/ofrep/v1/evaluate/flags", &body));
        match status {
            200 => {
                prop_assert_ne!(expect, Expect::Invalid, "bulk accepted a body outside the schema: {}", text);
                check_success(&bulk_answer);
            }
            400 => {
                prop_assert_ne!(expect, Expect::Valid, "bulk refused a body the schema allows: {}", bulk_answer);
                let code = bulk_answer["errorCode"].as_str().unwrap_or("");
                prop_assert!(["PARSE_ERROR", "INVALID_CONTEXT"].contains(&code), "{}", bulk_answer);
            }
            other => prop_assert!(false, "bulk status {}: {}", other, bulk_answer),
        }
        // No answer repeats what the caller sent.
        for secret in &secrets {
            prop_assert!(!answer.to_string().contains(secret), "{} in {}", secret, answer);
            prop_assert!(!bulk_answer.to_string().contains(secret), "{} in {}", secret, bulk_answer);
        }
    }
}
