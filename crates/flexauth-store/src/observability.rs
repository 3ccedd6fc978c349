//! What the store tells the server's metrics: the connection pool's use, how long requests
//! waited for a connection, and the backlog of the outbox.

use std::time::Duration;

use diesel::dsl::{count_star, min};
use diesel::prelude::*;
use time::OffsetDateTime;

use crate::rows::instant;
use crate::schema::outbox;
use crate::{Store, StoreError};

/// The connection pool now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections open, idle or handed out.
    pub open: u32,
    /// Of those, connections handed out to a query now.
    pub in_use: u32,
    /// The most the pool opens.
    pub max: u32,
}

/// Emails accepted but not sent yet (neither sent nor given up on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxBacklog {
    /// How many.
    pub unsent: u64,
    /// When the oldest of them was queued; `None` when there is none.
    pub oldest_queued_at: Option<OffsetDateTime>,
}

/// The callback that hears how long each query waited for a pooled connection.
pub(crate) type WaitObserver = std::sync::Arc<std::sync::OnceLock<Box<dyn Fn(Duration) + Send + Sync>>>;

impl Store {
    /// The connection pool's size and use now.
    pub fn pool_usage(&self) -> PoolUsage {
        let state = self.pool.state();
        PoolUsage {
            open: state.connections,
            in_use: state.connections.saturating_sub(state.idle_connections),
            max: self.pool.max_size(),
        }
    }

    /// Calls `observer` with how long each query waited for a pooled connection (for a metrics
    /// histogram). Only the first observer set is kept; clones of this store share it.
    pub fn observe_connection_waits(&self, observer: impl Fn(Duration) + Send + Sync + 'static) {
        let _ = self.connection_waits.set(Box::new(observer));
    }

    /// The emails waiting to be sent, and the age of the oldest: a growing age means mail is
    /// not leaving (the SMTP server refuses, or no worker runs).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError> {
        let (unsent, oldest) = self
            .run(|c| {
                Ok(outbox::table
                    .filter(outbox::sent_at.is_null())
                    .filter(outbox::failed_at.is_null())
                    .select((count_star(), min(outbox::queued_at)))
                    .first::<(i64, Option<i64>)>(c)?)
            })
            .await?;
        Ok(OutboxBacklog {
            unsent: u64::try_from(unsent).unwrap_or_default(),
            oldest_queued_at: oldest.map(instant).transpose()?,
        })
    }
}
