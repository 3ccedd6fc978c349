use async_trait::async_trait;
use flexauth_domain::account::{AccountRequest, AccountRequestQueue};
use flexauth_domain::mail::LeaseId;
use flexauth_domain::InfraError;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::state::RequestRow;
use crate::{MemoryError, MemoryStore};

#[async_trait]
impl AccountRequestQueue for MemoryStore {
    async fn submit(&self, request: &AccountRequest) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        if state.account_requests.contains_key(&request.id) {
            return Err(MemoryError::Duplicate("account_requests").into());
        }
        state
            .account_requests
            .insert(request.id, RequestRow { request: request.clone(), lease_id: None, lease_until: None });
        Ok(())
    }

    async fn claim(
        &self,
        now: OffsetDateTime,
        lease: LeaseId,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<AccountRequest>, InfraError> {
        let mut state = self.lock()?;
        // Under the one lock, reading the free requests and leasing them is a single step:
        // of several workers exactly one takes each request.
        let mut free: Vec<(OffsetDateTime, Uuid)> = state
            .account_requests
            .values()
            .filter(|row| row.lease_until.is_none_or(|until| until <= now))
            .map(|row| (row.request.requested_at, row.request.id))
            .collect();
        free.sort_unstable();
        let mut claimed = Vec::new();
        for (_, id) in free.into_iter().take(limit as usize) {
            if let Some(row) = state.account_requests.get_mut(&id) {
                row.lease_id = Some(lease);
                row.lease_until = Some(lease_until);
                claimed.push(row.request.clone());
            }
        }
        Ok(claimed)
    }

    async fn complete(&self, id: Uuid, lease: LeaseId) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        // Only the lease's holder deletes: a worker whose lease ran out and was taken over
        // leaves the request to the one that holds it now.
        if state.account_requests.get(&id).is_some_and(|row| row.lease_id == Some(lease)) {
            state.account_requests.remove(&id);
        }
        Ok(())
    }
}
