//! Proving the password again from a live session: re-authentication and a password change.
//! A stolen access token is enough to ask, so each check is counted before the hash, per
//! session, per account and per client address, and refunded only when the password is right;
//! every wrong password goes to the owner's log, and the one that reaches the session's limit
//! ends the session and tells the owner.

use time::OffsetDateTime;

use super::SessionService;
use crate::account::{Account, ChangePasswordError, CredentialChange, HashError, NewPassword, Password, SessionsToEnd};
use crate::audit::AuditKind;
use crate::limits::{address_key, LimitDecision, LimitPolicy, RateLimited};
use crate::mail::{password_changed_email, session_ended_for_password_failures_email};
use crate::newtypes::{ClientInfo, RevocationReason};
use crate::principal::LiveSession;
use crate::session::ReauthenticateError;
use crate::system::random_uuid;
use crate::InfraError;

impl From<ReauthenticateError> for ChangePasswordError {
    fn from(error: ReauthenticateError) -> Self {
        match error {
            ReauthenticateError::WrongPassword => Self::WrongPassword,
            ReauthenticateError::SessionEnded => Self::SessionEnded,
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
            Err(ReauthenticateError::SessionEnded)
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
            notice: password_changed_email(
                random_uuid(self.random.as_ref()),
                account.email().clone(),
                &self.settings.public_url,
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

    /// The counters a check of the caller's password counts against, the session's first.
    fn password_check_counters(&self, caller: &LiveSession, client: &ClientInfo) -> Vec<(String, LimitPolicy)> {
        let limits = &self.settings.limits;
        let mut counters = vec![
            (caller.session_id().to_string(), limits.password_checks_per_session),
            (caller.account_id().to_string(), limits.password_checks_per_account),
        ];
        if let Some(ip) = &client.ip {
            counters.push((address_key(ip), limits.password_checks_per_address));
        }
        counters
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
        let counters = if self.settings.limits.enabled { self.password_check_counters(caller, client) } else { vec![] };
        // Counted before the hash, one atomic step each, so that concurrent guesses cannot all
        // pass a limit none of them has counted yet; refunded below when it was no guess.
        let mut session_count: Option<LimitDecision> = None;
        for (key, policy) in &counters {
            let decision = self.limiter.hit(key, policy, now).await?;
            if !decision.allowed {
                return Err(RateLimited(decision).into());
            }
            session_count.get_or_insert(decision);
        }
        let Some(account) = self.accounts.find_by_id(caller.account_id()).await? else {
            self.hasher.verify_against_dummy(password).await?;
            return Err(ReauthenticateError::SessionEnded);
        };
        match self.hasher.verify(password, account.password_hash()).await {
            Ok(true) => {
                self.refund_password_check(&counters, now).await?;
                Ok(account)
            }
            Ok(false) => {
                let last_chance = session_count.is_some_and(|decision| decision.remaining == 0);
                self.record_wrong_password(&account, caller, client, now, last_chance).await?;
                Err(ReauthenticateError::WrongPassword)
            }
            Err(HashError::Overloaded) => {
                // Nothing was checked: not a guess.
                self.refund_password_check(&counters, now).await?;
                Err(ReauthenticateError::Overloaded)
            }
            Err(HashError::Unexpected(cause)) => Err(cause.into()),
        }
    }

    async fn refund_password_check(
        &self,
        counters: &[(String, LimitPolicy)],
        now: OffsetDateTime,
    ) -> Result<(), InfraError> {
        for (key, policy) in counters {
            self.limiter.refund(key, policy, now).await?;
        }
        Ok(())
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
            let notice = session_ended_for_password_failures_email(
                random_uuid(self.random.as_ref()),
                account.email().clone(),
                &self.settings.public_url,
                client.ip.as_deref(),
            );
            let event = self.event(account.id(), AuditKind::SessionEndedForPasswordFailures, now, client, session);
            self.sessions
                .revoke_with_notice(caller.session_id(), now, RevocationReason::PasswordFailures, &notice, &event)
                .await?;
        }
        Ok(())
    }
}
