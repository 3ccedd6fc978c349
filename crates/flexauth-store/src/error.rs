use flexauth_domain::InfraError;

/// What can go wrong in the store. It reaches the domain only as the cause inside an
/// [`InfraError`], converted in one place below.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not connect to the database: {0}")]
    Connection(#[from] diesel::ConnectionError),
    #[error("no database connection available: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(Box<dyn std::error::Error + Send + Sync>),
    #[error("the database task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("a stored row is inconsistent: {0}")]
    CorruptRow(&'static str),
    #[error("the database lacks migrations this version of flexauth needs: run `flexauth migrate`")]
    MigrationsPending,
    #[error("could not prepare the SQLite database file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// An operator's command was pointed at an SQLite file that does not exist.
    #[error(
        "no database at {path}: point FLEXAUTH_DATA_DIR (or FLEXAUTH_DATABASE_URL) at the server's database, or \
        create one with `flexauth migrate`"
    )]
    NoDatabase { path: String },
    /// PostgreSQL lost a named prepared statement of a connection.
    #[error(
        "PostgreSQL lost a prepared statement of this connection: the database is reached through a pooler in \
        transaction mode (PgBouncer's pool_mode = transaction); set FLEXAUTH_DATABASE_POOLER=transaction"
    )]
    StatementsLost,
}

impl StoreError {
    /// Whether the database could not be reached (no connection could be made, or the one in
    /// use was closed under the query), as opposed to a query that failed.
    pub fn is_unreachable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        matches!(
            self,
            Self::Connection(_)
                | Self::Pool(_)
                | Self::Query(Error::DatabaseError(
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                    _
                ))
        )
    }
}

impl From<StoreError> for InfraError {
    fn from(error: StoreError) -> Self {
        if error.is_unreachable() {
            InfraError::unavailable(error)
        } else {
            InfraError::new(error)
        }
    }
}
