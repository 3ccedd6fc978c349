use async_trait::async_trait;
use flexauth_domain::limits::{window_start, LimitDecision, LimitPolicy, RateLimiter};
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::state::CounterRow;
use crate::MemoryStore;

/// The counter's key: the policy's name and the caller's key, as the store writes it.
fn counter_key(policy: &LimitPolicy, key: &str) -> String {
    format!("{}:{key}", policy.name)
}

#[async_trait]
impl RateLimiter for MemoryStore {
    async fn hit(&self, key: &str, policy: &LimitPolicy, now: OffsetDateTime) -> Result<LimitDecision, InfraError> {
        let start = window_start(policy, now);
        let mut state = self.lock()?;
        let counter =
            state.rate_limits.entry(counter_key(policy, key)).or_insert(CounterRow { window_start: start, hits: 0 });
        // A later window starts over at this attempt; an attempt that computed an earlier
        // window (it waited across the boundary) counts in the stored one and never moves the
        // window back.
        if start > counter.window_start {
            counter.window_start = start;
            counter.hits = 1;
        } else {
            counter.hits = counter.hits.saturating_add(1);
        }
        Ok(LimitDecision::of_count(*policy, counter.hits, counter.window_start.max(start), now))
    }

    async fn peek(&self, key: &str, policy: &LimitPolicy, now: OffsetDateTime) -> Result<LimitDecision, InfraError> {
        let start = window_start(policy, now);
        let state = self.lock()?;
        let count = state
            .rate_limits
            .get(&counter_key(policy, key))
            .filter(|counter| counter.window_start == start)
            .map_or(0, |counter| counter.hits);
        // The attempt being considered is the one after those counted.
        Ok(LimitDecision::of_count(*policy, count.saturating_add(1), start, now))
    }

    async fn refund(&self, key: &str, policy: &LimitPolicy, now: OffsetDateTime) -> Result<(), InfraError> {
        let start = window_start(policy, now);
        let mut state = self.lock()?;
        if let Some(counter) = state.rate_limits.get_mut(&counter_key(policy, key)) {
            if counter.window_start == start && counter.hits > 0 {
                counter.hits -= 1;
            }
        }
        Ok(())
    }

    async fn reset(&self, key: &str, policy: &LimitPolicy) -> Result<(), InfraError> {
        self.lock()?.rate_limits.remove(&counter_key(policy, key));
        Ok(())
    }
}
