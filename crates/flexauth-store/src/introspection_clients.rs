use async_trait::async_trait;
use diesel::prelude::*;
use flexauth_domain::introspection::{IntrospectionClient, IntrospectionClientId, IntrospectionClientRepository};
use flexauth_domain::InfraError;

use crate::rows::IntrospectionClientRow;
use crate::schema::introspection_clients;
use crate::Store;

#[async_trait]
impl IntrospectionClientRepository for Store {
    async fn create(&self, client: &IntrospectionClient) -> Result<(), InfraError> {
        let row = IntrospectionClientRow::from(client);
        self.run(move |c| {
            diesel::insert_into(introspection_clients::table).values(&row).execute(c)?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<IntrospectionClient>, InfraError> {
        let rows = self
            .run(|c| {
                Ok(introspection_clients::table
                    .order((introspection_clients::created_at.asc(), introspection_clients::id.asc()))
                    .select(IntrospectionClientRow::as_select())
                    .load(c)?)
            })
            .await?;
        Ok(rows.into_iter().map(IntrospectionClient::try_from).collect::<Result<_, _>>()?)
    }

    async fn delete(&self, id: IntrospectionClientId) -> Result<bool, InfraError> {
        let id = id.to_string();
        let deleted = self.run(move |c| Ok(diesel::delete(introspection_clients::table.find(&id)).execute(c)?)).await?;
        Ok(deleted == 1)
    }
}
