//! The owner's security log: what happened to an account, when, and from where.

mod ports;

pub use ports::AuditLog;
#[cfg(any(test, feature = "mocks"))]
pub use ports::MockAuditLog;

use std::sync::Arc;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::newtypes::{AccountId, ApiKeyId, ClientInfo, EmailAddress, FactorId, SessionId};
use crate::principal::LiveSession;
use crate::system::{random_uuid, SecureRandom};
use crate::InfraError;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    /// A login with the right password opened a session.
    LoginSucceeded,
    /// A login with a wrong password.
    LoginFailed,
    /// A login refused by a rate limit before its password was checked.
    LoginThrottled,
    /// The owner changed the password.
    PasswordChanged,
    /// The password was reset by email.
    PasswordReset,
    /// An API key was created.
    ApiKeyCreated,
    /// An API key was revoked.
    ApiKeyRevoked,
    /// A spent refresh token came back; its session was ended.
    RefreshTokenReuse,
    /// An operator disabled the account: every session and key ended.
    AccountDisabled,
    /// An operator enabled the account again.
    AccountEnabled,
    /// The account was erased; the entry is kept under a replaced account id.
    AccountDeleted,
    /// The owner asked to move the account to another address.
    EmailChangeRequested,
    /// The new address was confirmed: the account moved to it.
    EmailChanged,
    /// The undo link sent to the old address was used: the change was reverted or cancelled,
    /// and every session ended.
    EmailChangeUndone,
    /// A copy of the account's data was taken (by its owner or an operator).
    AccountExported,
    /// A wrong password was given to re-authenticate a session or to change the password.
    PasswordCheckFailed,
    /// A session was ended because it reached its limit of password checks with a wrong
    /// password: whoever held it was guessing.
    SessionEndedForPasswordFailures,
    /// A second factor was confirmed and counts from now on.
    SecondFactorAdded,
    /// A second factor was removed by the owner.
    SecondFactorRemoved,
    /// A wrong second-factor code was entered, after the right password.
    SecondFactorFailed,
    /// A recovery code was spent.
    RecoveryCodeUsed,
    /// A new set of recovery codes replaced the old one.
    RecoveryCodesRegenerated,
    /// An operator removed every second factor of the account.
    SecondFactorsReset,
}

impl AuditKind {
    /// The stable name stored and shown.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::LoginThrottled => "login_throttled",
            Self::PasswordChanged => "password_changed",
            Self::PasswordReset => "password_reset",
            Self::ApiKeyCreated => "api_key_created",
            Self::ApiKeyRevoked => "api_key_revoked",
            Self::RefreshTokenReuse => "refresh_token_reuse",
            Self::AccountDisabled => "account_disabled",
            Self::AccountEnabled => "account_enabled",
            Self::AccountDeleted => "account_deleted",
            Self::EmailChangeRequested => "email_change_requested",
            Self::EmailChanged => "email_changed",
            Self::EmailChangeUndone => "email_change_undone",
            Self::AccountExported => "account_exported",
            Self::PasswordCheckFailed => "password_check_failed",
            Self::SessionEndedForPasswordFailures => "session_ended_for_password_failures",
            Self::SecondFactorAdded => "second_factor_added",
            Self::SecondFactorRemoved => "second_factor_removed",
            Self::SecondFactorFailed => "second_factor_failed",
            Self::RecoveryCodeUsed => "recovery_code_used",
            Self::RecoveryCodesRegenerated => "recovery_codes_regenerated",
            Self::SecondFactorsReset => "second_factors_reset",
        }
    }

    /// Parses a stored name.
    pub fn from_stored(name: &str) -> Option<Self> {
        [
            Self::LoginSucceeded,
            Self::LoginFailed,
            Self::LoginThrottled,
            Self::PasswordChanged,
            Self::PasswordReset,
            Self::ApiKeyCreated,
            Self::ApiKeyRevoked,
            Self::RefreshTokenReuse,
            Self::AccountDisabled,
            Self::AccountEnabled,
            Self::AccountDeleted,
            Self::EmailChangeRequested,
            Self::EmailChanged,
            Self::EmailChangeUndone,
            Self::AccountExported,
            Self::PasswordCheckFailed,
            Self::SessionEndedForPasswordFailures,
            Self::SecondFactorAdded,
            Self::SecondFactorRemoved,
            Self::SecondFactorFailed,
            Self::RecoveryCodeUsed,
            Self::RecoveryCodesRegenerated,
            Self::SecondFactorsReset,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }
}

/// One entry of an account's security log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The entry's identifier; with `at` it orders the log.
    pub id: Uuid,
    /// The account it is about.
    pub account_id: AccountId,
    /// What happened.
    pub kind: AuditKind,
    /// When.
    pub at: OffsetDateTime,
    /// The client address and user agent of the request that caused it, where there was one.
    pub client: ClientInfo,
    /// The session concerned, if any.
    pub session_id: Option<SessionId>,
    /// The API key concerned, if any.
    pub key_id: Option<ApiKeyId>,
    /// The address the entry is about (the one the account moved to), for the
    /// webhook event it makes; the security log does not keep it.
    pub email: Option<EmailAddress>,
    /// The second factor concerned, for the webhook event it makes; the security log does not
    /// keep it.
    pub factor_id: Option<FactorId>,
}

impl AuditEvent {
    /// A new entry about `account_id` at `at`, with a fresh id drawn from `random`, and no
    /// client, session or key yet.
    pub fn new(random: &dyn SecureRandom, account_id: AccountId, kind: AuditKind, at: OffsetDateTime) -> Self {
        Self {
            id: random_uuid(random),
            account_id,
            kind,
            at,
            client: ClientInfo::default(),
            session_id: None,
            key_id: None,
            email: None,
            factor_id: None,
        }
    }

    /// The same entry, naming the client of the request that caused it.
    pub fn from_client(self, client: ClientInfo) -> Self {
        Self { client: ClientInfo { device: None, ..client }, ..self }
    }

    /// The same entry, naming the session concerned.
    pub fn of_session(self, session_id: SessionId) -> Self {
        Self { session_id: Some(session_id), ..self }
    }

    /// The same entry, naming the API key concerned.
    pub fn of_key(self, key_id: ApiKeyId) -> Self {
        Self { key_id: Some(key_id), ..self }
    }

    /// The same entry, naming the address it is about.
    pub fn about_address(self, email: EmailAddress) -> Self {
        Self { email: Some(email), ..self }
    }

    /// The same entry, naming the second factor concerned.
    pub fn of_factor(self, factor_id: FactorId) -> Self {
        Self { factor_id: Some(factor_id), ..self }
    }
}

/// Where to continue a listing: after the entry at `at` with `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor {
    /// The time of the last entry seen.
    pub at: OffsetDateTime,
    /// Its identifier.
    pub id: Uuid,
}

/// The largest page of the security log.
pub const MAX_PAGE: u32 = 100;

/// How many events one page of the security log holds: 1 to [`MAX_PAGE`], 50 unless the owner
/// asks for another size. A size outside the range is refused, not clamped, so that a client
/// learns that it asked for something flexauth does not serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

/// A page size outside 1 to [`MAX_PAGE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a page holds 1 to 100 events")]
pub struct PageSizeOutOfRange;

impl PageSize {
    /// # Errors
    /// [`PageSizeOutOfRange`] for 0 or more than [`MAX_PAGE`].
    pub fn new(size: u32) -> Result<Self, PageSizeOutOfRange> {
        (1..=MAX_PAGE).contains(&size).then_some(Self(size)).ok_or(PageSizeOutOfRange)
    }

    /// The number of events.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for PageSize {
    fn default() -> Self {
        Self(50)
    }
}

/// Shows owners their own security log.
#[derive(Clone)]
pub struct AuditService {
    log: Arc<dyn AuditLog>,
}

impl std::fmt::Debug for AuditService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditService").finish_non_exhaustive()
    }
}

impl AuditService {
    /// Wires the service to its port.
    pub fn new(log: Arc<dyn AuditLog>) -> Self {
        Self { log }
    }

    /// A page of the caller's own log, newest first, and the cursor of the next page when there
    /// may be one.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    pub async fn list(
        &self,
        caller: &LiveSession,
        after: Option<AuditCursor>,
        size: PageSize,
    ) -> Result<(Vec<AuditEvent>, Option<AuditCursor>), InfraError> {
        let limit = size.get();
        let events = self.log.list(caller.account_id(), after, limit).await?;
        let next = (events.len() == limit as usize)
            .then(|| events.last().map(|event| AuditCursor { at: event.at, id: event.id }))
            .flatten();
        Ok((events, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::MockSecureRandom;
    use time::macros::datetime;

    #[test]
    fn an_entry_keeps_the_client_address_and_agent_but_never_its_device_token() {
        let mut random = MockSecureRandom::new();
        random.expect_fill().returning(|buffer| buffer.fill(4));
        let mut client = ClientInfo::new(Some("agent"), Some("192.0.2.7".into()));
        client.device = Some(crate::secret::DeviceToken::generate(&random));
        let at = datetime!(2026-12-01 12:00 UTC);
        let session = SessionId::from_uuid(Uuid::from_u128(3));
        let event = AuditEvent::new(&random, AccountId::from_uuid(Uuid::nil()), AuditKind::LoginSucceeded, at)
            .from_client(client)
            .of_session(session);
        assert_eq!(event.client, ClientInfo::new(Some("agent"), Some("192.0.2.7".into())));
        assert_eq!((event.session_id, event.key_id, event.at), (Some(session), None, at));
    }

    #[test]
    fn a_page_holds_one_to_a_hundred_events_and_fifty_by_default() {
        assert_eq!(PageSize::new(0), Err(PageSizeOutOfRange));
        assert_eq!(PageSize::new(1).map(PageSize::get), Ok(1));
        assert_eq!(PageSize::new(MAX_PAGE).map(PageSize::get), Ok(MAX_PAGE));
        assert_eq!(PageSize::new(MAX_PAGE + 1), Err(PageSizeOutOfRange));
        assert_eq!(PageSize::default().get(), 50);
    }
}
