//! Active API keys by digest, in this instance's memory, so that a server calling with its key
//! costs no database read per request; and the rule that keeps a revoked key from being
//! answered out of it.
//!
//! Something outside the cache watches the database for keys that end and tells the cache
//! ([`KeyCache::clear`]), then says how recent its watch is ([`KeyCache::confirm`]): on
//! PostgreSQL the listening connection of [`crate::announcements`], on SQLite the thread of
//! [`crate::sqlite_watch`]. The cache answers only while the last confirmed watch *started*
//! less than [`ANNOUNCEMENT_DELAY`] ago, and a change that ends keys answers only after
//! waiting that long past its commit: from then on every instance that still answers from its
//! cache has cleared it.
//!
//! A lookup that missed reads the database and fills the cache only if no clear came in the
//! meantime (the generation counter), so a key revoked during that read is not put back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use flexauth_domain::api_key::{ApiKey, ApiKeyId};
use time::OffsetDateTime;

/// How long ago the last confirmed watch may have started for the cache to be used, and how
/// long a change that ends keys waits after its commit before it answers.
pub(crate) const ANNOUNCEMENT_DELAY: Duration = Duration::from_millis(150);

/// Keys remembered at most; one more clears the cache.
const CAPACITY: usize = 65_536;

#[derive(Default)]
struct Entries {
    keys: HashMap<[u8; 32], ApiKey>,
    digests: HashMap<ApiKeyId, [u8; 32]>,
    /// Counts the clears, so a lookup can tell whether one happened during its read.
    generation: u64,
}

/// What a lookup that missed must hand back to [`KeyCache::fill`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

pub(crate) struct KeyCache {
    entries: Mutex<Entries>,
    /// Whether the watch is up at all.
    watched: AtomicBool,
    /// When the last confirmed watch started: microseconds after `epoch`, 0 for never. Read on
    /// every hit, so an atomic.
    confirmed_at: AtomicU64,
    epoch: Instant,
}

impl KeyCache {
    pub(crate) fn new() -> Self {
        Self {
            entries: Mutex::default(),
            watched: AtomicBool::new(false),
            confirmed_at: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves a map of active keys: still true, or cleared by
        // the next clear.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets every key: some key ended, on this instance or another.
    pub(crate) fn clear(&self) {
        let mut entries = self.entries();
        entries.keys.clear();
        entries.digests.clear();
        entries.generation += 1;
    }

    /// The watch that started at `started` saw every key that ended before it, and the cache
    /// was cleared of them.
    pub(crate) fn confirm(&self, started: Instant) {
        let micros = u64::try_from(started.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX);
        // 0 means never; a watch in the first microsecond counts as the second.
        self.confirmed_at.store(micros.max(1), Ordering::Release);
        self.watched.store(true, Ordering::Release);
    }

    /// The watch is down: nothing is answered from memory until it is back.
    pub(crate) fn lose(&self) {
        self.watched.store(false, Ordering::Release);
        self.clear();
    }

    /// Whether the cache may answer now.
    pub(crate) fn trusted(&self) -> bool {
        self.watched.load(Ordering::Acquire)
            && match self.confirmed_at.load(Ordering::Acquire) {
                0 => false,
                micros => self.epoch.elapsed().saturating_sub(Duration::from_micros(micros)) < ANNOUNCEMENT_DELAY,
            }
    }

    /// The cached active key of `digest`, or a ticket for filling the cache after a database
    /// read. `None` for both when the cache cannot be trusted now.
    pub(crate) fn get(&self, digest: &[u8; 32]) -> Result<ApiKey, Option<Ticket>> {
        let entries = self.entries();
        if !self.trusted() {
            return Err(None);
        }
        entries.keys.get(digest).cloned().ok_or(Some(Ticket(entries.generation)))
    }

    /// Remembers an active key read from the database, unless the cache was cleared since the
    /// ticket was taken.
    pub(crate) fn fill(&self, ticket: Ticket, digest: [u8; 32], key: &ApiKey) {
        let mut entries = self.entries();
        if entries.generation != ticket.0 || !self.trusted() {
            return;
        }
        if entries.keys.len() >= CAPACITY {
            entries.keys.clear();
            entries.digests.clear();
        }
        entries.keys.insert(digest, key.clone());
        entries.digests.insert(key.id(), digest);
    }

    /// Keeps a cached key's `last_used_at` in step with the database, so the once-a-minute
    /// write of it is not repeated on every request.
    pub(crate) fn touched(&self, id: ApiKeyId, now: OffsetDateTime) {
        let mut entries = self.entries();
        let Some(digest) = entries.digests.get(&id).copied() else {
            return;
        };
        if let Some(key) = entries.keys.get_mut(&digest) {
            key.record_use(now);
        }
    }
}
