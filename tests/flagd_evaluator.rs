//! The flagd-testbed evaluator scenarios against the pure flagd evaluator.

mod flagd;

use flagd::cases::{self, Bucketing, Case, Outcome};
use flagfn::flagd::{evaluate, parse_document, Bucketing as Fractional, FlagdInput, FlagdSet};
use serde_json::Value;

fn run(set: &FlagdSet, case: &Case) -> (Outcome, Value) {
    let Some(flag) = set.get(case.flag) else {
        return (case.finish(None, "ERROR", Some("FLAG_NOT_FOUND")), Value::Null);
    };
    let bucketing = match case.bucketing {
        Bucketing::V2 => Fractional::V2,
        Bucketing::V3 => Fractional::V3,
    };
    let input = FlagdInput { context: &case.context, targeting_key: None, timestamp: 1_700_000_000, bucketing };
    let answer = evaluate(flag, &input);
    let error = answer.error.as_ref().map(|(code, _)| code.as_str());
    let outcome = case.finish(answer.value.cloned(), answer.reason.as_str(), error);
    (outcome, Value::Object(answer.metadata.clone()))
}

#[test]
fn every_testbed_scenario_holds_on_the_pure_evaluator() {
    let set = parse_document(&flagd::document::document()).expect("the test document is a flagd document");
    let mut failures = Vec::new();
    let all = cases::all();
    for case in &all {
        let (outcome, metadata) = run(&set, case);
        if let Err(panic) = std::panic::catch_unwind(|| case.check(&outcome, &metadata)) {
            failures.push(panic.downcast_ref::<String>().cloned().unwrap_or_default());
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), all.len(), failures.join("\n"));
}
