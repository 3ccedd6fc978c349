use async_trait::async_trait;
use flexauth_domain::account::AccountId;
use flexauth_domain::api_key::{ApiKey, ApiKeyId, ApiKeyRepository};
use flexauth_domain::audit::AuditEvent;
use flexauth_domain::mail::OutgoingEmail;
use flexauth_domain::secret::TokenHash;
use flexauth_domain::session::SessionId;
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::state::ApiKeyRow;
use crate::{MemoryError, MemoryStore};
use flexauth_domain::webhook::KeyRevocationReason;

#[async_trait]
impl ApiKeyRepository for MemoryStore {
    async fn create(
        &self,
        key: &ApiKey,
        hash: &TokenHash,
        notice: &OutgoingEmail,
        created_by: SessionId,
        event: &AuditEvent,
    ) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        // A reset that ends the session either ran before (and stops the key here) or runs
        // after and finds the key to revoke with the account's others.
        let live = state.sessions.get(&created_by).is_some_and(|session| session.revoked_at.is_none());
        if !live {
            return Ok(false);
        }
        if state.api_keys.contains_key(&key.id()) || state.api_key_by_hash.contains_key(hash) {
            return Err(MemoryError::Duplicate("api_keys").into());
        }
        if !state.account_exists(key.account_id()) {
            return Err(MemoryError::UnknownAccount("api_keys").into());
        }
        state.check_outbox_free(notice)?;
        state.check_event_free(event)?;
        state.api_key_by_hash.insert(*hash, key.id());
        state.api_keys.insert(key.id(), ApiKeyRow { key: key.clone(), hash: *hash, revoked_at: None });
        state.queue(notice, key.created_at());
        state.record(event);
        Ok(true)
    }

    async fn find_active_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiKey>, InfraError> {
        let state = self.lock()?;
        // A key of a deleted account went with it, so every key found has its account.
        Ok(state
            .api_key_by_hash
            .get(hash)
            .and_then(|id| state.api_keys.get(id))
            .filter(|row| row.revoked_at.is_none())
            .map(|row| row.key.clone()))
    }

    async fn list(&self, account_id: AccountId) -> Result<Vec<ApiKey>, InfraError> {
        let state = self.lock()?;
        let mut keys: Vec<&ApiKey> = state
            .api_keys
            .values()
            .filter(|row| row.key.account_id() == account_id && row.revoked_at.is_none())
            .map(|row| &row.key)
            .collect();
        keys.sort_by(|a, b| a.created_at().cmp(&b.created_at()).then_with(|| a.id().as_uuid().cmp(&b.id().as_uuid())));
        Ok(keys.into_iter().cloned().collect())
    }

    async fn revoke(
        &self,
        account_id: AccountId,
        id: ApiKeyId,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        let live =
            state.api_keys.get(&id).is_some_and(|row| row.key.account_id() == account_id && row.revoked_at.is_none());
        if !live {
            return Ok(false);
        }
        state.check_event_free(event)?;
        let revoked = state.api_keys.get_mut(&id).map(|row| {
            row.revoked_at = Some(now);
            row.key.clone()
        });
        state.record(event);
        if let Some(key) = revoked {
            state.announce_revoked(&key, KeyRevocationReason::Revoked, now);
        }
        Ok(true)
    }

    async fn touch(&self, id: ApiKeyId, now: OffsetDateTime) -> Result<(), InfraError> {
        if let Some(row) = self.lock()?.api_keys.get_mut(&id) {
            row.key.record_use(now);
        }
        Ok(())
    }
}
