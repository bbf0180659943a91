//! flagd flags stored one item per flag in DynamoDB (moto, started by the harness): the
//! self-contained item layout written, read back through the store and the cache, and
//! every evaluator-suite case answered from the table over OFREP as from a file.

mod common;
mod flagd;

use common::dynamo::{client, create_table, dynamo_app, put_flags, Operations};
use common::moto::{shared_moto, unique_name};
use flagd::cases::{self, Bucketing, Case};
use flagfn::clock::Clock;
use flagfn::flagd::stored::{self_contained, FORMAT};
use serde_json::{json, Value};

/// The test document as table items: key, format, version and the definition's text.
/// The one flag whose `$ref` names no evaluator cannot be made self-contained; it is
/// stored as written (a hand-made item), and must read as a `PARSE_ERROR` flag.
fn items() -> Vec<Value> {
    let doc = flagd::document::document();
    let definitions = self_contained(&doc).expect("a flagd document");
    definitions
        .into_iter()
        .map(|(key, definition)| {
            let text = match definition {
                Ok(definition) => definition.to_string(),
                Err(_) => {
                    assert_eq!(key, "ref-to-nonexistent-evaluator-flag");
                    doc["flags"][&key].to_string()
                }
            };
            json!({"key": key, "format": FORMAT, "version": 3, "flagd": text})
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flagd_items_answer_every_testbed_case_from_the_table() {
    let moto = shared_moto();
    let table = unique_name("flagd");
    let writer = client(&moto.endpoint(), &Operations::default()).await;
    create_table(&writer, &table).await;
    let items = items();
    let with_refs = items.iter().filter(|item| item["flagd"].as_str().unwrap_or("$ref").contains("$ref")).count();
    assert_eq!(with_refs, 1, "only the hand-made item keeps a `$ref`");
    put_flags(&writer, &table, &items).await;

    let (app, _) = dynamo_app(client(&moto.endpoint(), &Operations::default()).await, &table, &[], Clock::system());
    let all: Vec<Case> = cases::all().into_iter().filter(|c| c.bucketing == Bucketing::V2).collect();
    let mut failures = Vec::new();
    for case in &all {
        let path = format!("/ofrep/v1/evaluate/flags/{}", case.flag);
        let reply = common::app::post(&app, &path, &json!({"context": case.context})).await;
        let (outcome, metadata) = if reply.status == 200 {
            let reason = reply.body["reason"].as_str().unwrap_or("MISSING").to_owned();
            (case.finish(reply.body.get("value").cloned(), &reason, None), reply.body["metadata"].clone())
        } else {
            let code = reply.body["errorCode"].as_str().unwrap_or("MISSING").to_owned();
            (case.finish(None, "ERROR", Some(&code)), Value::Null)
        };
        if let Err(panic) = std::panic::catch_unwind(|| case.check(&outcome, &metadata)) {
            failures.push(panic.downcast_ref::<String>().cloned().unwrap_or_default());
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), all.len(), failures.join("\n"));

    // Items keep their exact numbers (a float variant stays a float) and their version.
    let reply = common::app::post(&app, "/ofrep/v1/evaluate/flags/float-zero-flag", &json!({"context": {}})).await;
    assert_eq!(reply.body["value"].to_string(), "0.0");
    let reply = common::app::post(&app, "/evaluate", &json!({"user_id": "u", "flag_key": "string-flag"})).await;
    assert_eq!((&reply.body["version"], &reply.body["value"]), (&json!(3), &json!("hi")));
}
