//! The warm cache (docs/operations.md) in front of a real DynamoDB wire-protocol server (moto),
//! driven through the real API handler (docs/api.md): every request below goes through
//! `flagfn::api::handle`, the `App`'s `FlagCache` and a real `DynamoDbStore`.
//!
//! Real DynamoDB operations are counted inside the SDK by an interceptor, and every
//! count is checked against the cache's own `stats()`. TTLs are driven by a manual
//! clock (never by sleeping); overlap and outages are made real with a delaying proxy
//! and by stopping moto.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use common::app::{post, Reply, REQUEST_ID};
use common::dynamo::{client, dynamo_app, put_flags, seed_with_boto3, Operations, RELAXED_STORE_TIMEOUT};
use common::moto::shared_moto;
use common::moto::{unique_name, Moto};
use common::proxy::Proxy;
use flagfn::app::App;
use flagfn::bucket;
use flagfn::cache::{CacheStats, ERROR_BACKOFF};
use flagfn::clock::Clock;
use serde_json::{json, Value};

const GET_ITEM: &str = "DynamoDB_20120810.GetItem";

/// `POST /evaluate`.
async fn evaluate(app: &App, user: &str, key: &str, context: Value) -> Reply {
    post(app, "/evaluate", &json!({"user_id": user, "flag_key": key, "context": context})).await
}

/// `POST /ofrep/v1/evaluate/flags/{key}`.
async fn ofrep(app: &App, user: &str, key: &str) -> Reply {
    post(app, &format!("/ofrep/v1/evaluate/flags/{key}"), &json!({"context": {"targetingKey": user}})).await
}

/// `POST /ofrep/v1/evaluate/flags`: the flags, by key.
async fn ofrep_bulk(app: &App, user: &str) -> (u16, BTreeMap<String, Value>) {
    let reply = post(app, "/ofrep/v1/evaluate/flags", &json!({"context": {"targetingKey": user}})).await;
    let flags = reply.body["flags"].as_array().cloned().unwrap_or_default();
    let by_key = flags.into_iter().map(|f| (f["key"].as_str().expect("key").to_owned(), f)).collect();
    (reply.status, by_key)
}

/// `{"GetItem": 3, ...}` as the operation counter reports it.
fn ops(counts: &[(&str, usize)]) -> BTreeMap<String, usize> {
    counts.iter().filter(|(_, n)| *n > 0).map(|(op, n)| (op.to_string(), *n)).collect()
}

/// A table seeded by boto3 and an app over it whose DynamoDB calls are counted.
struct Fixture {
    app: Arc<App>,
    operations: Operations,
    /// Writes behind the app's back (not counted).
    writer: Client,
    table: String,
    clock: Clock,
}

impl Fixture {
    /// Seeds `flags` with boto3 through `moto_endpoint`; the app talks to `app_endpoint`
    /// (moto itself, or a proxy in front of it).
    async fn new(moto_endpoint: &str, app_endpoint: &str, flags: &Value, settings: &[(&str, &str)]) -> Fixture {
        let table = unique_name("cache");
        seed_with_boto3(moto_endpoint, &table, flags);
        let operations = Operations::default();
        let clock = Clock::manual();
        let reader = client(app_endpoint, &operations).await;
        let (app, _events) = dynamo_app(reader, &table, settings, clock.clone());
        let writer = client(moto_endpoint, &Operations::default()).await;
        Fixture { app, operations, writer, table, clock }
    }

    /// Writes (or overwrites) flags with the SDK + serde_dynamo, behind the cache.
    async fn put(&self, flags: &[Value]) {
        put_flags(&self.writer, &self.table, flags).await;
    }

    fn stats(&self) -> CacheStats {
        self.app.cache.stats()
    }
}

/// What the evaluation order and bucketing formulas (docs/flag-format.md) say a user gets from the flags of [`ten_flags`] (computed here from
/// the formulas, not by the evaluator): `(enabled, reason, variant)`.
fn expected(key: &str, user: &str, plan: &str, age: u64) -> (bool, &'static str, Option<&'static str>) {
    let rollout = |pct: f64| {
        if f64::from(bucket::rollout_bucket(user, &bucket::rollout_suffix(key))) < pct {
            (true, "enabled", None)
        } else {
            (false, "not_in_rollout", None)
        }
    };
    match key {
        "on" => (true, "enabled", None),
        "off" => (false, "flag_disabled", None),
        "nobody" => (false, "not_in_rollout", None),
        "half" => rollout(50.0),
        "quarter" => rollout(25.5),
        "most" => rollout(90.0),
        "pro-only" if plan == "pro" => (true, "enabled", None),
        "pro-only" => (false, "targeting_rules_not_met", None),
        "adults" if age > 17 => (true, "enabled", None),
        "adults" => (false, "targeting_rules_not_met", None),
        "split" => {
            let point = bucket::variant_point(user, &bucket::variant_suffix(key));
            (true, "enabled", Some(if point < 0.3 { "a" } else { "b" }))
        }
        "ab-off" => (false, "flag_disabled", None),
        other => panic!("no expectation for {other}"),
    }
}

/// Ten flags in the Python service's shape (fractions, `100.0`, rule lists).
fn ten_flags() -> Value {
    json!([
        {"key": "on", "flag_id": "id-on", "enabled": true, "rollout_percentage": 100.0, "version": 1},
        {"key": "off", "flag_id": "id-off", "enabled": false, "rollout_percentage": 100.0, "version": 2},
        {"key": "nobody", "flag_id": "id-nobody", "enabled": true, "rollout_percentage": 0, "version": 3},
        {"key": "half", "flag_id": "id-half", "enabled": true, "rollout_percentage": 50.0, "version": 4},
        {"key": "quarter", "flag_id": "id-quarter", "enabled": true, "rollout_percentage": 25.5, "version": 5},
        {"key": "most", "flag_id": "id-most", "enabled": true, "rollout_percentage": 90.0, "version": 6},
        {"key": "pro-only", "flag_id": "id-pro-only", "enabled": true, "rollout_percentage": 100.0, "version": 7,
         "targeting_rules": [{"attribute": "plan", "operator": "equals", "value": "pro"}]},
        {"key": "adults", "flag_id": "id-adults", "enabled": true, "rollout_percentage": 100.0, "version": 8,
         "targeting_rules": [{"attribute": "age", "operator": "greater_than", "value": 17}]},
        {"key": "split", "flag_id": "id-split", "enabled": true, "rollout_percentage": 100.0, "version": 9,
         "variants": [{"key": "a", "allocation": 0.3}, {"key": "b", "allocation": 0.7}]},
        {"key": "ab-off", "flag_id": "id-ab-off", "enabled": false, "rollout_percentage": 100.0, "version": 10,
         "variants": [{"key": "a", "allocation": 0.5}, {"key": "b", "allocation": 0.5}]}
    ])
}

#[tokio::test]
async fn a_thousand_evaluations_of_ten_flags_read_each_flag_once() {
    let moto = shared_moto();
    let flags = ten_flags();
    let fx = Fixture::new(&moto.endpoint(), &moto.endpoint(), &flags, &[]).await;
    let flags = flags.as_array().expect("list");

    let mut outcomes_seen = std::collections::HashSet::new();
    for i in 0..1000usize {
        let flag = &flags[i % flags.len()];
        let key = flag["key"].as_str().expect("key");
        let user = format!("user-{}", (i * 7919) % 331);
        let plan = if i % 3 == 0 { "pro" } else { "free" };
        let age = (i % 40) as u64;
        let reply = evaluate(&fx.app, &user, key, json!({"plan": plan, "age": age})).await;
        assert_eq!(reply.status, 200, "{key} {user}: {}", reply.body);
        let (enabled, reason, variant) = expected(key, &user, plan, age);
        assert_eq!(reply.body["flag_key"], key);
        assert_eq!(reply.body["user_id"], user.as_str());
        assert_eq!(reply.body["flag_id"], flag["flag_id"], "{key}");
        assert_eq!(reply.body["version"], flag["version"], "{key}");
        assert_eq!(reply.body["enabled"], enabled, "{key} {user} {plan} {age}");
        assert_eq!(reply.body["reason"], reason, "{key} {user} {plan} {age}");
        assert_eq!(reply.body["variant"].as_str(), variant, "{key} {user}");
        assert!(reply.body.get("stale").is_none(), "{}", reply.body);
        outcomes_seen.insert((key.to_owned(), reason, variant));
    }
    // The users really are mixed: rollouts and splits went both ways.
    for (key, reason, variant) in [
        ("half", "enabled", None),
        ("half", "not_in_rollout", None),
        ("quarter", "not_in_rollout", None),
        ("split", "enabled", Some("a")),
        ("split", "enabled", Some("b")),
    ] {
        assert!(outcomes_seen.contains(&(key.to_owned(), reason, variant)), "{key} never gave {reason} {variant:?}");
    }

    assert_eq!(fx.operations.snapshot(), ops(&[("GetItem", 10)]), "one GetItem per flag, nothing else");
    let stats = fx.stats();
    assert_eq!((stats.store_reads, stats.misses, stats.hits), (10, 10, 990), "{stats:?}");
    assert_eq!((stats.entries, stats.evictions, stats.store_errors, stats.stale_serves), (10, 0, 0, 0), "{stats:?}");
    assert_eq!(fx.app.events.stats().recorded, 1000, "every evaluation is an event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_250_cold_keys_costs_three_batch_get_items() {
    let moto = shared_moto();
    let flags: Vec<Value> = (0..250)
        .map(|i| {
            json!({"key": format!("bulk-{i:03}"), "flag_id": format!("id-{i}"), "enabled": i % 3 != 0,
                   "rollout_percentage": 100.0, "version": i})
        })
        .collect();
    let fx = Fixture::new(&moto.endpoint(), &moto.endpoint(), &Value::Array(flags.clone()), &[]).await;
    let keys: Vec<String> = flags.iter().rev().map(|f| f["key"].as_str().expect("key").to_owned()).collect();
    let body = json!({"user_id": "user-1", "flag_keys": keys});

    let reply = post(&fx.app, "/batch_evaluate", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let results = reply.body["results"].as_object().expect("results");
    assert_eq!(results.len(), 250);
    for (i, flag) in flags.iter().enumerate() {
        let key = flag["key"].as_str().expect("key");
        let result = &results[key];
        assert_ne!(result["reason"], "flag_not_found", "{key} was not read: {result}");
        let (enabled, reason) = if i % 3 != 0 { (true, "enabled") } else { (false, "flag_disabled") };
        assert_eq!((&result["enabled"], &result["reason"]), (&json!(enabled), &json!(reason)), "{key}");
        assert_eq!((&result["version"], &result["flag_id"]), (&json!(i), &flag["flag_id"]), "{key}");
    }
    // 250 keys, at most 100 per BatchGetItem: three calls is the least possible, and no
    // GetItem or Scan on the side.
    let reads = fx.operations.snapshot();
    assert_eq!(reads.keys().collect::<Vec<_>>(), ["BatchGetItem"], "{reads:?}");
    assert!(fx.operations.count("BatchGetItem") <= 3, "{reads:?}");
    assert_eq!(reads, ops(&[("BatchGetItem", 3)]));
    let stats = fx.stats();
    assert_eq!((stats.store_reads, stats.misses, stats.hits, stats.entries), (1, 250, 0, 250), "{stats:?}");

    // The same batch again is answered from the cache.
    let again = post(&fx.app, "/batch_evaluate", &body).await;
    assert_eq!(again.body, reply.body);
    assert_eq!(fx.operations.snapshot(), ops(&[("BatchGetItem", 3)]));
    assert_eq!((fx.stats().store_reads, fx.stats().hits), (1, 250));
}

#[tokio::test]
async fn a_changed_flag_is_seen_once_its_ttl_has_passed() {
    let moto = shared_moto();
    let v1 = json!({"key": "ttl", "enabled": true, "rollout_percentage": 100.0, "version": 1});
    let fx = Fixture::new(&moto.endpoint(), &moto.endpoint(), &json!([v1]), &[("CACHE_TTL_SECONDS", "60")]).await;

    let reply = evaluate(&fx.app, "u", "ttl", json!({})).await;
    assert_eq!((&reply.body["enabled"], &reply.body["version"]), (&json!(true), &json!(1)));
    assert_eq!(fx.operations.snapshot(), ops(&[("GetItem", 1)]));

    // A new version lands in DynamoDB.
    fx.put(&[json!({"key": "ttl", "enabled": false, "rollout_percentage": 100.0, "version": 2})]).await;
    fx.clock.advance(Duration::from_secs(59));
    let reply = evaluate(&fx.app, "u", "ttl", json!({})).await;
    assert_eq!((&reply.body["enabled"], &reply.body["version"]), (&json!(true), &json!(1)), "within the TTL");
    let reply = ofrep(&fx.app, "u", "ttl").await;
    assert_eq!((&reply.body["value"], &reply.body["metadata"]["version"]), (&json!(true), &json!(1)));
    assert_eq!(fx.operations.snapshot(), ops(&[("GetItem", 1)]), "no read within the TTL");

    fx.clock.advance(Duration::from_secs(2));
    let reply = evaluate(&fx.app, "u", "ttl", json!({})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        (&reply.body["enabled"], &reply.body["reason"], &reply.body["version"]),
        (&json!(false), &json!("flag_disabled"), &json!(2)),
        "past the TTL the new version is read"
    );
    assert!(reply.body.get("stale").is_none());
    let reply = ofrep(&fx.app, "u", "ttl").await;
    assert_eq!((&reply.body["reason"], &reply.body["metadata"]["version"]), (&json!("DISABLED"), &json!(2)));
    assert_eq!(fx.operations.snapshot(), ops(&[("GetItem", 2)]), "exactly one more GetItem");
    let stats = fx.stats();
    assert_eq!((stats.store_reads, stats.misses, stats.hits), (2, 2, 3), "{stats:?}");
}

#[tokio::test]
async fn a_missing_flag_is_remembered_for_the_negative_ttl_only() {
    let moto = shared_moto();
    let other = json!({"key": "other", "enabled": true, "rollout_percentage": 100.0});
    let settings = [("CACHE_TTL_SECONDS", "300"), ("NEGATIVE_CACHE_TTL_SECONDS", "10")];
    let fx = Fixture::new(&moto.endpoint(), &moto.endpoint(), &json!([other]), &settings).await;

    let not_found = |reply: &Reply| {
        assert_eq!((reply.status, &reply.body), (404, &json!({"error": "Feature flag not found: late"})));
    };
    let ofrep_not_found = |reply: &Reply| {
        assert_eq!(reply.status, 404, "{}", reply.body);
        assert_eq!((&reply.body["key"], &reply.body["errorCode"]), (&json!("late"), &json!("FLAG_NOT_FOUND")));
    };
    not_found(&evaluate(&fx.app, "u", "late", json!({})).await);
    ofrep_not_found(&ofrep(&fx.app, "u", "late").await);
    assert_eq!(fx.operations.snapshot(), ops(&[("GetItem", 1)]), "the miss is read once, then remembered");

    fx.put(&[json!({"key": "late", "flag_id": "late-id", "enabled": true, "rollout_percentage": 100.0, "version": 4})])
        .await;
    fx.clock.advance(Duration::from_secs(9));
    not_found(&evaluate(&fx.app, "u", "late", json!({})).await);
    ofrep_not_found(&ofrep(&fx.app, "u", "late").await);
    assert_eq!(fx.operations.snapshot(), ops(&[("GetItem", 1)]), "still within the negative TTL");

    fx.clock.advance(Duration::from_secs(2));
    let reply = evaluate(&fx.app, "u", "late", json!({})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        (&reply.body["enabled"], &reply.body["reason"], &reply.body["flag_id"], &reply.body["version"]),
        (&json!(true), &json!("enabled"), &json!("late-id"), &json!(4))
    );
    let reply = ofrep(&fx.app, "u", "late").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!((&reply.body["value"], &reply.body["reason"]), (&json!(true), &json!("STATIC")));
    assert_eq!(fx.operations.snapshot(), ops(&[("GetItem", 2)]), "read again once, then cached (positive TTL)");
    let stats = fx.stats();
    assert_eq!((stats.store_reads, stats.misses, stats.hits, stats.entries), (2, 2, 4, 1), "{stats:?}");
}

/// Evaluates `key` (of a, b, c at versions 1, 2, 3) and checks the reads and evictions
/// so far.
async fn lru_step(fx: &Fixture, key: &str, reads: usize, evictions: u64) {
    let reply = evaluate(&fx.app, "u", key, json!({})).await;
    let version = 1 + u64::from(key.as_bytes()[0] - b'a');
    assert_eq!((reply.status, &reply.body["version"]), (200, &json!(version)), "{key}");
    assert_eq!(fx.operations.snapshot(), ops(&[("GetItem", reads)]), "after {key}");
    let stats = fx.stats();
    assert_eq!((stats.store_reads, stats.evictions), (reads as u64, evictions), "after {key}: {stats:?}");
    assert!(stats.entries <= 2, "{stats:?}");
}

#[tokio::test]
async fn beyond_capacity_the_least_recently_used_flag_is_read_again() {
    let moto = shared_moto();
    let flags = json!([
        {"key": "a", "enabled": true, "rollout_percentage": 100.0, "version": 1},
        {"key": "b", "enabled": true, "rollout_percentage": 100.0, "version": 2},
        {"key": "c", "enabled": true, "rollout_percentage": 100.0, "version": 3}
    ]);
    let fx = Fixture::new(&moto.endpoint(), &moto.endpoint(), &flags, &[("CACHE_MAX_ENTRIES", "2")]).await;
    lru_step(&fx, "a", 1, 0).await;
    lru_step(&fx, "b", 2, 0).await;
    lru_step(&fx, "a", 2, 0).await; // a is now the most recently used; b the least
    lru_step(&fx, "c", 3, 1).await; // evicts b
    lru_step(&fx, "a", 3, 1).await; // a survived
    lru_step(&fx, "b", 4, 2).await; // b was evicted: read again (evicting c)
    lru_step(&fx, "a", 4, 2).await;
    lru_step(&fx, "c", 5, 3).await;
    let stats = fx.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (3, 5, 2), "{stats:?}");
}

/// Holds every `target` exchange (e.g. the one `GetItem`) in the proxy until the cache
/// has counted `misses` misses, i.e. until every concurrent request has missed and is
/// waiting, so the overlap does not depend on moto being slow. Bounded, so a broken
/// cache fails the test's assertions instead of hanging it.
fn hold_until_missed(proxy: &Proxy, app: &Arc<App>, target: &'static str, misses: u64) {
    let app = Arc::downgrade(app);
    proxy.set_hook(move |exchange, body, forward| {
        if exchange == target {
            let deadline = Instant::now() + Duration::from_secs(10);
            while app.upgrade().is_some_and(|app| app.cache.stats().misses < misses) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        forward(body)
    });
    // And a little longer, for the last request to go from its miss to its wait.
    proxy.set_delay(Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_for_a_cold_key_share_one_get_item() {
    const REQUESTS: u64 = 50;
    let moto = shared_moto();
    let proxy = Proxy::start(&moto.endpoint());
    let flag = json!({"key": "hot", "flag_id": "hot-id", "enabled": true, "rollout_percentage": 50.0, "version": 7});
    let fx = Fixture::new(&moto.endpoint(), &proxy.endpoint(), &json!([flag]), &[]).await;
    hold_until_missed(&proxy, &fx.app, GET_ITEM, REQUESTS);

    let tasks: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let app = fx.app.clone();
            tokio::spawn(async move {
                let user = format!("user-{i}");
                let reply = evaluate(&app, &user, "hot", json!({})).await;
                (user, reply)
            })
        })
        .collect();
    let mut enabled = 0;
    for task in tasks {
        let (user, reply) = task.await.expect("request task");
        assert_eq!(reply.status, 200, "{user}: {}", reply.body);
        let on = f64::from(bucket::rollout_bucket(&user, &bucket::rollout_suffix("hot"))) < 50.0;
        let reason = if on { "enabled" } else { "not_in_rollout" };
        assert_eq!((&reply.body["enabled"], &reply.body["reason"]), (&json!(on), &json!(reason)), "{user}");
        assert_eq!((&reply.body["flag_id"], &reply.body["version"]), (&json!("hot-id"), &json!(7)), "{user}");
        enabled += usize::from(on);
    }
    assert!(0 < enabled && enabled < 50, "the 50 users are mixed: {enabled} in the rollout");

    assert_eq!(fx.operations.snapshot(), ops(&[("GetItem", 1)]), "one read for 50 concurrent misses");
    assert_eq!(proxy.count(GET_ITEM), 1);
    let stats = fx.stats();
    // All 50 missed (none arrived after the read finished, which would be a hit).
    assert_eq!((stats.misses, stats.hits, stats.store_reads, stats.entries), (50, 0, 1, 1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_bulk_requests_share_one_scan() {
    const REQUESTS: u64 = 50;
    let moto = shared_moto();
    let proxy = Proxy::start(&moto.endpoint());
    let flags = json!([
        {"key": "x", "enabled": true, "rollout_percentage": 100.0, "version": 1},
        {"key": "y", "enabled": false, "rollout_percentage": 100.0, "version": 2}
    ]);
    let fx = Fixture::new(&moto.endpoint(), &proxy.endpoint(), &flags, &[]).await;
    hold_until_missed(&proxy, &fx.app, "DynamoDB_20120810.Scan", REQUESTS);

    let tasks: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let app = fx.app.clone();
            tokio::spawn(async move { ofrep_bulk(&app, &format!("user-{i}")).await })
        })
        .collect();
    for task in tasks {
        let (status, bulk) = task.await.expect("request task");
        assert_eq!(status, 200);
        assert_eq!(bulk.keys().map(String::as_str).collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!((&bulk["x"]["value"], &bulk["x"]["reason"]), (&json!(true), &json!("STATIC")));
        assert_eq!((&bulk["y"]["value"], &bulk["y"]["reason"]), (&json!(false), &json!("DISABLED")));
    }
    assert_eq!(fx.operations.snapshot(), ops(&[("Scan", 1)]), "one Scan for 50 concurrent bulk requests");
    let stats = fx.stats();
    assert_eq!((stats.misses, stats.hits, stats.store_reads), (50, 0, 1), "{stats:?}");
    // The snapshot also warmed the per-flag cache.
    assert_eq!(evaluate(&fx.app, "u", "x", json!({})).await.body["enabled"], true);
    assert_eq!(fx.operations.snapshot(), ops(&[("Scan", 1)]));
}

/// The flags of the outage test, at `version`: values flip between versions.
fn outage_flags(version: u64, keys: &[&str]) -> Value {
    let on = version % 2 == 1;
    let all = [
        json!({"key": "a", "enabled": on, "rollout_percentage": 100.0, "version": version}),
        json!({"key": "b", "enabled": !on, "rollout_percentage": 100.0, "version": version}),
        json!({"key": "c", "enabled": true, "rollout_percentage": 100.0, "version": version,
               "variants": [{"key": if on { "red" } else { "blue" }, "allocation": 1.0,
                             "payload": {"shade": version}}]}),
        json!({"key": "d", "enabled": true, "rollout_percentage": 100.0, "version": version}),
    ];
    Value::Array(all.into_iter().filter(|f| keys.contains(&f["key"].as_str().unwrap_or(""))).collect())
}

#[tokio::test]
async fn while_dynamodb_is_down_cached_flags_are_served_stale_and_the_rest_fail_loudly() {
    let mut moto = Moto::start();
    let settings =
        [("CACHE_TTL_SECONDS", "60"), ("NEGATIVE_CACHE_TTL_SECONDS", "30"), ("STALE_IF_ERROR_SECONDS", "600")];
    let fx = Fixture::new(&moto.endpoint(), &moto.endpoint(), &outage_flags(1, &["a", "b", "c"]), &settings).await;
    let app = &fx.app;

    // Warm a and b one by one, the every-flag snapshot (a, b, c) by an OFREP bulk call,
    // and a negative entry for `ghost`.
    assert_eq!(evaluate(app, "u", "a", json!({})).await.body["enabled"], true);
    assert_eq!(evaluate(app, "u", "b", json!({})).await.body["enabled"], false);
    let (status, bulk) = ofrep_bulk(app, "u").await;
    assert_eq!((status, bulk.keys().map(String::as_str).collect::<Vec<_>>()), (200, vec!["a", "b", "c"]));
    assert_eq!(bulk["c"]["reason"], "STATIC");
    assert_eq!(bulk["c"]["value"], json!({"shade": 1}));
    assert_eq!(evaluate(app, "u", "ghost", json!({})).await.status, 404);
    // d arrives after the snapshot: in the store, never in the cache.
    fx.put(outage_flags(1, &["d"]).as_array().expect("list")).await;
    assert_eq!(fx.operations.snapshot(), ops(&[("GetItem", 3), ("Scan", 1)]));
    assert_eq!(fx.stats().store_errors, 0);

    // The outage: DynamoDB is gone, and every TTL (positive and negative) has passed.
    moto.stop();
    fx.clock.advance(Duration::from_secs(61));

    let reply = evaluate(app, "u", "a", json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        (&reply.body["enabled"], &reply.body["reason"], &reply.body["version"], &reply.body["stale"]),
        (&json!(true), &json!("enabled"), &json!(1), &json!(true))
    );
    assert_eq!(fx.operations.count("GetItem"), 4, "the refresh was tried");
    let stats = fx.stats();
    assert_eq!((stats.store_errors, stats.stale_serves), (1, 1), "{stats:?}");

    // Within the error backoff, a is served stale without asking the dead store again.
    let reply = ofrep(app, "u", "a").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        (&reply.body["value"], &reply.body["reason"], &reply.body["metadata"]["version"]),
        (&json!(true), &json!("STALE"), &json!(1))
    );
    assert_eq!(fx.operations.count("GetItem"), 4, "a's own backoff");
    // b (read singly) and c (known only from the snapshot) are stale too, each after
    // its own refresh was tried: a's failure holds back only a.
    let reply = ofrep(app, "u", "b").await;
    assert_eq!((reply.status, &reply.body["value"], &reply.body["reason"]), (200, &json!(false), &json!("STALE")));
    let reply = ofrep(app, "u", "c").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!((&reply.body["value"], &reply.body["variant"]), (&json!({"shade": 1}), &json!("red")));
    assert_eq!(reply.body["reason"], "STALE");
    assert_eq!(fx.operations.count("GetItem"), 6, "b and c tried once each");
    let stats = fx.stats();
    assert_eq!((stats.store_errors, stats.stale_serves), (3, 4), "{stats:?}");

    // ghost's negative entry has expired: the store's last word, "not found", is served
    // stale (one failed re-read, then ghost's own backoff).
    let reply = evaluate(app, "u", "ghost", json!({})).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.body, json!({"error": "Feature flag not found: ghost"}));
    let reply = ofrep(app, "u", "ghost").await;
    assert_eq!((reply.status, &reply.body["errorCode"]), (404, &json!("FLAG_NOT_FOUND")), "{}", reply.body);
    assert_eq!(fx.operations.count("GetItem"), 7, "ghost tried once");

    // Nothing usable cached: an error, never "not found" (d exists). Each ask tries the
    // store (there is nothing to serve instead), within the failure budget.
    let key = "d";
    let before = fx.operations.count("GetItem");
    let reply = evaluate(app, "u", key, json!({})).await;
    assert_eq!(reply.status, 503, "{key}: {}", reply.body);
    // Short and generic; the SDK's dump is in the log only.
    assert_eq!(reply.body, json!({"error": "flag store unavailable", "request_id": REQUEST_ID}), "{key}");
    let reply = ofrep(app, "u", key).await;
    assert_eq!(reply.status, 500, "{key}: {}", reply.body);
    assert_eq!(
        reply.body,
        json!({"key": key, "errorCode": "GENERAL", "errorDetails": "flag store unavailable", "request_id": REQUEST_ID}),
        "{key}"
    );
    assert_eq!(fx.operations.count("GetItem"), before + 2, "{key}: tried by each ask");
    // In a batch, the stale flag is served and the unreadable one is an inline error.
    let reply = post(app, "/batch_evaluate", &json!({"user_id": "u", "flag_keys": ["a", "d"]})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        (&reply.body["results"]["a"]["enabled"], &reply.body["results"]["a"]["stale"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(reply.body["results"]["d"]["error_code"], "GENERAL");
    assert_eq!(reply.body["results"]["d"]["error"], "flag store unavailable");
    assert_ne!(reply.body["results"]["d"]["reason"], "flag_not_found");

    // The every-flag snapshot is served stale: the Scan is tried once (its own target),
    // then left alone for its backoff.
    let stale_before = fx.stats().stale_serves;
    for _ in 0..2 {
        let (status, bulk) = ofrep_bulk(app, "u").await;
        assert_eq!((status, bulk.keys().map(String::as_str).collect::<Vec<_>>()), (200, vec!["a", "b", "c"]));
        assert!(bulk.values().all(|f| f["reason"] == "STALE"), "{bulk:?}");
        assert_eq!((&bulk["a"]["value"], &bulk["b"]["value"]), (&json!(true), &json!(false)));
        assert_eq!(bulk["c"]["value"], json!({"shade": 1}));
    }
    let reply = post(app, "/batch_evaluate", &json!({"user_id": "u"})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let results = reply.body["results"].as_object().expect("results");
    assert_eq!(results.len(), 3);
    assert!(results.values().all(|r| r["stale"] == true), "{results:?}");
    assert_eq!(fx.operations.count("Scan"), 2, "one failed Scan, then its backoff");
    assert_eq!(fx.stats().stale_serves, stale_before + 3);

    // A cold environment started during the outage has nothing to serve: errors, never
    // an empty flag list.
    let cold_operations = Operations::default();
    let (cold, _) =
        dynamo_app(client(&moto.endpoint(), &cold_operations).await, &fx.table, &settings, fx.clock.clone());
    let reply = post(&cold, "/ofrep/v1/evaluate/flags", &json!({"context": {"targetingKey": "u"}})).await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({"errorCode": "GENERAL", "errorDetails": "flag store unavailable", "request_id": REQUEST_ID})
    );
    let reply = post(&cold, "/batch_evaluate", &json!({"user_id": "u"})).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.body, json!({"error": "flag store unavailable", "request_id": REQUEST_ID}));
    assert_eq!(cold_operations.count("Scan"), 2, "nothing to serve instead: each asked the store");

    // Stale values are served for STALE_IF_ERROR_SECONDS past the TTL, and no longer.
    fx.clock.advance(Duration::from_secs(600));
    let reply = evaluate(app, "u", "a", json!({})).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    let reply = ofrep(app, "u", "b").await;
    assert_eq!((reply.status, &reply.body["errorCode"]), (500, &json!("GENERAL")), "{}", reply.body);
    let (status, _) = ofrep_bulk(app, "u").await;
    assert_eq!(status, 500);
    assert_eq!(fx.operations.count("Scan"), 3, "the snapshot's backoff had long passed: tried again");

    // DynamoDB comes back (empty: the table is recreated, every flag at version 2).
    moto.restart();
    seed_with_boto3(&moto.endpoint(), &fx.table, &outage_flags(2, &["a", "b", "c", "d"]));
    let errors = fx.stats().store_errors;
    // The backoff runs from when the failed read ended: past the read's own time too.
    fx.clock.advance(ERROR_BACKOFF + RELAXED_STORE_TIMEOUT);

    let reply = evaluate(app, "u", "a", json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        (&reply.body["enabled"], &reply.body["reason"], &reply.body["version"]),
        (&json!(false), &json!("flag_disabled"), &json!(2))
    );
    assert!(reply.body.get("stale").is_none(), "{}", reply.body);
    for (key, value, reason) in [("b", json!(true), "STATIC"), ("c", json!({"shade": 2}), "STATIC")] {
        let reply = ofrep(app, "u", key).await;
        assert_eq!(reply.status, 200, "{key}: {}", reply.body);
        assert_eq!((&reply.body["value"], &reply.body["reason"]), (&value, &json!(reason)), "{key}");
        assert_eq!(reply.body["metadata"]["version"], 2, "{key}");
    }
    let reply = ofrep(app, "u", "d").await;
    assert_eq!((reply.status, &reply.body["metadata"]["version"]), (200, &json!(2)), "{}", reply.body);
    let (status, bulk) = ofrep_bulk(app, "u").await;
    assert_eq!((status, bulk.keys().map(String::as_str).collect::<Vec<_>>()), (200, vec!["a", "b", "c", "d"]));
    assert!(bulk.values().all(|f| f["reason"] != "STALE" && f["metadata"]["version"] == 2), "{bulk:?}");
    assert_eq!(fx.operations.count("Scan"), 4, "one Scan before the outage, two during it, one after");
    assert_eq!(fx.stats().store_errors, errors, "no failure after the restart");
}

/// A flag on for everybody that needs `prerequisites`.
fn needing(key: &str, prerequisites: Value) -> Value {
    json!({"key": key, "enabled": true, "rollout_percentage": 100, "prerequisites": prerequisites})
}

#[tokio::test]
async fn a_prerequisite_chain_is_loaded_one_level_per_read() {
    let moto = shared_moto();
    let chain = json!([
        {"key": "A", "enabled": true, "rollout_percentage": 100.0, "version": 1,
         "prerequisites": [{"key": "B"}]},
        {"key": "B", "enabled": true, "rollout_percentage": 100.0, "version": 1,
         "prerequisites": [{"key": "C", "variant": "blue"}]},
        {"key": "C", "enabled": true, "rollout_percentage": 100.0, "version": 1,
         "variants": [{"key": "blue", "allocation": 1.0}]}
    ]);
    let fx = Fixture::new(&moto.endpoint(), &moto.endpoint(), &chain, &[("CACHE_TTL_SECONDS", "60")]).await;

    let reply = evaluate(&fx.app, "u", "A", json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!((&reply.body["enabled"], &reply.body["reason"]), (&json!(true), &json!("enabled")));
    // A, then B (A's prerequisite), then C (B's): one GetItem per level.
    assert_eq!(fx.operations.snapshot(), ops(&[("GetItem", 3)]));
    let stats = fx.stats();
    assert_eq!((stats.store_reads, stats.entries), (3, 3), "B and C are cached too: {stats:?}");

    let reply = evaluate(&fx.app, "u", "A", json!({})).await;
    assert_eq!(reply.body["enabled"], true);
    assert_eq!(fx.operations.snapshot(), ops(&[("GetItem", 3)]), "the whole chain is warm");

    // C stops serving `blue` (disabled): B fails, so A fails, once the TTL has passed.
    fx.put(&[json!({"key": "C", "enabled": false, "rollout_percentage": 100.0, "version": 2,
                    "variants": [{"key": "blue", "allocation": 1.0}]})])
        .await;
    fx.clock.advance(Duration::from_secs(61));
    let reply = evaluate(&fx.app, "u", "A", json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!((&reply.body["enabled"], &reply.body["reason"]), (&json!(false), &json!("prerequisite_failed")));
    assert_eq!(reply.body["version"], 1);
    assert_eq!(fx.operations.snapshot(), ops(&[("GetItem", 6)]), "each level re-read once");
    assert_eq!(fx.stats().store_reads, 6);
    let reply = ofrep(&fx.app, "u", "B").await;
    assert_eq!((&reply.body["value"], &reply.body["reason"]), (&json!(false), &json!("DEFAULT")));
    assert_eq!(fx.operations.snapshot(), ops(&[("GetItem", 6)]));

    // A level of two flags is one read too: top → {left, right} → bottom.
    fx.put(&[
        needing("top", json!([{"key": "left"}, {"key": "right"}])),
        needing("left", json!([{"key": "bottom"}])),
        needing("right", json!([{"key": "bottom"}])),
        json!({"key": "bottom", "enabled": true, "rollout_percentage": 100.0}),
    ])
    .await;
    let reply = evaluate(&fx.app, "u", "top", json!({})).await;
    assert_eq!((&reply.body["enabled"], &reply.body["reason"]), (&json!(true), &json!("enabled")), "{}", reply.body);
    assert_eq!(fx.operations.snapshot(), ops(&[("BatchGetItem", 1), ("GetItem", 8)]));
    assert_eq!(fx.stats().store_reads, 9);
}

#[tokio::test]
async fn items_written_by_boto3_evaluate_through_the_api_as_python_decided() {
    let moto = shared_moto();
    let fixture: Value = serde_json::from_str(include_str!("fixtures/golden.json")).expect("golden.json");
    let cases = fixture["evaluations"].as_array().expect("evaluations");
    let mut flags: BTreeMap<String, Value> = BTreeMap::new();
    for case in cases {
        let key = case["flag"]["key"].as_str().expect("key").to_owned();
        flags.entry(key).or_insert_with(|| case["flag"].clone());
    }
    let checkout = json!({
        "key": "checkout", "flag_id": "flag-7f3a", "enabled": true, "rollout_percentage": 100.0, "version": 3,
        "description": "New checkout", "created_at": "2024-03-01T12:00:00Z",
        "targeting_rules": [{"attribute": "plan_level", "operator": "equals", "value": 2}],
        "variants": [
            {"key": "control", "allocation": 0.5, "payload": {"layout": "classic", "ratio": 0.25, "tags": ["a"]}},
            {"key": "treatment", "allocation": 0.5, "payload": {"layout": "wide", "ratio": 0.75, "new": true}}
        ]
    });
    let mut items: Vec<Value> = flags.values().cloned().collect();
    items.push(checkout.clone());
    let fx = Fixture::new(&moto.endpoint(), &moto.endpoint(), &Value::Array(items), &[]).await;

    // Every golden case: the Python-computed enabled/reason/variant, through POST /evaluate.
    assert!(cases.len() > 100);
    for case in cases {
        let context = if case["context"].is_object() { case["context"].clone() } else { json!({}) };
        let user = case["user"].as_str().expect("user");
        let reply = evaluate(&fx.app, user, case["flag"]["key"].as_str().expect("key"), context).await;
        assert_eq!(reply.status, 200, "{case}: {}", reply.body);
        assert_eq!(reply.body["enabled"], case["enabled"], "{case}");
        assert_eq!(reply.body["reason"], case["reason"], "{case}");
        assert_eq!(reply.body["variant"], case["variant"], "{case}");
    }
    assert_eq!(fx.operations.snapshot(), ops(&[("GetItem", flags.len())]), "each item read once");

    // The service-shaped multivariate item: its boto3 Decimals and maps come back as the
    // OFREP value (the variant's payload).
    for user in ["user-1", "user-2", "user-3", "user-42"] {
        let body = json!({"context": {"targetingKey": user, "plan_level": 2}});
        let reply = post(&fx.app, "/ofrep/v1/evaluate/flags/checkout", &body).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let point = bucket::variant_point(user, &bucket::variant_suffix("checkout"));
        let variant = &checkout["variants"][usize::from(point >= 0.5)];
        assert_eq!(reply.body["variant"], variant["key"], "{user}");
        assert_eq!(reply.body["value"], variant["payload"], "{user}");
        assert_eq!(reply.body["reason"], "SPLIT", "{user}");
        assert_eq!(reply.body["metadata"], json!({"flag_id": "flag-7f3a", "version": 3}));
    }
    let reply = evaluate(&fx.app, "user-1", "checkout", json!({"plan_level": "2"})).await;
    assert_eq!(reply.body["reason"], "targeting_rules_not_met", "the string \"2\" is not the number 2");
    assert_eq!(fx.operations.snapshot(), ops(&[("GetItem", flags.len() + 1)]));
}

/// What a stretch of traffic against a hanging DynamoDB looked like.
struct HangRun {
    /// Every request's latency, sorted.
    latencies: Vec<Duration>,
    /// `GetItem` calls made during the hang.
    get_items: usize,
    /// How long the traffic ran.
    ran: Duration,
}

impl HangRun {
    fn quantile(&self, q: f64) -> Duration {
        let index = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[index]
    }
}

/// Warms three flags through a proxy, lets their 1 s TTL pass, makes the proxy hang
/// (30 s per request) and runs 8 clients evaluating them back to back for `run`, with
/// the store timing out after `timeout_ms`. Real clocks throughout: this is about time.
async fn traffic_during_a_hang(timeout_ms: &str, run: Duration) -> HangRun {
    let moto = shared_moto();
    let table = unique_name("hang");
    seed_with_boto3(&moto.endpoint(), &table, &outage_flags(1, &["a", "b", "c"]));
    let proxy = Proxy::start(&moto.endpoint());
    let operations = Operations::default();
    let settings = [("CACHE_TTL_SECONDS", "1"), ("STORE_TIMEOUT_MS", timeout_ms)];
    let (app, _) = dynamo_app(client(&proxy.endpoint(), &operations).await, &table, &settings, Clock::system());
    for key in ["a", "b", "c"] {
        assert_eq!(evaluate(&app, "u", key, json!({})).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    proxy.set_delay(Duration::from_secs(30));
    let before = operations.count("GetItem");
    let started = Instant::now();
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for n in 0.. {
                    if started.elapsed() >= run {
                        break;
                    }
                    let key = ["a", "b", "c"][(i + n) % 3];
                    let sent = Instant::now();
                    let reply = evaluate(&app, "u", key, json!({})).await;
                    latencies.push(sent.elapsed());
                    // A client on a socket waits for I/O between requests; a loop over
                    // cache hits never would, and would starve the timers of the
                    // runtime's two workers.
                    tokio::task::yield_now().await;
                    assert_eq!((reply.status, &reply.body["stale"]), (200, &json!(true)), "{key}: {}", reply.body);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await.expect("client"));
    }
    let ran = started.elapsed();
    latencies.sort();
    HangRun { latencies, get_items: operations.count("GetItem") - before, ran }
}

/// The store times out after 1.2 s: longer than the 1 s backoff, as
/// a hang was before `STORE_TIMEOUT_MS` (the SDK's 2 s/5 s). With the backoff counted
/// from the request's start it had ended before the failure was known, and every
/// request waited on the hanging store; counted from the failure, the requests that
/// arrive during it get the cached flags, stale, without any store call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_store_hang_cached_flags_are_served_stale_without_waiting() {
    let run = traffic_during_a_hang("1200", Duration::from_secs(4)).await;
    let (p50, p99, max) = (run.quantile(0.5), run.quantile(0.99), run.quantile(1.0));
    eprintln!(
        "hang, 1.2 s timeout: {} requests in {:?}, p50 {p50:?}, p99 {p99:?}, max {max:?}, {} GetItem",
        run.latencies.len(),
        run.ran,
        run.get_items
    );
    // What the design guarantees: at most one GetItem per key per (timeout + backoff)
    // window (flights share a key's read; the backoff covers every key), ...
    let windows = (run.ran.as_secs_f64() / (1.2 + ERROR_BACKOFF.as_secs_f64())).ceil() as usize + 1;
    assert!(run.get_items <= 3 * windows, "{} GetItem for {windows} windows", run.get_items);
    // ... so only the few requests that arrive while a read hangs wait for it: most of
    // them are answered from the cache at once, and none waits much past the timeout.
    assert!(run.latencies.len() > 8 * 3 * windows, "{} requests", run.latencies.len());
    assert!(p50 <= Duration::from_millis(100), "p50 {p50:?}");
    assert!(max < Duration::from_millis(2500), "max {max:?}");
}

/// The same with the default `STORE_TIMEOUT_MS` (500 ms): the figures in the README.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_store_hang_with_the_default_timeout_no_request_waits_past_it() {
    let timeout = flagfn::config::DEFAULT_STORE_TIMEOUT;
    let run = traffic_during_a_hang(&timeout.as_millis().to_string(), Duration::from_secs(4)).await;
    let (p50, p99, max) = (run.quantile(0.5), run.quantile(0.99), run.quantile(1.0));
    eprintln!(
        "hang, default timeout: {} requests in {:?}, p50 {p50:?}, p99 {p99:?}, max {max:?}, {} GetItem",
        run.latencies.len(),
        run.ran,
        run.get_items
    );
    let windows = (run.ran.as_secs_f64() / (timeout + ERROR_BACKOFF).as_secs_f64()).ceil() as usize + 1;
    assert!(run.get_items <= 3 * windows, "{} GetItem for {windows} windows", run.get_items);
    assert!(p50 <= Duration::from_millis(100), "p50 {p50:?}");
    assert!(max < Duration::from_millis(2500), "max {max:?}");
}

/// Unknown keys are remembered in their own small LRU, so a flood of
/// them cannot push out the flags in use, which then outlive an outage as stale values.
#[tokio::test]
async fn a_flood_of_unknown_keys_leaves_the_flags_in_use_to_serve_stale() {
    use common::proxy::Fault;
    let moto = shared_moto();
    let proxy = Proxy::start(&moto.endpoint());
    let settings = [("CACHE_MAX_ENTRIES", "8"), ("CACHE_TTL_SECONDS", "60")];
    let fx = Fixture::new(&moto.endpoint(), &proxy.endpoint(), &outage_flags(1, &["a", "b"]), &settings).await;
    let app = &fx.app;
    assert_eq!(evaluate(app, "u", "a", json!({})).await.body["enabled"], true);
    assert_eq!(evaluate(app, "u", "b", json!({})).await.body["enabled"], false);
    for round in 0..5 {
        let ghosts: Vec<String> = (0..100).map(|i| format!("ghost-{round}-{i}")).collect();
        let reply = post(app, "/batch_evaluate", &json!({"user_id": "u", "flag_keys": ghosts})).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(fx.operations.count("BatchGetItem"), 5);
    assert_eq!(fx.stats().entries, 2 + 2, "two flags and a quarter of 8 not-found keys");

    proxy.set_fault(Fault::Http500);
    fx.clock.advance(Duration::from_secs(61));
    for (key, enabled) in [("a", true), ("b", false)] {
        let reply = evaluate(app, "u", key, json!({})).await;
        assert_eq!(reply.status, 200, "{key}: {}", reply.body);
        assert_eq!((&reply.body["enabled"], &reply.body["stale"]), (&json!(enabled), &json!(true)), "{key}");
    }
    assert_eq!(fx.stats().store_errors, 2, "one failed refresh per flag, then each one's backoff");
}
