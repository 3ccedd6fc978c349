use async_trait::async_trait;
use flexauth_domain::introspection::{IntrospectionClient, IntrospectionClientId, IntrospectionClientRepository};
use flexauth_domain::InfraError;

use crate::{MemoryError, MemoryStore};

#[async_trait]
impl IntrospectionClientRepository for MemoryStore {
    async fn create(&self, client: &IntrospectionClient) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        // The primary key and the unique digest, as the table has them.
        let taken = state.introspection_clients.contains_key(&client.id)
            || state.introspection_clients.values().any(|stored| stored.secret_hash == client.secret_hash);
        if taken {
            return Err(MemoryError::Duplicate("introspection_clients").into());
        }
        state.introspection_clients.insert(client.id, client.clone());
        Ok(())
    }

    async fn list(&self) -> Result<Vec<IntrospectionClient>, InfraError> {
        let state = self.lock()?;
        let mut clients: Vec<IntrospectionClient> = state.introspection_clients.values().cloned().collect();
        clients.sort_by_key(|client| (client.created_at, client.id.as_uuid()));
        Ok(clients)
    }

    async fn delete(&self, id: IntrospectionClientId) -> Result<bool, InfraError> {
        Ok(self.lock()?.introspection_clients.remove(&id).is_some())
    }
}
