//! Disposable databases for tests: a temporary SQLite file, or a fresh PostgreSQL database
//! created on the server named by `FLEXAUTH_TEST_POSTGRES_URL` and dropped afterwards.

use std::hash::{Hash as _, Hasher as _};
use std::sync::OnceLock;

use diesel::connection::SimpleConnection as _;
use diesel::pg::PgConnection;
use diesel::Connection as _;
use diesel::RunQueryDsl as _;
use diesel_migrations::MigrationHarness as _;

use crate::{DatabaseConfig, Store, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};

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
    required(REQUIRE_POSTGRES_VAR)
}

/// Whether the `FLEXAUTH_TEST_REQUIRE_*` variable `variable` asks for what it names: `1`,
/// `true` or `yes` (any case) do; `0`, `false`, `no`, empty or unset do not.
///
/// # Panics
/// When the variable holds something that is not a yes or a no, so a typo cannot switch a
/// requirement off.
#[allow(clippy::panic)]
pub fn required(variable: &str) -> bool {
    match std::env::var(variable).map(|value| value.trim().to_ascii_lowercase()) {
        Err(_) => false,
        Ok(value) if ["1", "true", "yes"].contains(&value.as_str()) => true,
        Ok(value) if ["", "0", "false", "no"].contains(&value.as_str()) => false,
        Ok(value) => panic!("{variable}={value:?} is neither a yes (1, true, yes) nor a no (0, false, no)"),
    }
}

/// Says that `test` did not run and why, past the test harness's capture of a passing test's
/// output, so a run that skipped something shows `SKIPPED` lines even when every test passed.
/// When `require` names a `FLEXAUTH_TEST_REQUIRE_*` variable that is set (as CI sets each),
/// the test fails instead; `None` is for a test that does not apply by design (a PostgreSQL
/// test in the suite's SQLite run).
///
/// # Panics
/// When `require` is set.
#[allow(clippy::panic)]
pub fn skip(test: &str, reason: &str, require: Option<&str>) {
    if let Some(variable) = require.filter(|variable| required(variable)) {
        panic!("{test} cannot run ({reason}), and {variable} is set");
    }
    // Straight to the file descriptor: the harness captures `eprintln!`, not this.
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), format!("SKIPPED {test}: {reason}\n").as_bytes());
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
        let path = dir.path().join("flexauth.sqlite3");
        std::fs::copy(sqlite_template(), &path).expect("copy the migrated template");
        let config = DatabaseConfig::Sqlite(path);
        let store = Store::connect(config.clone()).expect("open SQLite");
        // Nothing is pending on a copy of the template; this checks it.
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
            skip("a PostgreSQL test", &format!("{POSTGRES_URL_VAR} is not set"), Some(REQUIRE_POSTGRES_VAR));
            return None;
        };
        let name = format!("flexauth_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&admin_url).expect("connect to the PostgreSQL test server");
        let template = postgres_template(&admin_url);
        create_from_template(&mut admin, &name, template);
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
                let output = std::process::Command::new("pg_dump")
                    .args(["--data-only", "--no-owner", url.as_str()])
                    .output()
                    .expect("pg_dump runs");
                assert!(output.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&output.stderr));
                String::from_utf8_lossy(&output.stdout).into_owned()
            }
            (DatabaseConfig::Sqlite(path), Cleanup::Sqlite(dir)) => {
                let copy = dir.path().join(format!("dump-{}.sqlite3", uuid::Uuid::new_v4().simple()));
                let mut connection =
                    diesel::sqlite::SqliteConnection::establish(&path.display().to_string()).expect("open SQLite");
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
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .expect("drop the test database");
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
                admin
                    .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {reachable}"))
                    .expect("change the database's connection rule");
                if !reachable {
                    admin
                        .batch_execute(&format!(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE \
                            datname = '{name}' AND pid <> pg_backend_pid()"
                        ))
                        .expect("end the database's connections");
                }
                true
            }
            Cleanup::Sqlite(_) => false,
        }
    }

    /// The schema the migrations made, one line per column, index and foreign key, in words
    /// both backends share (`bytea` and SQLite's `BLOB` are both `binary`), sorted: two
    /// databases whose lines differ have drifted apart.
    ///
    /// # Panics
    /// When the catalogue cannot be read; this is test support.
    #[allow(clippy::expect_used)]
    pub fn schema(&self) -> Vec<String> {
        use diesel::sql_types::{BigInt, Nullable, Text};
        #[derive(diesel::QueryableByName)]
        struct Line {
            #[diesel(sql_type = Text)]
            line: String,
        }
        #[derive(diesel::QueryableByName)]
        struct Column {
            #[diesel(sql_type = Text)]
            table_name: String,
            #[diesel(sql_type = Text)]
            column_name: String,
            #[diesel(sql_type = Text)]
            data_type: String,
            #[diesel(sql_type = BigInt)]
            not_null: i64,
            #[diesel(sql_type = BigInt)]
            primary_key: i64,
            #[diesel(sql_type = Nullable<Text>)]
            default_value: Option<String>,
        }
        let (columns, mut lines): (Vec<Column>, Vec<Line>) = match &self.config {
            DatabaseConfig::Postgres(url) => {
                let mut c = PgConnection::establish(url).expect("connect to the test database");
                let columns = diesel::sql_query(
                    "SELECT c.table_name::text AS table_name, c.column_name::text AS column_name, c.data_type::text \
                        AS data_type, \
                     (CASE WHEN c.is_nullable = 'NO' THEN 1 ELSE 0 END)::int8 AS not_null, \
                     (CASE WHEN EXISTS (SELECT 1 FROM information_schema.table_constraints t JOIN information_schema.key_column_usage k \
                        ON t.constraint_name = k.constraint_name AND t.table_name = k.table_name \
                        WHERE t.constraint_type = 'PRIMARY KEY' AND t.table_name = c.table_name AND k.column_name = c.column_name) THEN 1 ELSE 0 END)::int8 AS primary_key, \
                     c.column_default::text AS default_value \
                     FROM information_schema.columns c WHERE c.table_schema = 'public' AND c.table_name <> '__diesel_schema_migrations'",
                )
                .load(&mut c)
                .expect("read the columns");
                let lines = diesel::sql_query(
                    "SELECT 'index ' || t.relname || ' ' || CASE WHEN i.indisunique THEN 'unique ' ELSE '' END || \
                       string_agg(a.attname, ',' ORDER BY array_position(i.indkey::int2[], a.attnum)) AS line \
                     FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
                     JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(i.indkey) \
                     WHERE n.nspname = 'public' AND NOT i.indisprimary AND t.relname <> '__diesel_schema_migrations' \
                     GROUP BY t.relname, i.indexrelid, i.indisunique \
                     UNION ALL \
                     SELECT 'foreign key ' || cl.relname || '.' || a.attname || ' -> ' || fcl.relname || '.' || fa.attname || ' on delete ' || \
                       CASE con.confdeltype WHEN 'c' THEN 'cascade' WHEN 'n' THEN 'set null' WHEN 'r' THEN 'restrict' ELSE 'no action' END \
                     FROM pg_constraint con JOIN pg_class cl ON cl.oid = con.conrelid JOIN pg_class fcl ON fcl.oid = con.confrelid \
                     JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1] \
                     JOIN pg_attribute fa ON fa.attrelid = con.confrelid AND fa.attnum = con.confkey[1] \
                     WHERE con.contype = 'f'",
                )
                .load(&mut c)
                .expect("read the indexes and foreign keys");
                (columns, lines)
            }
            DatabaseConfig::Sqlite(path) => {
                let mut c =
                    diesel::sqlite::SqliteConnection::establish(&path.display().to_string()).expect("open SQLite");
                let columns = diesel::sql_query(
                    "SELECT m.name AS table_name, p.name AS column_name, p.type AS data_type, p.\"notnull\" AS \
                        not_null, \
                     (p.pk > 0) AS primary_key, p.dflt_value AS default_value \
                     FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND m.name <> '__diesel_schema_migrations'",
                )
                .load(&mut c)
                .expect("read the columns");
                let lines = diesel::sql_query(
                    "SELECT 'index ' || m.name || ' ' || CASE WHEN l.\"unique\" THEN 'unique ' ELSE '' END || \
                       (SELECT group_concat(name, ',') FROM (SELECT i.name FROM pragma_index_info(l.name) i ORDER BY i.seqno)) AS line \
                     FROM sqlite_master m JOIN pragma_index_list(m.name) l \
                     WHERE m.type = 'table' AND l.origin <> 'pk' AND m.name <> '__diesel_schema_migrations' \
                     UNION ALL \
                     SELECT 'foreign key ' || m.name || '.' || f.\"from\" || ' -> ' || f.\"table\" || '.' || \
                         f.\"to\" || ' on delete ' || lower(f.on_delete) \
                     FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f WHERE m.type = 'table'",
                )
                .load(&mut c)
                .expect("read the indexes and foreign keys");
                (columns, lines)
            }
        };
        let mut schema: Vec<String> = columns
            .into_iter()
            .map(|column| {
                let data_type = match column.data_type.to_ascii_lowercase().as_str() {
                    "bytea" | "blob" => "binary".to_owned(),
                    other => other.to_owned(),
                };
                // A primary key is never null; SQLite only says so for INTEGER keys.
                let not_null = column.not_null == 1 || column.primary_key == 1;
                // PostgreSQL spells a default with its type (`'x'::text`).
                let default = column.default_value.map(|value| {
                    value.split("::").next().unwrap_or_default().trim_matches(|c| c == '(' || c == ')').to_owned()
                });
                format!(
                    "column {}.{} {data_type}{}{}{}",
                    column.table_name,
                    column.column_name,
                    if not_null { " not null" } else { "" },
                    if column.primary_key == 1 { " primary key" } else { "" },
                    default.map(|value| format!(" default {value}")).unwrap_or_default()
                )
            })
            .collect();
        schema.extend(lines.drain(..).map(|line| line.line));
        schema.sort();
        schema
    }

    /// How to connect to this database again, e.g. from a second server instance.
    pub fn config(&self) -> &DatabaseConfig {
        &self.config
    }
}

/// A fingerprint of a backend's migration files, so that a template made from other
/// migrations is never used.
#[allow(clippy::expect_used)]
fn migrations_fingerprint(backend: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations").join(backend);
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&root)
        .expect("the migrations directory")
        .filter_map(Result::ok)
        .flat_map(|entry| ["up.sql", "down.sql"].map(|file| entry.path().join(file)))
        .collect();
    files.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in files {
        file.file_name().hash(&mut hasher);
        file.parent().and_then(|parent| parent.file_name()).hash(&mut hasher);
        std::fs::read(&file).unwrap_or_default().hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// The migrated SQLite file every SQLite test database is copied from: migrating takes longer
/// than copying a file, and every test needs the same schema. Made once per fingerprint, in
/// the temporary directory, and renamed into place whole so that concurrent test processes
/// never see a half-made one.
#[allow(clippy::expect_used)]
fn sqlite_template() -> &'static std::path::Path {
    static TEMPLATE: OnceLock<std::path::PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("flexauth-template-{}.sqlite3", migrations_fingerprint("sqlite")));
        if !path.exists() {
            let building =
                std::env::temp_dir().join(format!("flexauth-template-{}.building", uuid::Uuid::new_v4().simple()));
            let mut connection = diesel::sqlite::SqliteConnection::establish(&building.display().to_string())
                .expect("create the SQLite template");
            connection.run_pending_migrations(SQLITE_MIGRATIONS).expect("migrate the SQLite template");
            drop(connection);
            std::fs::rename(&building, &path).expect("put the SQLite template in place");
        }
        path
    })
}

/// The migrated PostgreSQL database every PostgreSQL test database is created from
/// (`CREATE DATABASE … TEMPLATE`, a file copy on the server). It is made once per fingerprint of
/// the migrations and kept between runs; a session-level advisory lock makes concurrent test
/// processes wait for the one that makes it, and templates of older migrations are dropped.
#[allow(clippy::expect_used)]
fn postgres_template(admin_url: &str) -> &'static str {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let name = format!("flexauth_template_{}", migrations_fingerprint("postgres"));
        let mut admin = PgConnection::establish(admin_url).expect("connect to the PostgreSQL test server");
        admin.batch_execute("SELECT pg_advisory_lock(7236510984563)").expect("take the template lock");
        let exists = diesel::dsl::sql::<diesel::sql_types::Text>("SELECT datname FROM pg_database WHERE datname = ")
            .bind::<diesel::sql_types::Text, _>(&name)
            .load::<String>(&mut admin)
            .map(|found| !found.is_empty())
            .expect("look the template up");
        if !exists {
            admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create the template");
            let mut url = url::Url::parse(admin_url).expect("FLEXAUTH_TEST_POSTGRES_URL is a URL");
            url.set_path(&name);
            let mut template = PgConnection::establish(url.as_str()).expect("connect to the template");
            template.run_pending_migrations(POSTGRES_MIGRATIONS).expect("migrate the template");
            drop(template);
            let stale: Vec<String> = diesel::dsl::sql::<diesel::sql_types::Text>(
                "SELECT datname FROM pg_database WHERE datname LIKE 'flexauth\\_template\\_%' AND datname <> ",
            )
            .bind::<diesel::sql_types::Text, _>(&name)
            .load(&mut admin)
            .unwrap_or_default();
            for database in stale {
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {database}"));
            }
        }
        admin.batch_execute("SELECT pg_advisory_unlock(7236510984563)").expect("release the template lock");
        name
    })
}

/// Creates database `name` as a copy of `template`. PostgreSQL refuses the copy while another
/// session is connected to the template, which the moment after it was made can briefly be
/// its own maker's; the copy is then tried again.
#[allow(clippy::expect_used, clippy::panic)]
fn create_from_template(admin: &mut PgConnection, name: &str, template: &str) {
    for attempt in 0..50 {
        match admin.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}")) {
            Ok(()) => return,
            Err(error) if error.to_string().contains("is being accessed by other users") && attempt < 49 => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(error) => panic!("create a test database from the template: {error}"),
        }
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
        .run(move |c| {
            Ok(outbox::table
                .find(&id)
                .select((outbox::text_body, outbox::html_body))
                .first::<(Option<String>, Option<String>)>(c)
                .optional()?)
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
    store.run(move |c| Ok(diesel::delete(accounts::table.find(&id)).execute(c)?)).await.expect("delete the account");
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
        match store.run(move |c| Ok(c.batch_execute(sql)?)).await {
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
