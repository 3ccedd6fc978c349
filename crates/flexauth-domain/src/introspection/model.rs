use std::fmt;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::secret::TokenHash;

/// The `client_id` of a resource server that may introspect: a UUID drawn at registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IntrospectionClientId(Uuid);

impl IntrospectionClientId {
    /// Wraps an id drawn by the domain or read back from trusted storage.
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// Parses a `client_id` as a client sent it.
    pub fn parse(text: &str) -> Option<Self> {
        Uuid::parse_str(text).ok().map(Self)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for IntrospectionClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The operator's label for a resource server ("billing API").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientName(String);

/// Why a client name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientNameError {
    #[error("the client name is empty")]
    Empty,
    #[error("the client name is longer than 100 characters")]
    TooLong,
    #[error("the client name contains control characters")]
    ControlCharacters,
}

impl ClientName {
    /// Trims and validates a name: 1 to 100 characters, no control characters.
    ///
    /// # Errors
    /// [`ClientNameError`].
    pub fn parse(text: &str) -> Result<Self, ClientNameError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(ClientNameError::Empty);
        }
        if trimmed.chars().count() > 100 {
            return Err(ClientNameError::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ClientNameError::ControlCharacters);
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

/// A resource server registered to introspect tokens. Its secret exists only as the digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionClient {
    /// Its `client_id`.
    pub id: IntrospectionClientId,
    /// The operator's label.
    pub name: ClientName,
    /// The SHA-256 of its secret.
    pub secret_hash: TokenHash,
    /// When it was registered.
    pub created_at: OffsetDateTime,
}
