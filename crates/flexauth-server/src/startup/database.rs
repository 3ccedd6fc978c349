//! The database at start: migrated by the server and `flexauth migrate`, only opened (and
//! checked against this version) by the operator's commands, and whatever pooler stands in
//! front of it.

use flexauth_store::{DatabaseConfig, Pooler, SchemaState, Store};

use super::StartupError;
use crate::config::Settings;

/// Connects to the database and applies pending migrations.
///
/// # Errors
/// [`StartupError::Store`].
pub async fn migrate(settings: &Settings) -> Result<Store, StartupError> {
    let store = Store::connect_through(settings.database.clone(), pooler_of(settings).await?)?;
    let applied = store.migrate().await?;
    tracing::info!(backend = store.backend(), applied, "database migrated");
    Ok(store)
}

/// [`migrate`] for `flexauth migrate`: the store starts no background thread, so none is
/// inside the database driver when the process exits (such a thread crashed the exit now and
/// then).
///
/// # Errors
/// As [`migrate`].
pub async fn migrate_for_command(settings: &Settings) -> Result<Store, StartupError> {
    let store = Store::connect_for_command(settings.database.clone(), pooler_of(settings).await?)?;
    let applied = store.migrate().await?;
    tracing::info!(backend = store.backend(), applied, "database migrated");
    Ok(store)
}

/// The database of an operator's command (`flexauth accounts`, `keys`, `clients`), which
/// neither creates nor migrates one: a newer binary's `keys list` must not upgrade the schema
/// the servers run on, and a command run in the wrong folder must not answer from a new, empty
/// database.
///
/// # Errors
/// [`StartupError::Schema`] naming the database when it does not exist, is empty, or is
/// behind or ahead of this version; [`StartupError::Store`] when it cannot be reached.
pub async fn open_for_command(settings: &Settings) -> Result<Store, StartupError> {
    let store = Store::connect_to_existing(settings.database.clone(), pooler_of(settings).await?)?;
    let named = database_name(&settings.database);
    match store.schema_state().await? {
        SchemaState::Current => Ok(store),
        SchemaState::Empty => Err(StartupError::Schema(format!(
            "{named} holds no flexauth database: point FLEXAUTH_DATABASE_URL (or FLEXAUTH_DATA_DIR) at the one the \
                servers use, or create it with `flexauth migrate`"
        ))),
        SchemaState::Behind { pending } => Err(StartupError::Schema(format!(
            "{named} lacks {} migration(s) of this version of flexauth (the newest is {}): run the command with the \
                version the servers run, or migrate with `flexauth migrate` when upgrading them",
            pending.len(),
            pending.last().map_or("?", String::as_str)
        ))),
        SchemaState::Ahead { unknown } => Err(StartupError::Schema(format!(
            "{named} was migrated by a newer version of flexauth ({} migration(s) this one does not know, the newest \
                {}): run the command with the version the servers run",
            unknown.len(),
            unknown.last().map_or("?", String::as_str)
        ))),
    }
}

/// The database as an operator recognises it, without a password: the SQLite file, or the
/// PostgreSQL hosts and database name.
fn database_name(config: &DatabaseConfig) -> String {
    match config {
        DatabaseConfig::Sqlite(path) => format!("the SQLite file {}", path.display()),
        DatabaseConfig::Postgres(url) => match url::Url::parse(url) {
            Ok(mut parsed) => {
                let _ = parsed.set_password(None);
                parsed.set_query(None);
                format!("the PostgreSQL database {parsed}")
            }
            Err(_) => "the PostgreSQL database of FLEXAUTH_DATABASE_URL".to_owned(),
        },
    }
}

/// What stands between flexauth and PostgreSQL: `FLEXAUTH_DATABASE_POOLER`, or, when it says
/// `none`, what the database shows ([`Pooler::detect`]). A transaction pooler nobody named
/// would lose diesel's named statements and the notifications that end cached API keys: it is
/// run behind as if named, and the operator told.
///
/// # Errors
/// [`StartupError::Store`] when the database cannot be reached.
async fn pooler_of(settings: &Settings) -> Result<Pooler, StartupError> {
    if settings.database_pooler != Pooler::None {
        return Ok(settings.database_pooler);
    }
    let config = settings.database.clone();
    let seen = tokio::task::spawn_blocking(move || Pooler::detect(&config)).await??;
    if seen == Pooler::Transaction {
        tracing::warn!(
            "FLEXAUTH_DATABASE_URL reaches PostgreSQL through a pooler in transaction mode (two connections were \
                served by one server process): running as with FLEXAUTH_DATABASE_POOLER=transaction; set it to say so"
        );
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_is_named_without_its_password_or_query() {
        let named = database_name(&DatabaseConfig::Postgres(
            "postgres://flexauth:db-secret@db.example:5432/flexauth?sslmode=require&password=other-secret".into(),
        ));
        assert_eq!(named, "the PostgreSQL database postgres://flexauth@db.example:5432/flexauth");
        // A libpq multi-host URL, for failover: named or not, never with its password.
        let named = database_name(&DatabaseConfig::Postgres("postgres://u:pw-secret@primary,standby/db".into()));
        assert!(!named.contains("pw-secret"), "{named}");
        let named = database_name(&DatabaseConfig::Sqlite("./data/flexauth.sqlite3".into()));
        assert_eq!(named, "the SQLite file ./data/flexauth.sqlite3");
    }
}
