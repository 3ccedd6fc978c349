use async_trait::async_trait;
use diesel::prelude::*;
use flexauth_domain::account::{AccountRequest, AccountRequestQueue};
use flexauth_domain::mail::LeaseId;
use flexauth_domain::InfraError;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::lease::claim_each;
use crate::rows::{millis, AccountRequestRow};
use crate::schema::account_requests;
use crate::Store;

#[async_trait]
impl AccountRequestQueue for Store {
    async fn submit(&self, request: &AccountRequest) -> Result<(), InfraError> {
        let row = AccountRequestRow::from(request);
        self.run(move |c| Ok(diesel::insert_into(account_requests::table).values(&row).execute(c)?)).await?;
        Ok(())
    }

    async fn claim(
        &self,
        now: OffsetDateTime,
        lease: LeaseId,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<AccountRequest>, InfraError> {
        let now = millis(now);
        let lease_until = millis(lease_until);
        let lease_text = lease.as_uuid().to_string();
        let rows = self
            .run(move |c| {
                let candidates: Vec<String> = account_requests::table
                    .filter(account_requests::lease_until.is_null().or(account_requests::lease_until.le(now)))
                    .order((account_requests::requested_at.asc(), account_requests::id.asc()))
                    .limit(i64::from(limit))
                    .select(account_requests::id)
                    .load(c)?;
                claim_each(
                    c,
                    candidates,
                    |c, id| {
                        let free = account_requests::lease_until.is_null().or(account_requests::lease_until.le(now));
                        Ok(diesel::update(account_requests::table.find(id).filter(free))
                            .set((
                                account_requests::lease_id.eq(&lease_text),
                                account_requests::lease_until.eq(lease_until),
                            ))
                            .execute(c)?)
                    },
                    |c, id| Ok(account_requests::table.find(id).select(AccountRequestRow::as_select()).first(c)?),
                )
            })
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let id = row.id.clone();
                AccountRequest::try_from(row)
                    .inspect_err(
                        |error| tracing::error!(request_id = %id, %error, "account request skipped: it cannot be read"),
                    )
                    .ok()
            })
            .collect())
    }

    async fn complete(&self, id: Uuid, lease: LeaseId) -> Result<(), InfraError> {
        let (id, lease) = (id.to_string(), lease.as_uuid().to_string());
        self.run(move |c| {
            Ok(diesel::delete(account_requests::table.find(&id).filter(account_requests::lease_id.eq(&lease)))
                .execute(c)?)
        })
        .await?;
        Ok(())
    }
}
