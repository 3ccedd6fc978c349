//! Configuration: environment variables, each overridable by a command-line flag. Each setting
//! is one typed field of [`RawConfig`] with its doc comment: clap parses it with the type's
//! parser ([`values`]), and a value that does not parse stops the start with one line naming
//! the variable and the flag ([`explain`]). [`RawConfig::resolve`] keeps only the rules that
//! span several settings.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser};
use flexauth_argon2::Argon2Settings;
use flexauth_store::DatabaseConfig;
use time::Duration;
use url::Url;

/// flexauth: email + password accounts, JWT access tokens, rotating refresh tokens.
#[derive(Debug, Parser)]
#[command(
    name = "flexauth",
    version,
    about = "flexauth: an authentication server. Email + password accounts with email verification, JWT access \
        tokens, rotating refresh tokens and API keys.",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: RawConfig,
}

pub use commands::{AccountsCommand, ClientsCommand, Command, EmailTemplatesCommand, KeysCommand, WebhooksCommand};
pub use values::{ConfigDuration, LogFormat};
use values::{
    DatabaseUrl, DurationOrZero, ForwardedHeaderSetting, List, OptionalAddress, Origin, PoolerSetting, PublicUrl,
};

use crate::client::Network;
use flexauth_domain::newtypes::Scope;

mod commands;
pub mod values;

/// The configuration as given, before validation.
#[derive(Clone, Args)]
pub struct RawConfig {
    /// Address to listen on.
    #[arg(long, env = "FLEXAUTH_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Base URL of links in emails and `iss` of tokens, as users and resource servers reach
    /// flexauth. Unset: `http://` and the listen address (a wildcard address as 127.0.0.1),
    /// with a warning when flexauth listens beyond loopback.
    #[arg(long, env = "FLEXAUTH_PUBLIC_URL")]
    pub public_url: Option<PublicUrl>,
    /// Directory of the SQLite file, the mail files and other local state.
    #[arg(long, env = "FLEXAUTH_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// `postgres://…` selects PostgreSQL; unset, an SQLite file in the data directory is used.
    #[arg(long, env = "FLEXAUTH_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,
    /// `transaction` when PostgreSQL is reached through a pooler in transaction mode
    /// (PgBouncer's `pool_mode = transaction`): flexauth then keeps no session state on its
    /// connections. `none` (the default) otherwise.
    #[arg(long, env = "FLEXAUTH_DATABASE_POOLER", default_value = "none")]
    pub database_pooler: PoolerSetting,
    /// `smtp://host:port` (lettre URL syntax); unset, mail is written as .eml files.
    #[arg(long, env = "FLEXAUTH_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender of every email.
    #[arg(long, env = "FLEXAUTH_MAIL_FROM", default_value = "flexauth <no-reply@localhost>")]
    pub mail_from: String,
    /// Directory of email templates that replace the built-in ones of the same file name
    /// (`flexauth email-templates export DIR` writes the built-in set to start from); checked
    /// at start. Unset, the built-in templates are used.
    #[arg(long, env = "FLEXAUTH_EMAIL_TEMPLATES")]
    pub email_templates: Option<PathBuf>,
    /// PEM file with the Ed25519 private key that signs tokens; unset, a key is generated once
    /// and stored in the database.
    #[arg(long, env = "FLEXAUTH_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// Comma-separated PEM files of earlier signing keys: they no longer sign but still verify,
    /// so tokens issued before a key rotation keep working until they expire.
    #[arg(long, env = "FLEXAUTH_RETIRING_KEY_FILES")]
    pub retiring_key_files: Option<List<PathBuf>>,
    /// Key-encryption key (32 random bytes in base64: `openssl rand -base64 32`) that seals the
    /// private signing keys stored in the database; without it they are stored in the clear.
    #[arg(long, value_parser = values::key_encryption_key, env = "FLEXAUTH_KEY_ENCRYPTION_KEY", hide_env_values = true)]
    pub key_encryption_key: Option<flexauth_jwt::KeyEncryptionKey>,
    /// A file holding the key-encryption key, instead of FLEXAUTH_KEY_ENCRYPTION_KEY.
    #[arg(long, env = "FLEXAUTH_KEY_ENCRYPTION_KEY_FILE")]
    pub key_encryption_key_file: Option<PathBuf>,
    /// How long resource servers may cache the JWKS (its `Cache-Control: max-age`). A rotated
    /// key signs only after a longer delay, so every cache has it first.
    #[arg(long, env = "FLEXAUTH_JWKS_MAX_AGE", default_value = "300s")]
    pub jwks_max_age: ConfigDuration,
    /// `aud` of access tokens.
    #[arg(long, value_parser = values::non_empty, env = "FLEXAUTH_ACCESS_TOKEN_AUDIENCE", default_value = "flexauth")]
    pub access_token_audience: String,
    /// Access token lifetime (seconds, or with a unit: 15m, 1h).
    #[arg(long, env = "FLEXAUTH_ACCESS_TOKEN_TTL", default_value = "3600")]
    pub access_token_ttl: ConfigDuration,
    /// Refresh token lifetime without rotation.
    #[arg(long, env = "FLEXAUTH_REFRESH_TOKEN_TTL", default_value = "30d")]
    pub refresh_token_ttl: ConfigDuration,
    /// Absolute session lifetime, however often it is refreshed.
    #[arg(long, env = "FLEXAUTH_SESSION_LIFETIME", default_value = "90d")]
    pub session_lifetime: ConfigDuration,
    /// How long after a rotation the previous refresh token still gets the current pair.
    #[arg(long, env = "FLEXAUTH_REFRESH_REUSE_GRACE", default_value = "10s")]
    pub refresh_reuse_grace: ConfigDuration,
    /// How long a verification link works.
    #[arg(long, env = "FLEXAUTH_VERIFICATION_TTL", default_value = "24h")]
    pub verification_ttl: ConfigDuration,
    /// How long a password reset link works.
    #[arg(long, env = "FLEXAUTH_PASSWORD_RESET_TTL", default_value = "1h")]
    pub password_reset_ttl: ConfigDuration,
    /// `true` to look the session up on every request made with an access token, so revoked
    /// sessions are refused at once instead of when their access tokens expire.
    #[arg(long, action = clap::ArgAction::Set, value_parser = values::switch, env = "FLEXAUTH_VERIFY_SESSION_ON_REQUEST", default_value = "false")]
    pub verify_session_on_request: bool,
    /// Comma-separated networks (CIDR) of the proxies in front of flexauth whose `Forwarded` /
    /// `X-Forwarded-For` headers name the client; from any other peer they are ignored.
    #[arg(long, env = "FLEXAUTH_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: List<Network>,
    /// The header the trusted proxies write: `x-forwarded-for` (the default) or `forwarded`.
    /// Only that one is read.
    #[arg(long, ignore_case = true, env = "FLEXAUTH_FORWARDED_HEADER", default_value = "x-forwarded-for")]
    pub forwarded_header: ForwardedHeaderSetting,
    /// `on` (the default) or `off`: `off` turns every rate limit and mail cap off, for
    /// benchmarks and tests that need it.
    #[arg(long, action = clap::ArgAction::Set, value_parser = values::switch, env = "FLEXAUTH_RATE_LIMITS", default_value = "on")]
    pub rate_limits: bool,
    /// How recently a session must have proved its password to create an API key.
    #[arg(long, env = "FLEXAUTH_REAUTHENTICATION_WINDOW", default_value = "10m")]
    pub reauthentication_window: ConfigDuration,
    /// How long the owners' security log keeps an entry.
    #[arg(long, env = "FLEXAUTH_AUDIT_RETENTION", default_value = "90d")]
    pub audit_retention: ConfigDuration,
    /// How long an account that was never verified is kept (once no link of it works).
    #[arg(long, env = "FLEXAUTH_UNVERIFIED_ACCOUNT_RETENTION", default_value = "7d")]
    pub unverified_account_retention: ConfigDuration,
    /// argon2id memory cost in KiB.
    #[arg(long, value_parser = clap::value_parser!(u32).range(8..), env = "FLEXAUTH_ARGON2_MEMORY_KIB", default_value = "19456")]
    pub argon2_memory_kib: u32,
    /// argon2id passes.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), env = "FLEXAUTH_ARGON2_ITERATIONS", default_value = "2")]
    pub argon2_iterations: u32,
    /// Password hashing worker threads, each holding one argon2 block (memory cost) for good;
    /// `0` means one per core. Logins beyond the workers and their queue get 503 at once.
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=256), env = "FLEXAUTH_ARGON2_WORKERS", default_value = "0")]
    pub argon2_workers: u16,
    /// Comma-separated origins (`https://app.example.com`) whose pages may call the API from
    /// a browser (CORS, with credentials) and use the refresh cookie. Empty: none.
    #[arg(long, env = "FLEXAUTH_CORS_ORIGINS", default_value = "")]
    pub cors_origins: List<Origin>,
    /// The WebAuthn relying party id of passkeys: a domain, the public URL's host or one of
    /// its parents (`example.com` lets passkeys work on every subdomain). Unset: the public
    /// URL's host. Changing it later strands every passkey registered under the old one.
    #[arg(long, env = "FLEXAUTH_WEBAUTHN_RP_ID")]
    pub webauthn_rp_id: Option<String>,
    /// Comma-separated origins whose pages may register and use passkeys, each on the relying
    /// party id or below it. Unset: the public URL's origin and FLEXAUTH_CORS_ORIGINS.
    #[arg(long, env = "FLEXAUTH_WEBAUTHN_ORIGINS")]
    pub webauthn_origins: Option<List<Origin>>,
    /// How many verified access tokens each instance remembers, so a client reusing its token
    /// skips the signature check; `0` turns the cache off.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=16_777_216), env = "FLEXAUTH_VERIFIED_TOKEN_CACHE", default_value = "16384")]
    pub verified_token_cache: u32,
    /// On SIGTERM, how long `/readyz` answers 503 while requests are still served, so a load
    /// balancer stops sending traffic before the server stops; `0` stops at once. SIGINT
    /// (Ctrl-C) always stops at once.
    #[arg(long, env = "FLEXAUTH_SHUTDOWN_DRAIN", default_value = "5s")]
    pub shutdown_drain: DurationOrZero,
    /// Address of a second listener that serves only `GET /metrics` (Prometheus text format),
    /// so metrics are never exposed with the API by accident. Unset or empty: no metrics
    /// listener.
    #[arg(long, env = "FLEXAUTH_METRICS_BIND", default_value = "")]
    pub metrics_bind: OptionalAddress,
    /// `text` or `json` log lines; the level comes from RUST_LOG (default info).
    #[arg(long, env = "FLEXAUTH_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// How long after a request's head its body may take to arrive; past it the request gets
    /// `408 request_timeout` and the connection is closed.
    #[arg(long, env = "FLEXAUTH_REQUEST_BODY_TIMEOUT", default_value = "10s")]
    pub request_body_timeout: ConfigDuration,
    /// How many connections one client address (an IPv6 /64) may hold at once; never more than
    /// a quarter of what the open-file limit allows. Trusted proxies are exempt.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), env = "FLEXAUTH_MAX_CONNECTIONS_PER_ADDRESS", default_value = "256")]
    pub max_connections_per_address: u32,
    /// Comma-separated scopes that API keys may carry (`invoices:read,invoices:write`); an
    /// access token carries all of them. Empty: keys carry none.
    #[arg(long, env = "FLEXAUTH_API_KEY_SCOPES", default_value = "")]
    pub api_key_scopes: List<Scope>,
    /// Let webhook endpoints (`flexauth webhooks add`) be on loopback, private, link-local or
    /// metadata addresses, and use plain http: for receivers on the same private network, and
    /// tests. Off, such URLs are refused when added and every delivery checks again.
    #[arg(long, env = "FLEXAUTH_WEBHOOKS_ALLOW_PRIVATE", default_value = "false", action = clap::ArgAction::Set)]
    pub webhooks_allow_private: bool,
}

impl std::fmt::Debug for RawConfig {
    // The database and SMTP URLs may carry passwords, and the key-encryption key is a secret:
    // none of them is ever written out, only whether it is set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn set<T>(value: &Option<T>) -> &'static str {
            if value.is_some() {
                "<set>"
            } else {
                "<unset>"
            }
        }
        f.debug_struct("RawConfig")
            .field("bind", &self.bind)
            .field("public_url", &self.public_url)
            .field("data_dir", &self.data_dir)
            .field("database_url", &set(&self.database_url))
            .field("database_pooler", &self.database_pooler)
            .field("smtp_url", &set(&self.smtp_url))
            .field("signing_key_file", &self.signing_key_file)
            .field("key_encryption_key", &set(&self.key_encryption_key))
            .field("key_encryption_key_file", &self.key_encryption_key_file)
            .field("metrics_bind", &self.metrics_bind)
            .finish_non_exhaustive()
    }
}

/// Where signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningKeySource {
    File(PathBuf),
    /// Generated on first start and stored in the database, shared by all instances.
    Generated,
}

/// Where mail goes.
#[derive(Clone, PartialEq, Eq)]
pub enum MailConfig {
    Smtp { url: String },
    Files { dir: PathBuf },
}

impl std::fmt::Debug for MailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The URL may carry SMTP credentials.
            Self::Smtp { .. } => f.write_str("Smtp(<url>)"),
            Self::Files { dir } => f.debug_struct("Files").field("dir", dir).finish(),
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub public_url: Url,
    /// Whether the public URL was made from the listen address, FLEXAUTH_PUBLIC_URL being
    /// unset: the start then says so.
    pub public_url_from_bind: bool,
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub database_pooler: flexauth_store::Pooler,
    pub mail: MailConfig,
    pub mail_from: String,
    /// The operator's email templates, if any.
    pub email_templates: Option<PathBuf>,
    pub signing_key: SigningKeySource,
    pub retiring_keys: Vec<PathBuf>,
    /// Seals the private keys stored in the database; `None`: stored in the clear.
    pub key_encryption_key: Option<flexauth_jwt::KeyEncryptionKey>,
    /// The JWKS's `Cache-Control: max-age`.
    pub jwks_max_age: Duration,
    /// How often each instance reads the stored signing keys, to publish a rotated key and
    /// sign with it once it activates, without a restart.
    pub key_ring_refresh: std::time::Duration,
    pub audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub session_lifetime: Duration,
    pub refresh_reuse_grace: Duration,
    pub verification_ttl: Duration,
    pub password_reset_ttl: Duration,
    pub verify_session_on_request: bool,
    pub reauthentication_window: Duration,
    pub trusted_proxies: Vec<crate::client::Network>,
    pub forwarded_header: crate::client::ForwardedHeader,
    pub rate_limits: bool,
    pub retention: flexauth_domain::housekeeping::RetentionSettings,
    pub argon2: Argon2Settings,
    pub verified_token_cache: usize,
    pub cors_origins: Vec<String>,
    /// The passkeys' relying party id; `None` (passkeys off) when the public URL is on an IP
    /// address and no id was named.
    pub webauthn_rp_id: Option<String>,
    /// The origins whose pages may run passkey ceremonies.
    pub webauthn_origins: Vec<String>,
    pub shutdown_drain: Duration,
    /// The metrics listener's address; `None`: no metrics listener.
    pub metrics_bind: Option<SocketAddr>,
    pub log_format: LogFormat,
    /// How often the delivery worker looks for due emails.
    pub outbox_poll_interval: std::time::Duration,
    /// How often the request counts of `/v1/usage` are written: what a crash can lose.
    pub usage_flush_interval: std::time::Duration,
    /// HTTP worker threads.
    pub http_workers: usize,
    /// How long a request's body may take to arrive after its head.
    pub request_body_timeout: std::time::Duration,
    /// The most connections one client address may hold (before the file-limit share).
    pub max_connections_per_address: usize,
    /// The scopes API keys may carry.
    pub api_key_scopes: std::collections::BTreeSet<flexauth_domain::newtypes::Scope>,
    /// Where webhooks may be posted.
    pub webhook_destinations: flexauth_domain::webhook::DestinationPolicy,
    /// How webhook deliveries are paced and retried.
    pub webhook_delivery: flexauth_domain::webhook::WebhookDeliverySettings,
    /// How long one webhook attempt may take in all.
    pub webhook_timeout: std::time::Duration,
    /// How often the webhook worker looks for due messages when the last look found few.
    pub webhook_poll_interval: std::time::Duration,
    /// How often the workers and the key ring look anyway when the database announces new
    /// work and key changes (PostgreSQL without a transaction pooler, migration 20): for
    /// retries that fall due, and as the bound on how late a missed announcement is noticed.
    /// Elsewhere they look every `outbox_poll_interval`, `webhook_poll_interval` and
    /// `key_ring_refresh`.
    pub announced_work_poll_interval: std::time::Duration,
}

/// How often the workers look for due mail, account requests and webhook messages, and read
/// the stored signing keys, where the database announces nothing (SQLite, or behind a pooler in
/// transaction mode).
pub const WORK_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How often they look anyway where the database announces new work (PostgreSQL without a
/// pooler in transaction mode): for retries that fall due, and as the bound on how late a
/// missed announcement is noticed.
pub const ANNOUNCED_WORK_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// A configuration value that cannot be used; its message is the one line printed at start.
#[derive(Debug, thiserror::Error)]
#[error("invalid {variable} (--{flag}): {reason}")]
pub struct ConfigError {
    variable: &'static str,
    flag: &'static str,
    reason: String,
}

fn invalid(variable: &'static str, flag: &'static str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError { variable, flag, reason: reason.to_string() }
}

/// The public URL of a server that was given only its listen address: `http://` and that
/// address, a wildcard (`0.0.0.0`, `::`) replaced by the loopback address of its family.
fn public_url_of(bind: SocketAddr) -> Result<Url, url::ParseError> {
    let ip = match bind.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let address = SocketAddr::new(ip, bind.port());
    Url::parse(&format!("http://{address}"))
}

impl RawConfig {
    /// Applies the rules that span several settings; each value was parsed on its own already.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn resolve(&self) -> Result<Settings, ConfigError> {
        let bind = self.bind;
        let (public_url, public_url_from_bind) = match &self.public_url {
            Some(url) => (url.0.clone(), false),
            None => (
                public_url_of(bind).map_err(|error| invalid("FLEXAUTH_BIND", "bind", format!("as a URL: {error}")))?,
                true,
            ),
        };
        let database = match &self.database_url {
            Some(url) => url.0.clone(),
            None => DatabaseConfig::Sqlite(self.data_dir.join("flexauth.sqlite3")),
        };
        let mail = match self.smtp_url.as_deref().map(str::trim).filter(|url| !url.is_empty()) {
            Some(url) => MailConfig::Smtp { url: url.to_owned() },
            None => MailConfig::Files { dir: self.data_dir.join("mail") },
        };
        let signing_key = match &self.signing_key_file {
            Some(path) => SigningKeySource::File(path.clone()),
            None => SigningKeySource::Generated,
        };
        let key_encryption_key =
            match (&self.key_encryption_key, &self.key_encryption_key_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "FLEXAUTH_KEY_ENCRYPTION_KEY",
                        "key-encryption-key",
                        "set either the key or FLEXAUTH_KEY_ENCRYPTION_KEY_FILE, not both",
                    ))
                }
                (Some(key), None) => Some(key.clone()),
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(path).map_err(|error| {
                        invalid(
                            "FLEXAUTH_KEY_ENCRYPTION_KEY_FILE",
                            "key-encryption-key-file",
                            format!("{}: {error}", path.display()),
                        )
                    })?;
                    Some(values::key_encryption_key(&text).map_err(|reason| {
                        invalid("FLEXAUTH_KEY_ENCRYPTION_KEY_FILE", "key-encryption-key-file", reason)
                    })?)
                }
                (None, None) => None,
            };
        let metrics_bind = self.metrics_bind.0;
        if metrics_bind.is_some_and(|address| address == bind && address.port() != 0) {
            return Err(invalid(
                "FLEXAUTH_METRICS_BIND",
                "metrics-bind",
                "must differ from FLEXAUTH_BIND: metrics are served on a listener of their own",
            ));
        }
        let argon2 = Argon2Settings {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            workers: match self.argon2_workers {
                0 => Argon2Settings::default().workers,
                workers => usize::from(workers),
            },
            ..Argon2Settings::default()
        };
        // WebAuthn needs a domain: a public URL on an IP address leaves passkeys off unless an
        // id is named.
        let webauthn_rp_id = match (&self.webauthn_rp_id, public_url.host()) {
            (Some(id), _) => Some(id.trim().to_owned()),
            (None, Some(url::Host::Domain(domain))) => Some(domain.to_owned()),
            (None, _) => None,
        };
        let webauthn_origins = match &self.webauthn_origins {
            Some(origins) => origins.0.iter().map(|origin| origin.0.clone()).collect(),
            None => std::iter::once(public_url.origin().ascii_serialization())
                .chain(self.cors_origins.0.iter().map(|origin| origin.0.clone()))
                .collect(),
        };
        Ok(Settings {
            bind,
            public_url,
            public_url_from_bind,
            data_dir: self.data_dir.clone(),
            database,
            database_pooler: self.database_pooler.into(),
            mail,
            mail_from: self.mail_from.clone(),
            email_templates: self.email_templates.clone(),
            signing_key,
            retiring_keys: self.retiring_key_files.clone().map(|list| list.0).unwrap_or_default(),
            audience: self.access_token_audience.clone(),
            access_token_ttl: self.access_token_ttl.0,
            refresh_token_ttl: self.refresh_token_ttl.0,
            session_lifetime: self.session_lifetime.0,
            refresh_reuse_grace: self.refresh_reuse_grace.0,
            verification_ttl: self.verification_ttl.0,
            password_reset_ttl: self.password_reset_ttl.0,
            verify_session_on_request: self.verify_session_on_request,
            trusted_proxies: self.trusted_proxies.0.clone(),
            forwarded_header: self.forwarded_header.into(),
            rate_limits: self.rate_limits,
            retention: flexauth_domain::housekeeping::RetentionSettings {
                audit_events: self.audit_retention.0,
                unverified_accounts: self.unverified_account_retention.0,
                ..flexauth_domain::housekeeping::RetentionSettings::default()
            },
            reauthentication_window: self.reauthentication_window.0,
            argon2,
            verified_token_cache: self.verified_token_cache as usize,
            cors_origins: self.cors_origins.0.iter().map(|origin| origin.0.clone()).collect(),
            webauthn_rp_id,
            webauthn_origins,
            shutdown_drain: self.shutdown_drain.0,
            metrics_bind,
            key_encryption_key,
            jwks_max_age: self.jwks_max_age.0,
            key_ring_refresh: WORK_POLL_INTERVAL,
            log_format: self.log_format,
            outbox_poll_interval: WORK_POLL_INTERVAL,
            usage_flush_interval: std::time::Duration::from_secs(1),
            http_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            request_body_timeout: self.request_body_timeout.0.unsigned_abs(),
            api_key_scopes: self.api_key_scopes.0.iter().cloned().collect(),
            max_connections_per_address: self.max_connections_per_address as usize,
            webhook_destinations: flexauth_domain::webhook::DestinationPolicy {
                allow_private: self.webhooks_allow_private,
            },
            webhook_delivery: flexauth_domain::webhook::WebhookDeliverySettings::default(),
            webhook_timeout: std::time::Duration::from_secs(10),
            webhook_poll_interval: WORK_POLL_INTERVAL,
            announced_work_poll_interval: ANNOUNCED_WORK_POLL_INTERVAL,
        })
    }
}

/// The one line that names the variable, the flag and the reason when clap could not parse a
/// setting (`invalid FLEXAUTH_BIND (--bind): …`); `None` for any other error of the command
/// line (help, version, an unknown flag), which clap prints itself. The value is quoted unless
/// the setting is a secret.
pub fn explain(error: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(error.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue) {
        return None;
    }
    let text = |kind| match error.get(kind) {
        Some(ContextValue::String(text)) => Some(text.clone()),
        _ => None,
    };
    let flag = text(ContextKind::InvalidArg)?;
    let long = flag.trim_start_matches('-').split([' ', '=']).next()?.to_owned();
    let command = <Cli as clap::CommandFactory>::command();
    let argument = command.get_arguments().find(|argument| argument.get_long() == Some(long.as_str()))?;
    let variable = argument.get_env()?.to_string_lossy().into_owned();
    let value = text(ContextKind::InvalidValue).unwrap_or_default();
    let reason = match error.kind() {
        ErrorKind::InvalidValue => match error.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(valid)) => format!("expected one of {}", valid.join(", ")),
            _ => "not one of the values it takes".to_owned(),
        },
        _ => std::error::Error::source(error).map_or_else(|| "cannot be used".to_owned(), ToString::to_string),
    };
    let secret = argument.is_hide_env_values_set();
    let reason = if secret || reason.contains(&format!("`{value}`")) { reason } else { format!("`{value}`: {reason}") };
    Some(format!("invalid {variable} (--{long}): {reason}"))
}

impl Settings {
    /// The public URL without a trailing slash, as it appears in links and in `iss`.
    pub fn public_base(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(args: &[&str]) -> RawConfig {
        let mut argv = vec!["flexauth"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().config
    }

    #[test]
    fn defaults_give_sqlite_in_the_data_dir_mail_files_and_a_generated_key() {
        // clap also reads FLEXAUTH_* variables: this expects none of them set, as in CI.
        let settings = raw(&["--data-dir", "/tmp/fa"]).resolve().unwrap();
        assert_eq!(settings.database, DatabaseConfig::Sqlite(PathBuf::from("/tmp/fa/flexauth.sqlite3")));
        assert_eq!(settings.mail, MailConfig::Files { dir: PathBuf::from("/tmp/fa/mail") });
        assert_eq!(settings.signing_key, SigningKeySource::Generated);
        assert_eq!(settings.access_token_ttl, Duration::hours(1));
        assert_eq!(settings.refresh_token_ttl, Duration::days(30));
        assert_eq!(settings.refresh_reuse_grace, Duration::seconds(10));
    }

    #[test]
    fn no_password_or_key_reaches_a_debug_output() {
        let cli = Cli::try_parse_from([
            "flexauth",
            "--database-url",
            "postgres://flexauth:db-secret@db.example:5432/flexauth",
            "--smtp-url",
            "smtp://mailer:smtp-secret@mail.example:587",
            "--key-encryption-key",
            "c2VjcmV0LWtleS1lbmNyeXB0aW9uLWtleS0zMmJ5dGU=",
        ])
        .unwrap();
        let settings = cli.config.resolve().unwrap();
        for debug in [format!("{cli:?}"), format!("{settings:?}")] {
            for secret in ["db-secret", "smtp-secret", "c2VjcmV0"] {
                assert!(!debug.contains(secret), "{secret} in {debug}");
            }
        }
    }

    #[test]
    fn durations_accept_units() {
        let parse_duration = |text: &str| text.parse::<ConfigDuration>().map(|duration| duration.0);
        assert_eq!(parse_duration("90"), Ok(Duration::seconds(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::minutes(15)));
        assert_eq!(parse_duration("2h"), Ok(Duration::hours(2)));
        assert_eq!(parse_duration("0"), Err("`0` must be positive".to_owned()));
        assert_eq!(parse_duration("-5"), Err("`-5` must be positive".to_owned()));
        assert_eq!(
            parse_duration("soon"),
            Err("`soon` is not a duration such as 3600, 90s, 15m, 1h or 30d".to_owned())
        );
        assert_eq!(parse_duration("99999999999d"), Err("`99999999999d` is longer than ten years".to_owned()));
    }

    /// The line `flexauth ARGS` stops with when a setting does not parse.
    fn refusal(args: &[&str]) -> String {
        let mut argv = vec!["flexauth"];
        argv.extend_from_slice(args);
        let error = Cli::try_parse_from(argv).map(|_| ()).unwrap_err();
        explain(&error).unwrap_or_else(|| panic!("not a setting's error: {error}"))
    }

    #[test]
    fn a_bad_value_names_the_variable_and_the_flag_in_one_line() {
        let error = refusal(&["--bind", "not-an-address"]);
        assert_eq!(error, "invalid FLEXAUTH_BIND (--bind): `not-an-address`: invalid socket address syntax");
        let error = refusal(&["--access-token-ttl", "forever"]);
        assert_eq!(
            error,
            "invalid FLEXAUTH_ACCESS_TOKEN_TTL (--access-token-ttl): `forever` is not a duration such as 3600, 90s, \
                15m, 1h or 30d"
        );
        let error = refusal(&["--database-url", "mysql://x"]);
        assert!(error.starts_with("invalid FLEXAUTH_DATABASE_URL (--database-url): must start with"), "{error}");
        assert!(!error.contains("mysql"), "a secret setting's value is never repeated: {error}");
        let error = refusal(&["--public-url", "ftp://x"]);
        assert!(error.starts_with("invalid FLEXAUTH_PUBLIC_URL (--public-url): `ftp://x` must be an http"), "{error}");
        let error = refusal(&["--log-format", "xml"]);
        assert_eq!(error, "invalid FLEXAUTH_LOG_FORMAT (--log-format): `xml`: expected one of text, json");
        let error = refusal(&["--argon2-memory-kib", "4"]);
        assert!(error.starts_with("invalid FLEXAUTH_ARGON2_MEMORY_KIB (--argon2-memory-kib): `4`: "), "{error}");
        let error = refusal(&["--key-encryption-key", "too-short-secret"]);
        assert!(error.starts_with("invalid FLEXAUTH_KEY_ENCRYPTION_KEY (--key-encryption-key): "), "{error}");
        assert!(!error.contains("too-short-secret"), "{error}");
        let error = refusal(&["--rate-limits", "maybe"]);
        assert_eq!(
            error,
            "invalid FLEXAUTH_RATE_LIMITS (--rate-limits): `maybe` is neither on (true, 1) nor off (false, 0)"
        );
    }

    #[test]
    fn help_and_unknown_flags_are_left_to_clap() {
        let error = Cli::try_parse_from(["flexauth", "--no-such-flag"]).map(|_| ()).unwrap_err();
        assert_eq!(explain(&error), None);
    }

    #[test]
    fn postgres_urls_select_postgres() {
        let settings = raw(&["--database-url", "postgres://u@db/flexauth?sslmode=require"]).resolve().unwrap();
        assert_eq!(settings.database, DatabaseConfig::Postgres("postgres://u@db/flexauth?sslmode=require".into()));
    }

    #[test]
    fn migrate_is_a_subcommand_and_serve_the_default() {
        assert_eq!(Cli::try_parse_from(["flexauth"]).unwrap().command, None);
        assert_eq!(Cli::try_parse_from(["flexauth", "migrate"]).unwrap().command, Some(Command::Migrate));
        assert_eq!(
            Cli::try_parse_from(["flexauth", "--bind", "0.0.0.0:9", "serve"]).unwrap().config.bind.to_string(),
            "0.0.0.0:9"
        );
    }

    /// The help of a command as `flexauth ARGS --help` prints it.
    fn help(args: &[&str]) -> String {
        let mut argv = vec!["flexauth"];
        argv.extend_from_slice(args);
        argv.push("--help");
        Cli::try_parse_from(argv).unwrap_err().to_string()
    }

    #[test]
    fn an_operators_command_has_a_help_of_its_own_without_the_servers_settings() {
        let rotate = help(&["keys", "rotate"]);
        assert!(rotate.contains("--delay <DELAY>"), "{rotate}");
        assert!(rotate.contains("longer than FLEXAUTH_JWKS_MAX_AGE"), "the flag is described: {rotate}");
        for command in [&["keys", "rotate"][..], &["accounts", "find"], &["clients", "create"], &["migrate"]] {
            let text = help(command);
            assert!(!text.contains("--argon2-memory-kib") && !text.contains("FLEXAUTH_BIND"), "{command:?}: {text}");
        }
        let top = help(&[]);
        assert!(top.contains("--argon2-memory-kib") && top.contains("FLEXAUTH_PUBLIC_URL"), "{top}");
    }

    /// The rows of the README's configuration table: variable, flag, default cell.
    fn readme_configuration_table() -> Vec<(String, String, String)> {
        let readme = include_str!("../../../../README.md");
        let section = readme.split("\n## Configuration").nth(1).expect("the README has a Configuration section");
        let section = section.split("\n## ").next().unwrap_or(section);
        let backticked = |cell: &str| cell.split('`').nth(1).map(str::to_owned);
        section
            .lines()
            .filter(|line| line.starts_with("| `FLEXAUTH_"))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let variable = backticked(cells[1]).unwrap_or_default();
                let flag = backticked(cells[2]).unwrap_or_default();
                (variable, flag, cells[3].to_owned())
            })
            .collect()
    }

    #[test]
    fn the_readmes_configuration_table_is_the_settings_clap_reads() {
        use clap::CommandFactory as _;
        let command = Cli::command();
        let mut declared: Vec<(String, String, Option<String>)> = command
            .get_arguments()
            .filter_map(|arg| {
                let env = arg.get_env()?.to_str()?.to_owned();
                let flag = format!("--{}", arg.get_long()?);
                let default = arg.get_default_values().first().and_then(|value| value.to_str()).map(str::to_owned);
                Some((env, flag, default.filter(|value| !value.is_empty())))
            })
            .collect();
        declared.sort();
        let mut documented = readme_configuration_table();
        documented.sort();
        let names = |rows: &[(String, String, String)]| rows.iter().map(|row| row.0.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&documented),
            declared.iter().map(|row| row.0.clone()).collect::<Vec<_>>(),
            "the README's configuration table lists every setting once"
        );
        for ((variable, flag, cell), (_, declared_flag, default)) in documented.iter().zip(&declared) {
            assert_eq!(flag, declared_flag, "{variable}");
            match default {
                Some(default) => assert!(
                    cell.starts_with(&format!("`{default}`")),
                    "{variable}: default `{default}`, README: {cell}"
                ),
                None => assert!(!cell.starts_with('`'), "{variable} has no default value, README: {cell}"),
            }
        }
    }

    #[test]
    fn the_public_url_follows_the_listen_address_unless_it_is_set() {
        let settings = raw(&["--bind", "127.0.0.1:19195"]).resolve().unwrap();
        assert_eq!((settings.public_base(), settings.public_url_from_bind), ("http://127.0.0.1:19195".into(), true));
        let settings = raw(&["--bind", "0.0.0.0:8081"]).resolve().unwrap();
        assert_eq!(settings.public_base(), "http://127.0.0.1:8081");
        let settings = raw(&["--bind", "[::]:8082"]).resolve().unwrap();
        assert_eq!(settings.public_base(), "http://[::1]:8082");
        let settings = raw(&["--bind", "0.0.0.0:8081", "--public-url", "https://auth.example.com"]).resolve().unwrap();
        assert_eq!((settings.public_base(), settings.public_url_from_bind), ("https://auth.example.com".into(), false));
        assert_eq!(raw(&[]).resolve().unwrap().public_base(), "http://127.0.0.1:8080", "the default is unchanged");
    }

    #[test]
    fn a_key_id_that_begins_with_a_hyphen_is_a_key_id() {
        for command in ["retire", "revoke"] {
            let parsed = Cli::try_parse_from(["flexauth", "keys", command, "-fQx2"]).unwrap().command;
            let kid = match parsed {
                Some(Command::Keys { command: KeysCommand::Retire { kid } | KeysCommand::Revoke { kid } }) => kid,
                other => panic!("{other:?}"),
            };
            assert_eq!(kid, "-fQx2");
        }
    }
}
