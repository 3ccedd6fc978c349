use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::{
    AccountExport, ConfirmEmailChangeOutcome, EmailChange, EmailChangeLinkState, Erasure, LifecycleRepository,
    UndoEmailChangeOutcome,
};
use crate::account::{
    Account, AccountRepository, Password, PasswordCheck, PasswordCheckError, PasswordChecker, PasswordHasher,
};
use crate::api_key::ApiKeyRepository;
use crate::audit::{AuditCursor, AuditEvent, AuditKind, AuditLog, MAX_PAGE};
use crate::limits::{LimitSettings, RateLimited, RateLimiter};
use crate::mail::{Letter, Letters, LinkPage};
use crate::mfa::{Factor, FactorRepository};
use crate::newtypes::{AccountId, ClientInfo, EmailAddress};
use crate::principal::{AccountGone, LiveSession, ReauthenticationRequired, SessionEnded, StepUpRequired};
use crate::secret::LinkToken;
use crate::session::SessionRepository;
use crate::system::{random_uuid, Clock, SecureRandom};
use crate::InfraError;

/// What the lifecycle rules need to know.
#[derive(Debug, Clone)]
pub struct LifecycleSettings {
    /// How recently a session must have proved its password to delete the account or move it
    /// to another address.
    pub reauthentication_window: Duration,
    /// How long the confirmation link of an address change works.
    pub email_change_ttl: Duration,
    /// How long the old address can undo a change.
    pub email_change_undo_ttl: Duration,
    /// The rate limits (address changes per account).
    pub limits: LimitSettings,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            reauthentication_window: Duration::minutes(10),
            email_change_ttl: Duration::hours(24),
            email_change_undo_ttl: Duration::days(7),
            limits: LimitSettings::default(),
        }
    }
}

/// Why an operator's command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No account has this id (or this address).
    #[error("no such account")]
    NoSuchAccount,
    /// The store failed; nothing was written.
    #[error(transparent)]
    Unexpected(#[from] InfraError),
}

/// Why an owner's request about their own account failed.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// The session has not proved its password recently enough: a stolen access token alone
    /// can neither delete the account nor take a copy of its history.
    #[error(transparent)]
    ReauthenticationRequired(#[from] ReauthenticationRequired),
    /// The account has a second factor and the session has not proved it recently enough.
    #[error(transparent)]
    StepUpRequired(#[from] StepUpRequired),
    /// The account is gone (erased meanwhile).
    #[error(transparent)]
    AccountGone(#[from] AccountGone),
    /// The store failed; nothing was written.
    #[error(transparent)]
    Unexpected(#[from] InfraError),
}

/// Why an address change could not be asked for.
#[derive(Debug, thiserror::Error)]
pub enum EmailChangeError {
    /// The session has not proved its password recently enough.
    #[error(transparent)]
    ReauthenticationRequired(#[from] ReauthenticationRequired),
    /// The account has a second factor and the session has not proved it recently enough.
    #[error(transparent)]
    StepUpRequired(#[from] StepUpRequired),
    /// The new address is the account's address already.
    #[error("the account has this address already")]
    SameAddress,
    /// Too many address changes asked for on this account.
    #[error(transparent)]
    Throttled(#[from] RateLimited),
    /// The account is gone (erased meanwhile).
    #[error(transparent)]
    AccountGone(#[from] AccountGone),
    /// The caller's session ended meanwhile (a disable, an undo, a logout).
    #[error(transparent)]
    SessionEnded(#[from] SessionEnded),
    /// The store failed; nothing was written.
    #[error(transparent)]
    Unexpected(#[from] InfraError),
}

/// Why a link of an address change does nothing.
#[derive(Debug, thiserror::Error)]
pub enum EmailChangeLinkError {
    /// No change has this link.
    #[error("the link is not valid")]
    Unknown,
    /// The link was used, or the change was confirmed, undone or replaced.
    #[error("the link was used already")]
    Used,
    /// The link is past its time.
    #[error("the link has expired")]
    Expired,
    /// Another account has the address the account would move to.
    #[error("the address belongs to another account now")]
    AddressTaken,
    /// The account's address changed since the change was asked for.
    #[error("the account's address changed since")]
    AccountChanged,
    /// The password given to confirm is not the account's: only whoever asked for the change
    /// (who knows it) may confirm it, not whoever reads the new mailbox.
    #[error("the password is wrong")]
    WrongPassword,
    /// Too many password checks on this account or from this client address; nothing was
    /// checked.
    #[error(transparent)]
    Throttled(#[from] RateLimited),
    /// The password hashing pool is overloaded (an undo hashes once); nothing was written.
    #[error("the server is overloaded")]
    Overloaded,
    /// The store failed; nothing was written.
    #[error(transparent)]
    Unexpected(#[from] InfraError),
}

crate::account::from_hash_error!(EmailChangeLinkError);

impl From<EmailChangeLinkState> for Result<(), EmailChangeLinkError> {
    fn from(state: EmailChangeLinkState) -> Self {
        match state {
            EmailChangeLinkState::Usable => Ok(()),
            EmailChangeLinkState::Spent => Err(EmailChangeLinkError::Used),
            EmailChangeLinkState::Expired => Err(EmailChangeLinkError::Expired),
        }
    }
}

/// Account administration for operators, and the owner's own lifecycle: address change,
/// deletion, export.
#[derive(Clone)]
pub struct LifecycleService {
    accounts: Arc<dyn AccountRepository>,
    sessions: Arc<dyn SessionRepository>,
    keys: Arc<dyn ApiKeyRepository>,
    audit: Arc<dyn AuditLog>,
    lifecycle: Arc<dyn LifecycleRepository>,
    factors: Arc<dyn FactorRepository>,
    hasher: Arc<dyn PasswordHasher>,
    limiter: Arc<dyn RateLimiter>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
    letters: Letters,
    settings: LifecycleSettings,
}

impl std::fmt::Debug for LifecycleService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LifecycleService").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl LifecycleService {
    /// Wires the service to its ports.
    // One argument per port, each a distinct capability.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        accounts: Arc<dyn AccountRepository>,
        sessions: Arc<dyn SessionRepository>,
        keys: Arc<dyn ApiKeyRepository>,
        audit: Arc<dyn AuditLog>,
        lifecycle: Arc<dyn LifecycleRepository>,
        factors: Arc<dyn FactorRepository>,
        hasher: Arc<dyn PasswordHasher>,
        limiter: Arc<dyn RateLimiter>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn SecureRandom>,
        letters: Letters,
        settings: LifecycleSettings,
    ) -> Self {
        Self { accounts, sessions, keys, audit, lifecycle, factors, hasher, limiter, clock, random, letters, settings }
    }

    fn event(&self, account_id: AccountId, kind: AuditKind, now: OffsetDateTime) -> AuditEvent {
        AuditEvent::new(self.random.as_ref(), account_id, kind, now)
    }

    /// The account registered under `email`, for an operator.
    ///
    /// # Errors
    /// [`AdminError::NoSuchAccount`] or [`AdminError::Unexpected`].
    pub async fn find(&self, email: &EmailAddress) -> Result<Account, AdminError> {
        self.accounts.find_by_email(email).await?.ok_or(AdminError::NoSuchAccount)
    }

    /// Disables the account: no login from now on, every session and API key ended at once.
    ///
    /// # Errors
    /// [`AdminError::NoSuchAccount`] or [`AdminError::Unexpected`].
    pub async fn disable(&self, id: AccountId) -> Result<(), AdminError> {
        let now = self.clock.now();
        if !self.lifecycle.disable(id, now, &self.event(id, AuditKind::AccountDisabled, now)).await? {
            return Err(AdminError::NoSuchAccount);
        }
        Ok(())
    }

    /// Lets the account log in again.
    ///
    /// # Errors
    /// [`AdminError::NoSuchAccount`] or [`AdminError::Unexpected`].
    pub async fn enable(&self, id: AccountId) -> Result<(), AdminError> {
        let now = self.clock.now();
        if !self.lifecycle.enable(id, &self.event(id, AuditKind::AccountEnabled, now)).await? {
            return Err(AdminError::NoSuchAccount);
        }
        Ok(())
    }

    /// Erases the account as an operator: no goodbye is sent.
    ///
    /// # Errors
    /// [`AdminError::NoSuchAccount`] or [`AdminError::Unexpected`].
    pub async fn erase(&self, id: AccountId) -> Result<(), AdminError> {
        if !self.lifecycle.erase(&self.erasure(id, None)).await? {
            return Err(AdminError::NoSuchAccount);
        }
        Ok(())
    }

    fn erasure(&self, id: AccountId, goodbye_to: Option<EmailAddress>) -> Erasure {
        let now = self.clock.now();
        let tombstone = AccountId::from_uuid(random_uuid(self.random.as_ref()));
        let goodbye =
            goodbye_to.map(|to| self.letters.email(random_uuid(self.random.as_ref()), to, &Letter::AccountDeleted));
        Erasure { account_id: id, tombstone, event: self.event(tombstone, AuditKind::AccountDeleted, now), goodbye }
    }

    /// The account with its live sessions, keys and newest security events, for an operator
    /// looking: nothing is recorded.
    ///
    /// # Errors
    /// [`AdminError::NoSuchAccount`] or [`AdminError::Unexpected`].
    pub async fn show(&self, id: AccountId) -> Result<AccountExport, AdminError> {
        let account = self.accounts.find_by_id(id).await?.ok_or(AdminError::NoSuchAccount)?;
        let sessions = self.sessions.list_live(id, self.clock.now()).await?;
        let api_keys = self.keys.list(id).await?;
        let security_events = self.audit.list(id, None, 20).await?;
        let (second_factors, recovery_codes_left) = self.second_factors(id).await?;
        Ok(AccountExport { account, sessions, api_keys, security_events, second_factors, recovery_codes_left })
    }

    /// Everything flexauth holds about the account, for an operator; recorded in its log.
    ///
    /// # Errors
    /// [`AdminError::NoSuchAccount`] or [`AdminError::Unexpected`].
    pub async fn export(&self, id: AccountId) -> Result<AccountExport, AdminError> {
        let account = self.accounts.find_by_id(id).await?.ok_or(AdminError::NoSuchAccount)?;
        Ok(self.collect(account, None).await?)
    }

    async fn collect(&self, account: Account, caller: Option<&LiveSession>) -> Result<AccountExport, InfraError> {
        let now = self.clock.now();
        let id = account.id();
        let mut event = self.event(id, AuditKind::AccountExported, now);
        if let Some(caller) = caller {
            event = event.of_session(caller.session_id());
        }
        // Recorded first, so the copy shows that it was taken.
        self.audit.record(&event).await?;
        let sessions = self.sessions.list_live(id, now).await?;
        let api_keys = self.keys.list(id).await?;
        let mut security_events = Vec::new();
        let mut after = None;
        loop {
            let page = self.audit.list(id, after, MAX_PAGE).await?;
            let full = page.len() == MAX_PAGE as usize;
            after = page.last().map(|last| AuditCursor { at: last.at, id: last.id });
            security_events.extend(page);
            if !full {
                break;
            }
        }
        let (second_factors, recovery_codes_left) = self.second_factors(id).await?;
        Ok(AccountExport { account, sessions, api_keys, security_events, second_factors, recovery_codes_left })
    }

    /// The account's confirmed factors and unused recovery codes.
    async fn second_factors(&self, id: AccountId) -> Result<(Vec<Factor>, u32), InfraError> {
        let factors = self.factors.factors(id).await?;
        let confirmed = factors.iter().filter(|factor| factor.confirmed_at.is_some()).map(Factor::from).collect();
        Ok((confirmed, self.factors.recovery_codes_left(id).await?))
    }

    /// The caller's own data, as one document. The session must have proved its password
    /// within the re-authentication window: the copy holds the account's client addresses
    /// and its whole security log.
    ///
    /// # Errors
    /// [`OwnerError`].
    pub async fn export_own(&self, caller: &LiveSession) -> Result<AccountExport, OwnerError> {
        caller.require_recent_authentication(self.clock.now(), self.settings.reauthentication_window)?;
        caller.require_recent_second_factor(self.clock.now(), self.settings.reauthentication_window)?;
        let account = self.accounts.find_by_id(caller.account_id()).await?.ok_or(AccountGone)?;
        Ok(self.collect(account, Some(caller)).await?)
    }

    /// Erases the caller's account, as an operator's delete does, and emails a goodbye to its
    /// address. The session must have proved its password within the re-authentication
    /// window: a stolen access token alone cannot destroy the account.
    ///
    /// # Errors
    /// [`OwnerError`].
    pub async fn delete_own(&self, caller: &LiveSession) -> Result<(), OwnerError> {
        caller.require_recent_authentication(self.clock.now(), self.settings.reauthentication_window)?;
        caller.require_recent_second_factor(self.clock.now(), self.settings.reauthentication_window)?;
        let account = self.accounts.find_by_id(caller.account_id()).await?.ok_or(AccountGone)?;
        if !self.lifecycle.erase(&self.erasure(account.id(), Some(account.email().clone()))).await? {
            return Err(AccountGone.into());
        }
        Ok(())
    }

    /// Asks to move the caller's account to `new_email`. The new address gets a confirmation
    /// link, or, when another account has it, a notice instead; the old address gets a notice
    /// with a link that undoes the change. The caller learns nothing about whether the address
    /// is taken: the answer, the writes and the work are the same either way. The session must
    /// have proved its password within the re-authentication window.
    ///
    /// # Errors
    /// [`EmailChangeError`].
    pub async fn request_email_change(
        &self,
        caller: &LiveSession,
        new_email: EmailAddress,
        client: ClientInfo,
    ) -> Result<(), EmailChangeError> {
        let now = self.clock.now();
        caller.require_recent_authentication(now, self.settings.reauthentication_window)?;
        caller.require_recent_second_factor(now, self.settings.reauthentication_window)?;
        let account = self.accounts.find_by_id(caller.account_id()).await?.ok_or(AccountGone)?;
        if &new_email == account.email() {
            return Err(EmailChangeError::SameAddress);
        }
        let limits = &self.settings.limits;
        if limits.enabled {
            let decision = self.limiter.hit(&account.id().to_string(), &limits.email_changes_per_account, now).await?;
            if !decision.allowed {
                return Err(RateLimited(decision).into());
            }
        }
        // An unverified account does not hold its address: whoever signed it up never proved
        // it, and the confirmation deletes it. Only a verified one makes the address taken.
        let taken = self.accounts.find_by_email(&new_email).await?.is_some_and(|holder| holder.is_email_verified());
        let confirmation = LinkToken::generate(self.random.as_ref());
        let undo = LinkToken::generate(self.random.as_ref());
        let to_new = if taken {
            // The link of a change to a taken address is stored but never sent: nobody can
            // confirm it, and the row looks like any other.
            self.letters.email(random_uuid(self.random.as_ref()), new_email.clone(), &Letter::EmailChangeAddressTaken)
        } else {
            let letter = Letter::EmailChangeConfirmation {
                link: self.letters.link(LinkPage::EmailConfirm, &confirmation),
                valid_for: self.settings.email_change_ttl,
            };
            self.letters.email(random_uuid(self.random.as_ref()), new_email.clone(), &letter)
        };
        let letter = Letter::EmailChangeRequested {
            link: self.letters.link(LinkPage::EmailUndo, &undo),
            undo_for: self.settings.email_change_undo_ttl,
        };
        let to_old = self.letters.email(random_uuid(self.random.as_ref()), account.email().clone(), &letter);
        let change = EmailChange::request(
            &account,
            new_email,
            confirmation.hash(),
            undo.hash(),
            now,
            self.settings.email_change_ttl,
            self.settings.email_change_undo_ttl,
        );
        let event = self
            .event(account.id(), AuditKind::EmailChangeRequested, now)
            .of_session(caller.session_id())
            .from_client(client);
        if !self.lifecycle.create_email_change(&change, caller.session_id(), &to_new, &to_old, &event).await? {
            return Err(SessionEnded.into());
        }
        Ok(())
    }

    /// The change a confirmation link would carry out, if the link still works: what its page
    /// shows before the button is pressed. Opening the link changes nothing, so a mail
    /// scanner that follows it does no harm.
    ///
    /// # Errors
    /// [`EmailChangeLinkError`].
    pub async fn email_change_to_confirm(&self, token: &LinkToken) -> Result<EmailChange, EmailChangeLinkError> {
        let change = self.lifecycle.find_email_change(&token.hash()).await?.ok_or(EmailChangeLinkError::Unknown)?;
        Result::from(change.confirmation_state(self.clock.now()))?;
        Ok(change)
    }

    /// Moves the account to the new address of the change the link confirms. The link alone
    /// is not enough: the one who confirms gives the account's password, so that whoever asked
    /// for the change is the one who confirms it, not merely someone who reads the new
    /// mailbox (who would otherwise adopt an account another person controls). The password is
    /// checked as a re-authentication's is, against the account's and the client address's
    /// counters, and a wrong one is recorded.
    ///
    /// # Errors
    /// [`EmailChangeLinkError`].
    pub async fn confirm_email_change(
        &self,
        token: &LinkToken,
        password: &Password,
        client: &ClientInfo,
    ) -> Result<EmailAddress, EmailChangeLinkError> {
        let change = self.email_change_to_confirm(token).await?;
        let now = self.clock.now();
        let counters = self.settings.limits.password_check_counters(None, change.account_id, client.ip.as_deref());
        let checker = PasswordChecker {
            accounts: self.accounts.as_ref(),
            hasher: self.hasher.as_ref(),
            limiter: self.limiter.as_ref(),
        };
        let account = match checker.check(change.account_id, password, &counters, now).await {
            Ok(PasswordCheck::Right(account)) => account,
            Ok(PasswordCheck::Wrong { account, .. }) => {
                // An undo that committed while the password was checked replaced the password:
                // the link is what failed then, not the person who typed the right one.
                if self.email_change_to_confirm(token).await.is_err() {
                    return Err(EmailChangeLinkError::Used);
                }
                let event = self.event(account.id(), AuditKind::PasswordCheckFailed, now).from_client(client.clone());
                self.audit.record(&event).await?;
                return Err(EmailChangeLinkError::WrongPassword);
            }
            Ok(PasswordCheck::NoAccount) => return Err(EmailChangeLinkError::Unknown),
            Err(PasswordCheckError::Throttled(limited)) => return Err(limited.into()),
            Err(PasswordCheckError::Overloaded) => return Err(EmailChangeLinkError::Overloaded),
            Err(PasswordCheckError::Unexpected(cause)) => return Err(cause.into()),
        };
        let event = self
            .event(change.account_id, AuditKind::EmailChanged, now)
            .from_client(client.clone())
            .about_address(change.new_email.clone());
        match self.lifecycle.confirm_email_change(&change, account.credential_version(), now, &event).await? {
            ConfirmEmailChangeOutcome::Confirmed => Ok(change.new_email),
            ConfirmEmailChangeOutcome::Spent => Err(EmailChangeLinkError::Used),
            ConfirmEmailChangeOutcome::AddressTaken => Err(EmailChangeLinkError::AddressTaken),
            ConfirmEmailChangeOutcome::AccountChanged => Err(EmailChangeLinkError::AccountChanged),
        }
    }

    /// The change an undo link would undo, if the link still works.
    ///
    /// # Errors
    /// [`EmailChangeLinkError`].
    pub async fn email_change_to_undo(&self, token: &LinkToken) -> Result<EmailChange, EmailChangeLinkError> {
        let change =
            self.lifecycle.find_email_change_by_undo(&token.hash()).await?.ok_or(EmailChangeLinkError::Unknown)?;
        Result::from(change.undo_state(self.clock.now()))?;
        Ok(change)
    }

    /// Undoes the change: the account keeps (or gets back) its old address, and whoever asked
    /// (who had the password and a fresh session) loses everything: every session ends, every
    /// API key is revoked, the undo links of later changes stop working, and the password is
    /// replaced by the hash of a random secret nobody knows, so the owner chooses a new one
    /// through the old address (`forgot password`).
    ///
    /// # Errors
    /// [`EmailChangeLinkError`].
    pub async fn undo_email_change(&self, token: &LinkToken) -> Result<EmailAddress, EmailChangeLinkError> {
        let change = self.email_change_to_undo(token).await?;
        let now = self.clock.now();
        let event =
            self.event(change.account_id, AuditKind::EmailChangeUndone, now).about_address(change.old_email.clone());
        let secret = LinkToken::generate(self.random.as_ref()).expose();
        let unusable = self
            .hasher
            .hash(&Password::parse(secret).map_err(|_| InfraError::new("a random password was refused"))?)
            .await?;
        match self.lifecycle.undo_email_change(&change, now, &unusable, &event).await? {
            UndoEmailChangeOutcome::Undone => Ok(change.old_email),
            UndoEmailChangeOutcome::Spent => Err(EmailChangeLinkError::Used),
            UndoEmailChangeOutcome::AddressTaken => Err(EmailChangeLinkError::AddressTaken),
        }
    }
}

#[cfg(test)]
mod tests;
