use async_trait::async_trait;
use flexauth_domain::mail::{LeaseId, Outbox, OutboxEntry, OutgoingEmail};
use flexauth_domain::InfraError;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::state::OutboxRow;
use crate::MemoryStore;

/// Keeps what operators see of a delivery error short, as the store does: SMTP replies can be
/// long.
fn truncate(error: &str) -> String {
    error.chars().take(500).collect()
}

/// The entry `id` when `lease` holds it.
fn held(rows: &mut std::collections::HashMap<Uuid, OutboxRow>, id: Uuid, lease: LeaseId) -> Option<&mut OutboxRow> {
    rows.get_mut(&id).filter(|row| row.lease_id == Some(lease))
}

#[async_trait]
impl Outbox for MemoryStore {
    async fn enqueue(&self, email: &OutgoingEmail, now: OffsetDateTime) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        state.check_outbox_free(email)?;
        state.queue(email, now);
        Ok(())
    }

    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: LeaseId,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, InfraError> {
        let mut state = self.lock()?;
        // Finding the claimable entries and leasing them happen under the one lock, so two
        // workers never hold the same entry while its lease runs.
        let mut due: Vec<(OffsetDateTime, u64, Uuid)> = state
            .outbox
            .iter()
            .filter(|(_, row)| row.claimable_at(now))
            .map(|(&id, row)| (row.next_attempt_at, row.sequence, id))
            .collect();
        due.sort_unstable();
        let mut claimed = Vec::new();
        for (_, _, id) in due.into_iter().take(limit as usize) {
            let Some(row) = state.outbox.get_mut(&id) else { continue };
            row.lease_id = Some(lease);
            row.lease_until = Some(lease_until);
            // A claimable entry always has its bodies; one without would stay leased and be
            // skipped, as the store skips a row it cannot read.
            if let (Some(text), Some(html)) = (&row.text_body, &row.html_body) {
                let email = OutgoingEmail::new(
                    id,
                    row.kind,
                    row.recipient.clone(),
                    row.subject.clone(),
                    text.clone(),
                    html.clone(),
                );
                claimed.push(OutboxEntry { email, attempts: row.attempts, lease });
            }
        }
        Ok(claimed)
    }

    async fn mark_sent(&self, id: Uuid, lease: LeaseId, now: OffsetDateTime) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        if let Some(row) = held(&mut state.outbox, id, lease) {
            row.sent_at = Some(now);
            row.text_body = None;
            row.html_body = None;
            // The lease id stays, so the same worker can still forget the entry.
            row.lease_until = None;
        }
        Ok(())
    }

    async fn schedule_retry(
        &self,
        id: Uuid,
        lease: LeaseId,
        next_attempt_at: OffsetDateTime,
        error: &str,
    ) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        if let Some(row) = held(&mut state.outbox, id, lease) {
            row.attempts = row.attempts.saturating_add(1);
            row.next_attempt_at = next_attempt_at;
            row.last_error = Some(truncate(error));
            row.lease_id = None;
            row.lease_until = None;
        }
        Ok(())
    }

    async fn mark_failed(&self, id: Uuid, lease: LeaseId, now: OffsetDateTime, error: &str) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        if let Some(row) = held(&mut state.outbox, id, lease) {
            row.failed_at = Some(now);
            row.attempts = row.attempts.saturating_add(1);
            row.last_error = Some(truncate(error));
            row.text_body = None;
            row.html_body = None;
            row.lease_until = None;
        }
        Ok(())
    }

    async fn forget(&self, id: Uuid, lease: LeaseId) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        if held(&mut state.outbox, id, lease).is_some() {
            state.outbox.remove(&id);
        }
        Ok(())
    }
}
