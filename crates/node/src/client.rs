//! A tiny blocking HTTP/1.1 client for the CLI (`status`, `tx`): one request per connection,
//! bounded response size and timeouts.

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    time::Duration,
};

/// Largest response body the CLI reads.
pub const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
/// Connect/read/write timeout.
pub const TIMEOUT_MS: u64 = 5_000;

/// Performs a request; returns (status code, body).
pub fn request(
    endpoint: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let host = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("bad endpoint {endpoint}: {e}"))?
        .next()
        .ok_or_else(|| format!("endpoint {endpoint} resolves to nothing"))?;
    let timeout = Duration::from_millis(TIMEOUT_MS);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {endpoint}: {e} (is the node running?)"))?;
    stream.set_nodelay(true).ok();
    stream.set_read_timeout(Some(timeout)).ok();
    stream.set_write_timeout(Some(timeout)).ok();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(body))
        .map_err(|e| format!("send to {endpoint}: {e}"))?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut response)
        .map_err(|e| format!("read from {endpoint}: {e}"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let status_line = String::from_utf8_lossy(&response[..split]);
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("malformed HTTP status line")?;
    let head_text = status_line.to_ascii_lowercase();
    let mut body = response[split + 4..].to_vec();
    if head_text.contains("transfer-encoding: chunked") {
        body = dechunk(&body).ok_or("malformed chunked body")?;
    }
    Ok((code, body))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
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

/// The next nonce for `account` (one above its finalized maximum).
pub fn next_nonce(endpoint: &str, account: &[u8; 32]) -> Result<u64, String> {
    let a = get_json(
        endpoint,
        &format!("/accounts/{}", crate::config::hex(account)),
    )?;
    Ok(a["nonce_max"].as_u64().unwrap_or(0) + 1)
}

/// How many blocks a CLI transaction stays valid (about a minute at one block per 500 ms).
pub const CLI_TX_VALIDITY_BLOCKS: u64 = 120;

/// A `valid_until` for a CLI transaction: the node's finalized height plus
/// [`CLI_TX_VALIDITY_BLOCKS`].
pub fn valid_until(endpoint: &str) -> Result<u64, String> {
    let status = get_json(endpoint, "/status")?;
    let height = status["height"]
        .as_u64()
        .ok_or_else(|| format!("{endpoint}/status has no height"))?;
    Ok(height + CLI_TX_VALIDITY_BLOCKS)
}

/// POSTs a signed transaction; returns its hash (hex).
pub fn post_tx(endpoint: &str, tx: &cairn_ledger::SignedTx) -> Result<String, String> {
    let (code, body) = request(endpoint, "POST", "/tx", &tx.encode())?;
    if code >= 400 {
        return Err(format!(
            "HTTP {code}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    Ok(crate::config::hex(&tx.hash()))
}

/// Polls until transaction `hash` is finalized (or `timeout_ms` passes); returns its status
/// JSON (`result` is "ok" or the rejection).
pub fn wait_finalized(
    endpoint: &str,
    hash: &str,
    timeout_ms: u64,
) -> Result<serde_json::Value, String> {
    let deadline = std::time::Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let status = get_json(endpoint, &format!("/tx/{hash}"))?;
        if status["status"] == "finalized" {
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
