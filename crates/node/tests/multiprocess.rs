//! Multi-process tests: real `cairn` processes on loopback sockets.
//!
//! - Four `cairn node` processes finalize; one is killed with SIGKILL and restarted; it catches
//!   up and every node reports the same state root at a common height.
//! - Bad configuration (unknown key) and a taken port fail fast with clear errors.
//! - A devnet whose node cannot bind a port names it and never prints `devnet ready`.
//! - A devnet's storage self-check round-trips over real sockets.
//! - `cairn init` writes random keys and refuses to overwrite.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

struct Nodes(Vec<Option<Child>>);
impl Drop for Nodes {
    fn drop(&mut self) {
        for child in self.0.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cairn-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `cairn init` for `nodes` validators at `base_port` into a fresh temp dir.
fn init(name: &str, nodes: usize, base_port: u16) -> PathBuf {
    let dir = tmp(name);
    let n = nodes.to_string();
    let out = Command::new(BIN)
        .args(["init", "--nodes", &n, "--validators", &n, "--base-port"])
        .arg(base_port.to_string())
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// Appends a node's log to `<dir>/n<i>.log`, kept for post-mortems of a failed run.
fn log_file(dir: &Path, i: usize) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("n{i:02}.log")))
        .expect("open node log")
}

fn spawn(dir: &Path, i: usize) -> Child {
    Command::new(BIN)
        .args(["node", "--config"])
        .arg(dir.join(format!("nodes/n{i:02}/node.toml")))
        .stdout(Stdio::null())
        .stderr(log_file(dir, i))
        .env("CAIRN_LOG", "warn,cairn_chain=info")
        .spawn()
        .expect("spawn cairn node")
}

fn get(port: u16, path: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_secs(1),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let body = buf.split("\r\n\r\n").nth(1)?;
    serde_json::from_str(body).ok()
}

fn height(port: u16) -> Option<u64> {
    get(port, "/status")?["height"].as_u64()
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn kill9_restart_catches_up_and_roots_agree() {
    let base = 27_300u16;
    let dir = init("kill9", 4, base);
    let admin = |i: usize| base + 1000 + i as u16;
    let mut nodes = Nodes((0..4).map(|i| Some(spawn(&dir, i))).collect());
    assert!(
        wait_for(Duration::from_secs(60), || (0..4)
            .all(|i| height(admin(i)).unwrap_or(0) >= 5)),
        "4 nodes did not reach height 5"
    );

    // SIGKILL node 2 (Child::kill sends SIGKILL on Unix), let the others go on (3 of 4 is a quorum).
    let mut victim = nodes.0[2].take().unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
    let h = height(admin(0)).unwrap();
    assert!(
        wait_for(Duration::from_secs(60), || height(admin(0)).unwrap_or(0)
            >= h + 10),
        "3 of 4 nodes did not keep finalizing"
    );

    nodes.0[2] = Some(spawn(&dir, 2));
    let target = height(admin(0)).unwrap();
    assert!(
        wait_for(Duration::from_secs(90), || height(admin(2)).unwrap_or(0)
            >= target),
        "restarted node did not catch up to {target}"
    );

    // Every node runs its named workers, all running and healthy (GET /workers, /status).
    for i in 0..4 {
        let w = get(admin(i), "/workers").expect("GET /workers");
        assert_eq!(w["healthy"], true, "node {i}: {w}");
        let workers = w["workers"].as_array().unwrap();
        for name in [
            "finalizer",
            "p2p",
            "fragments",
            "admin",
            "dns-tcp",
            "heartbeats",
        ] {
            let entry = workers.iter().find(|x| x["name"] == name);
            assert!(
                entry.is_some_and(|x| x["state"] == "running" && x["critical"] == true),
                "node {i} worker {name}: {w}"
            );
        }
        assert_eq!(get(admin(i), "/status").unwrap()["healthy"], true);
    }

    // All nodes agree on the state root at a height every one of them applied since start.
    let common = (0..4).map(|i| height(admin(i)).unwrap()).min().unwrap();
    let roots: Vec<_> = (0..4)
        .map(|i| {
            get(admin(i), &format!("/blocks/{common}"))
                .and_then(|b| b["state_root"].as_str().map(str::to_owned))
        })
        .collect();
    assert!(
        roots.iter().all(|r| r.is_some() && *r == roots[0]),
        "roots differ at {common}: {roots:?}"
    );
    if std::env::var_os("CAIRN_KEEP_TEST_DIR").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn unknown_config_key_is_a_clear_error() {
    let dir = init("badcfg", 1, 27_400);
    let path = dir.join("nodes/n00/node.toml");
    let text = std::fs::read_to_string(&path).unwrap() + "\nlisten_typo = 1\n";
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .args(["node", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("listen_typo") && err.contains("unknown field"),
        "unexpected error: {err}"
    );
    assert!(!err.contains("panicked"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn taken_port_is_a_clear_error() {
    let dir = init("port", 1, 27_500);
    let _hold = TcpListener::bind(("127.0.0.1", 28_500)).unwrap(); // the node's admin port
    let out = Command::new(BIN)
        .args(["node", "--config"])
        .arg(dir.join("nodes/n00/node.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("already in use") && err.contains("28500"),
        "unexpected error: {err}"
    );
    assert!(!err.contains("panicked"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A devnet one of whose nodes cannot bind its fragment port names that node, the port and
/// the error, never prints `devnet ready`, exits non-zero and stops the other nodes.
#[test]
fn devnet_names_a_node_that_cannot_bind_and_is_not_ready() {
    use std::io::Read;
    let base = 27_450u16;
    let held = base + 4000 + 2; // n02's fragment listener
    let _hold = TcpListener::bind(("127.0.0.1", held)).unwrap();
    let dir = tmp("bindfail");
    let mut child = Command::new(BIN)
        .args([
            "devnet",
            "--nodes",
            "4",
            "--validators",
            "4",
            "--zones",
            "2",
        ])
        .args(["--base-port", &base.to_string(), "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cairn devnet");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = status.unwrap_or_else(|| panic!("devnet still running after 60 s:\n{out}"));
    assert!(!status.success(), "devnet exited 0:\n{out}");
    assert!(!out.contains("devnet ready"), "claimed ready:\n{out}");
    assert!(
        out.contains("n02 exited") && out.contains(&held.to_string()) && out.contains("in use"),
        "node n02 and port {held} not reported:\n{out}"
    );
    // The other nodes were stopped with the devnet: their admin ports are free again.
    for i in [0u16, 1, 3] {
        assert!(
            wait_for(Duration::from_secs(15), || TcpListener::bind((
                "127.0.0.1",
                base + 1000 + i
            ))
            .is_ok()),
            "node {i} still holds its admin port"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn devnet_storage_self_check_round_trips_over_real_sockets() {
    use std::io::{BufRead, BufReader};
    let dir = tmp("selfcheck");
    let mut child = Nodes(vec![Some(
        Command::new(BIN)
            .args([
                "devnet",
                "--nodes",
                "4",
                "--validators",
                "4",
                "--zones",
                "2",
            ])
            .args(["--base-port", "27600", "--dir"])
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn cairn devnet"),
    )]);
    let stdout = child.0[0].as_mut().unwrap().stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("self-check") {
                let _ = tx.send(line);
                return;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("devnet printed no storage self-check line within 90 s");
    assert!(
        line.starts_with("storage self-check: RS(1, 3) 1 MiB over 4 nodes in 2 zones")
            && line.contains("verified GET"),
        "unexpected self-check result: {line}"
    );
    // RS(1, 3) over 4 nodes: every node stored exactly one fragment, under its root.
    let frags: usize = (0..4)
        .map(|i| {
            let fdir = dir.join(format!("nodes/n{i:02}/data/fragments"));
            walk_count(&fdir, "frag")
        })
        .sum();
    assert_eq!(frags, 4, "one fragment file per node");
    // Unsigned fragment requests are refused with a clear S3-style code, on the fragment
    // listener (base + 4000); the admin API no longer serves fragments at all.
    let reply = get(31_600, &format!("/fragments/{}", "ab".repeat(32)));
    assert_eq!(
        reply.as_ref().and_then(|r| r["error"].as_str()),
        Some("AccessDenied"),
        "unexpected reply: {reply:?}"
    );
    let reply = get(28_600, &format!("/fragments/{}", "ab".repeat(32)));
    assert_eq!(
        reply.as_ref().and_then(|r| r["error"].as_str()),
        Some("NotFound"),
        "the admin API still routes /fragments: {reply:?}"
    );
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk_count(dir: &Path, ext: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk_count(&p, ext)
            } else {
                usize::from(p.extension().is_some_and(|x| x == ext))
            }
        })
        .sum()
}

/// `cairn init` draws every key from the OS CSPRNG, keeps them owner-only, and never
/// overwrites an existing layout or key file.
#[test]
fn init_writes_random_keys_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let a = init("keys-a", 2, 27_600);
    let b = init("keys-b", 2, 27_600);
    let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
    let key_line = |text: String| {
        text.lines()
            .find(|l| l.starts_with("private_key") || l.starts_with("secret_key"))
            .map(str::to_string)
            .unwrap_or(text)
    };
    for f in [
        "admin.key",
        "s3-keys.toml",
        "nodes/n00/node.toml",
        "nodes/n01/node.toml",
    ] {
        assert_ne!(
            key_line(read(&a, f)),
            key_line(read(&b, f)),
            "{f} holds the same key in two inits"
        );
        let mode = std::fs::metadata(a.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{f} is readable by others ({mode:o})");
    }
    assert_ne!(
        key_line(read(&a, "nodes/n00/node.toml")),
        key_line(read(&a, "nodes/n01/node.toml"))
    );
    let rerun = |dir: &Path| {
        Command::new(BIN)
            .args(["init", "--nodes", "2", "--validators", "2", "--dir"])
            .arg(dir)
            .output()
            .unwrap()
    };
    let before = read(&a, "admin.key");
    let out = rerun(&a);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("genesis.toml"),
        "{err}"
    );
    // A key file left without a genesis is not overwritten either.
    std::fs::remove_file(a.join("genesis.toml")).unwrap();
    let out = rerun(&a);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("admin.key"), "{err}");
    assert_eq!(read(&a, "admin.key"), before, "admin.key was overwritten");
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}
