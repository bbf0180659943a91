//! A real AWS wire-protocol server for integration tests: `moto_server`, started by the
//! test itself on a free port and killed (by the PID it started) when dropped.
//!
//! `make test` installs moto into the project's `.venv`; `MOTO_SERVER` may point at
//! another binary. A missing binary fails the test with instructions — never a skip.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server.
pub struct Moto {
    child: Option<Child>,
    port: u16,
}

impl Moto {
    /// Starts a fresh server on a free port and waits until it answers.
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut moto = Moto { child: None, port };
        moto.spawn();
        moto
    }

    /// `http://127.0.0.1:<port>`: what `AWS_ENDPOINT_URL` would be.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server: every call to it now fails at the socket, as in an outage.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Wait until the port really refuses connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port, empty (moto keeps state in memory).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let binary = binary();
        let log = std::env::temp_dir().join(format!("flagfn-moto-{}.log", self.port));
        let log = std::fs::File::create(&log).expect("moto log file");
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} ({e}); run `make test` (or `make venv`) to install moto", binary.display())
            });
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let url = format!("{}/moto-api/", self.endpoint());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if ureq::get(&url).call().is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("moto_server exited with {status} before answering; see the log in the temp dir");
            }
            assert!(Instant::now() < deadline, "moto_server did not answer on {url} within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SDK configuration pointing at this server with dummy credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config_for(&self.endpoint()).await
    }
}

/// SDK configuration for any endpoint (e.g. a fault-injecting proxy in front of moto).
pub async fn sdk_config_for(endpoint: &str) -> aws_config::SdkConfig {
    use aws_config::Region;
    flagfn::aws::loader()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "flagfn-tests"))
        .load()
        .await
}

/// SDK configuration for `endpoint` that fails fast: few, quick retries and short
/// timeouts, so an outage fails a test in seconds, not minutes.
pub async fn fast_sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    use aws_config::Region;
    use aws_smithy_types::retry::RetryConfig;
    use aws_smithy_types::timeout::TimeoutConfig;
    flagfn::aws::loader()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "flagfn-tests"))
        .retry_config(RetryConfig::standard().with_max_attempts(2).with_initial_backoff(Duration::from_millis(10)))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(10))
                .build(),
        )
        .load()
        .await
}

/// One moto for the tests of a binary that share it, killed when the last of them
/// finishes (a `static` would never be dropped and would leak the process).
pub fn shared_moto() -> std::sync::Arc<Moto> {
    use std::sync::{Arc, Mutex, PoisonError, Weak};
    static SHARED: Mutex<Weak<Moto>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(moto) = shared.upgrade() {
        return moto;
    }
    let moto = Arc::new(Moto::start());
    *shared = Arc::downgrade(&moto);
    moto
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn binary() -> PathBuf {
    std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"))
}

/// A name no other test uses: tables and streams are per test so tests run in parallel.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
