//! Migration parity (docs/flag-format.md): the Python service's own answers, from
//! tests/parity/vectors.json (copied from the service's recorded answers; data, not code),
//! replayed through the pure evaluator, through a local flags file and the legacy route,
//! and through DynamoDB on moto with the items written by boto3 as the Python service
//! wrote them (numbers exactly as in the file).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use flagfn::api::{self, BodyEncoding, Method, Request};
use flagfn::app::App;
use flagfn::clock::Clock;
use flagfn::eval::{ErrorCode, EvalInput, Evaluator, NoFlags, Reason};
use flagfn::flag::CompiledFlag;
use serde_json::{json, Map, Value};

/// One recorded answer.
struct Case {
    flag: Value,
    /// The flag document's own text, numbers exactly as the file writes them.
    flag_text: String,
    user_id: String,
    /// `None`: the request carried `"context": null`.
    context: Option<Map<String, Value>>,
    expected: Expected,
}

/// What the Python service answered.
#[derive(Debug, PartialEq)]
enum Expected {
    Answer { enabled: bool, reason: String, variant: Option<String> },
    Error(String),
}

/// The file's cases with each flag document kept as its own text.
#[derive(serde::Deserialize)]
struct File<'a> {
    #[serde(borrow)]
    cases: Vec<RawCase<'a>>,
}

#[derive(serde::Deserialize)]
struct RawCase<'a> {
    #[serde(borrow)]
    flag: &'a serde_json::value::RawValue,
    user_id: String,
    /// `null` in about a tenth of the cases: no context.
    context: Option<Map<String, Value>>,
    python: Value,
}

fn cases() -> Vec<Case> {
    let text = include_str!("parity/vectors.json");
    let file: File<'_> = serde_json::from_str(text).expect("vectors are JSON");
    assert!(file.cases.len() > 5_000, "the whole file is replayed");
    file.cases
        .into_iter()
        .map(|case| {
            let python = &case.python;
            let expected = match python.get("error") {
                Some(message) => Expected::Error(message.as_str().expect("error text").to_owned()),
                None => Expected::Answer {
                    enabled: python["enabled"].as_bool().expect("enabled"),
                    reason: python["reason"].as_str().expect("reason").to_owned(),
                    variant: python["variant"].as_str().map(str::to_owned),
                },
            };
            Case {
                flag: serde_json::from_str(case.flag.get()).expect("flag"),
                flag_text: case.flag.get().to_owned(),
                user_id: case.user_id,
                context: case.context,
                expected,
            }
        })
        .collect()
}

/// The distinct flag documents of the file (one per key) as a JSON array, each in its
/// own text.
fn flags_text(cases: &[Case]) -> String {
    let mut by_key = BTreeMap::new();
    for case in cases {
        let key = case.flag["key"].as_str().expect("key").to_owned();
        let previous = by_key.insert(key, &case.flag_text);
        assert!(previous.is_none_or(|p| *p == case.flag_text), "one document per key");
    }
    format!("[{}]", by_key.into_values().cloned().collect::<Vec<_>>().join(",\n"))
}

/// Mismatches, summarised so a failure says which class of answer differs.
fn report(mismatches: &[String], total: usize) {
    assert!(
        mismatches.is_empty(),
        "{} of {total} answers differ from Python; first ones:\n{}",
        mismatches.len(),
        mismatches.iter().take(25).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn every_answer_holds_through_the_evaluator() {
    let cases = cases();
    let mut mismatches = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let flag = CompiledFlag::from_value(case.flag.clone()).expect("every item has a key");
        let context = case.context.clone().unwrap_or_default();
        let input = EvalInput { user_id: Some(&case.user_id), context: &context, now: 1_800_000_000.0 };
        let e = Evaluator::new(input, &NoFlags).evaluate(&flag);
        let got = match &e.error() {
            Some(error) => {
                assert_eq!(e.reason(), Reason::Error);
                assert_eq!(error.code, ErrorCode::ParseError, "case {i}: {}", error.message);
                Expected::Error(error.message.to_string())
            }
            None => Expected::Answer {
                enabled: e.enabled,
                reason: e.reason().as_str().to_owned(),
                variant: e.variant_key().map(str::to_owned),
            },
        };
        if got != case.expected {
            mismatches.push(format!("case {i} {}: got {got:?}, Python {:?}", case.flag["key"], case.expected));
        }
    }
    report(&mismatches, cases.len());
}

/// The legacy route's answer for `case`, as the Python service's JSON would compare.
fn legacy_answer(status: u16, body: &Value) -> Expected {
    match status {
        200 => Expected::Answer {
            enabled: body["enabled"].as_bool().expect("enabled"),
            reason: body["reason"].as_str().expect("reason").to_owned(),
            variant: match body.get("variant") {
                None => None,
                Some(Value::String(v)) => Some(v.clone()),
                Some(other) => panic!("variant is written only when served, got {other}"),
            },
        },
        400 => Expected::Error(body["error"].as_str().expect("error").to_owned()),
        other => panic!("unexpected status {other}: {body}"),
    }
}

/// Replays every case through the legacy `GET /evaluate` route of `app`.
async fn replay_legacy(app: &App, cases: &[Case]) {
    let mut mismatches = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("user_id", &case.user_id)
            .append_pair("flag_key", case.flag["key"].as_str().expect("key"))
            .finish();
        let body = serde_json::to_vec(&json!({ "context": case.context })).expect("body");
        let request = Request {
            method: Method::Get,
            path: "/evaluate",
            query: &query,
            if_none_match: None,
            body: &body,
            request_id: "parity",
            encoding: BodyEncoding::Json,
        };
        let response = api::handle(app, request).await;
        let answer: Value = serde_json::from_slice(&response.body).expect("JSON answer");
        let got = legacy_answer(response.status, &answer);
        if got != case.expected {
            mismatches.push(format!("case {i} {}: got {got:?}, Python {:?}", case.flag["key"], case.expected));
        }
    }
    report(&mismatches, cases.len());
}

#[tokio::test]
async fn every_answer_holds_through_a_flags_file_and_the_legacy_route() {
    let cases = cases();
    let dir = std::env::temp_dir().join(format!("flagfn-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("flags.json");
    std::fs::write(&path, format!("{{\"flags\": {}}}", flags_text(&cases))).expect("write");
    let (app, _sink) = common::app::file_app(path.to_str().expect("utf-8 path"), Clock::system());
    replay_legacy(&app, &cases).await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn every_answer_holds_through_dynamodb_items_written_by_boto3() {
    let cases = cases();
    let moto = common::moto::shared_moto();
    let endpoint = moto.endpoint();
    let table = common::moto::unique_name("parity");
    // The file's own text for each flag, so boto3 reads numbers exactly as written
    // (`1E+1`, `100000000000000000000`) and stores them as DynamoDB numbers.
    common::dynamo::seed_text_with_boto3(&endpoint, &table, &flags_text(&cases));
    let client = common::dynamo::client(&endpoint, &common::dynamo::Operations::default()).await;
    let (app, _sink): (Arc<App>, _) = common::dynamo::dynamo_app(client, &table, &[], Clock::system());
    replay_legacy(&app, &cases).await;
}
