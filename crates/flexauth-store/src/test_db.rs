//! Disposable databases for tests: a temporary SQLite file, or a fresh PostgreSQL database
//! created on the server named by `FLEXAUTH_TEST_POSTGRES_URL` and dropped afterwards.

use diesel::connection::SimpleConnection as _;
use diesel::pg::PgConnection;
use diesel::Connection as _;

use crate::{DatabaseConfig, Store};

/// The variable naming a PostgreSQL server (any database on it) tests may create databases on,
/// e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
pub const POSTGRES_URL_VAR: &str = "FLEXAUTH_TEST_POSTGRES_URL";
/// Set to `1` to make the PostgreSQL tests fail instead of skipping when the server is not
/// configured, as CI does.
pub const REQUIRE_POSTGRES_VAR: &str = "FLEXAUTH_TEST_REQUIRE_POSTGRES";

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
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
            if std::env::var(REQUIRE_POSTGRES_VAR).is_ok_and(|value| value == "1") {
                panic!("{REQUIRE_POSTGRES_VAR}=1 but {POSTGRES_URL_VAR} is not set");
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
