//! The change stream and the change-triggered re-fetch, over real sockets: the local
//! server on a flags file this test edits.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flagfn::app::App;
use flagfn::changes::Changes;
use flagfn::clock::Clock;
use flagfn::store::FileStore;
use serde_json::Value;

/// A flags file of one flag, `banner`, rewritten by [`Flags::set`].
struct Flags {
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
    writes: u64,
}

impl Flags {
    fn new(name: &str) -> Flags {
        let dir = std::env::temp_dir().join(format!("flagfn-stream-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut flags = Flags { path: dir.join("flags.json"), dir, writes: 0 };
        flags.set(true);
        flags
    }

    /// Writes the file with `banner` on or off, each write with a later mtime.
    fn set(&mut self, enabled: bool) {
        self.writes += 1;
        let text = format!(
            r#"{{"flags":[{{"key":"banner","enabled":{enabled},"rollout_percentage":100,"version":{}}}]}}"#,
            self.writes
        );
        let tmp = self.dir.join("flags.json.tmp");
        std::fs::write(&tmp, text).expect("write flags");
        let at = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + self.writes);
        std::fs::File::options().write(true).open(&tmp).and_then(|f| f.set_modified(at)).expect("mtime");
        std::fs::rename(&tmp, &self.path).expect("rename");
    }
}

impl Drop for Flags {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The local server in-process; stops when dropped.
struct Server {
    base: String,
    addr: std::net::SocketAddr,
    local: common::server::LocalServer,
}

impl Server {
    fn start(flags: &Flags, extra: &[(&str, &str)], heartbeat: Duration) -> Server {
        let path = flags.path.to_string_lossy().into_owned();
        let config = common::app::config(&path, extra);
        let store = Arc::new(FileStore::open(&path).expect("flags file"));
        let mut app = App::new(store, None, &config, Clock::system());
        app.changes = Changes::new(&config).with_heartbeat(heartbeat);
        let app = Arc::new(app);
        let local = common::server::LocalServer::start(app);
        Server { base: local.base.clone(), addr: local.addr, local }
    }

    /// Stops the server; returns how long it took.
    fn stop(&mut self) -> Duration {
        self.local.stop()
    }

    /// `POST /ofrep/v1/evaluate/flags?query`: status and parsed body.
    fn bulk(&self, query: &str) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{}/ofrep/v1/evaluate/flags{query}", self.base);
        let mut response = agent.post(&url).send(br#"{"context":{"targetingKey":"user-1"}}"#.as_slice()).expect("bulk");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Opens the stream; returns the socket, after the response head.
    fn open(&self, last_event_id: Option<&str>) -> Stream {
        self.open_uri("/ofrep/v1/stream", last_event_id)
    }

    /// Opens the stream at `uri` (path and query).
    fn open_uri(&self, uri: &str, last_event_id: Option<&str>) -> Stream {
        let mut tcp = TcpStream::connect(self.addr).expect("connect");
        let id = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        let request = format!("GET {uri} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{id}\r\n");
        tcp.write_all(request.as_bytes()).expect("send");
        Stream { tcp, text: String::new() }
    }
}

/// One open stream and everything read from it so far.
struct Stream {
    tcp: TcpStream,
    text: String,
}

impl Stream {
    /// Reads until `want` has appeared `count` times in all text read, or `within` passes.
    /// Returns whether it did.
    fn wait_for(&mut self, want: &str, count: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while self.text.matches(want).count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.tcp.set_read_timeout(Some(left.min(Duration::from_millis(100)))).expect("timeout");
            match self.tcp.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => self.text.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Reads until the server closes the connection (or `within` passes).
    fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            self.tcp.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
            match self.tcp.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.text.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return true,
            }
        }
        false
    }

    /// The `data:` payloads of every message read so far, parsed.
    fn messages(&self) -> Vec<Value> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).expect("JSON"))
            .collect()
    }
}

fn banner(bulk: &Value) -> &Value {
    &bulk["flags"].as_array().expect("flags")[0]["value"]
}

#[test]
fn bulk_responses_advertise_the_stream_and_the_configuration_version() {
    let flags = Flags::new("advertise");
    let server = Server::start(&flags, &[], Duration::from_secs(15));
    let (status, body) = server.bulk("");
    assert_eq!(status, 200, "{body}");
    let streams = body["eventStreams"].as_array().expect("eventStreams");
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0]["type"], "sse");
    assert!(streams[0].get("url").is_none(), "exactly one of url and endpoint");
    assert_eq!(streams[0]["inactivityDelaySec"], 120);
    let etag = body["metadata"]["flagConfigEtag"].as_str().expect("metadata.flagConfigEtag");
    assert!(etag.starts_with('f'), "{etag}");
    assert_eq!(streams[0]["endpoint"]["requestUri"], format!("/ofrep/v1/stream?since={etag}"));
    assert_eq!(body["metadata"]["flagConfigLastModified"], 1_700_000_001);

    // Streams off: nothing advertised, and the path is an unknown route.
    let off = Server::start(&flags, &[("STREAM_MAX_CLIENTS", "0")], Duration::from_secs(15));
    let (_, body) = off.bulk("");
    assert!(body.get("eventStreams").is_none(), "{body}");
    let mut stream = off.open(None);
    assert!(stream.wait_for("404", 1, Duration::from_secs(5)), "{}", stream.text);
}

#[test]
fn a_flags_file_edit_reaches_an_open_stream_and_the_refetch_sees_it() {
    let mut flags = Flags::new("edit");
    let server = Server::start(&flags, &[], Duration::from_secs(15));
    let (_, before) = server.bulk("");
    assert_eq!(banner(&before), &Value::Bool(true));
    let mut stream = server.open(None);
    assert!(stream.wait_for("flagfn change stream", 1, Duration::from_secs(5)), "{}", stream.text);
    assert!(stream.text.contains("content-type: text/event-stream"), "{}", stream.text);
    assert!(stream.messages().is_empty(), "a new client with no Last-Event-ID is told nothing yet");

    let edited = Instant::now();
    flags.set(false);
    assert!(stream.wait_for("refetchEvaluation", 1, Duration::from_secs(10)), "{}", stream.text);
    println!("flags-file edit → refetchEvaluation on the stream: {} ms", edited.elapsed().as_millis());
    let message = &stream.messages()[0];
    let etag = message["etag"].as_str().expect("etag");
    assert_eq!(message["lastModified"], 1_700_000_002);
    assert!(stream.text.contains(&format!("id: {etag}\nevent: message\n")), "{}", stream.text);

    // The re-fetch the client makes with the event's metadata sees the new flags.
    let (status, after) = server.bulk(&format!("?flagConfigEtag={etag}&flagConfigLastModified=1700000002"));
    assert_eq!(status, 200, "{after}");
    assert_eq!(banner(&after), &Value::Bool(false));
    assert_eq!(after["metadata"]["flagConfigEtag"], etag, "ids are stable: the event's id is the answer's version");

    // A second edit is a second message with a new id.
    flags.set(true);
    assert!(stream.wait_for("refetchEvaluation", 2, Duration::from_secs(10)), "{}", stream.text);
    let messages = stream.messages();
    assert_ne!(messages[0]["etag"], messages[1]["etag"]);
}

#[test]
fn last_event_id_replays_what_a_client_missed() {
    let mut flags = Flags::new("replay");
    let server = Server::start(&flags, &[], Duration::from_secs(15));
    let (_, first) = server.bulk("");
    let old = first["metadata"]["flagConfigEtag"].as_str().expect("etag").to_owned();
    flags.set(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    let current = loop {
        let (_, body) = server.bulk("");
        if body["metadata"]["flagConfigEtag"] != old.as_str() {
            break body["metadata"]["flagConfigEtag"].as_str().expect("etag").to_owned();
        }
        assert!(Instant::now() < deadline, "the edit was never seen");
        std::thread::sleep(Duration::from_millis(50));
    };

    // Missed a change: one message at once, for the current version.
    let mut missed = server.open(Some(&old));
    assert!(missed.wait_for("refetchEvaluation", 1, Duration::from_secs(2)), "{}", missed.text);
    assert_eq!(missed.messages()[0]["etag"], current.as_str());
    // Up to date: nothing.
    let mut current_client = server.open(Some(&current));
    assert!(current_client.wait_for("flagfn change stream", 1, Duration::from_secs(5)));
    assert!(!current_client.wait_for("refetchEvaluation", 1, Duration::from_millis(500)), "{}", current_client.text);
    // An id that means nothing here: missed everything, not an error.
    let mut invalid = server.open(Some("é-not-an-id"));
    assert!(invalid.wait_for("refetchEvaluation", 1, Duration::from_secs(2)), "{}", invalid.text);
    assert!(invalid.text.starts_with("HTTP/1.1 200"), "{}", invalid.text);
}

/// A change between a client's bulk fetch and its stream opening is not lost: the
/// advertised URI names the version the client has.
#[test]
fn a_stream_opened_after_a_change_is_told_at_once_through_since() {
    let mut flags = Flags::new("since");
    let server = Server::start(&flags, &[], Duration::from_secs(15));
    let (_, fetched) = server.bulk("");
    let uri = fetched["eventStreams"][0]["endpoint"]["requestUri"].as_str().expect("requestUri").to_owned();
    let old = fetched["metadata"]["flagConfigEtag"].as_str().expect("etag").to_owned();
    // Not yet changed: nothing at once.
    let mut early = server.open_uri(&uri, None);
    assert!(early.wait_for("flagfn change stream", 1, Duration::from_secs(5)), "{}", early.text);
    assert!(!early.wait_for("refetchEvaluation", 1, Duration::from_millis(400)), "{}", early.text);
    // The flags change before this client's stream opens.
    flags.set(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.bulk("").1["metadata"]["flagConfigEtag"] == old.as_str() {
        assert!(Instant::now() < deadline, "the edit was never seen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut late = server.open_uri(&uri, None);
    assert!(late.wait_for("refetchEvaluation", 1, Duration::from_secs(2)), "{}", late.text);
    // A `Last-Event-ID` (a reconnect) says more recently what the client has, and wins.
    let current = late.messages()[0]["etag"].as_str().expect("etag").to_owned();
    let mut reconnect = server.open_uri(&uri, Some(&current));
    assert!(reconnect.wait_for("flagfn change stream", 1, Duration::from_secs(5)));
    assert!(!reconnect.wait_for("refetchEvaluation", 1, Duration::from_millis(400)), "{}", reconnect.text);
}

#[test]
fn streams_are_capped_send_heartbeats_and_end_at_shutdown() {
    let flags = Flags::new("cap");
    let mut server = Server::start(&flags, &[("STREAM_MAX_CLIENTS", "2")], Duration::from_millis(100));
    let mut a = server.open(None);
    let mut b = server.open(None);
    assert!(a.wait_for(":\n\n", 2, Duration::from_secs(5)), "heartbeats: {}", a.text);
    assert!(b.wait_for("flagfn change stream", 1, Duration::from_secs(5)));
    let mut third = server.open(None);
    assert!(third.wait_for("HTTP/1.1 503", 1, Duration::from_secs(5)), "{}", third.text);
    assert!(third.text.to_ascii_lowercase().contains("retry-after: 5"), "{}", third.text);
    // Ordinary requests still get through at the stream cap.
    assert_eq!(server.bulk("").0, 200);
    // A closed stream frees its slot.
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = server.open(None);
        if again.wait_for("HTTP/1.1 ", 1, Duration::from_secs(5)) && again.text.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never freed: {}", again.text);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Shutdown ends the open streams cleanly (the final chunk), well inside the grace.
    let took = server.stop();
    assert!(a.closed_within(Duration::from_secs(5)), "the stream was not closed");
    assert!(
        a.text.ends_with("0\r\n\r\n"),
        "a clean end of the chunked body: {:?}",
        &a.text[a.text.len().saturating_sub(40)..]
    );
    assert!(took < Duration::from_secs(3), "shutdown waited for the streams: {took:?}");
}

#[test]
fn bad_refetch_parameters_are_400_parse_errors_that_do_not_repeat_the_value() {
    let flags = Flags::new("params");
    let server = Server::start(&flags, &[], Duration::from_secs(15));
    for query in
        ["?flagConfigLastModified=-1", "?flagConfigLastModified=soon%3Cscript%3E", "?flagConfigLastModified=1.5"]
    {
        let (status, body) = server.bulk(query);
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["errorCode"], "PARSE_ERROR", "{query}");
        let details = body["errorDetails"].as_str().expect("details");
        assert!(!details.contains("-1") && !details.contains("script") && !details.contains("1.5"), "{details}");
    }
    assert_eq!(server.bulk("?flagConfigLastModified=2026-02-20T21:28:18Z&flagConfigEtag=x").0, 200);
}

#[test]
fn a_cross_origin_reconnect_with_last_event_id_passes_its_preflight() {
    let flags = Flags::new("preflight");
    let server = Server::start(&flags, &[], Duration::from_secs(15));
    let mut tcp = TcpStream::connect(server.addr).expect("connect");
    let preflight = "OPTIONS /ofrep/v1/stream HTTP/1.1\r\nHost: test\r\nOrigin: https://app.example\r\n\
                     Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: last-event-id\r\n\r\n";
    tcp.write_all(preflight.as_bytes()).expect("send");
    let mut reply = Stream { tcp, text: String::new() };
    assert!(reply.wait_for("\r\n\r\n", 1, Duration::from_secs(5)), "{}", reply.text);
    let head = reply.text.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 204"), "{head}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    let allowed = head.lines().find(|l| l.starts_with("access-control-allow-headers:")).unwrap_or_default();
    assert!(allowed.contains("last-event-id"), "{head}");
}

/// `POST /ofrep/v1/evaluate/flags?query` straight through the API (no server, so no
/// watcher: only the re-check can notice an edit).
async fn bulk_direct(app: &App, query: &str) -> Value {
    let request = flagfn::api::Request {
        method: flagfn::api::Method::Post,
        path: "/ofrep/v1/evaluate/flags",
        query,
        if_none_match: None,
        body: br#"{"context":{"targetingKey":"user-1"}}"#,
        request_id: "req-test",
        encoding: flagfn::api::BodyEncoding::Json,
    };
    let response = flagfn::api::handle(app, request).await;
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    serde_json::from_slice(&response.body).expect("JSON")
}

#[tokio::test]
async fn a_client_reporting_a_newer_configuration_gets_it_despite_the_cache() {
    let mut flags = Flags::new("recheck");
    let path = flags.path.to_string_lossy().into_owned();
    let config = common::app::config(&path, &[("CACHE_TTL_SECONDS", "3600")]);
    let app = App::new(Arc::new(FileStore::open(&path).expect("flags file")), None, &config, Clock::system());
    let first = bulk_direct(&app, "").await;
    assert_eq!(banner(&first), &Value::Bool(true));
    assert!(first.get("eventStreams").is_none(), "no server serves a stream: {first}");
    flags.set(false);
    // Without a claim the cache (an hour's TTL) answers: the edit is not seen...
    assert_eq!(banner(&bulk_direct(&app, "").await), &Value::Bool(true));
    // ...an old claim changes nothing...
    let old = first["metadata"]["flagConfigLastModified"].as_u64().map(|at| format!("flagConfigLastModified={at}"));
    let old = old.unwrap_or_default();
    assert_eq!(banner(&bulk_direct(&app, &old).await), &Value::Bool(true));
    // ...and a newer one is looked for before the answer.
    let after = bulk_direct(&app, "flagConfigLastModified=1700000002").await;
    assert_eq!(banner(&after), &Value::Bool(false), "{after}");
    assert_eq!(after["metadata"]["flagConfigLastModified"], 1_700_000_002);
}

#[tokio::test]
async fn a_stream_served_elsewhere_is_advertised_by_its_url_without_a_server() {
    let flags = Flags::new("elsewhere");
    let path = flags.path.to_string_lossy().into_owned();
    let url = "https://streams.example.com/ofrep/v1/stream?channel=prod";
    let config = common::app::config(&path, &[("EVENT_STREAM_URL", url)]);
    let app = App::new(Arc::new(FileStore::open(&path).expect("flags file")), None, &config, Clock::system());
    let body = bulk_direct(&app, "").await;
    let streams = body["eventStreams"].as_array().expect("advertised as in Lambda, with no local server");
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0]["type"], "sse");
    assert_eq!(streams[0]["url"], url);
    assert!(streams[0].get("endpoint").is_none(), "exactly one of url and endpoint: {body}");
    assert_eq!(streams[0]["inactivityDelaySec"], 120);
}
