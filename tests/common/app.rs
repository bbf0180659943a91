//! An `App` over a flags file, with an in-memory event sink, for tests of the API and
//! the Lambda adapter above the `FlagStore`/`EventSink` traits.

use std::sync::{Arc, Mutex};

use flagfn::api::{handle, BodyEncoding, Method, Request};
use flagfn::app::App;
use flagfn::clock::Clock;
use flagfn::config::Config;
use flagfn::sink::{BoxFuture, EventRecord, EventSink, FailedRecord, SinkError, SinkLimits};
use flagfn::store::FileStore;

/// Keeps every record it is sent.
#[derive(Debug, Default)]
pub struct MemorySink {
    pub records: Mutex<Vec<EventRecord>>,
}

impl MemorySink {
    /// The records so far, parsed.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let records = self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        records.iter().map(|r| serde_json::from_slice(&r.data).expect("records are JSON")).collect()
    }
}

impl EventSink for MemorySink {
    fn send<'a>(&'a self, records: &'a [EventRecord]) -> BoxFuture<'a, Result<Vec<FailedRecord>, SinkError>> {
        Box::pin(async move {
            self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(records.iter().cloned());
            Ok(Vec::new())
        })
    }

    fn limits(&self) -> SinkLimits {
        SinkLimits { max_records: 500, max_bytes: 5 << 20, max_record_bytes: 1 << 20 }
    }
}

/// `path` relative to the crate root (an absolute path is kept as it is).
fn crate_path(path: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path).to_string_lossy().into_owned()
}

/// Settings from `vars`, defaults for everything else.
fn config_with(first: (&str, String), extra: &[(&str, &str)]) -> Config {
    let vars: Vec<(String, String)> = [(first.0.to_owned(), first.1)]
        .into_iter()
        .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())).expect("valid config")
}

/// Settings as a test wants them: the file given, defaults otherwise.
pub fn config(flags_file: &str, extra: &[(&str, &str)]) -> Config {
    config_with(("FLAGS_FILE", crate_path(flags_file)), extra)
}

/// Settings for an app over the DynamoDB table `table`, defaults otherwise (`extra`
/// sets e.g. `CACHE_TTL_SECONDS`).
pub fn table_config(table: &str, extra: &[(&str, &str)]) -> Config {
    config_with(("FLAGS_TABLE", table.to_owned()), extra)
}

/// An app over `flags_file` (relative to the crate root, or absolute) recording into a
/// memory sink.
pub fn file_app(flags_file: &str, clock: Clock) -> (Arc<App>, Arc<MemorySink>) {
    let config = config(flags_file, &[]);
    let path = crate_path(flags_file);
    let store = Arc::new(FileStore::open(path).expect("flags file"));
    let sink = Arc::new(MemorySink::default());
    let app = App::new(store, Some(sink.clone()), &config, clock);
    (Arc::new(app), sink)
}

/// One answer of the API: its status and its body, parsed (`null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
}

/// The request id [`post`] sends (answers echo it in error bodies).
pub const REQUEST_ID: &str = "req-test";

/// `POST path` with `body` as JSON, through the transport-neutral API.
pub async fn post(app: &App, path: &str, body: &serde_json::Value) -> Reply {
    let body = body.to_string();
    let request = Request {
        method: Method::Post,
        path,
        query: "",
        if_none_match: None,
        body: body.as_bytes(),
        request_id: REQUEST_ID,
        encoding: BodyEncoding::Json,
    };
    let response = handle(app, request).await;
    let body = match response.body.is_empty() {
        true => serde_json::Value::Null,
        false => serde_json::from_slice(&response.body).expect("JSON body"),
    };
    Reply { status: response.status, body }
}

/// Bytes written through `std::io::Write` (metric lines, logs), kept for the test to
/// read; clones share them.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
