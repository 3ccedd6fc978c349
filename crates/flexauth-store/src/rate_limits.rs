use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use flexauth_domain::limits::{window_start, LimitDecision, LimitPolicy, RateLimiter};
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::rows::{instant, millis};
use crate::schema::rate_limits;
use crate::Store;

#[derive(QueryableByName)]
struct Hits {
    #[diesel(sql_type = BigInt)]
    hits: i64,
    #[diesel(sql_type = BigInt)]
    window_start: i64,
}

/// The attempt counter, in one statement that both backends run alike: a new key, or a key
/// whose stored window is older than this attempt's, starts at 1 in the new window; otherwise
/// the count goes up by one and the stored window stays (an attempt that computed its window a
/// moment before the boundary, then waited, can never move the window back and reset the
/// count). PostgreSQL serialises concurrent upserts of one key on its row, SQLite serialises
/// writers, so no attempt is lost between instances.
const HIT: &str = "INSERT INTO rate_limits (key, window_start, hits) VALUES ($1, $2, 1) \
     ON CONFLICT (key) DO UPDATE SET \
     hits = CASE WHEN excluded.window_start > rate_limits.window_start THEN 1 ELSE rate_limits.hits + 1 END, \
     window_start = CASE WHEN excluded.window_start > rate_limits.window_start THEN excluded.window_start ELSE rate_limits.window_start END \
     RETURNING hits, window_start";

/// Takes back one attempt of the current window (a login that turned out right).
const REFUND: &str = "UPDATE rate_limits SET hits = hits - 1 WHERE key = $1 AND window_start = $2 AND hits > 0";

#[async_trait]
impl RateLimiter for Store {
    async fn hit(&self, key: &str, policy: &LimitPolicy, now: OffsetDateTime) -> Result<LimitDecision, InfraError> {
        let start = window_start(policy, now);
        let (key, start_millis) = (format!("{}:{key}", policy.name), millis(start));
        let row: Hits = self
            .run(move |c| {
                Ok(diesel::sql_query(HIT)
                    .bind::<Text, _>(&key)
                    .bind::<BigInt, _>(start_millis)
                    .get_result::<Hits>(c)?)
            })
            .await?;
        let stored_start = instant(row.window_start)?.max(start);
        Ok(LimitDecision::of_count(*policy, crate::rows::stored_count(row.hits)?, stored_start, now))
    }

    async fn refund(&self, key: &str, policy: &LimitPolicy, now: OffsetDateTime) -> Result<(), InfraError> {
        let (key, start) = (format!("{}:{key}", policy.name), millis(window_start(policy, now)));
        self.run(move |c| Ok(diesel::sql_query(REFUND).bind::<Text, _>(&key).bind::<BigInt, _>(start).execute(c)?))
            .await?;
        Ok(())
    }

    async fn peek(&self, key: &str, policy: &LimitPolicy, now: OffsetDateTime) -> Result<LimitDecision, InfraError> {
        let start = window_start(policy, now);
        let key = format!("{}:{key}", policy.name);
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
        let key = format!("{}:{key}", policy.name);
        self.run(move |c| Ok(diesel::delete(rate_limits::table.find(&key)).execute(c)?)).await?;
        Ok(())
    }
}
