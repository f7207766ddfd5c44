//! Fragment listener tests over real sockets: role checks, replay, body binding, the in-flight
//! byte budget and the timeouts.

use super::*;
use crate::{
    auth::{sign, Ticket, MAX_REQUEST_AGE_MS},
    client::HttpTransport,
    protocol::{hex, FragmentTransport},
};
use cairn_ledger::State;
use ed25519_dalek::SigningKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn id(seed: u8) -> NodeId {
    key(seed).verifying_key().to_bytes()
}

/// Key 1: gateway; key 2: storage only (the server); key 3: cache.
fn state() -> State {
    crate::auth::test_state()
}

struct Server {
    addr: SocketAddr,
    dir: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
    suspects: Arc<crate::prover::Suspects>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn server(limits: Limits) -> Server {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("cairn-frag-test-{}-{n}", std::process::id()));
    let store = FragmentStore::open(&dir, 4).unwrap();
    let state = Arc::new(state());
    let srv = FragmentServer::new(
        id(2),
        store,
        Box::new(move |m, r| auth::authorize(&state, m, r)),
        limits,
    );
    let suspects = Arc::new(crate::prover::Suspects::default());
    let srv = srv.with_suspects(suspects.clone());
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(serve(listener, Arc::new(srv)));
    Server {
        addr,
        dir,
        task,
        suspects,
    }
}

fn transport(seed: u8, addr: SocketAddr) -> HttpTransport {
    HttpTransport::new(key(seed), Arc::new(move |_| Some(addr)), 5_000)
}

/// Sends a raw request head (and `body`); returns the whole reply as text.
async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn signed_head(signer: u8, method: &str, root: Hash, len: u64, time_ms: u64) -> String {
    let t = Ticket {
        method: method.into(),
        target: id(2),
        root,
        content_length: len,
        time_ms,
        nonce: auth::fresh_nonce(),
    };
    let mut head = format!(
        "{method} /fragments/{} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {len}\r\n",
        hex(&root)
    );
    for (n, v) in sign(&key(signer), &t) {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head + "\r\n"
}

fn small_limits() -> Limits {
    Limits {
        max_inflight_body_bytes: 100_000,
        header_read_timeout_ms: 300,
        body_timeout_base_ms: 300,
        min_body_rate_bytes_per_s: 1 << 30,
        max_replay_entries: 1_000,
    }
}

#[tokio::test]
async fn gateway_round_trips_and_other_roles_are_refused() {
    let srv = server(Limits::default()).await;
    let data = Bytes::from(vec![5u8; 70_000]);
    let root = crate::merkle::root_of(&data);
    let gw = transport(1, srv.addr);
    gw.put(id(2), root, data.clone()).await.unwrap();
    assert_eq!(gw.get(id(2), root).await.unwrap(), data);
    // Storage-only and cache nodes (registered, not gateways) and unknown keys: refused.
    for seed in [2, 3, 4] {
        let t = transport(seed, srv.addr);
        let e = t.get(id(2), root).await.unwrap_err().0;
        assert!(e.contains("403") && e.contains("AccessDenied"), "{e}");
        let junk = Bytes::from(vec![9u8; 1000]);
        let e = t
            .put(id(2), crate::merkle::root_of(&junk), junk)
            .await
            .unwrap_err()
            .0;
        assert!(e.contains("403") && e.contains("AccessDenied"), "{e}");
    }
    // A ticket for another node is misdirected.
    let e = gw.get(id(3), root).await.unwrap_err().0;
    assert!(e.contains("421") && e.contains("WrongTarget"), "{e}");
}

#[tokio::test]
async fn a_gateway_report_queues_a_rotten_fragment_for_the_scrubber() {
    let srv = server(Limits::default()).await;
    let data = Bytes::from(vec![6u8; 9_000]);
    let root = crate::merkle::root_of(&data);
    let gw = transport(1, srv.addr);
    gw.put(id(2), root, data).await.unwrap();
    // The copy is intact: nothing is queued.
    gw.report_corrupt(id(2), root).await;
    assert!(srv.suspects.take().is_empty());
    let path = FragmentStore::open(&srv.dir, 4).unwrap().path_of(&root);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    // A cache node may not ask; a gateway may, and the root is queued.
    transport(3, srv.addr).report_corrupt(id(2), root).await;
    assert!(srv.suspects.take().is_empty());
    gw.report_corrupt(id(2), root).await;
    assert_eq!(
        srv.suspects.take(),
        std::collections::BTreeSet::from([root])
    );
}

#[tokio::test]
async fn replayed_stale_and_mismatched_requests_are_refused() {
    let srv = server(Limits::default()).await;
    let data = vec![6u8; 1_000];
    let root = crate::merkle::root_of(&data);
    let head = signed_head(1, "PUT", root, 1_000, now_ms());
    assert!(raw(srv.addr, &head, &data)
        .await
        .starts_with("HTTP/1.1 200"));
    let again = raw(srv.addr, &head, &data).await;
    assert!(
        again.starts_with("HTTP/1.1 403") && again.contains("RequestReplayed"),
        "{again}"
    );
    let stale = signed_head(1, "GET", root, 0, now_ms() - MAX_REQUEST_AGE_MS - 1_000);
    let r = raw(srv.addr, &stale, b"").await;
    assert!(
        r.starts_with("HTTP/1.1 403") && r.contains("RequestTimeTooSkewed"),
        "{r}"
    );
    // Same length, other bytes: the root is the content hash, so the store refuses them.
    let head = signed_head(1, "PUT", root, 1_000, now_ms());
    let r = raw(srv.addr, &head, &[7u8; 1_000]).await;
    assert!(
        r.starts_with("HTTP/1.1 409") && r.contains("FragmentCorrupt"),
        "{r}"
    );
    // A body longer than the signed length changes the signed message.
    let head = signed_head(1, "PUT", root, 1_000, now_ms())
        .replace("content-length: 1000", "content-length: 1001");
    let r = raw(srv.addr, &head, &[6u8; 1_001]).await;
    assert!(
        r.starts_with("HTTP/1.1 403") && r.contains("SignatureDoesNotMatch"),
        "{r}"
    );
    // Unsigned: refused with a clear code.
    let r = raw(
        srv.addr,
        &format!(
            "GET /fragments/{} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            hex(&root)
        ),
        b"",
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 403") && r.contains("AccessDenied"),
        "{r}"
    );
}

#[tokio::test]
async fn put_without_length_is_refused_before_the_body() {
    let srv = server(Limits::default()).await;
    let head = signed_head(1, "PUT", [1; 32], 0, now_ms())
        .replace("content-length: 0\r\n", "transfer-encoding: chunked\r\n");
    let r = raw(srv.addr, &head, b"0\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 411"), "{r}");
    let head = signed_head(
        1,
        "PUT",
        [1; 32],
        MAX_FRAGMENT_SIZE_BYTES as u64 + 1,
        now_ms(),
    );
    let r = raw(srv.addr, &head, b"").await;
    assert!(
        r.starts_with("HTTP/1.1 413") && r.contains("FragmentTooLarge"),
        "{r}"
    );
}

#[tokio::test]
async fn in_flight_body_bytes_are_capped_before_reading() {
    let mut limits = small_limits();
    limits.body_timeout_base_ms = 5_000;
    let srv = server(limits).await;
    // A gateway starts an 80,000-byte upload and stalls after 10 bytes: its 80,000 bytes stay
    // reserved.
    let data = vec![1u8; 80_000];
    let root = crate::merkle::root_of(&data);
    let mut slow = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    slow.write_all(signed_head(1, "PUT", root, 80_000, now_ms()).as_bytes())
        .await
        .unwrap();
    slow.write_all(&data[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another 80,000 bytes would exceed the 100,000-byte budget: 503 + Retry-After at once.
    let t0 = std::time::Instant::now();
    let r = raw(
        srv.addr,
        &signed_head(1, "PUT", root, 80_000, now_ms()),
        b"",
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 503") && r.contains("SlowDown"),
        "{r}"
    );
    assert!(r.to_ascii_lowercase().contains("retry-after: 1"), "{r}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    // Small requests still fit.
    let small = vec![2u8; 1_000];
    let sroot = crate::merkle::root_of(&small);
    let r = raw(
        srv.addr,
        &signed_head(1, "PUT", sroot, 1_000, now_ms()),
        &small,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // The stalled upload finishes; its bytes are released and the next big one fits.
    slow.write_all(&data[10..]).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut reply)).await;
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"));
    let r = raw(
        srv.addr,
        &signed_head(1, "PUT", root, 80_000, now_ms()),
        &data,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[tokio::test]
async fn slow_bodies_and_idle_connections_time_out() {
    let srv = server(small_limits()).await;
    // Body deadline: 300 ms base; the client sends half the body and stalls.
    let data = vec![3u8; 1_000];
    let root = crate::merkle::root_of(&data);
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(signed_head(1, "PUT", root, 1_000, now_ms()).as_bytes())
        .await
        .unwrap();
    s.write_all(&data[..500]).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "a stalled body was not cut off");
    let r = String::from_utf8_lossy(&out);
    assert!(
        r.starts_with("HTTP/1.1 408") && r.contains("RequestTimeout"),
        "{r}"
    );
    // Idle and half-sent heads: closed after the 300 ms head timeout.
    for partial in ["", "GET /fragments/"] {
        let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(partial.as_bytes()).await.unwrap();
        let t0 = std::time::Instant::now();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
        assert!(
            read.is_ok(),
            "connection with head {partial:?} was not closed"
        );
        assert!(t0.elapsed() >= Duration::from_millis(250));
    }
    // A keep-alive connection idle after a reply is closed too.
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let head = signed_head(1, "GET", root, 0, now_ms()).replace("connection: close\r\n", "");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "an idle keep-alive connection was not closed");
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 404"));
}

#[tokio::test]
async fn oversized_heads_and_bad_paths_are_typed() {
    let srv = server(Limits::default()).await;
    let big = format!(
        "GET /fragments/{} HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n",
        "ab".repeat(32),
        "a".repeat(40_000)
    );
    let r = raw(srv.addr, &big, b"").await;
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 431"), "{r}");
    let r = raw(
        srv.addr,
        "GET /status HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"",
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 404") && r.contains("NotFound"),
        "{r}"
    );
    let r = raw(
        srv.addr,
        "GET /fragments/xyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"",
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("BadRoot"),
        "{r}"
    );
}

#[tokio::test]
async fn transport_follows_the_address_book_per_request() {
    // The gateway's address book is read per transfer (in a node: current finalized state), so
    // a node that appears after the transport was built is reachable without a restart.
    let srv = server(Limits::default()).await;
    let book: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
    let view = book.clone();
    let t = HttpTransport::new(key(1), Arc::new(move |_| *view.lock().unwrap()), 5_000);
    let data = Bytes::from(vec![8u8; 2_000]);
    let root = crate::merkle::root_of(&data);
    let e = t.put(id(2), root, data.clone()).await.unwrap_err().0;
    assert!(e.contains("no fragment address"), "{e}");
    *book.lock().unwrap() = Some(srv.addr);
    t.put(id(2), root, data.clone()).await.unwrap();
    assert_eq!(t.get(id(2), root).await.unwrap(), data);
}

#[tokio::test]
async fn idle_sockets_beyond_the_caps_do_not_lock_out_a_gateway() {
    // 1,100 idle sockets from one IP exceed both the per-IP and the global cap; the gate
    // closes the longest-idle ones, so a gateway's request is served at once instead of
    // waiting out the 10 s head timeout of a full listener.
    crate::conn::raise_nofile_limit();
    let srv = server(Limits::default()).await;
    let mut idle = Vec::new();
    for _ in 0..1_100 {
        idle.push(tokio::net::TcpStream::connect(srv.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let root = crate::merkle::root_of(b"absent");
    let t0 = std::time::Instant::now();
    let r = raw(srv.addr, &signed_head(1, "GET", root, 0, now_ms()), b"").await;
    assert!(
        r.starts_with("HTTP/1.1 404"),
        "gateway request not served: {r:?}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "gateway waited {:?} behind idle sockets",
        t0.elapsed()
    );
    drop(idle);
}

/// Memory beyond the in-flight budget a burst of pushes may add to the process (hyper's
/// per-connection buffers, allocator slack): the documented bound (docs/CONFIG.md).
const RSS_SLACK_BYTES: usize = 64 * 1024 * 1024;

/// Resident set size of this process (nextest runs each test in its own process).
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Many concurrent 32 MiB pushes: the server's RSS grows by less than the in-flight budget plus
/// [`RSS_SLACK_BYTES`], because bodies over budget are refused before a byte is read and each
/// admitted body is held once. (Without the budget, 32 bodies could hold 1 GiB.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_32_mib_pushes_keep_rss_under_the_budget() {
    const PUSHES: usize = 32;
    let len = MAX_FRAGMENT_SIZE_BYTES;
    let data = Bytes::from(vec![7u8; len]);
    let root = crate::merkle::root_of(&data);
    let srv = server(Limits::default()).await;
    let baseline = rss_bytes();
    assert!(baseline > 0, "no VmRSS in /proc/self/status");
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(baseline));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let pushes: Vec<_> = (0..PUSHES)
        .map(|_| {
            let (data, head) = (
                data.clone(),
                signed_head(1, "PUT", root, len as u64, now_ms()),
            );
            let addr = srv.addr;
            tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.write_all(head.as_bytes()).await.unwrap();
                // A refused push is answered (and closed) before its body is read.
                let _ = s.write_all(&data).await;
                let mut out = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out)).await;
                String::from_utf8_lossy(&out).into_owned()
            })
        })
        .collect();
    let mut stored = 0;
    let mut refused = 0;
    for p in pushes {
        let reply = p.await.unwrap();
        if reply.starts_with("HTTP/1.1 200") {
            stored += 1;
        } else if reply.starts_with("HTTP/1.1 503") || reply.is_empty() {
            refused += 1;
        } else {
            panic!("unexpected reply: {reply}");
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let grown = peak.load(std::sync::atomic::Ordering::Relaxed) - baseline;
    eprintln!(
        "{PUSHES} x 32 MiB pushes: {stored} stored, {refused} refused, RSS grew {} MiB",
        grown >> 20
    );
    assert!(
        grown < MAX_INFLIGHT_BODY_BYTES + RSS_SLACK_BYTES,
        "RSS grew by {} MiB, over the {} MiB budget + {} MiB slack",
        grown >> 20,
        MAX_INFLIGHT_BODY_BYTES >> 20,
        RSS_SLACK_BYTES >> 20
    );
    assert!(stored >= 1, "no push was stored");
    assert!(refused >= 1, "the budget never refused a push");
}
