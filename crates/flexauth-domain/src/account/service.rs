use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::errors::{AccountLookupError, ChangePasswordError, ResetPasswordError, SignupError, VerifyEmailError};
use super::model::LinkTokenState;
use super::plan::{CredentialChange, EmailConfirmation, SessionsToEnd};
use super::{
    Account, AccountRepository, AccountRequestQueue, LinkTokenRecord, NewPassword, PasswordHash, PasswordHasher,
    SignupAttempt,
};
use crate::audit::{AuditEvent, AuditKind};
use crate::limits::{email_key, LimitSettings, RateLimiter};
use crate::mail::{Letter, Letters, Outbox};
use crate::newtypes::{ClientInfo, RevocationReason};
use crate::principal::{AccountGone, Principal};
use crate::secret::LinkToken;
use crate::system::{random_uuid, Clock, SecureRandom};
use crate::InfraError;

/// How many unused sign-up attempts an unverified address keeps; a further attempt drops the
/// oldest. It bounds the hashes a login on an unverified address may check.
pub const MAX_PENDING_SIGNUP_ATTEMPTS: u32 = 3;

/// How long the worker holds a claimed account request before another may take it over.
const REQUEST_LEASE: Duration = Duration::minutes(2);
/// How many requests one worker pass claims.
const REQUEST_BATCH: u32 = 20;

/// What one pass over the account requests did.
#[derive(Debug, Default)]
pub struct RequestsReport {
    /// Requests handled and removed from the queue.
    pub handled: usize,
    /// Requests whose handling failed, with the cause; they are tried again after their lease.
    pub failed: Vec<(uuid::Uuid, InfraError)>,
}

/// Settings of the account use cases.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    /// How long a verification link works.
    pub verification_ttl: Duration,
    /// How long a password reset link works.
    pub password_reset_ttl: Duration,
    /// The limits on requests per address and emails per recipient.
    pub limits: LimitSettings,
}

/// What a confirmation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// The address is now verified.
    Verified,
    /// The link had been used before; the address stays verified.
    AlreadyVerified,
}

/// What the page behind a verification link shows; opening it changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmationPage {
    /// One button that confirms, activating the password chosen at the sign-up made at this
    /// instant (shown, so that someone who did not sign up then can tell).
    ConfirmButton {
        /// When the sign-up was made.
        signed_up_at: OffsetDateTime,
    },
    /// A password field and a button: this link was resent, or other sign-ups for the address
    /// are pending, so the person confirming chooses the password that becomes active.
    ChoosePassword,
    /// The link was used; the address is verified.
    AlreadyVerified,
}

super::password::from_hash_error!(SignupError, VerifyEmailError, ResetPasswordError, ChangePasswordError);

/// The one hash a login on an unverified account checks: the password of its newest pending
/// sign-up attempt that has one. One, not each attempt's: a wrong password then costs the same
/// single verification on every address, registered, pending or unknown, so its time tells
/// nothing (an attacker can create pending attempts for any address by signing it up).
pub fn newest_pending_password(attempts: &[SignupAttempt]) -> Option<&PasswordHash> {
    attempts
        .iter()
        .filter(|attempt| attempt.password_hash().is_some())
        .max_by_key(|attempt| attempt.created_at())
        .and_then(SignupAttempt::password_hash)
}

/// Whether confirming with `attempt` needs the person to choose the password: always for a
/// resent link (nobody chose one for it), and whenever another attempt is pending, since then
/// nothing tells whose attempt this link is, and the password that becomes active must be one
/// the confirming person chose.
fn confirmation_needs_password(attempt: &SignupAttempt, pending: &[SignupAttempt]) -> bool {
    attempt.password_hash().is_none() || pending.iter().any(|other| other.link().hash() != attempt.link().hash())
}

/// Sign-up, email verification, password reset, account lookup.
#[derive(Clone)]
pub struct AccountService {
    accounts: Arc<dyn AccountRepository>,
    requests: Arc<dyn AccountRequestQueue>,
    outbox: Arc<dyn Outbox>,
    hasher: Arc<dyn PasswordHasher>,
    limiter: Arc<dyn RateLimiter>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
    letters: Letters,
    settings: AccountSettings,
}

impl std::fmt::Debug for AccountService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountService").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl AccountService {
    /// Wires the service to its ports.
    // One argument per port, each a distinct capability: bundling them into a struct would
    // only rename the same list.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        accounts: Arc<dyn AccountRepository>,
        requests: Arc<dyn AccountRequestQueue>,
        outbox: Arc<dyn Outbox>,
        hasher: Arc<dyn PasswordHasher>,
        limiter: Arc<dyn RateLimiter>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn SecureRandom>,
        letters: Letters,
        settings: AccountSettings,
    ) -> Self {
        Self { accounts, requests, outbox, hasher, limiter, clock, random, letters, settings }
    }

    /// What the page behind a verification link shows. Opening the link (as a mail scanner
    /// does) spends nothing.
    ///
    /// # Errors
    /// [`VerifyEmailError::InvalidToken`], [`VerifyEmailError::Expired`] or
    /// [`VerifyEmailError::Unexpected`].
    pub async fn confirmation_page(&self, token: &LinkToken) -> Result<ConfirmationPage, VerifyEmailError> {
        let now = self.clock.now();
        let Some(attempt) = self.usable_attempt(token, now).await? else {
            return Ok(ConfirmationPage::AlreadyVerified);
        };
        let pending = self.accounts.pending_signup_attempts(attempt.link().account_id(), now).await?;
        Ok(if confirmation_needs_password(&attempt, &pending) {
            ConfirmationPage::ChoosePassword
        } else {
            ConfirmationPage::ConfirmButton { signed_up_at: attempt.created_at() }
        })
    }

    /// The attempt behind `token` if its link can still confirm; `None` if it was used.
    async fn usable_attempt(
        &self,
        token: &LinkToken,
        now: OffsetDateTime,
    ) -> Result<Option<SignupAttempt>, VerifyEmailError> {
        let attempt = self.accounts.find_signup_attempt(&token.hash()).await?.ok_or(VerifyEmailError::InvalidToken)?;
        match attempt.link().state_at(now) {
            LinkTokenState::AlreadyUsed => Ok(None),
            LinkTokenState::Expired => Err(VerifyEmailError::Expired),
            LinkTokenState::Usable => Ok(Some(attempt)),
        }
    }

    /// Confirms an address with a verification link. The password that becomes active is the
    /// attempt's own when the link came from the only pending sign-up; otherwise `password`
    /// must be given, and it becomes the password. Every other pending attempt is discarded. A
    /// link used before answers [`VerifyOutcome::AlreadyVerified`].
    ///
    /// # Errors
    /// [`VerifyEmailError::InvalidToken`], [`VerifyEmailError::Expired`],
    /// [`VerifyEmailError::PasswordRequired`] or [`VerifyEmailError::Unexpected`].
    pub async fn confirm_email(
        &self,
        token: &LinkToken,
        password: Option<&NewPassword>,
    ) -> Result<VerifyOutcome, VerifyEmailError> {
        let now = self.clock.now();
        let Some(attempt) = self.usable_attempt(token, now).await? else {
            return Ok(VerifyOutcome::AlreadyVerified);
        };
        let password_hash = match (password, attempt.password_hash()) {
            (Some(chosen), _) => self.hasher.hash(chosen.as_password()).await?,
            (None, Some(own)) => {
                let pending = self.accounts.pending_signup_attempts(attempt.link().account_id(), now).await?;
                if confirmation_needs_password(&attempt, &pending) {
                    return Err(VerifyEmailError::PasswordRequired);
                }
                own.clone()
            }
            (None, None) => return Err(VerifyEmailError::PasswordRequired),
        };
        let confirmation = EmailConfirmation {
            account_id: attempt.link().account_id(),
            attempt: *attempt.link().hash(),
            password_hash,
            confirmed_at: now,
        };
        if self.accounts.confirm_email(&confirmation).await? {
            return Ok(VerifyOutcome::Verified);
        }
        // A concurrent confirmation with this link won; with another link, this one is gone.
        match self.usable_attempt(token, now).await? {
            None => Ok(VerifyOutcome::AlreadyVerified),
            Some(_) => Err(VerifyEmailError::InvalidToken),
        }
    }

    /// The caller's own account (JWT callers only, like every account operation).
    ///
    /// # Errors
    /// [`AccountLookupError`].
    pub async fn me(&self, caller: &Principal) -> Result<Account, AccountLookupError> {
        caller.require_session()?;
        self.accounts.find_by_id(caller.account_id).await?.ok_or(AccountGone.into())
    }

    /// Checks a reset link without spending it, so the page behind it can show the form or
    /// say why not. Opening the link (or a mail scanner prefetching it) changes nothing.
    ///
    /// # Errors
    /// [`ResetPasswordError`].
    pub async fn check_password_reset(&self, token: &LinkToken) -> Result<(), ResetPasswordError> {
        self.usable_reset(token, self.clock.now()).await.map(|_| ())
    }

    async fn usable_reset(
        &self,
        token: &LinkToken,
        now: OffsetDateTime,
    ) -> Result<LinkTokenRecord, ResetPasswordError> {
        let record = self.accounts.find_password_reset(&token.hash()).await?.ok_or(ResetPasswordError::InvalidToken)?;
        match record.state_at(now) {
            LinkTokenState::Usable => Ok(record),
            LinkTokenState::AlreadyUsed => Err(ResetPasswordError::InvalidToken),
            LinkTokenState::Expired => Err(ResetPasswordError::Expired),
        }
    }

    /// Sets a new password with a reset link: the link and every other reset link of the
    /// account are spent, every session ends, the address counts as verified, and the owner is
    /// told by email.
    ///
    /// # Errors
    /// [`ResetPasswordError`].
    pub async fn reset_password(
        &self,
        token: &LinkToken,
        password: &NewPassword,
        client_address: Option<&str>,
    ) -> Result<(), ResetPasswordError> {
        self.count_request(client_address).await.map_err(|error| match error {
            SignupError::Throttled(limited) => ResetPasswordError::Throttled(limited),
            SignupError::Overloaded => ResetPasswordError::Overloaded,
            SignupError::Unexpected(cause) => ResetPasswordError::Unexpected(cause),
        })?;
        let now = self.clock.now();
        let record = self.usable_reset(token, now).await?;
        let Some(account) = self.accounts.find_by_id(record.account_id()).await? else {
            return Err(ResetPasswordError::InvalidToken);
        };
        let password_hash = self.hasher.hash(password.as_password()).await?;
        let change = CredentialChange {
            account_id: account.id(),
            password_hash,
            expected_version: None,
            reset_link: Some(*record.hash()),
            end_sessions: SessionsToEnd::All,
            reason: RevocationReason::PasswordReset,
            verify_email: true,
            // The reset proves the mailbox of the address the account has now; keys made before
            // that address was proven were made by whoever held the account at another one.
            revoke_keys_made_before: account.email_verified_at(),
            notice: self.letters.email(
                random_uuid(self.random.as_ref()),
                account.email().clone(),
                &Letter::PasswordWasReset,
            ),
            at: now,
            event: AuditEvent::new(self.random.as_ref(), account.id(), AuditKind::PasswordReset, now)
                .from_client(ClientInfo::new(None, client_address.map(str::to_owned))),
        };
        if !self.accounts.apply_credential_change(&change).await? {
            return Err(ResetPasswordError::InvalidToken);
        }
        // The owner proved control of the mailbox: failed logins by others no longer hold the
        // account back.
        if self.settings.limits.enabled {
            for policy in self.settings.limits.account_login_limits() {
                self.limiter.reset(&email_key(account.email()), &policy).await?;
            }
        }
        Ok(())
    }
}

mod requests;
#[cfg(test)]
mod tests;
