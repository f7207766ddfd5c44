//! Who may move fragments, and how a fragment request proves it (protocol v2).
//!
//! Every request to a storage node's fragment listener carries a *ticket*: an ed25519
//! signature by the requesting node's key over [`signing_message`]:
//!
//! ```text
//! AUTH_DOMAIN ‖ method ‖ 0x00 ‖ target node id (32) ‖ root (32)
//!             ‖ content length (u64 LE) ‖ time_ms (u64 LE) ‖ nonce (16)
//! ```
//!
//! sent as the headers `x-cairn-node` (requester id, hex), `x-cairn-target` (receiving node id,
//! hex), `x-cairn-time-ms`, `x-cairn-nonce` (32 hex) and `x-cairn-signature` (128 hex); the
//! content length is the request's own `Content-Length` (0 for a GET). So a ticket is bound to
//! the method, the node it was issued for, the fragment, and the body: the root *is* the body's
//! content hash (its Merkle root, [`crate::merkle::root_of`]), which the store checks
//! before it writes a byte, and the length is signed too.
//!
//! A server accepts a ticket only if, in this order: the target is itself
//! ([`AuthError::WrongTarget`]); the time is at most [`MAX_REQUEST_AGE_MS`] old and at most
//! [`MAX_CLOCK_AHEAD_MS`] ahead of its clock; the requester may do this ([`may_put`] /
//! [`may_get`], from finalized ledger state); the signature verifies (`verify_strict`); and the
//! (requester, nonce) pair was not seen before within the freshness window ([`ReplayCache`]).
//!
//! The placement rule for PUTs: the ledger learns a segment's placement only when the gateway
//! commits the manifest, *after* the fragments are stored, so a storage node cannot look the
//! placement up. The gateway's ticket naming this node as the target is the placement
//! decision, signed by the only party allowed to make it.

use cairn_ledger::{Hash, NodeId, State};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use std::collections::{BTreeSet, HashSet};

/// Domain separation of fragment request signatures (v2: bound to target and body length).
pub const AUTH_DOMAIN: &[u8] = b"cairn/fragment/v2\0";
/// Oldest accepted request, by this node's clock: the freshness window.
pub const MAX_REQUEST_AGE_MS: u64 = 30_000;
/// Furthest a request's time may be ahead of this node's clock (clock skew between nodes).
pub const MAX_CLOCK_AHEAD_MS: u64 = 2_000;
/// Most (requester, nonce) pairs remembered for replay protection. An entry lives until its
/// request leaves the freshness window (at most `MAX_REQUEST_AGE_MS + MAX_CLOCK_AHEAD_MS`),
/// so this allows ~2,000 fragment requests per second per storage node; about 100 bytes
/// each, so at most ~6.5 MB. When it is full of live entries, new requests are refused with
/// 503 + Retry-After (failing closed: a forgotten nonce could be replayed).
pub const MAX_REPLAY_ENTRIES: usize = 65_536;

/// Request headers of the protocol.
pub mod header {
    /// Requesting node id (hex).
    pub const NODE: &str = "x-cairn-node";
    /// Receiving node id (hex).
    pub const TARGET: &str = "x-cairn-target";
    /// Request time, ms since the Unix epoch.
    pub const TIME_MS: &str = "x-cairn-time-ms";
    /// 16 random bytes (hex), unique per request.
    pub const NONCE: &str = "x-cairn-nonce";
    /// ed25519 signature over `signing_message` (hex).
    pub const SIGNATURE: &str = "x-cairn-signature";
}

/// What a requester is to a storage node. Today only gateways exist; repair and audit workers
/// will be added here (and given rights in [`may_put`] / [`may_get`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequesterKind {
    /// A node with the gateway role: places fragments (PUT) and reads them back (GET).
    Gateway,
}

/// THE ONE PLACE where ledger roles become fragment rights.
///
/// Today: the `gateway` role on the requester's node record in finalized state. Since node
/// admission (issue 10 item 1) the record's `roles` are the roles *granted* by the committee
/// (a pending registration has none), so a self-registered node gets no fragment rights. The
/// ledger owner may tighten this further here; repair and audit workers will be added here
/// too. Nothing else in the fragment code reads roles.
pub fn requester_kind(state: &State, requester: &NodeId) -> Option<RequesterKind> {
    let node = state.node(requester)?;
    node.roles.gateway.then_some(RequesterKind::Gateway)
}

/// May `requester` store fragments on other nodes?
pub fn may_put(state: &State, requester: &NodeId) -> bool {
    matches!(
        requester_kind(state, requester),
        Some(RequesterKind::Gateway)
    )
}

/// May `requester` read fragments (data fragments are plaintext)?
pub fn may_get(state: &State, requester: &NodeId) -> bool {
    matches!(
        requester_kind(state, requester),
        Some(RequesterKind::Gateway)
    )
}

/// The signed fields of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// HTTP method (`PUT` or `GET`).
    pub method: String,
    /// The node that must serve it.
    pub target: NodeId,
    /// Fragment root (the body's content hash for a PUT).
    pub root: Hash,
    /// Body length in bytes (0 for a GET).
    pub content_length: u64,
    /// Request time, ms since the Unix epoch.
    pub time_ms: u64,
    /// Unique per request.
    pub nonce: [u8; 16],
}

/// The signed message of one request.
pub fn signing_message(t: &Ticket) -> Vec<u8> {
    let mut m = AUTH_DOMAIN.to_vec();
    m.extend_from_slice(t.method.as_bytes());
    m.push(0);
    m.extend_from_slice(&t.target);
    m.extend_from_slice(&t.root);
    m.extend_from_slice(&t.content_length.to_le_bytes());
    m.extend_from_slice(&t.time_ms.to_le_bytes());
    m.extend_from_slice(&t.nonce);
    m
}

/// Signs a ticket; returns the header (name, value) pairs to send with it.
pub fn sign(key: &SigningKey, t: &Ticket) -> Vec<(&'static str, String)> {
    use crate::protocol::hex;
    let sig = key.sign(&signing_message(t));
    vec![
        (header::NODE, hex(&key.verifying_key().to_bytes())),
        (header::TARGET, hex(&t.target)),
        (header::TIME_MS, t.time_ms.to_string()),
        (header::NONCE, hex(&t.nonce)),
        (header::SIGNATURE, hex(&sig.to_bytes())),
    ]
}

/// A process-unique request nonce (a keyed hash of the process, the clock and a counter).
pub fn fresh_nonce() -> [u8; 16] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = blake3::Hasher::new();
    h.update(b"cairn fragment nonce");
    h.update(&std::process::id().to_le_bytes());
    h.update(&now_ns.to_le_bytes());
    h.update(&n.to_le_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// Why a request's ticket was refused. Each maps to an HTTP status and an S3-style code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A required header is absent (an unsigned request).
    #[error("missing {0} header: fragment requests must be signed by a gateway node")]
    MissingHeader(&'static str),
    /// A header does not parse.
    #[error("malformed {0} header")]
    MalformedHeader(&'static str),
    /// The ticket names another node.
    #[error("ticket is for node {target}, not this node; check the fragment address book")]
    WrongTarget {
        /// The named target (hex prefix).
        target: String,
    },
    /// Older than the freshness window.
    #[error("request is {age_ms} ms old, more than {MAX_REQUEST_AGE_MS} ms; sign each request just before sending it, and check NTP")]
    Stale {
        /// Age by this node's clock.
        age_ms: u64,
    },
    /// Dated in the future beyond the allowed skew.
    #[error("request time is {ahead_ms} ms ahead of this node's clock (at most {MAX_CLOCK_AHEAD_MS} ms); check NTP")]
    FromFuture {
        /// How far ahead.
        ahead_ms: u64,
    },
    /// The requester has no node record.
    #[error("requester is not a registered node")]
    UnknownRequester,
    /// The requester's roles do not allow this method.
    #[error(
        "requester's roles do not allow fragment {method}; only gateway nodes may move fragments"
    )]
    RoleNotAllowed {
        /// The refused method.
        method: String,
    },
    /// The signature does not verify over the ticket.
    #[error("signature does not match method, target, root, content length, time and nonce")]
    BadSignature,
    /// This (requester, nonce) was already accepted within the freshness window.
    #[error("replayed request: this nonce was already used; send a fresh ticket")]
    Replayed,
    /// The replay cache is full of live entries.
    #[error("too many recent fragment requests ({MAX_REPLAY_ENTRIES} in the freshness window); retry shortly")]
    ReplayCacheFull,
}

impl AuthError {
    /// HTTP status.
    pub fn status(&self) -> hyper::StatusCode {
        use hyper::StatusCode as S;
        match self {
            Self::MalformedHeader(_) => S::BAD_REQUEST,
            Self::WrongTarget { .. } => S::MISDIRECTED_REQUEST,
            Self::ReplayCacheFull => S::SERVICE_UNAVAILABLE,
            _ => S::FORBIDDEN,
        }
    }

    /// Machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) | Self::UnknownRequester | Self::RoleNotAllowed { .. } => {
                "AccessDenied"
            }
            Self::MalformedHeader(_) => "InvalidArgument",
            Self::WrongTarget { .. } => "WrongTarget",
            Self::Stale { .. } | Self::FromFuture { .. } => "RequestTimeTooSkewed",
            Self::BadSignature => "SignatureDoesNotMatch",
            Self::Replayed => "RequestReplayed",
            Self::ReplayCacheFull => "SlowDown",
        }
    }
}

/// A parsed but not yet verified request ticket.
#[derive(Clone, Debug)]
pub struct Presented {
    /// Who claims to send it.
    pub requester: NodeId,
    /// The signed fields.
    pub ticket: Ticket,
    /// The signature.
    pub signature: [u8; 64],
}

/// Reads the protocol headers of a request for `method` on `root` with a body of
/// `content_length` bytes.
pub fn parse(
    headers: &hyper::HeaderMap,
    method: &str,
    root: Hash,
    content_length: u64,
) -> Result<Presented, AuthError> {
    use crate::protocol::unhex;
    let get = |name: &'static str| -> Result<&str, AuthError> {
        let v = headers.get(name).ok_or(AuthError::MissingHeader(name))?;
        v.to_str().map_err(|_| AuthError::MalformedHeader(name))
    };
    let requester =
        unhex::<32>(get(header::NODE)?).ok_or(AuthError::MalformedHeader(header::NODE))?;
    let target =
        unhex::<32>(get(header::TARGET)?).ok_or(AuthError::MalformedHeader(header::TARGET))?;
    let time_ms = get(header::TIME_MS)?
        .parse()
        .map_err(|_| AuthError::MalformedHeader(header::TIME_MS))?;
    let nonce =
        unhex::<16>(get(header::NONCE)?).ok_or(AuthError::MalformedHeader(header::NONCE))?;
    let signature = unhex::<64>(get(header::SIGNATURE)?)
        .ok_or(AuthError::MalformedHeader(header::SIGNATURE))?;
    Ok(Presented {
        requester,
        ticket: Ticket {
            method: method.to_string(),
            target,
            root,
            content_length,
            time_ms,
            nonce,
        },
        signature,
    })
}

/// The role check of one request, against finalized state: who the requester is and whether
/// `method` is allowed to it (via [`may_put`] / [`may_get`]).
pub fn authorize(
    state: &State,
    method: &str,
    requester: &NodeId,
) -> Result<RequesterKind, AuthError> {
    if state.node(requester).is_none() {
        return Err(AuthError::UnknownRequester);
    }
    let allowed = match method {
        "PUT" => may_put(state, requester),
        _ => may_get(state, requester),
    };
    let refused = || AuthError::RoleNotAllowed {
        method: method.to_string(),
    };
    if !allowed {
        return Err(refused());
    }
    requester_kind(state, requester).ok_or_else(refused)
}

/// Checks a presented ticket (see the module doc for the order); on success the nonce is
/// recorded in `replay` and the requester's kind is returned. `authorize` is [`authorize`]
/// run on the node's current finalized state.
pub fn verify(
    p: &Presented,
    me: &NodeId,
    now_ms: u64,
    authorize: impl FnOnce(&NodeId) -> Result<RequesterKind, AuthError>,
    replay: &std::sync::Mutex<ReplayCache>,
) -> Result<RequesterKind, AuthError> {
    let t = &p.ticket;
    if t.target != *me {
        return Err(AuthError::WrongTarget {
            target: crate::protocol::hex(&t.target[..4]),
        });
    }
    if t.time_ms.saturating_add(MAX_REQUEST_AGE_MS) < now_ms {
        return Err(AuthError::Stale {
            age_ms: now_ms - t.time_ms,
        });
    }
    if t.time_ms > now_ms.saturating_add(MAX_CLOCK_AHEAD_MS) {
        return Err(AuthError::FromFuture {
            ahead_ms: t.time_ms - now_ms,
        });
    }
    let kind = authorize(&p.requester)?;
    let key = VerifyingKey::from_bytes(&p.requester).map_err(|_| AuthError::BadSignature)?;
    key.verify_strict(&signing_message(t), &Signature::from_bytes(&p.signature))
        .map_err(|_| AuthError::BadSignature)?;
    replay.lock().unwrap_or_else(|e| e.into_inner()).insert(
        p.requester,
        t.nonce,
        t.time_ms,
        now_ms,
    )?;
    Ok(kind)
}

/// Remembers accepted (requester, nonce) pairs until their requests leave the freshness
/// window. Bounded by `capacity` entries (see [`MAX_REPLAY_ENTRIES`]).
pub struct ReplayCache {
    capacity: usize,
    seen: HashSet<(NodeId, [u8; 16])>,
    by_expiry: BTreeSet<(u64, NodeId, [u8; 16])>,
}

impl ReplayCache {
    /// An empty cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: HashSet::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no request is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records a request of `time_ms`, or refuses a replay (or a full cache).
    pub fn insert(
        &mut self,
        requester: NodeId,
        nonce: [u8; 16],
        time_ms: u64,
        now_ms: u64,
    ) -> Result<(), AuthError> {
        // Forget entries whose requests can no longer pass the freshness check.
        while let Some(first) = self.by_expiry.first().copied() {
            if first.0 >= now_ms {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&(first.1, first.2));
        }
        if self.seen.contains(&(requester, nonce)) {
            return Err(AuthError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(AuthError::ReplayCacheFull);
        }
        self.seen.insert((requester, nonce));
        self.by_expiry
            .insert((time_ms.saturating_add(MAX_REQUEST_AGE_MS), requester, nonce));
        Ok(())
    }
}

/// Test genesis: a gateway (key `[1; 32]`), a storage-only node (`[2; 32]`) and a cache node
/// (`[3; 32]`), shared by this module's and the fragment server's tests.
#[cfg(test)]
pub(crate) fn test_state() -> State {
    use cairn_ledger::{Genesis, NodeRecordInit, Roles};
    let id = |k: u8| {
        ed25519_dalek::SigningKey::from_bytes(&[k; 32])
            .verifying_key()
            .to_bytes()
    };
    let node = |k: u8, storage: bool, gateway: bool, cache: bool| {
        (
            id(k),
            NodeRecordInit {
                operator: id(k),
                zone: "z1".into(),
                roles: Roles {
                    validator: k == 1,
                    storage,
                    gateway,
                    cache,
                },
                addresses: vec!["127.0.0.1:1".into()],
                capacity_bytes: 1 << 30,
                stake: 0,
            },
        )
    };
    let nodes = vec![
        node(1, true, true, false),
        node(2, true, false, false),
        node(3, false, false, true),
    ];
    let accounts = nodes
        .iter()
        .map(|(i, _)| (*i, format!("n{}", i[0])))
        .collect();
    State::genesis(&Genesis {
        audit: Default::default(),
        chain_id: "t".into(),
        accounts,
        nodes,
    })
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const NOW: u64 = 1_800_000_000_000;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn id(k: &SigningKey) -> NodeId {
        k.verifying_key().to_bytes()
    }

    fn state() -> State {
        test_state()
    }

    fn ticket(method: &str, target: NodeId) -> Ticket {
        Ticket {
            method: method.into(),
            target,
            root: [7; 32],
            content_length: 1000,
            time_ms: NOW,
            nonce: [9; 16],
        }
    }

    fn presented(k: &SigningKey, t: &Ticket) -> Presented {
        let headers: hyper::HeaderMap = sign(k, t)
            .into_iter()
            .map(|(n, v)| {
                (
                    hyper::header::HeaderName::from_static(n),
                    v.parse().unwrap(),
                )
            })
            .collect();
        parse(&headers, &t.method, t.root, t.content_length).unwrap()
    }

    /// Runs the server-side check as the fragment listener does.
    fn check(
        s: &State,
        me: &NodeId,
        p: &Presented,
        now: u64,
        cache: &Mutex<ReplayCache>,
    ) -> Result<RequesterKind, AuthError> {
        verify(p, me, now, |r| authorize(s, &p.ticket.method, r), cache)
    }

    fn cache() -> Mutex<ReplayCache> {
        Mutex::new(ReplayCache::new(MAX_REPLAY_ENTRIES))
    }

    #[test]
    fn gateway_ticket_is_accepted_for_put_and_get() {
        let (s, gw, me) = (state(), key(1), id(&key(2)));
        for m in ["PUT", "GET"] {
            let p = presented(&gw, &ticket(m, me));
            assert_eq!(
                check(&s, &me, &p, NOW, &cache()),
                Ok(RequesterKind::Gateway)
            );
        }
    }

    #[test]
    fn signature_is_bound_to_method_target_root_length_time_and_nonce() {
        let (s, gw, me) = (state(), key(1), id(&key(2)));
        let good = presented(&gw, &ticket("PUT", me));
        let tamper: [&dyn Fn(&mut Ticket); 6] = [
            &|t| t.method = "GET".into(),
            &|t| t.target = id(&key(3)),
            &|t| t.root[0] ^= 1,
            &|t| t.content_length += 1,
            &|t| t.time_ms -= 1,
            &|t| t.nonce[0] ^= 1,
        ];
        for (i, f) in tamper.iter().enumerate() {
            let mut p = good.clone();
            f(&mut p.ticket);
            // A changed target is refused before the signature is checked; verify both.
            let r = check(&s, &p.ticket.target.clone(), &p, NOW, &cache());
            assert_eq!(
                r,
                Err(AuthError::BadSignature),
                "tampering #{i} was accepted"
            );
        }
        // A ticket sent to another node than the one it names is refused as misdirected.
        let other = id(&key(3));
        assert!(matches!(
            check(&s, &other, &good, NOW, &cache()),
            Err(AuthError::WrongTarget { .. })
        ));
        assert_eq!(
            check(&s, &me, &good, NOW, &cache()),
            Ok(RequesterKind::Gateway)
        );
    }

    #[test]
    fn stale_and_future_requests_are_refused() {
        let (s, gw, me) = (state(), key(1), id(&key(2)));
        let p = presented(&gw, &ticket("GET", me));
        let r = check(&s, &me, &p, NOW + MAX_REQUEST_AGE_MS + 1, &cache());
        assert_eq!(
            r,
            Err(AuthError::Stale {
                age_ms: MAX_REQUEST_AGE_MS + 1
            })
        );
        assert_eq!(r.unwrap_err().status(), hyper::StatusCode::FORBIDDEN);
        // Exactly at the edge of the window is still fresh.
        assert!(check(&s, &me, &p, NOW + MAX_REQUEST_AGE_MS, &cache()).is_ok());
        let r = check(&s, &me, &p, NOW - MAX_CLOCK_AHEAD_MS - 1, &cache());
        assert!(matches!(r, Err(AuthError::FromFuture { .. })));
    }

    #[test]
    fn replay_is_refused_within_the_window() {
        let (s, gw, me) = (state(), key(1), id(&key(2)));
        let c = cache();
        let p = presented(&gw, &ticket("GET", me));
        assert!(check(&s, &me, &p, NOW, &c).is_ok());
        let r = check(&s, &me, &p, NOW + 1_000, &c);
        assert_eq!(r, Err(AuthError::Replayed));
        assert_eq!(r.unwrap_err().code(), "RequestReplayed");
        // Past the window, the same ticket is refused as stale (the cache forgot it).
        let r = check(&s, &me, &p, NOW + MAX_REQUEST_AGE_MS + 1, &c);
        assert!(matches!(r, Err(AuthError::Stale { .. })));
        // A fresh nonce from the same gateway is a new request.
        let mut t = ticket("GET", me);
        t.nonce = [10; 16];
        assert!(check(&s, &me, &presented(&gw, &t), NOW + 1_000, &c).is_ok());
    }

    #[test]
    fn non_gateway_requesters_are_refused() {
        let (s, me) = (state(), id(&key(2)));
        for m in ["PUT", "GET"] {
            // A storage-only node and a cache node are registered but not gateways.
            for k in [key(2), key(3)] {
                let p = presented(&k, &ticket(m, me));
                let r = check(&s, &me, &p, NOW, &cache());
                assert_eq!(
                    r,
                    Err(AuthError::RoleNotAllowed { method: m.into() }),
                    "{m}"
                );
                assert_eq!(r.unwrap_err().code(), "AccessDenied");
            }
            let p = presented(&key(4), &ticket(m, me));
            assert_eq!(
                check(&s, &me, &p, NOW, &cache()),
                Err(AuthError::UnknownRequester)
            );
        }
        assert!(!may_put(&s, &id(&key(2))) && !may_get(&s, &id(&key(3))));
        assert!(may_put(&s, &id(&key(1))) && may_get(&s, &id(&key(1))));
    }

    #[test]
    fn replay_cache_is_bounded_and_forgets_expired_entries() {
        let mut c = ReplayCache::new(3);
        for i in 0..3u8 {
            assert!(c.insert([i; 32], [0; 16], NOW, NOW).is_ok());
        }
        assert_eq!(
            c.insert([9; 32], [0; 16], NOW, NOW),
            Err(AuthError::ReplayCacheFull)
        );
        assert_eq!(
            AuthError::ReplayCacheFull.status(),
            hyper::StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(c.len(), 3);
        // Once the first entries leave the window, room comes back.
        assert!(c
            .insert(
                [9; 32],
                [0; 16],
                NOW + MAX_REQUEST_AGE_MS + 1,
                NOW + MAX_REQUEST_AGE_MS + 1
            )
            .is_ok());
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn missing_and_malformed_headers_are_typed() {
        let h = hyper::HeaderMap::new();
        let e = parse(&h, "GET", [0; 32], 0).unwrap_err();
        assert_eq!(e, AuthError::MissingHeader(header::NODE));
        assert_eq!(
            (e.status(), e.code()),
            (hyper::StatusCode::FORBIDDEN, "AccessDenied")
        );
        let mut h = hyper::HeaderMap::new();
        h.insert(header::NODE, "zz".parse().unwrap());
        assert_eq!(
            parse(&h, "GET", [0; 32], 0).unwrap_err(),
            AuthError::MalformedHeader(header::NODE)
        );
    }
}
