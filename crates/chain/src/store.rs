//! Durable ledger state: the entries of [`cairn_ledger::State`] keyed by their canonical bytes.
//!
//! Contract: `commit(height, dirty)` is atomic (all the changes or none) and durable when it
//! returns; `dirty` may merge the changes of several blocks up to `height`. `load` returns the
//! state as of the last committed height. Together with marshal's block archive (which is
//! synced before a block is delivered) this is what keeps the application from running ahead
//! of consensus (commonware monorepo#3727): state is only ever written for blocks marshal
//! already holds durably, and after a restart the finalizer replays from that archive every
//! finalized block between the loaded height and marshal's first redelivery.

use cairn_ledger::State;
use commonware_utils::sync::Mutex;
use redb::ReadableTable;
use std::{collections::BTreeMap, path::Path, sync::Arc};

/// Errors from the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("state database error: {0}; check the data directory's disk and permissions")]
    Db(String),
    /// Stored entries do not form a valid ledger state (corruption or version mismatch).
    #[error("stored state is invalid: {0}; restore the data directory or start a fresh one")]
    Corrupt(String),
    /// The genesis description is invalid.
    #[error("invalid genesis: {0}")]
    Genesis(cairn_ledger::TxError),
}

/// Durable storage for ledger state.
pub trait StateStore: Send + 'static {
    /// Loads the last committed state, or `None` if nothing was ever committed.
    fn load(&mut self) -> Result<Option<State>, StoreError>;
    /// Atomically applies the changed entries of the block at `height`.
    fn commit(
        &mut self,
        height: u64,
        dirty: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError>;
}

/// In-memory store whose contents outlive the node that uses it (for simulated crashes).
#[derive(Clone, Default)]
pub struct MemStore {
    entries: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

impl StateStore for MemStore {
    fn load(&mut self) -> Result<Option<State>, StoreError> {
        let entries = self.entries.lock();
        if entries.is_empty() {
            return Ok(None);
        }
        State::from_entries(entries.iter().map(|(k, v)| (k.clone(), v.clone())))
            .map(Some)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    fn commit(
        &mut self,
        _height: u64,
        dirty: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let mut entries = self.entries.lock();
        for (key, value) in dirty {
            match value {
                Some(value) => entries.insert(key, value),
                None => entries.remove(&key),
            };
        }
        Ok(())
    }
}

const ENTRIES: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("ledger_entries");

/// redb-backed store (one file, ACID, fsync on every commit).
pub struct RedbStore {
    db: redb::Database,
}

impl RedbStore {
    /// Opens or creates the database file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = redb::Database::create(path).map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(Self { db })
    }
}

impl StateStore for RedbStore {
    fn load(&mut self) -> Result<Option<State>, StoreError> {
        let db = |e: &dyn std::fmt::Display| StoreError::Db(e.to_string());
        let txn = self.db.begin_read().map_err(|e| db(&e))?;
        let table = match txn.open_table(ENTRIES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db(&e)),
        };
        let mut entries = Vec::new();
        for item in table.iter().map_err(|e| db(&e))? {
            let (k, v) = item.map_err(|e| db(&e))?;
            entries.push((k.value().to_vec(), v.value().to_vec()));
        }
        if entries.is_empty() {
            return Ok(None);
        }
        State::from_entries(entries)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    fn commit(
        &mut self,
        _height: u64,
        dirty: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let db = |e: &dyn std::fmt::Display| StoreError::Db(e.to_string());
        let txn = self.db.begin_write().map_err(|e| db(&e))?;
        {
            let mut table = txn.open_table(ENTRIES).map_err(|e| db(&e))?;
            for (key, value) in &dirty {
                match value {
                    Some(value) => {
                        table
                            .insert(key.as_slice(), value.as_slice())
                            .map_err(|e| db(&e))?;
                    }
                    None => {
                        table.remove(key.as_slice()).map_err(|e| db(&e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| db(&e))
    }
}
