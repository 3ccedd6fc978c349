//! Retention: what flexauth forgets, and when. The worker of every instance runs the purge now
//! and then; it deletes in small batches, and two instances purging at once only find less to
//! delete.

mod ports;

pub use ports::Housekeeping;
#[cfg(any(test, feature = "mocks"))]
pub use ports::MockHousekeeping;

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use crate::system::Clock;
use crate::InfraError;

/// How long each kind of record is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Security log entries (90 days by default).
    pub audit_events: Duration,
    /// Sessions after they ended (revoked or expired): their user agent and address go with
    /// them (30 days).
    pub ended_sessions: Duration,
    /// Accounts never verified, counted from their creation, once no link of theirs still
    /// works (7 days).
    pub unverified_accounts: Duration,
    /// Verification and reset links after they were used or expired (1 day).
    pub spent_links: Duration,
    /// Rate-limit counters of past windows (1 day; the longest window is an hour).
    pub rate_limit_counters: Duration,
    /// The record of a session's ending, which instances read to refuse its access tokens at
    /// once (1 day; never less than an access-token lifetime).
    pub session_endings: Duration,
    /// Webhook attempts, and messages given up on (30 days).
    pub webhook_history: Duration,
    /// Rows one statement deletes at most, so a purge never holds long locks.
    pub batch: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            audit_events: Duration::days(90),
            ended_sessions: Duration::days(30),
            unverified_accounts: Duration::days(7),
            spent_links: Duration::days(1),
            rate_limit_counters: Duration::days(1),
            session_endings: Duration::days(1),
            webhook_history: Duration::days(30),
            batch: 500,
        }
    }
}

/// The instants before which each kind of record goes, as decided for one purge at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeCutoffs {
    /// The purge's instant.
    pub now: OffsetDateTime,
    /// Security log entries older than this go.
    pub audit_events_before: OffsetDateTime,
    /// Sessions that ended before this go.
    pub sessions_ended_before: OffsetDateTime,
    /// Unverified accounts created before this, without a working link, go.
    pub unverified_created_before: OffsetDateTime,
    /// Links used or expired before this go.
    pub links_spent_before: OffsetDateTime,
    /// Counters whose window started before this go.
    pub counters_before: OffsetDateTime,
    /// Records of sessions that ended before this go.
    pub session_endings_before: OffsetDateTime,
    /// Webhook attempts made, and messages given up, before this go.
    pub webhook_history_before: OffsetDateTime,
    /// Sessions that expired (never revoked) after this and before `now` are announced as
    /// `session.ended` with the reason `expired`, once each; older expiries are not (an
    /// instance that was stopped for days does not announce a backlog).
    pub expiries_announced_after: OffsetDateTime,
    /// Rows per statement at most.
    pub batch: u32,
}

impl RetentionSettings {
    /// The cutoffs of a purge at `now`.
    pub fn cutoffs(&self, now: OffsetDateTime) -> PurgeCutoffs {
        PurgeCutoffs {
            now,
            audit_events_before: now - self.audit_events,
            sessions_ended_before: now - self.ended_sessions,
            unverified_created_before: now - self.unverified_accounts,
            links_spent_before: now - self.spent_links,
            counters_before: now - self.rate_limit_counters,
            session_endings_before: now - self.session_endings,
            webhook_history_before: now - self.webhook_history,
            expiries_announced_after: now - Duration::days(1),
            batch: self.batch,
        }
    }
}

/// What one purge pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub audit_events: u64,
    pub sessions: u64,
    pub unverified_accounts: u64,
    pub links: u64,
    pub counters: u64,
    /// Device tokens unused for longer than ended sessions are kept.
    pub devices: u64,
    /// Records of sessions' endings older than every access token.
    pub session_endings: u64,
    /// Login challenges and passkey ceremonies past their lifetime, and enrolments of
    /// factors never confirmed within theirs.
    pub ceremonies: u64,
    /// Webhook attempts and given-up messages past their retention.
    pub webhook_records: u64,
    /// Sessions whose expiry was announced to webhooks (not deleted: they go with the other
    /// ended sessions).
    pub expiries_announced: u64,
}

impl PurgeReport {
    /// Everything deleted.
    pub fn total(&self) -> u64 {
        self.audit_events
            + self.sessions
            + self.unverified_accounts
            + self.links
            + self.counters
            + self.devices
            + self.session_endings
            + self.ceremonies
            + self.webhook_records
            + self.expiries_announced
    }
}

/// Runs purges.
#[derive(Clone)]
pub struct HousekeepingService {
    store: Arc<dyn Housekeeping>,
    clock: Arc<dyn Clock>,
    settings: RetentionSettings,
}

impl std::fmt::Debug for HousekeepingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HousekeepingService").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl HousekeepingService {
    /// Wires the service to its ports.
    pub fn new(store: Arc<dyn Housekeeping>, clock: Arc<dyn Clock>, settings: RetentionSettings) -> Self {
        Self { store, clock, settings }
    }

    /// One batch of each kind, as of now.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    pub async fn purge(&self) -> Result<PurgeReport, InfraError> {
        self.store.purge(&self.settings.cutoffs(self.clock.now())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_default_cutoffs_keep_the_documented_periods() {
        let now = datetime!(2026-12-01 12:00 UTC);
        let cutoffs = RetentionSettings::default().cutoffs(now);
        assert_eq!(cutoffs.audit_events_before, datetime!(2026-09-02 12:00 UTC));
        assert_eq!(cutoffs.sessions_ended_before, datetime!(2026-11-01 12:00 UTC));
        assert_eq!(cutoffs.unverified_created_before, datetime!(2026-11-24 12:00 UTC));
        assert_eq!(cutoffs.links_spent_before, datetime!(2026-11-30 12:00 UTC));
        assert_eq!(cutoffs.batch, 500);
    }
}
