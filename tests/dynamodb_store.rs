//! `DynamoDbStore` against a real DynamoDB wire-protocol server (moto), with items
//! written by boto3 exactly as the Python service wrote them, real SDK calls counted by
//! an SDK interceptor, and faults injected by a proxy the real SDK talks through.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use common::dynamo::{client, create_table, put_flags, seed_with_boto3, Operations};
use common::moto::shared_moto;
use common::moto::{unique_name, Moto};
use common::proxy::Proxy;
use flagfn::bucket;
use flagfn::eval::{EvalInput, Evaluator, FlagSet, NoFlags};
use flagfn::flag::CompiledFlag;
use flagfn::store::{DynamoDbStore, FlagStore, StoreError};
use serde_json::{json, Map, Value};

const BATCH_GET: &str = "DynamoDB_20120810.BatchGetItem";

/// A store over `table` whose timeout leaves room for moto on a busy machine (tests of
/// the timeout itself build theirs).
fn store_over(client: Client, table: impl Into<String>) -> DynamoDbStore {
    DynamoDbStore::with_timeout(client, table, common::dynamo::RELAXED_STORE_TIMEOUT)
}

fn keys_of(flags: &[Arc<CompiledFlag>]) -> Vec<String> {
    let mut keys: Vec<String> = flags.iter().map(|f| f.key().to_owned()).collect();
    keys.sort();
    keys
}

fn numbered(count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| json!({"key": format!("flag-{i:03}"), "enabled": i % 2 == 0, "rollout_percentage": 100, "version": i}))
        .collect()
}

/// Flags in the Python service's shape: `Decimal` fractions, `100.0`, lists of maps,
/// nested payloads, booleans, a `version`, extra fields the evaluator ignores.
fn service_flags() -> Value {
    json!([
        {
            "key": "checkout-redesign", "flag_id": "flag-7f3a", "enabled": true, "rollout_percentage": 100.0,
            "version": 3, "description": "New checkout", "created_at": "2024-03-01T12:00:00Z",
            "targeting_rules": [
                {"attribute": "plan_level", "operator": "equals", "value": 2},
                {"attribute": "beta", "operator": "equals", "value": true},
                {"attribute": "country", "operator": "in", "value": ["DE", "FR"]}
            ],
            "variants": [
                {"key": "control", "allocation": 0.5,
                 "payload": {"layout": "classic", "limits": {"items": 10, "ratio": 0.25}, "tags": ["a", "b"], "new": false}},
                {"key": "treatment", "allocation": 0.5,
                 "payload": {"layout": "wide", "limits": {"items": 25, "ratio": 0.75}, "tags": [], "new": true}}
            ],
            "default_variant": "control"
        },
        {"key": "kill-switch", "enabled": false, "rollout_percentage": 100, "version": 12},
        {"key": "needs-treatment", "enabled": true, "rollout_percentage": 100,
         "prerequisites": [{"key": "checkout-redesign", "variant": "treatment"}]},
        {"key": "broken", "enabled": true, "rollout_percentage": 100,
         "rules": [{"id": "r", "clauses": [{"attribute": "plan", "operator": "resembles", "value": "pro"}], "serve": {}}]}
    ])
}

/// The golden evaluations (expected results computed by the Python formulas), one flag
/// document per key.
fn golden_cases() -> (Vec<Value>, Vec<Value>) {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/golden.json")).expect("golden.json");
    let cases = fixture["evaluations"].as_array().expect("evaluations").clone();
    let mut flags: BTreeMap<String, Value> = BTreeMap::new();
    for case in &cases {
        let key = case["flag"]["key"].as_str().expect("key").to_owned();
        flags.entry(key).or_insert_with(|| case["flag"].clone());
    }
    (flags.into_values().collect(), cases)
}

#[tokio::test]
async fn boto3_items_evaluate_exactly_as_the_python_service_decided() {
    let moto = shared_moto();
    let table = unique_name("boto3");
    let (golden_flags, cases) = golden_cases();
    let mut all = golden_flags.clone();
    all.extend(service_flags().as_array().expect("list").iter().cloned());
    seed_with_boto3(&moto.endpoint(), &table, &Value::Array(all.clone()));

    let store = store_over(client(&moto.endpoint(), &Operations::default()).await, &table);
    let flags = FlagSet::new(store.scan().await.expect("scan"));
    assert_eq!(flags.len(), all.len());

    // Every golden case: the Python-computed enabled/reason/variant, from boto3 items.
    assert!(cases.len() > 100);
    let empty = Map::new();
    for case in &cases {
        let key = case["flag"]["key"].as_str().expect("key");
        let flag = store.get(key).await.expect("get").expect("present");
        let input = EvalInput {
            user_id: case["user"].as_str(),
            context: case["context"].as_object().unwrap_or(&empty),
            now: 0.0,
        };
        let result = Evaluator::new(input, &NoFlags).evaluate(&flag);
        assert_eq!(result.enabled, case["enabled"], "{case}");
        assert_eq!(result.reason().as_str(), case["reason"], "{case}");
        assert_eq!(result.variant_key(), case["variant"].as_str(), "{case}");
    }

    // The service-shaped flag: numbers, booleans, list-of-map rules, nested payloads.
    let checkout = flags.get("checkout-redesign").expect("checkout");
    assert_eq!((checkout.flag_id(), checkout.version()), ("flag-7f3a", 3));
    let matching = json!({"plan_level": 2.0, "beta": true, "country": "FR"});
    let matching = matching.as_object().expect("object");
    let payloads = service_flags()[0]["variants"].clone();
    for user in ["user-1", "user-2", "user-3", "user-42", "user-777", "user-123"] {
        let input = EvalInput { user_id: Some(user), context: matching, now: 0.0 };
        let result = Evaluator::new(input, &flags).evaluate(checkout);
        let point = bucket::variant_point(user, &bucket::variant_suffix("checkout-redesign"));
        let expected = if point < 0.5 { 0 } else { 1 };
        assert!(result.enabled, "{user}");
        assert_eq!(result.reason().as_str(), "enabled");
        assert_eq!(result.variant_key(), payloads[expected]["key"].as_str(), "{user}");
        assert_eq!(result.variant.and_then(|v| v.value()), Some(&payloads[expected]["payload"]), "{user}");
        // The prerequisite list survived too: on exactly when `treatment` was served.
        let needs = flags.get("needs-treatment").expect("needs-treatment");
        let dependent = Evaluator::new(input, &flags).evaluate(needs);
        assert_eq!(dependent.enabled, expected == 1, "{user}");
    }
    for (context, why) in [
        (json!({"plan_level": "2", "beta": true, "country": "FR"}), "the string \"2\" is not the number 2"),
        (json!({"plan_level": 2, "beta": "true", "country": "FR"}), "the string \"true\" is not a boolean"),
        (json!({"plan_level": 2, "beta": true, "country": "US"}), "US is not in the list"),
    ] {
        let input = EvalInput { user_id: Some("user-1"), context: context.as_object().expect("object"), now: 0.0 };
        let result = Evaluator::new(input, &flags).evaluate(checkout);
        assert_eq!(result.reason().as_str(), "targeting_rules_not_met", "{why}");
    }
    let kill = flags.get("kill-switch").expect("kill-switch");
    let input = EvalInput { user_id: Some("user-1"), context: &empty, now: 0.0 };
    let result = Evaluator::new(input, &flags).evaluate(kill);
    assert_eq!((result.enabled, result.reason().as_str(), result.version()), (false, "flag_disabled", 12));

    // A malformed item is a flag that answers PARSE_ERROR, and harms no other flag.
    let broken = store.get("broken").await.expect("get").expect("kept, not dropped");
    assert!(broken.body().expect_err("malformed").contains("resembles"));
    let result = Evaluator::new(input, &flags).evaluate(&broken);
    assert_eq!(result.error().map(|e| e.code.as_str()), Some("PARSE_ERROR"));
    assert_eq!(flags.iter().filter(|f| f.body().is_err()).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_reads_250_flags_in_three_batch_calls() {
    let moto = shared_moto();
    let table = unique_name("many");
    let writer = client(&moto.endpoint(), &Operations::default()).await;
    create_table(&writer, &table).await;
    let flags = numbered(250);
    put_flags(&writer, &table, &flags).await;

    let operations = Operations::default();
    let store = store_over(client(&moto.endpoint(), &operations).await, &table);
    let mut asked: Vec<String> = flags.iter().map(|f| f["key"].as_str().expect("key").to_owned()).collect();
    let present = asked.clone();
    asked.extend(present[..20].iter().cloned()); // duplicates
    asked.extend((0..30).map(|i| format!("missing-{i}"))); // no such items
    asked.reverse();

    let got = store.get_many(&asked).await.expect("get_many");
    assert_eq!(keys_of(&got), present, "each existing flag exactly once, missing ones absent");
    for flag in &got {
        let index: u64 = flag.key()["flag-".len()..].parse().expect("numbered");
        assert_eq!(flag.version(), index, "the item read is the item written under that key");
    }
    // 280 distinct keys → 3 calls of at most 100; nothing else.
    assert_eq!(operations.snapshot(), BTreeMap::from([("BatchGetItem".to_owned(), 3)]));

    assert!(store.get("missing-0").await.expect("get").is_none());
    assert!(store.get_many(&[]).await.expect("empty get_many").is_empty());
    assert_eq!(operations.snapshot(), BTreeMap::from([("BatchGetItem".to_owned(), 3), ("GetItem".to_owned(), 1)]));
}

/// A proxy hook that moves the keys `blocked` picks from a `BatchGetItem` request to
/// `UnprocessedKeys` (they are not even sent to moto), for the first `times` exchanges
/// that carry such keys, as DynamoDB does when throttling.
fn defer_keys(
    proxy: &Proxy,
    table: &str,
    times: usize,
    blocked: impl Fn(&str) -> bool + Send + Sync + 'static,
) -> Arc<AtomicUsize> {
    let deferred_exchanges = Arc::new(AtomicUsize::new(0));
    let counter = deferred_exchanges.clone();
    let table = table.to_owned();
    proxy.set_hook(move |target, body, forward| {
        if target != BATCH_GET {
            return forward(body);
        }
        let mut request: Value = serde_json::from_slice(&body).expect("BatchGetItem JSON");
        let keys = request["RequestItems"][&table]["Keys"].take();
        let (deferred, kept): (Vec<Value>, Vec<Value>) =
            keys.as_array().expect("Keys").iter().cloned().partition(|k| blocked(k["key"]["S"].as_str().unwrap_or("")));
        if deferred.is_empty() || counter.fetch_add(1, Ordering::SeqCst) >= times {
            return forward(body);
        }
        let (status, answer) = if kept.is_empty() {
            (200, serde_json::to_vec(&json!({"Responses": {&table: []}})).expect("JSON"))
        } else {
            request["RequestItems"][&table]["Keys"] = Value::Array(kept);
            forward(serde_json::to_vec(&request).expect("JSON"))
        };
        if status != 200 {
            return (status, answer);
        }
        let mut answer: Value = serde_json::from_slice(&answer).expect("BatchGetItem answer");
        answer["UnprocessedKeys"] = json!({&table: {"Keys": deferred}});
        (200, serde_json::to_vec(&answer).expect("JSON"))
    });
    deferred_exchanges
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprocessed_keys_are_retried_until_every_flag_arrives() {
    let moto = shared_moto();
    let table = unique_name("unprocessed");
    let writer = client(&moto.endpoint(), &Operations::default()).await;
    create_table(&writer, &table).await;
    let flags = numbered(250);
    put_flags(&writer, &table, &flags).await;

    let proxy = Proxy::start(&moto.endpoint());
    // Every tenth key is throttled in each of the first five exchanges that carry one.
    let deferred = defer_keys(&proxy, &table, 5, |key| key.ends_with('0'));
    let operations = Operations::default();
    let store = store_over(client(&proxy.endpoint(), &operations).await, &table);
    let keys: Vec<String> = flags.iter().map(|f| f["key"].as_str().expect("key").to_owned()).collect();

    let got = store.get_many(&keys).await.expect("every key arrives in the end");
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(keys_of(&got), expected);
    // 3 first calls (one per 100 keys), each of which carried deferred keys, and one
    // more call for each of the 5 deferrals.
    assert!(deferred.load(Ordering::SeqCst) >= 5);
    assert_eq!(operations.count("BatchGetItem"), 3 + 5);
    assert_eq!(proxy.count(BATCH_GET), 3 + 5);
}

#[tokio::test]
async fn keys_that_stay_unprocessed_end_in_an_error() {
    let moto = shared_moto();
    let table = unique_name("stuck");
    let writer = client(&moto.endpoint(), &Operations::default()).await;
    create_table(&writer, &table).await;
    put_flags(&writer, &table, &numbered(10)).await;

    let proxy = Proxy::start(&moto.endpoint());
    defer_keys(&proxy, &table, usize::MAX, |key| key == "flag-003" || key == "flag-007");
    let operations = Operations::default();
    let store = store_over(client(&proxy.endpoint(), &operations).await, &table);
    let keys: Vec<String> = (0..10).map(|i| format!("flag-{i:03}")).collect();

    let err = store.get_many(&keys).await.expect_err("two keys never arrive");
    assert!(matches!(err, StoreError::Unprocessed(2)), "{err:?}");
    // Retried, and bounded (the store documents 8 calls in all).
    let calls = operations.count("BatchGetItem");
    assert!((2..=10).contains(&calls), "{calls} BatchGetItem calls");
    assert_eq!(proxy.count(BATCH_GET), calls);
}

#[tokio::test]
async fn scan_follows_every_page() {
    let moto = shared_moto();
    let table = unique_name("scan");
    let writer = client(&moto.endpoint(), &Operations::default()).await;
    create_table(&writer, &table).await;
    // 40 flags of ~80 KB each: 3.2 MB, over three of DynamoDB's (and moto's) 1 MB pages.
    // The store sets no page `Limit`: real pagination is by size, and this is real.
    let blob = "x".repeat(80 * 1024);
    let flags: Vec<Value> = (0..40)
        .map(|i| {
            json!({"key": format!("big-{i:02}"), "enabled": true, "rollout_percentage": 100,
                   "variants": [{"key": "only", "allocation": 1, "payload": {"blob": blob, "i": i}}]})
        })
        .collect();
    put_flags(&writer, &table, &flags).await;

    let operations = Operations::default();
    let store = store_over(client(&moto.endpoint(), &operations).await, &table);
    let got = store.scan().await.expect("scan");

    let expected: Vec<String> = (0..40).map(|i| format!("big-{i:02}")).collect();
    assert_eq!(keys_of(&got), expected, "every flag exactly once");
    let pages = operations.count("Scan");
    assert!(pages >= 4, "3.2 MB must take at least four 1 MB pages, took {pages}");
    for flag in &got {
        let body = flag.body().expect("well-formed");
        let payload = body.variants()[0].value().expect("payload");
        assert_eq!(payload["blob"].as_str().map(str::len), Some(blob.len()));
        assert_eq!(payload["i"].as_u64().map(|i| format!("big-{i:02}")).as_deref(), Some(flag.key()));
    }
}

#[tokio::test]
async fn a_missing_table_is_an_error_with_the_service_message() {
    let moto = shared_moto();
    let store = store_over(client(&moto.endpoint(), &Operations::default()).await, unique_name("absent"));
    let err = store.get("any").await.expect_err("no table");
    let StoreError::DynamoDb { operation, message, .. } = &err else { panic!("{err:?}") };
    assert_eq!(*operation, "GetItem");
    assert!(message.contains("ResourceNotFoundException"), "{message}");
    let err = store.scan().await.expect_err("no table");
    assert!(matches!(err, StoreError::DynamoDb { operation: "Scan", .. }), "{err:?}");
}

#[tokio::test]
async fn a_stopped_server_is_an_error_never_a_miss() {
    let mut moto = Moto::start();
    let table = unique_name("outage");
    let operations = Operations::default();
    let dynamo = client(&moto.endpoint(), &operations).await;
    create_table(&dynamo, &table).await;
    put_flags(&dynamo, &table, &numbered(3)).await;
    let store = store_over(dynamo, &table);
    assert!(store.get("flag-001").await.expect("up").is_some());

    moto.stop();
    let err = store.get("flag-001").await.expect_err("down is not None");
    assert!(matches!(err, StoreError::DynamoDb { operation: "GetItem", .. }), "{err:?}");
    let keys = vec!["flag-001".to_owned(), "flag-002".to_owned()];
    let err = store.get_many(&keys).await.expect_err("down is not empty");
    assert!(matches!(err, StoreError::DynamoDb { operation: "BatchGetItem", .. }), "{err:?}");
    let err = store.scan().await.expect_err("down is not empty");
    assert!(matches!(err, StoreError::DynamoDb { operation: "Scan", .. }), "{err:?}");
}

#[tokio::test]
async fn server_errors_and_dropped_connections_are_errors() {
    use common::proxy::Fault;
    let moto = shared_moto();
    let table = unique_name("faults");
    let writer = client(&moto.endpoint(), &Operations::default()).await;
    create_table(&writer, &table).await;
    put_flags(&writer, &table, &numbered(3)).await;
    let proxy = Proxy::start(&moto.endpoint());
    let store = store_over(client(&proxy.endpoint(), &Operations::default()).await, &table);
    assert!(store.get("flag-001").await.expect("through the proxy").is_some());

    for (fault, expected) in [(Fault::Http500, "InternalServerError"), (Fault::CloseConnections, "dispatch failure")] {
        proxy.set_fault(fault);
        let err = store.get("flag-001").await.expect_err("a fault is not a miss");
        let StoreError::DynamoDb { operation: "GetItem", message, .. } = &err else { panic!("{err:?}") };
        assert!(message.contains(expected), "{fault:?}: {message}");
    }
    proxy.set_fault(Fault::None);
    assert!(store.get("flag-001").await.expect("recovered").is_some());
}

/// Every call is bounded by the store's own timeout, whatever the
/// client was built with (this one allows 10 s per attempt and retries).
#[tokio::test]
async fn a_hanging_table_fails_within_the_store_timeout_whatever_the_client_allows() {
    let moto = shared_moto();
    let table = unique_name("slow");
    let writer = client(&moto.endpoint(), &Operations::default()).await;
    create_table(&writer, &table).await;
    put_flags(&writer, &table, &numbered(2)).await;
    let proxy = Proxy::start(&moto.endpoint());
    let patient = client(&proxy.endpoint(), &Operations::default()).await;
    let default = DynamoDbStore::new(patient.clone(), &table);
    let short = DynamoDbStore::with_timeout(patient, &table, Duration::from_millis(100));
    assert!(default.get("flag-000").await.expect("fast enough").is_some());

    proxy.set_delay(Duration::from_secs(30));
    let keys = vec!["flag-000".to_owned(), "flag-001".to_owned()];
    for (store, bound) in [(&default, Duration::from_millis(2500)), (&short, Duration::from_millis(1500))] {
        let started = Instant::now();
        let err = store.get("flag-000").await.expect_err("too slow");
        let StoreError::DynamoDb { operation: "GetItem", message, .. } = &err else { panic!("{err:?}") };
        assert!(message.contains("timeout"), "{message}");
        let err = store.get_many(&keys).await.expect_err("too slow");
        assert!(matches!(err, StoreError::DynamoDb { operation: "BatchGetItem", .. }), "{err:?}");
        let err = store.scan().await.expect_err("too slow");
        assert!(matches!(err, StoreError::DynamoDb { operation: "Scan", .. }), "{err:?}");
        // Three calls against a 30 s hang, each ended by the store's timeout (0.5 s by
        // default, 0.1 s for `short`); the bound is generous for a busy machine.
        assert!(started.elapsed() < bound * 3, "{:?}", started.elapsed());
    }
}
