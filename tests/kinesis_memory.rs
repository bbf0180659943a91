//! Memory under hostile but legal input: the real API, event
//! pipeline, `KinesisSink` and AWS SDK, events to Kinesis (moto), with the heap measured
//! by a counting global allocator — this dedicated test binary's only allocator. The
//! tests take turns ([`SERIAL`]) so each peak is its own.
//!
//! - One maximal request (`POST /batch_evaluate`: 1,000 unknown keys and a ~235 KB
//!   context, just under the 256 KiB body limit), and the same over OFREP bulk with 1,000
//!   flags: before the fix every event serialized its own copy of the context at the flush
//!   (~260 MB); now one serialization is shared and one batch of records exists at a time.
//! - A sink that is down under sustained traffic of large-context requests: the buffer's
//!   byte bound holds, the oldest events are dropped and counted.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use common::kinesis::{client, create_stream};
use common::moto::{shared_moto, unique_name};
use common::proxy::{Fault, Proxy};
use flagfn::api::{handle, BodyEncoding, Method, Request};
use flagfn::app::App;
use flagfn::clock::Clock;
use flagfn::sink::KinesisSink;
use flagfn::store::FileStore;
use serde_json::{json, Map, Value};

/// Counts live heap bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(live, Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on as it is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is passed on as it is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            grew(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One test at a time, so a peak is never another test's.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MIB: usize = 1 << 20;
/// The targets are peak RSS: 64 MiB for one maximal request, 128 MiB under a
/// failing sink. The heap is most of it; code, stacks and the allocator's slack take the
/// rest (the debug binary's RSS at rest is ~12 MiB), so the heap gets 48 and 96 MiB.
const MAXIMAL_REQUEST_HEAP: usize = 48 * MIB;
const FAILING_SINK_HEAP: usize = 96 * MIB;

/// Starts a new high-water mark from what is live now; returns that baseline. The
/// targets are checked on the growth from it, so what another test's runtime is still
/// tearing down is not counted.
fn reset_peak() -> usize {
    let live = LIVE.load(Relaxed);
    PEAK.store(live, Relaxed);
    live
}

/// The process's peak RSS so far (for the log; the assertions are on the heap).
fn vm_hwm() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmHWM")).unwrap_or("VmHWM: ?").to_owned()
}

/// A context of `entries` strings of `len` bytes, plus `extra`.
fn big_context(entries: usize, len: usize, extra: &[(&str, &str)]) -> Map<String, Value> {
    let mut context: Map<String, Value> =
        (0..entries).map(|i| (format!("attr-{i:03}"), Value::String(format!("{i:03}").repeat(len / 3)))).collect();
    context.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned()))));
    context
}

/// `count` flags `flag-0000`..., written to a temp file.
fn flags_file(count: usize) -> std::path::PathBuf {
    let flags: Vec<Value> = (0..count)
        .map(|i| json!({"key": format!("flag-{i:04}"), "enabled": true, "rollout_percentage": 50, "version": 1}))
        .collect();
    let path = std::env::temp_dir().join(format!("{}.json", unique_name("flagfn-memory-flags")));
    std::fs::write(&path, serde_json::to_vec(&flags).expect("JSON")).expect("write the flags file");
    path
}

async fn app(flags: &std::path::Path, endpoint: &str, stream: &str, settings: &[(&str, &str)]) -> App {
    let config = common::app::config(&flags.to_string_lossy(), settings);
    let store = Arc::new(FileStore::open(flags).expect("flags file"));
    let sink = Arc::new(KinesisSink::new(client(endpoint).await, stream));
    App::new(store, Some(sink), &config, Clock::system())
}

async fn post(app: &App, path: &str, body: &[u8], request_id: &str) -> u16 {
    let request = Request {
        method: Method::Post,
        path,
        query: "",
        if_none_match: None,
        body,
        request_id,
        encoding: BodyEncoding::Json,
    };
    handle(app, request).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_maximal_request_stays_within_its_memory_target() {
    let _turn = SERIAL.lock().await;
    let moto = shared_moto();
    let kinesis = client(&moto.endpoint()).await;
    let stream = unique_name("memory-maximal");
    create_stream(&kinesis, &stream).await;
    let flags = flags_file(1_000);
    let app = app(&flags, &moto.endpoint(), &stream, &[]).await;

    let keys: Vec<String> = (0..1_000).map(|i| format!("missing-{i:04}")).collect();
    let batch = json!({"user_id": "user-1", "flag_keys": keys, "context": big_context(100, 2_340, &[])});
    let batch = serde_json::to_vec(&batch).expect("JSON");
    let context = big_context(100, 2_340, &[("targetingKey", "user-1")]);
    let bulk = serde_json::to_vec(&json!({ "context": context })).expect("JSON");
    for body in [&batch, &bulk] {
        assert!((230_000..256 * 1024).contains(&body.len()), "{} bytes: maximal but legal", body.len());
    }

    for (path, body) in [("/batch_evaluate", &batch), ("/ofrep/v1/evaluate/flags", &bulk)] {
        let before = reset_peak();
        assert_eq!(post(&app, path, body, &format!("req-{path}")).await, 200);
        let report = app.events.flush().await;
        assert_eq!((report.sent, report.kept), (1_000, 0), "{path}");
        let peak = PEAK.load(Relaxed);
        eprintln!("{path}: heap {} MiB before, peak {} MiB; {}", before / MIB, peak / MIB, vm_hwm());
        assert!(peak - before <= MAXIMAL_REQUEST_HEAP, "{path}: heap grew by {} MiB", (peak - before) / MIB);
    }
    // Every event was accepted by Kinesis (moto): none kept, none dropped. (Reading 480 MB
    // of records back is left to the smaller end-to-end tests in kinesis_events.rs.)
    let stats = app.events.stats();
    assert_eq!((stats.recorded, stats.delivered, stats.dropped, stats.buffered), (2_000, 2_000, 0, 0));
    let _ = std::fs::remove_file(flags);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_under_sustained_traffic_keeps_the_buffer_within_its_byte_bound() {
    let _turn = SERIAL.lock().await;
    let moto = shared_moto();
    let proxy = Proxy::start(&moto.endpoint());
    proxy.set_fault(Fault::CloseConnections);
    let stream = unique_name("memory-failing");
    let flags = flags_file(20);
    let app = app(&flags, &proxy.endpoint(), &stream, &[]).await;
    let keys: Vec<String> = (0..10).map(|i| format!("flag-{i:04}")).collect();
    let body = json!({"user_id": "user-1", "flag_keys": keys, "context": big_context(100, 2_000, &[])});
    let body = serde_json::to_vec(&body).expect("JSON");

    let before = reset_peak();
    // 300 requests × ~200 KB contexts: ~60 MB of contexts, ~600 MB of records; a flush
    // attempt (failing) every 20 requests, as a busy Lambda environment would make.
    for i in 0..300 {
        assert_eq!(post(&app, "/batch_evaluate", &body, &format!("req-{i}")).await, 200);
        if i % 20 == 19 {
            assert_eq!(app.events.flush().await.sent, 0);
            assert!(app.events.stats().buffered_bytes <= 32 * MIB);
        }
    }
    let peak = PEAK.load(Relaxed);
    let stats = app.events.stats();
    eprintln!("failing sink: heap {} MiB before, peak {} MiB; {}; {stats:?}", before / MIB, peak / MIB, vm_hwm());
    assert!(peak - before <= FAILING_SINK_HEAP, "heap grew by {} MiB", (peak - before) / MIB);
    assert_eq!(stats.recorded, 3_000);
    assert!(stats.dropped > 0, "{stats:?}");
    assert_eq!(stats.delivered, 0);
    assert_eq!(stats.dropped + stats.buffered as u64, stats.recorded, "every event buffered or counted dropped");
    let _ = std::fs::remove_file(flags);
}
