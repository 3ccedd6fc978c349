use time::{Duration, OffsetDateTime};

use std::collections::BTreeSet;

use crate::newtypes::{AccountId, ApiKeyId, Grants, Scope};
use crate::principal::{AuthMethod, Principal};

/// A label its owner gives a key ("billing backend", "CI").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyName(String);

/// Why a key name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyNameError {
    #[error("the key name is empty")]
    Empty,
    #[error("the key name is longer than 100 characters")]
    TooLong,
    #[error("the key name contains control characters")]
    ControlCharacters,
}

impl ApiKeyName {
    /// Trims and validates a name.
    ///
    /// # Errors
    /// [`ApiKeyNameError`].
    pub fn parse(text: &str) -> Result<Self, ApiKeyNameError> {
        // The length counts the name as sent, as the OpenAPI document's `maxLength` does.
        if text.chars().count() > 100 {
            return Err(ApiKeyNameError::TooLong);
        }
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(ApiKeyNameError::Empty);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ApiKeyNameError::ControlCharacters);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// Rebuilds a name read back from trusted storage.
    pub fn from_storage(text: String) -> Self {
        Self(text)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The columns of a stored API key, as storage hands them back. Build an [`ApiKey`] from it
/// with [`ApiKey::from_storage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    pub id: ApiKeyId,
    pub account_id: AccountId,
    pub name: ApiKeyName,
    /// The first characters of the key, to tell keys apart in a list.
    pub prefix: String,
    pub created_at: OffsetDateTime,
    /// When the key last authenticated a request, to a minute's precision.
    pub last_used_at: Option<OffsetDateTime>,
    /// No expiry unless one was chosen at creation.
    pub expires_at: Option<OffsetDateTime>,
    /// What it may do at the operator's API, out of the declared vocabulary; none unless some
    /// were chosen at creation.
    pub scopes: BTreeSet<Scope>,
}

/// An API key: everything but the secret, which only exists as its digest. The rules about
/// its time (expiry, when its use is recorded) are its methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey(StoredApiKey);

/// `last_used_at` is written at most once per this interval per key, so a busy key does not
/// turn every request into a write.
pub const LAST_USED_RESOLUTION: Duration = Duration::minutes(1);

impl ApiKey {
    /// A key created at `now`, never used yet.
    pub fn issue(
        id: ApiKeyId,
        account_id: AccountId,
        name: ApiKeyName,
        prefix: String,
        now: OffsetDateTime,
        expires_at: Option<OffsetDateTime>,
        scopes: BTreeSet<Scope>,
    ) -> Self {
        Self(StoredApiKey { id, account_id, name, prefix, created_at: now, last_used_at: None, expires_at, scopes })
    }

    /// Rebuilds a key read back from storage.
    pub fn from_storage(stored: StoredApiKey) -> Self {
        Self(stored)
    }

    /// The columns to store.
    pub fn stored(&self) -> &StoredApiKey {
        &self.0
    }

    pub fn id(&self) -> ApiKeyId {
        self.0.id
    }

    pub fn account_id(&self) -> AccountId {
        self.0.account_id
    }

    pub fn name(&self) -> &ApiKeyName {
        &self.0.name
    }

    /// The first characters of the key, to tell keys apart in a list.
    pub fn prefix(&self) -> &str {
        &self.0.prefix
    }

    pub fn created_at(&self) -> OffsetDateTime {
        self.0.created_at
    }

    /// When the key last authenticated a request, to [`LAST_USED_RESOLUTION`].
    pub fn last_used_at(&self) -> Option<OffsetDateTime> {
        self.0.last_used_at
    }

    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.0.expires_at
    }

    /// The scopes the key carries.
    pub fn scopes(&self) -> &BTreeSet<Scope> {
        &self.0.scopes
    }

    /// The caller a request made with the key is.
    pub fn principal(&self) -> Principal {
        Principal { account_id: self.0.account_id, method: AuthMethod::ApiKey(self.0.id), grants: self.grants() }
    }

    /// What a request made with the key may do: its scopes, and no more.
    pub fn grants(&self) -> Grants {
        Grants::Only(self.0.scopes.clone())
    }

    /// Whether the key no longer authenticates at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.0.expires_at.is_some_and(|expires_at| now >= expires_at)
    }

    /// Records a use at `now`, as storage did after [`ApiKey::needs_touch`].
    pub fn record_use(&mut self, now: OffsetDateTime) {
        self.0.last_used_at = Some(now);
    }

    /// Whether a use at `now` must be recorded: never recorded, or last recorded at least
    /// [`LAST_USED_RESOLUTION`] ago.
    pub fn needs_touch(&self, now: OffsetDateTime) -> bool {
        self.0.last_used_at.is_none_or(|last| now - last >= LAST_USED_RESOLUTION)
    }
}
