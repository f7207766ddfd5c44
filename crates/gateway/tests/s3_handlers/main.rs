//! In-process S3 handler tests. Every request is signed (or not) like a client's and goes through
//! the s3s service the node builds (auth, access, routing) into the gateway, which runs over a
//! real ledger `State` applying one block per commit and in-memory fragment storage.

mod auth;
mod buckets;
mod copy_delete;
mod harness;
mod list;
mod multipart;
mod objects;
mod refused;
