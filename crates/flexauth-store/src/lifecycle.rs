use async_trait::async_trait;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use flexauth_domain::account::{AccountId, PasswordHash};
use flexauth_domain::audit::AuditEvent;
use flexauth_domain::lifecycle::{
    ConfirmEmailChangeOutcome, EmailChange, Erasure, LifecycleRepository, UndoEmailChangeOutcome,
};
use flexauth_domain::mail::OutgoingEmail;
use flexauth_domain::secret::TokenHash;
use flexauth_domain::session::{RevocationReason, SessionId};
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::accounts::{forget_known_clients, is_email_taken};
use crate::rows::{millis, EmailChangeRow, NewOutboxRow};
use crate::schema::{
    account_requests, accounts, api_keys, audit_events, email_changes, email_verification_tokens, outbox,
    password_reset_tokens, sessions, webhook_messages,
};
use crate::webhooks::{
    announce, announce_keys_revoked, announce_never_verified, announce_sessions_ended, EndedSession, Recorded,
    RevokedKey, ENDED_SESSION, REVOKED_KEY,
};
use crate::{per_backend, DbConnection, Store, StoreError};
use flexauth_domain::webhook::{KeyRevocationReason, WebhookEvent};

/// Ends every live session and revokes every API key of account `id`, announcing each.
fn end_sessions_and_keys(
    c: &mut DbConnection,
    id: &str,
    now: i64,
    at: OffsetDateTime,
    session_reason: RevocationReason,
    key_reason: KeyRevocationReason,
) -> Result<(), DieselError> {
    let ended: Vec<EndedSession> = per_backend!(c, |c| diesel::update(
        sessions::table.filter(sessions::account_id.eq(id)).filter(sessions::revoked_at.is_null())
    )
    .set((sessions::revoked_at.eq(now), sessions::revoked_reason.eq(session_reason.as_str())))
    .returning(ENDED_SESSION)
    .get_results(c))?;
    announce_sessions_ended(c, &ended, session_reason, at)?;
    // The trigger of migration 7 tells every instance's key cache at commit.
    let revoked: Vec<RevokedKey> = per_backend!(c, |c| diesel::update(
        api_keys::table.filter(api_keys::account_id.eq(id)).filter(api_keys::revoked_at.is_null())
    )
    .set(api_keys::revoked_at.eq(now))
    .returning(REVOKED_KEY)
    .get_results(c))?;
    announce_keys_revoked(c, &revoked, key_reason, at)
}

/// Why a transaction below was rolled back on purpose: the outcome it reports.
#[derive(Clone, Copy)]
enum Refusal {
    AccountChanged,
}

fn is_address_taken(error: &StoreError) -> bool {
    matches!(error, StoreError::Query(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)) if is_email_taken(info.as_ref()))
}

/// Deletes the unverified account, other than `moving`, that signed up `email`: an address an
/// account moves to (or back to) is its owner's, and a sign-up nobody confirmed never held it.
/// Its attempts and their links go with it (foreign keys).
/// Receivers told of its sign-up learn that it is gone.
fn delete_unverified_holder(
    c: &mut DbConnection,
    email: &str,
    moving: &str,
    at: OffsetDateTime,
) -> Result<usize, DieselError> {
    let deleted: Vec<String> = per_backend!(c, |c| diesel::delete(
        accounts::table
            .filter(accounts::email.eq(email))
            .filter(accounts::id.ne(moving))
            .filter(accounts::email_verified_at.is_null()),
    )
    .returning(accounts::id)
    .get_results(c))?;
    announce_never_verified(c, &deleted, at)?;
    Ok(deleted.len())
}

#[async_trait]
impl LifecycleRepository for Store {
    async fn disable(&self, id: AccountId, now: OffsetDateTime, event: &AuditEvent) -> Result<bool, InfraError> {
        let at = now;
        let (id, now, event) = (id.to_string(), millis(now), Recorded::from(event));
        let outcome = self
            .run(move |c| {
                (c.transaction(|c| {
                    // The account row first: it locks the row, and the new credential version
                    // makes a login whose password check is under way commit no session.
                    let found = diesel::update(accounts::table.find(&id))
                        .set(accounts::credential_version.eq(accounts::credential_version + 1))
                        .execute(c)?;
                    if found == 0 {
                        return Err(DieselError::RollbackTransaction);
                    }
                    let newly_disabled =
                        diesel::update(accounts::table.find(&id).filter(accounts::disabled_at.is_null()))
                            .set(accounts::disabled_at.eq(now))
                            .execute(c)?;
                    end_sessions_and_keys(
                        c,
                        &id,
                        now,
                        at,
                        RevocationReason::AccountDisabled,
                        KeyRevocationReason::AccountDisabled,
                    )?;
                    forget_known_clients(c, &id, now)?;
                    diesel::insert_into(audit_events::table).values(event.audit()).execute(c)?;
                    // Disabling a disabled account changes nothing to announce.
                    if newly_disabled == 1 {
                        event.announce(c)?;
                    }
                    Ok::<_, DieselError>(())
                }))
                .map_err(StoreError::from)
            })
            .await;
        let disabled = crate::guarded(outcome)?;
        if disabled {
            self.announce_endings(true, true).await;
        }
        Ok(disabled)
    }

    async fn enable(&self, id: AccountId, event: &AuditEvent) -> Result<bool, InfraError> {
        let (id, event) = (id.to_string(), Recorded::from(event));
        let outcome = self
            .run(move |c| {
                (c.transaction(|c| {
                    let found = accounts::table.find(&id).select(accounts::id).first::<String>(c).optional()?;
                    if found.is_none() {
                        return Err(DieselError::RollbackTransaction);
                    }
                    let was_disabled =
                        diesel::update(accounts::table.find(&id).filter(accounts::disabled_at.is_not_null()))
                            .set(accounts::disabled_at.eq(None::<i64>))
                            .execute(c)?;
                    diesel::insert_into(audit_events::table).values(event.audit()).execute(c)?;
                    // Enabling an account that was not disabled changes nothing to announce.
                    if was_disabled == 1 {
                        event.announce(c)?;
                    }
                    Ok::<_, DieselError>(())
                }))
                .map_err(StoreError::from)
            })
            .await;
        Ok(crate::guarded(outcome)?)
    }

    async fn erase(&self, erasure: &Erasure) -> Result<bool, InfraError> {
        let id = erasure.account_id.to_string();
        let tombstone = erasure.tombstone.to_string();
        let event = Recorded::from(&erasure.event);
        let at = erasure.event.at;
        let deleted =
            WebhookEvent::account_deleted(erasure.event.id, erasure.account_id, at, erasure.event.client.clone());
        let goodbye = erasure.goodbye.as_ref().map(|email| NewOutboxRow::new(email, erasure.event.at));
        let outcome = self
            .run(move |c| {
                (c.transaction(|c| {
                    let Some(email) =
                        accounts::table.find(&id).select(accounts::email).first::<String>(c).optional()?
                    else {
                        return Err(DieselError::RollbackTransaction);
                    };
                    // Every address the account held: its own, those it moved away from, and
                    // those it moved to (an address it only asked for was never its own). Mail
                    // to an address another account holds now is that account's, and stays.
                    let mut addresses = email_changes::table
                        .filter(email_changes::account_id.eq(&id))
                        .select((email_changes::old_email, email_changes::new_email, email_changes::confirmed_at))
                        .load::<(String, String, Option<i64>)>(c)?
                        .into_iter()
                        .flat_map(|(old, new, confirmed)| std::iter::once(old).chain(confirmed.map(|_| new)))
                        .collect::<Vec<_>>();
                    addresses.sort();
                    addresses.dedup();
                    let others: Vec<String> = accounts::table
                        .filter(accounts::email.eq_any(&addresses))
                        .filter(accounts::id.ne(&id))
                        .select(accounts::email)
                        .load(c)?;
                    addresses.retain(|address| !others.contains(address));
                    addresses.push(email.clone());
                    diesel::update(audit_events::table.filter(audit_events::account_id.eq(&id)))
                        .set(audit_events::account_id.eq(&tombstone))
                        .execute(c)?;
                    diesel::delete(outbox::table.filter(outbox::recipient.eq_any(&addresses))).execute(c)?;
                    diesel::delete(account_requests::table.filter(account_requests::email.eq(&email))).execute(c)?;
                    // Webhook messages still waiting are delivered, but without the address and the
                    // client they named.
                    diesel::update(webhook_messages::table.filter(webhook_messages::account_id.eq(&id)))
                        .set((
                            webhook_messages::email.eq(None::<String>),
                            webhook_messages::ip.eq(None::<String>),
                            webhook_messages::user_agent.eq(None::<String>),
                        ))
                        .execute(c)?;
                    // Ended explicitly before the rows go, so that each is announced.
                    end_sessions_and_keys(
                        c,
                        &id,
                        millis(at),
                        at,
                        RevocationReason::AccountDeleted,
                        KeyRevocationReason::AccountDeleted,
                    )?;
                    announce(c, &deleted)?;
                    // Sessions, keys, links, devices, counters and address changes follow the
                    // account row (ON DELETE CASCADE); the key trigger tells the caches.
                    diesel::delete(accounts::table.find(&id)).execute(c)?;
                    event.insert(c)?;
                    if let Some(goodbye) = &goodbye {
                        diesel::insert_into(outbox::table).values(goodbye).execute(c)?;
                    }
                    Ok::<_, DieselError>(())
                }))
                .map_err(StoreError::from)
            })
            .await;
        let erased = crate::guarded(outcome)?;
        if erased {
            self.announce_endings(true, true).await;
        }
        Ok(erased)
    }

    async fn create_email_change(
        &self,
        change: &EmailChange,
        requested_by: SessionId,
        to_new: &OutgoingEmail,
        to_old: &OutgoingEmail,
        event: &AuditEvent,
    ) -> Result<bool, InfraError> {
        let row = EmailChangeRow::from(change);
        let now = millis(change.requested_at);
        let messages = [NewOutboxRow::new(to_new, change.requested_at), NewOutboxRow::new(to_old, change.requested_at)];
        let event = Recorded::from(event);
        let session = requested_by.to_string();
        let outcome = self
            .run(move |c| {
                (c.transaction(|c| {
                    // A no-op write locks the session row until commit: a disable or an undo
                    // that ends the session either commits first (and this finds it ended) or
                    // waits, and then ends the session and spends this change's links.
                    let live = diesel::update(sessions::table.find(&session).filter(sessions::revoked_at.is_null()))
                        .set(sessions::generation.eq(sessions::generation))
                        .execute(c)?;
                    if live == 0 {
                        return Err(DieselError::RollbackTransaction);
                    }
                    // One pending change at a time: a newer request ends the older links to confirm.
                    diesel::update(
                        email_changes::table
                            .filter(email_changes::account_id.eq(&row.account_id))
                            .filter(email_changes::confirmed_at.is_null())
                            .filter(email_changes::undone_at.is_null())
                            .filter(email_changes::expires_at.gt(now)),
                    )
                    .set(email_changes::expires_at.eq(now))
                    .execute(c)?;
                    diesel::insert_into(email_changes::table).values(&row).execute(c)?;
                    for message in &messages {
                        diesel::insert_into(outbox::table).values(message).execute(c)?;
                    }
                    event.insert(c)?;
                    Ok::<_, DieselError>(())
                }))
                .map_err(StoreError::from)
            })
            .await;
        Ok(crate::guarded(outcome)?)
    }

    async fn find_email_change(&self, hash: &TokenHash) -> Result<Option<EmailChange>, InfraError> {
        let hash = hash.as_bytes().to_vec();
        let row = self
            .run(move |c| {
                Ok(email_changes::table
                    .filter(email_changes::token_hash.eq(&hash))
                    .select(EmailChangeRow::as_select())
                    .first(c)
                    .optional()?)
            })
            .await?;
        Ok(row.map(EmailChange::try_from).transpose()?)
    }

    async fn find_email_change_by_undo(&self, hash: &TokenHash) -> Result<Option<EmailChange>, InfraError> {
        let hash = hash.as_bytes().to_vec();
        let row = self
            .run(move |c| {
                Ok(email_changes::table
                    .filter(email_changes::undo_hash.eq(&hash))
                    .select(EmailChangeRow::as_select())
                    .first(c)
                    .optional()?)
            })
            .await?;
        Ok(row.map(EmailChange::try_from).transpose()?)
    }

    async fn confirm_email_change(
        &self,
        change: &EmailChange,
        credential_version: i64,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<ConfirmEmailChangeOutcome, InfraError> {
        let row = EmailChangeRow::from(change);
        let at = now;
        let (now, event) = (millis(now), Recorded::from(event));
        let outcome = self
            .run(move |c| {
                let mut refusal = None;
                let outcome = (c.transaction::<_, DieselError, _>(|c| {
                    // The guard first: of two confirmations at once, one finds the link spent.
                    let claimed = diesel::update(
                        email_changes::table
                            .find(&row.token_hash)
                            .filter(email_changes::confirmed_at.is_null())
                            .filter(email_changes::undone_at.is_null())
                            .filter(email_changes::expires_at.gt(now)),
                    )
                    .set(email_changes::confirmed_at.eq(now))
                    .execute(c)?;
                    if claimed == 0 {
                        return Ok(ConfirmEmailChangeOutcome::Spent);
                    }
                    // The account row next, as in every transaction that writes it; still at the old
                    // address and with the password that was checked, or nothing moves.
                    let current = diesel::update(
                        accounts::table
                            .find(&row.account_id)
                            .filter(accounts::email.eq(&row.old_email))
                            .filter(accounts::credential_version.eq(credential_version)),
                    )
                    .set(accounts::credential_version.eq(accounts::credential_version))
                    .execute(c)?;
                    if current == 0 {
                        refusal = Some(Refusal::AccountChanged);
                        return Err(DieselError::RollbackTransaction);
                    }
                    // An unverified sign-up of the new address never held it: it goes. A verified
                    // account there makes the move below fail on the unique address.
                    delete_unverified_holder(c, &row.new_email, &row.account_id, at)?;
                    diesel::update(accounts::table.find(&row.account_id))
                        .set((accounts::email.eq(&row.new_email), accounts::email_verified_at.eq(now)))
                        .execute(c)?;
                    // No link sent to an address before the move can set a password after it.
                    diesel::update(
                        password_reset_tokens::table.filter(password_reset_tokens::account_id.eq(&row.account_id)),
                    )
                    .filter(password_reset_tokens::used_at.is_null())
                    .set(password_reset_tokens::used_at.eq(now))
                    .execute(c)?;
                    diesel::delete(
                        email_verification_tokens::table
                            .filter(email_verification_tokens::account_id.eq(&row.account_id))
                            .filter(email_verification_tokens::used_at.is_null()),
                    )
                    .execute(c)?;
                    event.insert(c)?;
                    Ok(ConfirmEmailChangeOutcome::Confirmed)
                }))
                .map_err(StoreError::from);
                match (outcome, refusal) {
                    (Err(StoreError::Query(DieselError::RollbackTransaction)), Some(Refusal::AccountChanged)) => {
                        Ok(ConfirmEmailChangeOutcome::AccountChanged)
                    }
                    (Err(error), _) if is_address_taken(&error) => Ok(ConfirmEmailChangeOutcome::AddressTaken),
                    (outcome, _) => outcome,
                }
            })
            .await?;
        Ok(outcome)
    }

    async fn undo_email_change(
        &self,
        change: &EmailChange,
        now: OffsetDateTime,
        unusable_password: &PasswordHash,
        event: &AuditEvent,
    ) -> Result<UndoEmailChangeOutcome, InfraError> {
        let row = EmailChangeRow::from(change);
        let at = now;
        let (now, event) = (millis(now), Recorded::from(event));
        let unusable = unusable_password.as_phc().to_owned();
        let outcome = self
            .run(move |c| {
                // A sign-up of the old address committing between the delete of unverified holders
                // and the move makes the move fail on the unique address: once more, and its
                // account is deleted like any unverified holder's.
                for attempt in 0..2 {
                    let outcome = (c.transaction::<_, DieselError, _>(|c| {
                        let claimed = diesel::update(
                            email_changes::table
                                .find(&row.token_hash)
                                .filter(email_changes::undone_at.is_null())
                                .filter(email_changes::undo_expires_at.gt(now)),
                        )
                        .set(email_changes::undone_at.eq(now))
                        .execute(c)?;
                        if claimed == 0 {
                            return Ok(UndoEmailChangeOutcome::Spent);
                        }
                        // Whoever asked for a later change may hold its undo link: those links end.
                        diesel::update(
                            email_changes::table
                                .filter(email_changes::account_id.eq(&row.account_id))
                                .filter(email_changes::requested_at.ge(row.requested_at))
                                .filter(email_changes::undone_at.is_null())
                                .filter(email_changes::undo_expires_at.gt(now)),
                        )
                        .set(email_changes::undo_expires_at.eq(now))
                        .execute(c)?;
                        // An unverified sign-up squatting the old address cannot block the owner.
                        delete_unverified_holder(c, &row.old_email, &row.account_id, at)?;
                        let moved_back =
                            accounts::table.find(&row.account_id).select(accounts::email).first::<String>(c)?
                                != row.old_email;
                        // Back to the address the change was asked from, whatever happened since:
                        // whoever holds that address is whom the account belonged to. Whoever asked
                        // had the password: it is replaced by one nobody knows, and the credential
                        // version moves on, so no login under way keeps a session.
                        diesel::update(accounts::table.find(&row.account_id))
                            .set((
                                accounts::email.eq(&row.old_email),
                                accounts::password_hash.eq(&unusable),
                                accounts::credential_version.eq(accounts::credential_version + 1),
                            ))
                            .execute(c)?;
                        diesel::update(
                            email_changes::table
                                .filter(email_changes::account_id.eq(&row.account_id))
                                .filter(email_changes::confirmed_at.is_null())
                                .filter(email_changes::expires_at.gt(now)),
                        )
                        .set(email_changes::expires_at.eq(now))
                        .execute(c)?;
                        end_sessions_and_keys(
                            c,
                            &row.account_id,
                            now,
                            at,
                            RevocationReason::EmailChangeUndone,
                            KeyRevocationReason::EmailChangeUndone,
                        )?;
                        diesel::update(
                            password_reset_tokens::table.filter(password_reset_tokens::account_id.eq(&row.account_id)),
                        )
                        .filter(password_reset_tokens::used_at.is_null())
                        .set(password_reset_tokens::used_at.eq(now))
                        .execute(c)?;
                        forget_known_clients(c, &row.account_id, now)?;
                        diesel::insert_into(audit_events::table).values(event.audit()).execute(c)?;
                        // Announced only when the account moved: an undo before the change was
                        // confirmed leaves the address as it was.
                        if moved_back {
                            event.announce(c)?;
                        }
                        Ok(UndoEmailChangeOutcome::Undone)
                    }))
                    .map_err(StoreError::from);
                    match outcome {
                        Err(error) if is_address_taken(&error) && attempt == 0 => continue,
                        Err(error) if is_address_taken(&error) => return Ok(UndoEmailChangeOutcome::AddressTaken),
                        outcome => return outcome,
                    }
                }
                Ok(UndoEmailChangeOutcome::AddressTaken)
            })
            .await?;
        if outcome == UndoEmailChangeOutcome::Undone {
            self.announce_endings(true, true).await;
        }
        Ok(outcome)
    }
}
