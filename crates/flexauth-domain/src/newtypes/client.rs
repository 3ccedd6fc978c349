//! What every concept records of a request's origin, and why a session ended.

/// Where a login came from, kept with the session so its owner can recognise it in a list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The `User-Agent` header, cut to 256 characters.
    pub user_agent: Option<String>,
    /// The client's IP address as the server saw it.
    pub ip: Option<String>,
    /// The device token the client presented (its cookie), if any. Never stored with the
    /// session: only the login reads it.
    pub device: Option<crate::secret::DeviceToken>,
}

impl ClientInfo {
    /// Keeps what a session list needs, bounded in size.
    pub fn new(user_agent: Option<&str>, ip: Option<String>) -> Self {
        Self {
            user_agent: user_agent.map(|agent| agent.chars().filter(|c| !c.is_control()).take(256).collect()),
            ip,
            device: None,
        }
    }
}

/// Why a session ended before its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    /// The user logged out.
    Logout,
    /// A spent refresh token was presented: someone else may hold the session's tokens.
    RefreshTokenReuse,
    /// The password was reset by email: every session ends.
    PasswordReset,
    /// The password was changed: every other session ends.
    PasswordChange,
    /// An operator disabled the account.
    AccountDisabled,
    /// The undo link of an address change was used: every session ends.
    EmailChangeUndone,
    /// The session reached its limit of password checks with a wrong password.
    PasswordFailures,
    /// The owner ended it from another session (one session, or every other one).
    Revoked,
    /// It reached the end of its lifetime, or went unused for longer than its refresh token
    /// lives, without being ended first.
    Expired,
    /// The account was deleted.
    AccountDeleted,
}

impl RevocationReason {
    /// The stable name stored with the session.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::RefreshTokenReuse => "refresh_token_reuse",
            Self::PasswordReset => "password_reset",
            Self::PasswordChange => "password_change",
            Self::AccountDisabled => "account_disabled",
            Self::EmailChangeUndone => "email_change_undone",
            Self::PasswordFailures => "password_failures",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::AccountDeleted => "account_deleted",
        }
    }
}
