//! Accounts: the signer and nonce rule every transaction passes, `RegisterAccount`, and the
//! compare-and-set `ConfigSet`.

use crate::{
    state::{key, Account, ConfigEntry, Event, State, T_CONFIG},
    tx::{Tx, TxKind},
    AccountId, TxError, NONCE_WINDOW,
};

/// A checked account or config change.
pub(crate) enum Change {
    /// A new account (its record is the signer account [`super::Checked`] writes).
    Registered { account: AccountId, name: String },
    /// A config entry's next version.
    Config { key: String, entry: ConfigEntry },
}

/// Checks a nonce against the sliding window; returns the updated (max, window).
pub fn check_nonce(account: &Account, nonce: u64) -> Result<(u64, u64), TxError> {
    if nonce == 0 {
        return Err(TxError::InvalidField {
            field: "nonce",
            reason: "nonces start at 1".into(),
        });
    }
    if nonce > account.nonce_max {
        let shift = nonce - account.nonce_max;
        let window = if shift >= u64::from(u64::BITS) {
            0
        } else {
            account.nonce_window << shift
        };
        return Ok((nonce, window | 1));
    }
    let age = account.nonce_max - nonce;
    if age >= NONCE_WINDOW {
        return Err(TxError::NonceTooOld {
            nonce,
            min: account.nonce_max.saturating_sub(NONCE_WINDOW - 1),
        });
    }
    let bit = 1u64 << age;
    if account.nonce_window & bit != 0 {
        return Err(TxError::NonceReplayed { nonce });
    }
    Ok((account.nonce_max, account.nonce_window | bit))
}

/// The signer's account after `tx`: it must exist (or, for `RegisterAccount`, must not), and
/// the nonce must pass [`check_nonce`].
pub(super) fn check_signer(state: &State, tx: &Tx) -> Result<Account, TxError> {
    let current = match (&tx.kind, state.accounts.get(&tx.signer)) {
        (TxKind::RegisterAccount { .. }, Some(_)) => return Err(TxError::AccountExists),
        (TxKind::RegisterAccount { name }, None) => Account {
            name: name.clone(),
            nonce_max: 0,
            nonce_window: 0,
        },
        (_, None) => return Err(TxError::UnknownAccount),
        (_, Some(a)) => a.clone(),
    };
    let (nonce_max, nonce_window) = check_nonce(&current, tx.nonce)?;
    Ok(Account {
        nonce_max,
        nonce_window,
        ..current
    })
}

/// `RegisterAccount` has no rule beyond [`check_signer`].
pub(super) fn register(signer: &AccountId, name: &str) -> Change {
    Change::Registered {
        account: *signer,
        name: name.to_string(),
    }
}

/// `ConfigSet`: compare-and-set on the entry's version (0 = absent).
pub(super) fn check_config(
    state: &State,
    signer: &AccountId,
    key: &str,
    value: &str,
    expected_version: u64,
    height: u64,
) -> Result<Change, TxError> {
    let current = state.config.get(key).map_or(0, |c| c.version);
    if current != expected_version {
        return Err(TxError::ConfigVersionMismatch {
            expected: expected_version,
            current,
        });
    }
    let Some(version) = current.checked_add(1) else {
        return Err(TxError::InvalidField {
            field: "expected_version",
            reason: "the entry's version space is exhausted; use a new key".into(),
        });
    };
    Ok(Change::Config {
        key: key.to_string(),
        entry: ConfigEntry {
            value: value.to_string(),
            version,
            set_by: *signer,
            set_height: height,
        },
    })
}

/// Writes a checked account or config change.
pub(super) fn apply(state: &mut State, change: Change) -> Event {
    match change {
        Change::Registered { account, name } => Event::AccountRegistered { account, name },
        Change::Config { key: k, entry } => {
            let version = entry.version;
            state.touch(key(T_CONFIG, k.as_bytes()));
            state.config.insert(k.clone(), entry);
            Event::ConfigChanged { key: k, version }
        }
    }
}
