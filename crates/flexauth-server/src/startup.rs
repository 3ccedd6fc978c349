//! Builds the adapters, the services and the HTTP server from validated settings.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{from_fn, ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, App, HttpServer, ResponseError};
use flexauth_argon2::{Argon2ConfigError, Argon2Hasher};
use flexauth_domain::account::{AccountService, AccountSettings};
use flexauth_domain::api_key::{ApiKeyService, ApiKeySettings};
use flexauth_domain::audit::AuditService;
use flexauth_domain::bearer::BearerAuthenticator;
use flexauth_domain::housekeeping::HousekeepingService;
use flexauth_domain::introspection::IntrospectionService;
use flexauth_domain::lifecycle::{LifecycleService, LifecycleSettings};
use flexauth_domain::limits::LimitSettings;
use flexauth_domain::mail::{DeliveryService, DeliverySettings, MailTransport};
use flexauth_domain::session::{SessionService, SessionSettings};
use flexauth_domain::system::{Clock, SecureRandom};
use flexauth_domain::usage::UsageService;
pub use flexauth_jwt::KeyLoad;
use flexauth_jwt::{
    JwtSettings, JwtTokens, KeyEncryptionKey, KeyError, KeyRing, RingKey, RingPlan, SigningKeyPair, StoredKey,
    StoredKeyError,
};
use flexauth_mail::{FileMailer, MailConfigError, SmtpMailer};
use flexauth_store::{DatabaseConfig, Pooler, SchemaState, Store, StoreError, GENERATED_SLOT};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{MailConfig, Settings, SigningKeySource};
use crate::error::{json_error, ApiError, ErrorCode};
use crate::state::AppState;
use crate::system::{OsRandom, SystemClock};
use crate::{request_id, routes, worker};

/// Largest request body accepted; every request of the API fits in a fraction of it.
const BODY_LIMIT: usize = 16 * 1024;

/// Why the server could not start. Each message is one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database (FLEXAUTH_DATABASE_URL): {0}")]
    Store(#[from] StoreError),
    #[error("cannot read key file {path} (FLEXAUTH_SIGNING_KEY_FILE or FLEXAUTH_RETIRING_KEY_FILES): {source}")]
    SigningKeyFile { path: String, source: std::io::Error },
    #[error("cannot create the development signing key: {0}")]
    SigningKey(#[from] KeyError),
    #[error("invalid key in {path} (FLEXAUTH_SIGNING_KEY_FILE or FLEXAUTH_RETIRING_KEY_FILES): {source}")]
    KeyFile { path: String, source: KeyError },
    #[error("invalid mail settings (FLEXAUTH_SMTP_URL, FLEXAUTH_MAIL_FROM): {0}")]
    Mail(#[from] MailConfigError),
    #[error("invalid argon2 settings (FLEXAUTH_ARGON2_MEMORY_KIB, FLEXAUTH_ARGON2_ITERATIONS): {0}")]
    Argon2(#[from] Argon2ConfigError),
    #[error("the password hashing set-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the server stopped with an error: {0}")]
    Serve(std::io::Error),
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    #[error("signing keys (FLEXAUTH_KEY_ENCRYPTION_KEY): {0}")]
    Keys(#[from] flexauth_jwt::SealError),
    #[error("signing keys: {0}")]
    Ring(flexauth_jwt::RingError),
    #[error(
        "signing keys: no sealed key can sign, and {0} stored key(s) are in the clear while FLEXAUTH_KEY_ENCRYPTION_KEY \
            is set; if they are yours (stored before the key-encryption key was), seal them once with `flexauth keys \
            seal`"
    )]
    KeysInTheClear(usize),
    #[error("cannot register the metrics: {0}")]
    Metrics(String),
    #[error("cannot create the data directory {path} (FLEXAUTH_DATA_DIR): {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("database: {0}")]
    Schema(String),
    #[error(
        "signing keys: no stored key signs yet: key {kid} signs from {at} (in {seconds} s), once every JWKS cache \
            can have it; start the server then"
    )]
    NotSigningYet { kid: String, at: String, seconds: i64 },
}

/// Creates the data directory readable by the owner only, and narrows an existing one to that:
/// it holds the SQLite database and the mail files, whose links are live secrets.
fn private_data_dir(path: &std::path::Path) -> Result<(), StartupError> {
    let failed = |source| StartupError::DataDir { path: path.display().to_string(), source };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(failed)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(failed)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(path).map_err(failed)
    }
}

/// A built server, listening, not yet running.
pub struct Application {
    port: u16,
    server: Server,
    /// The metrics listener's port and server, when `FLEXAUTH_METRICS_BIND` is set.
    metrics_server: Option<(u16, Server)>,
    drain: Drain,
    shutdown: watch::Sender<bool>,
    worker: JoinHandle<()>,
    usage_flusher: JoinHandle<()>,
    /// Reads the stored signing keys again every second; `None` with key files.
    key_ring_refresher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("port", &self.port).finish_non_exhaustive()
    }
}

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

async fn read_key_file(path: &std::path::Path) -> Result<SigningKeyPair, StartupError> {
    let pem = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| StartupError::SigningKeyFile { path: path.display().to_string(), source })?;
    SigningKeyPair::from_pem(&pem).map_err(|source| StartupError::KeyFile { path: path.display().to_string(), source })
}

/// The ring plan of these settings: how long a retired key is kept.
pub fn ring_plan(settings: &Settings) -> RingPlan {
    RingPlan {
        access_ttl: settings.access_token_ttl,
        refresh_ttl: settings.refresh_token_ttl,
        publish_before_signing: settings.jwks_max_age
            + time::Duration::try_from(settings.key_ring_refresh).unwrap_or(time::Duration::SECOND),
    }
}

fn jwt_settings(settings: &Settings) -> JwtSettings {
    JwtSettings {
        issuer: settings.public_base(),
        audience: settings.audience.clone(),
        verified_cache_entries: settings.verified_token_cache,
    }
}

/// The stored signing keys, opened by the policy of `flexauth-jwt` ([`flexauth_jwt::open_stored`]),
/// and how many were left out ([`KeyLoad::Refresh`]).
///
/// # Errors
/// [`StartupError::Keys`] when a sealed key cannot be opened (no key-encryption key, or the
/// wrong one), except in [`KeyLoad::Refresh`]; [`StartupError::Store`] when the database fails.
pub async fn stored_keys(
    store: &Store,
    kek: Option<&KeyEncryptionKey>,
    load: KeyLoad,
) -> Result<(Vec<RingKey>, usize), StartupError> {
    let rows = store.signing_keys().await?;
    let records = rows.iter().map(|row| StoredKey {
        slot: &row.slot,
        private_key: &row.private_key,
        created_at: row.created_at,
        activates_at: row.activates_at,
        retired_at: row.retired_at,
        revoked_at: row.revoked_at,
    });
    flexauth_jwt::open_stored(records, kek, load).map_err(|error| match error {
        StoredKeyError::Seal(error) => StartupError::Keys(error),
        StoredKeyError::Damaged { slot, source } => {
            StartupError::KeyFile { path: format!("the database (slot {slot})"), source }
        }
    })
}

/// The signing keys: from files (fixed until a restart), or the ring stored in the database
/// (created on first start), which each instance reads again every second.
async fn key_ring(settings: &Settings, store: &Store, clock: &dyn Clock) -> Result<(KeyRing, bool), StartupError> {
    if let SigningKeySource::File(path) = &settings.signing_key {
        let signing = read_key_file(path).await?;
        let mut retiring = Vec::with_capacity(settings.retiring_keys.len());
        for path in &settings.retiring_keys {
            let key = read_key_file(path).await?;
            tracing::info!(kid = key.kid(), "retiring key loaded: it verifies tokens but signs none");
            retiring.push(key);
        }
        tracing::info!(kid = signing.kid(), "signing key loaded");
        return Ok((KeyRing::fixed(JwtTokens::new(&signing, &retiring, jwt_settings(settings))), false));
    }
    tracing::warn!(
        "FLEXAUTH_SIGNING_KEY_FILE is not set: signing with keys stored in the database (generated on first start, \
            rotated with `flexauth keys rotate`)"
    );
    let kek = settings.key_encryption_key.as_ref();
    if kek.is_none() {
        tracing::warn!(
            "FLEXAUTH_KEY_ENCRYPTION_KEY is not set: the private signing keys are stored in the database in the \
                clear; anyone who can read it can forge tokens"
        );
    }
    let pem = SigningKeyPair::generate_pem()?;
    let candidate = match kek {
        Some(kek) => kek.seal(GENERATED_SLOT, &pem).map_err(StartupError::Keys)?,
        None => pem,
    };
    if store.store_first_signing_key(candidate, clock.now()).await? {
        tracing::info!("first signing key generated and stored");
    }
    let (keys, in_the_clear) = stored_keys(store, kek, KeyLoad::Start).await?;
    if in_the_clear > 0 {
        tracing::warn!(
            in_the_clear,
            "stored signing keys left out: they are in the clear while FLEXAUTH_KEY_ENCRYPTION_KEY is set; seal \
                them with `flexauth keys seal` if you stored them"
        );
    }
    let (plan, now) = (ring_plan(settings), clock.now());
    let ring = KeyRing::new(&keys, plan, now, jwt_settings(settings)).map_err(|error| {
        if in_the_clear > 0 {
            return StartupError::KeysInTheClear(in_the_clear);
        }
        // Only scheduled keys: say when the first of them signs.
        match plan.next_signer(&keys, now) {
            Some((key, at)) => StartupError::NotSigningYet {
                kid: key.key.kid().to_owned(),
                at: crate::system::instant(at),
                seconds: (at - now).whole_seconds().max(1),
            },
            None => StartupError::Ring(error),
        }
    })?;
    tracing::info!(kid = ring.current().signing_kid(), keys = keys.len(), "signing key ring loaded");
    Ok((ring, true))
}

/// Reads the stored keys every `settings.key_ring_refresh` and brings the ring up to date: a
/// rotated key is published within a second, and signs from its activation on, without a
/// restart.
fn spawn_key_ring_refresher(
    ring: Arc<KeyRing>,
    store: Store,
    clock: Arc<dyn Clock>,
    settings: &Settings,
    metrics: Arc<crate::metrics::Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let (kek, plan, every) = (settings.key_encryption_key.clone(), ring_plan(settings), settings.key_ring_refresh);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.changed() => break,
            }
            let outcome = match stored_keys(&store, kek.as_ref(), KeyLoad::Refresh).await {
                Ok((keys, left_out)) => {
                    if left_out > 0 && !failing {
                        tracing::warn!(
                            left_out,
                            "stored signing keys left out: they do not open with the key-encryption key, or are in \
                                the clear while one is set"
                        );
                    }
                    failing = left_out > 0;
                    ring.update(&keys, plan, clock.now()).map_err(StartupError::Ring)
                }
                Err(error) => Err(error),
            };
            match outcome {
                Ok(changed) => {
                    if changed {
                        let current = ring.current();
                        metrics.set_signing_key(current.signing_kid());
                        tracing::info!(
                            kid = current.signing_kid(),
                            published = current.jwks().keys.len(),
                            "signing key ring changed"
                        );
                    }
                }
                // Said once per failing stretch; the ring in use stays as it was.
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(error = %error, "the stored signing keys could not be read; the keys in use stay");
                }
                Err(_) => {}
            }
        }
    })
}

fn mail_transport(settings: &Settings) -> Result<Arc<dyn MailTransport>, StartupError> {
    Ok(match &settings.mail {
        MailConfig::Smtp { url } => Arc::new(SmtpMailer::new(url, &settings.mail_from)?),
        MailConfig::Files { dir } => {
            tracing::warn!(dir = %dir.display(), "FLEXAUTH_SMTP_URL is not set: emails are written as .eml files, \
                not sent");
            Arc::new(FileMailer::new(dir.clone(), &settings.mail_from)?)
        }
    })
}

/// Answers actix's own error responses (an oversized or unreadable body…), which are plain
/// text, in the error envelope too; flexauth's JSON errors and HTML pages pass unchanged.
fn envelope_for_framework_errors<B>(response: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let ours = response
        .response()
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json") || value.starts_with("text/html"));
    if ours {
        return Ok(ErrorHandlerResponse::Response(response.map_into_left_body()));
    }
    // A body read past its deadline (an extractor other than JSON's reported it as a plain 400).
    let timed_out = response
        .response()
        .error()
        .and_then(|error| error.as_error::<actix_web::error::PayloadError>())
        .is_some_and(crate::body_deadline::is_body_timeout);
    let status = if timed_out { actix_web::http::StatusCode::REQUEST_TIMEOUT } else { response.status() };
    let error = match status.as_u16() {
        408 => ApiError::from(ErrorCode::RequestTimeout),
        404 => ApiError::from(ErrorCode::NotFound),
        405 => ApiError::from(ErrorCode::MethodNotAllowed),
        413 => ApiError::from(ErrorCode::PayloadTooLarge),
        415 => ApiError::from(ErrorCode::UnsupportedMediaType),
        400..=499 => ApiError::with_message(
            ErrorCode::InvalidJson,
            status.canonical_reason().unwrap_or("bad request").to_lowercase(),
        ),
        _ => ApiError::unexpected(format!("the framework answered {status}")),
    };
    let (request, _) = response.into_parts();
    let mut replacement = error.error_response();
    *replacement.status_mut() = status;
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(request, replacement).map_into_right_body()))
}

/// The account lifecycle rules on `store`, for the server and the operator's commands alike.
pub fn lifecycle_service(
    store: &Arc<Store>,
    hasher: Arc<dyn flexauth_domain::account::PasswordHasher>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
    settings: &Settings,
) -> LifecycleService {
    LifecycleService::new(
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        hasher,
        store.clone(),
        clock,
        random,
        LifecycleSettings {
            public_url: settings.public_base(),
            reauthentication_window: settings.reauthentication_window,
            limits: LimitSettings { enabled: settings.rate_limits, ..LimitSettings::default() },
            ..LifecycleSettings::default()
        },
    )
}

/// The second listener: `GET /metrics` and nothing else, on one worker thread.
fn metrics_listener(
    address: std::net::SocketAddr,
    sources: crate::metrics::MetricsSources,
) -> Result<(u16, Server), StartupError> {
    let bind_error = |source| StartupError::Bind { address: address.to_string(), source };
    let listener = TcpListener::bind(address).map_err(bind_error)?;
    let port = listener.local_addr().map_err(bind_error)?.port();
    let sources = web::Data::new(sources);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(sources.clone())
            .service(
                web::resource("/metrics")
                    .route(web::get().to(crate::metrics::scrape))
                    .route(web::head().to(crate::metrics::scrape)),
            )
            .default_service(web::to(routes::not_found))
    })
    .workers(1)
    .client_request_timeout(std::time::Duration::from_secs(5))
    .shutdown_timeout(1)
    .disable_signals()
    .listen(listener)
    .map_err(bind_error)?
    .run();
    tracing::info!(address = %address, port, "metrics listening");
    Ok((port, server))
}

impl Application {
    /// Migrates the database, loads or creates the signing key, wires the services, starts the
    /// delivery worker and binds the listener.
    ///
    /// # Errors
    /// A [`StartupError`] naming what could not be set up.
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with another clock: the tests move time with it to reach
    /// expired links, tokens and windows.
    ///
    /// # Errors
    /// A [`StartupError`] naming what could not be set up.
    pub async fn build_with_clock(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        private_data_dir(&settings.data_dir)?;
        // Configuration mistakes stop the start before the database is touched.
        let transport = mail_transport(settings)?;
        let store = migrate(settings).await?;
        let random: Arc<dyn SecureRandom> = Arc::new(OsRandom);
        let (ring, stored_ring) = key_ring(settings, &store, clock.as_ref()).await?;
        let public_base = settings.public_base();
        let tokens = Arc::new(ring);
        let argon2 = settings.argon2;
        let hasher = Arc::new(tokio::task::spawn_blocking(move || Argon2Hasher::new(argon2)).await??);
        tracing::info!(
            workers = argon2.workers,
            pool_mib = hasher.pool_memory_bytes() >> 20,
            "password hashing pool started"
        );
        let metrics =
            Arc::new(crate::metrics::Metrics::new().map_err(|error| StartupError::Metrics(error.to_string()))?);
        metrics.observe(&hasher, &store);
        metrics.set_signing_key(tokens.current().signing_kid());
        let (key_ring_tokens, ring_store, ring_clock, metrics_for_ring) =
            (tokens.clone(), store.clone(), clock.clone(), metrics.clone());
        let metrics_sources = crate::metrics::MetricsSources {
            metrics: metrics.clone(),
            hasher: hasher.clone(),
            store: store.clone(),
            clock: clock.clone(),
        };
        let shared = Arc::new(store.clone());
        // An ended session's access tokens are refused from memory for as long as any of them
        // can be valid: the access-token lifetime, the clock difference tolerated between
        // instances, and a minute more.
        let endings_kept_for =
            settings.access_token_ttl + SessionSettings::default().clock_leeway + time::Duration::MINUTE;
        store.watch_ended_sessions(endings_kept_for.unsigned_abs());
        let retention = flexauth_domain::housekeeping::RetentionSettings {
            session_endings: settings.retention.session_endings.max(endings_kept_for),
            ..settings.retention
        };

        let limits = LimitSettings { enabled: settings.rate_limits, ..LimitSettings::default() };
        let accounts = AccountService::new(
            shared.clone(),
            shared.clone(),
            shared.clone(),
            hasher.clone(),
            shared.clone(),
            clock.clone(),
            random.clone(),
            AccountSettings {
                limits: limits.clone(),
                public_url: public_base.clone(),
                verification_ttl: settings.verification_ttl,
                password_reset_ttl: settings.password_reset_ttl,
            },
        );
        let session_settings = SessionSettings {
            access_ttl: settings.access_token_ttl,
            refresh_ttl: settings.refresh_token_ttl,
            session_lifetime: settings.session_lifetime,
            reuse_grace: settings.refresh_reuse_grace,
            verify_session_on_request: settings.verify_session_on_request,
            public_url: public_base.clone(),
            limits,
            ..SessionSettings::default()
        };
        let sessions = SessionService::new(
            shared.clone(),
            shared.clone(),
            hasher.clone(),
            tokens.clone(),
            shared.clone(),
            shared.clone(),
            shared.clone(),
            clock.clone(),
            random.clone(),
            session_settings,
        );
        let usage = UsageService::new(shared.clone(), clock.clone());
        let lifecycle = lifecycle_service(&shared, hasher, clock.clone(), random.clone(), settings);
        let api_keys = ApiKeyService::new(
            shared.clone(),
            shared.clone(),
            clock.clone(),
            random.clone(),
            ApiKeySettings {
                public_url: public_base,
                reauthentication_window: settings.reauthentication_window,
                scopes: settings.api_key_scopes.clone(),
            },
        );
        let bearer = BearerAuthenticator::new(sessions.clone(), api_keys.clone());
        let introspection = IntrospectionService::new(shared.clone(), bearer.clone());
        let audit = AuditService::new(shared.clone());
        let shared_housekeeping: Arc<dyn flexauth_domain::housekeeping::Housekeeping> = shared.clone();
        let clock_for_purge = clock.clone();
        let delivery = DeliveryService::new(shared, transport, clock, random, DeliverySettings::default());
        let worker_wakeup = Arc::new(tokio::sync::Notify::new());
        let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let state = web::Data::new(AppState {
            metrics: metrics.clone(),
            draining: draining.clone(),
            accounts: accounts.clone(),
            sessions,
            api_keys,
            bearer,
            introspection,
            token_issuer: settings.public_base(),
            token_audience: settings.audience.clone(),
            usage: usage.clone(),
            tokens,
            jwks_max_age: settings.jwks_max_age.whole_seconds(),
            store,
            audit,
            lifecycle,
            worker_wakeup: worker_wakeup.clone(),
            trusted_proxies: settings.trusted_proxies.clone().into(),
            forwarded_header: settings.forwarded_header,
            browser: crate::browser::BrowserPolicy {
                cors_origins: settings.cors_origins.clone(),
                own_origin: settings.public_url.origin().ascii_serialization(),
                cookie_max_age: settings.refresh_token_ttl.whole_seconds(),
            },
            device_cookie: crate::state::DeviceCookie {
                path: format!("{}/v1/auth/login", settings.public_url.path().trim_end_matches('/')),
                secure: settings.public_url.scheme() == "https",
                max_age: LimitSettings::default().known_client_for.whole_seconds(),
            },
        });
        if settings.trusted_proxies.is_empty() {
            tracing::info!(
                "client addresses: the TCP peer (FLEXAUTH_TRUSTED_PROXIES is empty; forwarding headers are ignored)"
            );
        } else {
            tracing::info!(
                proxies = settings.trusted_proxies.len(),
                header = ?settings.forwarded_header,
                "client addresses: as the trusted proxies forwarded them in this header only, else the TCP peer"
            );
        }
        if !settings.rate_limits {
            tracing::warn!("FLEXAUTH_RATE_LIMITS=off: no rate limit and no mail cap applies");
        }

        let file_limit = crate::connections::raise_file_limit();
        let caps = crate::connections::ConnectionCaps::for_file_limit(
            file_limit,
            settings.http_workers,
            settings.max_connections_per_address,
        );
        let per_address =
            crate::connections::ConnectionsPerAddress::new(caps.per_address, settings.trusted_proxies.clone().into());
        tracing::info!(
            file_limit = file_limit.map_or_else(|| "none".to_owned(), |limit| limit.to_string()),
            per_worker = caps.per_worker,
            per_address = caps.per_address,
            body_timeout_ms = settings.request_body_timeout.as_millis() as u64,
            "connection limits"
        );
        let body_deadline = crate::body_deadline::BodyDeadline(settings.request_body_timeout);

        let listener = TcpListener::bind(settings.bind)
            .map_err(|source| StartupError::Bind { address: settings.bind.to_string(), source })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { address: settings.bind.to_string(), source })?
            .port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(
                    web::JsonConfig::default().limit(BODY_LIMIT).error_handler(|error, _| json_error(error).into()),
                )
                .app_data(web::PayloadConfig::new(BODY_LIMIT))
                .app_data(body_deadline)
                .wrap(from_fn(crate::body_deadline::middleware))
                .wrap(ErrorHandlers::new().default_handler(envelope_for_framework_errors))
                .wrap(from_fn(request_id::middleware))
                .wrap(from_fn(crate::middleware::cors))
                // Outermost, so it counts the status the client really got.
                .wrap(from_fn(crate::middleware::count_requests))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .workers(settings.http_workers)
        // A client gets 5 s to send its request head, FLEXAUTH_REQUEST_BODY_TIMEOUT for its body
        // (the body deadline middleware) and 5 s more to close after the answer; idle keep-alive
        // connections close after 30 s. The connections held stay below the open-file limit,
        // and one client address holds a share of them at most (crate::connections): a slow or
        // idle client cannot pin a connection, and a flood of them cannot exhaust the file
        // descriptors the server needs.
        .client_request_timeout(std::time::Duration::from_secs(5))
        .client_disconnect_timeout(std::time::Duration::from_secs(5))
        .keep_alive(std::time::Duration::from_secs(30))
        .max_connections(caps.per_worker)
        .on_connect(move |connection, data| per_address.admit(connection, data))
        .shutdown_timeout(10)
        // The signals are ours (see Drain): SIGTERM drains before stopping.
        .disable_signals()
        .listen(listener)
        .map_err(|source| StartupError::Bind { address: settings.bind.to_string(), source })?
        .run();

        let metrics_server = match settings.metrics_bind {
            Some(address) => Some(metrics_listener(address, metrics_sources)?),
            None => None,
        };

        let (shutdown, stopped) = watch::channel(false);
        let housekeeping = HousekeepingService::new(shared_housekeeping, clock_for_purge, retention);
        let jobs = worker::Jobs { accounts, delivery, housekeeping, metrics };
        let usage_flusher = worker::spawn_usage_flusher(usage, settings.usage_flush_interval, stopped.clone());
        let key_ring_refresher = stored_ring.then(|| {
            spawn_key_ring_refresher(
                key_ring_tokens,
                ring_store,
                ring_clock,
                settings,
                metrics_for_ring,
                stopped.clone(),
            )
        });
        let worker = worker::spawn(jobs, settings.outbox_poll_interval, worker_wakeup, stopped);
        tracing::info!(address = %settings.bind, port, public_url = %settings.public_base(), "flexauth listening");
        if settings.public_url_from_bind && !settings.bind.ip().is_loopback() {
            tracing::warn!(
                public_url = %settings.public_base(),
                "FLEXAUTH_PUBLIC_URL is not set: links in emails and the iss of tokens use the listen address; set it \
                    to the URL your users and resource servers reach"
            );
        }
        let drain = Drain { draining, handle: server.handle(), delay: settings.shutdown_drain.unsigned_abs() };
        Ok(Self { port, server, metrics_server, drain, shutdown, worker, usage_flusher, key_ring_refresher })
    }

    /// The port the server listens on (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the metrics listener, when there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(port, _)| *port)
    }

    /// A handle to stop the server gracefully.
    pub fn server_handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// A handle to begin a draining shutdown, as SIGTERM does.
    pub fn drain_handle(&self) -> Drain {
        self.drain.clone()
    }

    /// Serves until the server stops (SIGTERM, SIGINT or a handle), then stops the delivery
    /// worker after its current pass and writes the request counts not yet written.
    ///
    /// # Errors
    /// The server's I/O error.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let signals = tokio::spawn(self.drain.clone().on_signals());
        let metrics = self.metrics_server.map(|(_, server)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let outcome = self.server.await;
        signals.abort();
        if let Some((handle, serving)) = metrics {
            handle.stop(true).await;
            let _ = serving.await;
        }
        let _ = self.shutdown.send(true);
        let _ = self.worker.await;
        let _ = self.usage_flusher.await;
        if let Some(refresher) = self.key_ring_refresher {
            let _ = refresher.await;
        }
        outcome
    }
}

/// A graceful shutdown in two steps: first `/readyz` answers 503 while every request is still
/// served, for the drain delay, so a load balancer takes the instance out of rotation; then
/// the server stops taking connections and finishes the requests in flight.
#[derive(Debug, Clone)]
pub struct Drain {
    draining: Arc<std::sync::atomic::AtomicBool>,
    handle: ServerHandle,
    delay: std::time::Duration,
}

impl Drain {
    /// Begins the shutdown: not ready at once, stopped after the drain delay.
    pub async fn begin(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::Release);
        tracing::info!(
            delay_ms = self.delay.as_millis() as u64,
            "shutting down: /readyz answers 503, requests are served until the server stops"
        );
        tokio::time::sleep(self.delay).await;
        self.handle.stop(true).await;
    }

    /// SIGTERM drains; SIGINT (Ctrl-C at a terminal) stops at once.
    async fn on_signals(self) {
        let terminate = async {
            #[cfg(unix)]
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot watch for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
            #[cfg(not(unix))]
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = terminate => self.begin().await,
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted: stopping");
                self.handle.stop(true).await;
            }
        }
    }
}
