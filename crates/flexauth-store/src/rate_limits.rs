use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use flexauth_domain::limits::{window_start, LimitCounter, LimitDecision, LimitPolicy, LimitSettlement, RateLimiter};
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::rows::{instant, millis};
use crate::schema::rate_limits;
use crate::{per_backend, Store, StoreError};

/// The stored key of the counter of `key` under `policy`.
fn counter_key(policy: &LimitPolicy, key: &str) -> String {
    format!("{}:{key}", policy.name)
}

/// The attempt counter, in one statement that both backends run alike, with one row of values
/// per counter: a new key, or a key whose stored window is older than this attempt's, starts at
/// 1 in the new window; otherwise the count goes up by one and the stored window stays (an
/// attempt that computed its window a moment before the boundary, then waited, can never move
/// the window back and reset the count). PostgreSQL serialises concurrent upserts of one key on
/// its row, SQLite serialises writers, so no attempt is lost between instances. Each counter's
/// key is read back with its count: `RETURNING` promises no order.
fn hit_statement(counters: usize) -> String {
    let values: Vec<String> = (0..counters).map(|i| format!("(${}, ${}, 1)", 2 * i + 1, 2 * i + 2)).collect();
    format!(
        "INSERT INTO rate_limits (key, window_start, hits) VALUES {} \
         ON CONFLICT (key) DO UPDATE SET \
         hits = CASE WHEN excluded.window_start > rate_limits.window_start THEN 1 ELSE rate_limits.hits + 1 END, \
         window_start = CASE WHEN excluded.window_start > rate_limits.window_start THEN excluded.window_start ELSE rate_limits.window_start END \
         RETURNING key, hits, window_start",
        values.join(", ")
    )
}

#[derive(QueryableByName)]
struct KeyedHits {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = BigInt)]
    hits: i64,
    #[diesel(sql_type = BigInt)]
    window_start: i64,
}

/// One statement that settles several counters: each `(key, window or none, clear)` either
/// loses one attempt counted in that window (a refund) or every attempt (a clear, which leaves
/// the row at zero for the purge, as good as none to the next hit). Parameters are numbered in
/// the order they appear, as SQLite assigns them.
fn settle_statement(clears: &[bool]) -> String {
    let mut next = 0;
    let mut parameter = || {
        next += 1;
        format!("${next}")
    };
    let cases: Vec<String> = clears
        .iter()
        .map(|clear| format!("WHEN key = {} THEN {}", parameter(), if *clear { "0" } else { "hits - 1" }))
        .collect();
    let filters: Vec<String> = clears
        .iter()
        .map(|clear| {
            let key = parameter();
            if *clear {
                format!("key = {key}")
            } else {
                format!("(key = {key} AND window_start = {})", parameter())
            }
        })
        .collect();
    format!(
        "UPDATE rate_limits SET hits = CASE {} ELSE hits END WHERE hits > 0 AND ({})",
        cases.join(" "),
        filters.join(" OR ")
    )
}

/// A single hit or refund is a batch of one: one statement and one rule for both.
#[async_trait]
impl RateLimiter for Store {
    async fn hit(&self, key: &str, policy: &LimitPolicy, now: OffsetDateTime) -> Result<LimitDecision, InfraError> {
        let decisions = self.hit_all(&[LimitCounter::new(key, *policy)], now).await?;
        decisions.into_iter().next().ok_or_else(|| StoreError::CorruptRow("a counter was not read back").into())
    }

    async fn refund(&self, key: &str, policy: &LimitPolicy, now: OffsetDateTime) -> Result<(), InfraError> {
        self.settle(&[LimitSettlement::Refund(LimitCounter::new(key, *policy))], now).await
    }

    async fn peek(&self, key: &str, policy: &LimitPolicy, now: OffsetDateTime) -> Result<LimitDecision, InfraError> {
        let start = window_start(policy, now);
        let key = counter_key(policy, key);
        let row: Option<(i64, i64)> = self
            .run(move |c| {
                Ok(rate_limits::table
                    .find(&key)
                    .select((rate_limits::window_start, rate_limits::hits))
                    .first(c)
                    .optional()?)
            })
            .await?;
        let count = match row {
            Some((stored_start, hits)) if instant(stored_start)? == start => crate::rows::stored_count(hits)?,
            _ => 0,
        };
        // The attempt being considered is the one after those counted.
        Ok(LimitDecision::of_count(*policy, count + 1, start, now))
    }

    async fn reset(&self, key: &str, policy: &LimitPolicy) -> Result<(), InfraError> {
        let key = counter_key(policy, key);
        self.run(move |c| Ok(diesel::delete(rate_limits::table.find(&key)).execute(c)?)).await?;
        Ok(())
    }

    async fn hit_all(&self, counters: &[LimitCounter], now: OffsetDateTime) -> Result<Vec<LimitDecision>, InfraError> {
        if counters.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, i64)> = counters
            .iter()
            .map(|counter| (counter_key(&counter.policy, &counter.key), millis(window_start(&counter.policy, now))))
            .collect();
        let statement = hit_statement(rows.len());
        let bound = rows.clone();
        let counted: Vec<KeyedHits> = self
            .run(move |c| {
                per_backend!(c, |c| {
                    let mut query = diesel::sql_query(&statement).into_boxed();
                    for (key, start) in &bound {
                        query = query.bind::<Text, _>(key.clone()).bind::<BigInt, _>(*start);
                    }
                    Ok::<_, StoreError>(query.load::<KeyedHits>(c)?)
                })
            })
            .await?;
        counters
            .iter()
            .zip(&rows)
            .map(|(counter, (key, _))| {
                let row = counted
                    .iter()
                    .find(|row| &row.key == key)
                    .ok_or(StoreError::CorruptRow("a counter was not read back"))?;
                let start = window_start(&counter.policy, now);
                let stored_start = instant(row.window_start)?.max(start);
                Ok(LimitDecision::of_count(counter.policy, crate::rows::stored_count(row.hits)?, stored_start, now))
            })
            .collect::<Result<_, StoreError>>()
            .map_err(InfraError::from)
    }

    async fn settle(&self, settlements: &[LimitSettlement], now: OffsetDateTime) -> Result<(), InfraError> {
        if settlements.is_empty() {
            return Ok(());
        }
        // Each counter's key, and its window when it is refunded (none when it is cleared).
        let settled: Vec<(String, Option<i64>)> = settlements
            .iter()
            .map(|settlement| match settlement {
                LimitSettlement::Refund(counter) => {
                    (counter_key(&counter.policy, &counter.key), Some(millis(window_start(&counter.policy, now))))
                }
                LimitSettlement::Clear(counter) => (counter_key(&counter.policy, &counter.key), None),
            })
            .collect();
        let statement = settle_statement(&settled.iter().map(|(_, window)| window.is_none()).collect::<Vec<_>>());
        self.run(move |c| {
            per_backend!(c, |c| {
                let mut query = diesel::sql_query(&statement).into_boxed();
                for (key, _) in &settled {
                    query = query.bind::<Text, _>(key.clone());
                }
                for (key, window) in &settled {
                    query = query.bind::<Text, _>(key.clone());
                    if let Some(window) = window {
                        query = query.bind::<BigInt, _>(*window);
                    }
                }
                Ok::<_, StoreError>(query.execute(c)?)
            })
        })
        .await?;
        Ok(())
    }
}
