use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::upsert::excluded;
use flexauth_domain::account::AccountId;
use flexauth_domain::usage::{UsageCount, UsageRepository};
use flexauth_domain::InfraError;
use time::Date;

use crate::schema::{accounts, usage_counters};
use crate::{per_backend, Store, StoreError};

#[async_trait]
impl UsageRepository for Store {
    async fn add_requests(&self, batch: &[UsageCount]) -> Result<Vec<UsageCount>, InfraError> {
        let increments: Vec<(String, String, i64)> = batch
            .iter()
            .map(|count| {
                (count.account_id.to_string(), count.day.to_string(), i64::try_from(count.requests).unwrap_or(i64::MAX))
            })
            .collect();
        let totals = self
            .run(move |connection| {
                per_backend!(connection, |c| c.transaction(|c| {
                    let ids: Vec<&String> = increments.iter().map(|(id, _, _)| id).collect();
                    // An account deleted since its requests were counted takes its counts with
                    // it; left in the batch, its foreign key would fail every other row too.
                    let existing: HashSet<String> = accounts::table
                        .filter(accounts::id.eq_any(&ids))
                        .select(accounts::id)
                        .load::<String>(c)?
                        .into_iter()
                        .collect();
                    let rows: Vec<_> = increments
                        .iter()
                        .filter(|(id, _, _)| existing.contains(id))
                        .map(|(id, day, requests)| {
                            (
                                usage_counters::account_id.eq(id),
                                usage_counters::day.eq(day),
                                usage_counters::requests.eq(requests),
                            )
                        })
                        .collect();
                    if rows.is_empty() {
                        return Ok(Vec::new());
                    }
                    diesel::insert_into(usage_counters::table)
                        .values(&rows)
                        .on_conflict((usage_counters::account_id, usage_counters::day))
                        .do_update()
                        .set(usage_counters::requests.eq(usage_counters::requests + excluded(usage_counters::requests)))
                        .execute(c)?;
                    let days: Vec<&String> = increments.iter().map(|(_, day, _)| day).collect();
                    let written: HashSet<(&String, &String)> = increments
                        .iter()
                        .filter(|(id, _, _)| existing.contains(id))
                        .map(|(id, day, _)| (id, day))
                        .collect();
                    let stored = usage_counters::table
                        .filter(usage_counters::account_id.eq_any(&ids))
                        .filter(usage_counters::day.eq_any(&days))
                        .select((usage_counters::account_id, usage_counters::day, usage_counters::requests))
                        .load::<(String, String, i64)>(c)?;
                    Ok(stored.into_iter().filter(|(id, day, _)| written.contains(&(id, day))).collect::<Vec<_>>())
                }))
                .map_err(|error: DieselError| StoreError::from(error))
            })
            .await?;
        // The stored keys are the texts of the batch's own ids and days.
        let keys: HashMap<(String, String), (AccountId, Date)> = batch
            .iter()
            .map(|count| ((count.account_id.to_string(), count.day.to_string()), (count.account_id, count.day)))
            .collect();
        let mut counted = Vec::with_capacity(totals.len());
        for (id, day, requests) in totals {
            if let Some(&(account_id, day)) = keys.get(&(id, day)) {
                counted.push(UsageCount { account_id, day, requests: crate::rows::stored_count(requests)? });
            }
        }
        Ok(counted)
    }

    async fn requests_on(&self, account_id: AccountId, day: Date) -> Result<Option<u64>, InfraError> {
        let (id, day) = (account_id.to_string(), day.to_string());
        let count = self
            .run(move |connection| {
                let exists =
                    accounts::table.find(&id).select(accounts::id).first::<String>(connection).optional()?.is_some();
                if !exists {
                    return Ok(None);
                }
                // No row for the day is a day without requests.
                let stored = usage_counters::table
                    .find((&id, &day))
                    .select(usage_counters::requests)
                    .first::<i64>(connection)
                    .optional()?;
                Ok(Some(stored.unwrap_or(0)))
            })
            .await?;
        Ok(count.map(crate::rows::stored_count::<u64>).transpose()?)
    }
}
