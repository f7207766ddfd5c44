//! The CLI's blocking client for a node's admin API (`status`, `tx`, ...), on `ureq`: one
//! request per connection, bounded response size and timeouts.

use std::time::Duration;

/// Largest response body the CLI reads.
pub const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
/// Deadline for a whole request, connection included.
pub const TIMEOUT_MS: u64 = 5_000;

/// Performs a request; returns (status code, body).
pub fn request(
    endpoint: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_millis(TIMEOUT_MS)))
        .build()
        .into();
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{host}{path}"))
        .header("content-type", "application/octet-stream")
        .header("content-length", body.len())
        .body(body)
        .map_err(|e| format!("bad request to {endpoint}{path}: {e}"))?;
    let response = agent.run(request).map_err(|e| match e {
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("cannot connect to {endpoint}: {e} (is the node running?)")
        }
        e => format!("{method} {endpoint}{path}: {e}"),
    })?;
    let code = response.status().as_u16();
    let body = response
        .into_body()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(|e| format!("read from {endpoint}: {e}"))?;
    Ok((code, body))
}

/// GET returning parsed JSON (errors carry the server's message).
pub fn get_json(endpoint: &str, path: &str) -> Result<serde_json::Value, String> {
    let (code, body) = request(endpoint, "GET", path, &[])?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("bad JSON from {endpoint}{path}: {e}"))?;
    if code >= 400 {
        return Err(format!("{endpoint}{path}: HTTP {code}: {value}"));
    }
    Ok(value)
}

/// GET of a typed admin API body (see [`crate::api`]).
pub fn get<T: serde::de::DeserializeOwned>(endpoint: &str, path: &str) -> Result<T, String> {
    serde_json::from_value(get_json(endpoint, path)?)
        .map_err(|e| format!("unexpected body from {endpoint}{path}: {e}"))
}

/// The next nonce for `account` (one above its finalized maximum).
pub fn next_nonce(endpoint: &str, account: &[u8; 32]) -> Result<u64, String> {
    let a: crate::api::Account = get(
        endpoint,
        &format!("/accounts/{}", crate::config::hex(account)),
    )?;
    Ok(a.nonce_max + 1)
}

/// How many blocks a CLI transaction stays valid (about a minute at one block per 500 ms).
pub const CLI_TX_VALIDITY_BLOCKS: u64 = 120;

/// A `valid_until` for a CLI transaction: the node's finalized height plus
/// [`CLI_TX_VALIDITY_BLOCKS`].
pub fn valid_until(endpoint: &str) -> Result<u64, String> {
    let status: crate::api::Status = get(endpoint, "/status")?;
    Ok(status.height + CLI_TX_VALIDITY_BLOCKS)
}

/// POSTs a signed transaction; returns its hash (hex).
pub fn post_tx(endpoint: &str, tx: &cairn_ledger::SignedTx) -> Result<String, String> {
    match post(endpoint, tx)? {
        Posted::Accepted(hash) => Ok(hash),
        Posted::NonceTaken(message) | Posted::Refused(message) => Err(message),
    }
}

enum Posted {
    Accepted(String),
    /// Another transaction of the same account holds this nonce.
    NonceTaken(String),
    Refused(String),
}

fn post(endpoint: &str, tx: &cairn_ledger::SignedTx) -> Result<Posted, String> {
    let (code, body) = request(endpoint, "POST", "/tx", &tx.encode())?;
    if code < 400 {
        return Ok(Posted::Accepted(crate::config::hex(&tx.hash())));
    }
    let message = format!("HTTP {code}: {}", String::from_utf8_lossy(&body).trim());
    let error_code = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string));
    Ok(match error_code.as_deref() {
        Some(crate::admin::NONCE_CONFLICT) => Posted::NonceTaken(message),
        _ => Posted::Refused(message),
    })
}

/// Attempts at signing one transaction with the account's next free nonce. A node signs its
/// heartbeats with its own key, so an operator using that key races it for nonces.
pub const MAX_NONCE_ATTEMPTS: u32 = 5;

/// Signs `kind` with `key` at the account's next free nonce and posts it; with `wait_ms`, also
/// waits for finality and returns the status JSON. A nonce taken meanwhile by another
/// transaction of the same account is retried with a fresh one, at most
/// [`MAX_NONCE_ATTEMPTS`] times in all.
pub fn sign_and_submit(
    endpoint: &str,
    key: &commonware_cryptography::ed25519::PrivateKey,
    kind: &cairn_ledger::TxKind,
    wait_ms: Option<u64>,
) -> Result<(String, Option<crate::api::TxState>), String> {
    let signer = crate::config::node_id(key);
    let signing = crate::config::account_key(key);
    let mut last = String::new();
    for _ in 0..MAX_NONCE_ATTEMPTS {
        let tx = cairn_ledger::Tx {
            signer,
            nonce: next_nonce(endpoint, &signer)?,
            valid_until: valid_until(endpoint)?,
            kind: kind.clone(),
        }
        .sign(&signing);
        let hash = match post(endpoint, &tx)? {
            Posted::Accepted(hash) => hash,
            Posted::NonceTaken(message) => {
                last = message;
                continue;
            }
            Posted::Refused(message) => return Err(message),
        };
        let Some(wait_ms) = wait_ms else {
            return Ok((hash, None));
        };
        let status = wait_finalized(endpoint, &hash, wait_ms)?;
        if let crate::api::TxState::Finalized {
            fresh_nonce: true,
            result,
            ..
        } = &status
        {
            last = result.clone();
            continue;
        }
        return Ok((hash, Some(status)));
    }
    Err(format!(
        "gave up after {MAX_NONCE_ATTEMPTS} nonces were taken by other transactions of this \
         account ({last}); retry when it is less busy"
    ))
}

/// Polls until transaction `hash` is finalized (or `timeout_ms` passes); returns its state.
pub fn wait_finalized(
    endpoint: &str,
    hash: &str,
    timeout_ms: u64,
) -> Result<crate::api::TxState, String> {
    let deadline = std::time::Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let status: crate::api::TxState = get(endpoint, &format!("/tx/{hash}"))?;
        if matches!(status, crate::api::TxState::Finalized { .. }) {
            return Ok(status);
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "transaction {hash} not finalized within {timeout_ms} ms"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_cryptography::Signer as _;
    use std::{
        io::{BufRead, BufReader, Read, Write},
        net::TcpListener,
        sync::{Arc, Mutex},
    };

    /// A stand-in admin API: the account's nonce maximum rises by one after each POST (as if the
    /// node's heartbeat took that nonce), and the first `conflicts` POSTs are refused with
    /// `NonceConflict`. Records the nonce of every POSTed transaction.
    fn fake_admin(conflicts: usize) -> (String, Arc<Mutex<Vec<u64>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let endpoint = listener.local_addr().expect("address").to_string();
        let posted = Arc::new(Mutex::new(Vec::new()));
        let seen = posted.clone();
        std::thread::spawn(move || {
            let mut nonce_max = 7u64;
            for stream in listener.incoming().take(64) {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone socket"));
                let mut line = String::new();
                reader.read_line(&mut line).expect("request line");
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).expect("header");
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().expect("length");
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).expect("body");
                let (code, reply) = if line.starts_with("POST /tx") {
                    let tx = cairn_ledger::SignedTx::decode(&body).expect("a canonical tx");
                    let mut seen = seen.lock().expect("lock");
                    seen.push(tx.tx.nonce);
                    nonce_max += 1;
                    if seen.len() <= conflicts {
                        (
                            409,
                            r#"{"error":"NonceConflict","message":"taken"}"#.to_string(),
                        )
                    } else {
                        (202, r#"{"hash":"x"}"#.to_string())
                    }
                } else if line.starts_with("GET /accounts/") {
                    (200, format!(r#"{{"name":"op","nonce_max":{nonce_max}}}"#))
                } else if line.starts_with("GET /status") {
                    (200, serde_json::to_string(&status()).expect("serializes"))
                } else {
                    (404, r#"{"error":"NoSuchThing"}"#.to_string())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        (endpoint, posted)
    }

    fn status() -> crate::api::Status {
        crate::api::Status {
            name: "n00".into(),
            healthy: true,
            failed_workers: vec![],
            chain_id: "test".into(),
            node_id: "00".into(),
            height: 3,
            state_root: "00".into(),
            block_digest: "00".into(),
            block_timestamp_ms: 0,
            committee: vec![],
            mempool_txs: 0,
            nodes_per_zone: Default::default(),
            nodes_healthy: 0,
            nodes_total: 0,
            nodes_pending: 0,
        }
    }

    fn kind() -> cairn_ledger::TxKind {
        cairn_ledger::TxKind::RegisterAccount { name: "op".into() }
    }

    #[test]
    fn a_taken_nonce_is_signed_again_with_the_next_one() {
        let (endpoint, posted) = fake_admin(2);
        let key = commonware_cryptography::ed25519::PrivateKey::from_seed(3);
        let (hash, status) = sign_and_submit(&endpoint, &key, &kind(), None).expect("submitted");
        assert_eq!(hash.len(), 64);
        assert!(status.is_none());
        assert_eq!(*posted.lock().expect("lock"), vec![8, 9, 10]);
    }

    #[test]
    fn nonce_retries_are_bounded() {
        let (endpoint, posted) = fake_admin(usize::MAX);
        let key = commonware_cryptography::ed25519::PrivateKey::from_seed(3);
        let err = sign_and_submit(&endpoint, &key, &kind(), None).expect_err("never accepted");
        assert!(err.contains("gave up after 5"), "{err}");
        assert_eq!(
            posted.lock().expect("lock").len(),
            MAX_NONCE_ATTEMPTS as usize
        );
    }
}
