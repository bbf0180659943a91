//! A function URL event (JSON text in) → response (JSON text out), in-process, through
//! `flagfn::lambda::invoke` — what the runtime calls for each invocation: event parsing,
//! routing, body parsing and limits, cache hits, evaluation, event recording, rendering.
//! Targets (docs/performance.md): ≤ 5 µs for 1 flag, ≤ 40 µs for 100 flags. Events are recorded
//! as in production and flushed between timed runs, as after a response.

mod support;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use flagfn::app::App;
use flagfn::clock::Clock;
use serde_json::{json, Value};
use support::{config, mixed_flags, ready, time_with_flushes, users, MemoryStore, NullSink};

/// events/url-evaluate-post.json with another body: a realistic function URL event.
fn url_event(body: &Value) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/events/url-evaluate-post.json");
    let text = std::fs::read_to_string(path).expect("events/url-evaluate-post.json");
    let mut event: Value = serde_json::from_str(&text).expect("event JSON");
    event["body"] = Value::String(body.to_string());
    if let Some(path) = body.get("flag_keys").map(|_| "/batch_evaluate") {
        event["rawPath"] = json!(path);
        event["requestContext"]["http"]["path"] = json!(path);
    }
    event.to_string()
}

fn handler(c: &mut Criterion) {
    let flags = mixed_flags(100);
    let keys: Vec<String> = flags.iter().map(|f| f.key().to_owned()).collect();
    let app = App::new(Arc::new(MemoryStore(flags)), Some(Arc::new(NullSink)), &config(), Clock::system());
    // As in Lambda, where metrics are on by default: every evaluation is tallied per flag.
    app.events.count_flags(true);
    let context = json!({"country": "US", "plan": "pro", "app_version": "4.2.0"});
    let users = &users()[..64];
    let one: Vec<String> =
        users.iter().map(|u| url_event(&json!({"user_id": u, "flag_key": "flag-002", "context": context}))).collect();
    let batch: Vec<String> =
        users.iter().map(|u| url_event(&json!({"user_id": u, "flag_keys": keys, "context": context}))).collect();
    // Warm the cache, and check the events answer what the bench claims to measure.
    let first: Value = serde_json::from_str(&ready(flagfn::lambda::invoke(&app, &one[0], "warm"))).expect("JSON");
    assert_eq!(first["statusCode"], 200, "{first}");
    let all: Value = serde_json::from_str(&ready(flagfn::lambda::invoke(&app, &batch[0], "warm"))).expect("JSON");
    let body: Value = serde_json::from_str(all["body"].as_str().unwrap_or("")).expect("body");
    assert_eq!(body["results"].as_object().map(|r| r.len()), Some(100), "{all}");

    let mut group = c.benchmark_group("handler");
    let mut i = 0usize;
    group.bench_function("url_1_flag", |b| {
        b.iter_custom(|iters| {
            time_with_flushes(iters, &app.events, || {
                i = (i + 1) % one.len();
                black_box(ready(flagfn::lambda::invoke(&app, black_box(&one[i]), "bench")).len());
            })
        })
    });
    group.bench_function("url_100_flags", |b| {
        b.iter_custom(|iters| {
            time_with_flushes(iters, &app.events, || {
                i = (i + 1) % batch.len();
                black_box(ready(flagfn::lambda::invoke(&app, black_box(&batch[i]), "bench")).len());
            })
        })
    });
    // OFREP bulk (every flag): what every bulk request pays for change detection (the
    // empty query's check, the version read, `metadata`), without a claim (a claim newer
    // than the configuration costs a look; its bounds are tested, not benched).
    let bulk: Vec<String> = users
        .iter()
        .map(|u| {
            let mut event: Value =
                serde_json::from_str(&url_event(&json!({"context": {"targetingKey": u}}))).expect("event JSON");
            event["rawPath"] = json!("/ofrep/v1/evaluate/flags");
            event["requestContext"]["http"]["path"] = json!("/ofrep/v1/evaluate/flags");
            event.to_string()
        })
        .collect();
    let answer: Value = serde_json::from_str(&ready(flagfn::lambda::invoke(&app, &bulk[0], "warm"))).expect("JSON");
    assert_eq!(answer["statusCode"], 200, "{answer}");
    group.bench_function("url_ofrep_bulk_100_flags", |b| {
        b.iter_custom(|iters| {
            time_with_flushes(iters, &app.events, || {
                i = (i + 1) % bulk.len();
                black_box(ready(flagfn::lambda::invoke(&app, black_box(&bulk[i]), "bench")).len());
            })
        })
    });
    group.finish();
}

criterion_group!(benches, handler);
criterion_main!(benches);
