//! A connection gate shared by every Cairn TCP listener (DNS here, S3 and admin in the node):
//! a cap on open connections per listener and per source IP; and [`bind_listener`], the one
//! way every such listener is bound.
//!
//! Why eviction instead of a plain semaphore: on one machine (the devnet, a NAT) attackers and
//! honest clients share a source IP, so a per-IP cap alone would lock both out. A connection
//! that is waiting for a request is cheap to lose (the client sent nothing, or keeps a pooled
//! socket it will reopen), so when a cap is reached the longest-idle connection is closed to
//! make room; only when every connection is busy with a request is the newcomer refused.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};
use tokio::sync::Notify;

/// Pending connections the kernel queues per listener before `accept`.
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds a TCP listener for `what` (named in the error) with `TCP_NODELAY` set, which Linux
/// copies to every accepted connection: without it Nagle's algorithm holds back small
/// responses by 40 ms or more. Must run inside a tokio runtime.
pub fn bind_listener(
    addr: std::net::SocketAddr,
    what: &str,
) -> std::io::Result<tokio::net::TcpListener> {
    let bind = || {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_nodelay(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    bind().map_err(|e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!("cannot bind {what} on {addr}: {e} (is another process using this port?)"),
        )
    })
}

fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

struct ConnState {
    ip: IpAddr,
    /// Requests in progress.
    busy: AtomicUsize,
    /// Responses being sent.
    sending: AtomicUsize,
    /// When the connection last became idle or made send progress (ms since the gate's epoch).
    since_ms: AtomicU64,
    close: Notify,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Arc<ConnState>>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Arc<ConnState>> {
        let state = self.conns.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&state.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&state.ip);
            }
        }
        Some(state)
    }

    /// Closes the longest-idle connection (of `ip` if given); false if every one is busy.
    fn evict_idle(&mut self, ip: Option<IpAddr>) -> bool {
        let victim = self
            .conns
            .iter()
            .filter(|(_, s)| s.busy.load(Ordering::Acquire) == 0 && ip.is_none_or(|ip| s.ip == ip))
            .min_by_key(|(_, s)| s.since_ms.load(Ordering::Acquire))
            .map(|(id, _)| *id);
        match victim.and_then(|id| self.remove(id)) {
            Some(state) => {
                state.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Every connection from this IP is busy with a request.
    #[error("all {0} connections from this address are busy")]
    PerIp(usize),
    /// Every connection on the listener is busy with a request.
    #[error("all {0} connections are busy")]
    Global(usize),
}

/// Caps open connections per listener and per source IP.
pub struct Gate {
    max_connections: usize,
    max_connections_per_ip: usize,
    epoch: Instant,
    inner: Mutex<Inner>,
}

impl Gate {
    /// A gate admitting at most `max_connections`, and `max_connections_per_ip` per IP.
    pub fn new(max_connections: usize, max_connections_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max_connections: max_connections.max(1),
            max_connections_per_ip: max_connections_per_ip.max(1),
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.inner.lock().map(|i| i.conns.len()).unwrap_or(0)
    }

    /// Admits a connection from `ip`, closing the longest-idle connection if a cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| Refused::Global(self.max_connections))?;
        if inner.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_connections_per_ip
            && !inner.evict_idle(Some(ip))
        {
            return Err(Refused::PerIp(self.max_connections_per_ip));
        }
        if inner.conns.len() >= self.max_connections && !inner.evict_idle(None) {
            return Err(Refused::Global(self.max_connections));
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let state = Arc::new(ConnState {
            ip,
            busy: AtomicUsize::new(0),
            sending: AtomicUsize::new(0),
            since_ms: AtomicU64::new(ms_since(self.epoch)),
            close: Notify::new(),
        });
        inner.conns.insert(id, state.clone());
        *inner.per_ip.entry(ip).or_default() += 1;
        Ok(Admitted {
            gate: self.clone(),
            id,
            state,
        })
    }
}

/// An admitted connection; it leaves the gate when dropped.
pub struct Admitted {
    gate: Arc<Gate>,
    id: u64,
    state: Arc<ConnState>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.gate.inner.lock() {
            inner.remove(self.id);
        }
    }
}

impl Admitted {
    /// Marks the connection busy (not evictable) until the guard is dropped.
    pub fn busy(&self) -> Busy {
        self.state.busy.fetch_add(1, Ordering::AcqRel);
        let busy = Busy {
            state: self.state.clone(),
            epoch: self.gate.epoch,
        };
        busy.progress();
        busy
    }

    /// Resolves when the gate evicted this connection to make room for another.
    pub async fn evicted(&self) {
        self.state.close.notified().await
    }

    /// True if a response has been waiting for the client to read for over `ms`.
    pub fn send_stalled(&self, ms: u64) -> bool {
        self.state.sending.load(Ordering::Acquire) > 0
            && ms_since(self.gate.epoch).saturating_sub(self.state.since_ms.load(Ordering::Acquire))
                > ms
    }
}

/// Keeps a connection busy; dropping it makes the connection idle again.
pub struct Busy {
    state: Arc<ConnState>,
    epoch: Instant,
}

impl Busy {
    /// Records progress (a response frame taken by the client).
    pub fn progress(&self) {
        self.state
            .since_ms
            .store(ms_since(self.epoch), Ordering::Release);
    }

    /// Marks that a response is being sent, so [`Admitted::send_stalled`] applies.
    pub fn sending(self) -> Sending {
        self.state.sending.fetch_add(1, Ordering::AcqRel);
        self.progress();
        Sending(self)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.progress();
        self.state.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response being sent (see [`Busy::sending`]).
pub struct Sending(Busy);

impl Sending {
    /// Records send progress.
    pub fn progress(&self) {
        self.0.progress()
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.0.state.sending.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn evicts_the_longest_idle_and_refuses_when_all_are_busy() {
        let gate = Gate::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = gate.admit(a).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = gate.admit(a).unwrap();
        // Per-IP cap: the oldest idle connection of `a` makes room.
        let third = gate.admit(a).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), first.evicted())
            .await
            .expect("the longest-idle connection is evicted");
        assert_eq!(gate.open(), 2);
        let _busy2 = second.busy();
        let _busy3 = third.busy();
        assert!(matches!(gate.admit(a), Err(Refused::PerIp(2))));
        // Another address still gets in, up to the global cap.
        let other = gate.admit(b).unwrap();
        let _busy = other.busy();
        assert!(matches!(gate.admit(b), Err(Refused::Global(3))));
        drop(_busy3);
        assert!(
            gate.admit(b).is_ok(),
            "an idle connection is evicted for a new one"
        );
    }
}
