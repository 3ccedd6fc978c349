use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use flexauth_domain::limits::{window_start, LimitDecision, LimitPolicy, RateLimiter};
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::rows::{instant, millis};
use crate::schema::rate_limits;
use crate::{with_connection, Store};

#[derive(QueryableByName)]
struct Hits {
    #[diesel(sql_type = BigInt)]
    hits: i64,
}

/// The attempt counter, in one statement that both backends run alike: a new key or a key of
/// an older window starts at 1, a key of the current window goes up by one. PostgreSQL
/// serialises concurrent upserts of one key on its row, SQLite serialises writers, so no
/// attempt is lost between instances.
const HIT: &str = "INSERT INTO rate_limits (key, window_start, hits) VALUES ($1, $2, 1) \
     ON CONFLICT (key) DO UPDATE SET \
     hits = CASE WHEN rate_limits.window_start = excluded.window_start THEN rate_limits.hits + 1 ELSE 1 END, \
     window_start = excluded.window_start \
     RETURNING hits";

#[async_trait]
impl RateLimiter for Store {
    async fn hit(&self, key: &str, policy: &LimitPolicy, now: OffsetDateTime) -> Result<LimitDecision, InfraError> {
        let start = window_start(policy, now);
        let (key, start_millis) = (format!("{}:{key}", policy.name), millis(start));
        let row: Hits = self
            .run(move |connection| {
                Ok(with_connection!(connection, |c| diesel::sql_query(HIT).bind::<Text, _>(&key).bind::<BigInt, _>(start_millis).get_result::<Hits>(c))?)
            })
            .await?;
        Ok(LimitDecision::of_count(*policy, u64::try_from(row.hits).unwrap_or(0), start, now))
    }

    async fn peek(&self, key: &str, policy: &LimitPolicy, now: OffsetDateTime) -> Result<LimitDecision, InfraError> {
        let start = window_start(policy, now);
        let key = format!("{}:{key}", policy.name);
        let row: Option<(i64, i64)> = self
            .run(move |connection| {
                Ok(with_connection!(connection, |c| rate_limits::table.find(&key).select((rate_limits::window_start, rate_limits::hits)).first(c).optional())?)
            })
            .await?;
        let count = match row {
            Some((stored_start, hits)) if instant(stored_start)? == start => u64::try_from(hits).unwrap_or(0),
            _ => 0,
        };
        // The attempt being considered is the one after those counted.
        Ok(LimitDecision::of_count(*policy, count + 1, start, now))
    }

    async fn reset(&self, key: &str, policy: &LimitPolicy) -> Result<(), InfraError> {
        let key = format!("{}:{key}", policy.name);
        self.run(move |connection| Ok(with_connection!(connection, |c| diesel::delete(rate_limits::table.find(&key)).execute(c))?)).await?;
        Ok(())
    }
}
