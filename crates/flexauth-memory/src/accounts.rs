use async_trait::async_trait;
use flexauth_domain::account::{
    Account, AccountId, AccountRepository, CreateAccountError, CredentialChange, EmailAddress, EmailConfirmation,
    LinkTokenRecord, LoginCandidate, SessionsToEnd, SignupAttempt,
};
use flexauth_domain::mail::OutgoingEmail;
use flexauth_domain::secret::TokenHash;
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::state::{digest_order, spent_attempt, spent_link};
use crate::{MemoryError, MemoryStore};
use flexauth_domain::webhook::{KeyRevocationReason, WebhookEvent};
use uuid::Uuid;

#[async_trait]
impl AccountRepository for MemoryStore {
    async fn create_unverified(
        &self,
        account: &Account,
        attempt: &SignupAttempt,
        email: &OutgoingEmail,
    ) -> Result<(), CreateAccountError> {
        let mut state = self.lock().map_err(InfraError::from)?;
        if state.account_id_by_email(account.email().as_str()).is_some() {
            return Err(CreateAccountError::EmailTaken);
        }
        if state.account_exists(account.id()) {
            return Err(InfraError::from(MemoryError::Duplicate("accounts")).into());
        }
        state.check_attempt_insertable(attempt, Some(account.id())).map_err(InfraError::from)?;
        state.check_outbox_free(email).map_err(InfraError::from)?;
        state.insert_account(account.stored());
        state.signup_attempts.insert(*attempt.link().hash(), attempt.clone());
        state.queue(email, account.created_at());
        state.announce(&WebhookEvent::account_created(
            Uuid::new_v4(),
            account.id(),
            account.email().clone(),
            account.created_at(),
        ));
        Ok(())
    }

    async fn find_by_email(&self, email: &EmailAddress) -> Result<Option<Account>, InfraError> {
        let state = self.lock()?;
        Ok(state
            .account_id_by_email(email.as_str())
            .and_then(|id| state.accounts.get(&id))
            .cloned()
            .map(Account::from_storage))
    }

    async fn find_for_login(
        &self,
        email: &EmailAddress,
        device: Option<TokenHash>,
    ) -> Result<Option<LoginCandidate>, InfraError> {
        let state = self.lock()?;
        let Some(stored) = state.account_id_by_email(email.as_str()).and_then(|id| state.accounts.get(&id)) else {
            return Ok(None);
        };
        let account = Account::from_storage(stored.clone());
        let has_second_factor =
            state.mfa_factors.values().any(|factor| factor.account_id == account.id() && factor.confirmed_at.is_some());
        let device_last_seen_at = device
            .and_then(|device| state.known_devices.get(&device))
            .filter(|known| known.account_id == account.id())
            .map(|known| known.last_seen_at);
        Ok(Some(LoginCandidate { account, has_second_factor, device_last_seen_at }))
    }

    async fn find_by_id(&self, id: AccountId) -> Result<Option<Account>, InfraError> {
        Ok(self.lock()?.accounts.get(&id).cloned().map(Account::from_storage))
    }

    async fn add_signup_attempt(
        &self,
        attempt: &SignupAttempt,
        email: &OutgoingEmail,
        now: OffsetDateTime,
        keep: u32,
    ) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        let account_id = attempt.link().account_id();
        // An attempt added after a confirmation would only mail a dead link.
        let unverified = state.accounts.get(&account_id).is_some_and(|account| account.email_verified_at.is_none());
        if !unverified {
            return Ok(false);
        }
        state.check_attempt_insertable(attempt, None)?;
        state.check_outbox_free(email)?;
        let new_hash = *attempt.link().hash();
        let mut unused: Vec<&SignupAttempt> = state
            .signup_attempts
            .values()
            .filter(|other| {
                other.link().account_id() == account_id
                    && other.link().used_at().is_none()
                    && *other.link().hash() != new_hash
            })
            .collect();
        unused.sort_by(|a, b| {
            b.created_at().cmp(&a.created_at()).then_with(|| digest_order(a.link().hash(), b.link().hash()))
        });
        // The new attempt is the newest and counts as one of those kept.
        let dropped: Vec<TokenHash> =
            unused.into_iter().skip(keep.saturating_sub(1) as usize).map(|other| *other.link().hash()).collect();
        for hash in dropped {
            state.signup_attempts.remove(&hash);
        }
        state.signup_attempts.insert(new_hash, attempt.clone());
        state.queue(email, now);
        Ok(true)
    }

    async fn find_signup_attempt(&self, hash: &TokenHash) -> Result<Option<SignupAttempt>, InfraError> {
        Ok(self.lock()?.signup_attempts.get(hash).cloned())
    }

    async fn pending_signup_attempts(
        &self,
        account_id: AccountId,
        now: OffsetDateTime,
    ) -> Result<Vec<SignupAttempt>, InfraError> {
        let state = self.lock()?;
        let mut pending: Vec<SignupAttempt> = state
            .signup_attempts
            .values()
            .filter(|attempt| attempt.link().account_id() == account_id && attempt.link().is_usable(now))
            .cloned()
            .collect();
        pending.sort_by(|a, b| {
            b.created_at().cmp(&a.created_at()).then_with(|| digest_order(a.link().hash(), b.link().hash()))
        });
        Ok(pending)
    }

    async fn confirm_email(&self, confirmation: &EmailConfirmation) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        let now = confirmation.confirmed_at;
        // Only an unverified account takes a password from a sign-up link: once verified, its
        // password changes by reset or change only.
        let unverified =
            state.accounts.get(&confirmation.account_id).is_some_and(|account| account.email_verified_at.is_none());
        let unused =
            state.signup_attempts.get(&confirmation.attempt).is_some_and(|attempt| attempt.link().used_at().is_none());
        if !unverified || !unused {
            return Ok(false);
        }
        if let Some(account) = state.accounts.get_mut(&confirmation.account_id) {
            account.password_hash = confirmation.password_hash.clone();
            account.email_verified_at = Some(now);
            account.credential_version += 1;
        }
        if let Some(attempt) = state.signup_attempts.get_mut(&confirmation.attempt) {
            *attempt = spent_attempt(attempt, now);
        }
        state.delete_unused_attempts(confirmation.account_id);
        state.announce_verified(confirmation.account_id, now);
        Ok(true)
    }

    async fn create_password_reset(
        &self,
        token: &LinkTokenRecord,
        email: &OutgoingEmail,
        now: OffsetDateTime,
    ) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        if state.password_resets.contains_key(token.hash()) {
            return Err(MemoryError::Duplicate("password_reset_tokens").into());
        }
        if !state.account_exists(token.account_id()) {
            return Err(MemoryError::UnknownAccount("password_reset_tokens").into());
        }
        state.check_outbox_free(email)?;
        state.password_resets.insert(*token.hash(), token.clone());
        state.queue(email, now);
        Ok(())
    }

    async fn find_password_reset(&self, hash: &TokenHash) -> Result<Option<LinkTokenRecord>, InfraError> {
        Ok(self.lock()?.password_resets.get(hash).cloned())
    }

    async fn apply_credential_change(&self, change: &CredentialChange) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        let now = change.at;
        let version_holds = state.accounts.get(&change.account_id).is_some_and(|account| {
            change.expected_version.is_none_or(|expected| account.credential_version == expected)
        });
        let link_unused = change
            .reset_link
            .is_none_or(|link| state.password_resets.get(&link).is_some_and(|record| record.used_at().is_none()));
        if !version_holds || !link_unused {
            return Ok(false);
        }
        state.check_outbox_free(&change.notice)?;
        state.check_event_free(&change.event)?;
        let mut verified = false;
        if let Some(account) = state.accounts.get_mut(&change.account_id) {
            account.password_hash = change.password_hash.clone();
            account.credential_version += 1;
            if change.verify_email && account.email_verified_at.is_none() {
                account.email_verified_at = Some(now);
                verified = true;
            }
        }
        if verified {
            state.announce_verified(change.account_id, now);
        }
        if let Some(link) = change.reset_link.and_then(|link| state.password_resets.get_mut(&link)) {
            *link = spent_link(link, now);
        }
        // No link from before the change can set a password afterwards.
        state.spend_reset_links(change.account_id, now);
        state.delete_unused_attempts(change.account_id);
        let keep = match change.end_sessions {
            SessionsToEnd::All => None,
            SessionsToEnd::AllExcept(id) => Some(id),
        };
        state.revoke_sessions(change.account_id, keep, now, change.reason);
        if let Some(before) = change.revoke_keys_made_before {
            state.revoke_api_keys(change.account_id, Some(before), now, KeyRevocationReason::PasswordReset);
        }
        state.forget_known_clients(change.account_id, now);
        state.queue(&change.notice, now);
        state.record(&change.event);
        Ok(true)
    }
}
