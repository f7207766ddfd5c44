//! Connection hygiene for Cairn's HTTP/1 listeners (the fragment listener here; S3 and admin
//! in the node): connection caps globally and per source IP ([`Gate`], which closes the
//! longest-idle connection when full), a head timeout that is also the keep-alive idle timeout,
//! a head size limit checked per header too, a minimum request-body rate ([`RateGuard`]) and a
//! response-send stall timeout.

use bytes::Bytes;
use cairn_dns::gate::Sending;
pub use cairn_dns::gate::{Admitted, Gate, Refused};
use http_body_util::{BodyExt, Either, Full};
use hyper::{
    body::{Body, Frame, Incoming, SizeHint},
    Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tokio::net::TcpStream;

/// Limits of one HTTP listener. Defaults are documented in docs/S3.md and docs/CONFIG.md.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections at once on this listener.
    pub max_connections: usize,
    /// Open connections at once from one source IP.
    pub max_connections_per_ip: usize,
    /// Longest wait for a complete request head, timed from the connection's start or the end
    /// of the previous response: this is also the keep-alive idle timeout.
    pub header_timeout_ms: u64,
    /// Request head limit (request line plus headers, each header included), 431 beyond.
    pub max_head_bytes: usize,
    /// Time a request body may take before [`Limits::min_body_rate_bytes_per_sec`] applies.
    pub body_grace_ms: u64,
    /// Slowest accepted request body once the grace is spent, counted over the time the
    /// server waited for the client.
    pub min_body_rate_bytes_per_sec: u64,
    /// Longest a response may wait for the client to take the next bytes.
    pub send_stall_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_ip: 512,
            header_timeout_ms: 10_000,
            max_head_bytes: 32 * 1024,
            body_grace_ms: 5_000,
            min_body_rate_bytes_per_sec: 8 * 1024,
            send_stall_timeout_ms: 30_000,
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its connection busy and records send progress.
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        sending: Sending,
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        this.sending.progress();
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body was too slow: under the minimum rate once the grace was spent.
#[derive(Debug, thiserror::Error)]
#[error("request body slower than {min_rate_bytes_per_sec} bytes/s after a {grace_ms} ms grace ({received_bytes} bytes received)")]
pub struct BodyTooSlow {
    /// The enforced rate.
    pub min_rate_bytes_per_sec: u64,
    /// The grace.
    pub grace_ms: u64,
    /// Bytes received before the cut.
    pub received_bytes: u64,
}

pin_project_lite::pin_project! {
    /// A request body that fails with [`BodyTooSlow`] when the client sends slower than the
    /// minimum rate. Only time spent waiting for the client counts, so a server that pauses
    /// reading (backpressure) never makes a fast client look slow.
    pub struct RateGuard<B> {
        #[pin]
        inner: B,
        grace_ms: u64,
        rate: u64,
        received: u64,
        waited: Duration,
        pending_since: Option<Instant>,
        #[pin]
        deadline: Option<tokio::time::Sleep>,
    }
}

impl<B> RateGuard<B> {
    /// Guards `inner` with the body limits of `limits`.
    pub fn new(inner: B, limits: &Limits) -> Self {
        Self {
            inner,
            grace_ms: limits.body_grace_ms,
            rate: limits.min_body_rate_bytes_per_sec.max(1),
            received: 0,
            waited: Duration::ZERO,
            pending_since: None,
            deadline: None,
        }
    }
}

impl<B> Body for RateGuard<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = this.pending_since.take() {
                    *this.waited += since.elapsed();
                }
                this.deadline.set(None);
                if let Some(Ok(f)) = &frame {
                    if let Some(data) = f.data_ref() {
                        *this.received += data.len() as u64;
                    }
                }
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let now = Instant::now();
                let since = *this.pending_since.get_or_insert(now);
                if this.deadline.is_none() {
                    // Allowance: the grace plus the time the bytes so far earn at the rate.
                    let allowance = Duration::from_millis(*this.grace_ms)
                        + Duration::from_secs_f64(*this.received as f64 / *this.rate as f64);
                    let left = allowance.saturating_sub(*this.waited);
                    this.deadline
                        .set(Some(tokio::time::sleep_until((since + left).into())));
                }
                if let Some(d) = this.deadline.as_mut().as_pin_mut() {
                    if d.poll(cx).is_ready() {
                        return Poll::Ready(Some(Err(Box::new(BodyTooSlow {
                            min_rate_bytes_per_sec: *this.rate,
                            grace_ms: *this.grace_ms,
                            received_bytes: *this.received,
                        }))));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The first header over `max_bytes` (name + value), or the whole head over it.
pub fn head_too_large<B>(req: &Request<B>, max_bytes: usize) -> Option<String> {
    let mut total = req.uri().to_string().len() + 16;
    for (name, value) in req.headers() {
        let n = name.as_str().len() + value.len() + 4;
        if n > max_bytes {
            return Some(format!(
                "header {name} is {n} bytes; the limit is {max_bytes} bytes"
            ));
        }
        total += n;
    }
    (total > max_bytes).then(|| format!("request head exceeds {max_bytes} bytes"))
}

/// The response every HTTP listener gives an oversized head.
fn too_large(message: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        .header("connection", "close")
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(message + "\n")))
        .unwrap_or_default()
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A service or response-body error, concrete so that hyper's bounds hold for spawned
/// connections (a boxed `dyn Error` trips a rustc higher-ranked lifetime limitation there).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnError(BoxError);

fn boxed<E: Into<BoxError>>(e: E) -> ConnError {
    ConnError(e.into())
}

/// Accepts connections on `listener` forever, admitting each through `gate` and serving it
/// with `service` (HTTP/1.1, TCP_NODELAY, the gate's timeouts and head limit).
pub async fn serve_http<S, F, B, E>(listener: tokio::net::TcpListener, limits: Limits, service: S)
where
    S: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + 'static,
    E: Into<BoxError> + 'static,
{
    let gate = Gate::new(limits.max_connections, limits.max_connections_per_ip);
    let limits = Arc::new(limits);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admitted = match gate.admit(peer.ip()) {
            Ok(a) => a,
            Err(e) => {
                refuse(stream, &e);
                continue;
            }
        };
        tokio::spawn(serve_one(stream, admitted, limits.clone(), service.clone()));
    }
}

/// Best effort: tells a refused client why, without waiting for it.
fn refuse(stream: TcpStream, why: &Refused) {
    let body = format!("{why}; retry later\n");
    let text = format!(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(text.as_bytes());
}

async fn serve_one<S, F, B, E>(
    stream: TcpStream,
    admitted: Admitted,
    limits: Arc<Limits>,
    service: S,
) where
    S: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + 'static,
    E: Into<BoxError> + 'static,
{
    let _ = stream.set_nodelay(true);
    let admitted = Arc::new(admitted);
    let conn_state = admitted.clone();
    let max_head_bytes = limits.max_head_bytes;
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let busy = conn_state.busy();
        let oversized = head_too_large(&req, max_head_bytes);
        let call = oversized.is_none().then(|| service(req));
        async move {
            match (call, oversized) {
                (Some(call), _) => {
                    let resp = match call.await {
                        Ok(r) => r,
                        Err(e) => return Err(boxed(e)),
                    };
                    Ok::<_, ConnError>(resp.map(|b| {
                        Either::Left(Tracked {
                            inner: b.map_err(boxed),
                            sending: busy.sending(),
                        })
                    }))
                }
                (None, message) => Ok(too_large(message.unwrap_or_default()).map(|b| {
                    Either::Right(Tracked {
                        inner: b.map_err(|e| -> ConnError { match e {} }),
                        sending: busy.sending(),
                    })
                })),
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_timeout_ms))
        .max_header_size(limits.max_head_bytes)
        .max_buf_size(limits.max_head_bytes.max(8192));
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    let stall_ms = limits.send_stall_timeout_ms;
    let watchdog = async {
        // A response that makes no progress is a client that stopped reading; an idle
        // connection is bounded by hyper's head timer instead.
        loop {
            tokio::time::sleep(Duration::from_millis(stall_ms / 4 + 1)).await;
            if admitted.send_stalled(stall_ms) {
                return;
            }
        }
    };
    tokio::select! {
        _ = conn => {}
        _ = admitted.evicted() => {}
        _ = watchdog => {}
    }
}

/// Raises the soft open-file limit to the hard limit. Every listener's connection cap is below
/// the budget this gives (a devnet runs 12 nodes, 3 listeners each, in one process), so a full
/// listener refuses or evicts instead of starving the others of descriptors.
pub fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return;
        }
        let before = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            tracing::info!("open-file limit raised from {before} to {}", lim.rlim_max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits() -> Limits {
        Limits {
            max_connections: 16,
            max_connections_per_ip: 8,
            header_timeout_ms: 500,
            max_head_bytes: 32 * 1024,
            body_grace_ms: 300,
            min_body_rate_bytes_per_sec: 1000,
            send_stall_timeout_ms: 1000,
        }
    }

    /// Serves a body-reading echo of the body length on a fresh port.
    async fn start(limits: Limits) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body_limits = limits.clone();
        tokio::spawn(serve_http(
            listener,
            limits,
            move |req: Request<Incoming>| {
                let body = RateGuard::new(req.into_body(), &body_limits);
                async move {
                    let (status, text) = match body.collect().await {
                        Ok(b) => (StatusCode::OK, b.to_bytes().len().to_string()),
                        Err(e) => (StatusCode::REQUEST_TIMEOUT, e.to_string()),
                    };
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from(text)))
                            .unwrap(),
                    )
                }
            },
        ));
        addr
    }

    /// Sends `head` and reads until the server closes or 3 s pass.
    async fn exchange(addr: std::net::SocketAddr, head: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(head).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Seconds until the server closes an idle socket (None: still open after 3 s).
    async fn closed_after(mut s: TcpStream) -> Option<Duration> {
        let t = Instant::now();
        let mut b = [0u8; 256];
        loop {
            match tokio::time::timeout(Duration::from_secs(3), s.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(t.elapsed()),
                Ok(Ok(_)) => continue,
                Err(_) => return None,
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_and_keep_alive_connections_close_after_the_header_timeout() {
        let addr = start(limits()).await;
        let fresh = TcpStream::connect(addr).await.unwrap();
        let took = closed_after(fresh)
            .await
            .expect("a silent connection is closed");
        assert!(took < Duration::from_millis(1500), "closed after {took:?}");
        let mut kept = TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let took = closed_after(kept)
            .await
            .expect("an idle keep-alive connection is closed");
        assert!(took < Duration::from_millis(1500), "closed after {took:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_40_kib_header_gets_431() {
        let addr = start(limits()).await;
        let big = "a".repeat(40 * 1024);
        let head = format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
        let reply = exchange(addr, head.as_bytes()).await;
        assert!(reply.starts_with("HTTP/1.1 431"), "{reply:.80}");
        let ok = exchange(
            addr,
            b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok:.80}");
        // The per-header check also holds where the parser's limit would not.
        let req = Request::builder()
            .header("x-big", "a".repeat(33 * 1024))
            .body(())
            .unwrap();
        assert!(head_too_large(&req, 32 * 1024).is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trickled_body_is_cut_and_a_fast_one_is_not() {
        let addr = start(limits()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PUT / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n")
            .await
            .unwrap();
        let t = Instant::now();
        let mut out = vec![0u8; 512];
        let (mut r, mut w) = s.into_split();
        let read = tokio::spawn(async move {
            let n = r.read(&mut out).await.unwrap_or(0);
            String::from_utf8_lossy(&out[..n]).into_owned()
        });
        // One byte every 200 ms: 5 bytes/s against a 1000 bytes/s minimum.
        let _ = tokio::time::timeout(Duration::from_secs(4), async {
            for _ in 0..100 {
                if w.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        let reply = read.await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply:.120}");
        assert!(
            t.elapsed() < Duration::from_millis(2500),
            "cut after {:?}",
            t.elapsed()
        );
        let body = "x".repeat(100_000);
        let head = format!(
            "PUT / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let reply = exchange(addr, head.as_bytes()).await;
        assert!(
            reply.starts_with("HTTP/1.1 200") && reply.ends_with("100000"),
            "{reply:.120}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_sockets_beyond_the_caps_do_not_lock_out_a_new_client() {
        let addr = start(limits()).await;
        let mut idle = Vec::new();
        for _ in 0..40 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let t = Instant::now();
        let reply = exchange(
            addr,
            b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply:.80}");
        assert!(
            t.elapsed() < Duration::from_millis(400),
            "took {:?}",
            t.elapsed()
        );
        for s in idle {
            assert!(
                closed_after(s).await.is_some(),
                "an idle socket outlived the timeout"
            );
        }
    }
}
