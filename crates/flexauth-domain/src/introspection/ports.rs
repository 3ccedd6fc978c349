use async_trait::async_trait;

use super::{IntrospectionClient, IntrospectionClientId};
use crate::InfraError;

/// Storage of the resource servers that may introspect.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait IntrospectionClientRepository: Send + Sync {
    /// Stores a new client.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails (also for an id or digest already stored).
    async fn create(&self, client: &IntrospectionClient) -> Result<(), InfraError>;

    /// Every client, oldest first.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn list(&self) -> Result<Vec<IntrospectionClient>, InfraError>;

    /// Deletes client `id`; returns whether it existed.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn delete(&self, id: IntrospectionClientId) -> Result<bool, InfraError>;
}
