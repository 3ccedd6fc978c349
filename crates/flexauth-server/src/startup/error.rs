//! Why the server or a command could not start: one line for the operator each.

use flexauth_argon2::Argon2ConfigError;
use flexauth_jwt::KeyError;
use flexauth_mail::MailConfigError;
use flexauth_store::StoreError;

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
    #[error("passkeys: {0}")]
    Webauthn(String),
    #[error("email templates (FLEXAUTH_EMAIL_TEMPLATES): {0}")]
    EmailTemplates(#[from] flexauth_mail::TemplateError),
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
    #[error("webhooks: {0}")]
    Webhooks(String),
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
