//! The writes a use case decided on, handed to the store to carry out in one transaction. The
//! domain names every row to change, every session to end and every email to queue; the store
//! decides nothing and only reports whether the guards it was given still held.

use time::OffsetDateTime;

use super::{AccountId, PasswordHash};
use crate::audit::AuditEvent;
use crate::mail::OutgoingEmail;
use crate::newtypes::{RevocationReason, SessionId};
use crate::secret::TokenHash;

/// Confirming an address with the link of one sign-up attempt.
#[derive(Debug, Clone)]
pub struct EmailConfirmation {
    /// The account whose address is confirmed.
    pub account_id: AccountId,
    /// The attempt's link; the confirmation applies only if the link is still unused.
    pub attempt: TokenHash,
    /// The password that becomes the account's: the attempt's own, or the one chosen on the
    /// confirmation page.
    pub password_hash: PasswordHash,
    /// When the address is confirmed.
    pub confirmed_at: OffsetDateTime,
}

/// Which sessions of the account a credential change ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionsToEnd {
    /// Every session.
    All,
    /// Every session but this one (the caller's own, after a password change).
    AllExcept(SessionId),
}

/// Setting a new password: by a reset link, or by the owner who knows the current one.
#[derive(Debug, Clone)]
pub struct CredentialChange {
    /// The account whose password changes.
    pub account_id: AccountId,
    /// The new password.
    pub password_hash: PasswordHash,
    /// Apply only if the account's credential version still has this value (the password
    /// checked before the change is still the current one). `None` for a reset, where the
    /// link, not the old password, is the proof.
    pub expected_version: Option<i64>,
    /// Apply only if this reset link is still unused, and spend it.
    pub reset_link: Option<TokenHash>,
    /// The sessions that end, with the reason recorded on them.
    pub end_sessions: SessionsToEnd,
    /// Why those sessions end.
    pub reason: RevocationReason,
    /// Mark the address verified, if it is not (a reset link proves control of the mailbox).
    pub verify_email: bool,
    /// Revoke the account's API keys created before this instant: a reset proves control of
    /// the address the account has now, not of the one it had when those keys were made.
    pub revoke_keys_made_before: Option<OffsetDateTime>,
    /// The notice to the owner, queued in the same transaction.
    pub notice: OutgoingEmail,
    /// When the change happens. Every unused reset link of the account is spent at this instant.
    pub at: OffsetDateTime,
    /// The entry of the owner's security log, stored with the change.
    pub event: AuditEvent,
}
