use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{AuditEvent, AuditKind};
use crate::newtypes::{AccountId, ApiKeyId, ClientInfo, EmailAddress, FactorId, RevocationReason, SessionId};

/// What happened, as the operator's application is told: the `type` of a webhook message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// An account signed up (unverified until its address is confirmed).
    AccountCreated,
    /// The account's address was confirmed.
    AccountVerified,
    /// The account moved to another address, or an undo link moved it back.
    AccountEmailChanged,
    /// An operator disabled the account.
    AccountDisabled,
    /// An operator enabled the account again.
    AccountEnabled,
    /// The account was erased, by its owner or an operator.
    AccountDeleted,
    /// A login opened a session.
    SessionCreated,
    /// A session ended, with the reason.
    SessionEnded,
    /// The owner changed the password.
    PasswordChanged,
    /// The password was set with a reset link.
    PasswordReset,
    /// An API key was created.
    ApiKeyCreated,
    /// An API key stopped working, with the reason.
    ApiKeyRevoked,
    /// A second factor was confirmed and counts from now on.
    MfaFactorAdded,
    /// A second factor was removed, by the owner or (all of them) by an operator.
    MfaFactorRemoved,
    /// A recovery code was spent.
    MfaRecoveryCodeUsed,
    /// A new set of recovery codes replaced the old one.
    MfaRecoveryCodesRegenerated,
}

impl EventType {
    /// Every type, in the order of the documentation.
    pub const ALL: [Self; 16] = [
        Self::AccountCreated,
        Self::AccountVerified,
        Self::AccountEmailChanged,
        Self::AccountDisabled,
        Self::AccountEnabled,
        Self::AccountDeleted,
        Self::SessionCreated,
        Self::SessionEnded,
        Self::PasswordChanged,
        Self::PasswordReset,
        Self::ApiKeyCreated,
        Self::ApiKeyRevoked,
        Self::MfaFactorAdded,
        Self::MfaFactorRemoved,
        Self::MfaRecoveryCodeUsed,
        Self::MfaRecoveryCodesRegenerated,
    ];

    /// The stable name sent as the message's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountCreated => "account.created",
            Self::AccountVerified => "account.verified",
            Self::AccountEmailChanged => "account.email_changed",
            Self::AccountDisabled => "account.disabled",
            Self::AccountEnabled => "account.enabled",
            Self::AccountDeleted => "account.deleted",
            Self::SessionCreated => "session.created",
            Self::SessionEnded => "session.ended",
            Self::PasswordChanged => "password.changed",
            Self::PasswordReset => "password.reset",
            Self::ApiKeyCreated => "api_key.created",
            Self::ApiKeyRevoked => "api_key.revoked",
            Self::MfaFactorAdded => "mfa.factor_added",
            Self::MfaFactorRemoved => "mfa.factor_removed",
            Self::MfaRecoveryCodeUsed => "mfa.recovery_code_used",
            Self::MfaRecoveryCodesRegenerated => "mfa.recovery_codes_regenerated",
        }
    }

    /// Reads a stored or typed name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an API key stopped working, as `api_key.revoked` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRevocationReason {
    /// Its owner revoked it.
    Revoked,
    /// The password was reset: keys made before stop working.
    PasswordReset,
    /// An operator disabled the account.
    AccountDisabled,
    /// The undo link of an address change was used.
    EmailChangeUndone,
    /// The account was deleted.
    AccountDeleted,
    /// It reached its expiry.
    Expired,
}

impl KeyRevocationReason {
    /// The stable name sent as `data.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::PasswordReset => "password_reset",
            Self::AccountDisabled => "account_disabled",
            Self::EmailChangeUndone => "email_change_undone",
            Self::AccountDeleted => "account_deleted",
            Self::Expired => "expired",
        }
    }
}

/// How a write at `now` that stops a session or an API key announces it, if at all: for
/// `reason` when it still worked (its `expires_at` later than `now`, or none); as `expired`
/// at its expiry when it had expired already within the last day and that expiry was not
/// announced yet; not at all when its expiry was announced, or is older than a day (the purge
/// announces no older expiry either). So each session and each key is announced once,
/// whichever write stops it first.
pub fn ending_announcement<R>(
    expires_at: Option<OffsetDateTime>,
    expiry_announced: bool,
    now: OffsetDateTime,
    reason: R,
    expired: R,
) -> Option<(R, OffsetDateTime)> {
    match expires_at {
        _ if expiry_announced => None,
        Some(at) if at <= now && at > now - time::Duration::days(1) => Some((expired, at)),
        Some(at) if at <= now => None,
        _ => Some((reason, now)),
    }
}

/// One event for the operator's application: written in the same transaction as the change
/// that caused it, then delivered to every endpoint that subscribes to its type.
///
/// It carries identifiers, the address where the event is about the address, and the client
/// of the request where there was one; never a password, a token, a key or a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// The message id (`webhook-id`): the same for every attempt and every endpoint, so a
    /// receiver that remembers it handles each event once.
    pub id: Uuid,
    /// What happened.
    pub event_type: EventType,
    /// When it happened (the message's `timestamp`).
    pub at: OffsetDateTime,
    /// The account it is about.
    pub account_id: AccountId,
    /// The address, for the events about the address (created, verified, email changed).
    pub email: Option<EmailAddress>,
    /// The session concerned, if any.
    pub session_id: Option<SessionId>,
    /// The API key concerned, if any.
    pub key_id: Option<ApiKeyId>,
    /// The second factor concerned, if any.
    pub factor_id: Option<FactorId>,
    /// Why a session ended or a key stopped working.
    pub reason: Option<String>,
    /// The client address and user agent: of the request that caused the event, or, for
    /// `session.ended`, the ones the session logged in with.
    pub client: ClientInfo,
}

impl WebhookEvent {
    fn bare(id: Uuid, event_type: EventType, account_id: AccountId, at: OffsetDateTime) -> Self {
        Self {
            id,
            event_type,
            at,
            account_id,
            email: None,
            session_id: None,
            key_id: None,
            factor_id: None,
            reason: None,
            client: ClientInfo::default(),
        }
    }

    /// The event an entry of the security log makes, if it makes one. Sessions that end and
    /// keys that stop working are announced one by one where they end
    /// ([`WebhookEvent::session_ended`], [`WebhookEvent::key_revoked`]), an erasure announces
    /// the account it erased ([`WebhookEvent::account_deleted`]; its log entry names a replaced
    /// id), and a sign-up and a confirmation, which the security log does not show, are
    /// announced where the account is stored ([`WebhookEvent::account_created`],
    /// [`WebhookEvent::account_verified`]); those entries make none here.
    pub fn from_audit(entry: &AuditEvent) -> Option<Self> {
        let event_type = match entry.kind {
            AuditKind::EmailChanged => EventType::AccountEmailChanged,
            // The store announces an undo only when it moved the account back: one that
            // cancelled a change before it was confirmed moved nothing.
            AuditKind::EmailChangeUndone => EventType::AccountEmailChanged,
            AuditKind::AccountDisabled => EventType::AccountDisabled,
            AuditKind::AccountEnabled => EventType::AccountEnabled,
            AuditKind::LoginSucceeded => EventType::SessionCreated,
            AuditKind::PasswordChanged => EventType::PasswordChanged,
            AuditKind::PasswordReset => EventType::PasswordReset,
            AuditKind::ApiKeyCreated => EventType::ApiKeyCreated,
            AuditKind::SecondFactorAdded => EventType::MfaFactorAdded,
            AuditKind::SecondFactorRemoved | AuditKind::SecondFactorsReset => EventType::MfaFactorRemoved,
            AuditKind::RecoveryCodeUsed => EventType::MfaRecoveryCodeUsed,
            AuditKind::RecoveryCodesRegenerated => EventType::MfaRecoveryCodesRegenerated,
            AuditKind::ApiKeyRevoked
            | AuditKind::AccountDeleted
            | AuditKind::RefreshTokenReuse
            | AuditKind::SessionEndedForPasswordFailures
            | AuditKind::LoginFailed
            | AuditKind::LoginThrottled
            | AuditKind::EmailChangeRequested
            | AuditKind::AccountExported
            | AuditKind::PasswordCheckFailed
            | AuditKind::SecondFactorFailed => return None,
        };
        let mut event = Self::bare(entry.id, event_type, entry.account_id, entry.at);
        event.email = entry.email.clone();
        event.session_id = entry.session_id;
        event.key_id = entry.key_id;
        event.factor_id = entry.factor_id;
        event.client = ClientInfo { device: None, ..entry.client.clone() };
        Some(event)
    }

    /// `session.ended` for session `session_id` of `account_id`, which ended at `at` for
    /// `reason`; `client` is what the session logged in with.
    pub fn session_ended(
        id: Uuid,
        account_id: AccountId,
        session_id: SessionId,
        reason: RevocationReason,
        at: OffsetDateTime,
        client: ClientInfo,
    ) -> Self {
        let mut event = Self::bare(id, EventType::SessionEnded, account_id, at);
        event.session_id = Some(session_id);
        event.reason = Some(reason.as_str().to_owned());
        event.client = ClientInfo { device: None, ..client };
        event
    }

    /// `api_key.revoked` for key `key_id` of `account_id`, which stopped working at `at`.
    pub fn key_revoked(
        id: Uuid,
        account_id: AccountId,
        key_id: ApiKeyId,
        reason: KeyRevocationReason,
        at: OffsetDateTime,
    ) -> Self {
        let mut event = Self::bare(id, EventType::ApiKeyRevoked, account_id, at);
        event.key_id = Some(key_id);
        event.reason = Some(reason.as_str().to_owned());
        event
    }

    /// `account.created` for `account_id`, which signed up with `email` at `at`.
    pub fn account_created(id: Uuid, account_id: AccountId, email: EmailAddress, at: OffsetDateTime) -> Self {
        let mut event = Self::bare(id, EventType::AccountCreated, account_id, at);
        event.email = Some(email);
        event
    }

    /// `account.verified` for `account_id`, whose address `email` was confirmed at `at`.
    pub fn account_verified(id: Uuid, account_id: AccountId, email: EmailAddress, at: OffsetDateTime) -> Self {
        let mut event = Self::bare(id, EventType::AccountVerified, account_id, at);
        event.email = Some(email);
        event
    }

    /// `account.deleted` for `account_id`, erased at `at`.
    pub fn account_deleted(id: Uuid, account_id: AccountId, at: OffsetDateTime, client: ClientInfo) -> Self {
        let mut event = Self::bare(id, EventType::AccountDeleted, account_id, at);
        event.client = ClientInfo { device: None, ..client };
        event
    }

    /// `account.deleted` with the reason `never_verified` for `account_id`, a sign-up nobody
    /// confirmed, removed at `at` (by the purge, or because another account took its address).
    pub fn never_verified_deleted(id: Uuid, account_id: AccountId, at: OffsetDateTime) -> Self {
        let mut event = Self::bare(id, EventType::AccountDeleted, account_id, at);
        event.reason = Some("never_verified".to_owned());
        event
    }

    /// The same event, naming the client of the request that caused it.
    #[must_use]
    pub fn from_client(self, client: ClientInfo) -> Self {
        Self { client: ClientInfo { device: None, ..client }, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::MockSecureRandom;
    use time::macros::datetime;

    const AT: OffsetDateTime = datetime!(2026-12-06 12:00 UTC);

    fn random() -> MockSecureRandom {
        let mut random = MockSecureRandom::new();
        random.expect_fill().returning(|buffer| buffer.fill(3));
        random
    }

    #[test]
    fn a_stopped_session_or_key_is_announced_once_for_its_reason_or_as_expired() {
        let ending = |expires: Option<OffsetDateTime>, announced| {
            ending_announcement(expires, announced, AT, "revoked", "expired")
        };
        assert_eq!(ending(None, false), Some(("revoked", AT)));
        assert_eq!(ending(Some(AT + time::Duration::hours(1)), false), Some(("revoked", AT)));
        let earlier = AT - time::Duration::hours(2);
        assert_eq!(ending(Some(earlier), false), Some(("expired", earlier)));
        assert_eq!(ending(Some(earlier), true), None, "its expiry was announced");
        assert_eq!(ending(Some(AT - time::Duration::days(2)), false), None, "too old to announce");
    }

    #[test]
    fn every_type_reads_back_from_its_name_and_names_are_unique() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
        }
        let mut names: Vec<_> = EventType::ALL.iter().map(|kind| kind.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventType::ALL.len());
        assert_eq!(EventType::parse("account.*"), None);
    }

    #[test]
    fn a_login_announces_its_session_with_the_client_but_never_the_device_token() {
        let random = random();
        let mut client = ClientInfo::new(Some("agent"), Some("192.0.2.7".into()));
        client.device = Some(crate::secret::DeviceToken::generate(&random));
        let session = SessionId::from_uuid(Uuid::from_u128(5));
        let entry = AuditEvent::new(&random, AccountId::from_uuid(Uuid::nil()), AuditKind::LoginSucceeded, AT)
            .from_client(client)
            .of_session(session);
        let event = WebhookEvent::from_audit(&entry).unwrap();
        assert_eq!(
            (event.id, event.event_type, event.session_id, event.client.device.is_none()),
            (entry.id, EventType::SessionCreated, Some(session), true)
        );
        assert_eq!(event.client.ip.as_deref(), Some("192.0.2.7"));
    }

    #[test]
    fn entries_whose_endings_are_announced_one_by_one_make_no_event_of_their_own() {
        let random = random();
        for kind in
            [AuditKind::ApiKeyRevoked, AuditKind::AccountDeleted, AuditKind::RefreshTokenReuse, AuditKind::LoginFailed]
        {
            let entry = AuditEvent::new(&random, AccountId::from_uuid(Uuid::nil()), kind, AT);
            assert_eq!(WebhookEvent::from_audit(&entry), None, "{kind:?}");
        }
    }

    #[test]
    fn an_undo_that_moved_the_account_back_announces_the_address_it_moved_to() {
        let random = random();
        let address = EmailAddress::parse("old@example.com").unwrap();
        let entry = AuditEvent::new(&random, AccountId::from_uuid(Uuid::nil()), AuditKind::EmailChangeUndone, AT)
            .about_address(address.clone());
        let event = WebhookEvent::from_audit(&entry).unwrap();
        assert_eq!((event.event_type, event.email), (EventType::AccountEmailChanged, Some(address)));
    }
}
