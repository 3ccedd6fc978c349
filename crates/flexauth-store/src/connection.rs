//! The connection type of the pool. It lives in a module of its own because diesel's
//! `MultiConnection` derive also declares the backend types it generates (`MultiBackend`,
//! `MultiRow` and the like) as `pub` beside the enum: here they stay private to the crate
//! instead of joining its public API.

use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;

/// A connection to either backend. diesel's `MultiConnection` makes it a connection itself, so
/// that a query is written once, as plain diesel code, against both backends.
#[derive(diesel::MultiConnection)]
pub(crate) enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

impl std::fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Postgres(_) => "DbConnection::Postgres",
            Self::Sqlite(_) => "DbConnection::Sqlite",
        })
    }
}
