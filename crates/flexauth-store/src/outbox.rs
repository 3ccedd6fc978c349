use async_trait::async_trait;
use diesel::prelude::*;
use flexauth_domain::mail::{LeaseId, Outbox, OutboxEntry, OutgoingEmail};
use flexauth_domain::InfraError;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::lease::claim_each;
use crate::rows::{millis, NewOutboxRow, OutboxRow};
use crate::schema::outbox;
use crate::Store;

/// Keeps what operators see of a delivery error short; SMTP replies can be long.
fn truncate(error: &str) -> String {
    error.chars().take(500).collect()
}

#[async_trait]
impl Outbox for Store {
    async fn enqueue(&self, email: &OutgoingEmail, now: OffsetDateTime) -> Result<(), InfraError> {
        let row = NewOutboxRow::new(email, now);
        self.run(move |c| Ok(diesel::insert_into(outbox::table).values(&row).execute(c)?)).await?;
        Ok(())
    }

    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: LeaseId,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, InfraError> {
        let now = millis(now);
        let lease_until = millis(lease_until);
        let lease_text = lease.as_uuid().to_string();
        let rows = self
            .run(move |c| {
                {
                    let candidates: Vec<String> = outbox::table
                        .filter(outbox::sent_at.is_null())
                        .filter(outbox::failed_at.is_null())
                        .filter(outbox::next_attempt_at.le(now))
                        .filter(outbox::lease_until.is_null().or(outbox::lease_until.le(now)))
                        .order(outbox::next_attempt_at.asc())
                        .limit(i64::from(limit))
                        .select(outbox::id)
                        .load(c)?;
                    claim_each(
                        c,
                        candidates,
                        |c, id| {
                            // It checks again that the entry is due: another worker may have
                            // tried it and scheduled a retry since the candidates were read.
                            Ok(diesel::update(
                                outbox::table
                                    .find(id)
                                    .filter(outbox::sent_at.is_null())
                                    .filter(outbox::failed_at.is_null())
                                    .filter(outbox::next_attempt_at.le(now))
                                    .filter(outbox::lease_until.is_null().or(outbox::lease_until.le(now))),
                            )
                            .set((outbox::lease_id.eq(&lease_text), outbox::lease_until.eq(lease_until)))
                            .execute(c)?)
                        },
                        |c, id| Ok(outbox::table.find(id).select(OutboxRow::as_select()).first(c)?),
                    )
                }
            })
            .await?;
        // A row this instance cannot read (a kind added by a newer version during a rolling
        // upgrade) must not hold up the others: it stays leased and another instance takes it
        // once the lease runs out.
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let id = row.id.clone();
                row.into_entry(lease)
                    .inspect_err(
                        |error| tracing::error!(outbox_id = %id, %error, "outbox entry skipped: it cannot be read"),
                    )
                    .ok()
            })
            .collect())
    }

    async fn mark_sent(&self, id: Uuid, lease: LeaseId, now: OffsetDateTime) -> Result<(), InfraError> {
        let (id, lease, now) = (id.to_string(), lease.as_uuid().to_string(), millis(now));
        self.run(move |c| {
            Ok(diesel::update(outbox::table.find(&id).filter(outbox::lease_id.eq(&lease)))
                .set((
                    outbox::sent_at.eq(now),
                    outbox::text_body.eq(None::<String>),
                    outbox::html_body.eq(None::<String>),
                    outbox::lease_until.eq(None::<i64>),
                ))
                .execute(c)?)
        })
        .await?;
        Ok(())
    }

    async fn schedule_retry(
        &self,
        id: Uuid,
        lease: LeaseId,
        next_attempt_at: OffsetDateTime,
        error: &str,
    ) -> Result<(), InfraError> {
        let (id, lease, next, error) =
            (id.to_string(), lease.as_uuid().to_string(), millis(next_attempt_at), truncate(error));
        self.run(move |c| {
            Ok(diesel::update(outbox::table.find(&id).filter(outbox::lease_id.eq(&lease)))
                .set((
                    outbox::attempts.eq(outbox::attempts + 1),
                    outbox::next_attempt_at.eq(next),
                    outbox::last_error.eq(&error),
                    outbox::lease_id.eq(None::<String>),
                    outbox::lease_until.eq(None::<i64>),
                ))
                .execute(c)?)
        })
        .await?;
        Ok(())
    }

    async fn mark_failed(&self, id: Uuid, lease: LeaseId, now: OffsetDateTime, error: &str) -> Result<(), InfraError> {
        let (id, lease, now, error) = (id.to_string(), lease.as_uuid().to_string(), millis(now), truncate(error));
        self.run(move |c| {
            Ok(diesel::update(outbox::table.find(&id).filter(outbox::lease_id.eq(&lease)))
                .set((
                    outbox::failed_at.eq(now),
                    outbox::attempts.eq(outbox::attempts + 1),
                    outbox::last_error.eq(&error),
                    outbox::text_body.eq(None::<String>),
                    outbox::html_body.eq(None::<String>),
                    outbox::lease_until.eq(None::<i64>),
                ))
                .execute(c)?)
        })
        .await?;
        Ok(())
    }

    async fn forget(&self, id: Uuid, lease: LeaseId) -> Result<(), InfraError> {
        let (id, lease) = (id.to_string(), lease.as_uuid().to_string());
        self.run(move |c| Ok(diesel::delete(outbox::table.find(&id).filter(outbox::lease_id.eq(&lease))).execute(c)?))
            .await?;
        Ok(())
    }
}
