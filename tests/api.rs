//! The HTTP API (docs/api.md) through the real router, over tests/fixtures/api_flags.json.
//! Rollout buckets and variant points used below were computed with Python's hashlib
//! from the bucketing formulas of docs/flag-format.md, not by this crate.

mod common;

use std::collections::HashMap;

use flagfn::api::{handle, BodyEncoding, Method, Request, MAX_BODY_BYTES};
use flagfn::app::App;
use flagfn::clock::Clock;
use serde_json::{json, Value};

const FLAGS: &str = "tests/fixtures/api_flags.json";

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Value,
}

async fn call(app: &App, method: Method, path: &str, query: &str, body: &[u8], if_none_match: Option<&str>) -> Reply {
    let request =
        Request { method, path, query, if_none_match, body, request_id: "req-1", encoding: BodyEncoding::Json };
    let response = handle(app, request).await;
    let headers = response.headers().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let body =
        if response.body.is_empty() { Value::Null } else { serde_json::from_slice(&response.body).expect("JSON body") };
    Reply { status: response.status, headers, body }
}

async fn post(app: &App, path: &str, body: Value) -> Reply {
    call(app, Method::Post, path, "", body.to_string().as_bytes(), None).await
}

async fn ofrep(app: &App, key: &str, context: Value) -> Reply {
    post(app, &format!("/ofrep/v1/evaluate/flags/{key}"), json!({ "context": context })).await
}

fn app() -> std::sync::Arc<App> {
    common::app::file_app(FLAGS, Clock::manual()).0
}

#[tokio::test]
async fn get_evaluate_answers_in_the_python_shape() {
    let app = app();
    let reply = call(&app, Method::Get, "/evaluate", "user_id=user-1&flag_key=on", b"", None).await;
    assert_eq!(reply.status, 200);
    // `variant` only when one was served, as Python wrote it.
    assert_eq!(
        reply.body,
        json!({"user_id": "user-1", "flag_key": "on", "flag_id": "on-id", "enabled": true,
               "reason": "enabled", "value": true, "version": 3})
    );
    // `GET /` is the same route, and a JSON body may carry the context.
    let reply =
        call(&app, Method::Get, "/", "user_id=user-1&flag_key=pro-only", br#"{"context": {"plan": "pro"}}"#, None)
            .await;
    assert_eq!((reply.status, &reply.body["enabled"], &reply.body["reason"]), (200, &json!(true), &json!("enabled")));
}

#[tokio::test]
async fn post_evaluate_serves_variants_and_their_values() {
    let app = app();
    // Variant points (hashlib): user-9 → 0.154 (a), user-1 → 0.635 (b), user-2 → 0.866 (c).
    for (user, variant, value) in
        [("user-9", "a", json!("A")), ("user-1", "b", json!({"n": 2})), ("user-2", "c", json!("c"))]
    {
        let reply = post(&app, "/evaluate", json!({"user_id": user, "flag_key": "abc"})).await;
        assert_eq!(reply.status, 200);
        assert_eq!((&reply.body["variant"], &reply.body["value"]), (&json!(variant), &value), "{user}");
        assert_eq!(reply.body["version"], 2);
    }
    // Rollout buckets (hashlib): user-1 → 28 (in at 50 %), user-3 → 98 (out).
    let reply = post(&app, "/evaluate", json!({"user_id": "user-1", "flag_key": "half"})).await;
    assert_eq!((&reply.body["enabled"], &reply.body["reason"]), (&json!(true), &json!("enabled")));
    let reply = post(&app, "/evaluate", json!({"user_id": "user-3", "flag_key": "half"})).await;
    assert_eq!((&reply.body["enabled"], &reply.body["reason"]), (&json!(false), &json!("not_in_rollout")));
}

#[tokio::test]
async fn unknown_flags_are_404_on_single_flag_routes_and_a_reason_in_batches() {
    let app = app();
    let reply = post(&app, "/evaluate", json!({"user_id": "u", "flag_key": "ghost"})).await;
    assert_eq!((reply.status, reply.body), (404, json!({"error": "Feature flag not found: ghost"})));
    let reply = call(&app, Method::Get, "/evaluate", "user_id=u&flag_key=ghost", b"", None).await;
    assert_eq!((reply.status, reply.body), (404, json!({"error": "Feature flag not found: ghost"})));
    let reply = post(&app, "/batch_evaluate", json!({"user_id": "u", "flag_keys": ["ghost"]})).await;
    assert_eq!(
        reply.body["results"]["ghost"],
        json!({"user_id": "u", "flag_key": "ghost", "flag_id": null, "enabled": false,
               "reason": "flag_not_found", "variant": null, "value": null, "version": null})
    );
    let reply = ofrep(&app, "ghost", json!({"targetingKey": "u"})).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body["key"], "ghost");
    assert_eq!(reply.body["errorCode"], "FLAG_NOT_FOUND");
    assert!(reply.body["errorDetails"].is_string());
}

/// The legacy route keeps the Python service's statuses and texts (docs/api.md).
#[tokio::test]
async fn the_legacy_route_answers_with_pythons_statuses_and_texts() {
    let app = app();
    let cases: &[(&str, u16, &str)] = &[
        ("", 400, "Missing query parameters. Required: user_id, flag_key"),
        ("other=1", 400, "Missing required parameter: user_id"),
        ("flag_key=on", 400, "Missing required parameter: user_id"),
        ("user_id=u", 400, "Missing required parameter: flag_key"),
        ("user_id=u&flag_key=", 400, "Missing required parameter: flag_key"),
        ("user_id=&flag_key=on", 400, "user_id cannot be empty"),
        ("user_id=%20%09&flag_key=on", 400, "user_id cannot be empty"),
        ("user_id=u&flag_key=ghost", 404, "Feature flag not found: ghost"),
        ("user_id=u&flag_key=broken", 400, "rules[0].clauses[0]: unknown operator `like`"),
    ];
    for (path, answer) in [("/evaluate", "on"), ("/", "on")] {
        for (query, status, text) in cases {
            let reply = call(&app, Method::Get, path, query, b"", None).await;
            assert_eq!((reply.status, &reply.body), (*status, &json!({ "error": text })), "{path}?{query}");
        }
        // A user id is required even by a flag whose answer needs none (Python's rule).
        let reply = call(&app, Method::Get, path, &format!("flag_key={answer}"), b"", None).await;
        assert_eq!(reply.status, 400);
    }
    // A body that is not JSON is ignored, as Python ignored it: evaluated without context.
    let reply = call(&app, Method::Get, "/evaluate", "user_id=user-1&flag_key=pro-only", b"{nope", None).await;
    assert_eq!((reply.status, &reply.body["reason"]), (200, &json!("targeting_rules_not_met")));
    let reply = call(&app, Method::Get, "/evaluate", "user_id=user-1&flag_key=pro-only", b"\x0c", None).await;
    assert_eq!(reply.status, 200);
    // A served variant is written; none served, the key is left out.
    let reply = call(&app, Method::Get, "/evaluate", "user_id=user-9&flag_key=abc", b"", None).await;
    assert_eq!((reply.status, &reply.body["variant"]), (200, &json!("a")));
    let reply = call(&app, Method::Get, "/evaluate", "user_id=u&flag_key=multi-off", b"", None).await;
    assert_eq!((reply.status, reply.body.get("variant")), (200, None));
}

#[tokio::test]
async fn malformed_flags_are_parse_errors_that_name_the_problem() {
    let app = app();
    // Single flag: 400 with the problem, as Python answered an evaluation error.
    let reply = post(&app, "/evaluate", json!({"user_id": "u", "flag_key": "broken"})).await;
    assert_eq!(reply.status, 400);
    assert!(reply.body["error"].as_str().is_some_and(|m| m.contains("unknown operator `like`")), "{}", reply.body);
    // In a batch: a per-flag error, the others still answered.
    let reply = post(&app, "/batch_evaluate", json!({"user_id": "u", "flag_keys": ["broken"]})).await;
    let result = &reply.body["results"]["broken"];
    assert_eq!((&result["enabled"], &result["reason"]), (&json!(false), &json!("error")));
    assert_eq!(result["error_code"], "PARSE_ERROR");
    let reply = ofrep(&app, "broken", json!({"targetingKey": "u"})).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["errorCode"], "PARSE_ERROR");
}

#[tokio::test]
async fn a_user_id_is_required_only_when_the_outcome_depends_on_it() {
    let app = app();
    let reply = post(&app, "/evaluate", json!({"flag_key": "half"})).await;
    assert_eq!(reply.status, 400);
    assert!(reply.body["error"].as_str().is_some_and(|m| m.contains("user id")), "{}", reply.body);
    let reply = post(&app, "/evaluate", json!({"user_id": "  ", "flag_key": "half"})).await;
    assert_eq!(reply.status, 400);
    let reply = post(&app, "/evaluate", json!({"flag_key": "on"})).await;
    assert_eq!((reply.status, &reply.body["enabled"]), (200, &json!(true)));
    let reply = ofrep(&app, "half", json!({})).await;
    assert_eq!((reply.status, &reply.body["errorCode"]), (400, &json!("TARGETING_KEY_MISSING")));
}

#[tokio::test]
async fn batches_keep_request_order_drop_duplicates_and_inline_problems() {
    let app = app();
    let body = json!({"user_id": "alice", "flag_keys": ["vip", "ghost", "on", "vip", "broken", "needs-off"]});
    let reply = post(&app, "/batch_evaluate", body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["user_id"], "alice");
    let results = reply.body["results"].as_object().expect("results");
    let keys: Vec<&str> = results.keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["broken", "ghost", "needs-off", "on", "vip"]);
    assert_eq!(results["vip"]["reason"], "target_match");
    assert_eq!(results["vip"]["rule_id"], "target");
    assert_eq!(results["ghost"]["reason"], "flag_not_found");
    assert_eq!(results["broken"]["error_code"], "PARSE_ERROR");
    assert_eq!(results["needs-off"]["reason"], "prerequisite_failed");
    assert_eq!(results["on"]["user_id"], "alice");
}

#[tokio::test]
async fn a_batch_without_flag_keys_evaluates_every_flag() {
    let app = app();
    let reply = post(&app, "/batch_evaluate", json!({"user_id": "bob"})).await;
    assert_eq!(reply.status, 200);
    let results = reply.body["results"].as_object().expect("results");
    assert_eq!(results.len(), 11);
    assert_eq!(results["needs-on"]["enabled"], true);
    // bob's bucket for `half` is 1 (hashlib): in.
    assert_eq!(results["half"]["enabled"], true);
}

#[tokio::test]
async fn ofrep_reasons_values_variants_and_metadata() {
    let app = app();
    let cases = [
        (
            "on",
            json!({"targetingKey": "u"}),
            json!({"key": "on", "value": true, "reason": "STATIC", "variant": "on",
            "metadata": {"flag_id": "on-id", "version": 3}}),
        ),
        (
            "off",
            json!({"targetingKey": "u"}),
            json!({"key": "off", "value": false, "reason": "DISABLED", "variant": "off",
            "metadata": {"flag_id": "off", "version": 1}}),
        ),
        (
            "half",
            json!({"targetingKey": "user-3"}),
            json!({"key": "half", "value": false, "reason": "SPLIT", "variant": "off",
            "metadata": {"flag_id": "half", "version": 0}}),
        ),
        (
            "abc",
            json!({"targetingKey": "user-1"}),
            json!({"key": "abc", "value": {"n": 2}, "reason": "SPLIT", "variant": "b",
            "metadata": {"flag_id": "abc", "version": 2}}),
        ),
        (
            "pro-only",
            json!({"targetingKey": "u", "plan": "pro"}),
            json!({"key": "pro-only", "value": true,
            "reason": "TARGETING_MATCH", "variant": "on", "metadata": {"flag_id": "pro-only", "version": 0}}),
        ),
        (
            "pro-only",
            json!({"targetingKey": "u", "plan": "free"}),
            json!({"key": "pro-only", "value": false,
            "reason": "DEFAULT", "variant": "off", "metadata": {"flag_id": "pro-only", "version": 0}}),
        ),
        (
            "ruled",
            json!({"targetingKey": "u", "beta": true}),
            json!({"key": "ruled", "value": true,
            "reason": "TARGETING_MATCH", "variant": "on", "metadata": {"flag_id": "ruled", "version": 0, "rule_id": "beta-testers"}}),
        ),
        (
            "needs-off",
            json!({"targetingKey": "u"}),
            json!({"key": "needs-off", "value": false, "reason": "DEFAULT",
            "variant": "off", "metadata": {"flag_id": "needs-off", "version": 0}}),
        ),
        // A multivariate flag with no variant served: no value, so the SDK default applies.
        (
            "multi-off",
            json!({"targetingKey": "u"}),
            json!({"key": "multi-off", "reason": "DISABLED", "variant": null,
            "metadata": {"flag_id": "multi-off", "version": 0}}),
        ),
    ];
    for (key, context, expected) in cases {
        let reply = ofrep(&app, key, context.clone()).await;
        assert_eq!(reply.status, 200, "{key} {context}");
        assert_eq!(reply.body, expected, "{key} {context}");
    }
}

#[tokio::test]
async fn ofrep_keys_are_percent_decoded() {
    let app = app();
    let reply = post(&app, "/ofrep/v1/evaluate/flags/needs%2Don", json!({"context": {"targetingKey": "u"}})).await;
    assert_eq!((reply.status, &reply.body["key"]), (200, &json!("needs-on")));
}

#[tokio::test]
async fn ofrep_keys_may_contain_slashes_raw_or_encoded() {
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("api-slash-flags.json");
    let flags = json!({"flags": [{"key": "team/checkout", "enabled": true, "rollout_percentage": 100}]});
    std::fs::write(&file, flags.to_string()).expect("write flags");
    let app = common::app::file_app(file.to_str().expect("utf-8 path"), Clock::manual()).0;
    for path in ["/ofrep/v1/evaluate/flags/team/checkout", "/ofrep/v1/evaluate/flags/team%2Fcheckout"] {
        let reply = post(&app, path, json!({"context": {"targetingKey": "u"}})).await;
        assert_eq!(
            (reply.status, &reply.body["key"], &reply.body["value"]),
            (200, &json!("team/checkout"), &json!(true))
        );
    }
    let reply = post(&app, "/ofrep/v1/evaluate/flags/team/other", json!({"context": {"targetingKey": "u"}})).await;
    assert_eq!((reply.status, &reply.body["errorCode"]), (404, &json!("FLAG_NOT_FOUND")));
}

#[tokio::test]
async fn ofrep_bulk_has_an_etag_and_honours_if_none_match() {
    let app = app();
    let body = json!({"context": {"targetingKey": "user-1", "plan": "pro"}}).to_string();
    let first = call(&app, Method::Post, "/ofrep/v1/evaluate/flags", "", body.as_bytes(), None).await;
    assert_eq!(first.status, 200);
    let flags = first.body["flags"].as_array().expect("flags");
    assert_eq!(flags.len(), 11);
    let keys: Vec<&str> = flags.iter().filter_map(|f| f["key"].as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "bulk results are sorted by key, so the ETag is stable");
    let broken = flags.iter().find(|f| f["key"] == "broken").expect("broken listed");
    assert_eq!(broken["errorCode"], "PARSE_ERROR");
    let etag = first.headers.get("etag").expect("ETag").clone();
    let again = call(&app, Method::Post, "/ofrep/v1/evaluate/flags", "", body.as_bytes(), Some(&etag)).await;
    assert_eq!(again.status, 304);
    assert_eq!(again.body, Value::Null);
    assert_eq!(again.headers.get("etag"), Some(&etag));
    // Another user's results differ (user-3 is out of `half`), so the tag does too.
    let other = json!({"context": {"targetingKey": "user-3", "plan": "pro"}}).to_string();
    let changed = call(&app, Method::Post, "/ofrep/v1/evaluate/flags", "", other.as_bytes(), Some(&etag)).await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.headers.get("etag"), Some(&etag));
}

#[tokio::test]
async fn every_bad_input_of_spec_section_5_gets_its_status() {
    let app = app();
    let long_user = "u".repeat(1025);
    let deep = (0..11).fold(json!(1), |v, _| json!({ "n": v }));
    let wide: serde_json::Map<String, Value> = (0..201).map(|i| (format!("k{i}"), json!(i))).collect();
    let too_many: Vec<String> = (0..1001).map(|i| format!("f{i}")).collect();
    let cases: Vec<(&str, Method, &str, Vec<u8>, u16)> = vec![
        ("malformed JSON", Method::Post, "/evaluate", b"{\"user_id\": ".to_vec(), 400),
        ("wrong type", Method::Post, "/evaluate", br#"{"user_id": "u", "flag_key": 7}"#.to_vec(), 400),
        (
            "context not an object",
            Method::Post,
            "/evaluate",
            br#"{"user_id": "u", "flag_key": "on", "context": [1]}"#.to_vec(),
            400,
        ),
        ("flag_key missing", Method::Post, "/evaluate", br#"{"user_id": "u"}"#.to_vec(), 400),
        (
            "flag_key too long",
            Method::Post,
            "/evaluate",
            json!({"user_id": "u", "flag_key": "k".repeat(257)}).to_string().into_bytes(),
            400,
        ),
        ("body over 256 KiB", Method::Post, "/evaluate", vec![b' '; MAX_BODY_BYTES + 1], 413),
        (
            "over 1,000 flag keys",
            Method::Post,
            "/batch_evaluate",
            json!({"user_id": "u", "flag_keys": too_many}).to_string().into_bytes(),
            400,
        ),
        (
            "user id over 1 KiB",
            Method::Post,
            "/evaluate",
            json!({"user_id": long_user, "flag_key": "on"}).to_string().into_bytes(),
            400,
        ),
        (
            "context deeper than 10",
            Method::Post,
            "/evaluate",
            json!({"user_id": "u", "flag_key": "on", "context": {"d": deep}}).to_string().into_bytes(),
            400,
        ),
        (
            "context over 200 keys",
            Method::Post,
            "/evaluate",
            json!({"user_id": "u", "flag_key": "on", "context": wide}).to_string().into_bytes(),
            400,
        ),
        ("unknown route", Method::Get, "/nope", Vec::new(), 404),
        ("wrong method", Method::Other, "/evaluate", Vec::new(), 405),
        ("GET on a POST route", Method::Get, "/batch_evaluate", Vec::new(), 405),
    ];
    for (what, method, path, body, status) in cases {
        let reply = call(&app, method, path, "", &body, None).await;
        assert_eq!(reply.status, status, "{what}");
        assert!(reply.body["error"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {}", reply.body);
    }
    let reply = call(&app, Method::Other, "/evaluate", "", b"", None).await;
    assert_eq!(reply.headers.get("allow").map(String::as_str), Some("GET, HEAD, POST, OPTIONS"));
    let reply = call(&app, Method::Options, "/health", "", b"", None).await;
    assert_eq!((reply.status, reply.headers.get("allow").map(String::as_str)), (204, Some("GET, HEAD, OPTIONS")));
    let reply = call(&app, Method::Options, "/batch_evaluate", "", b"", None).await;
    assert_eq!(reply.headers.get("allow").map(String::as_str), Some("POST, OPTIONS"));
}

#[tokio::test]
async fn ofrep_bad_inputs_use_ofrep_error_codes() {
    let app = app();
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("malformed JSON", "/ofrep/v1/evaluate/flags/on", b"{".to_vec(), 400, "PARSE_ERROR"),
        ("context not an object", "/ofrep/v1/evaluate/flags/on", br#"{"context": 5}"#.to_vec(), 400, "INVALID_CONTEXT"),
        (
            "targetingKey not a string",
            "/ofrep/v1/evaluate/flags",
            br#"{"context": {"targetingKey": 5}}"#.to_vec(),
            400,
            "INVALID_CONTEXT",
        ),
        // The protocol requires a body with a `context` object.
        ("no body, single", "/ofrep/v1/evaluate/flags/on", b"".to_vec(), 400, "INVALID_CONTEXT"),
        ("no body, bulk", "/ofrep/v1/evaluate/flags", b"".to_vec(), 400, "INVALID_CONTEXT"),
        ("no context, bulk", "/ofrep/v1/evaluate/flags", b"{}".to_vec(), 400, "INVALID_CONTEXT"),
        ("context null", "/ofrep/v1/evaluate/flags/on", br#"{"context": null}"#.to_vec(), 400, "INVALID_CONTEXT"),
        ("a form feed only", "/ofrep/v1/evaluate/flags/on", b"\x0c".to_vec(), 400, "PARSE_ERROR"),
        ("a form feed in space", "/ofrep/v1/evaluate/flags", b" \x0c\n".to_vec(), 400, "PARSE_ERROR"),
        (
            "targetingKey null",
            "/ofrep/v1/evaluate/flags/on",
            br#"{"context": {"targetingKey": null}}"#.to_vec(),
            400,
            "INVALID_CONTEXT",
        ),
        (
            "targetingKey over 1 KiB",
            "/ofrep/v1/evaluate/flags/on",
            json!({"context": {"targetingKey": "x".repeat(1025)}}).to_string().into_bytes(),
            400,
            "INVALID_CONTEXT",
        ),
    ];
    for (what, path, body, status, code) in cases {
        let reply = call(&app, Method::Post, path, "", &body, None).await;
        assert_eq!((reply.status, reply.body["errorCode"].as_str()), (status, Some(code)), "{what}: {}", reply.body);
        assert!(reply.body["errorDetails"].is_string(), "{what}");
    }
}

#[tokio::test]
async fn every_response_carries_the_security_and_cors_headers() {
    let app = app();
    for reply in [
        call(&app, Method::Get, "/health", "", b"", None).await,
        call(&app, Method::Get, "/nope", "", b"", None).await,
        post(&app, "/evaluate", json!({"user_id": "u", "flag_key": "on"})).await,
    ] {
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("cache-control", "no-store"),
            ("access-control-allow-origin", "*"),
            ("access-control-allow-methods", "GET, POST, OPTIONS"),
            ("content-type", "application/json"),
        ] {
            assert_eq!(reply.headers.get(name).map(String::as_str), Some(value), "{name}");
        }
        assert!(reply.headers.get("strict-transport-security").is_some_and(|v| v.contains("max-age=")));
    }
    let preflight = call(&app, Method::Options, "/ofrep/v1/evaluate/flags", "", b"", None).await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.headers.get("allow").map(String::as_str), Some("POST, OPTIONS"));
    assert!(!preflight.headers.contains_key("content-type"));
}

#[tokio::test]
async fn evaluations_are_recorded_as_events_in_the_python_schema() {
    let (app, sink) = common::app::file_app(FLAGS, Clock::manual());
    post(&app, "/evaluate", json!({"user_id": "user-1", "flag_key": "abc", "context": {"plan": "pro"}})).await;
    post(&app, "/batch_evaluate", json!({"user_id": "alice", "flag_keys": ["vip", "ghost"]})).await;
    let report = app.events.flush().await;
    assert_eq!(report.sent, 3);
    let events = sink.events();
    let first = &events[0];
    let fields: Vec<&str> = first.as_object().expect("object").keys().map(String::as_str).collect();
    let mut expected = vec![
        "context",
        "enabled",
        "event_type",
        "flag_id",
        "flag_key",
        "reason",
        "request_id",
        "timestamp",
        "user_id",
        "variant",
        "version",
    ];
    expected.sort_unstable();
    let mut fields_sorted = fields.clone();
    fields_sorted.sort_unstable();
    assert_eq!(fields_sorted, expected);
    assert_eq!(first["event_type"], "feature_flag_evaluation");
    assert_eq!(
        (&first["user_id"], &first["flag_key"], &first["variant"]),
        (&json!("user-1"), &json!("abc"), &json!("b"))
    );
    assert_eq!(
        (&first["context"], &first["version"], &first["request_id"]),
        (&json!({"plan": "pro"}), &json!(2), &json!("req-1"))
    );
    assert!(first["timestamp"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('T')));
    assert_eq!((&events[1]["flag_key"], &events[1]["reason"]), (&json!("vip"), &json!("target_match")));
    assert_eq!((&events[2]["flag_key"], &events[2]["reason"]), (&json!("ghost"), &json!("flag_not_found")));
}

#[tokio::test]
async fn bodies_written_for_a_json_envelope_decode_to_the_same_text() {
    let app = app();
    let batch =
        json!({"user_id": "alice", "flag_keys": ["on", "abc", "vip", "ghost", "broken"], "context": {"q": "\"\\\n"}});
    let requests: [(Method, &str, &str, Vec<u8>); 8] = [
        (Method::Get, "/evaluate", "user_id=u%22q&flag_key=abc", Vec::new()),
        (Method::Post, "/evaluate", "", json!({"user_id": "é\"✓", "flag_key": "on"}).to_string().into_bytes()),
        (Method::Post, "/batch_evaluate", "", batch.to_string().into_bytes()),
        (Method::Post, "/batch_evaluate", "", json!({"user_id": "bob"}).to_string().into_bytes()),
        (
            Method::Post,
            "/ofrep/v1/evaluate/flags/abc",
            "",
            json!({"context": {"targetingKey": "t\"k"}}).to_string().into_bytes(),
        ),
        (
            Method::Post,
            "/ofrep/v1/evaluate/flags/ghost",
            "",
            json!({"context": {"targetingKey": "k"}}).to_string().into_bytes(),
        ),
        (
            Method::Post,
            "/ofrep/v1/evaluate/flags",
            "",
            json!({"context": {"targetingKey": "k"}}).to_string().into_bytes(),
        ),
        (Method::Post, "/evaluate", "", b"{not json".to_vec()),
    ];
    for (method, path, query, body) in &requests {
        let request =
            |encoding| Request { method: *method, path, query, if_none_match: None, body, request_id: "r", encoding };
        let plain = handle(&app, request(BodyEncoding::Json)).await;
        let escaped = handle(&app, request(BodyEncoding::JsonInString)).await;
        assert_eq!(plain.encoding, BodyEncoding::Json);
        assert_eq!((escaped.status, &escaped.etag), (plain.status, &plain.etag), "{path}");
        assert_eq!(escaped.json_text(), plain.body, "{path}");
        // And the escaped text is exactly what a JSON string of the plain text holds.
        if escaped.encoding == BodyEncoding::JsonInString {
            let quoted = serde_json::to_string(std::str::from_utf8(&plain.body).expect("UTF-8")).expect("string");
            assert_eq!(escaped.body, quoted.as_bytes()[1..quoted.len() - 1], "{path}");
        }
    }
}

/// Error bodies name what is wrong, never the caller's values.
#[tokio::test]
async fn errors_never_echo_what_the_caller_sent() {
    let app = app();
    let reply = post(&app, "/evaluate", json!({"user_id": 4155550123u64, "flag_key": "on"})).await;
    assert_eq!(reply.status, 400);
    assert!(!reply.body.to_string().contains("4155550123"), "{}", reply.body);
    assert!(reply.body["error"].as_str().is_some_and(|m| m.contains("user_id") && m.contains("integer")));
    for event in [r#""hello-secret""#, "4155550123", r#"{"action": ["secret-action"]}"#] {
        let answer = flagfn::lambda::invoke(&app, event, "req").await;
        let body: Value = serde_json::from_str(&answer).expect("JSON");
        let text = body["error"].as_str().expect("an error body");
        assert!(!text.contains("secret") && !text.contains("4155550123"), "{event}: {text}");
    }
}
