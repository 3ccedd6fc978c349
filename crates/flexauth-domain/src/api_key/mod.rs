//! API keys: long-lived credentials for servers, pipelines and backend services.

mod model;
mod ports;
mod secret;
mod service;

pub use crate::newtypes::ApiKeyId;
pub use model::{ApiKey, ApiKeyName, ApiKeyNameError, StoredApiKey, LAST_USED_RESOLUTION};
pub use ports::ApiKeyRepository;
pub use secret::{ApiKeySecret, MalformedApiKey, API_KEY_PREFIX};
pub use service::{ApiKeyService, ApiKeySettings, CreateApiKeyError, ListApiKeysError, RevokeApiKeyError};

#[cfg(any(test, feature = "mocks"))]
pub use ports::MockApiKeyRepository;
