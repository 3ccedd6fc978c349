//! The commands of the `flexauth` binary: serving (the default), migrating, the OpenAPI
//! document, and the operator's commands with their own flags.

use clap::Subcommand;

/// What to do; serving is the default.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Apply pending migrations, then serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document of this version's API (what `GET /openapi.json` serves).
    Openapi,
    /// List, rotate, retire, revoke and seal the signing keys stored in the database. Each
    /// command prints JSON.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Look up and administer accounts on the configured database. Each command prints JSON.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Register the resource servers that may introspect tokens (POST /v1/auth/introspect).
    /// Each command prints JSON.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Write, check and preview the email templates (FLEXAUTH_EMAIL_TEMPLATES). Each command
    /// prints JSON.
    EmailTemplates {
        #[command(subcommand)]
        command: EmailTemplatesCommand,
    },
    /// Manage the endpoints that receive signed events (Standard Webhooks). Each command prints
    /// JSON.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
}

/// An operator's command on the webhook endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum WebhooksCommand {
    /// Add an endpoint at URL; prints its id and its signing secret (`whsec_…`), shown this
    /// once. It receives the events queued from now on.
    Add {
        url: String,
        /// Comma-separated event types (`account.created,session.ended`), or `*` for all of
        /// them, including types added by later versions.
        #[arg(long, default_value = "*")]
        events: String,
    },
    /// Every endpoint, with its events and health (never a secret).
    List,
    /// Remove endpoint ID and the messages still waiting for it.
    Remove { id: String },
    /// Give endpoint ID a new signing secret, printed this once; the old one keeps signing
    /// beside it for the overlap, so receivers can switch without refusing a message.
    RotateSecret {
        id: String,
        /// How long the old secret keeps signing (`3600`, `90s`, `15m`, `24h`). Default: 24h.
        #[arg(long)]
        overlap: Option<super::ConfigDuration>,
    },
    /// Deliver to endpoint ID again after flexauth disabled it for failing too long; its
    /// waiting messages are due at once.
    Enable { id: String },
    /// The newest attempts to deliver to endpoint ID: event, attempt, status, error, outcome.
    Deliveries {
        id: String,
        /// How many attempts to show.
        #[arg(long, default_value = "50")]
        limit: u32,
    },
}

/// An operator's command on the email templates.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum EmailTemplatesCommand {
    /// Write the built-in templates into DIR (created if missing), to edit and name in
    /// FLEXAUTH_EMAIL_TEMPLATES; files already there are kept. Delete the files you do not
    /// change: the built-in ones stand in for missing files, and keep improving with upgrades.
    Export { dir: std::path::PathBuf },
    /// Check the templates of FLEXAUTH_EMAIL_TEMPLATES as the server does at start, and name
    /// the files that replace built-in ones.
    Check,
    /// Print the email of KIND (`verification`, `password_reset`, … as in docs/operations.md)
    /// as the current templates write it, with made-up facts.
    Preview { kind: String },
}

/// An operator's command on the resource servers that may introspect.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ClientsCommand {
    /// Register a resource server named NAME; prints its client_id and client_secret, which is
    /// shown this once (only its digest is stored).
    Create {
        #[arg(allow_hyphen_values = true)]
        name: String,
    },
    /// Every registered resource server, oldest first (never a secret).
    List,
    /// Delete resource server ID: every instance refuses its credentials within a second.
    Delete { id: String },
}

/// An operator's command on the stored signing keys.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum KeysCommand {
    /// Every stored key: its id, what it does now, and until when.
    List,
    /// Add a key that the JWKS publishes at once and that signs after DELAY (by default twice
    /// FLEXAUTH_JWKS_MAX_AGE; it must be longer than that cache lifetime), on every instance,
    /// without a restart.
    Rotate {
        /// How long from now the new key signs (`3600`, `90s`, `15m`, `1h`): longer than
        /// FLEXAUTH_JWKS_MAX_AGE. Default: twice FLEXAUTH_JWKS_MAX_AGE. On a database with no
        /// key yet, the key signs at once.
        #[arg(long)]
        delay: Option<super::ConfigDuration>,
    },
    /// Stop key KID signing. It stays in the JWKS until the access tokens it signed have
    /// expired, and verifies refresh tokens until those have. The key that signs now can be
    /// retired only once another key has taken over.
    Retire {
        // A key id is URL-safe base64, which may begin with `-`.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Revoke key KID at once, for a key that leaked: within a second every instance drops it
    /// from the JWKS and refuses every token it signed (their sessions log in again). When it
    /// is the last key that can sign, a new key is added that signs at once.
    Revoke {
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Seal every stored key that is in the clear with FLEXAUTH_KEY_ENCRYPTION_KEY: once, after
    /// setting that key on a database whose keys were stored without it. Instances with a
    /// key-encryption key never use a key in the clear, nor seal one themselves: only someone
    /// writing to the database could have put it there.
    Seal,
}

/// An operator's command on one account. Every change is recorded in the account's security
/// log (which outlives a deletion, under a replaced account id).
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum AccountsCommand {
    /// The account registered under EMAIL.
    Find { email: String },
    /// The account ID with its live sessions, API keys and newest security events.
    Show { id: String },
    /// Refuse new logins and end every session and API key of account ID at once.
    Disable { id: String },
    /// Let account ID log in again (ended sessions and keys stay ended).
    Enable { id: String },
    /// Erase account ID and everything that names it or its address.
    Delete { id: String },
    /// Everything flexauth holds about account ID, as one JSON document.
    Export { id: String },
    /// Remove every second factor and recovery code of account ID, for an owner who lost both
    /// (check who is asking first); the owner is emailed and the security log records it.
    MfaReset { id: String },
}
