//! `cairn drill partition nNN` / `cairn drill heal nNN`: cuts one devnet node off the
//! consensus network (its p2p links) while its S3, admin and fragment ports stay reachable, as
//! a network partition between regions would.
//!
//! How: when the devnet runs as root, each node process runs with its own group id
//! ([`node_gid`]); a partition adds iptables rules on the loopback interface that drop the
//! node's outgoing p2p packets (by `owner --gid-owner`) and every packet to its p2p port. Rules
//! carry a comment naming the node, and the devnet removes them when it heals or stops. Not
//! root, or no iptables: the drill fails with a clear error; nothing else changes.

use std::process::Command;

/// Group id of the devnet node whose p2p port is `p2p_port` (unique per port on a machine).
pub fn node_gid(p2p_port: u16) -> u32 {
    50_000 + u32::from(p2p_port)
}

/// True if this process may change group ids and install firewall rules.
pub fn available() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn rules(own_port: u16, peer_ports: &[u16], tag: &str) -> Vec<Vec<String>> {
    let gid = node_gid(own_port).to_string();
    let comment = ["-m", "comment", "--comment", tag];
    let mut out = Vec::new();
    for p in peer_ports.iter().chain(std::iter::once(&own_port)) {
        let mut r: Vec<String> = [
            "OUTPUT",
            "-o",
            "lo",
            "-p",
            "tcp",
            "-m",
            "owner",
            "--gid-owner",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        r.push(gid.clone());
        // Our own port: replies on connections peers opened to us.
        let dir = if *p == own_port { "--sport" } else { "--dport" };
        r.extend([dir.to_string(), p.to_string()]);
        r.extend(comment.iter().map(|s| s.to_string()));
        r.extend(["-j", "DROP"].iter().map(|s| s.to_string()));
        out.push(r);
    }
    let mut inbound: Vec<String> = ["INPUT", "-i", "lo", "-p", "tcp", "--dport"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    inbound.push(own_port.to_string());
    inbound.extend(comment.iter().map(|s| s.to_string()));
    inbound.extend(["-j", "DROP"].iter().map(|s| s.to_string()));
    out.push(inbound);
    out
}

/// Installs (`cut` = true) or removes the partition of the node listening on `own_port`.
pub fn set(own_port: u16, peer_ports: &[u16], tag: &str, cut: bool) -> Result<(), String> {
    if !available() {
        return Err("partition drills need root (nodes run with per-node group ids and iptables rules drop their p2p traffic)".into());
    }
    for r in rules(own_port, peer_ports, tag) {
        let (chain, rest) = r.split_first().ok_or("empty rule")?;
        let mut cmd = Command::new("iptables");
        cmd.arg("-w")
            .arg(if cut { "-I" } else { "-D" })
            .arg(chain)
            .args(rest);
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run iptables: {e} (install the iptables package)"))?;
        if !out.status.success() && cut {
            return Err(format!(
                "iptables refused a rule: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_cut_both_directions_of_the_p2p_port_only() {
        let r = rules(7103, &[7100, 7101], "cairn n03");
        assert_eq!(r.len(), 4);
        let gid = node_gid(7103).to_string();
        assert!(r[..3].iter().all(|x| x[0] == "OUTPUT" && x.contains(&gid)));
        assert!(r[0].contains(&"--dport".to_string()) && r[0].contains(&"7100".to_string()));
        assert!(r[2].contains(&"--sport".to_string()) && r[2].contains(&"7103".to_string()));
        assert_eq!(r[3][0], "INPUT");
        assert!(r[3].contains(&"7103".to_string()));
        assert_ne!(node_gid(7103), node_gid(7104));
    }
}
