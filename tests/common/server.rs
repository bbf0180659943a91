//! The local server (`flagfn::server::serve`) on a thread and runtime of its own, on a
//! free port of 127.0.0.1, for tests that talk to it over real sockets; stopped (its
//! graceful shutdown, waited for) by `stop` or when dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flagfn::app::App;

/// A running local server.
pub struct LocalServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<JoinHandle<()>>,
}

impl LocalServer {
    /// Serves `app` (events flushed every 50 ms) until stopped.
    pub fn start(app: Arc<App>) -> LocalServer {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
            runtime.expect("runtime").block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                addr_tx.send(listener.local_addr().expect("addr")).expect("send addr");
                let shutdown = async move {
                    let _ = stopped.await;
                };
                flagfn::server::serve(app, listener, Duration::from_millis(50), shutdown).await.expect("serve");
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).expect("server address");
        LocalServer { base: format!("http://{addr}"), addr, stop: Some(stop), done: Some(done) }
    }

    /// Shuts it down and waits for it; how long that took.
    pub fn stop(&mut self) -> Duration {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.join();
        }
        started.elapsed()
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.stop();
    }
}
