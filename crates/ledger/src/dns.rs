//! DNS rules: zones and record sets ([`validate_zone`]), and managed names with the
//! compare-and-set plan that makes the AWS Planner/Enactor race (19–20 Oct 2025) impossible
//! by construction.
//!
//! Zones: SOA, NS, A, AAAA, CNAME, TXT, MX, SRV and CAA record sets with bounded names
//! (LDH labels, wildcard first label, `_` service labels), TTLs, set and zone sizes, exactly
//! one SOA and at least one NS at the apex, and CNAME exclusivity.
//!
//! A managed name (e.g. `s3.<zone>`) has a current generation: a numbered, non-empty set of
//! weighted endpoints. A planner proposes a [`Plan`] `(generation, base_generation,
//! endpoints, evidence_height)`; [`ManagedName::apply_plan`] accepts it only if
//! `base_generation` is the current generation and `generation` is exactly one more, so a
//! slow or duplicate planner is rejected instead of overwriting newer state. Further
//! safeguards, all deterministic:
//! - never empty: a plan with no endpoints is always refused (fail static); when every
//!   endpoint is unhealthy planners keep the last set and [`DnsEvent::AllUnhealthy`] is raised;
//! - velocity: one plan removes at most [`VELOCITY_LIMIT_PERCENT`] of the name's capacity
//!   (sum of weights), except that a plan may always drop exactly one endpoint and change
//!   nothing else (otherwise a set of three equal endpoints could never lose a dead one);
//! - pacing: at least [`MIN_PLAN_INTERVAL_BLOCKS`] between plans of one name;
//! - evidence: a plan's health evidence is at most [`MAX_EVIDENCE_AGE_BLOCKS`] old and not
//!   from the future;
//! - only a committee-quorum override may exceed velocity and pacing (never emptiness), and
//!   it is recorded in the generation.
//!
//! History keeps past generations (at most [`MAX_HISTORY_GENERATIONS`]); pruning never drops
//! the active or the last-known-good generation.
//!
//! Zones and record sets live in the `records` submodule (re-exported here).
//!
//! These are pure functions; the transactions `ZoneUpdate`, `ManageName`, `DnsPlan` and
//! `DnsOverride` apply them to the state (`rules/dns.rs`, storing [`crate::zones::Zone`]s),
//! and [`next_plan`] is the one planner step every validator runs. Tested by unit tests,
//! `tests/dns_race.rs` (the AWS race and a three-planner property test) and
//! `tests/dns_ledger.rs` (through real blocks).

use crate::{
    codec::{Reader, Writer},
    AccountId, TxError,
};
mod records;

pub use records::*;

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Largest share of a name's capacity one plan may remove.
pub const VELOCITY_LIMIT_PERCENT: u64 = 30;
/// Fewest blocks between two plans of the same name (without an override).
pub const MIN_PLAN_INTERVAL_BLOCKS: u64 = 10;
/// Oldest health evidence a plan may rely on, in blocks.
pub const MAX_EVIDENCE_AGE_BLOCKS: u64 = 120;
/// Most endpoints in one generation.
pub const MAX_ENDPOINTS: usize = 64;
/// Largest endpoint weight.
pub const MAX_WEIGHT: u32 = 1_000;
/// Most past generations kept per name (besides the pinned last-known-good one).
pub const MAX_HISTORY_GENERATIONS: usize = 32;

/// Longest reason a plan may carry (shown by `cairn dns history`).
pub const MAX_REASON_SIZE_BYTES: usize = 200;

/// One address a managed name resolves to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// IPv4 (4 bytes) or IPv6 (16 bytes) address.
    pub address: Vec<u8>,
    /// Share of traffic, 1..=[`MAX_WEIGHT`].
    pub weight: u32,
}

/// A numbered record set of a managed name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    /// Generation number (starts at 1, +1 per accepted plan).
    pub number: u64,
    /// Endpoints, sorted by address, addresses unique, never empty.
    pub endpoints: Vec<Endpoint>,
    /// Height at which it became current.
    pub height: u64,
    /// Account that planned it.
    pub planner: AccountId,
    /// Height of the health evidence it was planned from.
    pub evidence_height: u64,
    /// True if a committee-quorum override bypassed velocity and pacing.
    pub overridden: bool,
    /// Why the planner proposed it.
    pub reason: String,
}

/// A proposed next generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Must be `base_generation + 1`.
    pub generation: u64,
    /// The generation the planner read (compare-and-set).
    pub base_generation: u64,
    /// New endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Height of the health data the plan was computed from.
    pub evidence_height: u64,
    /// Why (at most [`MAX_REASON_SIZE_BYTES`]), e.g. which endpoints went unhealthy.
    pub reason: String,
}

/// Why a plan was refused; each names what the planner should do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum PlanError {
    /// The name moved on since the planner read it.
    #[error("stale plan: based on generation {base} but the current one is {current}; re-read and re-plan")]
    StaleBase {
        /// The plan's base.
        base: u64,
        /// The current generation.
        current: u64,
    },
    /// The generation is not exactly base + 1.
    #[error("plan generation {got} must be {want} (base + 1)")]
    BadGeneration {
        /// Given.
        got: u64,
        /// Expected.
        want: u64,
    },
    /// The plan would leave the name without records.
    #[error("a managed name never becomes empty; keep the last record set (fail static)")]
    Empty,
    /// Too many endpoints, a bad address or weight, or duplicates.
    #[error("invalid endpoints: {0}")]
    InvalidEndpoints(String),
    /// Removes more capacity than one plan may.
    #[error("plan removes {removed_percent}% of capacity; at most {VELOCITY_LIMIT_PERCENT}% per plan (split it, or use a committee override)")]
    Velocity {
        /// Share removed, rounded up.
        removed_percent: u64,
    },
    /// Too soon after the previous plan.
    #[error("plan at height {height} is within {MIN_PLAN_INTERVAL_BLOCKS} blocks of the previous one at {previous}; wait")]
    TooSoon {
        /// This plan's height.
        height: u64,
        /// The previous plan's height.
        previous: u64,
    },
    /// Evidence too old or from the future.
    #[error("evidence height {evidence} is not within the last {MAX_EVIDENCE_AGE_BLOCKS} blocks of {height}; re-read health and re-plan")]
    Evidence {
        /// The plan's evidence height.
        evidence: u64,
        /// The applying height.
        height: u64,
    },
}

/// Something the ledger reports after a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsEvent {
    /// A new generation became current.
    Planned {
        /// The generation number.
        generation: u64,
        /// Whether an override was used.
        overridden: bool,
    },
    /// Every endpoint of the current set is unhealthy; the set is kept (fail static).
    AllUnhealthy {
        /// The kept generation.
        generation: u64,
    },
}

/// A managed name's DNS state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedName {
    /// The active generation.
    pub current: Generation,
    /// Past generations, oldest first.
    pub history: VecDeque<Generation>,
    /// Number of the last generation whose endpoints were all healthy when it was planned.
    pub last_known_good: u64,
}

fn validate_endpoints(endpoints: &[Endpoint]) -> Result<(), PlanError> {
    if endpoints.is_empty() {
        return Err(PlanError::Empty);
    }
    let bad = |why: String| Err(PlanError::InvalidEndpoints(why));
    if endpoints.len() > MAX_ENDPOINTS {
        return bad(format!(
            "{} endpoints, at most {MAX_ENDPOINTS}",
            endpoints.len()
        ));
    }
    for (i, e) in endpoints.iter().enumerate() {
        if e.address.len() != 4 && e.address.len() != 16 {
            return bad(format!(
                "endpoint {i}: an address is 4 (IPv4) or 16 (IPv6) bytes"
            ));
        }
        if e.weight == 0 || e.weight > MAX_WEIGHT {
            return bad(format!("endpoint {i}: weight must be 1..={MAX_WEIGHT}"));
        }
        if i > 0 && endpoints[i - 1].address >= e.address {
            return bad("endpoints must be sorted by address, each address once".into());
        }
    }
    Ok(())
}

fn capacity(endpoints: &[Endpoint]) -> u64 {
    endpoints.iter().map(|e| u64::from(e.weight)).sum()
}

/// Capacity of `old` that `new` no longer has (dropped endpoints and lowered weights).
fn removed_capacity(old: &[Endpoint], new: &[Endpoint]) -> u64 {
    old.iter()
        .map(|o| {
            let kept = new
                .iter()
                .find(|n| n.address == o.address)
                .map_or(0, |n| n.weight);
            u64::from(o.weight.saturating_sub(kept))
        })
        .sum()
}

/// True if `new` drops exactly one endpoint of `old` and keeps every other weight: a single
/// failure may always be removed, otherwise a name of three or fewer endpoints could never
/// shrink (one of three is 33%, above the 30% velocity limit).
fn drops_one_endpoint_only(old: &[Endpoint], new: &[Endpoint]) -> bool {
    let mut dropped = 0;
    for o in old {
        match new.iter().find(|n| n.address == o.address) {
            None => dropped += 1,
            Some(n) if n.weight < o.weight => return false,
            Some(_) => {}
        }
    }
    dropped == 1
}

/// Largest capacity a plan may remove from `endpoints` without an override: the velocity
/// limit, or one whole endpoint.
pub fn removal_allowed(endpoints: &[Endpoint], drop: &[Endpoint]) -> bool {
    let old = capacity(endpoints);
    let removed = capacity(drop);
    drop.len() == 1 || removed * 100 <= VELOCITY_LIMIT_PERCENT * old
}

/// An endpoint address in presentation form (IPv4 dotted quad or IPv6).
pub fn format_address(a: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(a) {
        std::net::Ipv4Addr::from(v4).to_string()
    } else if let Ok(v6) = <[u8; 16]>::try_from(a) {
        std::net::Ipv6Addr::from(v6).to_string()
    } else {
        format!("{a:?}")
    }
}

/// The planner's step, shared by every validator's planner and the simulations: from the
/// current generation and the endpoints healthy at `evidence_height`, the next plan, or
/// `None` when nothing should change. Adds every healthy endpoint, drops unhealthy ones
/// (most capacity first, address order on ties) only within [`removal_allowed`], never
/// proposes an empty set, and waits out [`MIN_PLAN_INTERVAL_BLOCKS`] before `height`.
/// With no healthy endpoint at all it returns `None`: fail static.
pub fn next_plan(
    name: &ManagedName,
    healthy: &[Endpoint],
    evidence_height: u64,
    height: u64,
) -> Option<Plan> {
    if healthy.is_empty() || height < name.current.height.saturating_add(MIN_PLAN_INTERVAL_BLOCKS) {
        return None;
    }
    let current = &name.current.endpoints;
    let is_healthy = |a: &[u8]| healthy.iter().any(|h| h.address == a);
    let mut next: Vec<Endpoint> = current
        .iter()
        .filter(|e| is_healthy(&e.address))
        .cloned()
        .collect();
    let mut added = Vec::new();
    for h in healthy {
        if !current.iter().any(|e| e.address == h.address) {
            next.push(h.clone());
            added.push(h.address.clone());
        }
    }
    let mut unhealthy: Vec<&Endpoint> =
        current.iter().filter(|e| !is_healthy(&e.address)).collect();
    unhealthy.sort_by(|a, b| b.weight.cmp(&a.weight).then(a.address.cmp(&b.address)));
    let mut dropped: Vec<Endpoint> = Vec::new();
    for e in unhealthy {
        let mut trial = dropped.clone();
        trial.push(e.clone());
        if removal_allowed(current, &trial) {
            dropped = trial;
        } else {
            next.push(e.clone());
        }
    }
    next.sort();
    next.dedup_by(|a, b| a.address == b.address);
    if next.is_empty() || &next == current {
        return None;
    }
    let mut reason = String::new();
    for d in &dropped {
        reason.push_str(&format!("-{} ", format_address(&d.address)));
    }
    for a in &added {
        reason.push_str(&format!("+{} ", format_address(a)));
    }
    reason.push_str(&format!("(health at height {evidence_height})"));
    reason.truncate(MAX_REASON_SIZE_BYTES);
    Some(Plan {
        generation: name.current.number + 1,
        base_generation: name.current.number,
        endpoints: next,
        evidence_height,
        reason,
    })
}

impl ManagedName {
    /// A new managed name whose generation 1 is `endpoints` (validated like a plan).
    pub fn create(
        endpoints: Vec<Endpoint>,
        height: u64,
        planner: AccountId,
    ) -> Result<Self, PlanError> {
        validate_endpoints(&endpoints)?;
        Ok(Self {
            current: Generation {
                number: 1,
                endpoints,
                height,
                planner,
                evidence_height: height,
                overridden: false,
                reason: "created".into(),
            },
            history: VecDeque::new(),
            last_known_good: 1,
        })
    }

    /// Applies `plan` at `height`, or refuses it leaving `self` unchanged. `healthy` tells
    /// whether an endpoint was healthy at the evidence height; `overridden` is set only for a
    /// committee-quorum override, which may exceed velocity and pacing but never emptiness.
    pub fn apply_plan(
        &mut self,
        plan: &Plan,
        height: u64,
        planner: AccountId,
        healthy: impl Fn(&Endpoint) -> bool,
        overridden: bool,
    ) -> Result<DnsEvent, PlanError> {
        let current = self.current.number;
        if plan.base_generation != current {
            return Err(PlanError::StaleBase {
                base: plan.base_generation,
                current,
            });
        }
        let want = current.checked_add(1).ok_or(PlanError::BadGeneration {
            got: plan.generation,
            want: u64::MAX,
        })?;
        if plan.generation != want {
            return Err(PlanError::BadGeneration {
                got: plan.generation,
                want,
            });
        }
        validate_endpoints(&plan.endpoints)?;
        if plan.evidence_height > height || height - plan.evidence_height > MAX_EVIDENCE_AGE_BLOCKS
        {
            return Err(PlanError::Evidence {
                evidence: plan.evidence_height,
                height,
            });
        }
        if !overridden {
            if height < self.current.height.saturating_add(MIN_PLAN_INTERVAL_BLOCKS) {
                return Err(PlanError::TooSoon {
                    height,
                    previous: self.current.height,
                });
            }
            let old = capacity(&self.current.endpoints);
            let removed = removed_capacity(&self.current.endpoints, &plan.endpoints);
            if removed * 100 > VELOCITY_LIMIT_PERCENT * old
                && !drops_one_endpoint_only(&self.current.endpoints, &plan.endpoints)
            {
                return Err(PlanError::Velocity {
                    removed_percent: (removed * 100).div_ceil(old.max(1)),
                });
            }
        }
        if plan.reason.len() > MAX_REASON_SIZE_BYTES {
            return Err(PlanError::InvalidEndpoints(format!(
                "the reason is {} bytes, at most {MAX_REASON_SIZE_BYTES}",
                plan.reason.len()
            )));
        }
        let next = Generation {
            number: want,
            endpoints: plan.endpoints.clone(),
            height,
            planner,
            evidence_height: plan.evidence_height,
            overridden,
            reason: plan.reason.clone(),
        };
        let all_healthy = next.endpoints.iter().all(&healthy);
        let previous = std::mem::replace(&mut self.current, next);
        self.history.push_back(previous);
        if all_healthy {
            self.last_known_good = want;
        }
        self.prune();
        debug_assert!(!self.current.endpoints.is_empty());
        Ok(DnsEvent::Planned {
            generation: want,
            overridden,
        })
    }

    /// Reports a fail-static alert if every current endpoint is unhealthy (the set is kept).
    pub fn check_health(&self, healthy: impl Fn(&Endpoint) -> bool) -> Option<DnsEvent> {
        (!self.current.endpoints.iter().any(healthy)).then_some(DnsEvent::AllUnhealthy {
            generation: self.current.number,
        })
    }

    /// The generation numbered `n`, if still kept.
    pub fn generation(&self, n: u64) -> Option<&Generation> {
        if self.current.number == n {
            return Some(&self.current);
        }
        self.history.iter().find(|g| g.number == n)
    }

    /// Drops the oldest past generations beyond the limit, never the last-known-good one.
    fn prune(&mut self) {
        while self.history.len() > MAX_HISTORY_GENERATIONS {
            let lkg = self.last_known_good;
            match self.history.iter().position(|g| g.number != lkg) {
                Some(i) => {
                    self.history.remove(i);
                }
                None => break,
            }
        }
    }
}

// Canonical encoding of managed names and plans.

fn write_endpoints(w: &mut Writer, endpoints: &[Endpoint]) {
    w.len(endpoints.len());
    for e in endpoints {
        w.bytes(&e.address);
        w.fixed(&e.weight.to_le_bytes());
    }
}

fn read_endpoints(r: &mut Reader<'_>) -> Result<Vec<Endpoint>, TxError> {
    let n = r.len(MAX_ENDPOINTS)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Endpoint {
            address: r.bytes(16)?.to_vec(),
            weight: u32::from_le_bytes(r.fixed::<4>()?),
        });
    }
    Ok(out)
}

/// Encodes a plan.
pub fn write_plan(w: &mut Writer, p: &Plan) {
    w.u64(p.generation);
    w.u64(p.base_generation);
    write_endpoints(w, &p.endpoints);
    w.u64(p.evidence_height);
    w.str(&p.reason);
}

/// Decodes a plan (bounded; not validated).
pub fn read_plan(r: &mut Reader<'_>) -> Result<Plan, TxError> {
    Ok(Plan {
        generation: r.u64()?,
        base_generation: r.u64()?,
        endpoints: read_endpoints(r)?,
        evidence_height: r.u64()?,
        reason: r.str(MAX_REASON_SIZE_BYTES)?,
    })
}

/// Validates a plan's fields that need no state (endpoints, reason).
pub fn validate_plan_fields(p: &Plan) -> Result<(), PlanError> {
    validate_endpoints(&p.endpoints)?;
    if p.reason.len() > MAX_REASON_SIZE_BYTES {
        return Err(PlanError::InvalidEndpoints(format!(
            "the reason is {} bytes, at most {MAX_REASON_SIZE_BYTES}",
            p.reason.len()
        )));
    }
    Ok(())
}

fn write_generation(w: &mut Writer, g: &Generation) {
    w.u64(g.number);
    write_endpoints(w, &g.endpoints);
    w.u64(g.height);
    w.fixed(&g.planner);
    w.u64(g.evidence_height);
    w.bool(g.overridden);
    w.str(&g.reason);
}

fn read_generation(r: &mut Reader<'_>) -> Result<Generation, TxError> {
    Ok(Generation {
        number: r.u64()?,
        endpoints: read_endpoints(r)?,
        height: r.u64()?,
        planner: r.fixed::<32>()?,
        evidence_height: r.u64()?,
        overridden: r.bool()?,
        reason: r.str(MAX_REASON_SIZE_BYTES)?,
    })
}

/// Encodes a managed name with its history.
pub fn write_managed(w: &mut Writer, m: &ManagedName) {
    write_generation(w, &m.current);
    w.len(m.history.len());
    for g in &m.history {
        write_generation(w, g);
    }
    w.u64(m.last_known_good);
}

/// Decodes a managed name (bounded).
pub fn read_managed(r: &mut Reader<'_>) -> Result<ManagedName, TxError> {
    let current = read_generation(r)?;
    let n = r.len(MAX_HISTORY_GENERATIONS + 1)?;
    let mut history = VecDeque::with_capacity(n);
    for _ in 0..n {
        history.push_back(read_generation(r)?);
    }
    Ok(ManagedName {
        current,
        history,
        last_known_good: r.u64()?,
    })
}

#[cfg(test)]
mod tests;
