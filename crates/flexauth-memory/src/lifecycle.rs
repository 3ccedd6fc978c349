use async_trait::async_trait;
use flexauth_domain::account::{AccountId, PasswordHash};
use flexauth_domain::audit::AuditEvent;
use flexauth_domain::lifecycle::{
    ConfirmEmailChangeOutcome, EmailChange, EmailChangeLinkState, Erasure, LifecycleRepository, UndoEmailChangeOutcome,
};
use flexauth_domain::mail::OutgoingEmail;
use flexauth_domain::secret::TokenHash;
use flexauth_domain::session::SessionId;
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::{MemoryError, MemoryStore};
use flexauth_domain::session::RevocationReason;
use flexauth_domain::webhook::{KeyRevocationReason, WebhookEvent};

#[async_trait]
impl LifecycleRepository for MemoryStore {
    async fn disable(&self, id: AccountId, now: OffsetDateTime, event: &AuditEvent) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        if !state.account_exists(id) {
            return Ok(false);
        }
        state.check_event_free(event)?;
        let mut newly_disabled = false;
        if let Some(account) = state.accounts.get_mut(&id) {
            // The new credential version makes a login whose password check is under way
            // commit no session.
            account.credential_version += 1;
            newly_disabled = account.disabled_at.is_none();
            account.disabled_at = account.disabled_at.or(Some(now));
        }
        state.revoke_sessions(id, None, now, RevocationReason::AccountDisabled);
        state.revoke_api_keys(id, None, now, KeyRevocationReason::AccountDisabled);
        state.forget_known_clients(id, now);
        // Disabling a disabled account changes nothing to announce, as in the store.
        if newly_disabled {
            state.record(event);
        } else {
            state.record_only(event);
        }
        Ok(true)
    }

    async fn enable(&self, id: AccountId, event: &AuditEvent) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        if !state.account_exists(id) {
            return Ok(false);
        }
        state.check_event_free(event)?;
        let was_disabled = state.accounts.get_mut(&id).and_then(|account| account.disabled_at.take()).is_some();
        if was_disabled {
            state.record(event);
        } else {
            state.record_only(event);
        }
        Ok(true)
    }

    async fn erase(&self, erasure: &Erasure) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        let Some(email) = state.accounts.get(&erasure.account_id).map(|account| account.email.as_str().to_owned())
        else {
            return Ok(false);
        };
        state.check_event_free(&erasure.event)?;
        // Every address the account held: its own, those it moved away from, and those it
        // moved to (an address it only asked for was never its own). Mail to an address another
        // account holds now is that account's, and stays.
        let mut addresses: Vec<String> = state
            .email_changes
            .values()
            .filter(|change| change.account_id == erasure.account_id)
            .flat_map(|change| {
                std::iter::once(change.old_email.as_str().to_owned())
                    .chain(change.confirmed_at.map(|_| change.new_email.as_str().to_owned()))
            })
            .filter(|address| state.account_id_by_email(address).is_none_or(|holder| holder == erasure.account_id))
            .collect();
        addresses.push(email.clone());
        // The goodbye is queued after every other message to the address is gone, so its id
        // is only taken if it survives that deletion.
        if let Some(goodbye) = &erasure.goodbye {
            if state
                .outbox
                .get(&goodbye.id())
                .is_some_and(|row| !addresses.iter().any(|address| address == row.recipient.as_str()))
            {
                return Err(MemoryError::Duplicate("outbox").into());
            }
        }
        for event in state.audit_events.values_mut() {
            if event.account_id == erasure.account_id {
                event.account_id = erasure.tombstone;
            }
        }
        state.outbox.retain(|_, row| !addresses.iter().any(|address| address == row.recipient.as_str()));
        state.account_requests.retain(|_, row| row.request.email.as_str() != email);
        // Webhook messages still waiting are delivered, but without the address and the client
        // they named.
        for message in state.webhook_messages.values_mut() {
            if message.event.account_id == erasure.account_id {
                message.event.email = None;
                message.event.client = Default::default();
            }
        }
        let at = erasure.event.at;
        state.revoke_sessions(erasure.account_id, None, at, RevocationReason::AccountDeleted);
        state.revoke_api_keys(erasure.account_id, None, at, KeyRevocationReason::AccountDeleted);
        state.announce(&WebhookEvent::account_deleted(
            erasure.event.id,
            erasure.account_id,
            at,
            erasure.event.client.clone(),
        ));
        state.delete_account(erasure.account_id);
        state.record(&erasure.event);
        if let Some(goodbye) = &erasure.goodbye {
            state.queue(goodbye, erasure.event.at);
        }
        Ok(true)
    }

    async fn create_email_change(
        &self,
        change: &EmailChange,
        requested_by: SessionId,
        to_new: &OutgoingEmail,
        to_old: &OutgoingEmail,
        event: &AuditEvent,
    ) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        // A disable or an undo that ends the session either ran before (and stops the change
        // here) or runs after and spends this change's links.
        let live = state.sessions.get(&requested_by).is_some_and(|session| session.revoked_at.is_none());
        if !live {
            return Ok(false);
        }
        if state.email_changes.contains_key(&change.confirmation)
            || state.email_changes.values().any(|other| other.undo == change.undo)
        {
            return Err(MemoryError::Duplicate("email_changes").into());
        }
        if !state.account_exists(change.account_id) {
            return Err(MemoryError::UnknownAccount("email_changes").into());
        }
        state.check_outbox_free(to_new)?;
        state.check_outbox_free(to_old)?;
        if to_new.id() == to_old.id() {
            return Err(MemoryError::Duplicate("outbox").into());
        }
        state.check_event_free(event)?;
        let now = change.requested_at;
        // One pending change at a time: a newer request ends the older links to confirm.
        for other in state.email_changes.values_mut() {
            if other.account_id == change.account_id && other.confirmation_state(now) == EmailChangeLinkState::Usable {
                other.expires_at = now;
            }
        }
        state.email_changes.insert(change.confirmation, change.clone());
        state.queue(to_new, now);
        state.queue(to_old, now);
        state.record(event);
        Ok(true)
    }

    async fn find_email_change(&self, hash: &TokenHash) -> Result<Option<EmailChange>, InfraError> {
        Ok(self.lock()?.email_changes.get(hash).cloned())
    }

    async fn find_email_change_by_undo(&self, hash: &TokenHash) -> Result<Option<EmailChange>, InfraError> {
        Ok(self.lock()?.email_changes.values().find(|change| change.undo == *hash).cloned())
    }

    async fn confirm_email_change(
        &self,
        change: &EmailChange,
        credential_version: i64,
        now: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<ConfirmEmailChangeOutcome, InfraError> {
        let mut state = self.lock()?;
        let usable = state
            .email_changes
            .get(&change.confirmation)
            .is_some_and(|stored| stored.confirmation_state(now) == EmailChangeLinkState::Usable);
        if !usable {
            return Ok(ConfirmEmailChangeOutcome::Spent);
        }
        let unchanged = state.accounts.get(&change.account_id).is_some_and(|account| {
            account.email == change.old_email && account.credential_version == credential_version
        });
        if !unchanged {
            return Ok(ConfirmEmailChangeOutcome::AccountChanged);
        }
        // An unverified sign-up of the new address never held it; a verified account does.
        let squatter =
            state.account_id_by_email(change.new_email.as_str()).filter(|&holder| holder != change.account_id);
        let squatter_verified =
            squatter.and_then(|id| state.accounts.get(&id)).is_some_and(|account| account.email_verified_at.is_some());
        if squatter_verified {
            return Ok(ConfirmEmailChangeOutcome::AddressTaken);
        }
        state.check_event_free(event)?;
        if let Some(id) = squatter {
            // Receivers told of its sign-up learn that it is gone.
            if state.delete_account(id) {
                state.announce_never_verified(id, now);
            }
        }
        if let Some(stored) = state.email_changes.get_mut(&change.confirmation) {
            stored.confirmed_at = Some(now);
        }
        state.move_account(change.account_id, &change.new_email);
        if let Some(account) = state.accounts.get_mut(&change.account_id) {
            account.email_verified_at = Some(now);
        }
        // No link sent to an address before the move can set a password after it.
        state.spend_reset_links(change.account_id, now);
        state.delete_unused_attempts(change.account_id);
        state.record(event);
        Ok(ConfirmEmailChangeOutcome::Confirmed)
    }

    async fn undo_email_change(
        &self,
        change: &EmailChange,
        now: OffsetDateTime,
        unusable_password: &PasswordHash,
        event: &AuditEvent,
    ) -> Result<UndoEmailChangeOutcome, InfraError> {
        let mut state = self.lock()?;
        let usable = state
            .email_changes
            .get(&change.confirmation)
            .is_some_and(|stored| stored.undo_state(now) == EmailChangeLinkState::Usable);
        if !usable {
            return Ok(UndoEmailChangeOutcome::Spent);
        }
        // An unverified sign-up squatting the old address cannot block the owner; a verified
        // account there can, and then nothing is written.
        let squatter =
            state.account_id_by_email(change.old_email.as_str()).filter(|&holder| holder != change.account_id);
        let squatter_verified =
            squatter.and_then(|id| state.accounts.get(&id)).is_some_and(|account| account.email_verified_at.is_some());
        if squatter_verified {
            return Ok(UndoEmailChangeOutcome::AddressTaken);
        }
        state.check_event_free(event)?;
        if let Some(stored) = state.email_changes.get_mut(&change.confirmation) {
            stored.undone_at = Some(now);
        }
        for other in state.email_changes.values_mut() {
            if other.account_id != change.account_id {
                continue;
            }
            // Whoever asked for a later change may hold its undo link: those links end.
            if other.requested_at >= change.requested_at && other.undo_state(now) == EmailChangeLinkState::Usable {
                other.undo_expires_at = now;
            }
            if other.confirmation_state(now) == EmailChangeLinkState::Usable {
                other.expires_at = now;
            }
        }
        if let Some(id) = squatter {
            // Receivers told of its sign-up learn that it is gone.
            if state.delete_account(id) {
                state.announce_never_verified(id, now);
            }
        }
        // Back to the address the change was asked from, whatever happened since. Whoever
        // asked had the password: it is replaced by one nobody knows, and the credential
        // version moves on, so no login under way keeps a session.
        let moved_back =
            state.accounts.get(&change.account_id).is_some_and(|account| account.email != change.old_email);
        state.move_account(change.account_id, &change.old_email);
        if let Some(account) = state.accounts.get_mut(&change.account_id) {
            account.password_hash = unusable_password.clone();
            account.credential_version += 1;
        }
        state.revoke_sessions(change.account_id, None, now, RevocationReason::EmailChangeUndone);
        state.revoke_api_keys(change.account_id, None, now, KeyRevocationReason::EmailChangeUndone);
        state.spend_reset_links(change.account_id, now);
        state.forget_known_clients(change.account_id, now);
        // Announced only when the account moved: an undo before the change was confirmed
        // leaves the address as it was.
        if moved_back {
            state.record(event);
        } else {
            state.record_only(event);
        }
        Ok(UndoEmailChangeOutcome::Undone)
    }
}
