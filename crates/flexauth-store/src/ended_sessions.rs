//! The sessions that ended recently, in this instance's memory, so that an access token of an
//! ended session is refused at once by every endpoint without a database read per request.
//!
//! A trigger (migration 12) records every ending in `session_endings`, in the transaction that
//! ends the session: a revocation, or the deletion of a live session with its account. The set
//! learns of new rows in one of two ways:
//!
//! - PostgreSQL: the trigger also notifies [`CHANNEL`], which the listening connection of
//!   [`crate::announcements`] hears; the set is loaded from the table whenever that connection
//!   (re)starts, and trusted only while the connection is (the same heartbeat rule as the API
//!   key cache). A change that ends sessions answers only once every listening instance has
//!   heard it.
//! - SQLite (no notifications): the thread of [`crate::sqlite_watch`] reads the rows newer than
//!   the last it saw four times a second, and this instance reads them at once after it ends a
//!   session. The set is trusted while the last read is recent.
//!
//! Behind a transaction pooler there is neither (no `LISTEN`, no session state): the set is
//! never trusted and every check reads the session.
//!
//! Rows are kept, and remembered, for at least an access-token lifetime: past it, every token
//! of an ended session has expired anyway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use diesel::prelude::*;

use crate::schema::session_endings;

/// The notification channel of ended sessions; the trigger of migration 12 names it too.
pub(crate) const CHANNEL: &str = "flexauth_sessions";

/// How recent the last successful read must be for the set to be trusted, on SQLite.
const POLL_TRUSTED_FOR: Duration = Duration::from_secs(1);

/// A read looks this far behind the newest ending it saw, for rows written with a clock a
/// little behind (another process's) or committed a little later than they were stamped.
const OVERLAP_MS: i64 = 5_000;

/// Sessions remembered at most; beyond, the set stops being trusted until old ones are
/// forgotten (a mass logout costs database reads, never a wrong answer).
const CAPACITY: usize = 1_000_000;

#[derive(Debug, Default)]
struct Entries {
    /// Ended session ids and when they ended (Unix milliseconds, the database's clock).
    ended: HashMap<String, i64>,
    /// The newest ending seen: where the next read starts.
    newest: i64,
}

pub(crate) struct EndedSessionSet {
    entries: Mutex<Entries>,
    /// How long endings are remembered, in milliseconds; 0 until the server asks to watch.
    keep_for_ms: AtomicI64,
    /// Whether the set holds every ending within `keep_for` (a load completed since the last
    /// loss).
    loaded: AtomicBool,
    /// On SQLite: when the last successful read started, in microseconds after `epoch` (0:
    /// never).
    read_at: AtomicU64,
    epoch: Instant,
    /// Answers given from memory, and checks sent to the database instead: for the metrics.
    pub(crate) answered: AtomicU64,
    pub(crate) deferred: AtomicU64,
}

impl EndedSessionSet {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            entries: Mutex::default(),
            keep_for_ms: AtomicI64::new(0),
            loaded: AtomicBool::new(false),
            read_at: AtomicU64::new(0),
            epoch: Instant::now(),
            answered: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
        })
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves ids of ended sessions: still true.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts remembering endings for `keep_for` (at least an access-token lifetime).
    pub(crate) fn watch(&self, keep_for: Duration) {
        let millis = i64::try_from(keep_for.as_millis()).unwrap_or(i64::MAX).max(1);
        self.keep_for_ms.store(millis, Ordering::Release);
    }

    /// Whether the server asked to watch.
    pub(crate) fn watching(&self) -> bool {
        self.keep_for_ms.load(Ordering::Acquire) > 0
    }

    /// The news stopped arriving: the set no longer vouches for itself until a load completes.
    /// What it heard stays, for [`EndedSessionSet::last_heard`].
    pub(crate) fn lose(&self) {
        self.loaded.store(false, Ordering::Release);
    }

    /// Whether a load is due: watching, and not loaded since the last loss.
    pub(crate) fn needs_load(&self) -> bool {
        self.watching() && !self.loaded.load(Ordering::Acquire)
    }

    /// Reads the endings recorded since the newest one seen (every one within `keep_for` for
    /// a load) with `query`, which gives the rows of `session_endings` from an instant on, and
    /// adds them to the set.
    pub(crate) fn read_with<E>(
        &self,
        load: bool,
        query: impl FnOnce(i64) -> Result<Vec<(String, i64)>, E>,
    ) -> Result<(), E> {
        let started = Instant::now();
        let since = if load {
            wall_clock_millis() - self.keep_for_ms.load(Ordering::Acquire)
        } else {
            self.entries().newest - OVERLAP_MS
        };
        self.record(query(since)?);
        if load {
            self.loaded.store(true, Ordering::Release);
        }
        let micros = u64::try_from(started.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX);
        self.read_at.store(micros.max(1), Ordering::Release);
        Ok(())
    }

    /// Adds endings, and forgets those older than `keep_for` when the set grows.
    pub(crate) fn record(&self, rows: impl IntoIterator<Item = (String, i64)>) {
        let keep_for = self.keep_for_ms.load(Ordering::Acquire);
        let mut entries = self.entries();
        for (id, ended_at) in rows {
            entries.newest = entries.newest.max(ended_at);
            entries.ended.insert(id, ended_at);
        }
        if entries.ended.len() > CAPACITY / 2 {
            let horizon = entries.newest - keep_for;
            entries.ended.retain(|_, ended_at| *ended_at >= horizon);
        }
        if entries.ended.len() > CAPACITY {
            *entries = Entries::default();
            drop(entries);
            tracing::warn!(
                capacity = CAPACITY,
                "too many sessions ended within an access-token lifetime to \
                remember them all; access tokens are checked against the database until they can be"
            );
            self.lose();
        }
    }

    /// A notification of one ended session (PostgreSQL), stamped with this instance's clock.
    pub(crate) fn notified(&self, id: &str) {
        self.record([(id.to_owned(), wall_clock_millis())]);
    }

    /// Whether a read on SQLite is recent enough to vouch for the set.
    pub(crate) fn read_recently(&self) -> bool {
        match self.read_at.load(Ordering::Acquire) {
            0 => false,
            micros => self.epoch.elapsed().saturating_sub(Duration::from_micros(micros)) < POLL_TRUSTED_FOR,
        }
    }

    /// The answer of [`flexauth_domain::session::EndedSessions::has_ended`] given whether the
    /// feed is trusted now.
    pub(crate) fn answer(&self, id: &str, feed_trusted: bool) -> Option<bool> {
        if !(feed_trusted && self.loaded.load(Ordering::Acquire)) {
            self.deferred.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.answered.fetch_add(1, Ordering::Relaxed);
        Some(self.last_heard(id))
    }

    /// Whether session `id` was heard to end, however stale the news.
    pub(crate) fn last_heard(&self, id: &str) -> bool {
        self.entries().ended.contains_key(id)
    }
}

/// The rows of `session_endings` from `since` on (Unix milliseconds).
pub(crate) fn endings_since(
    since: i64,
) -> diesel::dsl::Filter<
    diesel::dsl::Select<session_endings::table, (session_endings::session_id, session_endings::ended_at)>,
    diesel::dsl::GtEq<session_endings::ended_at, i64>,
> {
    session_endings::table
        .select((session_endings::session_id, session_endings::ended_at))
        .filter(session_endings::ended_at.ge(since))
}

fn wall_clock_millis() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis())
        .unwrap_or(i64::MAX)
}
