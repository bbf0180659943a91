//! Recording evaluation events on the hot path (target: ≤ 100 ns per evaluation; docs/performance.md);
//! serialization is deferred to the flush, which is measured separately.

mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use flagfn::app::App;
use flagfn::clock::Clock;
use flagfn::events::EventPipeline;
use flagfn::outcome::Subject;
use serde_json::json;
use support::{config, mixed_flags, ready, time_with_flushes, MemoryStore, NullSink};

fn events(c: &mut Criterion) {
    let flags = mixed_flags(100);
    let keys: Vec<String> = flags.iter().map(|f| f.key().to_owned()).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    // Outcomes as a request produces them (events off in this app: we only want outcomes).
    let app = App::new(Arc::new(MemoryStore(flags)), None, &config(), Clock::system());
    let context = json!({"country": "US", "plan": "pro"}).as_object().cloned().unwrap_or_default();
    let subject =
        Subject { user_id: Some(Arc::from("user-000042")), context: Arc::new(context), request_id: Arc::from("req-1") };
    let outcomes = ready(app.evaluate_keys(&subject, &key_refs));
    let now = SystemTime::now();
    let pipeline = EventPipeline::new(Some(Arc::new(NullSink)), config().events);

    let mut group = c.benchmark_group("events");
    group.bench_function("record_1", |b| {
        b.iter_custom(|iters| {
            time_with_flushes(iters, &pipeline, || {
                pipeline.record(black_box(&subject), now, black_box(&outcomes[2..3]))
            })
        });
    });
    group.bench_function("record_100", |b| {
        b.iter_custom(|iters| {
            time_with_flushes(iters, &pipeline, || pipeline.record(black_box(&subject), now, black_box(&outcomes)))
        });
    });
    // The same with the per-flag metrics tally on (on by default in Lambda).
    let tallied = EventPipeline::new(Some(Arc::new(NullSink)), config().events);
    tallied.count_flags(true);
    group.bench_function("record_1_tallied", |b| {
        b.iter_custom(|iters| {
            time_with_flushes(iters, &tallied, || tallied.record(black_box(&subject), now, black_box(&outcomes[2..3])))
        });
    });
    group.bench_function("record_100_tallied", |b| {
        b.iter_custom(|iters| {
            time_with_flushes(iters, &tallied, || tallied.record(black_box(&subject), now, black_box(&outcomes)))
        });
    });
    // The deferred work, per 1,000 events: serialize + hand to the sink.
    group.bench_function("flush_1000", |b| {
        b.iter_batched(
            || {
                let fresh = EventPipeline::new(Some(Arc::new(NullSink)), config().events);
                for _ in 0..10 {
                    fresh.record(&subject, now, &outcomes);
                }
                fresh
            },
            |fresh| black_box(ready(fresh.flush()).sent),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, events);
criterion_main!(benches);
