use async_trait::async_trait;
use flexauth_domain::account::AccountId;
use flexauth_domain::audit::AuditEvent;
use flexauth_domain::mail::OutgoingEmail;
use flexauth_domain::mfa::{
    CeremonyId, FactorConfirmation, FactorId, FactorRepository, MfaChallenge, PasskeyAddition, PasskeyCeremony,
    SealedSecret, StoredFactor,
};
use flexauth_domain::secret::TokenHash;
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::state::{stored_client, RecoveryCodeRow, State};
use crate::{MemoryError, MemoryStore};

impl State {
    /// Replaces the account's recovery codes by `codes`.
    fn replace_codes(&mut self, account_id: AccountId, codes: &[TokenHash]) -> Result<(), MemoryError> {
        self.recovery_codes.retain(|_, row| row.account_id != account_id);
        for code in codes {
            if self.recovery_codes.contains_key(code) {
                return Err(MemoryError::Duplicate("mfa_recovery_codes"));
            }
            self.recovery_codes.insert(*code, RecoveryCodeRow { account_id, used_at: None });
        }
        Ok(())
    }
}

#[async_trait]
impl FactorRepository for MemoryStore {
    async fn factors(&self, account_id: AccountId) -> Result<Vec<StoredFactor>, InfraError> {
        let state = self.lock()?;
        let mut factors: Vec<StoredFactor> =
            state.mfa_factors.values().filter(|factor| factor.account_id == account_id).cloned().collect();
        factors.sort_by_key(|factor| (factor.created_at, factor.id.as_uuid()));
        Ok(factors)
    }

    async fn has_confirmed_factor(&self, account_id: AccountId) -> Result<bool, InfraError> {
        let state = self.lock()?;
        Ok(state.mfa_factors.values().any(|factor| factor.account_id == account_id && factor.confirmed_at.is_some()))
    }

    async fn add_factor(&self, factor: &StoredFactor, stale_before: OffsetDateTime) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        if !state.account_exists(factor.account_id) {
            return Err(MemoryError::UnknownAccount("mfa_factors").into());
        }
        if state.mfa_factors.contains_key(&factor.id) {
            return Err(MemoryError::Duplicate("mfa_factors").into());
        }
        state.mfa_factors.retain(|_, stored| {
            !(stored.account_id == factor.account_id
                && stored.confirmed_at.is_none()
                && stored.created_at < stale_before)
        });
        state.mfa_factors.insert(factor.id, factor.clone());
        Ok(())
    }

    async fn confirm_factor(&self, confirmation: &FactorConfirmation) -> Result<bool, InfraError> {
        let FactorConfirmation { account_id, factor_id: id, step, at, recovery_codes, event, notice } = confirmation;
        let (account_id, id, step, at) = (*account_id, *id, *step, *at);
        let mut state = self.lock()?;
        let confirmable = state
            .mfa_factors
            .get(&id)
            .is_some_and(|factor| factor.account_id == account_id && factor.confirmed_at.is_none());
        if !confirmable {
            return Ok(false);
        }
        state.check_event_free(event)?;
        state.check_outbox_free(notice)?;
        if recovery_codes
            .iter()
            .any(|code| state.recovery_codes.get(code).is_some_and(|row| row.account_id != account_id))
        {
            return Err(MemoryError::Duplicate("mfa_recovery_codes").into());
        }
        if !recovery_codes.is_empty() {
            state.replace_codes(account_id, recovery_codes)?;
        }
        if let Some(factor) = state.mfa_factors.get_mut(&id) {
            factor.confirmed_at = Some(at);
            factor.last_step = Some(step);
            factor.last_used_at = Some(at);
        }
        state.record(event);
        state.queue(notice, at);
        Ok(true)
    }

    async fn spend_step(&self, id: FactorId, step: i64, at: OffsetDateTime) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        match state.mfa_factors.get_mut(&id) {
            Some(factor) if factor.confirmed_at.is_some() && factor.last_step.is_none_or(|last| last < step) => {
                factor.last_step = Some(step);
                factor.last_used_at = Some(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn remove_factor(
        &self,
        account_id: AccountId,
        id: FactorId,
        event: &AuditEvent,
        notice: &OutgoingEmail,
    ) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        if !state.mfa_factors.get(&id).is_some_and(|factor| factor.account_id == account_id) {
            return Ok(false);
        }
        state.check_event_free(event)?;
        state.check_outbox_free(notice)?;
        state.mfa_factors.remove(&id);
        let confirmed_left =
            state.mfa_factors.values().any(|factor| factor.account_id == account_id && factor.confirmed_at.is_some());
        if !confirmed_left {
            state.recovery_codes.retain(|_, row| row.account_id != account_id);
        }
        state.record(event);
        state.queue(notice, event.at);
        Ok(true)
    }

    async fn remove_all(
        &self,
        account_id: AccountId,
        event: &AuditEvent,
        notice: &OutgoingEmail,
    ) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        state.check_event_free(event)?;
        state.check_outbox_free(notice)?;
        let confirmed =
            state.mfa_factors.values().any(|factor| factor.account_id == account_id && factor.confirmed_at.is_some());
        state.mfa_factors.retain(|_, factor| factor.account_id != account_id);
        state.recovery_codes.retain(|_, row| row.account_id != account_id);
        state.mfa_challenges.retain(|_, challenge| challenge.account_id != account_id);
        // Announced only when a factor that counted went, as the store does.
        if confirmed {
            state.record(event);
        } else {
            state.record_only(event);
        }
        state.queue(notice, event.at);
        Ok(())
    }

    async fn replace_recovery_codes(
        &self,
        account_id: AccountId,
        codes: &[TokenHash],
        at: OffsetDateTime,
        event: &AuditEvent,
        notice: &OutgoingEmail,
    ) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        state.check_event_free(event)?;
        state.check_outbox_free(notice)?;
        if codes.iter().any(|code| state.recovery_codes.get(code).is_some_and(|row| row.account_id != account_id)) {
            return Err(MemoryError::Duplicate("mfa_recovery_codes").into());
        }
        state.replace_codes(account_id, codes)?;
        state.record(event);
        state.queue(notice, at);
        Ok(())
    }

    async fn recovery_codes_left(&self, account_id: AccountId) -> Result<u32, InfraError> {
        let state = self.lock()?;
        let left =
            state.recovery_codes.values().filter(|row| row.account_id == account_id && row.used_at.is_none()).count();
        Ok(u32::try_from(left).unwrap_or(u32::MAX))
    }

    async fn spend_recovery_code(
        &self,
        account_id: AccountId,
        code: &TokenHash,
        at: OffsetDateTime,
        event: &AuditEvent,
        notice: &OutgoingEmail,
    ) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        let usable =
            state.recovery_codes.get(code).is_some_and(|row| row.account_id == account_id && row.used_at.is_none());
        if !usable {
            return Ok(false);
        }
        state.check_event_free(event)?;
        state.check_outbox_free(notice)?;
        if let Some(row) = state.recovery_codes.get_mut(code) {
            row.used_at = Some(at);
        }
        state.record(event);
        state.queue(notice, at);
        Ok(true)
    }

    async fn create_challenge(&self, challenge: &MfaChallenge) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        if !state.account_exists(challenge.account_id) {
            return Err(MemoryError::UnknownAccount("mfa_challenges").into());
        }
        if state.mfa_challenges.contains_key(&challenge.token_hash) {
            return Err(MemoryError::Duplicate("mfa_challenges").into());
        }
        let stored = MfaChallenge { client: stored_client(&challenge.client), ..challenge.clone() };
        state.mfa_challenges.insert(challenge.token_hash, stored);
        Ok(())
    }

    async fn find_challenge(&self, hash: &TokenHash) -> Result<Option<MfaChallenge>, InfraError> {
        Ok(self.lock()?.mfa_challenges.get(hash).cloned())
    }

    async fn fail_challenge(&self, hash: &TokenHash, max_failures: u32) -> Result<Option<u32>, InfraError> {
        let mut state = self.lock()?;
        let Some(challenge) = state.mfa_challenges.get_mut(hash) else { return Ok(None) };
        challenge.failures += 1;
        let failures = challenge.failures;
        if failures >= max_failures {
            state.mfa_challenges.remove(hash);
        }
        Ok(Some(failures))
    }

    async fn spend_challenge(&self, hash: &TokenHash) -> Result<bool, InfraError> {
        Ok(self.lock()?.mfa_challenges.remove(hash).is_some())
    }

    async fn add_passkey(&self, addition: &PasskeyAddition) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        let factor = &addition.factor;
        if !state.account_exists(factor.account_id) {
            return Err(MemoryError::UnknownAccount("mfa_factors").into());
        }
        let taken = state.mfa_factors.contains_key(&factor.id)
            || state
                .mfa_factors
                .values()
                .any(|stored| stored.credential_id.is_some() && stored.credential_id == factor.credential_id);
        if taken {
            return Err(MemoryError::Duplicate("mfa_factors").into());
        }
        state.check_event_free(&addition.event)?;
        state.check_outbox_free(&addition.notice)?;
        if !addition.recovery_codes.is_empty() {
            state.replace_codes(factor.account_id, &addition.recovery_codes)?;
        }
        state.mfa_factors.insert(factor.id, factor.clone());
        state.record(&addition.event);
        state.queue(&addition.notice, factor.created_at);
        Ok(())
    }

    async fn factor_by_credential(&self, credential_id: &str) -> Result<Option<StoredFactor>, InfraError> {
        let state = self.lock()?;
        Ok(state.mfa_factors.values().find(|factor| factor.credential_id.as_deref() == Some(credential_id)).cloned())
    }

    async fn record_passkey_use(
        &self,
        id: FactorId,
        stored: Option<String>,
        at: OffsetDateTime,
    ) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        if let Some(factor) = state.mfa_factors.get_mut(&id) {
            if let Some(stored) = stored {
                factor.secret = SealedSecret(stored);
            }
            factor.last_used_at = Some(at);
        }
        Ok(())
    }

    async fn create_ceremony(&self, ceremony: &PasskeyCeremony) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        if ceremony.account_id.is_some_and(|account| !state.account_exists(account)) {
            return Err(MemoryError::UnknownAccount("passkey_ceremonies").into());
        }
        if state.passkey_ceremonies.contains_key(&ceremony.id) {
            return Err(MemoryError::Duplicate("passkey_ceremonies").into());
        }
        state.passkey_ceremonies.insert(ceremony.id, ceremony.clone());
        Ok(())
    }

    async fn take_ceremony(&self, id: CeremonyId) -> Result<Option<PasskeyCeremony>, InfraError> {
        Ok(self.lock()?.passkey_ceremonies.remove(&id))
    }
}
