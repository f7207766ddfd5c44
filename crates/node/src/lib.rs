//! `cairn-node`: the `cairn` binary's library: node wiring (`run`), the CLI (`cli`), the devnet
//! supervisor, and the node-side services that have not moved to their domain crate yet.
//!
//! Subcommands: `devnet` (a whole local network, one process per node, with fault `drill`s),
//! `init` (write a network layout), `node` (one node from `node.toml`; `node register`,
//! `approve`, `admit` for admission), `status` (readable table from the admin API), `tx`
//! (build, sign and submit transactions), `dns` (import, export, zones, manage, history),
//! `put/get/ls/rm/mb` (S3 object commands), `keygen`, and `bench chain|storage`.
//! See `docs/CONFIG.md` for the config files.
//!
//! A node's long-running tasks (listeners, heartbeats, planner, DNS updater, watchers of the
//! chain's finalizer and p2p network) are named workers (`tasks`): `GET /workers` lists them,
//! a failed critical worker makes the node unhealthy (`/status`, no more heartbeats), and
//! SIGINT/SIGTERM stops them in reverse start order within `tasks::SHUTDOWN_TIMEOUT_MS`.
//! `cairn devnet` prints `devnet ready` only when every node is up and healthy.

pub mod admin;
pub mod admission;
pub mod api;
pub mod audit;
pub mod bench;
pub mod bench_audit;
pub mod bench_storage;
pub mod cli;
pub mod client;
pub mod config;
pub mod devnet;
pub mod dns;
pub mod dnscli;
pub mod heartbeat;
pub mod net;
pub mod objects;
pub mod partition;
pub mod run;
pub mod s3;
pub mod s3client;
pub mod supervisor;
pub mod tasks;

/// HTTP connection hygiene of the admin and S3 listeners; it lives with the fragment server.
pub use cairn_storage::conn;
