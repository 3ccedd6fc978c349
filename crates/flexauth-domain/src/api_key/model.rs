use crate::newtypes::ApiKeyId;

use time::OffsetDateTime;

use crate::newtypes::AccountId;

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

/// An API key as stored: everything but the secret, which only exists as its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
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
}

impl ApiKey {
    /// Whether the key still authenticates at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|expires_at| now >= expires_at)
    }
}
