//! An account's life after sign-up: what an operator does to it (find, disable, enable,
//! erase, export) and what its owner does (move it to another address, delete it, take a copy
//! of its data).
//!
//! Disabling ends every session and API key in the transaction that disables, and moves the
//! credential version on, so a login whose password check was under way cannot open a session
//! afterwards. Erasing deletes the account and every row that names it or its addresses; the
//! security log is kept, under an account id nobody can trace back. An address change happens
//! only when the new address confirms it, and the old address gets a link that undoes it.

mod model;
mod ports;
mod service;

pub use model::{AccountExport, EmailChange, EmailChangeLinkState, Erasure};
pub use ports::{ConfirmEmailChangeOutcome, LifecycleRepository, UndoEmailChangeOutcome};
pub use service::{
    AdminError, EmailChangeError, EmailChangeLinkError, LifecycleService, LifecycleSettings, OwnerError,
};

#[cfg(any(test, feature = "mocks"))]
pub use ports::MockLifecycleRepository;
