use async_trait::async_trait;
use flexauth_domain::account::AccountId;
use flexauth_domain::usage::{UsageCount, UsageRepository};
use flexauth_domain::InfraError;
use time::Date;

use crate::MemoryStore;

#[async_trait]
impl UsageRepository for MemoryStore {
    async fn add_requests(&self, batch: &[UsageCount]) -> Result<Vec<UsageCount>, InfraError> {
        let mut state = self.lock()?;
        let mut written: Vec<(AccountId, Date)> = Vec::new();
        for increment in batch {
            // An account deleted since its requests were counted takes its counts with it.
            if !state.account_exists(increment.account_id) {
                continue;
            }
            let key = (increment.account_id, increment.day);
            let counter = state.usage.entry(key).or_insert(0);
            *counter = counter.saturating_add(increment.requests);
            if !written.contains(&key) {
                written.push(key);
            }
        }
        Ok(written
            .into_iter()
            .map(|(account_id, day)| UsageCount {
                account_id,
                day,
                requests: state.usage.get(&(account_id, day)).copied().unwrap_or(0),
            })
            .collect())
    }

    async fn requests_on(&self, account_id: AccountId, day: Date) -> Result<Option<u64>, InfraError> {
        let state = self.lock()?;
        if !state.account_exists(account_id) {
            return Ok(None);
        }
        Ok(Some(state.usage.get(&(account_id, day)).copied().unwrap_or(0)))
    }
}
