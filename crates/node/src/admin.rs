//! Admin HTTP API (JSON) served by every node.
//!
//! Endpoints: `GET /status` (with `healthy`: false once a critical worker failed, and the
//! names of failed critical workers), `GET /workers` ([`crate::tasks::WorkersReport`]),
//! `GET /nodes`, `GET /audit` ([`crate::audit::AuditView`]), `GET /blocks/{height}` (and
//! `/blocks/{height}/txs`: the raw transactions, hex, for replays),
//! `GET /accounts/{hex}`,
//! `GET /config/{key}`, `POST /tx` (body: the raw
//! canonical transaction bytes, at most `MAX_TX_BODY_BYTES`), `GET /tx/{hash}`, `GET /metrics`
//! (Prometheus text). Connections, timeouts and body rates are bounded by `crate::conn`.
//! Fragments are not served here but on the node's own fragment listener (`cairn_storage::server`).

use crate::{
    api,
    config::{hex, hex32},
    tasks::Health,
};
use bytes::Bytes;
use cairn_chain::{block::Block, engine::BlockReader, shared::TxStatus, Shared, SubmitError};
use cairn_ledger::{registry, TxError};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};
use tokio::net::TcpListener;

/// Largest accepted `POST /tx` body: one raw maximum-size transaction.
pub const MAX_TX_BODY_BYTES: usize = cairn_ledger::MAX_TX_SIZE_BYTES;

/// What the admin API serves.
pub struct Admin {
    /// Node name.
    pub name: String,
    /// Chain id.
    pub chain_id: String,
    /// This node's id (hex).
    pub node_id: String,
    /// Committee (hex keys).
    pub committee: Vec<String>,
    /// Shared chain state.
    pub shared: Arc<Shared>,
    /// Finalized block reader.
    pub blocks: BlockReader,
    /// Renders runtime metrics (Prometheus text).
    pub metrics: Box<dyn Fn() -> String + Send + Sync>,
    /// The node's worker states.
    pub health: Health,
    /// The DNS server's counters, once it serves (exported on `/metrics`).
    pub dns_stats: Arc<std::sync::OnceLock<Arc<cairn_dns::server::Stats>>>,
    /// The audit workers' counters, on storage nodes (exported on `/metrics`).
    pub audit_stats: Arc<std::sync::OnceLock<Arc<cairn_storage::prover::AuditStats>>>,
}

/// Binds the admin listener (fails fast with a clear error if the port is taken).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, std::io::Error> {
    cairn_dns::gate::bind_listener(addr, "the admin API")
}

/// Serves the admin API on an already-bound listener until the task is dropped.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    let handler = move |req| {
        let admin = admin.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(&admin, req).await) }
    };
    crate::conn::serve_http(listener, crate::conn::Limits::default(), handler).await;
}

fn json_response(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string() + "\n")))
        .expect("static response parts are valid")
}

/// Reads a request body of at most `max_bytes`; beyond that (or if the body is cut off) the
/// error is a ready 413 response with `code`.
pub(crate) async fn read_body(
    req: Request<Incoming>,
    max_bytes: usize,
    code: &str,
) -> Result<Bytes, Response<Full<Bytes>>> {
    let body = crate::conn::RateGuard::new(req.into_body(), &crate::conn::Limits::default());
    match Limited::new(body, max_bytes).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<crate::conn::BodyTooSlow>() => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            e.to_string(),
        )),
        Err(_) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            code,
            format!("body exceeds {max_bytes} bytes or was cut off"),
        )),
    }
}

/// A JSON error response with a machine code and a message saying what to do.
/// Error code of a transaction refused because another one already took its nonce; the client
/// signs again with a fresh nonce.
pub const NONCE_CONFLICT: &str = "NonceConflict";

/// Whether `e` only says the nonce was taken (often by this node's own heartbeat), so the same
/// transaction signed with the next free nonce may succeed.
fn nonce_conflict(e: &TxError) -> bool {
    matches!(
        e,
        TxError::NonceReplayed { .. } | TxError::NonceTooOld { .. }
    )
}

pub(crate) fn error(
    status: StatusCode,
    code: &str,
    message: impl ToString,
) -> Response<Full<Bytes>> {
    json_response(
        status,
        json!({"error": code, "message": message.to_string()}),
    )
}

async fn handle(admin: &Admin, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["status"]) => json_response(StatusCode::OK, json!(status(admin))),
        (&Method::GET, ["audit"]) => json_response(
            StatusCode::OK,
            json!(crate::audit::view(&admin.shared.snapshot())),
        ),
        (&Method::GET, ["nodes"]) => json_response(StatusCode::OK, json!(nodes_view(admin))),
        (&Method::GET, ["workers"]) => json_response(StatusCode::OK, json!(admin.health.report())),
        (&Method::GET, ["blocks", height, "txs"]) => match block_at(admin, height).await {
            Ok(block) => json_response(
                StatusCode::OK,
                json!({
                    "height": block.height,
                    "timestamp_ms": block.timestamp_ms,
                    "txs": block.txs.iter().map(|t| hex(t)).collect::<Vec<_>>(),
                }),
            ),
            Err(e) => e,
        },
        (&Method::GET, ["blocks", height]) => match block_at(admin, height).await {
            Ok(block) => {
                let mut body = block_json(&block);
                if let Some(root) = admin.shared.root_at(block.height) {
                    body["state_root"] = json!(hex(&root));
                }
                json_response(StatusCode::OK, body)
            }
            Err(e) => e,
        },
        (&Method::GET, ["accounts", id]) => {
            let Some(id) = hex32(id) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BadAccount",
                    "expected 64 hex characters",
                );
            };
            let body = match admin.shared.with_state(|s| s.account(&id).cloned()) {
                Some(a) => api::Account {
                    name: Some(a.name),
                    nonce_max: a.nonce_max,
                },
                None => api::Account {
                    name: None,
                    nonce_max: 0,
                },
            };
            json_response(StatusCode::OK, json!(body))
        }
        (&Method::GET, ["config", key]) => {
            match admin.shared.with_state(|s| s.config(key).cloned()) {
                Some(c) => json_response(
                    StatusCode::OK,
                    json!({"key": key, "value": c.value, "version": c.version, "set_height": c.set_height}),
                ),
                None => json_response(
                    StatusCode::OK,
                    json!({"key": key, "value": null, "version": 0}),
                ),
            }
        }
        (&Method::GET, ["tx", hash]) => {
            let Some(hash) = hex32(hash) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BadHash",
                    "expected 64 hex characters",
                );
            };
            let body = match admin.shared.tx_status(&hash) {
                TxStatus::Pending => api::TxState::Pending,
                TxStatus::Unknown => api::TxState::Unknown,
                TxStatus::Finalized { height, result } => api::TxState::Finalized {
                    height,
                    fresh_nonce: result.as_ref().is_err_and(nonce_conflict),
                    result: match result {
                        Ok(()) => api::TX_OK.to_string(),
                        Err(e) => e.to_string(),
                    },
                },
            };
            json_response(StatusCode::OK, json!(body))
        }
        (&Method::POST, ["tx"]) => {
            let body = match read_body(req, MAX_TX_BODY_BYTES, "TxTooLarge").await {
                Ok(body) => body,
                Err(response) => return response,
            };
            match admin.shared.submit(body) {
                Ok(hash) => json_response(StatusCode::ACCEPTED, json!({"hash": hex(&hash)})),
                Err(SubmitError::Invalid(e)) if nonce_conflict(&e) => {
                    error(StatusCode::CONFLICT, NONCE_CONFLICT, e)
                }
                Err(SubmitError::Invalid(e)) => {
                    error(StatusCode::BAD_REQUEST, "InvalidTransaction", e)
                }
                Err(SubmitError::Busy(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "Busy", e),
            }
        }
        (&Method::GET, ["dns", "zones"]) => json_response(
            StatusCode::OK,
            admin.shared.with_state(crate::dns::zones_json),
        ),
        (&Method::GET, ["dns", "zones", origin]) => {
            match admin
                .shared
                .with_state(|s| crate::dns::zone_json(s, &origin.to_ascii_lowercase()))
            {
                Some(body) => json_response(StatusCode::OK, body),
                None => error(
                    StatusCode::NOT_FOUND,
                    "NoSuchZone",
                    format!("no zone {origin}; create it with `cairn dns import`"),
                ),
            }
        }
        (&Method::GET, ["dns", "history", name]) => {
            match admin
                .shared
                .with_state(|s| crate::dns::history_json(s, &name.to_ascii_lowercase()))
            {
                Some(body) => json_response(StatusCode::OK, body),
                None => error(
                    StatusCode::NOT_FOUND,
                    "NoSuchManagedName",
                    format!("{name} is not a managed name in any zone"),
                ),
            }
        }
        (&Method::GET, ["metrics"]) => {
            let mut text = (admin.metrics)();
            let f = admin.shared.subscribe().borrow().clone();
            text.push_str(&format!(
                "# HELP cairn_finalized_height Latest finalized and applied height.\n# TYPE cairn_finalized_height gauge\ncairn_finalized_height {}\n# HELP cairn_mempool_txs Transactions waiting in the mempool.\n# TYPE cairn_mempool_txs gauge\ncairn_mempool_txs {}\n",
                f.height,
                admin.shared.mempool.len()
            ));
            if let Some(stats) = admin.dns_stats.get() {
                text.push_str(&stats.prometheus());
            }
            if let Some(stats) = admin.audit_stats.get() {
                text.push_str(&stats.prometheus());
            }
            Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(Full::new(Bytes::from(text)))
                .expect("static response parts are valid")
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no route for {} {path}", req.method()),
        ),
    }
}

/// `/status` body.
pub fn status(admin: &Admin) -> api::Status {
    let f = admin.shared.subscribe().borrow().clone();
    let (zones, healthy, total, pending) = admin.shared.with_state(|state| {
        let mut zones: BTreeMap<String, u64> = BTreeMap::new();
        let mut healthy = 0u64;
        let mut total = 0u64;
        // Pending registrations are not members: they neither count nor fill a zone.
        for (_, node) in state
            .nodes()
            .filter(|(_, n)| !cairn_ledger::admission::is_pending(n))
        {
            *zones.entry(node.zone.clone()).or_default() += 1;
            total += 1;
            if registry::is_healthy(state, node) {
                healthy += 1;
            }
        }
        let pending = state
            .nodes()
            .filter(|(_, n)| cairn_ledger::admission::is_pending(n))
            .count();
        (zones, healthy, total, pending)
    });
    let (self_healthy, failed_workers) = health_json(&admin.health);
    api::Status {
        name: admin.name.clone(),
        healthy: self_healthy,
        failed_workers,
        chain_id: admin.chain_id.clone(),
        node_id: admin.node_id.clone(),
        height: f.height,
        state_root: hex(&f.state_root),
        block_digest: hex(&f.digest),
        block_timestamp_ms: f.timestamp_ms,
        committee: admin.committee.clone(),
        mempool_txs: admin.shared.mempool.len(),
        nodes_per_zone: zones,
        nodes_healthy: healthy,
        nodes_total: total,
        nodes_pending: pending as u64,
    }
}

/// This node's own health for `/status`: false with the failed critical workers' names once
/// any has failed.
pub fn health_json(health: &Health) -> (bool, Vec<String>) {
    let report = health.report();
    let failed = report
        .workers
        .into_iter()
        .filter(|w| w.critical && w.state == crate::tasks::WorkerState::Failed)
        .map(|w| w.name)
        .collect();
    (report.healthy, failed)
}

fn nodes_view(admin: &Admin) -> api::Nodes {
    admin.shared.with_state(|state| api::Nodes {
        height: state.height(),
        time_ms: state.time_ms(),
        nodes: state
            .nodes()
            .map(|(id, n)| api::NodeView {
                node_id: hex(id),
                operator: hex(&n.operator),
                zone: n.zone.clone(),
                status: if cairn_ledger::admission::is_pending(n) {
                    api::Admission::Pending
                } else {
                    api::Admission::Admitted
                },
                roles: n.roles.clone(),
                requested_roles: n.requested_roles.clone(),
                requested_capacity_bytes: n.requested_capacity_bytes,
                admissions: n.admissions,
                addresses: n.addresses.clone(),
                // The record keeps addresses in `Service` order; name them here.
                endpoints: registry::Service::ALL
                    .into_iter()
                    .filter_map(|s| {
                        Some((s.name().to_string(), registry::address(n, s)?.to_string()))
                    })
                    .collect(),
                capacity_bytes: n.capacity_bytes,
                stake: n.stake,
                registered_height: n.registered_height,
                last_seen_ms: n.last_seen_ms,
                healthy: registry::is_healthy(state, n),
            })
            .collect(),
    })
}

/// The finalized block at `height` (the path segment), or the error response to send.
async fn block_at(admin: &Admin, height: &str) -> Result<Arc<Block>, Response<Full<Bytes>>> {
    let Ok(height) = height.parse::<u64>() else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "BadHeight",
            "height must be an unsigned integer",
        ));
    };
    admin.blocks.get(height).await.ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "NoSuchBlock",
            format!("no finalized block at height {height} on this node"),
        )
    })
}

fn block_json(block: &Block) -> Value {
    use commonware_cryptography::Digestible;
    let txs: Vec<String> = block
        .txs
        .iter()
        .map(|t| hex(&cairn_chain::shared::tx_hash(t)))
        .collect();
    json!({
        "height": block.height,
        "digest": hex(&block.digest().0),
        "parent": hex(&block.parent.0),
        "timestamp_ms": block.timestamp_ms,
        "tx_count": block.txs.len(),
        "tx_hashes": txs,
    })
}
