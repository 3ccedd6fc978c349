use async_trait::async_trait;
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use flexauth_domain::account::AccountId;
use flexauth_domain::usage::UsageRepository;
use flexauth_domain::InfraError;
use time::Date;

use crate::schema::usage_counters;
use crate::{with_connection, Store, StoreError};

#[async_trait]
impl UsageRepository for Store {
    async fn record_request(&self, account_id: AccountId, day: Date) -> Result<u64, InfraError> {
        let account_id = account_id.to_string();
        let day = day.to_string();
        let count = self
            .run(move |connection| {
                with_connection!(connection, |c| c.transaction(|c| {
                    diesel::insert_into(usage_counters::table)
                        .values((usage_counters::account_id.eq(&account_id), usage_counters::day.eq(&day), usage_counters::requests.eq(1_i64)))
                        .on_conflict((usage_counters::account_id, usage_counters::day))
                        .do_update()
                        .set(usage_counters::requests.eq(usage_counters::requests + 1))
                        .execute(c)?;
                    usage_counters::table.find((&account_id, &day)).select(usage_counters::requests).first::<i64>(c)
                }))
                .map_err(|error: DieselError| StoreError::from(error))
            })
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
