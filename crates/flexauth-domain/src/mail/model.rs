use std::fmt;

use uuid::Uuid;

use crate::newtypes::EmailAddress;

/// What an email is for; stored with the message so operators can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailKind {
    /// The link that proves control of an address after sign-up or on request.
    Verification,
    /// Sent instead of a verification email when someone signs up with a registered address.
    AccountExists,
    /// The link that lets the owner choose a new password.
    PasswordReset,
    /// Confirms that the password was changed by its owner.
    PasswordChanged,
    /// Tells the owner that the password was reset by email and every session ended.
    PasswordWasReset,
    /// Tells the owner that an API key was created, so a key minted by someone else is seen.
    ApiKeyCreated,
    /// Tells the owner that a spent refresh token came back and the session was ended.
    RefreshTokenReuse,
    /// The link, sent to a new address, that moves the account to it.
    EmailChangeConfirmation,
    /// Sent to a new address that has an account already, instead of a confirmation link.
    EmailChangeAddressTaken,
    /// Tells the old address that a change was asked for, with the link that undoes it.
    EmailChangeRequested,
    /// The goodbye after an account was deleted; forgotten once sent.
    AccountDeleted,
    /// Tells the owner that a session was ended after wrong passwords were tried through it.
    SessionEndedForPasswordFailures,
    /// Tells the owner that a second factor was added.
    SecondFactorAdded,
    /// Tells the owner that a second factor was removed.
    SecondFactorRemoved,
    /// Tells the owner that a recovery code was used, and how many are left.
    RecoveryCodeUsed,
    /// Tells the owner that a new set of recovery codes replaced the old one.
    RecoveryCodesRegenerated,
    /// Tells the owner that an operator removed every second factor of the account.
    SecondFactorsReset,
}

impl EmailKind {
    /// Every kind, in declaration order (docs/operations.md lists them).
    pub const ALL: &'static [EmailKind] = &[
        Self::Verification,
        Self::AccountExists,
        Self::PasswordReset,
        Self::PasswordChanged,
        Self::PasswordWasReset,
        Self::ApiKeyCreated,
        Self::RefreshTokenReuse,
        Self::EmailChangeConfirmation,
        Self::EmailChangeAddressTaken,
        Self::EmailChangeRequested,
        Self::AccountDeleted,
        Self::SessionEndedForPasswordFailures,
        Self::SecondFactorAdded,
        Self::SecondFactorRemoved,
        Self::RecoveryCodeUsed,
        Self::RecoveryCodesRegenerated,
        Self::SecondFactorsReset,
    ];

    /// The stable name stored in the outbox.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Verification => "verification",
            Self::AccountExists => "account_exists",
            Self::PasswordReset => "password_reset",
            Self::PasswordChanged => "password_changed",
            Self::PasswordWasReset => "password_was_reset",
            Self::ApiKeyCreated => "api_key_created",
            Self::RefreshTokenReuse => "refresh_token_reuse",
            Self::EmailChangeConfirmation => "email_change_confirmation",
            Self::EmailChangeAddressTaken => "email_change_address_taken",
            Self::EmailChangeRequested => "email_change_requested",
            Self::AccountDeleted => "account_deleted",
            Self::SessionEndedForPasswordFailures => "session_ended_for_password_failures",
            Self::SecondFactorAdded => "second_factor_added",
            Self::SecondFactorRemoved => "second_factor_removed",
            Self::RecoveryCodeUsed => "recovery_code_used",
            Self::RecoveryCodesRegenerated => "recovery_codes_regenerated",
            Self::SecondFactorsReset => "second_factors_reset",
        }
    }

    /// Whether the outbox forgets the message, recipient included, once it is sent: the
    /// goodbye of an erased account must leave no row that holds the address.
    pub fn forgotten_once_sent(&self) -> bool {
        matches!(self, Self::AccountDeleted)
    }

    /// Parses a stored name.
    pub fn from_stored(name: &str) -> Option<Self> {
        match name {
            "verification" => Some(Self::Verification),
            "account_exists" => Some(Self::AccountExists),
            "password_reset" => Some(Self::PasswordReset),
            "password_changed" => Some(Self::PasswordChanged),
            "password_was_reset" => Some(Self::PasswordWasReset),
            "api_key_created" => Some(Self::ApiKeyCreated),
            "refresh_token_reuse" => Some(Self::RefreshTokenReuse),
            "email_change_confirmation" => Some(Self::EmailChangeConfirmation),
            "email_change_address_taken" => Some(Self::EmailChangeAddressTaken),
            "email_change_requested" => Some(Self::EmailChangeRequested),
            "account_deleted" => Some(Self::AccountDeleted),
            "session_ended_for_password_failures" => Some(Self::SessionEndedForPasswordFailures),
            "second_factor_added" => Some(Self::SecondFactorAdded),
            "second_factor_removed" => Some(Self::SecondFactorRemoved),
            "recovery_code_used" => Some(Self::RecoveryCodeUsed),
            "recovery_codes_regenerated" => Some(Self::RecoveryCodesRegenerated),
            "second_factors_reset" => Some(Self::SecondFactorsReset),
            _ => None,
        }
    }
}

/// A rendered email, ready to be queued and sent.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    id: Uuid,
    kind: EmailKind,
    to: EmailAddress,
    subject: String,
    text_body: String,
    html_body: String,
}

impl OutgoingEmail {
    /// Builds a message; `id` becomes its `Message-ID`, so a receiving server can recognise a
    /// retry of the same message.
    pub fn new(
        id: Uuid,
        kind: EmailKind,
        to: EmailAddress,
        subject: String,
        text_body: String,
        html_body: String,
    ) -> Self {
        Self { id, kind, to, subject, text_body, html_body }
    }

    /// The message identifier.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// What the message is for.
    pub fn kind(&self) -> EmailKind {
        self.kind
    }

    /// The recipient.
    pub fn to(&self) -> &EmailAddress {
        &self.to
    }

    /// The subject line.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The plain-text body.
    pub fn text_body(&self) -> &str {
        &self.text_body
    }

    /// The HTML body.
    pub fn html_body(&self) -> &str {
        &self.html_body
    }
}

impl fmt::Debug for OutgoingEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bodies hold single-use links, which are secrets until used.
        f.debug_struct("OutgoingEmail")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

/// Proof that one delivery worker holds an outbox entry for a while; marking the entry sent or
/// rescheduling it needs the same lease, so a worker whose lease ran out cannot overwrite the
/// work of the one that took over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseId(Uuid);

impl LeaseId {
    /// Wraps a lease identifier.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

/// An outbox entry claimed for delivery.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    /// The message to deliver.
    pub email: OutgoingEmail,
    /// Delivery attempts made before this one.
    pub attempts: u32,
    /// The lease under which this worker holds the entry.
    pub lease: LeaseId,
}

#[cfg(test)]
mod tests {
    use super::EmailKind;

    /// Fails to compile when a kind is added without a place here, and fails when `ALL` lacks
    /// it: then `ALL`, the stored names and docs/operations.md must be extended together.
    fn place(kind: EmailKind) -> usize {
        match kind {
            EmailKind::Verification => 0,
            EmailKind::AccountExists => 1,
            EmailKind::PasswordReset => 2,
            EmailKind::PasswordChanged => 3,
            EmailKind::PasswordWasReset => 4,
            EmailKind::ApiKeyCreated => 5,
            EmailKind::RefreshTokenReuse => 6,
            EmailKind::EmailChangeConfirmation => 7,
            EmailKind::EmailChangeAddressTaken => 8,
            EmailKind::EmailChangeRequested => 9,
            EmailKind::AccountDeleted => 10,
            EmailKind::SessionEndedForPasswordFailures => 11,
            EmailKind::SecondFactorAdded => 12,
            EmailKind::SecondFactorRemoved => 13,
            EmailKind::RecoveryCodeUsed => 14,
            EmailKind::RecoveryCodesRegenerated => 15,
            EmailKind::SecondFactorsReset => 16,
        }
    }

    #[test]
    fn every_kind_is_listed_once_and_its_stored_name_reads_back() {
        assert_eq!(EmailKind::ALL.len(), 17);
        for (index, kind) in EmailKind::ALL.iter().enumerate() {
            assert_eq!(place(*kind), index);
            assert_eq!(EmailKind::from_stored(kind.as_str()), Some(*kind));
        }
    }
}
