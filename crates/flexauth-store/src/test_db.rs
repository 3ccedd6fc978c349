//! Disposable databases for tests: a temporary SQLite file, or a fresh PostgreSQL database
//! created on the server named by `FLEXAUTH_TEST_POSTGRES_URL` and dropped afterwards.

use diesel::connection::SimpleConnection as _;
use diesel::pg::PgConnection;
use diesel::Connection as _;

use crate::{DatabaseConfig, Store};

/// The variable naming a PostgreSQL server (any database on it) tests may create databases on,
/// e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
pub const POSTGRES_URL_VAR: &str = "FLEXAUTH_TEST_POSTGRES_URL";
/// Set to `1`, `true` or `yes` (any case) to make the PostgreSQL tests fail instead of skipping
/// when the server is not configured, as CI does; `0`, `false`, `no` or unset lets them skip.
/// Any other value stops the tests, so a typo cannot switch the requirement off.
pub const REQUIRE_POSTGRES_VAR: &str = "FLEXAUTH_TEST_REQUIRE_POSTGRES";

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

/// Whether [`REQUIRE_POSTGRES_VAR`] asks for PostgreSQL.
///
/// # Panics
/// When the variable holds something that is not a yes or a no.
#[allow(clippy::panic)]
pub fn postgres_required() -> bool {
    match std::env::var(REQUIRE_POSTGRES_VAR).map(|value| value.trim().to_ascii_lowercase()) {
        Err(_) => false,
        Ok(value) if ["1", "true", "yes"].contains(&value.as_str()) => true,
        Ok(value) if ["", "0", "false", "no"].contains(&value.as_str()) => false,
        Ok(value) => panic!("{REQUIRE_POSTGRES_VAR}={value:?} is neither a yes (1, true, yes) nor a no (0, false, no)"),
    }
}

/// A migrated database that disappears when dropped.
pub struct TestDatabase {
    store: Store,
    config: DatabaseConfig,
    cleanup: Cleanup,
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase").field("config", &self.config).finish_non_exhaustive()
    }
}

impl TestDatabase {
    /// A migrated SQLite database in a temporary directory.
    ///
    /// # Panics
    /// When the file cannot be created; this is test support.
    #[allow(clippy::expect_used)]
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = DatabaseConfig::Sqlite(dir.path().join("flexauth.sqlite3"));
        let store = Store::connect(config.clone()).expect("open SQLite");
        store.migrate().await.expect("migrate SQLite");
        Self { store, config, cleanup: Cleanup::Sqlite(dir) }
    }

    /// A fresh migrated PostgreSQL database, or `None` when no server is configured and the
    /// PostgreSQL tests are not required.
    ///
    /// # Panics
    /// When PostgreSQL is required but not configured or reachable; this is test support.
    #[allow(clippy::expect_used, clippy::panic)]
    pub async fn postgres() -> Option<Self> {
        let Ok(admin_url) = std::env::var(POSTGRES_URL_VAR) else {
            if postgres_required() {
                panic!("{REQUIRE_POSTGRES_VAR} is set but {POSTGRES_URL_VAR} is not");
            }
            eprintln!("skipping a PostgreSQL test: {POSTGRES_URL_VAR} is not set");
            return None;
        };
        let name = format!("flexauth_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&admin_url).expect("connect to the PostgreSQL test server");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create a test database");
        let mut url = url::Url::parse(&admin_url).expect("FLEXAUTH_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        let config = DatabaseConfig::Postgres(url.to_string());
        let store = Store::connect(config.clone()).expect("connect to the test database");
        store.migrate().await.expect("migrate PostgreSQL");
        Some(Self { store, config, cleanup: Cleanup::Postgres { admin_url, name } })
    }

    /// The store on this database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The live content of the database as text, the way an operator's backup would hold
    /// it: `pg_dump --data-only` on PostgreSQL, a `VACUUM INTO` copy on SQLite (which, unlike
    /// the raw file, holds no freed pages).
    ///
    /// # Panics
    /// When the dump cannot be made; this is test support.
    #[allow(clippy::expect_used, clippy::panic)]
    pub async fn dump(&self) -> String {
        match (&self.config, &self.cleanup) {
            (DatabaseConfig::Postgres(url), _) => {
                let output = std::process::Command::new("pg_dump").args(["--data-only", "--no-owner", url.as_str()]).output().expect("pg_dump runs");
                assert!(output.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&output.stderr));
                String::from_utf8_lossy(&output.stdout).into_owned()
            }
            (DatabaseConfig::Sqlite(path), Cleanup::Sqlite(dir)) => {
                let copy = dir.path().join(format!("dump-{}.sqlite3", uuid::Uuid::new_v4().simple()));
                let mut connection = diesel::sqlite::SqliteConnection::establish(&path.display().to_string()).expect("open SQLite");
                connection.batch_execute(&format!("VACUUM INTO '{}'", copy.display())).expect("VACUUM INTO");
                let bytes = std::fs::read(&copy).expect("read the copy");
                String::from_utf8_lossy(&bytes).into_owned()
            }
            _ => panic!("an SQLite test database lives in its temporary directory"),
        }
    }

    /// Makes the database vanish under the running servers, as an outage would: on PostgreSQL
    /// the database is dropped and its connections ended; returns false on SQLite, whose open
    /// file cannot be taken away from a connection.
    ///
    /// # Panics
    /// When PostgreSQL refuses; this is test support.
    #[allow(clippy::expect_used)]
    pub fn take_away(&self) -> bool {
        match &self.cleanup {
            Cleanup::Postgres { admin_url, name } => {
                let mut admin = PgConnection::establish(admin_url).expect("connect to the PostgreSQL test server");
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).expect("drop the test database");
                true
            }
            Cleanup::Sqlite(_) => false,
        }
    }

    /// Makes PostgreSQL refuse this database (`reachable` false: new connections refused,
    /// open ones ended) or accept it again, as an outage that ends would; returns false on
    /// SQLite.
    ///
    /// # Panics
    /// When PostgreSQL refuses; this is test support.
    #[allow(clippy::expect_used)]
    pub fn set_reachable(&self, reachable: bool) -> bool {
        match &self.cleanup {
            Cleanup::Postgres { admin_url, name } => {
                let mut admin = PgConnection::establish(admin_url).expect("connect to the PostgreSQL test server");
                admin.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {reachable}")).expect("change the database's connection rule");
                if !reachable {
                    admin
                        .batch_execute(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
                        .expect("end the database's connections");
                }
                true
            }
            Cleanup::Sqlite(_) => false,
        }
    }

    /// How to connect to this database again, e.g. from a second server instance.
    pub fn config(&self) -> &DatabaseConfig {
        &self.config
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup {
            // FORCE ends the connections the pool still holds.
            if let Ok(mut admin) = PgConnection::establish(admin_url) {
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// The text and HTML bodies of outbox entry `id` as stored, for tests that check what a sent
/// email leaves behind; `None` when no such entry exists.
///
/// # Panics
/// When the query fails; this is test support.
#[allow(clippy::expect_used)]
pub async fn outbox_bodies(store: &Store, id: uuid::Uuid) -> Option<(Option<String>, Option<String>)> {
    use diesel::prelude::*;

    use crate::schema::outbox;
    let id = id.to_string();
    store
        .run(move |connection| {
            Ok(crate::with_connection!(connection, |c| outbox::table
                .find(&id)
                .select((outbox::text_body, outbox::html_body))
                .first::<(Option<String>, Option<String>)>(c)
                .optional())?)
        })
        .await
        .expect("read the outbox entry")
}

/// Deletes an account row as an operator with SQL would, and with it (by the foreign keys)
/// everything that names it.
///
/// # Panics
/// When the query fails; this is test support.
#[allow(clippy::expect_used)]
pub async fn delete_account(store: &Store, id: uuid::Uuid) {
    use diesel::prelude::*;

    use crate::schema::accounts;
    let id = id.to_string();
    store
        .run(move |connection| Ok(crate::with_connection!(connection, |c| diesel::delete(accounts::table.find(&id)).execute(c))?))
        .await
        .expect("delete the account");
}

/// Runs `sql` on the store's database as it is, to break it in a way no outage does (a table
/// renamed under the running servers). A connection the store held across an outage fails
/// once and is replaced, so the statement is tried a few times.
///
/// # Panics
/// When the statement keeps failing; this is test support.
#[allow(clippy::panic)]
pub async fn execute(store: &Store, sql: &'static str) {
    use diesel::connection::SimpleConnection as _;
    let mut last = None;
    for _ in 0..3 {
        match store.run(move |connection| Ok(crate::with_connection!(connection, |c| c.batch_execute(sql))?)).await {
            Ok(()) => return,
            Err(error) => last = Some(error),
        }
    }
    panic!("run the statement: {last:?}");
}

/// The PEM of the first signing key, stored in the clear (tests that sign tokens of their own
/// with the server's key). A failure is a failed test.
#[allow(clippy::expect_used)]
pub async fn generated_signing_key_pem(store: &Store) -> String {
    let keys = store.signing_keys().await.expect("the signing keys can be read");
    keys.into_iter().find(|key| key.slot == crate::GENERATED_SLOT).expect("a generated key is stored").private_key
}
