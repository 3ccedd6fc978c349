use diesel::prelude::*;
use time::OffsetDateTime;

use crate::rows::{instant, millis};
use crate::schema::signing_keys;
use crate::{per_backend, Store, StoreError};

/// The one slot the generated development key lives in.
pub const GENERATED_SLOT: &str = "generated";

/// A signing key as stored: its private key is a PEM, or sealed with the key-encryption key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    /// Where it is stored: `generated` for the first key, the key id for rotated ones.
    pub slot: String,
    /// The PEM or the sealed key; a secret either way.
    pub private_key: String,
    /// When it was stored.
    pub created_at: OffsetDateTime,
    /// When it starts signing.
    pub activates_at: OffsetDateTime,
    /// When it was retired, if it was.
    pub retired_at: Option<OffsetDateTime>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("slot", &self.slot)
            .field("activates_at", &self.activates_at)
            .field("retired_at", &self.retired_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Stores `candidate` as the first signing key of this database if it holds none yet, and
    /// returns whether it did. When several instances start at once, exactly one candidate is
    /// stored. A database that holds keys gets none: a key added later would sign at once,
    /// before any resource server has it (keys are added by `flexauth keys rotate`).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn store_first_signing_key(&self, candidate: String, now: OffsetDateTime) -> Result<bool, StoreError> {
        let now = millis(now);
        self.run(move |c| {
            Ok(per_backend!(c, |c| {
                if signing_keys::table.count().get_result::<i64>(c)? > 0 {
                    return Ok(false);
                }
                let stored = diesel::insert_into(signing_keys::table)
                    .values((
                        signing_keys::slot.eq(GENERATED_SLOT),
                        signing_keys::private_key_pem.eq(&candidate),
                        signing_keys::created_at.eq(now),
                    ))
                    .on_conflict_do_nothing()
                    .execute(c)?;
                Ok::<_, diesel::result::Error>(stored == 1)
            })?)
        })
        .await
    }

    /// Every stored signing key, oldest first.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails or a row is damaged.
    pub async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let rows = self
            .run(|c| {
                Ok(signing_keys::table
                    .order(signing_keys::created_at.asc())
                    .select((
                        signing_keys::slot,
                        signing_keys::private_key_pem,
                        signing_keys::created_at,
                        signing_keys::activates_at,
                        signing_keys::retired_at,
                        signing_keys::revoked_at,
                    ))
                    .load::<(String, String, i64, Option<i64>, Option<i64>, Option<i64>)>(c)?)
            })
            .await?;
        rows.into_iter()
            .map(|(slot, private_key, created_at, activates_at, retired_at, revoked_at)| {
                Ok(StoredSigningKey {
                    slot,
                    private_key,
                    created_at: instant(created_at)?,
                    activates_at: instant(activates_at.unwrap_or(created_at))?,
                    retired_at: retired_at.map(instant).transpose()?,
                    revoked_at: revoked_at.map(instant).transpose()?,
                })
            })
            .collect()
    }

    /// Stores a new key in `slot`, signing from `activates_at`.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails (or the slot is taken).
    pub async fn add_signing_key(
        &self,
        slot: &str,
        private_key: String,
        now: OffsetDateTime,
        activates_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (slot, now, activates_at) = (slot.to_owned(), millis(now), millis(activates_at));
        self.run(move |c| {
            Ok(diesel::insert_into(signing_keys::table)
                .values((
                    signing_keys::slot.eq(&slot),
                    signing_keys::private_key_pem.eq(&private_key),
                    signing_keys::created_at.eq(now),
                    signing_keys::activates_at.eq(activates_at),
                ))
                .execute(c)?)
        })
        .await?;
        Ok(())
    }

    /// Retires the key in `slot` at `now`, unless it was retired already. Returns whether it
    /// was retired now.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn retire_signing_key(&self, slot: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        let (slot, now) = (slot.to_owned(), millis(now));
        let updated = self
            .run(move |c| {
                Ok(diesel::update(signing_keys::table.find(&slot).filter(signing_keys::retired_at.is_null()))
                    .set(signing_keys::retired_at.eq(now))
                    .execute(c)?)
            })
            .await?;
        Ok(updated == 1)
    }

    /// Revokes the key in `slot` at `now`, unless it was revoked already. Returns whether it
    /// was revoked now.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn revoke_signing_key(&self, slot: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        let (slot, now) = (slot.to_owned(), millis(now));
        let updated = self
            .run(move |c| {
                Ok(diesel::update(signing_keys::table.find(&slot).filter(signing_keys::revoked_at.is_null()))
                    .set(signing_keys::revoked_at.eq(now))
                    .execute(c)?)
            })
            .await?;
        Ok(updated == 1)
    }

    /// Replaces the stored private key of `slot` by `replacement` (the same key, sealed), if it
    /// is still `current`: of several instances sealing at once, one writes.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn reseal_signing_key(
        &self,
        slot: &str,
        current: String,
        replacement: String,
    ) -> Result<bool, StoreError> {
        let slot = slot.to_owned();
        let updated = self
            .run(move |c| {
                Ok(diesel::update(signing_keys::table.find(&slot).filter(signing_keys::private_key_pem.eq(&current)))
                    .set(signing_keys::private_key_pem.eq(&replacement))
                    .execute(c)?)
            })
            .await?;
        Ok(updated == 1)
    }
}
