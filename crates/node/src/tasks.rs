//! Named workers: every long-running task of a node (listeners, heartbeats, the planner, the
//! DNS snapshot updater, watchers of the chain's finalizer and p2p network) runs as a
//! [`Worker`] in one [`TaskSet`], so it has a name, a handle, a state and a place in the
//! shutdown order.
//!
//! Contract:
//! * A worker runs until its [`Stop`] is requested, then returns `Ok(())` promptly. Returning
//!   before that (even `Ok`), returning an error or panicking marks it `failed` with a reason.
//! * A `critical` worker that failed makes the node unhealthy ([`Health::healthy`]): `/status`
//!   says `healthy: false` and the node stops sending heartbeats, so the ledger's health rule
//!   drops it from placement and DNS within one health window.
//! * [`TaskSet::shutdown`] stops workers one at a time in reverse start order (start
//!   dependencies first), within one overall deadline; a worker still running when the deadline
//!   passes is aborted, and so is every worker after it.
//!
//! Adding a service (audits, repair, GC, rollouts): implement [`Worker`] (or wrap an async
//! closure with [`FnWorker`]) and [`TaskSet::start`] it in `run.rs` after what it depends on.

use futures::FutureExt;
use serde::{Deserialize, Serialize};
use std::{
    future::Future,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{sync::watch, task::JoinHandle};

/// Default bound on a whole node shutdown (all workers together).
pub const SHUTDOWN_TIMEOUT_MS: u64 = 10_000;

/// A worker's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Spawned, not yet polled.
    Starting,
    /// Running.
    Running,
    /// Returned after its stop was requested (or was aborted at the shutdown deadline).
    Stopped,
    /// Returned early, returned an error or panicked; `reason` says which.
    Failed,
}

/// One worker as `GET /workers` reports it (also read by `cairn status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Unique name within the node.
    pub name: String,
    /// Current state.
    pub state: WorkerState,
    /// Whether its failure makes the node unhealthy.
    pub critical: bool,
    /// Why it failed or was aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /workers` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkersReport {
    /// False once any critical worker has failed.
    pub healthy: bool,
    /// Every worker, in start order.
    pub workers: Vec<WorkerInfo>,
}

/// Why a worker ended abnormally.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    /// The service hit an error it cannot recover from.
    #[error("{0}")]
    Fatal(String),
    /// It returned although no stop was requested (serving loops never end on their own).
    #[error("returned before it was asked to stop")]
    ExitedEarly,
    /// It panicked.
    #[error("panicked: {0}")]
    Panicked(String),
}

/// A worker's view of the shutdown signal.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Resolves once a stop is requested (or the task set is gone).
    pub async fn requested(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether a stop has been requested.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}

/// A long-running service of a node.
pub trait Worker: Send + 'static {
    /// Name shown by `GET /workers` (unique within the node).
    fn name(&self) -> String;
    /// Whether its failure makes the node unhealthy.
    fn critical(&self) -> bool;
    /// Runs until `stop` is requested, then returns `Ok(())` promptly.
    fn run(self, stop: Stop) -> impl Future<Output = Result<(), WorkerError>> + Send;
}

/// A worker made from a name, a criticality and an async closure.
pub struct FnWorker<F> {
    name: String,
    critical: bool,
    body: F,
}

impl<F, Fut> FnWorker<F>
where
    F: FnOnce(Stop) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), WorkerError>> + Send + 'static,
{
    /// A worker running `body`.
    pub fn new(name: impl Into<String>, critical: bool, body: F) -> Self {
        Self {
            name: name.into(),
            critical,
            body,
        }
    }
}

impl<F, Fut> Worker for FnWorker<F>
where
    F: FnOnce(Stop) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), WorkerError>> + Send + 'static,
{
    fn name(&self) -> String {
        self.name.clone()
    }

    fn critical(&self) -> bool {
        self.critical
    }

    fn run(self, stop: Stop) -> impl Future<Output = Result<(), WorkerError>> + Send {
        (self.body)(stop)
    }
}

/// A worker serving `serve` (a loop that never returns on its own) until stopped.
pub fn serving<Fut>(name: &str, critical: bool, serve: Fut) -> impl Worker
where
    Fut: Future<Output = ()> + Send + 'static,
{
    FnWorker::new(name, critical, move |mut stop: Stop| async move {
        tokio::select! {
            () = serve => Err(WorkerError::ExitedEarly),
            () = stop.requested() => Ok(()),
        }
    })
}

/// The states of a node's workers, shared with the admin API and the heartbeat worker.
#[derive(Clone, Default)]
pub struct Health {
    workers: Arc<Mutex<Vec<WorkerInfo>>>,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<WorkerInfo>> {
        // A panic while holding this lock cannot leave a half-written entry: recover it.
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, name: String, critical: bool) -> usize {
        let mut w = self.lock();
        w.push(WorkerInfo {
            name,
            state: WorkerState::Starting,
            critical,
            reason: None,
        });
        w.len() - 1
    }

    fn set(&self, index: usize, state: WorkerState, reason: Option<String>) {
        if let Some(w) = self.lock().get_mut(index) {
            if state == WorkerState::Failed {
                let critical = if w.critical { "critical " } else { "" };
                tracing::error!(worker = %w.name, reason = ?reason, "{critical}worker failed");
            }
            w.state = state;
            w.reason = reason;
        }
    }

    /// False once any critical worker has failed.
    pub fn healthy(&self) -> bool {
        !self
            .lock()
            .iter()
            .any(|w| w.critical && w.state == WorkerState::Failed)
    }

    /// A snapshot of every worker, in start order.
    pub fn report(&self) -> WorkersReport {
        let workers = self.lock().clone();
        let healthy = !workers
            .iter()
            .any(|w| w.critical && w.state == WorkerState::Failed);
        WorkersReport { healthy, workers }
    }
}

struct Entry {
    index: usize,
    name: String,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// What [`TaskSet::shutdown`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Worker names in the order they were asked to stop.
    pub order: Vec<String>,
    /// Workers aborted because the deadline passed.
    pub aborted: Vec<String>,
}

/// A node's running workers (must be used inside a tokio runtime).
#[derive(Default)]
pub struct TaskSet {
    health: Health,
    entries: Vec<Entry>,
}

impl TaskSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared health view.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Spawns `worker`; it is stopped after every worker started later.
    pub fn start<W: Worker>(&mut self, worker: W) {
        let name = worker.name();
        let index = self.health.add(name.clone(), worker.critical());
        let (stop, stop_rx) = watch::channel(false);
        let health = self.health.clone();
        let handle = tokio::spawn(async move {
            let watcher = Stop(stop_rx);
            let asked = watcher.clone();
            health.set(index, WorkerState::Running, None);
            let outcome = AssertUnwindSafe(worker.run(watcher)).catch_unwind().await;
            let (state, reason) = match outcome {
                Ok(Ok(())) if asked.is_requested() => (WorkerState::Stopped, None),
                Ok(Ok(())) => (
                    WorkerState::Failed,
                    Some(WorkerError::ExitedEarly.to_string()),
                ),
                Ok(Err(e)) => (WorkerState::Failed, Some(e.to_string())),
                Err(panic) => (
                    WorkerState::Failed,
                    Some(WorkerError::Panicked(panic_message(&*panic)).to_string()),
                ),
            };
            health.set(index, state, reason);
        });
        self.entries.push(Entry {
            index,
            name,
            stop,
            handle,
        });
    }

    /// Stops every worker in reverse start order, each given what is left of `timeout`; past
    /// the deadline the rest are aborted. Returns once every task has ended.
    pub async fn shutdown(mut self, timeout: Duration) -> ShutdownReport {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut report = ShutdownReport::default();
        while let Some(mut entry) = self.entries.pop() {
            report.order.push(entry.name.clone());
            let _ = entry.stop.send(true);
            if tokio::time::timeout_at(deadline, &mut entry.handle)
                .await
                .is_err()
            {
                entry.handle.abort();
                let _ = entry.handle.await;
                self.health.set(
                    entry.index,
                    WorkerState::Stopped,
                    Some(format!(
                        "aborted: did not stop within the {} ms shutdown bound",
                        timeout.as_millis()
                    )),
                );
                report.aborted.push(entry.name);
            }
        }
        report
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    async fn settle(health: &Health, name: &str, state: WorkerState) -> WorkerInfo {
        for _ in 0..200 {
            if let Some(w) = health
                .report()
                .workers
                .into_iter()
                .find(|w| w.name == name && w.state == state)
            {
                return w;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{name} never reached {state:?}: {:?}", health.report());
    }

    #[tokio::test]
    async fn failing_critical_worker_makes_the_node_unhealthy() {
        let mut set = TaskSet::new();
        let health = set.health();
        set.start(serving("admin", true, std::future::pending()));
        set.start(FnWorker::new("optional", false, |_| async {
            Err(WorkerError::Fatal("disk gone".into()))
        }));
        let w = settle(&health, "optional", WorkerState::Failed).await;
        assert_eq!(w.reason.as_deref(), Some("disk gone"));
        settle(&health, "admin", WorkerState::Running).await;
        assert!(
            health.healthy(),
            "a non-critical failure left the node unhealthy"
        );

        set.start(FnWorker::new("finalizer", true, |_| async {
            Err(WorkerError::Fatal("cannot apply block 7".into()))
        }));
        settle(&health, "finalizer", WorkerState::Failed).await;
        assert!(!health.healthy());
        let report = health.report();
        assert!(!report.healthy);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["workers"][2]["state"], "failed");
        assert_eq!(json["workers"][2]["critical"], true);
        assert_eq!(json["workers"][2]["reason"], "cannot apply block 7");
        let back: WorkersReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
        set.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn early_return_and_panic_count_as_failures() {
        let mut set = TaskSet::new();
        let health = set.health();
        set.start(serving("listener", true, async {}));
        set.start(FnWorker::new("boom", true, |_| async {
            panic!("invariant broken")
        }));
        let w = settle(&health, "listener", WorkerState::Failed).await;
        assert_eq!(w.reason, Some(WorkerError::ExitedEarly.to_string()));
        let w = settle(&health, "boom", WorkerState::Failed).await;
        assert_eq!(w.reason.as_deref(), Some("panicked: invariant broken"));
        assert!(!health.healthy());
    }

    #[tokio::test]
    async fn shutdown_runs_in_reverse_start_order() {
        let stopped = Arc::new(Mutex::new(Vec::new()));
        let mut set = TaskSet::new();
        let health = set.health();
        for name in ["p2p", "fragments", "admin", "heartbeats"] {
            let stopped = stopped.clone();
            set.start(FnWorker::new(
                name,
                true,
                move |mut stop: Stop| async move {
                    stop.requested().await;
                    // Yield so a worker stopped early could be overtaken by a later one.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    stopped.lock().unwrap().push(name);
                    Ok(())
                },
            ));
        }
        settle(&health, "heartbeats", WorkerState::Running).await;
        let report = set.shutdown(Duration::from_secs(5)).await;
        let expected = ["heartbeats", "admin", "fragments", "p2p"];
        assert_eq!(*stopped.lock().unwrap(), expected);
        assert_eq!(report.order, expected);
        assert!(report.aborted.is_empty());
        assert!(health
            .report()
            .workers
            .iter()
            .all(|w| w.state == WorkerState::Stopped && w.reason.is_none()));
        assert!(health.healthy());
    }

    #[tokio::test]
    async fn shutdown_is_bounded_when_a_worker_ignores_stop() {
        let mut set = TaskSet::new();
        let health = set.health();
        set.start(serving("p2p", true, std::future::pending()));
        set.start(FnWorker::new("stubborn", true, |_| async {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
        settle(&health, "stubborn", WorkerState::Running).await;
        let started = Instant::now();
        let report = set.shutdown(Duration::from_millis(300)).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(2),
            "shutdown took {took:?}"
        );
        assert_eq!(report.aborted, ["stubborn", "p2p"]);
        let w = &health.report().workers[1];
        assert_eq!(w.state, WorkerState::Stopped);
        assert!(w.reason.as_deref().unwrap_or("").starts_with("aborted"));
    }
}
