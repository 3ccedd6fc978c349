use time::OffsetDateTime;

use super::{EmailAddress, PasswordHash};
use crate::newtypes::AccountId;
use crate::secret::TokenHash;

/// A person's account.
#[derive(Debug, Clone)]
pub struct Account {
    id: AccountId,
    email: EmailAddress,
    password_hash: PasswordHash,
    email_verified_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    credential_version: i64,
    disabled_at: Option<OffsetDateTime>,
    clients_forgotten_at: Option<OffsetDateTime>,
}

/// An account's fields as a storage adapter keeps them, by name: what
/// [`Account::from_storage`] rebuilds an account from, and what [`Account::stored`] gives back.
#[derive(Debug, Clone)]
pub struct StoredAccount {
    pub id: AccountId,
    pub email: EmailAddress,
    pub password_hash: PasswordHash,
    /// When the address the account has now was proven: its sign-up's confirmation, the reset
    /// that verified it, or the confirmation of the move to it.
    pub email_verified_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub credential_version: i64,
    pub disabled_at: Option<OffsetDateTime>,
    /// When the account last forgot the clients it knew.
    pub clients_forgotten_at: Option<OffsetDateTime>,
}

impl Account {
    /// A new account whose email address is not verified yet. Until it is, `password_hash` is
    /// only a placeholder: logins check the pending sign-up attempts, and confirming the address
    /// sets the password of the attempt it confirms.
    pub fn new_unverified(
        id: AccountId,
        email: EmailAddress,
        password_hash: PasswordHash,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            email,
            password_hash,
            email_verified_at: None,
            created_at: now,
            credential_version: 0,
            disabled_at: None,
            clients_forgotten_at: None,
        }
    }

    /// Rebuilds an account read back from trusted storage; no rule is checked again.
    pub fn from_storage(stored: StoredAccount) -> Self {
        let StoredAccount {
            id,
            email,
            password_hash,
            email_verified_at,
            created_at,
            credential_version,
            disabled_at,
            clients_forgotten_at,
        } = stored;
        Self {
            id,
            email,
            password_hash,
            email_verified_at,
            created_at,
            credential_version,
            disabled_at,
            clients_forgotten_at,
        }
    }

    /// The account's fields, for a storage adapter to write.
    pub fn stored(&self) -> StoredAccount {
        StoredAccount {
            id: self.id,
            email: self.email.clone(),
            password_hash: self.password_hash.clone(),
            email_verified_at: self.email_verified_at,
            created_at: self.created_at,
            credential_version: self.credential_version,
            disabled_at: self.disabled_at,
            clients_forgotten_at: self.clients_forgotten_at,
        }
    }

    /// The earliest login that still makes a client (an address, a device) known to the account,
    /// given that a login since `earliest` would otherwise: none from before the account last
    /// forgot its clients. A reset, a password change, an undone address change, a disable and
    /// a global logout forget them, so whoever held the account before keeps no exemption from
    /// the per-account login limit.
    pub fn clients_known_since(&self, earliest: OffsetDateTime) -> OffsetDateTime {
        // Strictly after the forgetting: a login stored in the same millisecond (the store's
        // resolution) may have committed just before it, and counts as a stranger's.
        self.clients_forgotten_at
            .map_or(earliest, |forgotten| (forgotten + time::Duration::milliseconds(1)).max(earliest))
    }

    /// When the account last forgot the clients it knew, if it ever did.
    pub fn clients_forgotten_at(&self) -> Option<OffsetDateTime> {
        self.clients_forgotten_at
    }

    /// When an operator disabled the account, if one did and did not enable it again. A
    /// disabled account cannot log in; its sessions and keys were ended when it was disabled.
    pub fn disabled_at(&self) -> Option<OffsetDateTime> {
        self.disabled_at
    }

    /// Whether an operator disabled the account: it cannot log in.
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }

    /// A counter that grows with every change of the password. A session opened or a password
    /// changed after checking the old credential commits only if the counter still has the value
    /// read with it, so nothing begun before a reset survives the reset.
    pub fn credential_version(&self) -> i64 {
        self.credential_version
    }

    /// The account's identifier.
    pub fn id(&self) -> AccountId {
        self.id
    }

    /// The normalised email address.
    pub fn email(&self) -> &EmailAddress {
        &self.email
    }

    /// The stored password hash.
    pub fn password_hash(&self) -> &PasswordHash {
        &self.password_hash
    }

    /// When the owner proved control of the address, if they did.
    pub fn email_verified_at(&self) -> Option<OffsetDateTime> {
        self.email_verified_at
    }

    /// Whether the owner proved control of the address.
    pub fn is_email_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }

    /// When the account was created.
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }
}

/// A stored single-use link token (email verification, password reset): only its digest,
/// never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTokenRecord {
    hash: TokenHash,
    account_id: AccountId,
    expires_at: OffsetDateTime,
    used_at: Option<OffsetDateTime>,
}

/// The state a verification token is in at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkTokenState {
    Usable,
    AlreadyUsed,
    Expired,
}

impl LinkTokenRecord {
    /// A fresh, unused token for `account_id`.
    pub fn issue(hash: TokenHash, account_id: AccountId, expires_at: OffsetDateTime) -> Self {
        Self { hash, account_id, expires_at, used_at: None }
    }

    /// Rebuilds a token record read back from trusted storage.
    pub fn from_storage(
        hash: TokenHash,
        account_id: AccountId,
        expires_at: OffsetDateTime,
        used_at: Option<OffsetDateTime>,
    ) -> Self {
        Self { hash, account_id, expires_at, used_at }
    }

    /// The digest of the token.
    pub fn hash(&self) -> &TokenHash {
        &self.hash
    }

    /// The account the token verifies.
    pub fn account_id(&self) -> AccountId {
        self.account_id
    }

    /// When the token stops working.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }

    /// When the token was used, if it was.
    pub fn used_at(&self) -> Option<OffsetDateTime> {
        self.used_at
    }

    /// Whether the link still works at `now`: unused and not expired.
    pub fn is_usable(&self, now: OffsetDateTime) -> bool {
        self.state_at(now) == LinkTokenState::Usable
    }

    /// Whether retention may forget the link at `cutoff`: used or expired before it.
    pub fn spent_before(&self, cutoff: OffsetDateTime) -> bool {
        self.used_at.is_some_and(|at| at < cutoff) || self.expires_at < cutoff
    }

    /// A used token keeps answering "verified" (the link is idempotent) even once expired; an
    /// unused one works only before its expiry.
    pub(crate) fn state_at(&self, now: OffsetDateTime) -> LinkTokenState {
        if self.used_at.is_some() {
            LinkTokenState::AlreadyUsed
        } else if now >= self.expires_at {
            LinkTokenState::Expired
        } else {
            LinkTokenState::Usable
        }
    }
}

/// One sign-up attempt on an address that is not verified yet: the link sent for it and, when
/// the attempt came from a sign-up, the hash of the password chosen there. A resent link carries
/// no password: whoever confirms with it chooses one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignupAttempt {
    link: LinkTokenRecord,
    password_hash: Option<PasswordHash>,
    created_at: OffsetDateTime,
}

impl SignupAttempt {
    /// A fresh attempt, its link unused.
    pub fn issue(link: LinkTokenRecord, password_hash: Option<PasswordHash>, now: OffsetDateTime) -> Self {
        Self { link, password_hash, created_at: now }
    }

    /// Rebuilds an attempt read back from trusted storage.
    pub fn from_storage(
        link: LinkTokenRecord,
        password_hash: Option<PasswordHash>,
        created_at: OffsetDateTime,
    ) -> Self {
        Self { link, password_hash, created_at }
    }

    /// The link of the attempt.
    pub fn link(&self) -> &LinkTokenRecord {
        &self.link
    }

    /// The password chosen at sign-up, if the attempt came from one.
    pub fn password_hash(&self) -> Option<&PasswordHash> {
        self.password_hash.as_ref()
    }

    /// When the attempt was made.
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use time::Duration;
    use uuid::Uuid;

    use super::*;

    const T0: OffsetDateTime = datetime!(2026-05-01 10:00 UTC);

    fn link(used_at: Option<OffsetDateTime>) -> LinkTokenRecord {
        LinkTokenRecord::from_storage(TokenHash::of(b"link"), AccountId::from_uuid(Uuid::nil()), T0, used_at)
    }

    #[test]
    fn a_link_works_until_it_is_used_or_expires() {
        assert!(link(None).is_usable(T0 - Duration::seconds(1)));
        assert!(!link(None).is_usable(T0), "a link expires at its expiry");
        assert!(!link(Some(T0 - Duration::hours(1))).is_usable(T0 - Duration::seconds(1)));
    }

    #[test]
    fn a_link_is_due_for_purging_once_used_or_expired_before_the_cutoff() {
        assert!(!link(None).spent_before(T0));
        assert!(link(None).spent_before(T0 + Duration::seconds(1)));
        let used = link(Some(T0 - Duration::hours(2)));
        assert!(used.spent_before(T0 - Duration::hours(1)));
        assert!(!used.spent_before(T0 - Duration::hours(2)));
    }
}
