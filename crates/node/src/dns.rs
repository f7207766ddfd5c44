//! The admin API's DNS views (`GET /dns/zones`, `/dns/zones/{origin}`, `/dns/history/{name}`):
//! presentation of finalized zone state as JSON. The DNS services themselves live in
//! `cairn-dns`: the server and its snapshot updater in `cairn_dns::publisher`, the planner in
//! `cairn_dns::planner`; `run` registers their loops as workers.

use cairn_ledger::State;

/// `GET /dns/zones`: every zone with its version, owner and managed names.
pub fn zones_json(state: &State) -> serde_json::Value {
    let zones: Vec<_> = state
        .zones()
        .map(|(origin, z)| {
            serde_json::json!({
                "origin": origin,
                "version": z.version,
                "owner": crate::config::hex(&z.owner),
                "record_sets": z.sets.len(),
                "managed": z.managed.keys().collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({"height": state.height(), "zones": zones})
}

/// `GET /dns/zones/{origin}`: the zone as a master file (static and managed records, SOA
/// serial = version), or `None` if there is no such zone.
pub fn zone_json(state: &State, origin: &str) -> Option<serde_json::Value> {
    let z = state.zone(origin)?;
    let managed: serde_json::Map<_, _> = z
        .managed
        .iter()
        .map(|(name, m)| {
            (
                name.clone(),
                serde_json::json!({
                    "generation": m.state.current.number,
                    "endpoints": m.state.current.endpoints.iter().map(|e| cairn_ledger::dns::format_address(&e.address)).collect::<Vec<_>>(),
                    "alerting": m.alerting,
                    "ttl_secs": m.ttl_secs,
                }),
            )
        })
        .collect();
    Some(serde_json::json!({
        "origin": origin,
        "version": z.version,
        "owner": crate::config::hex(&z.owner),
        "static_zonefile": cairn_dns::zonefile::write(origin, &z.sets, z.version as u32),
        "zonefile": cairn_dns::zonefile::write(origin, &z.served_sets(), z.version as u32),
        "managed": managed,
    }))
}

/// `GET /dns/history/{name}`: every kept generation of a managed name, newest first.
pub fn history_json(state: &State, name: &str) -> Option<serde_json::Value> {
    let (origin, m) = state
        .zones()
        .find_map(|(o, z)| Some((o.clone(), z.managed.get(name)?)))?;
    let gens: Vec<_> = std::iter::once(&m.state.current)
        .chain(m.state.history.iter().rev())
        .map(|g| {
            serde_json::json!({
                "generation": g.number,
                "height": g.height,
                "planner": crate::config::hex(&g.planner),
                "evidence_height": g.evidence_height,
                "overridden": g.overridden,
                "reason": g.reason,
                "endpoints": g.endpoints.iter().map(|e| cairn_ledger::dns::format_address(&e.address)).collect::<Vec<_>>(),
                "active": g.number == m.state.current.number,
                "last_known_good": g.number == m.state.last_known_good,
            })
        })
        .collect();
    Some(serde_json::json!({
        "name": name,
        "zone": origin,
        "alerting": m.alerting,
        "generations": gens,
    }))
}
