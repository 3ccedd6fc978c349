use async_trait::async_trait;
use flexauth_domain::account::AccountId;
use flexauth_domain::audit::AuditEvent;
use flexauth_domain::mail::OutgoingEmail;
use flexauth_domain::newtypes::AuthenticationMethods;
use flexauth_domain::secret::TokenHash;
use flexauth_domain::session::{
    EndedSessions, RevocationReason, Rotation, Session, SessionId, SessionRepository, StoredSession,
};
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::state::stored_client;
use crate::{MemoryError, MemoryStore};

/// The sessions table is in this process's memory: it knows of every ending at once.
impl EndedSessions for MemoryStore {
    fn has_ended(&self, id: SessionId) -> Option<bool> {
        let state = self.lock().ok()?;
        Some(state.sessions.get(&id).is_none_or(|session| session.revoked_at.is_some()))
    }

    fn last_heard_ended(&self, id: SessionId) -> bool {
        self.has_ended(id).unwrap_or(false)
    }
}

#[async_trait]
impl SessionRepository for MemoryStore {
    async fn create(
        &self,
        session: &Session,
        credential_version: i64,
        event: &AuditEvent,
        device: &TokenHash,
    ) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        // Checked and inserted under the one lock: a password change either ran before (and
        // this finds the version moved) or runs after and ends this session.
        let current = state
            .accounts
            .get(&session.account_id())
            .is_some_and(|account| account.credential_version == credential_version);
        if !current {
            return Ok(false);
        }
        if state.sessions.contains_key(&session.id()) {
            return Err(MemoryError::Duplicate("sessions").into());
        }
        state.check_event_free(event)?;
        let stored = StoredSession { client: stored_client(&session.stored().client), ..session.stored().clone() };
        state.sessions.insert(session.id(), stored);
        state.record(event);
        state.remember_device(session.account_id(), device, session.created_at());
        Ok(true)
    }

    async fn find(&self, id: SessionId) -> Result<Option<Session>, InfraError> {
        Ok(self.lock()?.sessions.get(&id).cloned().map(Session::from_storage))
    }

    async fn rotate(&self, rotation: &Rotation) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        // The compare-and-swap: only the rotation that still finds its expected live digest
        // applies, and the lock makes the comparison and the write one step.
        Ok(state.sessions.get_mut(&rotation.session_id).is_some_and(|session| session.apply(rotation)))
    }

    async fn revoke(&self, id: SessionId, now: OffsetDateTime, reason: RevocationReason) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        Ok(revoke_one(&mut state, id, now, reason))
    }

    async fn revoke_with_notice(
        &self,
        id: SessionId,
        now: OffsetDateTime,
        reason: RevocationReason,
        notice: &OutgoingEmail,
        event: &AuditEvent,
    ) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        let revocable = state.sessions.get(&id).is_some_and(|session| session.revoked_at.is_none());
        if !revocable {
            return Ok(false);
        }
        state.check_outbox_free(notice)?;
        state.check_event_free(event)?;
        revoke_one(&mut state, id, now, reason);
        state.queue(notice, now);
        state.record(event);
        Ok(true)
    }

    async fn mark_authenticated(&self, id: SessionId, now: OffsetDateTime) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        match state.sessions.get_mut(&id) {
            Some(session) if session.revoked_at.is_none() => {
                session.authenticated_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn mark_second_factor(
        &self,
        id: SessionId,
        now: OffsetDateTime,
        methods: AuthenticationMethods,
    ) -> Result<bool, InfraError> {
        let mut state = self.lock()?;
        match state.sessions.get_mut(&id) {
            Some(session) if session.revoked_at.is_none() => {
                session.second_factor_at = Some(now);
                session.methods = methods;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn logged_in_from(&self, account_id: AccountId, ip: &str, since: OffsetDateTime) -> Result<bool, InfraError> {
        let state = self.lock()?;
        Ok(state.sessions.values().any(|session| {
            session.account_id == account_id && session.client.ip.as_deref() == Some(ip) && session.created_at >= since
        }))
    }

    async fn device_known(
        &self,
        account_id: AccountId,
        device: &TokenHash,
        since: OffsetDateTime,
    ) -> Result<bool, InfraError> {
        let state = self.lock()?;
        Ok(state
            .known_devices
            .get(device)
            .is_some_and(|known| known.account_id == account_id && known.last_seen_at >= since))
    }

    async fn remember_device(
        &self,
        account_id: AccountId,
        device: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<(), InfraError> {
        let mut state = self.lock()?;
        if !state.known_devices.contains_key(device) && !state.account_exists(account_id) {
            return Err(MemoryError::UnknownAccount("known_devices").into());
        }
        state.remember_device(account_id, device, now);
        Ok(())
    }

    async fn list_live(&self, account_id: AccountId, now: OffsetDateTime) -> Result<Vec<Session>, InfraError> {
        let state = self.lock()?;
        let mut live: Vec<Session> = state
            .sessions
            .values()
            .filter(|session| session.account_id == account_id)
            .cloned()
            .map(Session::from_storage)
            .filter(|session| session.is_live(now))
            .collect();
        live.sort_by(|a, b| b.created_at().cmp(&a.created_at()).then_with(|| a.id().as_uuid().cmp(&b.id().as_uuid())));
        Ok(live)
    }

    async fn forget_known_clients(&self, account_id: AccountId, now: OffsetDateTime) -> Result<(), InfraError> {
        self.lock()?.forget_known_clients(account_id, now);
        Ok(())
    }

    async fn revoke_all(
        &self,
        account_id: AccountId,
        keep: Option<SessionId>,
        now: OffsetDateTime,
        reason: RevocationReason,
    ) -> Result<u64, InfraError> {
        Ok(self.lock()?.revoke_sessions(account_id, keep, now, reason))
    }
}

/// Revokes session `id` at `now` unless it is revoked already, and announces it; returns
/// whether this call did.
fn revoke_one(state: &mut crate::state::State, id: SessionId, now: OffsetDateTime, reason: RevocationReason) -> bool {
    let ended = match state.sessions.get_mut(&id) {
        Some(session) if session.revoked_at.is_none() => {
            session.revoked_at = Some(now);
            session.clone()
        }
        _ => return false,
    };
    state.announce_ended(&ended, reason, now);
    true
}
