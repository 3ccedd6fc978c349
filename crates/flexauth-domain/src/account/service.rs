use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::model::LinkTokenState;
use super::plan::{CredentialChange, EmailConfirmation, SessionsToEnd};
use super::{
    Account, AccountId, AccountRepository, AccountRequest, AccountRequestKind, AccountRequestQueue, CreateAccountError, EmailAddress, LinkTokenRecord,
    NewPassword, Password, PasswordHash, PasswordHasher, SignupAttempt,
};
use crate::audit::{AuditEvent, AuditKind};
use crate::limits::{address_key, email_key, LimitSettings, RateLimited, RateLimiter};
use crate::mail::{
    account_exists_email, password_changed_email, password_reset_email, password_was_reset_email, verification_email, EmailKind, LeaseId, Outbox,
};
use crate::newtypes::ClientInfo;
use crate::newtypes::RevocationReason;
use crate::principal::{LiveSession, Principal, SessionRequired};
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
    /// Base URL of the links in emails, e.g. `https://auth.example.com`.
    pub public_url: String,
    /// How long a verification link works.
    pub verification_ttl: Duration,
    /// How long a password reset link works.
    pub password_reset_ttl: Duration,
    /// The limits on requests per address and emails per recipient.
    pub limits: LimitSettings,
}

/// Why a sign-up (or a resend or forgot request) was not accepted. Only infrastructure can
/// make it fail: a taken address looks like a success to the caller.
#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    /// The password hashing pool is overloaded; nothing was done.
    #[error("the server is overloaded")]
    Overloaded,

    /// Too many such requests from this client address; nothing was stored.
    #[error(transparent)]
    Throttled(#[from] RateLimited),
    /// Storage or hashing failed; nothing was written.
    #[error("the request failed")]
    Unexpected(#[from] InfraError),
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

/// Why a verification link was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyEmailError {
    /// The password hashing pool is overloaded; nothing was done.
    #[error("the server is overloaded")]
    Overloaded,

    /// No such token was ever issued, or a confirmation with another link discarded it.
    #[error("the verification token is not valid")]
    InvalidToken,
    /// The token expired before it was used.
    #[error("the verification token has expired")]
    Expired,
    /// This confirmation must choose the password: the link was resent, or other sign-ups for
    /// the address are pending.
    #[error("choose a password to confirm with this link")]
    PasswordRequired,
    /// Storage or hashing failed.
    #[error("verification failed")]
    Unexpected(#[from] InfraError),
}

/// Why a password reset link was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResetPasswordError {
    /// The password hashing pool is overloaded; nothing was done.
    #[error("the server is overloaded")]
    Overloaded,

    /// Never issued, used already, or spent by a later password change or reset.
    #[error("the reset token is not valid")]
    InvalidToken,
    /// The link expired before it was used.
    #[error("the reset token has expired")]
    Expired,
    /// Too many resets from this client address; nothing was checked.
    #[error(transparent)]
    Throttled(#[from] RateLimited),
    #[error("resetting the password failed")]
    Unexpected(#[from] InfraError),
}

/// Why a password change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangePasswordError {
    /// The password hashing pool is overloaded; nothing was done.
    #[error("the server is overloaded")]
    Overloaded,

    /// The current password given is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// The password changed (a reset) between the check of the current one and the write;
    /// the reset ended this session too.
    #[error("the password was changed meanwhile")]
    CredentialsChanged,
    #[error("changing the password failed")]
    Unexpected(#[from] InfraError),
}

/// Why the caller's account could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum AccountLookupError {
    #[error(transparent)]
    SessionRequired(#[from] SessionRequired),
    /// The account was deleted after the token was issued.
    #[error("the account no longer exists")]
    Gone,
    #[error("looking up the account failed")]
    Unexpected(#[from] InfraError),
}

super::password::from_hash_error!(SignupError, VerifyEmailError, ResetPasswordError, ChangePasswordError);

/// The hashes a login on an unverified account checks: the passwords of its pending sign-up
/// attempts, newest first, at most [`MAX_PENDING_SIGNUP_ATTEMPTS`].
pub fn pending_password_hashes(attempts: &[SignupAttempt]) -> Vec<PasswordHash> {
    attempts.iter().filter_map(SignupAttempt::password_hash).take(MAX_PENDING_SIGNUP_ATTEMPTS as usize).cloned().collect()
}

/// Whether confirming with `attempt` needs the person to choose the password: always for a
/// resent link (nobody chose one for it), and whenever another attempt is pending, since then
/// nothing tells whose attempt this link is, and the password that becomes active must be one
/// the confirming person chose.
fn confirmation_needs_password(attempt: &SignupAttempt, pending: &[SignupAttempt]) -> bool {
    attempt.password_hash().is_none() || pending.iter().any(|other| other.link().hash() != attempt.link().hash())
}

/// Sign-up, email verification, password reset and change, account lookup.
#[derive(Clone)]
pub struct AccountService {
    accounts: Arc<dyn AccountRepository>,
    requests: Arc<dyn AccountRequestQueue>,
    outbox: Arc<dyn Outbox>,
    hasher: Arc<dyn PasswordHasher>,
    limiter: Arc<dyn RateLimiter>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
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
        settings: AccountSettings,
    ) -> Self {
        Self { accounts, requests, outbox, hasher, limiter, clock, random, settings }
    }

    /// Counts one request that sends mail or spends a hash against the client's address.
    async fn count_request(&self, client_address: Option<&str>) -> Result<(), SignupError> {
        let limits = &self.settings.limits;
        if let (true, Some(address)) = (limits.enabled, client_address) {
            let decision = self.limiter.hit(&address_key(address), &limits.mail_requests_per_address, self.clock.now()).await?;
            if !decision.allowed {
                return Err(RateLimited(decision).into());
            }
        }
        Ok(())
    }

    /// Whether one more email of `kind` may go to `to` now; counts it if so. Past the cap the
    /// request is handled as usual but queues nothing, so a flood of requests cannot flood a
    /// mailbox, and the caller cannot tell.
    async fn within_mail_cap(&self, kind: EmailKind, to: &EmailAddress, now: OffsetDateTime) -> Result<bool, InfraError> {
        let limits = &self.settings.limits;
        if !limits.enabled {
            return Ok(true);
        }
        let decision = self.limiter.hit(&format!("{}:{}", kind.as_str(), email_key(to)), &limits.emails_per_recipient, now).await?;
        Ok(decision.allowed)
    }

    /// Accepts a sign-up: hashes the password and stores one request, whatever the address.
    /// The worker ([`AccountService::handle_due_requests`]) then creates the account, adds an
    /// attempt to an unverified one, or tells the owner of a verified one, so neither the
    /// answer nor its timing reveals whether the address has an account.
    ///
    /// # Errors
    /// [`SignupError::Throttled`] past the per-address limit, [`SignupError::Unexpected`]
    /// when hashing or storage fails.
    pub async fn signup(&self, email: EmailAddress, password: &NewPassword, client_address: Option<&str>) -> Result<(), SignupError> {
        self.count_request(client_address).await?;
        let password_hash = self.hasher.hash(password.as_password()).await?;
        self.submit(email, AccountRequestKind::Signup { password_hash }).await
    }

    /// Accepts a request for a new verification link, with the same work for every address.
    ///
    /// # Errors
    /// [`SignupError::Unexpected`] when storage fails.
    pub async fn resend_verification(&self, email: EmailAddress, client_address: Option<&str>) -> Result<(), SignupError> {
        self.count_request(client_address).await?;
        self.submit(email, AccountRequestKind::ResendVerification).await
    }

    /// Accepts a request for a password reset link, with the same work for every address.
    ///
    /// # Errors
    /// [`SignupError::Unexpected`] when storage fails.
    pub async fn forgot_password(&self, email: EmailAddress, client_address: Option<&str>) -> Result<(), SignupError> {
        self.count_request(client_address).await?;
        self.submit(email, AccountRequestKind::ForgotPassword).await
    }

    async fn submit(&self, email: EmailAddress, kind: AccountRequestKind) -> Result<(), SignupError> {
        let request = AccountRequest { id: random_uuid(self.random.as_ref()), email, kind, requested_at: self.clock.now() };
        Ok(self.requests.submit(&request).await?)
    }

    /// Handles the account requests waiting in the queue. A request whose handling fails
    /// stays queued and is tried again after its lease; the others of the batch go on.
    ///
    /// # Errors
    /// [`InfraError`] when the queue cannot be read.
    pub async fn handle_due_requests(&self) -> Result<RequestsReport, InfraError> {
        let now = self.clock.now();
        let lease = LeaseId::from_uuid(random_uuid(self.random.as_ref()));
        let requests = self.requests.claim(now, lease, now + REQUEST_LEASE, REQUEST_BATCH).await?;
        let mut report = RequestsReport::default();
        for request in requests {
            let outcome = match self.handle(&request).await {
                Ok(()) => self.requests.complete(request.id, lease).await,
                Err(error) => Err(error),
            };
            match outcome {
                Ok(()) => report.handled += 1,
                Err(error) => report.failed.push((request.id, error)),
            }
        }
        Ok(report)
    }

    async fn handle(&self, request: &AccountRequest) -> Result<(), InfraError> {
        let now = self.clock.now();
        let existing = self.accounts.find_by_email(&request.email).await?;
        let mail_kind = match (&request.kind, &existing) {
            (AccountRequestKind::Signup { .. }, Some(account)) if account.is_email_verified() => Some(EmailKind::AccountExists),
            (AccountRequestKind::Signup { .. }, _) => Some(EmailKind::Verification),
            (AccountRequestKind::ResendVerification, Some(account)) if !account.is_email_verified() => Some(EmailKind::Verification),
            (AccountRequestKind::ForgotPassword, Some(_)) => Some(EmailKind::PasswordReset),
            (AccountRequestKind::ResendVerification | AccountRequestKind::ForgotPassword, _) => None,
        };
        if let Some(kind) = mail_kind {
            if !self.within_mail_cap(kind, &request.email, now).await? {
                return Ok(());
            }
        }
        match (&request.kind, existing) {
            (AccountRequestKind::Signup { password_hash }, None) => {
                let account =
                    Account::new_unverified(AccountId::from_uuid(random_uuid(self.random.as_ref())), request.email.clone(), password_hash.clone(), now);
                let (attempt, mail) = self.new_attempt(&account, Some(password_hash.clone()), now);
                match self.accounts.create_unverified(&account, &attempt, &mail).await {
                    Ok(()) => Ok(()),
                    // Another instance created the account a moment ago: this becomes one more
                    // attempt on it.
                    Err(CreateAccountError::EmailTaken) => match self.accounts.find_by_email(&request.email).await? {
                        Some(account) => self.add_attempt(&account, Some(password_hash.clone()), now).await,
                        None => Err(InfraError::new("the account vanished while signing up")),
                    },
                    Err(CreateAccountError::Unexpected(cause)) => Err(cause),
                }
            }
            (AccountRequestKind::Signup { password_hash }, Some(account)) if !account.is_email_verified() => {
                self.add_attempt(&account, Some(password_hash.clone()), now).await
            }
            (AccountRequestKind::Signup { .. }, Some(account)) => {
                let notice = account_exists_email(random_uuid(self.random.as_ref()), account.email().clone(), &self.settings.public_url);
                self.outbox.enqueue(&notice, now).await
            }
            (AccountRequestKind::ResendVerification, Some(account)) if !account.is_email_verified() => self.add_attempt(&account, None, now).await,
            (AccountRequestKind::ForgotPassword, Some(account)) => {
                let token = LinkToken::generate(self.random.as_ref());
                let record = LinkTokenRecord::issue(token.hash(), account.id(), now + self.settings.password_reset_ttl);
                let mail = password_reset_email(
                    random_uuid(self.random.as_ref()),
                    account.email().clone(),
                    &self.settings.public_url,
                    &token,
                    self.settings.password_reset_ttl,
                );
                self.accounts.create_password_reset(&record, &mail, now).await
            }
            // Nothing to send: an unknown address, or a resend for a verified one.
            (AccountRequestKind::ResendVerification | AccountRequestKind::ForgotPassword, _) => Ok(()),
        }
    }

    fn new_attempt(&self, account: &Account, password_hash: Option<PasswordHash>, now: OffsetDateTime) -> (SignupAttempt, crate::mail::OutgoingEmail) {
        let token = LinkToken::generate(self.random.as_ref());
        let link = LinkTokenRecord::issue(token.hash(), account.id(), now + self.settings.verification_ttl);
        let mail =
            verification_email(random_uuid(self.random.as_ref()), account.email().clone(), &self.settings.public_url, &token, self.settings.verification_ttl);
        (SignupAttempt::issue(link, password_hash, now), mail)
    }

    async fn add_attempt(&self, account: &Account, password_hash: Option<PasswordHash>, now: OffsetDateTime) -> Result<(), InfraError> {
        let signup = password_hash.is_some();
        let (attempt, mail) = self.new_attempt(account, password_hash, now);
        if self.accounts.add_signup_attempt(&attempt, &mail, now, MAX_PENDING_SIGNUP_ATTEMPTS).await? {
            return Ok(());
        }
        // The address was confirmed meanwhile: a sign-up now meets a verified account, and a
        // resend has nothing left to do.
        if signup {
            let notice = account_exists_email(random_uuid(self.random.as_ref()), account.email().clone(), &self.settings.public_url);
            self.outbox.enqueue(&notice, now).await?;
        }
        Ok(())
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
    async fn usable_attempt(&self, token: &LinkToken, now: OffsetDateTime) -> Result<Option<SignupAttempt>, VerifyEmailError> {
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
    pub async fn confirm_email(&self, token: &LinkToken, password: Option<&NewPassword>) -> Result<VerifyOutcome, VerifyEmailError> {
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
        let confirmation = EmailConfirmation { account_id: attempt.link().account_id(), attempt: *attempt.link().hash(), password_hash, confirmed_at: now };
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
        self.accounts.find_by_id(caller.account_id).await?.ok_or(AccountLookupError::Gone)
    }

    /// Checks a reset link without spending it, so the page behind it can show the form or
    /// say why not. Opening the link (or a mail scanner prefetching it) changes nothing.
    ///
    /// # Errors
    /// [`ResetPasswordError`].
    pub async fn check_password_reset(&self, token: &LinkToken) -> Result<(), ResetPasswordError> {
        self.usable_reset(token, self.clock.now()).await.map(|_| ())
    }

    async fn usable_reset(&self, token: &LinkToken, now: OffsetDateTime) -> Result<LinkTokenRecord, ResetPasswordError> {
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
    pub async fn reset_password(&self, token: &LinkToken, password: &NewPassword, client_address: Option<&str>) -> Result<(), ResetPasswordError> {
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
            notice: password_was_reset_email(random_uuid(self.random.as_ref()), account.email().clone(), &self.settings.public_url),
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

    /// Changes the caller's password after checking the current one; the caller's session
    /// stays, every other session ends, every outstanding reset link is spent, and the owner is
    /// told by email. The change commits only if no other change (a reset) came between the
    /// check and the write.
    ///
    /// # Errors
    /// [`ChangePasswordError`].
    pub async fn change_password(&self, caller: &LiveSession, current: &Password, new: &NewPassword) -> Result<(), ChangePasswordError> {
        let account = self.accounts.find_by_id(caller.account_id()).await?.ok_or(ChangePasswordError::WrongPassword)?;
        if !self.hasher.verify(current, account.password_hash()).await? {
            return Err(ChangePasswordError::WrongPassword);
        }
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
            notice: password_changed_email(random_uuid(self.random.as_ref()), account.email().clone(), &self.settings.public_url),
            at: now,
            event: AuditEvent::new(self.random.as_ref(), account.id(), AuditKind::PasswordChanged, now).of_session(caller.session_id()),
        };
        if self.accounts.apply_credential_change(&change).await? {
            Ok(())
        } else {
            Err(ChangePasswordError::CredentialsChanged)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{MockAccountRepository, MockAccountRequestQueue, MockPasswordHasher};
    use crate::mail::{EmailKind, MockOutbox};
    use crate::newtypes::SessionId;
    use crate::secret::TokenHash;
    use crate::system::{MockClock, MockSecureRandom};
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Mutex;
    use time::macros::datetime;
    use uuid::Uuid;

    const NOW: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);
    const ACCOUNT: AccountId = AccountId::from_uuid(Uuid::nil());

    struct Ports {
        accounts: MockAccountRepository,
        requests: MockAccountRequestQueue,
        outbox: MockOutbox,
        hasher: MockPasswordHasher,
        limiter: crate::limits::MockRateLimiter,
    }

    impl Ports {
        fn new() -> Self {
            let mut hasher = MockPasswordHasher::new();
            hasher.expect_hash().returning(|password| Ok(PasswordHash::from_phc(format!("hash of {}", password.expose()))));
            Self {
                accounts: MockAccountRepository::new(),
                requests: MockAccountRequestQueue::new(),
                outbox: MockOutbox::new(),
                hasher,
                limiter: crate::limits::unlimited(),
            }
        }

        /// The worker's side: `request` is the one queued request.
        fn with_request(mut self, kind: AccountRequestKind) -> Self {
            let request = AccountRequest { id: Uuid::from_u128(9), email: email(), kind, requested_at: NOW };
            self.requests.expect_claim().times(1).returning(move |_, _, _, _| Ok(vec![request.clone()]));
            self.requests.expect_complete().withf(|id, _| *id == Uuid::from_u128(9)).times(1).returning(|_, _| Ok(()));
            self
        }

        fn service(self) -> AccountService {
            let mut clock = MockClock::new();
            clock.expect_now().return_const(NOW);
            // Each draw differs, so ids and tokens are distinct, yet the sequence is fixed.
            let counter = AtomicU8::new(0);
            let mut random = MockSecureRandom::new();
            random.expect_fill().returning(move |buffer| buffer.fill(counter.fetch_add(1, Ordering::Relaxed)));
            let settings = AccountSettings {
                public_url: "https://auth.example.com".into(),
                verification_ttl: Duration::hours(24),
                password_reset_ttl: Duration::hours(1),
                limits: LimitSettings::default(),
            };
            AccountService::new(
                Arc::new(self.accounts),
                Arc::new(self.requests),
                Arc::new(self.outbox),
                Arc::new(self.hasher),
                Arc::new(self.limiter),
                Arc::new(clock),
                Arc::new(random),
                settings,
            )
        }
    }

    fn email() -> EmailAddress {
        EmailAddress::parse("ann@example.com").unwrap()
    }

    fn password(text: &str) -> NewPassword {
        NewPassword::parse(text.into()).unwrap()
    }

    fn account(verified: bool) -> Account {
        Account::from_storage(ACCOUNT, email(), PasswordHash::from_phc("stored".into()), verified.then_some(NOW), NOW, 7)
    }

    fn attempt(name: &str, password_hash: Option<&str>, used_at: Option<OffsetDateTime>, expires_at: OffsetDateTime) -> SignupAttempt {
        let link = LinkTokenRecord::from_storage(TokenHash::of(name.as_bytes()), ACCOUNT, expires_at, used_at);
        SignupAttempt::from_storage(link, password_hash.map(|phc| PasswordHash::from_phc(phc.into())), NOW)
    }

    fn pending(name: &str, password_hash: Option<&str>) -> SignupAttempt {
        attempt(name, password_hash, None, NOW + Duration::hours(1))
    }

    /// The token whose link is the attempt called `name` in these tests.
    fn some_token() -> LinkToken {
        LinkToken::parse(&"A".repeat(43)).unwrap()
    }

    #[tokio::test]
    async fn signup_resend_and_forgot_store_one_request_and_never_look_the_address_up() {
        let mut ports = Ports::new();
        let kinds = Arc::new(Mutex::new(Vec::new()));
        let seen = kinds.clone();
        ports.requests.expect_submit().times(3).returning(move |request| {
            seen.lock().unwrap().push((request.kind.clone(), request.email.as_str().to_owned(), request.requested_at));
            Ok(())
        });
        ports.accounts.expect_find_by_email().never();
        let service = ports.service();
        service.signup(email(), &password("a long enough passphrase"), Some("192.0.2.7")).await.unwrap();
        service.resend_verification(email(), Some("192.0.2.7")).await.unwrap();
        service.forgot_password(email(), None).await.unwrap();
        let kinds = kinds.lock().unwrap().clone();
        assert_eq!(
            kinds,
            vec![
                (
                    AccountRequestKind::Signup { password_hash: PasswordHash::from_phc("hash of a long enough passphrase".into()) },
                    "ann@example.com".into(),
                    NOW
                ),
                (AccountRequestKind::ResendVerification, "ann@example.com".into(), NOW),
                (AccountRequestKind::ForgotPassword, "ann@example.com".into(), NOW),
            ]
        );
    }

    #[tokio::test]
    async fn a_signup_for_a_new_address_creates_the_account_with_an_attempt_that_carries_its_password() {
        let mut ports = Ports::new().with_request(AccountRequestKind::Signup { password_hash: PasswordHash::from_phc("chosen".into()) });
        ports.accounts.expect_find_by_email().returning(|_| Ok(None));
        ports
            .accounts
            .expect_create_unverified()
            .withf(|account, attempt, mail| {
                !account.is_email_verified()
                    && attempt.link().account_id() == account.id()
                    && attempt.link().expires_at() == NOW + Duration::hours(24)
                    && attempt.password_hash().map(PasswordHash::as_phc) == Some("chosen")
                    && mail.kind() == EmailKind::Verification
                    && mail.to() == account.email()
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        assert_eq!(ports.service().handle_due_requests().await.unwrap().handled, 1);
    }

    #[tokio::test]
    async fn a_signup_for_an_unverified_address_adds_an_attempt_and_keeps_the_newest_three() {
        let mut ports = Ports::new().with_request(AccountRequestKind::Signup { password_hash: PasswordHash::from_phc("second".into()) });
        ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(false))));
        ports
            .accounts
            .expect_add_signup_attempt()
            .withf(|attempt, mail, now, keep| {
                attempt.password_hash().map(PasswordHash::as_phc) == Some("second") && mail.kind() == EmailKind::Verification && *now == NOW && *keep == 3
            })
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        ports.outbox.expect_enqueue().never();
        ports.service().handle_due_requests().await.unwrap();
    }

    #[tokio::test]
    async fn a_signup_that_meets_a_confirmation_committed_meanwhile_tells_the_owner_instead() {
        let mut ports = Ports::new().with_request(AccountRequestKind::Signup { password_hash: PasswordHash::from_phc("late".into()) });
        ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(false))));
        ports.accounts.expect_add_signup_attempt().times(1).returning(|_, _, _, _| Ok(false));
        ports.outbox.expect_enqueue().withf(|mail, _| mail.kind() == EmailKind::AccountExists).times(1).returning(|_, _| Ok(()));
        ports.service().handle_due_requests().await.unwrap();
    }

    #[tokio::test]
    async fn a_request_that_fails_stays_queued_and_the_rest_of_the_batch_goes_on() {
        let mut ports = Ports::new();
        let requests: Vec<AccountRequest> =
            [1u128, 2].map(|n| AccountRequest { id: Uuid::from_u128(n), email: email(), kind: AccountRequestKind::ForgotPassword, requested_at: NOW }).into();
        ports.requests.expect_claim().returning(move |_, _, _, _| Ok(requests.clone()));
        ports.requests.expect_complete().withf(|id, _| *id == Uuid::from_u128(2)).times(1).returning(|_, _| Ok(()));
        let lookups = Mutex::new(0);
        ports.accounts.expect_find_by_email().returning(move |_| {
            let mut count = lookups.lock().unwrap();
            *count += 1;
            if *count == 1 {
                Err(InfraError::new("the database blinked"))
            } else {
                Ok(None)
            }
        });
        let report = ports.service().handle_due_requests().await.unwrap();
        assert_eq!(report.handled, 1);
        assert_eq!(report.failed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [Uuid::from_u128(1)]);
    }

    #[tokio::test]
    async fn a_signup_for_a_verified_address_changes_nothing_and_tells_the_owner() {
        let mut ports = Ports::new().with_request(AccountRequestKind::Signup { password_hash: PasswordHash::from_phc("other".into()) });
        ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(true))));
        ports.accounts.expect_add_signup_attempt().never();
        ports.outbox.expect_enqueue().withf(|mail, now| *now == NOW && mail.kind() == EmailKind::AccountExists).times(1).returning(|_, _| Ok(()));
        ports.service().handle_due_requests().await.unwrap();
    }

    #[tokio::test]
    async fn a_resend_adds_an_attempt_without_a_password_and_only_for_an_unverified_address() {
        let mut ports = Ports::new().with_request(AccountRequestKind::ResendVerification);
        ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(false))));
        ports.accounts.expect_add_signup_attempt().withf(|attempt, _, _, _| attempt.password_hash().is_none()).times(1).returning(|_, _, _, _| Ok(true));
        ports.service().handle_due_requests().await.unwrap();

        for found in [None, Some(account(true))] {
            let mut ports = Ports::new().with_request(AccountRequestKind::ResendVerification);
            ports.accounts.expect_find_by_email().returning(move |_| Ok(found.clone()));
            ports.accounts.expect_add_signup_attempt().never();
            ports.outbox.expect_enqueue().never();
            ports.service().handle_due_requests().await.unwrap();
        }
    }

    #[tokio::test]
    async fn forgot_queues_a_one_hour_link_only_for_a_known_address() {
        let mut ports = Ports::new().with_request(AccountRequestKind::ForgotPassword);
        ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(true))));
        ports
            .accounts
            .expect_create_password_reset()
            .withf(|token, mail, now| {
                *now == NOW && token.expires_at() == NOW + Duration::hours(1) && mail.text_body().contains("/v1/auth/password/reset?token=")
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        ports.service().handle_due_requests().await.unwrap();

        let mut ports = Ports::new().with_request(AccountRequestKind::ForgotPassword);
        ports.accounts.expect_find_by_email().returning(|_| Ok(None));
        ports.accounts.expect_create_password_reset().never();
        ports.service().handle_due_requests().await.unwrap();
    }

    #[tokio::test]
    async fn the_only_pending_signup_confirms_with_one_button_and_activates_its_own_password() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_signup_attempt().returning(|_| Ok(Some(pending("mine", Some("my hash")))));
        ports.accounts.expect_pending_signup_attempts().returning(|_, _| Ok(vec![pending("mine", Some("my hash"))]));
        ports
            .accounts
            .expect_confirm_email()
            .withf(|confirmation| confirmation.password_hash.as_phc() == "my hash" && confirmation.confirmed_at == NOW && confirmation.account_id == ACCOUNT)
            .times(1)
            .returning(|_| Ok(true));
        let service = ports.service();
        assert_eq!(service.confirmation_page(&some_token()).await.unwrap(), ConfirmationPage::ConfirmButton { signed_up_at: NOW });
        assert_eq!(service.confirm_email(&some_token(), None).await.unwrap(), VerifyOutcome::Verified);
    }

    #[tokio::test]
    async fn with_several_pending_signups_the_confirming_person_chooses_the_password() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_signup_attempt().returning(|_| Ok(Some(pending("mine", Some("my hash")))));
        ports
            .accounts
            .expect_pending_signup_attempts()
            .returning(|_, _| Ok(vec![pending("attacker", Some("attacker hash")), pending("mine", Some("my hash"))]));
        ports
            .accounts
            .expect_confirm_email()
            .withf(|confirmation| confirmation.password_hash.as_phc() == "hash of typed at confirmation")
            .times(1)
            .returning(|_| Ok(true));
        let service = ports.service();
        assert_eq!(service.confirmation_page(&some_token()).await.unwrap(), ConfirmationPage::ChoosePassword);
        assert!(matches!(service.confirm_email(&some_token(), None).await, Err(VerifyEmailError::PasswordRequired)));
        let chosen = password("typed at confirmation");
        assert_eq!(service.confirm_email(&some_token(), Some(&chosen)).await.unwrap(), VerifyOutcome::Verified);
    }

    #[tokio::test]
    async fn a_resent_link_always_asks_for_the_password() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_signup_attempt().returning(|_| Ok(Some(pending("resent", None))));
        ports.accounts.expect_pending_signup_attempts().returning(|_, _| Ok(vec![pending("resent", None)]));
        ports.accounts.expect_confirm_email().never();
        let service = ports.service();
        assert_eq!(service.confirmation_page(&some_token()).await.unwrap(), ConfirmationPage::ChoosePassword);
        assert!(matches!(service.confirm_email(&some_token(), None).await, Err(VerifyEmailError::PasswordRequired)));
    }

    #[tokio::test]
    async fn used_expired_and_unknown_links_confirm_nothing() {
        let mut ports = Ports::new();
        ports
            .accounts
            .expect_find_signup_attempt()
            .returning(|_| Ok(Some(attempt("used", Some("h"), Some(NOW - Duration::hours(2)), NOW - Duration::hours(1)))));
        ports.accounts.expect_confirm_email().never();
        let service = ports.service();
        assert_eq!(service.confirm_email(&some_token(), None).await.unwrap(), VerifyOutcome::AlreadyVerified);
        assert_eq!(service.confirmation_page(&some_token()).await.unwrap(), ConfirmationPage::AlreadyVerified);

        let mut ports = Ports::new();
        ports.accounts.expect_find_signup_attempt().returning(|_| Ok(Some(attempt("old", Some("h"), None, NOW))));
        assert!(matches!(ports.service().confirm_email(&some_token(), None).await, Err(VerifyEmailError::Expired)));

        let mut ports = Ports::new();
        ports.accounts.expect_find_signup_attempt().returning(|_| Ok(None));
        assert!(matches!(ports.service().confirmation_page(&some_token()).await, Err(VerifyEmailError::InvalidToken)));
    }

    fn reset_record(used_at: Option<OffsetDateTime>, expires_at: OffsetDateTime) -> LinkTokenRecord {
        LinkTokenRecord::from_storage(TokenHash::of(b"reset"), ACCOUNT, expires_at, used_at)
    }

    #[tokio::test]
    async fn a_reset_ends_every_session_spends_its_link_verifies_the_address_and_tells_the_owner() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_password_reset().returning(|_| Ok(Some(reset_record(None, NOW + Duration::minutes(30)))));
        ports.accounts.expect_find_by_id().returning(|_| Ok(Some(account(true))));
        ports
            .accounts
            .expect_apply_credential_change()
            .withf(|change| {
                change.password_hash.as_phc() == "hash of a brand new passphrase"
                    && change.expected_version.is_none()
                    && change.reset_link == Some(TokenHash::of(b"reset"))
                    && change.end_sessions == SessionsToEnd::All
                    && change.reason == RevocationReason::PasswordReset
                    && change.verify_email
                    && change.notice.kind() == EmailKind::PasswordWasReset
                    && change.at == NOW
            })
            .times(1)
            .returning(|_| Ok(true));
        ports.service().reset_password(&some_token(), &password("a brand new passphrase"), None).await.unwrap();
    }

    #[tokio::test]
    async fn a_used_expired_or_outraced_reset_link_is_refused() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_password_reset().returning(|_| Ok(Some(reset_record(Some(NOW), NOW + Duration::minutes(30)))));
        assert!(matches!(
            ports.service().reset_password(&some_token(), &password("a brand new passphrase"), None).await,
            Err(ResetPasswordError::InvalidToken)
        ));
        let mut ports = Ports::new();
        ports.accounts.expect_find_password_reset().returning(|_| Ok(Some(reset_record(None, NOW))));
        assert!(matches!(ports.service().reset_password(&some_token(), &password("a brand new passphrase"), None).await, Err(ResetPasswordError::Expired)));
        let mut ports = Ports::new();
        ports.accounts.expect_find_password_reset().returning(|_| Ok(Some(reset_record(None, NOW + Duration::minutes(30)))));
        ports.accounts.expect_find_by_id().returning(|_| Ok(Some(account(true))));
        ports.accounts.expect_apply_credential_change().returning(|_| Ok(false));
        assert!(matches!(
            ports.service().reset_password(&some_token(), &password("a brand new passphrase"), None).await,
            Err(ResetPasswordError::InvalidToken)
        ));
    }

    fn caller() -> LiveSession {
        LiveSession::new(ACCOUNT, SessionId::from_uuid(Uuid::from_u128(5)), NOW)
    }

    #[tokio::test]
    async fn a_change_needs_the_current_password_keeps_the_callers_session_and_commits_only_on_the_version_it_checked() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_by_id().returning(|_| Ok(Some(account(true))));
        ports.hasher.expect_verify().returning(|password, _| Ok(password.expose() == "the current one"));
        ports
            .accounts
            .expect_apply_credential_change()
            .withf(|change| {
                change.expected_version == Some(7)
                    && change.reset_link.is_none()
                    && change.end_sessions == SessionsToEnd::AllExcept(SessionId::from_uuid(Uuid::from_u128(5)))
                    && change.reason == RevocationReason::PasswordChange
                    && !change.verify_email
                    && change.notice.kind() == EmailKind::PasswordChanged
            })
            .times(2)
            .returning({
                let outcomes = Mutex::new(vec![false, true]);
                move |_| Ok(outcomes.lock().unwrap().pop().unwrap_or(false))
            });
        let service = ports.service();
        let wrong = service.change_password(&caller(), &Password::parse("not it".into()).unwrap(), &password("a brand new passphrase")).await;
        assert!(matches!(wrong, Err(ChangePasswordError::WrongPassword)));
        let current = Password::parse("the current one".into()).unwrap();
        service.change_password(&caller(), &current, &password("a brand new passphrase")).await.unwrap();
        let raced = service.change_password(&caller(), &current, &password("a brand new passphrase")).await;
        assert!(matches!(raced, Err(ChangePasswordError::CredentialsChanged)));
    }

    #[tokio::test]
    async fn past_the_mail_cap_a_request_is_handled_as_usual_but_queues_nothing() {
        let mut ports = Ports::new().with_request(AccountRequestKind::ForgotPassword);
        let mut limiter = crate::limits::MockRateLimiter::new();
        limiter
            .expect_hit()
            .withf(|key, policy, _| key == format!("password_reset:{}", email_key(&email())) && policy.name == "emails_per_recipient")
            .times(1)
            .returning(|_, policy, _| Ok(crate::limits::LimitDecision { policy: *policy, allowed: false, remaining: 0, reset_after: Duration::minutes(30) }));
        ports.limiter = limiter;
        ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(true))));
        ports.accounts.expect_create_password_reset().never();
        assert_eq!(ports.service().handle_due_requests().await.unwrap().handled, 1, "the request is done with");
    }

    #[tokio::test]
    async fn an_address_past_its_request_limit_is_refused_before_hashing_or_storing() {
        let mut ports = Ports::new();
        let mut limiter = crate::limits::MockRateLimiter::new();
        limiter
            .expect_hit()
            .withf(|key, policy, _| key == "192.0.2.7" && policy.name == "mail_requests_per_address")
            .returning(|_, policy, _| Ok(crate::limits::LimitDecision { policy: *policy, allowed: false, remaining: 0, reset_after: Duration::minutes(3) }));
        ports.limiter = limiter;
        ports.hasher = MockPasswordHasher::new();
        ports.hasher.expect_hash().never();
        ports.requests.expect_submit().never();
        let outcome = ports.service().signup(email(), &password("a long enough passphrase"), Some("192.0.2.7")).await;
        assert!(matches!(outcome, Err(SignupError::Throttled(_))));
    }
}
