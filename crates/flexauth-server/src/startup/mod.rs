//! Builds the adapters, the services and the HTTP server from validated settings.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{from_fn, ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, App, HttpServer, ResponseError};
use flexauth_argon2::Argon2Hasher;
use flexauth_domain::audit::AuditService;
use flexauth_domain::bearer::BearerAuthenticator;
use flexauth_domain::housekeeping::HousekeepingService;
use flexauth_domain::introspection::IntrospectionService;
use flexauth_domain::limits::LimitSettings;
use flexauth_domain::mail::{DeliveryService, DeliverySettings, Letters, MailTransport};
use flexauth_domain::session::SessionSettings;
use flexauth_domain::system::{Clock, SecureRandom};
use flexauth_domain::usage::UsageService;
use flexauth_mail::{EmailTemplates, FileMailer, SmtpMailer};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{MailConfig, Settings};
use crate::error::{json_error, ApiError, ErrorCode};
use crate::state::AppState;
use crate::system::{OsRandom, SystemClock};
use crate::{request_id, routes, worker};

mod database;
mod error;
mod keys;

pub use database::{migrate, migrate_for_command, open_for_command};
pub use error::StartupError;
use keys::{key_ring, spawn_key_ring_refresher};
pub use keys::{ring_plan, stored_keys, KeyLoad};

/// Largest request body accepted; every request of the API fits in a fraction of it.
const BODY_LIMIT: usize = 16 * 1024;

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
    /// Delivers webhook messages.
    webhook_worker: JoinHandle<()>,
    /// Reads the stored signing keys again every second; `None` with key files.
    key_ring_refresher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("port", &self.port).finish_non_exhaustive()
    }
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

/// The emails of this server: its public URL, in the words of the built-in templates or of
/// those in `FLEXAUTH_EMAIL_TEMPLATES`, all checked here so that a broken template stops the
/// start rather than an email.
pub(crate) fn letters(settings: &Settings) -> Result<Letters, StartupError> {
    let templates = match &settings.email_templates {
        Some(directory) => {
            let templates = EmailTemplates::with_overrides(directory)?;
            tracing::info!(
                dir = %directory.display(),
                overridden = ?templates.overridden(),
                "email templates: the operator's files replace the built-in ones of the same name"
            );
            templates
        }
        None => EmailTemplates::builtin()?,
    };
    Ok(Letters::new(&settings.public_base(), Arc::new(templates)))
}

/// The passkey ceremonies of `FLEXAUTH_WEBAUTHN_RP_ID`, from the pages of
/// `FLEXAUTH_WEBAUTHN_ORIGINS`.
pub(crate) fn passkeys(settings: &Settings) -> Result<Option<Arc<dyn flexauth_domain::mfa::Passkeys>>, StartupError> {
    let Some(rp_id) = &settings.webauthn_rp_id else {
        tracing::warn!(
            public_url = %settings.public_url,
            "passkeys are off: WebAuthn needs a domain, and the public URL is on an IP address; set FLEXAUTH_PUBLIC_URL \
                or FLEXAUTH_WEBAUTHN_RP_ID (localhost works for development)"
        );
        return Ok(None);
    };
    let origins = settings
        .webauthn_origins
        .iter()
        .map(|origin| url::Url::parse(origin).map_err(|error| StartupError::Webauthn(format!("{origin}: {error}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let name = settings.public_url.host_str().unwrap_or("flexauth");
    Ok(Some(Arc::new(
        flexauth_webauthn::WebauthnPasskeys::new(rp_id, name, &origins)
            .map_err(|error| StartupError::Webauthn(error.to_string()))?,
    )))
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

/// The API's HTTP server on `listener`, serving `state`: every middleware, the routes, and the
/// limits on slow and idle clients. It runs once spawned or awaited.
fn api_server(
    listener: TcpListener,
    state: web::Data<AppState>,
    settings: &Settings,
    per_worker: usize,
    per_address: Arc<crate::connections::ConnectionsPerAddress>,
) -> std::io::Result<Server> {
    let body_deadline = crate::body_deadline::BodyDeadline(settings.request_body_timeout);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::JsonConfig::default().limit(BODY_LIMIT).error_handler(|error, _| json_error(error).into()))
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
    .max_connections(per_worker)
    .on_connect(move |connection, data| per_address.admit(connection, data))
    .shutdown_timeout(10)
    // The signals are ours (see Drain): SIGTERM drains before stopping.
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
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
        let work_signals = store.work_signals();
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

        let wiring = crate::services::Wiring {
            letters: letters(settings)?,
            passkeys: passkeys(settings)?,
            store: shared.clone(),
            hasher,
            clock: clock.clone(),
            random: random.clone(),
            settings: settings.clone(),
        };
        let accounts = wiring.accounts();
        let sessions = wiring.sessions(tokens.clone());
        let usage = UsageService::new(shared.clone(), clock.clone());
        let lifecycle = wiring.lifecycle();
        let api_keys = wiring.api_keys();
        let bearer = BearerAuthenticator::new(sessions.clone(), api_keys.clone());
        let introspection = IntrospectionService::new(shared.clone(), bearer.clone());
        let audit = AuditService::new(shared.clone());
        let shared_housekeeping: Arc<dyn flexauth_domain::housekeeping::Housekeeping> = shared.clone();
        let clock_for_purge = clock.clone();
        let webhook_transport = wiring.webhook_transport().map_err(StartupError::Webhooks)?;
        let webhooks = wiring.webhook_delivery(webhook_transport);
        let delivery = DeliveryService::new(shared, transport, clock, random, DeliverySettings::default());
        let worker_wakeup = Arc::new(tokio::sync::Notify::new());
        let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let state = web::Data::new(AppState {
            metrics: metrics.clone(),
            draining: draining.clone(),
            accounts: accounts.clone(),
            sessions,
            mfa: wiring.mfa(),
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
        let listener = TcpListener::bind(settings.bind)
            .map_err(|source| StartupError::Bind { address: settings.bind.to_string(), source })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { address: settings.bind.to_string(), source })?
            .port();
        let server = api_server(listener, state, settings, caps.per_worker, per_address)
            .map_err(|source| StartupError::Bind { address: settings.bind.to_string(), source })?;

        let metrics_server = match settings.metrics_bind {
            Some(address) => Some(metrics_listener(address, metrics_sources)?),
            None => None,
        };

        let (shutdown, stopped) = watch::channel(false);
        let housekeeping = HousekeepingService::new(shared_housekeeping, clock_for_purge, retention);
        let metrics_for_webhooks = metrics.clone();
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
        // Where the database announces new work, the workers wait for it and look anyway only
        // now and then; elsewhere, and while the announcements are not heard, they look every
        // poll interval.
        let pace = |polling| worker::Pace {
            polling,
            announced: settings.announced_work_poll_interval,
            signals: work_signals.clone(),
        };
        let webhook_worker = worker::spawn_webhooks(
            webhooks,
            metrics_for_webhooks,
            pace(settings.webhook_poll_interval),
            stopped.clone(),
        );
        let worker = worker::spawn(jobs, pace(settings.outbox_poll_interval), worker_wakeup, stopped);
        tracing::info!(address = %settings.bind, port, public_url = %settings.public_base(), "flexauth listening");
        if settings.public_url_from_bind && !settings.bind.ip().is_loopback() {
            tracing::warn!(
                public_url = %settings.public_base(),
                "FLEXAUTH_PUBLIC_URL is not set: links in emails and the iss of tokens use the listen address; set it \
                    to the URL your users and resource servers reach"
            );
        }
        let drain = Drain { draining, handle: server.handle(), delay: settings.shutdown_drain.unsigned_abs() };
        Ok(Self {
            port,
            server,
            metrics_server,
            drain,
            shutdown,
            worker,
            usage_flusher,
            webhook_worker,
            key_ring_refresher,
        })
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
        let _ = self.webhook_worker.await;
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
