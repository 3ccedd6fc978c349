use async_trait::async_trait;
use diesel::prelude::*;
use flexauth_domain::account::AccountId;
use flexauth_domain::api_key::{ApiKey, ApiKeyId, ApiKeyRepository};
use flexauth_domain::audit::AuditEvent;
use flexauth_domain::mail::OutgoingEmail;
use flexauth_domain::secret::TokenHash;
use flexauth_domain::session::SessionId;
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::rows::{millis, ApiKeyRow, NewOutboxRow};
use crate::schema::{accounts, api_keys, outbox, sessions};
use crate::webhooks::{announce_keys_revoked, Recorded, RevokedKey, REVOKED_KEY};
use crate::{per_backend, Store, StoreError};
use flexauth_domain::webhook::KeyRevocationReason;

#[async_trait]
impl ApiKeyRepository for Store {
    async fn create(
        &self,
        key: &ApiKey,
        hash: &TokenHash,
        notice: &OutgoingEmail,
        created_by: SessionId,
        event: &AuditEvent,
    ) -> Result<bool, InfraError> {
        let event = Recorded::from(event);
        let row = ApiKeyRow::from(key);
        let hash = hash.as_bytes().to_vec();
        let outbox_row = NewOutboxRow::new(notice, key.created_at());
        let session = created_by.to_string();
        let outcome = self
            .run(move |c| {
                (c.transaction(|c| {
                    // A no-op write locks the session row until commit: a reset that revokes the
                    // session either commits first (and this finds it revoked) or waits for the
                    // key and the notice to be stored.
                    let live = diesel::update(sessions::table.find(&session).filter(sessions::revoked_at.is_null()))
                        .set(sessions::generation.eq(sessions::generation))
                        .execute(c)?;
                    if live == 0 {
                        return Err(diesel::result::Error::RollbackTransaction);
                    }
                    diesel::insert_into(api_keys::table).values((&row, api_keys::key_hash.eq(&hash))).execute(c)?;
                    diesel::insert_into(outbox::table).values(&outbox_row).execute(c)?;
                    event.insert(c)?;
                    Ok::<_, diesel::result::Error>(())
                }))
                .map_err(StoreError::from)
            })
            .await;
        Ok(crate::guarded(outcome)?)
    }

    async fn find_active_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiKey>, InfraError> {
        // Asked: the listening connection keeps the heartbeat that lets the cache answer.
        self.note_request();
        let digest = *hash.as_bytes();
        let ticket = match self.key_cache.as_ref().map(|cache| cache.get(&digest)) {
            Some(Ok(key)) => return Ok(Some(key)),
            Some(Err(ticket)) => ticket,
            None => None,
        };
        let hash = digest.to_vec();
        // The inner join drops keys whose account is gone.
        let row = self
            .run(move |c| {
                Ok(api_keys::table
                    .inner_join(accounts::table)
                    .filter(api_keys::key_hash.eq(&hash))
                    .filter(api_keys::revoked_at.is_null())
                    .select(ApiKeyRow::as_select())
                    .first(c)
                    .optional()?)
            })
            .await?;
        let key = row.map(ApiKey::try_from).transpose()?;
        if let (Some(cache), Some(ticket), Some(key)) = (&self.key_cache, ticket, &key) {
            cache.fill(ticket, digest, key);
        }
        Ok(key)
    }

    async fn list(&self, account_id: AccountId) -> Result<Vec<ApiKey>, InfraError> {
        let account_id = account_id.to_string();
        let rows = self
            .run(move |c| {
                Ok(api_keys::table
                    .filter(api_keys::account_id.eq(&account_id))
                    .filter(api_keys::revoked_at.is_null())
                    .order((api_keys::created_at.asc(), api_keys::id.asc()))
                    .select(ApiKeyRow::as_select())
                    .load(c)?)
            })
            .await?;
        Ok(rows.into_iter().map(ApiKey::try_from).collect::<Result<_, _>>()?)
    }

    async fn revoke(
        &self,
        account_id: AccountId,
        id: ApiKeyId,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<bool, InfraError> {
        let at = now;
        let (account_id, id, now) = (account_id.to_string(), id.to_string(), millis(now));
        let event = Recorded::from(event);
        let updated = self
            .run(move |c| {
                (c.transaction(|c| {
                    let revoked: Vec<RevokedKey> = per_backend!(c, |c| diesel::update(
                        api_keys::table
                            .find(&id)
                            .filter(api_keys::account_id.eq(&account_id))
                            .filter(api_keys::revoked_at.is_null()),
                    )
                    .set(api_keys::revoked_at.eq(now))
                    .returning(REVOKED_KEY)
                    .get_results(c))?;
                    if revoked.len() == 1 {
                        event.insert(c)?;
                        announce_keys_revoked(c, &revoked, KeyRevocationReason::Revoked, at)?;
                    }
                    Ok::<_, diesel::result::Error>(revoked.len())
                }))
                .map_err(StoreError::from)
            })
            .await?;
        // The other instances learn it from the database's trigger (migration 7) on
        // PostgreSQL, from the file's data version on SQLite; waiting ANNOUNCEMENT_DELAY before
        // answering makes sure every instance that still uses its cache has cleared it (see
        // key_cache).
        if updated == 1 {
            self.announce_api_keys_ended().await;
        }
        Ok(updated == 1)
    }

    async fn touch(&self, id: ApiKeyId, now: OffsetDateTime) -> Result<(), InfraError> {
        let key_id = id;
        let id = id.to_string();
        self.run(move |c| {
            Ok(diesel::update(api_keys::table.find(&id)).set(api_keys::last_used_at.eq(millis(now))).execute(c)?)
        })
        .await?;
        if let Some(cache) = &self.key_cache {
            cache.touched(key_id, now);
        }
        Ok(())
    }
}
