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
//! while the last successful heartbeat *started* less than [`ANNOUNCEMENT_DELAY`](crate::key_cache::ANNOUNCEMENT_DELAY) ago; pending
//! notifications are applied after each heartbeat and before it counts, so a request never
//! reads the connection. A revocation answers only after waiting [`ANNOUNCEMENT_DELAY`](crate::key_cache::ANNOUNCEMENT_DELAY) past
//! its commit: from then on, any instance that still uses its cache
//! has a heartbeat that started after the commit, so it has the notification in hand and
//! drops the key. Revocations are rare; the wait costs each of them 150 ms.
//!
//! The heartbeat keeps that pace only while requests arrive (within [`DEMAND_WINDOW`] of the
//! last one); an idle instance beats every [`IDLE_HEARTBEAT`], which leaves its memory untrusted
//! until the next request wakes the thread: that request reads the database, as on a cache
//! miss, and the ones after it are answered from memory again. The same connection hears
//! migration 20's announcements of new background work, which wake the workers
//! ([`WorkSignals`]), so that they need not ask the database every second.
//!
//! A connection that silently stopped delivering (a network partition sends no close) fails
//! its heartbeat or leaves it old, and the cache goes unused. While the listening connection
//! is down, the cache is empty and not used: every lookup goes to the database until it is
//! back. The connection asks the kernel to give up on unacknowledged data after a second
//! (`tcp_user_timeout`), so a heartbeat into a partition fails instead of hanging.
//!
//! The keys themselves, and the rule for filling the cache, are [`crate::key_cache`]'s.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use diesel::pg::PgConnection;
use diesel::{Connection as _, RunQueryDsl as _};

use crate::ended_sessions::{endings_since, EndedSessionSet};
use crate::key_cache::KeyCache;

/// The notification channel of ended API keys; the trigger of migration 7 names it too.
pub(crate) const CHANNEL: &str = "flexauth_api_keys";

/// How often the listening connection gets a heartbeat and, when it was lost, is opened again,
/// while requests arrive.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// How long after the last request the heartbeat keeps the pace of [`POLL_EVERY`].
const DEMAND_WINDOW: Duration = Duration::from_secs(2);

/// The heartbeat of an idle instance: nothing is answered from memory while the heartbeat is
/// older than the announcement delay, so an idle instance needs none to stay correct; this one
/// notices a lost connection and hears announced work. The first request after a rest wakes
/// the thread and is answered from the database, as a cache miss is.
const IDLE_HEARTBEAT: Duration = Duration::from_secs(5);

/// The channel on which migration 20's triggers announce new background work.
const WORK_CHANNEL: &str = "flexauth_work";

/// What the listening connection heard of new background work, for the workers to wait on:
/// each is notified when a statement committed work for it, on any instance, or by an
/// operator's command.
#[derive(Debug, Default)]
pub struct WorkSignals {
    /// New mail in the outbox or a new account request.
    pub jobs: tokio::sync::Notify,
    /// New webhook messages.
    pub webhooks: tokio::sync::Notify,
    /// A change to the stored signing keys.
    pub keys: tokio::sync::Notify,
    /// Whether the connection that hears the announcements is up: while it is not, nothing is
    /// heard, and the workers must look as often as where nothing is announced.
    listening: AtomicBool,
}

impl WorkSignals {
    fn heard(&self, payload: &str) {
        match payload {
            "mail" | "requests" => self.jobs.notify_one(),
            "webhooks" => self.webhooks.notify_one(),
            "keys" => self.keys.notify_one(),
            _ => {}
        }
    }

    /// Whether the announcements are heard now.
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Wakes every worker: work may have been announced while nobody listened.
    fn all(&self) {
        self.jobs.notify_one();
        self.webhooks.notify_one();
        self.keys.notify_one();
    }
}

pub(crate) struct Announcements {
    url: String,
    /// The active keys, cleared on every notification of an ended key; the heartbeat says how
    /// recent they are, which is also how recent the ended sessions are.
    keys: Arc<KeyCache>,
    listener: Mutex<Option<PgConnection>>,
    listening: AtomicBool,
    /// The sessions that ended recently, fed by the notifications on the sessions channel.
    sessions: Arc<EndedSessionSet>,
    /// The thread that keeps listening; joined when the cache is dropped.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The server process that ran `LISTEN`; every heartbeat must be answered by it.
    listening_pid: std::sync::atomic::AtomicI32,
    /// Set for good once two server processes answered the listening connection: a pooler in
    /// transaction mode sits in front, through which no notification can be trusted.
    pooled: AtomicBool,
    /// What the workers wait on.
    work: Arc<WorkSignals>,
    /// The instant the milliseconds below count from.
    epoch: Instant,
    /// When a request last arrived, in milliseconds after `epoch` plus one (0: never).
    last_demand: AtomicU64,
    /// Whether the thread rests (an idle heartbeat) and must be woken by the next request.
    resting: AtomicBool,
}

#[derive(diesel::QueryableByName)]
struct BackendPid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

/// The server process that answers `connection`.
fn backend_pid(connection: &mut PgConnection) -> Result<i32, diesel::result::Error> {
    Ok(diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result::<BackendPid>(connection)?.pid)
}

/// The process must not exit while the listening thread is inside libpq: a process that ended
/// with it there (an operator's command, a start that failed) crashed now and then as the C
/// library's exit handlers ran. Dropping the cache wakes the thread and waits for it, which
/// notices at once (or after its connection attempt's two-second timeout) that the cache is
/// gone.
impl Drop for Announcements {
    fn drop(&mut self) {
        let handle = self.thread.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        // The thread itself may hold the last reference for a moment: it cannot wait for itself.
        if let Some(handle) = handle.filter(|handle| handle.thread().id() != std::thread::current().id()) {
            // A resting thread would otherwise sleep out its idle heartbeat first.
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

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
            keys: Arc::new(KeyCache::new()),
            listener: Mutex::new(None),
            listening: AtomicBool::new(false),
            sessions,
            thread: Mutex::new(None),
            listening_pid: std::sync::atomic::AtomicI32::new(0),
            pooled: AtomicBool::new(false),
            work: Arc::new(WorkSignals::default()),
            epoch: Instant::now(),
            last_demand: AtomicU64::new(0),
            resting: AtomicBool::new(false),
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

    /// The key cache this connection keeps current.
    pub(crate) fn keys(&self) -> Arc<KeyCache> {
        self.keys.clone()
    }

    /// What the workers wait on.
    pub(crate) fn work(&self) -> Arc<WorkSignals> {
        self.work.clone()
    }

    /// Milliseconds since `epoch`, plus one, so that 0 can mean "never".
    fn now_millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1)
    }

    /// A request arrived: the heartbeat keeps its fast pace for [`DEMAND_WINDOW`], and a
    /// resting thread is woken at once. Called on every request, so it only reads shared state
    /// unless something changes: the time is written at most every [`POLL_EVERY`], and the
    /// resting flag only when the thread rests.
    pub(crate) fn note_demand(&self) {
        let now = self.now_millis();
        let every = u64::try_from(POLL_EVERY.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(self.last_demand.load(Ordering::Relaxed)) >= every {
            self.last_demand.store(now, Ordering::Relaxed);
        }
        if self.resting.load(Ordering::Acquire) && self.resting.swap(false, Ordering::AcqRel) {
            if let Some(handle) = self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
                handle.thread().unpark();
            }
        }
    }

    /// Whether a request arrived within [`DEMAND_WINDOW`].
    fn in_demand(&self) -> bool {
        match self.last_demand.load(Ordering::Relaxed) {
            0 => false,
            noted => {
                self.now_millis().saturating_sub(noted) < u64::try_from(DEMAND_WINDOW.as_millis()).unwrap_or(u64::MAX)
            }
        }
    }

    fn lose_listener(&self) {
        self.listening.store(false, Ordering::Release);
        self.work.listening.store(false, Ordering::Release);
        self.keys.lose();
        self.sessions.lose();
    }

    fn reconnect(&self) {
        if self.pooled.load(Ordering::Acquire) {
            return;
        }
        let started = Instant::now();
        let connected =
            PgConnection::establish(&self.url).map_err(|error| error.to_string()).and_then(|mut connection| {
                connection
                    .batch_execute(&format!(
                        "LISTEN {CHANNEL}; LISTEN {}; LISTEN {WORK_CHANNEL}",
                        crate::ended_sessions::CHANNEL
                    ))
                    .map_err(|error| error.to_string())?;
                self.listening_pid
                    .store(backend_pid(&mut connection).map_err(|error| error.to_string())?, Ordering::Release);
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
                self.keys.clear();
                self.keys.confirm(started);
                self.listening.store(true, Ordering::Release);
                // And whatever work was announced meanwhile: each worker looks once.
                self.work.listening.store(true, Ordering::Release);
                self.work.all();
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

    /// Sends the heartbeat on the listening connection, then reads what arrived.
    fn heartbeat(&self) {
        let started = Instant::now();
        let beat = {
            let mut listener = self.listener.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match listener.as_mut() {
                // The heartbeat asks which server process answers: behind a pooler in
                // transaction mode it changes, and the process that ran LISTEN may be serving
                // someone else when a notification arrives.
                Some(connection) => match backend_pid(connection) {
                    Ok(pid) if pid == self.listening_pid.load(Ordering::Acquire) => true,
                    Ok(_) => {
                        *listener = None;
                        drop(listener);
                        self.pooled.store(true, Ordering::Release);
                        self.lose_listener();
                        tracing::error!(
                            "the connection that listens for revocations was answered by two PostgreSQL server \
                                processes: FLEXAUTH_DATABASE_URL goes through a pooler in transaction mode; set \
                                FLEXAUTH_DATABASE_POOLER=transaction. API keys and access tokens are checked \
                                against the database from now on"
                        );
                        return;
                    }
                    Err(_) => false,
                },
                None => return,
            }
        };
        if beat {
            // What arrived is applied before the heartbeat counts: so memory that is trusted
            // has applied every announcement committed before its last heartbeat started, and
            // no request needs to read the connection (a lock and a system call each).
            self.read_notifications();
            self.load_sessions_if_asked();
            self.keys.confirm(started);
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
                Ok(notice) if notice.channel == WORK_CHANNEL => self.work.heard(&notice.payload),
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
            self.keys.clear();
        }
    }

    /// Whether the news of ended sessions is current: the listening connection is trusted
    /// (its heartbeat applied what arrived before it counted).
    pub(crate) fn sessions_trusted(&self) -> bool {
        self.listening.load(Ordering::Acquire) && self.keys.trusted()
    }
}

fn poll_until_dropped(cache: &Weak<Announcements>) {
    loop {
        // The thread holds no strong reference while it waits, so that dropping the store
        // ends it (the drop wakes it).
        let resting = match cache.upgrade() {
            Some(cache) => {
                let resting = !cache.in_demand();
                cache.resting.store(resting, Ordering::Release);
                resting
            }
            None => return,
        };
        if resting {
            std::thread::park_timeout(IDLE_HEARTBEAT);
        } else {
            std::thread::sleep(POLL_EVERY);
        }
        let Some(cache) = cache.upgrade() else {
            return;
        };
        cache.resting.store(false, Ordering::Release);
        if cache.listening.load(Ordering::Acquire) {
            cache.heartbeat();
        } else {
            cache.reconnect();
        }
    }
}
