//! The operator's commands (`flexauth accounts …`, `keys …`, `clients …`): the same domain
//! rules as the API, run once against the configured database, each printing one JSON
//! document.

use std::sync::Arc;

use flexauth_domain::account::{AccountId, EmailAddress};
use flexauth_domain::introspection::{
    ClientName, ClientRegistry, ClientSecret, IntrospectionClient, IntrospectionClientId,
};
use flexauth_domain::lifecycle::AdminError;
use serde::Serialize;

use crate::config::{AccountsCommand, ClientsCommand, Settings};
use crate::startup::{self, StartupError};
use crate::system::{instant, OsRandom, SystemClock};

/// Why an operator's command failed; its message is the one line printed.
#[derive(Debug, thiserror::Error)]
pub enum AdminCommandError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("`{0}` is not an account id (a UUID)")]
    InvalidId(String),
    #[error("`{0}` is not an email address: {1}")]
    InvalidEmail(String, flexauth_domain::account::EmailError),
    #[error("no such account")]
    NoSuchAccount,
    #[error("{0}")]
    Failed(String),
}

impl From<AdminError> for AdminCommandError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::NoSuchAccount => Self::NoSuchAccount,
            AdminError::Unexpected(cause) => Self::Failed(crate::error::error_chain(&cause)),
        }
    }
}

impl From<crate::error::ApiError> for AdminCommandError {
    fn from(error: crate::error::ApiError) -> Self {
        Self::Failed(crate::error::error_chain(&error))
    }
}

fn account_id(text: &str) -> Result<AccountId, AdminCommandError> {
    uuid::Uuid::parse_str(text.trim())
        .map(AccountId::from_uuid)
        .map_err(|_| AdminCommandError::InvalidId(text.to_owned()))
}

#[derive(Serialize)]
struct Done {
    account_id: String,
    done: &'static str,
}

fn json(value: &impl Serialize) -> Result<String, AdminCommandError> {
    serde_json::to_string_pretty(value).map_err(|error| AdminCommandError::Failed(error.to_string()))
}

/// Runs `command` and returns what to print.
///
/// # Errors
/// An [`AdminCommandError`] naming what failed.
pub async fn run_accounts(settings: &Settings, command: &AccountsCommand) -> Result<String, AdminCommandError> {
    let store = Arc::new(startup::open_for_command(settings).await?);
    // The operator's commands hash nothing; the rules want a hasher all the same, so it is
    // the smallest pool the settings allow.
    let argon2 = flexauth_argon2::Argon2Settings { workers: 1, ..settings.argon2 };
    let hasher = Arc::new(
        tokio::task::spawn_blocking(move || flexauth_argon2::Argon2Hasher::new(argon2))
            .await
            .map_err(StartupError::from)?
            .map_err(StartupError::from)?,
    );
    let wiring = crate::services::Wiring {
        letters: crate::startup::letters(settings)?,
        // The operator's commands run no passkey ceremony.
        passkeys: None,
        store: store.clone(),
        hasher,
        clock: Arc::new(SystemClock),
        random: Arc::new(OsRandom),
        settings: settings.clone(),
    };
    let lifecycle = wiring.lifecycle();
    let (id, done) = match command {
        AccountsCommand::Find { email } => {
            let address =
                EmailAddress::parse(email).map_err(|error| AdminCommandError::InvalidEmail(email.clone(), error))?;
            let account = lifecycle.find(&address).await?;
            return json(&crate::routes::export_view(lifecycle.show(account.id()).await?)?);
        }
        AccountsCommand::Show { id } => {
            return json(&crate::routes::export_view(lifecycle.show(account_id(id)?).await?)?)
        }
        AccountsCommand::Export { id } => {
            let id = account_id(id)?;
            let export = lifecycle.export(id).await?;
            tracing::info!(target: "flexauth::audit", event = "account_exported", account_id = %id, actor = "operator", "account exported by an operator");
            return json(&crate::routes::export_view(export)?);
        }
        AccountsCommand::Disable { id } => {
            let id = account_id(id)?;
            lifecycle.disable(id).await?;
            (id, "disabled")
        }
        AccountsCommand::Enable { id } => {
            let id = account_id(id)?;
            lifecycle.enable(id).await?;
            (id, "enabled")
        }
        AccountsCommand::Delete { id } => {
            let id = account_id(id)?;
            lifecycle.erase(id).await?;
            (id, "deleted")
        }
        AccountsCommand::MfaReset { id } => {
            let id = account_id(id)?;
            wiring.mfa().reset_by_operator(id).await.map_err(|error| match error {
                flexauth_domain::mfa::MfaError::AccountGone(_) => AdminCommandError::NoSuchAccount,
                other => AdminCommandError::Failed(crate::error::error_chain(&other)),
            })?;
            (id, "mfa_reset")
        }
    };
    tracing::info!(target: "flexauth::audit", event = done, account_id = %id, actor = "operator", "account {done} by an operator");
    json(&Done { account_id: id.to_string(), done })
}

#[derive(Serialize)]
struct ClientView {
    client_id: String,
    name: String,
    created_at: String,
    /// Only when it was just created: shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
}

impl ClientView {
    fn of(client: &IntrospectionClient, secret: Option<&ClientSecret>) -> Self {
        Self {
            client_id: client.id.to_string(),
            name: client.name.as_str().to_owned(),
            created_at: instant(client.created_at),
            client_secret: secret.map(ClientSecret::expose),
        }
    }
}

/// Runs an operator's command on the resource servers that may introspect, and returns what
/// to print.
///
/// # Errors
/// An [`AdminCommandError`] naming what failed.
pub async fn run_clients(settings: &Settings, command: &ClientsCommand) -> Result<String, AdminCommandError> {
    let store = Arc::new(startup::open_for_command(settings).await?);
    let registry = ClientRegistry::new(store, Arc::new(SystemClock), Arc::new(OsRandom));
    let failed = |error: flexauth_domain::InfraError| AdminCommandError::Failed(crate::error::error_chain(&error));
    match command {
        ClientsCommand::Create { name } => {
            let name = ClientName::parse(name)
                .map_err(|error| AdminCommandError::Failed(format!("`{name}` is not a client name: {error}")))?;
            let (client, secret) = registry.create(name).await.map_err(failed)?;
            tracing::info!(target: "flexauth::audit", event = "introspection_client_created", client_id = %client.id, actor = "operator", "introspection client created by an operator");
            json(&ClientView::of(&client, Some(&secret)))
        }
        ClientsCommand::List => {
            let clients = registry.list().await.map_err(failed)?;
            json(&clients.iter().map(|client| ClientView::of(client, None)).collect::<Vec<_>>())
        }
        ClientsCommand::Delete { id } => {
            let parsed = IntrospectionClientId::parse(id.trim())
                .ok_or_else(|| AdminCommandError::Failed(format!("`{id}` is not a client id (a UUID)")))?;
            if !registry.delete(parsed).await.map_err(failed)? {
                return Err(AdminCommandError::Failed("no such client".to_owned()));
            }
            tracing::info!(target: "flexauth::audit", event = "introspection_client_deleted", client_id = %parsed, actor = "operator", "introspection client deleted by an operator");
            json(&serde_json::json!({ "client_id": parsed.to_string(), "done": "deleted" }))
        }
    }
}

/// Runs a `flexauth email-templates` command and returns what to print.
///
/// # Errors
/// An [`AdminCommandError`] naming what failed: a file that cannot be written, a broken
/// template (with its file and line), an unknown kind.
pub fn run_email_templates(
    settings: &Settings,
    command: &crate::config::EmailTemplatesCommand,
) -> Result<String, AdminCommandError> {
    use crate::config::EmailTemplatesCommand;
    use flexauth_domain::mail::{EmailKind, Letter};
    use flexauth_mail::EmailTemplates;
    let write_error = |path: &std::path::Path, error: std::io::Error| {
        AdminCommandError::Failed(format!("cannot write {}: {error}", path.display()))
    };
    match command {
        EmailTemplatesCommand::Export { dir } => {
            std::fs::create_dir_all(dir).map_err(|error| write_error(dir, error))?;
            let (mut written, mut kept) = (Vec::new(), Vec::new());
            for (name, contents) in EmailTemplates::builtin_files() {
                let path = dir.join(name);
                // An operator's edited file is never overwritten.
                match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                    Ok(mut file) => {
                        std::io::Write::write_all(&mut file, contents.as_bytes())
                            .map_err(|error| write_error(&path, error))?;
                        written.push(name);
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => kept.push(name),
                    Err(error) => return Err(write_error(&path, error)),
                }
            }
            json(&serde_json::json!({ "dir": dir.display().to_string(), "written": written, "kept": kept }))
        }
        EmailTemplatesCommand::Check => {
            let overridden = match &settings.email_templates {
                Some(directory) => {
                    EmailTemplates::with_overrides(directory).map_err(StartupError::from)?.overridden().to_vec()
                }
                None => Vec::new(),
            };
            json(&serde_json::json!({
                "dir": settings.email_templates.as_ref().map(|dir| dir.display().to_string()),
                "overridden": overridden,
                "valid": true,
            }))
        }
        EmailTemplatesCommand::Preview { kind } => {
            let kind = EmailKind::from_stored(kind.trim()).ok_or_else(|| {
                let known: Vec<&str> = EmailKind::ALL.iter().map(EmailKind::as_str).collect();
                AdminCommandError::Failed(format!(
                    "`{kind}` is not a kind of email; the kinds are {}",
                    known.join(", ")
                ))
            })?;
            let letters = startup::letters(settings)?;
            let to =
                EmailAddress::parse("ann@example.com").map_err(|error| AdminCommandError::Failed(error.to_string()))?;
            let email = letters.email(uuid::Uuid::nil(), to, &Letter::example(kind, letters.site()));
            json(&serde_json::json!({
                "kind": kind.as_str(),
                "subject": email.subject(),
                "text": email.text_body(),
                "html": email.html_body(),
            }))
        }
    }
}

#[derive(Serialize)]
struct KeyView {
    kid: String,
    /// `standby` (published, signs from `activates_at`), `signing`, `verifying` (superseded or
    /// retired, still in the JWKS), `refresh_only` (retired, out of the JWKS, still verifies
    /// refresh tokens), `expired` (nothing it signed is valid any more) or `revoked` (trusted
    /// for nothing since `revoked_at`).
    state: &'static str,
    activates_at: String,
    retired_at: Option<String>,
    revoked_at: Option<String>,
    published_until: Option<String>,
    verifies_until: Option<String>,
    sealed: bool,
}

/// Runs a `flexauth keys` command and returns what to print.
///
/// # Errors
/// An [`AdminCommandError`] naming what failed.
pub async fn run_keys(settings: &Settings, command: &crate::config::KeysCommand) -> Result<String, AdminCommandError> {
    use crate::config::{KeysCommand, SigningKeySource};
    if let SigningKeySource::File(path) = &settings.signing_key {
        return Err(AdminCommandError::Failed(format!(
            "the signing keys come from files (FLEXAUTH_SIGNING_KEY_FILE={}), not the database: rotate them with \
                the file runbook of docs/operations.md",
            path.display()
        )));
    }
    let store = startup::open_for_command(settings).await?;
    let kek = settings.key_encryption_key.as_ref();
    let plan = startup::ring_plan(settings);
    let now = time::OffsetDateTime::now_utc();
    match command {
        KeysCommand::List => {
            let sealed: std::collections::HashMap<String, bool> = store
                .signing_keys()
                .await
                .map_err(StartupError::from)?
                .into_iter()
                .map(|key| (key.slot, flexauth_jwt::is_sealed(&key.private_key)))
                .collect();
            let (keys, _) = startup::stored_keys(&store, kek, startup::KeyLoad::Command).await?;
            let signer = plan.signer_at(&keys, now).map(|key| key.slot.clone());
            let views: Vec<KeyView> = keys
                .iter()
                .map(|key| {
                    let state = match (plan.published_until(key), plan.verifies_until(key)) {
                        _ if key.revoked_at.is_some() => "revoked",
                        _ if signer.as_deref() == Some(key.slot.as_str()) => "signing",
                        (None, _) if plan.activation(key) > now => "standby",
                        (None, _) => "verifying",
                        (Some(until), _) if now < until => "verifying",
                        (_, Some(until)) if now < until => "refresh_only",
                        _ => "expired",
                    };
                    KeyView {
                        kid: key.key.kid().to_owned(),
                        state,
                        activates_at: instant(plan.activation(key)),
                        retired_at: key.retired_at.map(instant),
                        revoked_at: key.revoked_at.map(instant),
                        published_until: plan.published_until(key).map(instant),
                        verifies_until: plan.verifies_until(key).map(instant),
                        sealed: sealed.get(&key.slot).copied().unwrap_or(false),
                    }
                })
                .collect();
            json(&views)
        }
        KeysCommand::Rotate { delay } => {
            let delay = match delay {
                Some(delay) => delay.0,
                None => settings.jwks_max_age * 2,
            };
            if delay <= settings.jwks_max_age {
                return Err(AdminCommandError::Failed(format!(
                    "the delay ({}s) must be longer than the JWKS cache lifetime (FLEXAUTH_JWKS_MAX_AGE, {}s), or \
                        resource servers would meet tokens of a key they do not have yet",
                    delay.whole_seconds(),
                    settings.jwks_max_age.whole_seconds()
                )));
            }
            // Refuses to add a key the instances could not open.
            let (keys, _) = startup::stored_keys(&store, kek, startup::KeyLoad::Command).await?;
            // With no key stored, no server ever started on this database (the first start
            // stores one), so no JWKS cache can miss the new key: it signs at once, as the
            // key of a first start does, and a server started next signs with it.
            let (activates_at, state) = if keys.is_empty() { (now, "signing") } else { (now + delay, "standby") };
            let slot = add_key(&store, kek, now, activates_at).await?;
            tracing::info!(target: "flexauth::audit", event = "signing_key_rotated", kid = %slot, actor = "operator", "signing key added");
            json(&serde_json::json!({ "kid": slot, "state": state, "activates_at": instant(activates_at) }))
        }
        KeysCommand::Retire { kid } => {
            let (keys, _) = startup::stored_keys(&store, kek, startup::KeyLoad::Command).await?;
            let key = keys
                .iter()
                .find(|key| key.key.kid() == kid.trim())
                .ok_or_else(|| AdminCommandError::Failed(format!("no stored key has the id {kid}")))?;
            if plan.signer_at(&keys, now).is_some_and(|signer| signer.slot == key.slot) {
                let without: Vec<_> = keys.iter().filter(|other| other.slot != key.slot).cloned().collect();
                if plan.signer_at(&without, now).is_none() {
                    // A rotation may be under way already: then the remedy is to wait for it.
                    return Err(AdminCommandError::Failed(match plan.next_signer(&without, now) {
                        Some((successor, at)) => format!(
                            "{kid} signs now; key {} takes over at {}: retire {kid} after then",
                            successor.key.kid(),
                            instant(at)
                        ),
                        None => format!(
                            "{kid} signs now and no other key has taken over: run `flexauth keys rotate`, and retire \
                                {kid} once the new key signs"
                        ),
                    }));
                }
            }
            if !store.retire_signing_key(&key.slot, now).await.map_err(StartupError::from)? {
                return Err(AdminCommandError::Failed(format!("{kid} is retired already")));
            }
            let retired = flexauth_jwt::RingKey { retired_at: Some(now), ..key.clone() };
            tracing::info!(target: "flexauth::audit", event = "signing_key_retired", kid = %kid, actor = "operator", "signing key retired");
            json(&serde_json::json!({
                "kid": kid,
                "retired_at": instant(now),
                "published_until": plan.published_until(&retired).map(instant),
                "verifies_until": plan.verifies_until(&retired).map(instant),
            }))
        }
        KeysCommand::Revoke { kid } => {
            let (keys, _) = startup::stored_keys(&store, kek, startup::KeyLoad::Command).await?;
            let key = keys
                .iter()
                .find(|key| key.key.kid() == kid.trim())
                .ok_or_else(|| AdminCommandError::Failed(format!("no stored key has the id {kid}")))?;
            if key.revoked_at.is_some() {
                return Err(AdminCommandError::Failed(format!("{kid} is revoked already")));
            }
            // The instances must keep a key to sign with: when no other key can, a new one
            // signs at once. Resource servers meet its kid before their cached JWKS has it, and
            // fetch the JWKS again; that is the price of an emergency.
            let without: Vec<_> = keys.iter().filter(|other| other.slot != key.slot).cloned().collect();
            let replaced_by = match plan.signer_at(&without, now) {
                Some(_) => None,
                None => Some(add_key(&store, kek, now, now).await?),
            };
            if !store.revoke_signing_key(&key.slot, now).await.map_err(StartupError::from)? {
                return Err(AdminCommandError::Failed(format!("{kid} is revoked already")));
            }
            tracing::warn!(target: "flexauth::audit", event = "signing_key_revoked", kid = %kid, replaced_by = replaced_by.as_deref().unwrap_or("-"), actor = "operator", "signing key revoked");
            json(&serde_json::json!({ "kid": kid, "revoked_at": instant(now), "replaced_by": replaced_by }))
        }
        KeysCommand::Seal => {
            let Some(kek) = kek else {
                return Err(AdminCommandError::Failed(
                    "FLEXAUTH_KEY_ENCRYPTION_KEY is not set: there is nothing to seal the keys with".to_owned(),
                ));
            };
            let mut sealed = Vec::new();
            for stored in store.signing_keys().await.map_err(StartupError::from)? {
                if flexauth_jwt::is_sealed(&stored.private_key) {
                    continue;
                }
                let key = flexauth_jwt::SigningKeyPair::from_pem(&stored.private_key).map_err(|source| {
                    StartupError::KeyFile { path: format!("the database (slot {})", stored.slot), source }
                })?;
                let replacement = kek.seal(&stored.slot, &stored.private_key).map_err(StartupError::from)?;
                if store
                    .reseal_signing_key(&stored.slot, stored.private_key.clone(), replacement)
                    .await
                    .map_err(StartupError::from)?
                {
                    tracing::info!(target: "flexauth::audit", event = "signing_key_sealed", kid = %key.kid(), actor = "operator", "stored signing key sealed");
                    sealed.push(key.kid().to_owned());
                }
            }
            json(&serde_json::json!({ "sealed": sealed }))
        }
    }
}

/// Stores a new signing key, sealed when a key-encryption key is set, that signs from
/// `activates_at`; returns its id.
async fn add_key(
    store: &flexauth_store::Store,
    kek: Option<&flexauth_jwt::KeyEncryptionKey>,
    now: time::OffsetDateTime,
    activates_at: time::OffsetDateTime,
) -> Result<String, AdminCommandError> {
    let pem = flexauth_jwt::SigningKeyPair::generate_pem().map_err(StartupError::from)?;
    let key = flexauth_jwt::SigningKeyPair::from_pem(&pem).map_err(StartupError::from)?;
    let slot = key.kid().to_owned();
    let stored = match kek {
        Some(kek) => kek.seal(&slot, &pem).map_err(StartupError::from)?,
        None => {
            tracing::warn!("FLEXAUTH_KEY_ENCRYPTION_KEY is not set: the new private key is stored in the clear");
            pem
        }
    };
    store.add_signing_key(&slot, stored, now, activates_at).await.map_err(StartupError::from)?;
    Ok(slot)
}

#[derive(Serialize)]
struct EndpointView {
    id: String,
    url: String,
    /// The event types it receives; `["*"]` for all.
    events: Vec<&'static str>,
    /// `active`, `failing` (the last deliveries failed) or `disabled` (failed for too long).
    state: &'static str,
    created_at: String,
    failing_since: Option<String>,
    disabled_at: Option<String>,
    /// Until when the secret it replaced still signs beside the current one.
    previous_secret_until: Option<String>,
    /// Only when it was just made: shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl EndpointView {
    fn of(
        endpoint: &flexauth_domain::webhook::Endpoint,
        secret: Option<&flexauth_domain::webhook::SigningSecret>,
    ) -> Self {
        let state = match (endpoint.disabled_at, endpoint.failing_since) {
            (Some(_), _) => "disabled",
            (None, Some(_)) => "failing",
            (None, None) => "active",
        };
        Self {
            id: endpoint.id.to_string(),
            url: endpoint.url.clone(),
            events: endpoint.filter.names(),
            state,
            created_at: instant(endpoint.created_at),
            failing_since: endpoint.failing_since.map(instant),
            disabled_at: endpoint.disabled_at.map(instant),
            previous_secret_until: endpoint.previous_secret_until.map(instant),
            secret: secret.map(|secret| secret.expose().to_owned()),
        }
    }
}

/// Runs a `flexauth webhooks` command and returns what to print.
///
/// # Errors
/// An [`AdminCommandError`] naming what failed: a URL the destination policy refuses, an
/// unknown event type or endpoint.
pub async fn run_webhooks(
    settings: &Settings,
    command: &crate::config::WebhooksCommand,
) -> Result<String, AdminCommandError> {
    use crate::config::WebhooksCommand;
    use flexauth_domain::webhook::{EndpointId, EventFilter, WebhookAdmin, WebhookAdminError, DEFAULT_SECRET_OVERLAP};
    let store = Arc::new(startup::open_for_command(settings).await?);
    let transport = Arc::new(
        flexauth_webhooks::HttpWebhookTransport::new(settings.webhook_destinations, settings.webhook_timeout)
            .map_err(AdminCommandError::Failed)?,
    );
    let sealer = Arc::new(flexauth_jwt::SecretSealing::new(settings.key_encryption_key.clone()));
    let admin = WebhookAdmin::new(store, transport, sealer, Arc::new(SystemClock), Arc::new(OsRandom));
    let failed = |error: WebhookAdminError| match error {
        WebhookAdminError::Unexpected(cause) => AdminCommandError::Failed(crate::error::error_chain(&cause)),
        other => AdminCommandError::Failed(other.to_string()),
    };
    let endpoint_id = |text: &str| {
        EndpointId::parse(text)
            .ok_or_else(|| AdminCommandError::Failed(format!("`{text}` is not a webhook endpoint id (a UUID)")))
    };
    match command {
        WebhooksCommand::Add { url, events } => {
            let filter = EventFilter::parse(events).map_err(|error| AdminCommandError::Failed(error.to_string()))?;
            let added = admin.add(url, filter).await.map_err(|error| match error {
                WebhookAdminError::Destination(refused) => {
                    AdminCommandError::Failed(format!("`{url}` cannot receive webhooks: {refused}"))
                }
                other => failed(other),
            })?;
            tracing::info!(target: "flexauth::audit", event = "webhook_endpoint_added", endpoint_id = %added.endpoint.id, actor = "operator", "webhook endpoint added");
            json(&EndpointView::of(&added.endpoint, Some(&added.secret)))
        }
        WebhooksCommand::List => {
            let endpoints = admin.list().await.map_err(failed)?;
            json(&endpoints.iter().map(|endpoint| EndpointView::of(endpoint, None)).collect::<Vec<_>>())
        }
        WebhooksCommand::Remove { id } => {
            let id = endpoint_id(id)?;
            admin.remove(id).await.map_err(failed)?;
            tracing::info!(target: "flexauth::audit", event = "webhook_endpoint_removed", endpoint_id = %id, actor = "operator", "webhook endpoint removed");
            json(&serde_json::json!({ "id": id.to_string(), "done": "removed" }))
        }
        WebhooksCommand::RotateSecret { id, overlap } => {
            let id = endpoint_id(id)?;
            let overlap = overlap.as_ref().map_or(DEFAULT_SECRET_OVERLAP, |overlap| overlap.0);
            let secret = admin.rotate_secret(id, overlap).await.map_err(failed)?;
            let until = time::OffsetDateTime::now_utc() + overlap;
            tracing::info!(target: "flexauth::audit", event = "webhook_secret_rotated", endpoint_id = %id, actor = "operator", "webhook signing secret rotated");
            json(&serde_json::json!({
                "id": id.to_string(),
                "secret": secret.expose(),
                "previous_secret_until": instant(until),
            }))
        }
        WebhooksCommand::Enable { id } => {
            let id = endpoint_id(id)?;
            admin.enable(id).await.map_err(failed)?;
            tracing::info!(target: "flexauth::audit", event = "webhook_endpoint_enabled", endpoint_id = %id, actor = "operator", "webhook endpoint enabled");
            json(&serde_json::json!({ "id": id.to_string(), "done": "enabled" }))
        }
        WebhooksCommand::Deliveries { id, limit } => {
            let id = endpoint_id(id)?;
            let attempts = admin.attempts(id, (*limit).clamp(1, 1000)).await.map_err(failed)?;
            json(
                &attempts
                    .iter()
                    .map(|attempt| {
                        serde_json::json!({
                            "webhook_id": attempt.event_id.to_string(),
                            "type": attempt.event_type.as_str(),
                            "attempt": attempt.attempt,
                            "at": instant(attempt.at),
                            "duration_ms": attempt.duration.whole_milliseconds(),
                            "status": attempt.status,
                            "error": attempt.error,
                            "outcome": attempt.result.as_str(),
                        })
                    })
                    .collect::<Vec<_>>(),
            )
        }
    }
}
