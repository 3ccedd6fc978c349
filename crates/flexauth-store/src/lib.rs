//! flexauth's storage adapter: diesel over PostgreSQL (production, any number of instances)
//! or an embedded SQLite file (development, the default).
//!
//! Both backends share one schema of portable column types (UUIDs as text, instants as Unix
//! milliseconds, digests as bytes) and one source text of queries: the connection is diesel's
//! `MultiConnection` over both, so each query is plain diesel code written once; only the
//! upserts, which `MultiConnection` cannot express, are compiled once per backend. libpq and SQLite are built from source (with a
//! vendored OpenSSL for PostgreSQL TLS), so building needs no system database library. The
//! pool is blocking (r2d2) and every query runs on tokio's blocking pool. This crate must not
//! depend on a web framework and holds no business rule: it stores what the domain decided.

mod accounts;
mod announcements;
mod api_keys;
mod audit;
mod connection;
mod database_check;
mod ended_sessions;
mod error;
mod housekeeping;
mod introspection_clients;
mod key_cache;
mod lease;
mod lifecycle;
mod mfa;
mod observability;
mod outbox;
mod rate_limits;
mod requests;
mod rows;
mod schema;
mod sessions;
mod signing_keys;
mod sqlite_watch;
mod usage;
mod webhooks;

#[cfg(feature = "test-db")]
pub mod test_db;

use std::path::PathBuf;
use std::time::Duration;

use diesel::connection::SimpleConnection as _;
use diesel::pg::PgConnection;
use diesel::r2d2::{ManageConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection as _, ConnectionError};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness as _};

pub use announcements::WorkSignals;
pub(crate) use connection::DbConnection;
pub use database_check::SchemaState;
pub use error::StoreError;
pub use observability::{OutboxBacklog, PoolUsage};
pub use signing_keys::{StoredSigningKey, GENERATED_SLOT};

pub(crate) const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
pub(crate) const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// How long a query waits for a pooled connection before the database counts as unreachable.
const CONNECTION_TIMEOUT: Duration = Duration::from_millis(1500);

/// libpq's `connect_timeout`, in whole seconds (it treats 1 as 2): how long one attempt to
/// reach an unresponsive host may take.
const CONNECT_TIMEOUT_SECONDS: u64 = 2;

/// Serialises concurrent migrations of several instances starting at once on PostgreSQL.
const MIGRATION_LOCK_KEY: i64 = 0x666c_6578_6175_7468; // "flexauth"

/// Which database to use.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// A PostgreSQL connection URL (`postgres://…`; `?sslmode=require` for TLS).
    Postgres(String),
    /// The path of an SQLite database file, created if missing.
    Sqlite(PathBuf),
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A PostgreSQL URL may carry a password.
        match self {
            Self::Postgres(_) => f.write_str("Postgres(<url>)"),
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
        }
    }
}

/// Runs `$body` with `$c` bound to the concrete connection of whichever backend `$connection`
/// is, for the few statements `MultiConnection` cannot express (`ON CONFLICT` upserts and
/// multi-row inserts, whose SQL differs between the backends): the body is compiled once per
/// backend.
macro_rules! per_backend {
    ($connection:expr, |$c:ident| $body:expr) => {
        match $connection {
            $crate::DbConnection::Postgres($c) => $body,
            $crate::DbConnection::Sqlite($c) => $body,
        }
    };
}
pub(crate) use per_backend;

/// What stands between flexauth and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooler {
    /// Nothing, or a pooler in session mode: each connection is one server session.
    #[default]
    None,
    /// A pooler in transaction mode (PgBouncer's `pool_mode = transaction`): consecutive
    /// statements may reach different server sessions, so flexauth keeps no session state:
    /// no named prepared statements (diesel's statement cache is off, every statement is sent
    /// unnamed), and no `LISTEN` (the API key cache is off; keys are read on every request, as
    /// on SQLite).
    Transaction,
}

struct Manager {
    config: DatabaseConfig,
    pooler: Pooler,
    /// Counts the outages seen; shared with the store.
    outages: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// A pooled connection, whether a query found it dead, and the outage count when it was last
/// known to work: one made before the latest outage is checked once before it is used again.
struct Pooled {
    connection: DbConnection,
    broken: bool,
    checked_after_outage: u64,
}

impl ManageConnection for Manager {
    type Connection = Pooled;
    type Error = StoreError;

    fn connect(&self) -> Result<Pooled, StoreError> {
        let connection = self.open()?;
        Ok(Pooled {
            connection,
            broken: false,
            checked_after_outage: self.outages.load(std::sync::atomic::Ordering::Acquire),
        })
    }

    fn is_valid(&self, pooled: &mut Pooled) -> Result<(), StoreError> {
        answers(&mut pooled.connection)
    }

    fn has_broken(&self, pooled: &mut Pooled) -> bool {
        pooled.broken
    }
}

impl Manager {
    fn open(&self) -> Result<DbConnection, StoreError> {
        match &self.config {
            DatabaseConfig::Postgres(url) => {
                let mut connection = PgConnection::establish(&with_connect_timeout(url))?;
                if self.pooler == Pooler::Transaction {
                    connection.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
                }
                Ok(DbConnection::Postgres(connection))
            }
            DatabaseConfig::Sqlite(path) => {
                let path = path.to_str().ok_or_else(|| {
                    StoreError::Connection(ConnectionError::InvalidConnectionUrl("the SQLite path is not UTF-8".into()))
                })?;
                let mut connection = SqliteConnection::establish(path)?;
                // WAL lets readers proceed during a write; the busy timeout makes a second
                // process on the same file wait for the lock instead of failing at once;
                // secure_delete overwrites deleted content (such as the cleared bodies of sent
                // emails, which held links) instead of leaving it in free pages.
                connection.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA \
                    foreign_keys = ON; PRAGMA secure_delete = ON;",
                )?;
                Ok(DbConnection::Sqlite(connection))
            }
        }
    }
}

/// Whether the database answers on `connection`: the one liveness check, for readiness, the
/// pool, and connections older than the latest outage.
fn answers(connection: &mut DbConnection) -> Result<(), StoreError> {
    Ok(connection.batch_execute("SELECT 1")?)
}

/// The URL with libpq's `connect_timeout` set to [`CONNECT_TIMEOUT_SECONDS`] unless the
/// operator set one: an unresponsive host then fails about as fast as a stopped server.
fn with_connect_timeout(url: &str) -> String {
    if url.contains("connect_timeout=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}connect_timeout={CONNECT_TIMEOUT_SECONDS}")
}

/// Creates the SQLite file (and a missing parent directory) readable by the owner only, and
/// narrows an existing one to that, before SQLite opens it: SQLite gives its `-wal` and `-shm`
/// files the permissions of the database file, so all three stay private whatever the umask.
fn create_private_file(path: &std::path::Path) -> std::io::Result<()> {
    let parent = path.parent().filter(|parent| !parent.as_os_str().is_empty());
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
        if let Some(parent) = parent.filter(|parent| !parent.exists()) {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
        }
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    {
        if let Some(parent) = parent {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::OpenOptions::new().create(true).append(true).open(path).map(|_| ())
    }
}

/// Runs a transaction whose body returns `Err(RollbackTransaction)` when one of its guards
/// fails: the writes made so far are undone and the caller learns `false`.
pub(crate) fn guarded(outcome: Result<(), StoreError>) -> Result<bool, StoreError> {
    match outcome {
        Ok(()) => Ok(true),
        Err(StoreError::Query(diesel::result::Error::RollbackTransaction)) => Ok(false),
        Err(other) => Err(other),
    }
}

/// The store: a connection pool and the repositories the domain's ports ask for.
#[derive(Clone)]
pub struct Store {
    pool: Pool<Manager>,
    backend: &'static str,
    /// The listening connection; on PostgreSQL without a transaction pooler only, where
    /// changes can be announced.
    announcements: Option<std::sync::Arc<announcements::Announcements>>,
    /// The active API keys by digest, kept current by the listening connection (PostgreSQL)
    /// or by the watch of the file (SQLite); none behind a pooler or in an operator's command.
    key_cache: Option<std::sync::Arc<key_cache::KeyCache>>,
    /// Whether serving instances may answer from a key cache (PostgreSQL without a pooler, or
    /// SQLite), so that a change ending keys must wait until they cleared it.
    others_listen: bool,
    /// The sessions that ended recently, fed by the announcements (PostgreSQL) or by reading
    /// new endings (SQLite).
    ended_sessions: std::sync::Arc<ended_sessions::EndedSessionSet>,
    /// The SQLite file, which the thread that reads new endings opens on its own.
    sqlite_path: Option<String>,
    /// Whether the last database call found the database unreachable.
    unreachable: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Whether PostgreSQL lost a prepared statement of a connection: a pooler in transaction
    /// mode that flexauth was not told of. Readiness says so from then on.
    statements_lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// How many outages were seen; the pool's connections from before the latest are checked.
    outages: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Hears how long each query waited for a connection.
    connection_waits: observability::WaitObserver,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens a pool on `config`, failing fast if the database cannot be reached.
    ///
    /// # Errors
    /// [`StoreError::Pool`] when no connection could be made within ten seconds.
    pub fn connect(config: DatabaseConfig) -> Result<Self, StoreError> {
        Self::connect_through(config, Pooler::None)
    }

    /// [`Store::connect`] through `pooler`.
    ///
    /// # Errors
    /// [`StoreError::Pool`] when no connection could be made within ten seconds.
    pub fn connect_through(config: DatabaseConfig, pooler: Pooler) -> Result<Self, StoreError> {
        Self::open(config, pooler, true)
    }

    /// [`Store::connect_through`] for a one-shot command (a migration, an operator's command):
    /// without the connection that listens for announcements, so no thread of the store is
    /// talking to the database when the process ends. Its API key lookups are never cached,
    /// and it remembers no ended session.
    ///
    /// # Errors
    /// [`StoreError::Pool`] when no connection could be made within ten seconds.
    pub fn connect_for_command(config: DatabaseConfig, pooler: Pooler) -> Result<Self, StoreError> {
        Self::open(config, pooler, false)
    }

    /// [`Store::connect_for_command`] on a database that must exist already: an SQLite file
    /// that is missing is not created ([`StoreError::NoDatabase`]), for the operator's commands
    /// that read or change what a server holds.
    ///
    /// # Errors
    /// [`StoreError::NoDatabase`], or [`StoreError::Pool`] when no connection could be made.
    pub fn connect_to_existing(config: DatabaseConfig, pooler: Pooler) -> Result<Self, StoreError> {
        if let DatabaseConfig::Sqlite(path) = &config {
            if !path.is_file() {
                return Err(StoreError::NoDatabase { path: path.display().to_string() });
            }
        }
        Self::open(config, pooler, false)
    }

    fn open(config: DatabaseConfig, pooler: Pooler, listen: bool) -> Result<Self, StoreError> {
        let ended_sessions = ended_sessions::EndedSessionSet::new();
        let sqlite_path = match &config {
            DatabaseConfig::Sqlite(path) => path.to_str().map(str::to_owned),
            DatabaseConfig::Postgres(_) => None,
        };
        let announcements = match (&config, pooler) {
            (DatabaseConfig::Postgres(url), Pooler::None) if listen => {
                Some(announcements::Announcements::start(url.clone(), ended_sessions.clone()))
            }
            _ => None,
        };
        // Instances that serve keep a key cache on PostgreSQL without a pooler and on SQLite,
        // this one or not: a change that ends keys waits for them to clear it.
        let others_listen =
            matches!((&config, pooler), (DatabaseConfig::Postgres(_), Pooler::None) | (DatabaseConfig::Sqlite(_), _));
        let (backend, max_size) = match &config {
            DatabaseConfig::Postgres(_) => ("postgres", 10),
            // SQLite allows one writer at a time; one pooled connection per process makes
            // writes queue in the pool instead of failing with SQLITE_BUSY.
            DatabaseConfig::Sqlite(path) => {
                create_private_file(path)
                    .map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
                ("sqlite", 1)
            }
        };
        // No test query on every checkout: it doubled the round trips of every request. A
        // connection is instead dropped when a query finds it closed (see `run`), so after a
        // database restart each pooled connection fails one query and is replaced. A request
        // that needs the database waits at most CONNECTION_TIMEOUT for a connection, then
        // answers 503 unavailable: an outage is a known condition, not a hang.
        let outages = std::sync::Arc::<std::sync::atomic::AtomicU64>::default();
        let manager = Manager { config, pooler, outages: outages.clone() };
        // No connection is made ahead of need (r2d2's `min_idle` of 0): r2d2 makes connections
        // on threads of its own, and a process that exits while one of them is inside libpq's
        // TLS handshake crashes in OpenSSL's exit handler (an operator's command did, one run in
        // eight). A connection is made when a query needs one, its caller waiting for it; the
        // start still fails on an unreachable database, since migrating is its first query.
        // Connections beyond need are closed after 10 idle minutes.
        let pool = Pool::builder()
            .max_size(max_size)
            .min_idle(Some(0))
            .connection_timeout(CONNECTION_TIMEOUT)
            .test_on_check_out(false)
            .build(manager)?;
        let key_cache = match (&announcements, &sqlite_path) {
            (Some(announcements), _) => Some(announcements.keys()),
            (None, Some(path)) if listen => {
                let keys = std::sync::Arc::new(key_cache::KeyCache::new());
                sqlite_watch::start(path.clone(), &keys, &ended_sessions);
                Some(keys)
            }
            _ => None,
        };
        Ok(Self {
            pool,
            backend,
            announcements,
            key_cache,
            others_listen,
            ended_sessions,
            sqlite_path,
            unreachable: std::sync::Arc::default(),
            statements_lost: std::sync::Arc::default(),
            outages,
            connection_waits: std::sync::Arc::default(),
        })
    }

    /// `"postgres"` or `"sqlite"`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Applies the pending migrations of the backend. Safe to run from several instances at
    /// once: on PostgreSQL they take turns under an advisory lock.
    ///
    /// # Errors
    /// [`StoreError`] when a migration fails; that migration's transaction is rolled back.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        self.run(|connection| match connection {
            // One transaction under a transaction-level advisory lock: instances migrating at
            // once take turns, and the lock needs no session of its own, so it holds behind a
            // transaction pooler too.
            DbConnection::Postgres(c) => c.transaction(|c| {
                c.batch_execute(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"))?;
                c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|done| done.len()).map_err(StoreError::Migration)
            }),
            DbConnection::Sqlite(c) => {
                c.run_pending_migrations(SQLITE_MIGRATIONS).map(|done| done.len()).map_err(StoreError::Migration)
            }
        })
        .await
    }

    /// Checks that the database answers and holds every migration this version knows: an
    /// instance of a newer version must not take traffic on a database not migrated for it.
    ///
    /// # Errors
    /// [`StoreError::MigrationsPending`] when a migration is missing,
    /// [`StoreError::StatementsLost`] once a query met a pooler in transaction mode that the
    /// store was not opened for, another [`StoreError`] when the database does not answer.
    pub async fn check_ready(&self) -> Result<(), StoreError> {
        if self.statements_lost.load(std::sync::atomic::Ordering::Acquire) {
            return Err(StoreError::StatementsLost);
        }
        self.run(|connection| {
            let pending = match connection {
                DbConnection::Postgres(c) => c.has_pending_migration(POSTGRES_MIGRATIONS),
                DbConnection::Sqlite(c) => c.has_pending_migration(SQLITE_MIGRATIONS),
            };
            if pending.map_err(StoreError::Migration)? {
                return Err(StoreError::MigrationsPending);
            }
            Ok(())
        })
        .await
    }

    /// Waits, after a committed change that ended API keys, until every instance that still
    /// uses its API key cache has cleared it (the trigger of migration 7 announces it on
    /// PostgreSQL; on SQLite every instance's watch sees the file change; see `key_cache`),
    /// and empties this instance's cache at once.
    pub(crate) async fn announce_api_keys_ended(&self) {
        self.announce_endings(true, false).await;
    }

    /// Starts remembering the sessions that end, for `keep_for` (at least an access-token
    /// lifetime), so that [`flexauth_domain::session::EndedSessions`] answers from memory: on
    /// PostgreSQL from the announcements, on SQLite by reading new endings a few times a
    /// second. Until this is called, and behind a transaction pooler, it never answers and
    /// every check reads the session.
    pub fn watch_ended_sessions(&self, keep_for: Duration) {
        self.ended_sessions.watch(keep_for);
    }

    /// Waits, after a committed change that ended sessions, until every instance that answers
    /// from memory knows of it: on PostgreSQL the announcement delay (as for keys), on SQLite
    /// a read of the new endings by this instance at once (others read them within a
    /// second).
    pub(crate) async fn announce_sessions_ended(&self) {
        self.announce_endings(false, true).await;
    }

    /// [`Store::announce_api_keys_ended`] and [`Store::announce_sessions_ended`] for one change
    /// that ended either or both, waiting once.
    pub(crate) async fn announce_endings(&self, keys: bool, sessions: bool) {
        // The instance that ended them answers from memory right after: its heartbeat must
        // run, and it does within the delay below.
        self.note_request();
        if keys {
            if let Some(cache) = &self.key_cache {
                cache.clear();
            }
        }
        // On PostgreSQL the same announcement delay covers ended sessions; on SQLite this
        // instance reads them at once below, and the others within a second.
        let postgres = self.sqlite_path.is_none();
        if self.others_listen && (keys || (sessions && postgres)) {
            tokio::time::sleep(key_cache::ANNOUNCEMENT_DELAY).await;
        }
        if sessions && self.ended_sessions.watching() && !postgres {
            let set = self.ended_sessions.clone();
            let read = self
                .run(move |c| {
                    let load = set.needs_load();
                    Ok(set
                        .read_with(load, |since| diesel::RunQueryDsl::load(ended_sessions::endings_since(since), c))?)
                })
                .await;
            if let Err(error) = read {
                tracing::warn!(%error, "cannot read the sessions just ended; other requests see them within a second");
            }
        }
    }

    /// What the workers may wait on instead of asking the database every second: on
    /// PostgreSQL without a transaction pooler, the listening connection hears new work
    /// announced by any instance (migration 20). `None` elsewhere: SQLite, behind a pooler in
    /// transaction mode, and in an operator's command; the workers then poll.
    pub fn work_signals(&self) -> Option<std::sync::Arc<WorkSignals>> {
        self.announcements.as_ref().map(|announcements| announcements.work())
    }

    /// Says that a request arrived: the listening connection keeps the heartbeat that lets the
    /// key cache and the ended sessions answer from memory while requests arrive, and rests
    /// when none did for a while.
    pub fn note_request(&self) {
        if let Some(announcements) = &self.announcements {
            announcements.note_demand();
        }
    }

    /// How many access-token checks the ended sessions answered from memory, and how many
    /// they sent to the database because memory could not vouch for its answer.
    pub fn ended_session_checks(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        (self.ended_sessions.answered.load(Ordering::Relaxed), self.ended_sessions.deferred.load(Ordering::Relaxed))
    }

    /// Runs blocking database work on tokio's blocking pool with a pooled connection.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let outages = self.outages.load(std::sync::atomic::Ordering::Acquire);
        let connection_waits = self.connection_waits.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            // No test query on every checkout; only a connection older than the latest outage
            // is checked, once, so that after the database is back no request meets a dead one.
            let mut pooled = loop {
                let asked = std::time::Instant::now();
                let pooled = pool.get();
                if let Some(observe) = connection_waits.get() {
                    observe(asked.elapsed());
                }
                let mut pooled = pooled?;
                if pooled.checked_after_outage == outages {
                    break pooled;
                }
                if answers(&mut pooled.connection).is_ok() {
                    pooled.checked_after_outage = outages;
                    break pooled;
                }
                pooled.broken = true;
            };
            let outcome = work(&mut pooled.connection);
            if outcome.as_ref().is_err_and(StoreError::is_unreachable) {
                pooled.broken = true;
            }
            outcome
        })
        .await?;
        self.note_reachability(&outcome);
        outcome
    }

    /// Logs once when the database stops answering and once when it answers again, however
    /// many requests fail in between.
    fn note_reachability<T>(&self, outcome: &Result<T, StoreError>) {
        match outcome {
            Err(error) if error.is_unreachable() => {
                if !self.unreachable.swap(true, std::sync::atomic::Ordering::AcqRel) {
                    self.outages.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    tracing::error!(error = %error, "the database is unreachable; requests that need it answer 503 \
                        until it is back");
                }
            }
            Ok(_) => {
                if self.unreachable.swap(false, std::sync::atomic::Ordering::AcqRel) {
                    tracing::info!("the database is reachable again");
                }
            }
            Err(error) if database_check::lost_prepared_statement(error) => {
                if !self.statements_lost.swap(true, std::sync::atomic::Ordering::AcqRel) {
                    tracing::error!(error = %error, "{}", StoreError::StatementsLost);
                }
            }
            // A query that failed got an answer: the database is there.
            Err(_) => {}
        }
    }
}
