use async_trait::async_trait;
use flexauth_domain::account::AccountId;
use flexauth_domain::audit::{AuditCursor, AuditEvent, AuditLog};
use flexauth_domain::InfraError;

use crate::MemoryStore;

#[async_trait]
impl AuditLog for MemoryStore {
    async fn record(&self, event: &AuditEvent) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        state.check_event_free(event)?;
        state.record(event);
        Ok(())
    }

    async fn list(
        &self,
        account_id: AccountId,
        after: Option<AuditCursor>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, InfraError> {
        let state = self.lock()?;
        // Strictly older in the (at, id) order, so a page never repeats or skips entries of the
        // same instant.
        let mut events: Vec<&AuditEvent> = state
            .audit_events
            .values()
            .filter(|event| {
                event.account_id == account_id
                    && after.is_none_or(|cursor| (event.at, event.id) < (cursor.at, cursor.id))
            })
            .collect();
        events.sort_by_key(|event| std::cmp::Reverse((event.at, event.id)));
        Ok(events.into_iter().take(limit as usize).cloned().collect())
    }
}
