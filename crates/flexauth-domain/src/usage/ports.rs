//! The port of the request counts.

use async_trait::async_trait;
use time::Date;

use crate::newtypes::AccountId;
use crate::InfraError;

/// Requests of one account on one UTC day: an increment to add, or a stored total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageCount {
    /// The account.
    pub account_id: AccountId,
    /// The UTC day.
    pub day: Date,
    /// Requests.
    pub requests: u64,
}

/// Counters of authenticated requests per account and UTC day, shared by all instances.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait UsageRepository: Send + Sync {
    /// Adds every increment of `batch` to its counter, in one transaction, and returns the
    /// totals after it. An increment whose account no longer exists is dropped and has no
    /// total.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; then nothing was added.
    async fn add_requests(&self, batch: &[UsageCount]) -> Result<Vec<UsageCount>, InfraError>;

    /// The stored count of `account_id` for `day` (0 when there is none), or `None` when the
    /// account no longer exists.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn requests_on(&self, account_id: AccountId, day: Date) -> Result<Option<u64>, InfraError>;
}
