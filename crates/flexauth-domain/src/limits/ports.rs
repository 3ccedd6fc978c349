use async_trait::async_trait;
use time::OffsetDateTime;

use super::{LimitCounter, LimitDecision, LimitPolicy, LimitSettlement};
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

    /// Counts one attempt on each of `counters` (distinct counters) in one step, and says of
    /// each, in the same order, whether the attempt is within its limit: what [`hit`] does for
    /// one, in one statement for all on the store, so that a call that counts against several
    /// limits (a login: its address and its account's two tiers) costs one round trip.
    ///
    /// [`hit`]: RateLimiter::hit
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn hit_all(&self, counters: &[LimitCounter], now: OffsetDateTime) -> Result<Vec<LimitDecision>, InfraError>;

    /// Applies each of `settlements` (a [`refund`] or a [`reset`] per counter, distinct
    /// counters) in one step: one statement on the store.
    ///
    /// [`refund`]: RateLimiter::refund
    /// [`reset`]: RateLimiter::reset
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn settle(&self, settlements: &[LimitSettlement], now: OffsetDateTime) -> Result<(), InfraError>;
}
