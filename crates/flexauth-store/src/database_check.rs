//! What the store can tell an operator about the database before using it: whether its schema
//! is the one this version knows (an operator's command must neither create nor migrate a
//! database), and whether PostgreSQL is reached through a pooler in transaction mode.

use diesel::connection::SimpleConnection as _;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::{DatabaseConfig, DbConnection, Pooler, Store, StoreError, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};

/// How the database's schema compares with the migrations this version of flexauth holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// Every migration this version knows is applied, and no other.
    Current,
    /// No migration was ever applied: an empty database.
    Empty,
    /// Some migrations of this version are not applied yet: `flexauth migrate` applies them.
    Behind {
        /// The versions not applied yet, oldest first.
        pending: Vec<String>,
    },
    /// The database holds migrations this version does not know: a newer version migrated it.
    Ahead {
        /// The versions this version does not know, oldest first.
        unknown: Vec<String>,
    },
}

#[derive(QueryableByName)]
struct AppliedVersion {
    #[diesel(sql_type = Text)]
    version: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[derive(QueryableByName)]
struct BackendPid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

/// diesel's table of applied migrations.
const MIGRATIONS_TABLE: &str = "__diesel_schema_migrations";

impl Store {
    /// How the database's schema compares with this version's migrations, read without
    /// writing anything (diesel's own harness creates its table when it is missing).
    ///
    /// # Errors
    /// [`StoreError`] when the database does not answer.
    pub async fn schema_state(&self) -> Result<SchemaState, StoreError> {
        self.run(|connection| {
            let (table_exists, known) = match connection {
                DbConnection::Postgres(c) => (
                    diesel::sql_query(format!(
                        "SELECT count(*) AS count FROM pg_catalog.pg_tables WHERE tablename = '{MIGRATIONS_TABLE}' \
                            AND schemaname = current_schema()"
                    ))
                    .get_result::<Count>(c)?
                    .count,
                    known_versions::<diesel::pg::Pg>(&POSTGRES_MIGRATIONS)?,
                ),
                DbConnection::Sqlite(c) => (
                    diesel::sql_query(format!(
                        "SELECT count(*) AS count FROM sqlite_master WHERE type = 'table' AND name = '{MIGRATIONS_TABLE}'"
                    ))
                    .get_result::<Count>(c)?
                    .count,
                    known_versions::<diesel::sqlite::Sqlite>(&SQLITE_MIGRATIONS)?,
                ),
            };
            if table_exists == 0 {
                return Ok(SchemaState::Empty);
            }
            let applied: Vec<String> = diesel::sql_query(format!("SELECT version FROM {MIGRATIONS_TABLE}"))
                .load::<AppliedVersion>(connection)?
                .into_iter()
                .map(|row| row.version)
                .collect();
            Ok(compare(&known, applied))
        })
        .await
    }
}

fn known_versions<DB: diesel::backend::Backend>(
    source: &impl diesel::migration::MigrationSource<DB>,
) -> Result<Vec<String>, StoreError> {
    Ok(source.migrations().map_err(StoreError::Migration)?.iter().map(|m| m.name().version().to_string()).collect())
}

/// Compares the versions this build knows with those the database applied.
fn compare(known: &[String], mut applied: Vec<String>) -> SchemaState {
    applied.sort_unstable();
    let mut unknown: Vec<String> = applied.iter().filter(|version| !known.contains(version)).cloned().collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        return SchemaState::Ahead { unknown };
    }
    if applied.is_empty() {
        return SchemaState::Empty;
    }
    let mut pending: Vec<String> = known.iter().filter(|version| !applied.contains(version)).cloned().collect();
    pending.sort_unstable();
    if pending.is_empty() {
        SchemaState::Current
    } else {
        SchemaState::Behind { pending }
    }
}

impl Pooler {
    /// What stands between flexauth and the database of `config`, as far as can be seen: two
    /// connections are opened, the first asks for its server process and returns it, and the
    /// second asks inside a transaction. Directly on PostgreSQL (or behind a pooler in session
    /// mode) every connection has a server process of its own, so the two differ; a pooler in
    /// transaction mode hands the process the first one just gave back to the second (PgBouncer
    /// reuses its most recently used server connection first, unless `server_round_robin` is
    /// on), so they are the same. SQLite has no pooler.
    ///
    /// # Errors
    /// [`StoreError::Connection`] when the database cannot be reached.
    pub fn detect(config: &DatabaseConfig) -> Result<Pooler, StoreError> {
        let DatabaseConfig::Postgres(url) = config else { return Ok(Pooler::None) };
        let url = crate::with_connect_timeout(url);
        let pid = |connection: &mut PgConnection| -> Result<i32, StoreError> {
            Ok(diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result::<BackendPid>(connection)?.pid)
        };
        let mut first = PgConnection::establish(&url)?;
        // Unnamed statements only: a pooler in transaction mode may not keep named ones.
        first.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
        let mut second = PgConnection::establish(&url)?;
        second.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
        let given_back = pid(&mut first)?;
        second.batch_execute("BEGIN")?;
        let taken = pid(&mut second);
        second.batch_execute("COMMIT")?;
        Ok(if taken? == given_back { Pooler::Transaction } else { Pooler::None })
    }
}

/// Whether `error` says that PostgreSQL no longer has a prepared statement diesel made on this
/// connection, or already has one it is making: what a pooler in transaction mode does to
/// named statements when flexauth was not told of it.
pub(crate) fn lost_prepared_statement(error: &StoreError) -> bool {
    // By its text: diesel's migration harness hands the same error back boxed.
    let message = error.to_string();
    message.contains("prepared statement \"__diesel_stmt_")
        && (message.contains("does not exist") || message.contains("already exists"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(list: &[&str]) -> Vec<String> {
        list.iter().map(|version| (*version).to_owned()).collect()
    }

    #[test]
    fn the_schema_is_compared_version_by_version() {
        let known = versions(&["1", "2", "3"]);
        assert_eq!(compare(&known, versions(&["3", "1", "2"])), SchemaState::Current);
        assert_eq!(compare(&known, vec![]), SchemaState::Empty);
        assert_eq!(compare(&known, versions(&["1"])), SchemaState::Behind { pending: versions(&["2", "3"]) });
        assert_eq!(compare(&known, versions(&["1", "2", "3", "4"])), SchemaState::Ahead { unknown: versions(&["4"]) });
    }
}
