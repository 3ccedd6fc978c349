use async_trait::async_trait;
use time::OffsetDateTime;

use super::{LimitDecision, LimitPolicy};
use crate::InfraError;

/// Counters of attempts, shared by every instance on the same database.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one attempt under `key` in the current window of `policy` (one statement, so
    /// concurrent instances never lose a count) and says whether it is within the limit.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn hit(&self, key: &str, policy: &LimitPolicy, now: OffsetDateTime) -> Result<LimitDecision, InfraError>;

    /// Says whether one more attempt under `key` would be within the limit, counting nothing.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn peek(&self, key: &str, policy: &LimitPolicy, now: OffsetDateTime) -> Result<LimitDecision, InfraError>;

    /// Takes back one attempt counted under `key` in the current window: an attempt counted
    /// before the work (so that concurrent attempts cannot all slip under the limit) that then
    /// turned out not to count, such as a login with the right password.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn refund(&self, key: &str, policy: &LimitPolicy, now: OffsetDateTime) -> Result<(), InfraError>;

    /// Forgets the attempts counted under `key` (a successful login clears its account's
    /// failures).
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn reset(&self, key: &str, policy: &LimitPolicy) -> Result<(), InfraError>;
}
