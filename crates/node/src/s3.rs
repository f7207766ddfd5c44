//! The node's S3 endpoint: the gateway crate's s3s service over this node's chain (the
//! gateway's `commit::ChainLedger`) and fragment transport, on its own hyper listener.

use cairn_gateway::{
    commit::ChainLedger,
    keys::{Access, Auth, KeyStore},
    s3::{Gateway, GatewayConfig, VirtualHosts},
};
use cairn_ledger::AccountId;
use cairn_storage::client::{fragment_address, HttpTransport};
use s3s::service::S3ServiceBuilder;
use serde::Deserialize;
use std::{net::SocketAddr, path::Path, sync::Arc};
use tokio::net::TcpListener;
// Connection limits (caps, timeouts, head size, body rate) are `crate::conn::Limits`.

/// Per-request timeout of fragment transfers.
pub const FRAGMENT_TIMEOUT_MS: u64 = 10_000;

/// One entry of a gateway key file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    access_key: String,
    secret_key: String,
    /// Hex account id the key acts for.
    account: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

/// Loads a gateway key file (`[[keys]] access_key, secret_key, account`).
pub fn load_keys(path: &Path) -> Result<KeyStore, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: KeyFile = toml::from_str(&text).map_err(|e| {
        format!(
            "{}: {}",
            path.display(),
            crate::config::toml_error(&text, &e)
        )
    })?;
    let mut store = KeyStore::new();
    for k in file.keys {
        let account = crate::config::hex32(&k.account)
            .ok_or_else(|| format!("{}: account must be 64 hex characters", path.display()))?;
        store
            .insert(&k.access_key, &k.secret_key, account)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(store)
}

/// The text of a key file holding one key.
pub fn key_file_text(access_key: &str, secret_key: &str, account: &AccountId) -> String {
    format!(
        "# S3 keys of this gateway; never share or commit this file.\n[[keys]]\naccess_key = \"{access_key}\"\nsecret_key = \"{secret_key}\"\naccount = \"{}\"\n",
        crate::config::hex(account)
    )
}

/// Binds the S3 listener (fails fast with a clear error if the port is taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    cairn_dns::gate::bind_listener(addr, "the S3 endpoint")
}

/// Serves S3 on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    ledger: Arc<ChainLedger>,
    keys: KeyStore,
    domain: &str,
    cfg: GatewayConfig,
) {
    // The address book follows the finalized ledger: each transfer looks its node up in the
    // current state, so nodes registered or re-addressed after this listener started are found.
    let shared = ledger.shared().clone();
    let transport = Arc::new(HttpTransport::new(
        ledger.key().clone(),
        Arc::new(move |id| shared.with_state(|s| s.node(id).and_then(fragment_address))),
        FRAGMENT_TIMEOUT_MS,
    ));
    let keys = Arc::new(keys);
    let gateway = Gateway::new(ledger.clone(), transport, keys.clone(), cfg);
    let mut builder = S3ServiceBuilder::new(gateway);
    builder.set_auth(Auth(keys));
    builder.set_access(Access(ledger));
    builder.set_host(VirtualHosts::new(domain));
    let service = builder.build();
    let limits = crate::conn::Limits::default();
    let limits_for_serve = limits.clone();
    // An error answered before the body was read (e.g. KeyTooLongError on a PUT sent with
    // Expect: 100-continue) leaves the connection's framing unknown to the client, so such
    // responses close the connection instead of letting the next request on it be misparsed.
    let handler = move |req: hyper::Request<hyper::body::Incoming>| {
        let has_body = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
            || req.headers().contains_key(hyper::header::TRANSFER_ENCODING);
        let req = req.map(|b| s3s::Body::http_body_unsync(crate::conn::RateGuard::new(b, &limits)));
        let service = service.clone();
        async move {
            let mut resp = service.call(req).await?;
            if has_body && resp.status().as_u16() >= 400 {
                resp.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, s3s::HttpError>(resp)
        }
    };
    crate::conn::serve_http(listener, limits_for_serve, handler).await;
}
