//! DNS over TCP: our own accept loop and RFC 7766 framing behind a [`Gate`] (connection caps
//! per listener and per source IP, longest-idle eviction) with an idle timeout that also bounds
//! the time to receive one message, and a write timeout. Answers come from the current
//! [`Snapshot`] with the same answer path as UDP; zone transfers are several messages.
//! hickory-server's TCP listener has no connection cap, so one client could exhaust the
//! process's file descriptors, which every listener of the node shares.
//!
//! The [`Handler`] (hickory's `RequestHandler`) remains for `CAIRN_BENCH_DNS_UDP=hickory`.
//!
//! Why not UDP too: hickory's UDP path decodes every query into a `Message` and re-encodes
//! every answer; the UDP workers in [`crate::server`] copy pre-encoded answers instead, which is
//! what reaching Knot's rate takes (see docs/BENCHMARKS.md).

use crate::gate::{Admitted, Gate};
use crate::{
    answer,
    server::{transfer, Stats},
    wire::{self, qtype},
};
use hickory_server::{
    net::{runtime::Time, xfer::Protocol},
    proto::op::{Header, Message, Metadata, OpCode, ResponseCode},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
    Server,
};
use std::{net::SocketAddr, sync::atomic::Ordering, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// TCP limits of the DNS server (defaults in docs/DNS.md).
#[derive(Clone, Debug)]
pub struct TcpLimits {
    /// Open TCP connections at once.
    pub max_connections: usize,
    /// Open TCP connections at once from one source IP.
    pub max_connections_per_ip: usize,
    /// A connection is closed when no complete query arrives for this long (idle, or a query
    /// trickled in too slowly).
    pub idle_timeout_ms: u64,
    /// Longest a client may take to read one answer message.
    pub write_timeout_ms: u64,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_ip: 512,
            idle_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
        }
    }
}

/// Serves every TCP request from the snapshot current when it arrives.
pub struct Handler {
    snapshot: answer::Shared,
    stats: Arc<Stats>,
}

fn failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: Default::default(),
    })
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let raw = request.as_slice();
        let snap = self.snapshot.load_full();
        let messages = match wire::parse_query(raw) {
            Ok(q)
                if q.opcode == wire::opcode::QUERY
                    && (q.qtype == qtype::AXFR || q.qtype == qtype::IXFR) =>
            {
                self.stats.transfers.fetch_add(1, Ordering::Relaxed);
                transfer(&snap, raw, &q)
            }
            _ => snap
                .respond(raw, request.protocol() == Protocol::Udp)
                .into_iter()
                .collect(),
        };
        let mut info = None;
        for bytes in messages {
            // Our encoder wrote the message; hickory decodes and re-encodes it for the wire.
            let Ok(msg) = Message::from_vec(&bytes) else {
                return failed(request);
            };
            let mut builder = MessageResponseBuilder::new(&request.queries, None);
            if let Some(edns) = msg.edns.as_ref() {
                builder.edns(edns);
            }
            let out = builder.build(
                msg.metadata,
                msg.answers.iter(),
                msg.authorities.iter(),
                std::iter::empty(),
                msg.additionals.iter(),
            );
            match response.send_response(out).await {
                Ok(i) => {
                    self.stats.tcp_answers.fetch_add(1, Ordering::Relaxed);
                    info = Some(i);
                }
                Err(_) => return failed(request),
            }
        }
        info.unwrap_or_else(|| failed(request))
    }
}

/// Binds the DNS-over-TCP listener (see [`crate::gate::bind_listener`]).
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    crate::gate::bind_listener(addr, "DNS over TCP")
}

/// A hickory server over the same snapshot, with no listener (for the benchmark's hickory UDP
/// mode). Must be called inside a tokio runtime.
pub fn hickory_server(snapshot: answer::Shared, stats: Arc<Stats>) -> Server<Handler> {
    let _ = OpCode::Query; // the hickory handler answers queries; hickory refuses other opcodes
    Server::new(Handler { snapshot, stats })
}

/// Serves DNS over TCP on `listener` with `limits`; never returns (the caller runs it as a
/// task and stops it by dropping it).
pub async fn serve(
    listener: TcpListener,
    snapshot: answer::Shared,
    stats: Arc<Stats>,
    limits: TcpLimits,
) {
    accept_loop(listener, snapshot, stats, limits).await
}

async fn accept_loop(
    listener: TcpListener,
    snapshot: answer::Shared,
    stats: Arc<Stats>,
    limits: TcpLimits,
) {
    let gate = Gate::new(limits.max_connections, limits.max_connections_per_ip);
    let limits = Arc::new(limits);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Refused: dropping the stream closes it; a resolver retries elsewhere.
        let Ok(admitted) = gate.admit(peer.ip()) else {
            continue;
        };
        let (snapshot, stats, limits) = (snapshot.clone(), stats.clone(), limits.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = connection(stream, &admitted, &snapshot, &stats, &limits) => {}
                _ = admitted.evicted() => {}
            }
        });
    }
}

/// One connection: length-prefixed queries answered in order until the client goes quiet.
async fn connection(
    mut stream: TcpStream,
    admitted: &Admitted,
    snapshot: &answer::Shared,
    stats: &Stats,
    limits: &TcpLimits,
) {
    let idle = Duration::from_millis(limits.idle_timeout_ms);
    let write = Duration::from_millis(limits.write_timeout_ms);
    loop {
        // The whole message (prefix and body) must arrive within the idle timeout. The buffer
        // is sized by the prefix, so an idle connection holds no message buffer.
        let read = async {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let buf = match tokio::time::timeout(idle, read).await {
            Ok(Ok(buf)) => buf,
            _ => return,
        };
        let _busy = admitted.busy();
        let raw = &buf[..];
        let snap = snapshot.load_full();
        let messages: Vec<Vec<u8>> = match wire::parse_query(raw) {
            Ok(q)
                if q.opcode == wire::opcode::QUERY
                    && (q.qtype == qtype::AXFR || q.qtype == qtype::IXFR) =>
            {
                stats.transfers.fetch_add(1, Ordering::Relaxed);
                transfer(&snap, raw, &q)
            }
            _ => snap.respond(raw, false).into_iter().collect(),
        };
        for m in messages {
            let Ok(n) = u16::try_from(m.len()) else {
                return;
            };
            let mut out = Vec::with_capacity(m.len() + 2);
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(&m);
            match tokio::time::timeout(write, stream.write_all(&out)).await {
                Ok(Ok(())) => {
                    stats.tcp_answers.fetch_add(1, Ordering::Relaxed);
                }
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn accepted_connections_inherit_nodelay() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = super::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let _client = std::net::TcpStream::connect(addr).unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            assert!(accepted.nodelay().unwrap(), "TCP_NODELAY not inherited");
        });
    }
}

#[cfg(test)]
mod hygiene_tests {
    use super::*;
    use crate::answer::Snapshot;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A query for `example.` A with id 0x1234 (REFUSED by an empty snapshot, but answered).
    fn query() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x07example\x00\x00\x01\x00\x01");
        let mut framed = (m.len() as u16).to_be_bytes().to_vec();
        framed.extend(m);
        framed
    }

    async fn start(limits: TcpLimits) -> SocketAddr {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let snapshot: answer::Shared = Arc::new(arc_swap::ArcSwap::from_pointee(Snapshot::build(
            0,
            std::iter::empty(),
        )));
        let _server = tokio::spawn(serve(
            listener,
            snapshot,
            Arc::new(Stats::default()),
            limits,
        ));
        addr
    }

    async fn ask(addr: SocketAddr) -> Vec<u8> {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&query()).await.unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.unwrap();
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut body).await.unwrap();
        body
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_sockets_beyond_the_cap_neither_block_queries_nor_outlive_the_timeout() {
        let limits = TcpLimits {
            max_connections: 16,
            max_connections_per_ip: 8,
            idle_timeout_ms: 500,
            write_timeout_ms: 500,
        };
        let addr = start(limits).await;
        let mut idle = Vec::new();
        for _ in 0..40 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        // A trickled query (one byte, then silence) is idle too.
        let mut trickle = tokio::net::TcpStream::connect(addr).await.unwrap();
        trickle.write_all(&query()[..1]).await.unwrap();
        let t = Instant::now();
        let answer = ask(addr).await;
        assert_eq!(
            &answer[..2],
            &[0x12, 0x34],
            "answered despite 41 idle sockets"
        );
        assert!(
            t.elapsed() < Duration::from_millis(400),
            "answer took {:?}",
            t.elapsed()
        );
        idle.push(trickle);
        // Every idle socket is closed by the server (evicted or timed out) within the timeout.
        let deadline = Instant::now() + Duration::from_millis(1500);
        for mut s in idle {
            let mut b = [0u8; 1];
            let left = deadline.saturating_duration_since(Instant::now());
            let r = tokio::time::timeout(left, s.read(&mut b)).await;
            assert!(
                matches!(r, Ok(Ok(0)) | Ok(Err(_))),
                "an idle socket is still open after the idle timeout"
            );
        }
    }
}
