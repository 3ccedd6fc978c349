//! Proving the password again from a live session: re-authentication and a password change.
//! A stolen access token is enough to ask, so each check is counted before the hash, per
//! session, per account and per client address, and refunded only when the password is right;
//! every wrong password goes to the owner's log, and the one that reaches the session's limit
//! ends the session and tells the owner.

use time::OffsetDateTime;

use super::SessionService;
use crate::account::{
    Account, ChangePasswordError, CredentialChange, NewPassword, Password, PasswordCheck, PasswordCheckError,
    PasswordChecker, SessionsToEnd,
};
use crate::audit::AuditKind;
use crate::mail::Letter;
use crate::newtypes::{ClientInfo, RevocationReason};
use crate::principal::{LiveSession, SessionEnded};
use crate::session::ReauthenticateError;
use crate::system::random_uuid;
use crate::InfraError;

impl From<ReauthenticateError> for ChangePasswordError {
    fn from(error: ReauthenticateError) -> Self {
        match error {
            ReauthenticateError::WrongPassword => Self::WrongPassword,
            ReauthenticateError::SessionEnded(ended) => Self::SessionEnded(ended),
            ReauthenticateError::Throttled(limited) => Self::Throttled(limited),
            ReauthenticateError::Overloaded => Self::Overloaded,
            ReauthenticateError::Unexpected(cause) => Self::Unexpected(cause),
        }
    }
}

impl SessionService {
    /// Renews the caller's recent authentication by checking the account's password, for the
    /// operations that need one (creating an API key, moving or deleting the account).
    ///
    /// # Errors
    /// [`ReauthenticateError::WrongPassword`] (the session ends when it is the check that
    /// reaches its limit), [`ReauthenticateError::Throttled`],
    /// [`ReauthenticateError::SessionEnded`], [`ReauthenticateError::Overloaded`] or
    /// [`ReauthenticateError::Unexpected`].
    pub async fn reauthenticate(
        &self,
        caller: &LiveSession,
        password: &Password,
        client: &ClientInfo,
    ) -> Result<OffsetDateTime, ReauthenticateError> {
        self.check_current_password(caller, password, client).await?;
        let now = self.clock.now();
        if self.sessions.mark_authenticated(caller.session_id(), now).await? {
            Ok(now)
        } else {
            Err(SessionEnded.into())
        }
    }

    /// Changes the caller's password after checking the current one (counted like a
    /// re-authentication); the caller's session stays, every other session ends, every
    /// outstanding reset link is spent, and the owner is told by email. The change commits only
    /// if no other change (a reset) came between the check and the write.
    ///
    /// # Errors
    /// [`ChangePasswordError`].
    pub async fn change_password(
        &self,
        caller: &LiveSession,
        current: &Password,
        new: &NewPassword,
        client: &ClientInfo,
    ) -> Result<(), ChangePasswordError> {
        // A thief with the password and a session must not lock the owner out by changing
        // it: with a second factor, the session must have proved it recently.
        caller.require_recent_second_factor(self.clock.now(), self.mfa.settings().step_up_window)?;
        let account = self.check_current_password(caller, current, client).await?;
        let password_hash = self.hasher.hash(new.as_password()).await?;
        let now = self.clock.now();
        let change = CredentialChange {
            account_id: account.id(),
            password_hash,
            expected_version: Some(account.credential_version()),
            reset_link: None,
            end_sessions: SessionsToEnd::AllExcept(caller.session_id()),
            reason: RevocationReason::PasswordChange,
            verify_email: false,
            revoke_keys_made_before: None,
            notice: self.letters.email(
                random_uuid(self.random.as_ref()),
                account.email().clone(),
                &Letter::PasswordChanged,
            ),
            at: now,
            event: self.event(account.id(), AuditKind::PasswordChanged, now, client, Some(caller.session_id())),
        };
        if self.accounts.apply_credential_change(&change).await? {
            Ok(())
        } else {
            Err(ChangePasswordError::CredentialsChanged)
        }
    }

    /// Checks `password` against the caller's account, within the limits, and returns the
    /// account when it is right.
    async fn check_current_password(
        &self,
        caller: &LiveSession,
        password: &Password,
        client: &ClientInfo,
    ) -> Result<Account, ReauthenticateError> {
        let now = self.clock.now();
        let counters = self.settings.limits.password_check_counters(
            Some(caller.session_id()),
            caller.account_id(),
            client.ip.as_deref(),
        );
        let checker = PasswordChecker {
            accounts: self.accounts.as_ref(),
            hasher: self.hasher.as_ref(),
            limiter: self.limiter.as_ref(),
        };
        match checker.check(caller.account_id(), password, &counters, now).await {
            Ok(PasswordCheck::Right(account)) => Ok(account),
            Ok(PasswordCheck::Wrong { account, used_up }) => {
                self.record_wrong_password(&account, caller, client, now, used_up).await?;
                Err(ReauthenticateError::WrongPassword)
            }
            Ok(PasswordCheck::NoAccount) => Err(SessionEnded.into()),
            Err(PasswordCheckError::Throttled(limited)) => Err(limited.into()),
            Err(PasswordCheckError::Overloaded) => Err(ReauthenticateError::Overloaded),
            Err(PasswordCheckError::Unexpected(cause)) => Err(cause.into()),
        }
    }

    /// Logs a wrong password; when it used up the session's last check, ends the session and
    /// tells the owner, in one write.
    async fn record_wrong_password(
        &self,
        account: &Account,
        caller: &LiveSession,
        client: &ClientInfo,
        now: OffsetDateTime,
        end_session: bool,
    ) -> Result<(), InfraError> {
        let session = Some(caller.session_id());
        self.audit.record(&self.event(account.id(), AuditKind::PasswordCheckFailed, now, client, session)).await?;
        if end_session {
            let letter = Letter::SessionEndedForPasswordFailures {
                client_ip: client.ip.as_deref().and_then(|address| address.parse().ok()),
            };
            let notice = self.letters.email(random_uuid(self.random.as_ref()), account.email().clone(), &letter);
            let event = self.event(account.id(), AuditKind::SessionEndedForPasswordFailures, now, client, session);
            self.sessions
                .revoke_with_notice(caller.session_id(), now, RevocationReason::PasswordFailures, &notice, &event)
                .await?;
        }
        Ok(())
    }
}
