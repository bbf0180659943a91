//! The local server's accept loop: hyper's HTTP/1 connections with the limits a server
//! exposed to arbitrary clients needs (docs/operations.md, "Reliability").
//!
//! - A header-read timeout: hyper applies it from the moment it waits for a request's
//!   head, so it is also the idle timeout of a kept-alive connection.
//! - A cap on open connections. At the cap the oldest connection that is not inside a
//!   request (idle, or still sending its head) is closed to make room, so stalled
//!   clients can never lock out the others.
//! - Graceful shutdown that waits at most [`ServerLimits::shutdown_grace`] for the
//!   requests under way, then closes whatever is left.
//! - Responses hyper writes by itself (`400` for a bad header, `414`, `431`) get the
//!   same security headers as every other response ([`SecureErrors`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Semaphore};

use crate::api;
use crate::app::App;

/// What the local server allows its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Most connections open at once. Below the usual 1,024 open-file limit, so the
    /// server never fails to accept for want of descriptors.
    pub max_connections: usize,
    /// Longest wait for a request's head (and the idle timeout between requests).
    pub header_read_timeout: Duration,
    /// Longest wait for a request's body once its head is in.
    pub body_read_timeout: Duration,
    /// How long shutdown waits for requests under way before closing their connections.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

/// Where connections are in the server's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish the request under way, take no more.
    Draining,
    /// Close now.
    Closing,
}

/// The open connections, oldest first, so the oldest idle one can be closed at the cap.
#[derive(Debug, Default)]
struct Registry {
    next: u64,
    open: BTreeMap<u64, Tracked>,
}

#[derive(Debug)]
struct Tracked {
    /// Inside a request (set by the service while it answers).
    busy: Arc<AtomicBool>,
    /// Closes the connection when sent (or dropped).
    close: Option<oneshot::Sender<()>>,
}

impl Registry {
    fn register(&mut self) -> (u64, Arc<AtomicBool>, oneshot::Receiver<()>) {
        let (close, closed) = oneshot::channel();
        let busy = Arc::new(AtomicBool::new(false));
        let id = self.next;
        self.next += 1;
        self.open.insert(id, Tracked { busy: busy.clone(), close: Some(close) });
        (id, busy, closed)
    }

    /// Closes the oldest connection not inside a request; `false` if every one is busy.
    fn close_oldest_idle(&mut self) -> bool {
        let idle = self.open.values_mut().find(|t| t.close.is_some() && !t.busy.load(Ordering::Acquire));
        match idle.and_then(|t| t.close.take()) {
            Some(close) => {
                let _ = close.send(());
                true
            }
            None => false,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Accepts connections until `shutdown` resolves, then drains them within the grace.
pub(super) async fn serve_connections(
    app: Arc<App>,
    listener: TcpListener,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let (phase, phase_rx) = watch::channel(Phase::Serving);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let registry = Arc::new(Mutex::new(Registry::default()));
    let mut shutdown = pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    // Out of descriptors, or a connection reset before it was accepted.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = tokio::select! {
            permit = slot(&slots, &registry) => match permit {
                Some(permit) => permit,
                None => break,
            },
            () = &mut shutdown => break,
        };
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let (id, busy, close) = lock(&registry).register();
        let (app, registry, phase_rx) = (app.clone(), registry.clone(), phase_rx.clone());
        tokio::spawn(async move {
            run_connection(tcp, app, limits, busy, close, phase_rx).await;
            lock(&registry).open.remove(&id);
            drop(permit);
        });
    }
    drop(listener);
    drain(&phase, &slots, &registry, limits).await;
}

/// A connection slot: free at once, or made by closing the oldest idle connection, or
/// (every connection busy) the first one freed. `None` only if the semaphore closed.
async fn slot(slots: &Arc<Semaphore>, registry: &Mutex<Registry>) -> Option<tokio::sync::OwnedSemaphorePermit> {
    if let Ok(permit) = slots.clone().try_acquire_owned() {
        return Some(permit);
    }
    let closed = lock(registry).close_oldest_idle();
    tracing::debug!(closed_idle = closed, "connection cap reached");
    slots.clone().acquire_owned().await.ok()
}

/// Lets requests under way finish within the grace (every slot back means every
/// connection ended), then closes whatever is still open.
async fn drain(phase: &watch::Sender<Phase>, slots: &Semaphore, registry: &Mutex<Registry>, limits: ServerLimits) {
    let _ = phase.send(Phase::Draining);
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(all)).await.is_err() {
        let open = lock(registry).open.len();
        tracing::warn!(open, grace_ms = limits.shutdown_grace.as_millis(), "closing connections still open");
        let _ = phase.send(Phase::Closing);
        let _ = tokio::time::timeout(Duration::from_secs(1), slots.acquire_many(all)).await;
    }
}

/// Serves one connection until it ends, is closed to make room, or shutdown closes it.
async fn run_connection(
    tcp: TcpStream,
    app: Arc<App>,
    limits: ServerLimits,
    busy: Arc<AtomicBool>,
    mut close: oneshot::Receiver<()>,
    mut phase: watch::Receiver<Phase>,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let (app, busy) = (app.clone(), busy.clone());
        async move {
            busy.store(true, Ordering::Release);
            let response = super::dispatch(app, request.map(axum::body::Body::new), limits.body_read_timeout).await;
            busy.store(false, Ordering::Release);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(SecureErrors::new(tcp)), service);
    let mut connection = pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
            return;
        }
        _ = &mut close => return,
        _ = phase.wait_for(|p| *p != Phase::Serving) => {}
    }
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = &mut close => {}
        _ = phase.wait_for(|p| *p == Phase::Closing) => {}
    }
}

/// A connection's socket that adds [`api::FIXED_HEADERS`] to the responses hyper
/// writes on its own (a request it could not parse), which never reach the service.
///
/// hyper writes each response head whole at the start of one write (this type says it
/// cannot do vectored writes, so hyper flattens head and body into one buffer). A
/// write that starts with a status line whose head lacks `x-content-type-options` —
/// which every response of the service carries — is one of hyper's; the headers go
/// in after its status line.
struct SecureErrors<T> {
    inner: T,
    /// A rewritten response still being written, and how much of it is out.
    pending: Vec<u8>,
    written: usize,
}

impl<T> SecureErrors<T> {
    fn new(inner: T) -> Self {
        SecureErrors { inner, pending: Vec::new(), written: 0 }
    }
}

impl<T: AsyncWrite + Unpin> SecureErrors<T> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

/// `head` with the fixed headers after its status line, if it is a response head
/// without them.
fn with_fixed_headers(buf: &[u8]) -> Option<Vec<u8>> {
    if !buf.starts_with(b"HTTP/1.") {
        return None;
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let marker = b"x-content-type-options:";
    if buf[..head_end].windows(marker.len()).any(|w| w.eq_ignore_ascii_case(marker)) {
        return None;
    }
    let line_end = buf.windows(2).position(|w| w == b"\r\n")? + 2;
    let mut out = Vec::with_capacity(buf.len() + 512);
    out.extend_from_slice(&buf[..line_end]);
    for (name, value) in api::FIXED_HEADERS {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&buf[line_end..]);
    Some(out)
}

impl<T: AsyncRead + Unpin> AsyncRead for SecureErrors<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SecureErrors<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        match with_fixed_headers(buf) {
            Some(rewritten) => {
                self.pending = rewritten;
                // Taken whole; what the socket does not take now goes out on flush.
                if let Poll::Ready(Err(error)) = self.poll_pending(cx) {
                    return Poll::Ready(Err(error));
                }
                Poll::Ready(Ok(buf.len()))
            }
            None => Pin::new(&mut self.inner).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::with_fixed_headers;

    #[test]
    fn hyper_error_responses_get_the_fixed_headers_and_ours_are_left_alone() {
        let hyper_414 = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let patched = String::from_utf8(with_fixed_headers(hyper_414).expect("patched")).expect("text");
        assert!(patched.starts_with("HTTP/1.1 414 URI Too Long\r\ncache-control: no-store\r\n"), "{patched}");
        assert!(patched.contains("x-content-type-options: nosniff\r\n") && patched.ends_with("\r\n\r\n"));
        let ours = b"HTTP/1.1 200 OK\r\nx-content-type-options: nosniff\r\ncontent-length: 2\r\n\r\n{}";
        assert!(with_fixed_headers(ours).is_none());
        assert!(with_fixed_headers(b"{\"HTTP/1.1 \": 1}").is_none());
    }
}
