use crate::mfa::Factor;
use time::{Duration, OffsetDateTime};

use crate::account::Account;
use crate::api_key::ApiKey;
use crate::audit::AuditEvent;
use crate::mail::OutgoingEmail;
use crate::newtypes::{AccountId, EmailAddress};
use crate::secret::TokenHash;
use crate::session::Session;

/// Everything flexauth holds about one account, for its owner's copy or an operator's.
/// API keys come without their secrets (only digests are stored), sessions without their
/// refresh-token digests.
#[derive(Debug, Clone)]
pub struct AccountExport {
    /// The account.
    pub account: Account,
    /// Its live sessions.
    pub sessions: Vec<Session>,
    /// Its live API keys.
    pub api_keys: Vec<ApiKey>,
    /// Its security log, newest first.
    pub security_events: Vec<AuditEvent>,
    /// Its confirmed second factors (never their secrets), oldest first.
    pub second_factors: Vec<Factor>,
    /// How many unused recovery codes it has.
    pub recovery_codes_left: u32,
}

/// What erasing an account writes, in one transaction.
#[derive(Debug, Clone)]
pub struct Erasure {
    /// The account to erase.
    pub account_id: AccountId,
    /// The id its security events are kept under from now on: random, named nowhere else.
    pub tombstone: AccountId,
    /// The entry that records the erasure, under the tombstone.
    pub event: AuditEvent,
    /// The goodbye to queue once every other message to the address is gone; `None` when an
    /// operator erases without telling.
    pub goodbye: Option<OutgoingEmail>,
}

/// A requested move of an account to another address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailChange {
    /// The account to move.
    pub account_id: AccountId,
    /// Its address when the change was asked for.
    pub old_email: EmailAddress,
    /// The address to move to.
    pub new_email: EmailAddress,
    /// The digest of the confirmation link sent to the new address.
    pub confirmation: TokenHash,
    /// The digest of the undo link sent to the old address.
    pub undo: TokenHash,
    /// When it was asked for.
    pub requested_at: OffsetDateTime,
    /// Until when the confirmation link works.
    pub expires_at: OffsetDateTime,
    /// Until when the undo link works.
    pub undo_expires_at: OffsetDateTime,
    /// When the new address confirmed it.
    pub confirmed_at: Option<OffsetDateTime>,
    /// When the undo link was used.
    pub undone_at: Option<OffsetDateTime>,
}

/// What one of an address change's links can still do at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailChangeLinkState {
    /// It works.
    Usable,
    /// It was used, or the change was confirmed, undone or replaced by a newer request.
    Spent,
    /// It is past its time.
    Expired,
}

impl EmailChange {
    /// A change of `account` to `new_email` asked for at `now`: its confirmation link (sent to
    /// the new address) works for `confirmation_ttl`, its undo link (sent to the address the
    /// account has now) for `undo_ttl`.
    pub fn request(
        account: &Account,
        new_email: EmailAddress,
        confirmation: TokenHash,
        undo: TokenHash,
        now: OffsetDateTime,
        confirmation_ttl: Duration,
        undo_ttl: Duration,
    ) -> Self {
        Self {
            account_id: account.id(),
            old_email: account.email().clone(),
            new_email,
            confirmation,
            undo,
            requested_at: now,
            expires_at: now + confirmation_ttl,
            undo_expires_at: now + undo_ttl,
            confirmed_at: None,
            undone_at: None,
        }
    }

    /// Whether the confirmation link works at `now`.
    pub fn confirmation_state(&self, now: OffsetDateTime) -> EmailChangeLinkState {
        if self.confirmed_at.is_some() || self.undone_at.is_some() {
            EmailChangeLinkState::Spent
        } else if now >= self.expires_at {
            EmailChangeLinkState::Expired
        } else {
            EmailChangeLinkState::Usable
        }
    }

    /// Whether the undo link works at `now`: before and after the confirmation, once.
    pub fn undo_state(&self, now: OffsetDateTime) -> EmailChangeLinkState {
        if self.undone_at.is_some() {
            EmailChangeLinkState::Spent
        } else if now >= self.undo_expires_at {
            EmailChangeLinkState::Expired
        } else {
            EmailChangeLinkState::Usable
        }
    }
}
