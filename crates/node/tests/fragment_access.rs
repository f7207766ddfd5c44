//! Fragment access by role over real processes: a 4-node devnet where only n03 is a gateway.
//! The gateway can read a stored fragment from another node's fragment listener; storage-only
//! nodes (registered, with stake) cannot GET or PUT; a replayed or stale ticket is refused.
//! Tickets are signed with the hidden `cairn fragment-sign` helper, as an operator would.

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");
const BASE: u16 = 27_700;

struct Devnet(Child, PathBuf);
impl Drop for Devnet {
    fn drop(&mut self) {
        // SIGTERM first so the devnet stops its node processes.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::env::var_os("CAIRN_KEEP_TEST_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
}

/// One HTTP exchange; returns (status, body).
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a reply head");
    let status = String::from_utf8_lossy(&buf[9..12]).parse().unwrap_or(0);
    (status, buf[split + 4..].to_vec())
}

/// Writes node `i`'s private key (from its node.toml) to a key file.
fn key_file(dir: &Path, i: usize) -> PathBuf {
    let text = std::fs::read_to_string(dir.join(format!("nodes/n{i:02}/node.toml"))).unwrap();
    let line = text.lines().find(|l| l.starts_with("private_key")).unwrap();
    let key = line.split('"').nth(1).unwrap();
    let path = dir.join(format!("n{i:02}.key"));
    std::fs::write(&path, key).unwrap();
    path
}

/// The node id of the node whose admin address is `BASE + 1000 + i`, from `/nodes`.
fn node_id(i: usize) -> String {
    let (status, body) = request(BASE + 1000, "GET", "/nodes", &[], b"");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let admin = format!("127.0.0.1:{}", BASE + 1000 + i as u16);
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["addresses"][1] == admin.as_str())
        .map(|n| {
            // The record advertises the fragment listener at addresses[3].
            let frag = format!("127.0.0.1:{}", BASE + 4000 + i as u16);
            assert_eq!(
                n["addresses"][3],
                frag.as_str(),
                "fragment address of n{i:02}"
            );
            n["node_id"].as_str().unwrap().to_string()
        })
        .unwrap()
}

fn sign(
    key: &Path,
    method: &str,
    target: &str,
    root: &str,
    len: usize,
    time_ms: Option<u64>,
) -> Vec<(String, String)> {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "fragment-sign",
        "--method",
        method,
        "--target",
        target,
        "--root",
        root,
    ])
    .args(["--content-length", &len.to_string(), "--key"])
    .arg(key);
    if let Some(t) = time_ms {
        cmd.args(["--time-ms", &t.to_string()]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

/// A fragment file stored on node `i` (its root, its bytes).
fn a_fragment(dir: &Path, i: usize) -> (String, Vec<u8>) {
    let fdir = dir.join(format!("nodes/n{i:02}/data/fragments"));
    for shard in std::fs::read_dir(&fdir).unwrap().flatten() {
        for f in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some(root) = name.strip_suffix(".frag") {
                return (root.to_string(), std::fs::read(f.path()).unwrap());
            }
        }
    }
    panic!("no fragment on n{i:02}");
}

#[test]
fn only_gateways_move_fragments_and_tickets_are_single_use_and_fresh() {
    let dir = std::env::temp_dir().join(format!("cairn-test-fragaccess-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(BIN)
        .args([
            "devnet",
            "--nodes",
            "4",
            "--validators",
            "4",
            "--zones",
            "2",
            "--gateways",
            "1",
        ])
        .args(["--base-port", &BASE.to_string(), "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cairn devnet");
    let stdout = child.stdout.take().unwrap();
    let _devnet = Devnet(child, dir.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("self-check") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("devnet printed no storage self-check line within 120 s");
    // The normal path (S3 PUT and GET through the gateway n03) works.
    assert!(line.contains("verified GET"), "self-check failed: {line}");

    let (gateway, storage_only) = (key_file(&dir, 3), key_file(&dir, 0));
    let target = node_id(1);
    let port = BASE + 4000 + 1;
    let (root, bytes) = a_fragment(&dir, 1);
    let path = format!("/fragments/{root}");

    // The gateway reads the fragment.
    let ticket = sign(&gateway, "GET", &target, &root, 0, None);
    let (status, body) = request(port, "GET", &path, &ticket, b"");
    assert_eq!(
        (status, body.len()),
        (200, bytes.len()),
        "{}",
        error_code(&body)
    );
    assert!(
        body == bytes,
        "gateway read other bytes than the stored fragment"
    );
    // The same ticket again: a replay.
    let (status, body) = request(port, "GET", &path, &ticket, b"");
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "RequestReplayed")
    );
    // A ticket 31 s old: stale.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let stale = sign(&gateway, "GET", &target, &root, 0, Some(now_ms - 31_000));
    let (status, body) = request(port, "GET", &path, &stale, b"");
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "RequestTimeTooSkewed")
    );

    // A storage-only node (registered, staked, not a gateway) can neither read nor write.
    let ticket = sign(&storage_only, "GET", &target, &root, 0, None);
    let (status, body) = request(port, "GET", &path, &ticket, b"");
    assert_eq!((status, error_code(&body).as_str()), (403, "AccessDenied"));
    let junk = vec![0x5a_u8; 4096];
    let junk_root = {
        // Any 64-hex root will do: the role check refuses before the body is read.
        "5a".repeat(32)
    };
    let ticket = sign(&storage_only, "PUT", &target, &junk_root, junk.len(), None);
    let (status, body) = request(
        port,
        "PUT",
        &format!("/fragments/{junk_root}"),
        &ticket,
        &junk,
    );
    assert_eq!((status, error_code(&body).as_str()), (403, "AccessDenied"));
    let stored = dir.join(format!("nodes/n01/data/fragments/5a/{junk_root}.frag"));
    assert!(!stored.exists(), "a non-gateway PUT was stored");
    // A gateway ticket for n01 presented to n02 is misdirected.
    let ticket = sign(&gateway, "GET", &target, &root, 0, None);
    let (status, body) = request(BASE + 4000 + 2, "GET", &path, &ticket, b"");
    assert_eq!((status, error_code(&body).as_str()), (421, "WrongTarget"));
}
