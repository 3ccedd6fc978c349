use diesel::prelude::*;
use time::OffsetDateTime;

use crate::rows::millis;
use crate::schema::signing_keys;
use crate::{with_connection, Store, StoreError};

/// The one slot the generated development key lives in.
const GENERATED_SLOT: &str = "generated";

impl Store {
    /// The signing key shared by every instance on this database: the stored one if there is
    /// one, else `candidate_pem`, stored now. When several instances start at once, exactly
    /// one candidate is stored and all of them return it.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn shared_signing_key(&self, candidate_pem: String, now: OffsetDateTime) -> Result<String, StoreError> {
        let now = millis(now);
        self.run(move |connection| {
            Ok(with_connection!(connection, |c| {
                diesel::insert_into(signing_keys::table)
                    .values((signing_keys::slot.eq(GENERATED_SLOT), signing_keys::private_key_pem.eq(&candidate_pem), signing_keys::created_at.eq(now)))
                    .on_conflict_do_nothing()
                    .execute(c)?;
                signing_keys::table.find(GENERATED_SLOT).select(signing_keys::private_key_pem).first::<String>(c)
            })?)
        })
        .await
    }
}
