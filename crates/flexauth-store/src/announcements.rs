//! What the instances announce to each other through PostgreSQL, and what this instance keeps
//! because of it: active API keys by digest, so that a server calling with its key does not
//! cost a database read per request, and the sessions that ended recently
//! ([`crate::ended_sessions`]), heard on the same listening connection.
//!
//! The rule the cache must keep is that a revoked key fails on every instance at once. A
//! trigger on `api_keys` (migration 7) sends a notification on [`CHANNEL`] in every
//! transaction that updates or deletes keys (a revocation, an account deleted with its keys,
//! an operator's SQL), and each instance keeps one connection listening on it. The cache is
//! cleared whole on every notification, since revocations are rare and a clear costs only the
//! next lookup of each key.
//!
//! PostgreSQL delivers a notification to a listener asynchronously, but never later than the
//! answer to a query that the listener sent after the commit: a backend sends what it was
//! notified of before it reports ready for the next query. So a background thread sends a
//! heartbeat query on the listening connection every [`POLL_EVERY`], and the cache is used only
//! while the last successful heartbeat *started* less than [`ANNOUNCEMENT_DELAY`] ago; pending
//! notifications are applied after each heartbeat and before it counts, so a request never
//! reads the connection. A revocation answers only after waiting [`ANNOUNCEMENT_DELAY`] past
//! its commit: from then on, any instance that still uses its cache
//! has a heartbeat that started after the commit, so it has the notification in hand and
//! drops the key. Revocations are rare; the wait costs each of them 150 ms.
//!
//! A connection that silently stopped delivering (a network partition sends no close) fails
//! its heartbeat or leaves it old, and the cache goes unused. While the listening connection
//! is down, the cache is empty and not used: every lookup goes to the database until it is
//! back. The connection asks the kernel to give up on unacknowledged data after a second
//! (`tcp_user_timeout`), so a heartbeat into a partition fails instead of hanging.
//!
//! A lookup that missed reads the database and fills the cache only if no notification came
//! in the meantime (the generation counter), so a key revoked during that read is not put
//! back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use diesel::pg::PgConnection;
use diesel::{Connection as _, RunQueryDsl as _};
use flexauth_domain::api_key::{ApiKey, ApiKeyId};
use time::OffsetDateTime;

use crate::ended_sessions::{endings_since, EndedSessionSet};

/// The notification channel of ended API keys; the trigger of migration 7 names it too.
pub(crate) const CHANNEL: &str = "flexauth_api_keys";

/// How often the listening connection gets a heartbeat and, when it was lost, is opened again.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// How long ago the last successful heartbeat may have started for the cache to be used, and
/// how long a revocation waits after its commit before it answers.
pub(crate) const ANNOUNCEMENT_DELAY: Duration = Duration::from_millis(150);

/// Keys remembered at most; one more clears the cache.
const CAPACITY: usize = 65_536;

pub(crate) struct Announcements {
    url: String,
    entries: Mutex<Entries>,
    listener: Mutex<Option<PgConnection>>,
    listening: AtomicBool,
    /// When the last heartbeat that was answered started.
    /// Read on every cache hit, so an atomic: microseconds after `epoch`, 0 for never.
    confirmed_at: AtomicU64,
    epoch: Instant,
    /// The sessions that ended recently, fed by the notifications on the sessions channel.
    sessions: Arc<EndedSessionSet>,
    /// The thread that keeps listening; joined when the cache is dropped.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The process must not exit while the listening thread is inside libpq: a process that ended
/// with it there (an operator's command, a start that failed) crashed now and then as the C
/// library's exit handlers ran. Dropping the cache waits for the thread, which notices within
/// [`POLL_EVERY`] (or its connection attempt's two-second timeout) that the cache is gone.
impl Drop for Announcements {
    fn drop(&mut self) {
        let handle = self.thread.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        // The thread itself may hold the last reference for a moment: it cannot wait for itself.
        if let Some(handle) = handle.filter(|handle| handle.thread().id() != std::thread::current().id()) {
            let _ = handle.join();
        }
    }
}

#[derive(Default)]
struct Entries {
    keys: HashMap<[u8; 32], ApiKey>,
    digests: HashMap<ApiKeyId, [u8; 32]>,
    /// Counts the clears, so a lookup can tell whether one happened during its read.
    generation: u64,
}

/// What a lookup that missed must hand back to [`Announcements::fill`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

static LISTENERS_STARTED: AtomicU64 = AtomicU64::new(0);

impl Announcements {
    /// Starts listening on `url` (PostgreSQL) and the background thread that keeps listening;
    /// ended sessions go to `sessions`.
    pub(crate) fn start(url: String, sessions: Arc<EndedSessionSet>) -> Arc<Self> {
        let separator = if url.contains('?') { '&' } else { '?' };
        let url =
            format!("{url}{separator}tcp_user_timeout=1000&connect_timeout=2&application_name=flexauth-key-cache");
        let cache = Arc::new(Self {
            url,
            entries: Mutex::default(),
            listener: Mutex::new(None),
            listening: AtomicBool::new(false),
            confirmed_at: AtomicU64::new(0),
            epoch: Instant::now(),
            sessions,
            thread: Mutex::new(None),
        });
        cache.reconnect();
        let weak = Arc::downgrade(&cache);
        let name = format!("flexauth-key-cache-{}", LISTENERS_STARTED.fetch_add(1, Ordering::Relaxed));
        match std::thread::Builder::new().name(name).spawn(move || poll_until_dropped(&weak)) {
            Ok(handle) => *cache.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handle),
            Err(error) => {
                tracing::error!(%error, "the API key cache cannot watch for revocations; it stays off");
                cache.lose_listener();
            }
        }
        cache
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves a map of active keys: still true, or cleared
        // by the next notification.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn clear(&self) {
        let mut entries = self.entries();
        entries.keys.clear();
        entries.digests.clear();
        entries.generation += 1;
    }

    fn lose_listener(&self) {
        self.listening.store(false, Ordering::Release);
        self.clear();
        self.sessions.lose();
    }

    fn reconnect(&self) {
        let started = Instant::now();
        let connected =
            PgConnection::establish(&self.url).map_err(|error| error.to_string()).and_then(|mut connection| {
                connection
                    .batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {}", crate::ended_sessions::CHANNEL))
                    .map_err(|error| error.to_string())?;
                // Whatever ended while nobody listened is read after LISTEN: nothing falls
                // between the two.
                self.sessions.lose();
                if self.sessions.watching() {
                    self.sessions
                        .read_with(true, |since| endings_since(since).load(&mut connection))
                        .map_err(|error| error.to_string())?;
                }
                Ok(connection)
            });
        match connected {
            Ok(connection) => {
                *self.listener.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(connection);
                // Whatever was revoked while nobody listened: start from nothing.
                self.clear();
                self.confirm(started);
                self.listening.store(true, Ordering::Release);
            }
            Err(error) => {
                if self.listening.load(Ordering::Acquire) {
                    tracing::warn!(%error, "lost the connection that watches for API key revocations; keys are read \
                        from the database until it is back");
                }
                self.lose_listener();
            }
        }
    }

    fn confirm(&self, started: Instant) {
        let micros = u64::try_from(started.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX);
        // 0 means never; a heartbeat in the first microsecond counts as the second.
        self.confirmed_at.store(micros.max(1), Ordering::Release);
    }

    fn trusted(&self) -> bool {
        self.listening.load(Ordering::Acquire)
            && match self.confirmed_at.load(Ordering::Acquire) {
                0 => false,
                micros => self.epoch.elapsed().saturating_sub(Duration::from_micros(micros)) < ANNOUNCEMENT_DELAY,
            }
    }

    /// Sends the heartbeat on the listening connection, then reads what arrived.
    fn heartbeat(&self) {
        let started = Instant::now();
        let beat = {
            let mut listener = self.listener.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match listener.as_mut() {
                Some(connection) => connection.batch_execute("SELECT 1").is_ok(),
                None => return,
            }
        };
        if beat {
            // What arrived is applied before the heartbeat counts: so memory that is trusted
            // has applied every announcement committed before its last heartbeat started, and
            // no request needs to read the connection (a lock and a system call each).
            self.read_notifications();
            self.load_sessions_if_asked();
            self.confirm(started);
        } else {
            *self.listener.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            tracing::warn!(
                "lost the connection that watches for API key revocations; keys are read from the \
                database until it is back"
            );
            self.lose_listener();
        }
    }

    /// Loads the recent endings on the listening connection once the server asked to watch
    /// sessions (after the connection was made, or lost).
    fn load_sessions_if_asked(&self) {
        if !self.sessions.needs_load() {
            return;
        }
        let mut listener = self.listener.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(connection) = listener.as_mut() else { return };
        if let Err(error) = self.sessions.read_with(true, |since| endings_since(since).load(connection)) {
            tracing::warn!(%error, "cannot read the ended sessions; access tokens are checked against the database \
                until this works");
        }
    }

    /// Reads the notifications that arrived, without blocking: an ended key clears the key
    /// cache, an ended session joins the set; the connection gone drops both.
    fn read_notifications(&self) {
        let mut listener = self.listener.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(connection) = listener.as_mut() else {
            return;
        };
        let mut revoked = false;
        let mut lost = false;
        for notification in connection.notifications_iter() {
            match notification {
                Ok(notice) if notice.channel == crate::ended_sessions::CHANNEL => {
                    self.sessions.notified(&notice.payload)
                }
                Ok(_) => revoked = true,
                Err(_) => {
                    lost = true;
                    break;
                }
            }
        }
        if lost {
            *listener = None;
            drop(listener);
            tracing::warn!(
                "lost the connection that watches for API key revocations; keys are read from the \
                database until it is back"
            );
            self.lose_listener();
        } else if revoked {
            self.clear();
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

    /// Forgets everything at once on this instance, after this instance ended a key (the
    /// other instances learn it from the notification).
    pub(crate) fn forget_all(&self) {
        self.clear();
    }

    /// Whether the news of ended sessions is current: the listening connection is trusted
    /// (its heartbeat applied what arrived before it counted).
    pub(crate) fn sessions_trusted(&self) -> bool {
        self.trusted()
    }
}

fn poll_until_dropped(cache: &Weak<Announcements>) {
    loop {
        std::thread::sleep(POLL_EVERY);
        let Some(cache) = cache.upgrade() else {
            return;
        };
        if cache.listening.load(Ordering::Acquire) {
            cache.heartbeat();
        } else {
            cache.reconnect();
        }
    }
}
