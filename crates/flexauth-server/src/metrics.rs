//! Prometheus metrics: what each instance counts, and the separate listener that serves them
//! (`FLEXAUTH_METRICS_BIND`), so metrics are never exposed with the API by accident.
//!
//! Every metric lives in one registry per application, not a process-wide one, so that two
//! applications in one process (the tests run many) count apart. Label values are fixed
//! words chosen here (route templates, outcomes, status classes, the signing key id): never an
//! email address, a token or a client address.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use flexauth_argon2::Argon2Hasher;
use flexauth_domain::bearer::CheckError;
use flexauth_domain::session::{AuthenticateError, LoginError, RefreshError, TokenPair};
use flexauth_domain::system::Clock;
use flexauth_store::Store;
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Latency buckets, in seconds: from a cached token check to a login behind a full hashing
/// queue.
const LATENCY_BUCKETS: &[f64] = &[0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The outcomes of `flexauth_logins_total`.
pub const LOGIN_OUTCOMES: &[&str] =
    &["success", "mfa_required", "invalid_credentials", "unverified", "disabled", "throttled", "overloaded", "error"];
/// The outcomes of `flexauth_refreshes_total`.
pub const REFRESH_OUTCOMES: &[&str] =
    &["rotated", "grace_replay", "reuse_detected", "invalid", "expired", "revoked", "throttled", "error"];
/// The outcomes of `flexauth_api_key_authentications_total`.
pub const API_KEY_OUTCOMES: &[&str] = &["success", "malformed", "unknown", "expired", "error", "refused"];
/// The outcomes of `flexauth_mail_sends_total`.
pub const MAIL_SEND_OUTCOMES: &[&str] = &["sent", "retry_scheduled", "failed"];

/// The outcome of an API key that did not authenticate.
fn api_key_refusal(error: &AuthenticateError) -> &'static str {
    match error {
        AuthenticateError::MalformedApiKey => "malformed",
        AuthenticateError::UnknownApiKey => "unknown",
        AuthenticateError::Expired => "expired",
        AuthenticateError::Unexpected(_) => "error",
        // What an access token meets; counted for a key all the same, should one appear.
        _ => "refused",
    }
}

/// Every metric of one application.
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    logins: IntCounterVec,
    refreshes: IntCounterVec,
    api_key_authentications: IntCounterVec,
    mail_sends: IntCounterVec,
    hash_workers: IntGauge,
    hash_queue_depth: IntGauge,
    hash_shed: IntCounter,
    hash_wait: Histogram,
    outbox_unsent: IntGauge,
    outbox_oldest_age: prometheus::Gauge,
    db_connections_in_use: IntGauge,
    db_connections_open: IntGauge,
    db_connections_max: IntGauge,
    db_wait: Histogram,
    signing_key: IntGaugeVec,
    session_end_checks: IntCounterVec,
    introspections: IntCounterVec,
    webhook_attempts: IntCounterVec,
    webhook_backlog: IntGauge,
    webhook_oldest_age: prometheus::Gauge,
    webhook_endpoints_disabled: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn registered<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> Result<C, prometheus::Error> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    registered(registry, IntGauge::new(name, help)?)
}

fn seconds_histogram(registry: &Registry, name: &str, help: &str) -> Result<Histogram, prometheus::Error> {
    registered(registry, Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()))?)
}

impl Metrics {
    /// Registers every metric, at zero.
    ///
    /// # Errors
    /// A [`prometheus::Error`] if two metrics had one name (a programming error).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let metrics = Self {
            http_requests: counter_vec(
                &registry,
                "flexauth_http_requests_total",
                "HTTP requests answered, by route template, method and status class.",
                &["route", "method", "status"],
            )?,
            http_duration: registered(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "flexauth_http_request_duration_seconds",
                        "Time to answer an HTTP request, by route template.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["route"],
                )?,
            )?,
            logins: counter_vec(&registry, "flexauth_logins_total", "Login attempts by outcome.", &["outcome"])?,
            refreshes: counter_vec(
                &registry,
                "flexauth_refreshes_total",
                "Refresh-token presentations by outcome.",
                &["outcome"],
            )?,
            api_key_authentications: counter_vec(
                &registry,
                "flexauth_api_key_authentications_total",
                "Requests authenticated (or refused) by API key, by outcome.",
                &["outcome"],
            )?,
            mail_sends: counter_vec(
                &registry,
                "flexauth_mail_sends_total",
                "Delivery attempts of queued emails, by outcome.",
                &["outcome"],
            )?,
            hash_workers: gauge(&registry, "flexauth_password_hash_workers", "Password hashing worker threads.")?,
            hash_queue_depth: gauge(
                &registry,
                "flexauth_password_hash_queue_depth",
                "Password hashing jobs waiting for a worker.",
            )?,
            hash_shed: registered(
                &registry,
                IntCounter::new(
                    "flexauth_password_hash_shed_total",
                    "Password hashing jobs refused unhashed because the pool was overloaded.",
                )?,
            )?,
            hash_wait: seconds_histogram(
                &registry,
                "flexauth_password_hash_wait_seconds",
                "Time a password hashing job waited for a worker.",
            )?,
            outbox_unsent: gauge(&registry, "flexauth_outbox_unsent", "Emails accepted and not sent yet.")?,
            outbox_oldest_age: registered(
                &registry,
                prometheus::Gauge::new(
                    "flexauth_outbox_oldest_unsent_age_seconds",
                    "Age of the oldest email not sent yet; 0 when none waits.",
                )?,
            )?,
            db_connections_in_use: gauge(
                &registry,
                "flexauth_db_connections_in_use",
                "Database connections handed out to a query now.",
            )?,
            db_connections_open: gauge(&registry, "flexauth_db_connections_open", "Database connections open.")?,
            db_connections_max: gauge(
                &registry,
                "flexauth_db_connections_max",
                "The most database connections the pool opens.",
            )?,
            db_wait: seconds_histogram(
                &registry,
                "flexauth_db_connection_wait_seconds",
                "Time a query waited for a pooled database connection.",
            )?,
            introspections: {
                let introspections = counter_vec(
                    &registry,
                    "flexauth_introspections_total",
                    "Introspection requests, by outcome: `active`, `inactive`, or `invalid_client`.",
                    &["outcome"],
                )?;
                for outcome in ["active", "inactive", "invalid_client"] {
                    introspections.with_label_values(&[outcome]);
                }
                introspections
            },
            session_end_checks: {
                let checks = counter_vec(
                    &registry,
                    "flexauth_session_end_checks_total",
                    "Checks of whether an access token's session has ended, by where the answer came from: \
                        `memory` (the announced endings) or `database` (while they could not vouch for it).",
                    &["answered_from"],
                )?;
                for source in ["memory", "database"] {
                    checks.with_label_values(&[source]);
                }
                checks
            },
            webhook_attempts: counter_vec(
                &registry,
                "flexauth_webhook_deliveries_total",
                "Webhook delivery attempts, by endpoint id and outcome: `delivered` (2xx), `retrying` (failed, \
                    due again later) or `failed` (the last attempt failed; the message is kept, marked failed).",
                &["endpoint", "outcome"],
            )?,
            webhook_backlog: gauge(
                &registry,
                "flexauth_webhook_backlog",
                "Webhook messages neither delivered nor given up, over every endpoint.",
            )?,
            webhook_oldest_age: registered(
                &registry,
                prometheus::Gauge::new(
                    "flexauth_webhook_oldest_undelivered_age_seconds",
                    "Age of the oldest webhook message not delivered yet; 0 when none waits.",
                )?,
            )?,
            webhook_endpoints_disabled: gauge(
                &registry,
                "flexauth_webhook_endpoints_disabled",
                "Webhook endpoints disabled after failing every delivery for too long.",
            )?,
            signing_key: registered(
                &registry,
                IntGaugeVec::new(
                    Opts::new("flexauth_signing_key_info", "1 for the key id that signs new tokens on this instance."),
                    &["kid"],
                )?,
            )?,
            registry,
        };
        // Every outcome is a series from the start, at zero, so a dashboard or `grep` sees the
        // metric before the first login, and a rate over a series that just appeared is not
        // lost.
        for (counter, outcomes) in [
            (&metrics.logins, LOGIN_OUTCOMES),
            (&metrics.refreshes, REFRESH_OUTCOMES),
            (&metrics.api_key_authentications, API_KEY_OUTCOMES),
            (&metrics.mail_sends, MAIL_SEND_OUTCOMES),
        ] {
            for outcome in outcomes {
                counter.with_label_values(&[outcome]);
            }
        }
        Ok(metrics)
    }

    /// Feeds the hashing pool's and the store's waits into their histograms.
    pub fn observe(self: &Arc<Self>, hasher: &Argon2Hasher, store: &Store) {
        let metrics = Arc::clone(self);
        hasher.observe_queue_waits(move |waited| metrics.hash_wait.observe(waited.as_secs_f64()));
        let metrics = Arc::clone(self);
        store.observe_connection_waits(move |waited| metrics.db_wait.observe(waited.as_secs_f64()));
    }

    /// Names the key that signs now.
    pub fn set_signing_key(&self, kid: &str) {
        self.signing_key.reset();
        self.signing_key.with_label_values(&[kid]).set(1);
    }

    /// Counts a login by its outcome.
    pub fn login(&self, outcome: &Result<TokenPair, LoginError>) {
        let label = match outcome {
            Ok(_) => "success",
            Err(LoginError::InvalidCredentials) => "invalid_credentials",
            Err(LoginError::EmailNotVerified) => "unverified",
            Err(LoginError::AccountDisabled) => "disabled",
            // A right password on an account with a second factor: the login goes on at its
            // second step.
            Err(LoginError::SecondFactorRequired(_)) => "mfa_required",
            Err(LoginError::Throttled(_)) => "throttled",
            Err(LoginError::Overloaded) => "overloaded",
            Err(LoginError::Unexpected(_)) => "error",
        };
        self.logins.with_label_values(&[label]).inc();
    }

    /// Counts a refresh by its outcome.
    pub fn refresh(&self, outcome: &Result<TokenPair, RefreshError>) {
        let label = match outcome {
            Ok(pair) if pair.replayed => "grace_replay",
            Ok(_) => "rotated",
            Err(RefreshError::InvalidToken(_) | RefreshError::UnknownSession) => "invalid",
            Err(RefreshError::Expired) => "expired",
            Err(RefreshError::Revoked) => "revoked",
            Err(RefreshError::Reused { .. }) => "reuse_detected",
            Err(RefreshError::Throttled(_)) => "throttled",
            Err(RefreshError::Unexpected(_)) => "error",
        };
        self.refreshes.with_label_values(&[label]).inc();
    }

    /// Counts an authentication by API key by its outcome.
    pub fn api_key_authentication<T>(&self, outcome: &Result<T, AuthenticateError>) {
        let label = outcome.as_ref().map_or_else(api_key_refusal, |_| "success");
        self.api_key_authentications.with_label_values(&[label]).inc();
    }

    /// Counts the authentication of an API key by a check that also asked for scopes: a key
    /// that lacks a scope did authenticate.
    pub fn api_key_check<T>(&self, outcome: &Result<T, CheckError>) {
        let label = match outcome {
            Err(CheckError::Authenticate(error)) => api_key_refusal(error),
            Ok(_) | Err(CheckError::InsufficientScope { .. }) => "success",
        };
        self.api_key_authentications.with_label_values(&[label]).inc();
    }

    /// Counts an introspection by its outcome.
    pub fn introspection(&self, outcome: &str) {
        self.introspections.with_label_values(&[outcome]).inc();
    }

    /// Counts one webhook attempt by endpoint and outcome (`delivered`, `retrying`, `failed`).
    pub fn webhook_attempt(&self, endpoint: &str, outcome: &str) {
        self.webhook_attempts.with_label_values(&[endpoint, outcome]).inc();
    }

    /// Counts one delivery pass's results.
    pub fn mail_sent(&self, sent: u32, rescheduled: u32, failed: u32) {
        for (label, count) in [("sent", sent), ("retry_scheduled", rescheduled), ("failed", failed)] {
            self.mail_sends.with_label_values(&[label]).inc_by(u64::from(count));
        }
    }

    pub(crate) fn http_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.http_requests.with_label_values(&[route, method, class]).inc();
        self.http_duration.with_label_values(&[route]).observe(elapsed.as_secs_f64());
    }

    /// Reads what is measured at scrape time (the hashing pool, the connection pool, the
    /// outbox), then writes every metric in the Prometheus text format.
    async fn render(&self, sources: &MetricsSources) -> Result<String, prometheus::Error> {
        let pool = sources.hasher.pool_stats();
        self.hash_workers.set(i64::try_from(pool.workers).unwrap_or(i64::MAX));
        self.hash_queue_depth.set(i64::try_from(pool.queued).unwrap_or(i64::MAX));
        // The pool counts refusals since it started; the counter catches up to it.
        self.hash_shed.inc_by(pool.shed.saturating_sub(self.hash_shed.get()));
        // The store counts since it started; the counters catch up to it.
        let (memory, database) = sources.store.ended_session_checks();
        for (source, total) in [("memory", memory), ("database", database)] {
            let counter = self.session_end_checks.with_label_values(&[source]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        let connections = sources.store.pool_usage();
        self.db_connections_in_use.set(i64::from(connections.in_use));
        self.db_connections_open.set(i64::from(connections.open));
        self.db_connections_max.set(i64::from(connections.max));
        match sources.store.outbox_backlog().await {
            Ok(backlog) => {
                self.outbox_unsent.set(i64::try_from(backlog.unsent).unwrap_or(i64::MAX));
                let age = backlog
                    .oldest_queued_at
                    .map_or(0.0, |queued| (sources.clock.now() - queued).as_seconds_f64().max(0.0));
                self.outbox_oldest_age.set(age);
            }
            // The gauges keep their last reading; the scrape still answers.
            Err(error) => tracing::warn!(error = %error, "metrics: the outbox backlog could not be read"),
        }
        match flexauth_domain::webhook::WebhookQueue::backlog(&sources.store).await {
            Ok(backlog) => {
                self.webhook_backlog.set(i64::try_from(backlog.pending).unwrap_or(i64::MAX));
                let age = backlog.oldest.map_or(0.0, |queued| (sources.clock.now() - queued).as_seconds_f64().max(0.0));
                self.webhook_oldest_age.set(age);
                self.webhook_endpoints_disabled.set(i64::try_from(backlog.disabled_endpoints).unwrap_or(i64::MAX));
            }
            Err(error) => tracing::warn!(error = %error, "metrics: the webhook backlog could not be read"),
        }
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text)?;
        String::from_utf8(text).map_err(|error| prometheus::Error::Msg(error.to_string()))
    }
}

/// What the metrics listener reads at scrape time.
#[derive(Clone)]
pub struct MetricsSources {
    pub metrics: Arc<Metrics>,
    pub hasher: Arc<Argon2Hasher>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MetricsSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSources").finish_non_exhaustive()
    }
}

/// `GET /metrics` on the metrics listener.
pub async fn scrape(sources: web::Data<MetricsSources>) -> HttpResponse {
    match sources.metrics.render(&sources).await {
        Ok(text) => HttpResponse::Ok()
            .content_type(TextEncoder::new().format_type())
            .insert_header(("cache-control", "no-store"))
            .body(text),
        Err(error) => {
            tracing::error!(error = %error, "metrics could not be written");
            HttpResponse::InternalServerError().finish()
        }
    }
}
