//! The freshness check above the `ManifestStore` trait, driven by the manual clock:
//! requests never read the manifest; the after-response phase reads it at most once per
//! window; a newer version invalidates exactly the changed keys; a failed read changes
//! nothing and is retried next window. The DynamoDB side is tested on moto in
//! `tests/freshness.rs`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::app::App;
use crate::clock::Clock;
use crate::config::Config;
use crate::outcome::Subject;
use crate::store::FileStore;

/// An in-memory manifest that counts reads and can fail.
#[derive(Default)]
struct FakeManifest {
    manifest: Mutex<Manifest>,
    reads: AtomicUsize,
    failing: AtomicBool,
}

impl FakeManifest {
    fn write(&self, keys: &[&str], at: SystemTime) {
        let mut manifest = self.manifest.lock().unwrap_or_else(PoisonError::into_inner);
        let writes: Vec<Written> = keys.iter().map(|k| Written { key: (*k).to_owned(), at: millis(at) }).collect();
        *manifest = manifest.with(&writes);
    }
}

impl ManifestStore for FakeManifest {
    fn read(&self) -> BoxFuture<'_, Result<Manifest, ManifestError>> {
        self.reads.fetch_add(1, SeqCst);
        let result = if self.failing.load(SeqCst) {
            Err(ManifestError::Unreadable("down".into()))
        } else {
            Ok(self.manifest.lock().unwrap_or_else(PoisonError::into_inner).clone())
        };
        Box::pin(async move { result })
    }

    fn record<'a>(&'a self, writes: &'a [Written]) -> BoxFuture<'a, Result<Manifest, ManifestError>> {
        if self.failing.load(SeqCst) {
            return Box::pin(async { Err(ManifestError::Contended(8)) });
        }
        let mut manifest = self.manifest.lock().unwrap_or_else(PoisonError::into_inner);
        *manifest = manifest.with(writes);
        let result = Ok(manifest.clone());
        Box::pin(async move { result })
    }
}

fn app(vars: &[(&str, &str)], clock: &Clock) -> (App, Arc<FakeManifest>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/flags.json");
    let lookup = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
            .or_else(|| (name == "FLAGS_FILE").then(|| path.to_owned()))
    };
    let config = Config::from_lookup(lookup).expect("config");
    let store = Arc::new(FileStore::open(path).expect("flags file"));
    let manifest = Arc::new(FakeManifest::default());
    (App::new(store, None, &config, clock.clone()).with_manifest(manifest.clone()), manifest)
}

fn subject() -> Subject {
    Subject { user_id: Some(Arc::from("user-1")), context: Arc::default(), request_id: Arc::from("r") }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test]
async fn requests_never_read_the_manifest_and_after_response_reads_it_once_per_window() {
    let clock = Clock::manual();
    let (app, manifest) = app(&[], &clock);
    assert!(app.has_after_response_work(), "freshness alone registers the extension");
    for _ in 0..20 {
        app.evaluate_one(&subject(), "dark-mode").await;
        app.evaluate_keys(&subject(), &["dark-mode", "new-checkout"]).await;
        app.evaluate_all(&subject()).await.expect("all");
        clock.advance(secs(1));
    }
    assert_eq!(manifest.reads.load(SeqCst), 0, "20 s of requests, no manifest read");
    app.after_response().await;
    assert_eq!(manifest.reads.load(SeqCst), 1);
    for _ in 0..49 {
        clock.advance(Duration::from_millis(100));
        app.after_response().await;
    }
    assert_eq!(manifest.reads.load(SeqCst), 1, "at most one read per 5 s window");
    clock.advance(Duration::from_millis(100));
    app.after_response().await;
    assert_eq!(manifest.reads.load(SeqCst), 2, "the next window reads again");
    assert_eq!(app.freshness.stats().checks, 2);
}

#[tokio::test]
async fn a_newer_version_invalidates_exactly_the_changed_keys() {
    let clock = Clock::manual();
    let (app, manifest) = app(&[], &clock);
    manifest.write(&["long-ago"], clock.wall() - secs(3600));
    app.evaluate_keys(&subject(), &["dark-mode", "new-checkout"]).await;
    app.after_response().await;
    assert_eq!(app.freshness.stats().invalidated_keys, 0, "a change from before the start invalidates nothing");
    let reads = app.cache.stats().store_reads;
    manifest.write(&["dark-mode"], clock.wall());
    clock.advance(secs(5));
    app.after_response().await;
    assert_eq!(app.freshness.stats().invalidated_keys, 1);
    assert_eq!(app.cache.stats().store_reads, reads + 1, "the changed key is read again, after the response");
    app.evaluate_keys(&subject(), &["new-checkout"]).await;
    app.evaluate_one(&subject(), "dark-mode").await;
    assert_eq!(app.cache.stats().store_reads, reads + 1, "both are hits: the unchanged and the refreshed");
    clock.advance(secs(5));
    app.after_response().await;
    assert_eq!(app.cache.stats().store_reads, reads + 2, "re-read once more a window later (eventual consistency)");
    assert_eq!(app.freshness.stats().invalidated_keys, 1, "counted once");
    clock.advance(secs(5));
    app.after_response().await;
    assert_eq!(app.cache.stats().store_reads, reads + 2, "and then left alone");
}

#[tokio::test]
async fn a_failed_read_changes_nothing_is_counted_and_is_retried_next_window() {
    let clock = Clock::manual();
    let (app, manifest) = app(&[], &clock);
    app.after_response().await;
    app.evaluate_one(&subject(), "dark-mode").await;
    let reads = app.cache.stats().store_reads;
    manifest.write(&["dark-mode"], clock.wall());
    manifest.failing.store(true, SeqCst);
    clock.advance(secs(5));
    app.after_response().await;
    clock.advance(secs(1));
    app.after_response().await;
    assert_eq!(
        (app.freshness.stats().checks, app.freshness.stats().read_failures),
        (2, 1),
        "not retried within the window"
    );
    app.evaluate_one(&subject(), "dark-mode").await;
    assert_eq!(app.cache.stats().store_reads, reads, "nothing invalidated");
    manifest.failing.store(false, SeqCst);
    clock.advance(secs(4));
    app.after_response().await;
    assert_eq!(app.cache.stats().store_reads, reads + 1, "the next window sees the change");
}

#[tokio::test]
async fn zero_seconds_or_no_manifest_means_ttl_only() {
    let clock = Clock::manual();
    let (app, manifest) = app(&[("FRESHNESS_SECONDS", "0")], &clock);
    assert!(!app.has_after_response_work());
    app.after_response().await;
    assert_eq!(manifest.reads.load(SeqCst), 0);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/flags.json");
    let config = Config::from_lookup(|n| (n == "FLAGS_FILE").then(|| path.to_owned())).expect("config");
    let plain = App::new(Arc::new(FileStore::open(path).expect("file")), None, &config, clock);
    assert!(!plain.has_after_response_work() && !plain.freshness.enabled());
}

#[tokio::test]
async fn a_stream_event_records_its_keys_in_the_manifest_and_invalidates_them_here() {
    let clock = Clock::manual();
    let (app, manifest) = app(&[], &clock);
    let event = include_str!("../../events/dynamodb-stream.json");
    app.evaluate_one(&subject(), "dark-mode").await;
    let reads = app.cache.stats().store_reads;
    let answer = crate::lambda::invoke(&app, event, "req-1").await;
    assert_eq!(answer, r#"{"batchItemFailures":[]}"#);
    let recorded = manifest.manifest.lock().unwrap_or_else(PoisonError::into_inner).clone();
    assert_eq!(recorded.version, 3);
    let keys: Vec<&str> = recorded.changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["dark-mode", "new-checkout", "gift-wrap"]);
    assert_eq!(recorded.changes[0].at, 1_796_054_400_000, "the record's own time");
    assert_eq!(manifest.reads.load(SeqCst), 0, "a stream event reads nothing");
    assert_eq!(app.cache.stats().store_reads, reads + 1, "refreshed in this environment too");
}

#[tokio::test]
async fn a_failed_manifest_write_reports_the_batch_for_retry() {
    let clock = Clock::manual();
    let (app, manifest) = app(&[], &clock);
    manifest.failing.store(true, SeqCst);
    let answer = crate::lambda::invoke(&app, include_str!("../../events/dynamodb-stream.json"), "req-1").await;
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(answer, serde_json::json!({"batchItemFailures": [{"itemIdentifier": "1110000000014422108971"}]}));
}

#[tokio::test]
async fn a_stream_event_without_a_manifest_is_acknowledged() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/flags.json");
    let config = Config::from_lookup(|n| (n == "FLAGS_FILE").then(|| path.to_owned())).expect("config");
    let app = App::new(Arc::new(FileStore::open(path).expect("file")), None, &config, Clock::manual());
    let answer = crate::lambda::invoke(&app, include_str!("../../events/dynamodb-stream.json"), "req-1").await;
    assert_eq!(answer, r#"{"batchItemFailures":[]}"#);
}
