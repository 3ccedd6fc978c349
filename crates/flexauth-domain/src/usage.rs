//! Request accounting for `/v1/usage`: how many authenticated requests an account made today.

use std::sync::Arc;

use async_trait::async_trait;
use time::Date;

use crate::account::AccountId;
use crate::runtime::Clock;
use crate::InfraError;

/// Counters of authenticated requests per account and UTC day, shared by all instances.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait UsageRepository: Send + Sync {
    /// Adds one request to the counter of `account_id` for `day` and returns the new count.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn record_request(&self, account_id: AccountId, day: Date) -> Result<u64, InfraError>;
}

/// What `/v1/usage` reports about the caller's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageReport {
    /// The UTC day counted.
    pub day: Date,
    /// Requests on that day, this one included.
    pub requests_today: u64,
}

/// Counts requests and reports them.
#[derive(Clone)]
pub struct UsageService {
    usage: Arc<dyn UsageRepository>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for UsageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageService").finish_non_exhaustive()
    }
}

impl UsageService {
    /// Wires the service to its ports.
    pub fn new(usage: Arc<dyn UsageRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { usage, clock }
    }

    /// Counts this request and reports today's total.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    pub async fn record(&self, account_id: AccountId) -> Result<UsageReport, InfraError> {
        let day = self.clock.now().date();
        let requests_today = self.usage.record_request(account_id, day).await?;
        Ok(UsageReport { day, requests_today })
    }
}
