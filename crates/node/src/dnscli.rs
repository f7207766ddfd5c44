//! `cairn dns ...`: import and export RFC 1035 master files, bind managed names, and show a
//! managed name's history, through any node's admin API.
//!
//! Import computes the difference between the file and the zone's static record sets on the
//! ledger and sends it as `ZoneUpdate` transactions (compare-and-set on the zone version),
//! split so each fits [`cairn_ledger::MAX_TX_SIZE_BYTES`]; all deletions and the apex sets go
//! first, so every intermediate version is a valid zone.

use crate::client;
use cairn_ledger::{
    codec::Writer,
    dns::{write_set, RecordSet},
    zones::{ManagedRole, DEFAULT_ENDPOINT_WEIGHT},
    TxKind, MAX_TX_SIZE_BYTES,
};
use std::{collections::BTreeMap, path::Path};

/// How long each transaction may take to finalize.
const FINALITY_TIMEOUT_MS: u64 = 30_000;
/// Room left in a transaction for everything but the record sets.
const TX_OVERHEAD_BYTES: usize = 1024;

pub(crate) fn signer(
    key_path: &Path,
) -> Result<commonware_cryptography::ed25519::PrivateKey, String> {
    let text = std::fs::read_to_string(key_path)
        .map_err(|e| format!("cannot read key file {}: {e}", key_path.display()))?;
    crate::config::private_key(&text).ok_or_else(|| {
        format!(
            "{} does not hold a 64-hex-character key",
            key_path.display()
        )
    })
}

/// Signs, submits and waits for each kind in order (consecutive nonces); fails on the first
/// rejection with the ledger's reason.
pub fn submit_in_order(
    endpoint: &str,
    key: &commonware_cryptography::ed25519::PrivateKey,
    kinds: Vec<TxKind>,
) -> Result<(), String> {
    for kind in kinds {
        let (_, status) = client::sign_and_submit(endpoint, key, &kind, Some(FINALITY_TIMEOUT_MS))?;
        if let Some(reason) = status.as_ref().and_then(|s| s.rejection()) {
            return Err(format!("rejected by the ledger: {reason}"));
        }
    }
    Ok(())
}

fn key_of(s: &RecordSet) -> (String, u16) {
    (s.name.clone(), s.records[0].type_code())
}

fn set_size(s: &RecordSet) -> usize {
    let mut w = Writer::default();
    write_set(&mut w, s);
    w.0.len()
}

/// The `ZoneUpdate`s that turn `current` (at `version`) into `wanted`.
pub fn import_plan(
    origin: &str,
    version: u64,
    current: &[RecordSet],
    wanted: &[RecordSet],
) -> Vec<TxKind> {
    let have: BTreeMap<_, _> = current.iter().map(|s| (key_of(s), s)).collect();
    let want: BTreeMap<_, _> = wanted.iter().map(|s| (key_of(s), s)).collect();
    let deletes: Vec<(String, u16)> = have
        .keys()
        .filter(|k| !want.contains_key(*k))
        .cloned()
        .collect();
    let mut upserts: Vec<&RecordSet> = want
        .iter()
        .filter(|(k, s)| have.get(*k) != Some(*s))
        .map(|(_, s)| *s)
        .collect();
    // Apex sets first, so a new zone is valid from its first version.
    upserts.sort_by_key(|s| s.name != origin);
    let mut out = Vec::new();
    let mut chunk: Vec<RecordSet> = Vec::new();
    let mut size = 0;
    let mut deletes = Some(deletes);
    let mut next_version = version;
    let mut flush = |chunk: Vec<RecordSet>, deletes: Vec<(String, u16)>, out: &mut Vec<TxKind>| {
        if chunk.is_empty() && deletes.is_empty() {
            return;
        }
        out.push(TxKind::ZoneUpdate {
            origin: origin.to_string(),
            expected_version: next_version,
            upserts: chunk,
            deletes,
        });
        next_version += 1;
    };
    for s in upserts {
        let n = set_size(s);
        if !chunk.is_empty() && size + n > MAX_TX_SIZE_BYTES - TX_OVERHEAD_BYTES {
            flush(
                std::mem::take(&mut chunk),
                deletes.take().unwrap_or_default(),
                &mut out,
            );
            size = 0;
        }
        size += n;
        chunk.push(s.clone());
    }
    flush(chunk, deletes.take().unwrap_or_default(), &mut out);
    out
}

fn current_zone(endpoint: &str, origin: &str) -> Result<(u64, Vec<RecordSet>), String> {
    let (code, body) = client::request(endpoint, "GET", &format!("/dns/zones/{origin}"), &[])?;
    if code == 404 {
        return Ok((0, Vec::new()));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("bad JSON from {endpoint}: {e}"))?;
    if code >= 400 {
        return Err(format!("{endpoint}: HTTP {code}: {v}"));
    }
    let text = v["static_zonefile"].as_str().unwrap_or_default();
    let sets = if v["version"].as_u64().unwrap_or(0) == 0 || text.is_empty() {
        Vec::new()
    } else {
        cairn_dns::zonefile::parse(text, origin)
            .map_err(|e| format!("the node returned an unreadable zone: {e}"))?
            .1
    };
    Ok((v["version"].as_u64().unwrap_or(0), sets))
}

/// `cairn dns import FILE`.
pub fn import(endpoint: &str, key: &Path, file: &Path, origin: Option<&str>) -> Result<(), String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let origin = origin
        .map(|o| o.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default();
    let (origin, sets) = cairn_dns::zonefile::parse(&text, &origin)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let key = signer(key)?;
    let (version, current) = current_zone(endpoint, &origin)?;
    let txs = import_plan(&origin, version, &current, &sets);
    if txs.is_empty() {
        println!("zone {origin} is already up to date (version {version})");
        return Ok(());
    }
    let count = txs.len();
    submit_in_order(endpoint, &key, txs)?;
    let (now, _) = current_zone(endpoint, &origin)?;
    println!(
        "imported {} record sets into zone {origin}: version {version} -> {now} ({count} transaction{})",
        sets.len(),
        if count == 1 { "" } else { "s" }
    );
    Ok(())
}

/// `cairn dns export ORIGIN`: the served zone (static and managed records) as a master file.
pub fn export(endpoint: &str, origin: &str, static_only: bool) -> Result<(), String> {
    let origin = origin.trim_end_matches('.').to_ascii_lowercase();
    let v = client::get_json(endpoint, &format!("/dns/zones/{origin}"))?;
    let field = if static_only {
        "static_zonefile"
    } else {
        "zonefile"
    };
    print!("{}", v[field].as_str().unwrap_or_default());
    Ok(())
}

/// `cairn dns manage NAME --zone Z`: binds a managed name to every registered gateway.
pub fn manage(
    endpoint: &str,
    key: &Path,
    origin: &str,
    name: &str,
    ttl_secs: u32,
) -> Result<(), String> {
    manage_as(endpoint, &signer(key)?, origin, name, ttl_secs)
}

/// [`manage`] signed with `key`.
pub fn manage_as(
    endpoint: &str,
    key: &commonware_cryptography::ed25519::PrivateKey,
    origin: &str,
    name: &str,
    ttl_secs: u32,
) -> Result<(), String> {
    let nodes: crate::api::Nodes = client::get(endpoint, "/nodes")?;
    let mut endpoints: Vec<cairn_ledger::dns::Endpoint> = nodes
        .nodes
        .iter()
        .filter(|n| n.roles.gateway)
        .filter_map(|n| {
            n.endpoint(cairn_ledger::registry::Service::S3)?
                .parse::<std::net::SocketAddr>()
                .ok()
        })
        .map(|a| cairn_ledger::dns::Endpoint {
            address: match a.ip() {
                std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
                std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
            },
            weight: DEFAULT_ENDPOINT_WEIGHT,
        })
        .collect();
    endpoints.sort();
    endpoints.dedup_by(|a, b| a.address == b.address);
    if endpoints.is_empty() {
        return Err("no registered gateway advertises an S3 address".into());
    }
    submit_in_order(
        endpoint,
        key,
        vec![TxKind::ManageName {
            origin: origin.trim_end_matches('.').to_ascii_lowercase(),
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            ttl_secs,
            role: ManagedRole::Gateway,
            endpoints,
        }],
    )?;
    println!("{name} now follows the healthy gateways");
    Ok(())
}

/// `cairn dns history NAME`: who changed a managed name, when, and why.
pub fn history(endpoint: &str, name: &str) -> Result<(), String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let v = client::get_json(endpoint, &format!("/dns/history/{name}"))?;
    println!(
        "{name} (zone {}){}",
        v["zone"].as_str().unwrap_or("?"),
        if v["alerting"] == true {
            "  ALERT: every endpoint is unhealthy; records kept (fail static)"
        } else {
            ""
        }
    );
    println!(
        "{:>5} {:>8} {:>8} {:<10} {:<12} endpoints / reason",
        "gen", "height", "evidence", "planner", "flags"
    );
    for g in v["generations"].as_array().cloned().unwrap_or_default() {
        let mut flags = Vec::new();
        if g["active"] == true {
            flags.push("active");
        }
        if g["last_known_good"] == true {
            flags.push("lkg");
        }
        if g["overridden"] == true {
            flags.push("override");
        }
        let endpoints: Vec<String> = g["endpoints"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.as_str().map(str::to_string))
            .collect();
        println!(
            "{:>5} {:>8} {:>8} {:<10} {:<12} {} / {}",
            g["generation"].as_u64().unwrap_or(0),
            g["height"].as_u64().unwrap_or(0),
            g["evidence_height"].as_u64().unwrap_or(0),
            g["planner"].as_str().unwrap_or("?").get(..8).unwrap_or("?"),
            flags.join(","),
            endpoints.join(" "),
            g["reason"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_ledger::{dns::RData, Tx};

    fn set(name: &str, n: u8) -> RecordSet {
        RecordSet {
            name: name.into(),
            ttl_secs: 60,
            records: vec![RData::A([192, 0, 2, n])],
        }
    }

    #[test]
    fn import_sends_only_the_difference_in_version_order() {
        let current = vec![set("a.z.test", 1), set("b.z.test", 2)];
        let wanted = vec![set("a.z.test", 1), set("b.z.test", 3), set("c.z.test", 4)];
        let txs = import_plan("z.test", 7, &current, &wanted);
        assert_eq!(txs.len(), 1);
        let TxKind::ZoneUpdate {
            expected_version,
            upserts,
            deletes,
            ..
        } = &txs[0]
        else {
            panic!("expected a ZoneUpdate")
        };
        assert_eq!(*expected_version, 7);
        assert_eq!(upserts, &vec![set("b.z.test", 3), set("c.z.test", 4)]);
        assert!(deletes.is_empty());
        assert!(import_plan("z.test", 7, &wanted, &wanted).is_empty());
        let gone = import_plan("z.test", 7, &current, &current[..1]);
        let TxKind::ZoneUpdate { deletes, .. } = &gone[0] else {
            panic!()
        };
        assert_eq!(deletes, &vec![("b.z.test".to_string(), 1)]);
    }

    #[test]
    fn large_imports_split_under_the_tx_limit_with_consecutive_versions() {
        let wanted: Vec<RecordSet> = (0..6000)
            .map(|i| set(&format!("host{i}.z.test"), (i % 250) as u8))
            .collect();
        let txs = import_plan("z.test", 0, &[], &wanted);
        assert!(txs.len() > 1);
        let mut total = 0;
        for (i, tx) in txs.iter().enumerate() {
            let TxKind::ZoneUpdate {
                expected_version,
                upserts,
                ..
            } = tx
            else {
                panic!()
            };
            assert_eq!(*expected_version, i as u64);
            total += upserts.len();
            let signed = Tx {
                signer: [0; 32],
                nonce: 1,
                valid_until: 1,
                kind: tx.clone(),
            }
            .sign(&ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
            assert!(signed.encode().len() <= MAX_TX_SIZE_BYTES);
        }
        assert_eq!(total, 6000);
    }
}
