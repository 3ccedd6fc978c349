//! SQLite has no notifications, so a thread of each instance asks the file, on a connection of
//! its own, what the instances sharing it changed:
//!
//! - `PRAGMA data_version` moves whenever another connection committed, this instance's own
//!   pool included. The key cache is cleared whenever it moved: a revoked key, like any other
//!   write, empties it. Writes are few on the paths that use the cache (a checked key is
//!   written at most once a minute), so it still answers nearly every request.
//! - The rows of `session_endings` newer than the last it read, once the server watches ended
//!   sessions ([`crate::ended_sessions`]).
//!
//! Each round confirms the key cache with the instant it started ([`KeyCache::confirm`]), as
//! the heartbeat of PostgreSQL's listening connection does; a change that ends keys waits
//! [`crate::key_cache::ANNOUNCEMENT_DELAY`] before it answers, so every instance still
//! answering from its cache has cleared it by then.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use crate::ended_sessions::{endings_since, EndedSessionSet};
use crate::key_cache::KeyCache;

/// How often the file is asked.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// New session endings are read every this many rounds (250 ms).
const SESSION_ROUNDS: u32 = 5;

#[derive(QueryableByName)]
struct DataVersion {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    data_version: i64,
}

/// Starts the thread that watches the SQLite file at `path` for `keys` and `sessions`; it ends
/// once the key cache is dropped.
pub(crate) fn start(path: String, keys: &Arc<KeyCache>, sessions: &Arc<EndedSessionSet>) {
    let (keys, sessions) = (Arc::downgrade(keys), Arc::downgrade(sessions));
    let spawned = std::thread::Builder::new().name("flexauth-sqlite-watch".into()).spawn(move || {
        let mut watch = Watch { path, connection: None, data_version: None, round: 0, healthy: true };
        loop {
            std::thread::sleep(POLL_EVERY);
            let Some(keys) = keys.upgrade() else { return };
            watch.round(&keys, sessions.upgrade().as_deref());
        }
    });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot watch the SQLite file; API keys and access tokens are checked against it");
    }
}

struct Watch {
    path: String,
    connection: Option<SqliteConnection>,
    data_version: Option<i64>,
    round: u32,
    /// Whether the last round worked, so a failure is logged once, not every 50 ms.
    healthy: bool,
}

impl Watch {
    fn round(&mut self, keys: &KeyCache, sessions: Option<&EndedSessionSet>) {
        let started = Instant::now();
        self.round = self.round.wrapping_add(1);
        match self.ask(keys, sessions) {
            Ok(()) => {
                keys.confirm(started);
                if !self.healthy {
                    tracing::info!("the SQLite file answers its watch again");
                }
                self.healthy = true;
            }
            Err(error) => {
                self.connection = None;
                keys.lose();
                if self.healthy {
                    tracing::warn!(%error, "cannot watch the SQLite file; API keys and access tokens are checked \
                        against it until this works");
                }
                self.healthy = false;
            }
        }
    }

    fn ask(&mut self, keys: &KeyCache, sessions: Option<&EndedSessionSet>) -> Result<(), String> {
        if self.connection.is_none() {
            let mut opened = SqliteConnection::establish(&self.path).map_err(|error| error.to_string())?;
            opened.batch_execute("PRAGMA busy_timeout = 5000;").map_err(|error| error.to_string())?;
            self.connection = Some(opened);
            // What changed while nobody watched is unknown: start from nothing.
            self.data_version = None;
        }
        let Some(connection) = self.connection.as_mut() else { return Ok(()) };
        let version = diesel::sql_query("PRAGMA data_version")
            .get_result::<DataVersion>(connection)
            .map_err(|error| error.to_string())?
            .data_version;
        if self.data_version != Some(version) {
            keys.clear();
            self.data_version = Some(version);
        }
        if let Some(sessions) = sessions.filter(|sessions| sessions.watching()) {
            if self.round % SESSION_ROUNDS == 0 || sessions.needs_load() {
                sessions
                    .read_with(sessions.needs_load(), |since| endings_since(since).load(connection))
                    .map_err(|error| error.to_string())?;
            }
        }
        Ok(())
    }
}
