use async_trait::async_trait;
use diesel::prelude::*;
use flexauth_domain::account::AccountId;
use flexauth_domain::audit::{AuditCursor, AuditEvent, AuditLog};
use flexauth_domain::InfraError;

use crate::rows::{millis, AuditEventRow};
use crate::schema::audit_events;
use crate::webhooks::Recorded;
use crate::{Store, StoreError};

#[async_trait]
impl AuditLog for Store {
    async fn record(&self, event: &AuditEvent) -> Result<(), InfraError> {
        let row = Recorded::from(event);
        self.run(move |c| c.transaction(|c| row.insert(c)).map_err(StoreError::from)).await?;
        Ok(())
    }

    async fn list(
        &self,
        account_id: AccountId,
        after: Option<AuditCursor>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, InfraError> {
        let account_id = account_id.to_string();
        let after = after.map(|cursor| (millis(cursor.at), cursor.id.to_string()));
        let rows = self
            .run(move |c| {
                Ok({
                    let mut query = audit_events::table.filter(audit_events::account_id.eq(&account_id)).into_boxed();
                    if let Some((at, id)) = &after {
                        // Strictly older in the (at, id) order, so a page never repeats or skips
                        // entries of the same millisecond.
                        query = query.filter(
                            audit_events::at.lt(*at).or(audit_events::at.eq(*at).and(audit_events::id.lt(id.clone()))),
                        );
                    }
                    query
                        .order((audit_events::at.desc(), audit_events::id.desc()))
                        .limit(i64::from(limit))
                        .select(AuditEventRow::as_select())
                        .load(c)
                }?)
            })
            .await?;
        Ok(rows.into_iter().map(AuditEvent::try_from).collect::<Result<_, _>>()?)
    }
}
