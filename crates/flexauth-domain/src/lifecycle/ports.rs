use async_trait::async_trait;
use time::OffsetDateTime;

use super::{EmailChange, Erasure};
use crate::account::PasswordHash;
use crate::audit::AuditEvent;
use crate::mail::OutgoingEmail;
use crate::newtypes::{AccountId, SessionId};
use crate::secret::TokenHash;
use crate::InfraError;

/// What confirming an address change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmEmailChangeOutcome {
    /// The account moved to the new address.
    Confirmed,
    /// The link was spent meanwhile (used, undone or replaced); nothing was written.
    Spent,
    /// Another account holds the new address now; nothing was written.
    AddressTaken,
    /// The account's address is no longer the one the change was asked from, or its password
    /// changed since it was checked; nothing was written.
    AccountChanged,
}

/// What using an undo link did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UndoEmailChangeOutcome {
    /// The change was cancelled (not confirmed yet) or reverted (confirmed), and every session
    /// ended.
    Undone,
    /// The link was spent meanwhile; nothing was written.
    Spent,
    /// Another account holds the old address now, so the account cannot move back; nothing
    /// was written.
    AddressTaken,
}

/// Storage of what an account's lifecycle changes. Each method is one transaction.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait LifecycleRepository: Send + Sync {
    /// Marks the account disabled at `now` (keeping an earlier mark), moves its credential
    /// version on, revokes every live session and every active API key, forgets the clients
    /// the account knew (as [`crate::session::SessionRepository::forget_known_clients`] does),
    /// and records `event`.
    /// Returns false, writing nothing, when there is no such account.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn disable(&self, id: AccountId, now: OffsetDateTime, event: &AuditEvent) -> Result<bool, InfraError>;

    /// Clears the disabled mark and records `event`. Sessions and keys ended by the disabling
    /// stay ended. Returns false when there is no such account.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn enable(&self, id: AccountId, event: &AuditEvent) -> Result<bool, InfraError>;

    /// Deletes the account and every row that names it or an address it held (sessions, keys,
    /// links, devices, counters, address changes, account requests, and every queued or sent
    /// message to those addresses, unless another account holds the address now), moves its security events to the erasure's tombstone id,
    /// records the erasure's event and queues its goodbye. Returns false, writing nothing,
    /// when there is no such account.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn erase(&self, erasure: &Erasure) -> Result<bool, InfraError>;

    /// If the session `requested_by` is still live (its row locked until commit, so a
    /// disable or an undo either ends it first or waits): stores `change`, ends the
    /// confirmation links of the account's earlier pending changes, records `event` and
    /// queues both messages (to the new address and to the old one). Returns false, writing
    /// nothing, when the session has ended.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn create_email_change(
        &self,
        change: &EmailChange,
        requested_by: SessionId,
        to_new: &OutgoingEmail,
        to_old: &OutgoingEmail,
        event: &AuditEvent,
    ) -> Result<bool, InfraError>;

    /// The address change whose confirmation link has digest `hash`.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn find_email_change(&self, hash: &TokenHash) -> Result<Option<EmailChange>, InfraError>;

    /// The address change whose undo link has digest `hash`.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn find_email_change_by_undo(&self, hash: &TokenHash) -> Result<Option<EmailChange>, InfraError>;

    /// If the confirmation link of `change` is still unspent and unexpired at `now`, and the
    /// account still has the old address and credential version `credential_version` (the
    /// password checked for the confirmation is still its password): deletes an unverified
    /// account squatting the new address (its sign-up was never confirmed, so the address was
    /// never its own), moves the account to the new address (verified now), spends the change,
    /// spends every unused password reset link and deletes every unused sign-up attempt of the
    /// account, and records `event`.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn confirm_email_change(
        &self,
        change: &EmailChange,
        credential_version: i64,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<ConfirmEmailChangeOutcome, InfraError>;

    /// If the undo link of `change` is still unspent and unexpired at `now`: spends it, ends
    /// the undo links of every later change of the account (whoever asked for those may hold
    /// them) and the confirmation links of every pending one, deletes an unverified account
    /// squatting the old address, moves the account back to the old address, replaces its
    /// password by `unusable_password` and moves its credential version on, ends every session,
    /// revokes every API key, spends every unused reset link, forgets the clients the account
    /// knew, and records `event`.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; nothing is written then.
    async fn undo_email_change(
        &self,
        change: &EmailChange,
        now: OffsetDateTime,
        unusable_password: &PasswordHash,
        event: &AuditEvent,
    ) -> Result<UndoEmailChangeOutcome, InfraError>;
}
