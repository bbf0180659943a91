//! Every sample event in events/ goes through the real Lambda entry point
//! (`flagfn::lambda::invoke`, what the runtime calls) over examples/flags.json, and must
//! answer what tests/fixtures/events_expected.json says. The same expectations are
//! checked against the built binary with `cargo lambda invoke` by
//! scripts/invoke_events.py (run by `make test`).

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use flagfn::clock::Clock;
use serde_json::Value;

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn event_files() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    std::fs::read_dir(&dir)
        .expect("events/")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .collect()
}

#[test]
fn every_event_file_has_an_expectation_and_vice_versa() {
    let expected = read_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events_expected.json"));
    let described: BTreeSet<String> =
        expected.as_object().expect("object").keys().filter(|k| k.ends_with(".json")).cloned().collect();
    assert_eq!(event_files(), described);
}

#[tokio::test]
async fn every_event_answers_as_expected_through_the_lambda_entry_point() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let expected = read_json(&root.join("tests/fixtures/events_expected.json"));
    let (app, _) = common::app::file_app("examples/flags.json", Clock::manual());
    for name in event_files() {
        let event = std::fs::read_to_string(root.join("events").join(&name)).expect("event file");
        let output: Value = serde_json::from_str(&flagfn::lambda::invoke(&app, &event, "test-request").await)
            .unwrap_or_else(|e| panic!("{name}: the answer is not JSON: {e}"));
        let want = &expected[&name];
        let body = match want.get("status") {
            // A function URL event: check the envelope, then parse the body.
            Some(status) => {
                assert_eq!(&output["statusCode"], status, "{name}: {output}");
                assert_eq!(output["isBase64Encoded"], false, "{name}");
                assert_eq!(output["headers"]["x-content-type-options"], "nosniff", "{name}");
                match output["body"].as_str() {
                    Some("") => Value::Null,
                    Some(text) => serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: body: {e}")),
                    None => panic!("{name}: no body string: {output}"),
                }
            }
            None => output,
        };
        if let Some(status) = want["status"].as_u64().filter(|s| *s >= 400) {
            let message = body.get("error").or_else(|| body.get("errorDetails"));
            assert!(message.is_some_and(Value::is_string), "{name}: {status} without an error message: {body}");
        }
        for (pointer, value) in want["body"].as_object().into_iter().flatten() {
            assert_eq!(body.pointer(pointer), Some(value), "{name} {pointer}: {body}");
        }
    }
}
