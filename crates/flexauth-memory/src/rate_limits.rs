use std::collections::HashMap;

use async_trait::async_trait;
use flexauth_domain::limits::{window_start, LimitCounter, LimitDecision, LimitPolicy, LimitSettlement, RateLimiter};
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::state::CounterRow;
use crate::MemoryStore;

/// The counter's key: the policy's name and the caller's key, as the store writes it.
fn counter_key(policy: &LimitPolicy, key: &str) -> String {
    format!("{}:{key}", policy.name)
}

/// Counts one attempt on `key` under `policy`. A later window starts over at this attempt; an
/// attempt that computed an earlier window (it waited across the boundary) counts in the
/// stored one and never moves the window back.
fn count_hit(
    counters: &mut HashMap<String, CounterRow>,
    key: &str,
    policy: &LimitPolicy,
    now: OffsetDateTime,
) -> LimitDecision {
    let start = window_start(policy, now);
    let counter = counters.entry(counter_key(policy, key)).or_insert(CounterRow { window_start: start, hits: 0 });
    if start > counter.window_start {
        counter.window_start = start;
        counter.hits = 1;
    } else {
        counter.hits = counter.hits.saturating_add(1);
    }
    LimitDecision::of_count(*policy, counter.hits, counter.window_start.max(start), now)
}

/// Takes back one attempt on `key` under `policy` counted in the current window.
fn refund_hit(counters: &mut HashMap<String, CounterRow>, key: &str, policy: &LimitPolicy, now: OffsetDateTime) {
    let start = window_start(policy, now);
    if let Some(counter) = counters.get_mut(&counter_key(policy, key)) {
        if counter.window_start == start && counter.hits > 0 {
            counter.hits -= 1;
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryStore {
    async fn hit(&self, key: &str, policy: &LimitPolicy, now: OffsetDateTime) -> Result<LimitDecision, InfraError> {
        Ok(count_hit(&mut self.lock()?.rate_limits, key, policy, now))
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
        refund_hit(&mut self.lock()?.rate_limits, key, policy, now);
        Ok(())
    }

    async fn reset(&self, key: &str, policy: &LimitPolicy) -> Result<(), InfraError> {
        self.lock()?.rate_limits.remove(&counter_key(policy, key));
        Ok(())
    }

    async fn hit_all(&self, counters: &[LimitCounter], now: OffsetDateTime) -> Result<Vec<LimitDecision>, InfraError> {
        // Under one lock, as the store's one statement.
        let mut state = self.lock()?;
        Ok(counters
            .iter()
            .map(|counter| count_hit(&mut state.rate_limits, &counter.key, &counter.policy, now))
            .collect())
    }

    async fn settle(&self, settlements: &[LimitSettlement], now: OffsetDateTime) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        for settlement in settlements {
            match settlement {
                LimitSettlement::Refund(counter) => {
                    refund_hit(&mut state.rate_limits, &counter.key, &counter.policy, now);
                }
                LimitSettlement::Clear(counter) => {
                    state.rate_limits.remove(&counter_key(&counter.policy, &counter.key));
                }
            }
        }
        Ok(())
    }
}
