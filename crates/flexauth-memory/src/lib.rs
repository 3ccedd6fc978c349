//! flexauth's storage ports in memory: accounts and their request queue, sessions, the outbox,
//! usage counters, API keys, introspection clients, the security log, rate limits, housekeeping and the account
//! lifecycle, all on one [`MemoryStore`].
//!
//! It keeps the semantics of `flexauth-store` and passes the same port contract suite
//! (`flexauth-contract`): every method is one transaction, all or nothing, because one lock
//! guards every table and each method checks everything that could refuse its writes before
//! it makes the first. It is meant for services that embed `flexauth-domain` without a
//! database, and for tests. Nothing survives the process, and two processes never share it.
//! It depends on the domain only; never on a database driver or an async runtime.

mod accounts;
mod api_keys;
mod audit;
mod housekeeping;
mod introspection_clients;
mod lifecycle;
mod mfa;
mod outbox;
mod rate_limits;
mod requests;
mod sessions;
mod state;
mod usage;
mod webhooks;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use state::State;

/// Every storage port of `flexauth-domain`, in memory. Clones share the same tables.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The tables hold password hashes, token digests and email bodies with links: only
        // their sizes are shown.
        match self.state.lock() {
            Ok(state) => f
                .debug_struct("MemoryStore")
                .field("accounts", &state.accounts.len())
                .field("sessions", &state.sessions.len())
                .field("outbox", &state.outbox.len())
                .finish_non_exhaustive(),
            Err(_) => f.debug_struct("MemoryStore").field("poisoned", &true).finish_non_exhaustive(),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The text and HTML bodies stored for outbox entry `id` (`None` for a body that was
    /// cleared once the email was sent or given up on), or `None` when there is no such
    /// entry. For tests that check that no link outlives its delivery.
    ///
    /// Also `None` when a panic poisoned the store's lock.
    pub fn outbox_bodies(&self, id: Uuid) -> Option<(Option<String>, Option<String>)> {
        let state = self.lock().ok()?;
        state.outbox.get(&id).map(|entry| (entry.text_body.clone(), entry.html_body.clone()))
    }

    /// The error kept from the last failed delivery attempt of outbox entry `id`, if there was
    /// one: what operators of a database read in its `last_error` column.
    ///
    /// Also `None` when there is no such entry, or when a panic poisoned the store's lock.
    pub fn outbox_last_error(&self, id: Uuid) -> Option<String> {
        let state = self.lock().ok()?;
        state.outbox.get(&id).and_then(|entry| entry.last_error.clone())
    }

    /// The tables, locked until the guard drops. Every method takes the lock once, does all its
    /// work without awaiting, and lets go: that is what makes it a transaction.
    ///
    /// A poisoned lock fails every later call instead of being taken over: a panic may have
    /// stopped a method between two of its writes, and an authentication store that might be
    /// half-written must not answer.
    fn lock(&self) -> Result<MutexGuard<'_, State>, MemoryError> {
        self.state.lock().map_err(|_| MemoryError::Poisoned)
    }
}

/// Why the in-memory store refused a call: what a database would report as a constraint
/// violation, or a store left unusable by a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemoryError {
    /// A panic while the lock was held; the tables may be half-written.
    Poisoned,
    /// A row with the same key exists already (a primary key or a unique column).
    Duplicate(&'static str),
    /// A row names an account that does not exist (a foreign key).
    UnknownAccount(&'static str),
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Poisoned => {
                f.write_str("the in-memory store is unusable: a panic interrupted a call that held its lock")
            }
            Self::Duplicate(table) => write!(f, "a row with the same key exists already in {table}"),
            Self::UnknownAccount(table) => write!(f, "a row of {table} names an account that does not exist"),
        }
    }
}

impl std::error::Error for MemoryError {}

impl From<MemoryError> for flexauth_domain::InfraError {
    fn from(error: MemoryError) -> Self {
        Self::new(error)
    }
}
