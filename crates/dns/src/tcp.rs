//! DNS over TCP on `hickory-server`: hickory owns the listener, RFC 7766 framing, per-connection
//! timeouts and request parsing; this handler answers from the current [`Snapshot`] with the
//! same answer path as UDP, and streams zone transfers as several messages.
//!
//! Why not UDP too: hickory's UDP path decodes every query into a `Message` and re-encodes
//! every answer; the UDP workers in [`crate::server`] copy pre-encoded answers instead, which is
//! what reaching Knot's rate takes (see docs/BENCHMARKS.md).

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

/// Binds the TCP listener with `TCP_NODELAY` set. Linux copies it to every accepted
/// connection, which matters because hickory accepts them itself and sets nothing: without it
/// Nagle's algorithm holds back the second message of a zone transfer or of pipelined answers.
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Starts hickory's TCP server on `listener`; connections idle for `idle` are closed.
pub fn serve(
    listener: tokio::net::TcpListener,
    snapshot: answer::Shared,
    stats: Arc<Stats>,
    idle: Duration,
) -> Server<Handler> {
    let _ = OpCode::Query; // the handler answers queries; hickory refuses other opcodes itself
    let mut server = Server::new(Handler { snapshot, stats });
    server.register_listener(listener, idle, 64);
    server
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
