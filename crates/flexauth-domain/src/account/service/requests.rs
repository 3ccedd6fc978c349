//! The requests that send mail: sign-up, a new verification link and a forgotten password are
//! answered at once, the same way whether or not the address has an account, and handled later
//! by the worker, so neither the answer nor its time tells who is registered.

use time::OffsetDateTime;

use super::{AccountService, RequestsReport, MAX_PENDING_SIGNUP_ATTEMPTS, REQUEST_BATCH, REQUEST_LEASE};
use crate::account::{
    Account, AccountId, AccountRequest, AccountRequestKind, CreateAccountError, EmailAddress, LinkTokenRecord,
    NewPassword, PasswordHash, SignupAttempt, SignupError,
};
use crate::limits::{address_key, email_key, RateLimited};
use crate::mail::{EmailKind, LeaseId, Letter, LinkPage, OutgoingEmail};
use crate::secret::LinkToken;
use crate::system::random_uuid;
use crate::InfraError;

impl AccountService {
    /// Counts one request that sends mail or spends a hash against the client's address.
    pub(super) async fn count_request(&self, client_address: Option<&str>) -> Result<(), SignupError> {
        let limits = &self.settings.limits;
        if let (true, Some(address)) = (limits.enabled, client_address) {
            let decision =
                self.limiter.hit(&address_key(address), &limits.mail_requests_per_address, self.clock.now()).await?;
            if !decision.allowed {
                return Err(RateLimited(decision).into());
            }
        }
        Ok(())
    }

    /// Whether one more email of `kind` may go to `to` now; counts it if so. Past the cap the
    /// request is handled as usual but queues nothing, so a flood of requests cannot flood a
    /// mailbox, and the caller cannot tell.
    async fn within_mail_cap(
        &self,
        kind: EmailKind,
        to: &EmailAddress,
        now: OffsetDateTime,
    ) -> Result<bool, InfraError> {
        let limits = &self.settings.limits;
        if !limits.enabled {
            return Ok(true);
        }
        let decision = self
            .limiter
            .hit(&format!("{}:{}", kind.as_str(), email_key(to)), &limits.emails_per_recipient, now)
            .await?;
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
    pub async fn signup(
        &self,
        email: EmailAddress,
        password: &NewPassword,
        client_address: Option<&str>,
    ) -> Result<(), SignupError> {
        self.count_request(client_address).await?;
        let password_hash = self.hasher.hash(password.as_password()).await?;
        self.submit(email, AccountRequestKind::Signup { password_hash }).await
    }

    /// Accepts a request for a new verification link, with the same work for every address.
    ///
    /// # Errors
    /// [`SignupError::Unexpected`] when storage fails.
    pub async fn resend_verification(
        &self,
        email: EmailAddress,
        client_address: Option<&str>,
    ) -> Result<(), SignupError> {
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
        let request =
            AccountRequest { id: random_uuid(self.random.as_ref()), email, kind, requested_at: self.clock.now() };
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
            (AccountRequestKind::Signup { .. }, Some(account)) if account.is_email_verified() => {
                Some(EmailKind::AccountExists)
            }
            (AccountRequestKind::Signup { .. }, _) => Some(EmailKind::Verification),
            (AccountRequestKind::ResendVerification, Some(account)) if !account.is_email_verified() => {
                Some(EmailKind::Verification)
            }
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
                let account = Account::new_unverified(
                    AccountId::from_uuid(random_uuid(self.random.as_ref())),
                    request.email.clone(),
                    password_hash.clone(),
                    now,
                );
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
                let notice = self.letters.email(
                    random_uuid(self.random.as_ref()),
                    account.email().clone(),
                    &Letter::AccountExists,
                );
                self.outbox.enqueue(&notice, now).await
            }
            (AccountRequestKind::ResendVerification, Some(account)) if !account.is_email_verified() => {
                self.add_attempt(&account, None, now).await
            }
            (AccountRequestKind::ForgotPassword, Some(account)) => {
                let token = LinkToken::generate(self.random.as_ref());
                let record = LinkTokenRecord::issue(token.hash(), account.id(), now + self.settings.password_reset_ttl);
                let letter = Letter::PasswordReset {
                    link: self.letters.link(LinkPage::PasswordReset, &token),
                    valid_for: self.settings.password_reset_ttl,
                };
                let mail = self.letters.email(random_uuid(self.random.as_ref()), account.email().clone(), &letter);
                self.accounts.create_password_reset(&record, &mail, now).await
            }
            // Nothing to send: an unknown address, or a resend for a verified one.
            (AccountRequestKind::ResendVerification | AccountRequestKind::ForgotPassword, _) => Ok(()),
        }
    }

    fn new_attempt(
        &self,
        account: &Account,
        password_hash: Option<PasswordHash>,
        now: OffsetDateTime,
    ) -> (SignupAttempt, OutgoingEmail) {
        let token = LinkToken::generate(self.random.as_ref());
        let link = LinkTokenRecord::issue(token.hash(), account.id(), now + self.settings.verification_ttl);
        let letter = Letter::Verification {
            link: self.letters.link(LinkPage::Verify, &token),
            valid_for: self.settings.verification_ttl,
        };
        let mail = self.letters.email(random_uuid(self.random.as_ref()), account.email().clone(), &letter);
        (SignupAttempt::issue(link, password_hash, now), mail)
    }

    async fn add_attempt(
        &self,
        account: &Account,
        password_hash: Option<PasswordHash>,
        now: OffsetDateTime,
    ) -> Result<(), InfraError> {
        let signup = password_hash.is_some();
        let (attempt, mail) = self.new_attempt(account, password_hash, now);
        if self.accounts.add_signup_attempt(&attempt, &mail, now, MAX_PENDING_SIGNUP_ATTEMPTS).await? {
            return Ok(());
        }
        // The address was confirmed meanwhile: a sign-up now meets a verified account, and a
        // resend has nothing left to do.
        if signup {
            let notice =
                self.letters.email(random_uuid(self.random.as_ref()), account.email().clone(), &Letter::AccountExists);
            self.outbox.enqueue(&notice, now).await?;
        }
        Ok(())
    }
}
