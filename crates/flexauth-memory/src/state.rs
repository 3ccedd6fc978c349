//! The tables, and the rules a database would enforce on them: unique keys, foreign keys and
//! the rows that go with a deleted account.

use std::collections::HashMap;

use flexauth_domain::account::{
    AccountId, AccountRequest, EmailAddress, LinkTokenRecord, SignupAttempt, StoredAccount,
};
use flexauth_domain::api_key::{ApiKey, ApiKeyId};
use flexauth_domain::audit::AuditEvent;
use flexauth_domain::introspection::{IntrospectionClient, IntrospectionClientId};
use flexauth_domain::lifecycle::EmailChange;
use flexauth_domain::mail::{EmailKind, LeaseId, OutgoingEmail};
use flexauth_domain::mfa::SealedSecret;
use flexauth_domain::mfa::{CeremonyId, FactorId, MfaChallenge, PasskeyCeremony, StoredFactor};
use flexauth_domain::secret::TokenHash;
use flexauth_domain::session::{ClientInfo, RevocationReason, SessionId, StoredSession};
use flexauth_domain::webhook::{
    ending_announcement, DeliveryAttempt, Endpoint, EndpointId, KeyRevocationReason, WebhookEvent,
};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::MemoryError;

/// An account's columns. [`Account`] has no setters, so the row ([`StoredAccount`]) is kept
/// apart and an [`Account`] is rebuilt from it on every read, as the store does from its row.
pub(crate) type AccountRow = StoredAccount;

/// An outbox entry. The bodies are optional because they are cleared once the email was sent
/// or given up on: they hold links that are secrets until used.
pub(crate) struct OutboxRow {
    pub kind: EmailKind,
    pub recipient: EmailAddress,
    pub subject: String,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    /// The order of insertion, which breaks ties between entries due at the same instant.
    pub sequence: u64,
    pub next_attempt_at: OffsetDateTime,
    pub attempts: u32,
    pub lease_id: Option<LeaseId>,
    pub lease_until: Option<OffsetDateTime>,
    pub sent_at: Option<OffsetDateTime>,
    pub failed_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

impl OutboxRow {
    /// Whether a worker may claim the entry at `now`: unsent, not given up on, due, and not
    /// under a running lease.
    pub fn claimable_at(&self, now: OffsetDateTime) -> bool {
        self.sent_at.is_none()
            && self.failed_at.is_none()
            && self.next_attempt_at <= now
            && self.lease_until.is_none_or(|until| until <= now)
    }
}

/// A queued account request and its lease.
pub(crate) struct RequestRow {
    pub request: AccountRequest,
    pub lease_id: Option<LeaseId>,
    pub lease_until: Option<OffsetDateTime>,
}

/// A stored API key: the key, the digest of its secret, and when it was revoked.
pub(crate) struct ApiKeyRow {
    pub key: ApiKey,
    pub hash: TokenHash,
    pub revoked_at: Option<OffsetDateTime>,
}

/// A device token's digest, the account it logged in to, and when it last did.
pub(crate) struct DeviceRow {
    pub account_id: AccountId,
    pub last_seen_at: OffsetDateTime,
}

/// A rate-limit counter: the window it counts in and the attempts counted there.
pub(crate) struct CounterRow {
    pub window_start: OffsetDateTime,
    pub hits: u64,
}

/// Every table, under the one lock of [`crate::MemoryStore`].
///
/// Kept out, because no port reads them back: the revocation reason the store writes beside a
/// session, and the time an outbox entry was first queued.
#[derive(Default)]
pub(crate) struct State {
    pub accounts: HashMap<AccountId, AccountRow>,
    /// The unique index on the normalised address.
    pub account_by_email: HashMap<String, AccountId>,
    pub signup_attempts: HashMap<TokenHash, SignupAttempt>,
    pub password_resets: HashMap<TokenHash, LinkTokenRecord>,
    pub sessions: HashMap<SessionId, StoredSession>,
    pub api_keys: HashMap<ApiKeyId, ApiKeyRow>,
    /// The unique index on the key digest: every authenticated request looks a key up by it.
    pub api_key_by_hash: HashMap<TokenHash, ApiKeyId>,
    pub outbox: HashMap<Uuid, OutboxRow>,
    pub outbox_sequence: u64,
    pub account_requests: HashMap<Uuid, RequestRow>,
    pub usage: HashMap<(AccountId, Date), u64>,
    pub audit_events: HashMap<Uuid, AuditEvent>,
    pub rate_limits: HashMap<String, CounterRow>,
    pub known_devices: HashMap<TokenHash, DeviceRow>,
    /// Address changes by the digest of their confirmation link.
    pub email_changes: HashMap<TokenHash, EmailChange>,
    pub introspection_clients: HashMap<IntrospectionClientId, IntrospectionClient>,
    pub mfa_factors: HashMap<FactorId, StoredFactor>,
    pub recovery_codes: HashMap<TokenHash, RecoveryCodeRow>,
    pub mfa_challenges: HashMap<TokenHash, MfaChallenge>,
    pub passkey_ceremonies: HashMap<CeremonyId, PasskeyCeremony>,
    pub webhook_endpoints: HashMap<EndpointId, EndpointRow>,
    /// One message per event and endpoint, by both ids.
    pub webhook_messages: HashMap<(EndpointId, Uuid), MessageRow>,
    pub webhook_attempts: Vec<DeliveryAttempt>,
    /// Sessions whose expiry was announced.
    pub expiries_announced: std::collections::HashSet<SessionId>,
    /// API keys whose expiry was announced.
    pub key_expiries_announced: std::collections::HashSet<ApiKeyId>,
}

/// A webhook endpoint with its sealed secrets.
pub(crate) struct EndpointRow {
    pub endpoint: Endpoint,
    pub secret: SealedSecret,
    pub previous_secret: Option<SealedSecret>,
}

/// A webhook message and its lease.
pub(crate) struct MessageRow {
    pub event: WebhookEvent,
    pub queued_at: OffsetDateTime,
    pub next_attempt_at: OffsetDateTime,
    pub attempts: u32,
    pub lease_id: Option<LeaseId>,
    pub lease_until: Option<OffsetDateTime>,
    pub failed_at: Option<OffsetDateTime>,
}

/// A recovery code's account, and when it was used.
pub(crate) struct RecoveryCodeRow {
    pub account_id: AccountId,
    pub used_at: Option<OffsetDateTime>,
}

/// The client of a stored session or event without its device token: the store has no column
/// for it, and a device token is a secret that only the login reads.
pub(crate) fn stored_client(client: &ClientInfo) -> ClientInfo {
    ClientInfo { user_agent: client.user_agent.clone(), ip: client.ip.clone(), device: None }
}

/// The same attempt with its link spent at `now`.
pub(crate) fn spent_attempt(attempt: &SignupAttempt, now: OffsetDateTime) -> SignupAttempt {
    SignupAttempt::from_storage(spent_link(attempt.link(), now), attempt.password_hash().cloned(), attempt.created_at())
}

/// The same link, spent at `now`.
pub(crate) fn spent_link(link: &LinkTokenRecord, now: OffsetDateTime) -> LinkTokenRecord {
    LinkTokenRecord::from_storage(*link.hash(), link.account_id(), link.expires_at(), Some(now))
}

impl State {
    pub fn account_exists(&self, id: AccountId) -> bool {
        self.accounts.contains_key(&id)
    }

    /// Records that `device` logged in to the account at `now`. A token another account holds
    /// is left alone: it is never this device's.
    pub fn remember_device(&mut self, account_id: AccountId, device: &TokenHash, now: OffsetDateTime) {
        let known = self.known_devices.entry(*device).or_insert(DeviceRow { account_id, last_seen_at: now });
        if known.account_id == account_id {
            known.last_seen_at = now;
        }
    }

    /// The account holding `email`, if any.
    pub fn account_id_by_email(&self, email: &str) -> Option<AccountId> {
        self.account_by_email.get(email).copied()
    }

    /// Refuses an outbox insert whose id is taken (the table's primary key).
    pub fn check_outbox_free(&self, email: &OutgoingEmail) -> Result<(), MemoryError> {
        if self.outbox.contains_key(&email.id()) {
            return Err(MemoryError::Duplicate("outbox"));
        }
        Ok(())
    }

    /// Refuses a security log insert whose id is taken.
    pub fn check_event_free(&self, event: &AuditEvent) -> Result<(), MemoryError> {
        if self.audit_events.contains_key(&event.id) {
            return Err(MemoryError::Duplicate("audit_events"));
        }
        Ok(())
    }

    /// Refuses a sign-up attempt whose digest is taken or whose account does not exist.
    pub fn check_attempt_insertable(
        &self,
        attempt: &SignupAttempt,
        new_account: Option<AccountId>,
    ) -> Result<(), MemoryError> {
        if self.signup_attempts.contains_key(attempt.link().hash()) {
            return Err(MemoryError::Duplicate("email_verification_tokens"));
        }
        let account = attempt.link().account_id();
        if new_account != Some(account) && !self.account_exists(account) {
            return Err(MemoryError::UnknownAccount("email_verification_tokens"));
        }
        Ok(())
    }

    /// Queues `email`, due from `now` on. The caller checked [`State::check_outbox_free`].
    pub fn queue(&mut self, email: &OutgoingEmail, now: OffsetDateTime) {
        self.outbox_sequence += 1;
        let row = OutboxRow {
            kind: email.kind(),
            recipient: email.to().clone(),
            subject: email.subject().to_owned(),
            text_body: Some(email.text_body().to_owned()),
            html_body: Some(email.html_body().to_owned()),
            sequence: self.outbox_sequence,
            next_attempt_at: now,
            attempts: 0,
            lease_id: None,
            lease_until: None,
            sent_at: None,
            failed_at: None,
            last_error: None,
        };
        self.outbox.insert(email.id(), row);
    }

    /// Stores `event` and queues the webhook event it makes. The caller checked
    /// [`State::check_event_free`].
    pub fn record(&mut self, event: &AuditEvent) {
        if let Some(announced) = WebhookEvent::from_audit(event) {
            self.announce(&announced);
        }
        self.record_only(event);
    }

    /// Stores `event` without its webhook event. The security log keeps neither the address
    /// nor the factor an entry is about.
    pub fn record_only(&mut self, event: &AuditEvent) {
        let stored = AuditEvent { client: stored_client(&event.client), email: None, factor_id: None, ..event.clone() };
        self.audit_events.insert(event.id, stored);
    }

    /// Queues `session.ended` for `session`, which a write at `now` ended for `reason`: for
    /// `reason` when it was live, as `expired` at its expiry when it had expired already
    /// (unless that was announced, or is older than a day), as the store does.
    pub fn announce_ended(&mut self, session: &StoredSession, reason: RevocationReason, now: OffsetDateTime) {
        let announced = self.expiries_announced.contains(&session.id);
        let Some((reason, at)) =
            ending_announcement(Some(session.current_expires_at), announced, now, reason, RevocationReason::Expired)
        else {
            return;
        };
        let client = stored_client(&session.client);
        let event = WebhookEvent::session_ended(Uuid::new_v4(), session.account_id, session.id, reason, at, client);
        self.announce(&event);
    }

    /// Queues `api_key.revoked` for `key`, which a write at `now` revoked for `reason`: for
    /// `reason` when it still worked, as `expired` at its expiry when it had expired already
    /// (unless that was announced, or is older than a day), as the store does.
    pub fn announce_revoked(&mut self, key: &ApiKey, reason: KeyRevocationReason, now: OffsetDateTime) {
        let announced = self.key_expiries_announced.contains(&key.id());
        let Some((reason, at)) =
            ending_announcement(key.expires_at(), announced, now, reason, KeyRevocationReason::Expired)
        else {
            return;
        };
        self.announce(&WebhookEvent::key_revoked(Uuid::new_v4(), key.account_id(), key.id(), reason, at));
    }

    /// Queues `account.deleted` with the reason `never_verified` for account `id`, an
    /// unverified sign-up removed at `at`.
    pub fn announce_never_verified(&mut self, id: AccountId, at: OffsetDateTime) {
        self.announce(&WebhookEvent::never_verified_deleted(Uuid::new_v4(), id, at));
    }

    /// Queues `event` for every endpoint that subscribes to its type and is not disabled.
    pub fn announce(&mut self, event: &WebhookEvent) {
        for row in self.webhook_endpoints.values() {
            let endpoint = &row.endpoint;
            if endpoint.disabled_at.is_none() && endpoint.filter.accepts(event.event_type) {
                self.webhook_messages.insert(
                    (endpoint.id, event.id),
                    MessageRow {
                        event: event.clone(),
                        queued_at: event.at,
                        next_attempt_at: event.at,
                        attempts: 0,
                        lease_id: None,
                        lease_until: None,
                        failed_at: None,
                    },
                );
            }
        }
    }

    /// Queues `account.verified` for `id`, at the address it has now.
    pub fn announce_verified(&mut self, id: AccountId, at: OffsetDateTime) {
        if let Some(email) = self.accounts.get(&id).map(|account| account.email.clone()) {
            self.announce(&WebhookEvent::account_verified(Uuid::new_v4(), id, email, at));
        }
    }

    /// Stores a new account row and its address in the unique index. The caller checked that
    /// neither the id nor the address is taken.
    pub fn insert_account(&mut self, row: AccountRow) {
        self.account_by_email.insert(row.email.as_str().to_owned(), row.id);
        self.accounts.insert(row.id, row);
    }

    /// Moves an account to `email`, keeping the unique index in step. The caller checked that
    /// no other account holds it.
    pub fn move_account(&mut self, id: AccountId, email: &EmailAddress) {
        let Some(row) = self.accounts.get_mut(&id) else { return };
        if self.account_by_email.get(row.email.as_str()) == Some(&id) {
            self.account_by_email.remove(row.email.as_str());
        }
        row.email = email.clone();
        self.account_by_email.insert(email.as_str().to_owned(), id);
    }

    /// Spends every unused reset link of the account at `now`.
    pub fn spend_reset_links(&mut self, account_id: AccountId, now: OffsetDateTime) {
        for link in self.password_resets.values_mut() {
            if link.account_id() == account_id && link.used_at().is_none() {
                *link = spent_link(link, now);
            }
        }
    }

    /// Deletes every unused sign-up attempt of the account.
    pub fn delete_unused_attempts(&mut self, account_id: AccountId) {
        self.signup_attempts
            .retain(|_, attempt| attempt.link().account_id() != account_id || attempt.link().used_at().is_some());
    }

    /// Revokes at `now` every unrevoked session of the account except `keep`; returns how
    /// many.
    pub fn revoke_sessions(
        &mut self,
        account_id: AccountId,
        keep: Option<SessionId>,
        now: OffsetDateTime,
        reason: RevocationReason,
    ) -> u64 {
        let mut ended = Vec::new();
        for session in self.sessions.values_mut() {
            if session.account_id == account_id && Some(session.id) != keep && session.revoked_at.is_none() {
                session.revoked_at = Some(now);
                ended.push(session.clone());
            }
        }
        for session in &ended {
            self.announce_ended(session, reason, now);
        }
        ended.len() as u64
    }

    /// Revokes at `now` every unrevoked API key of the account made before `made_before`
    /// (every one, when it is `None`).
    pub fn revoke_api_keys(
        &mut self,
        account_id: AccountId,
        made_before: Option<OffsetDateTime>,
        now: OffsetDateTime,
        reason: KeyRevocationReason,
    ) {
        let mut revoked = Vec::new();
        for row in self.api_keys.values_mut() {
            if row.key.account_id() == account_id
                && row.revoked_at.is_none()
                && made_before.is_none_or(|before| row.key.created_at() < before)
            {
                row.revoked_at = Some(now);
                revoked.push(row.key.clone());
            }
        }
        for key in &revoked {
            self.announce_revoked(key, reason, now);
        }
    }

    /// Forgets the clients the account knew at `now`: its known devices go, and no login from
    /// before counts any more.
    pub fn forget_known_clients(&mut self, account_id: AccountId, now: OffsetDateTime) {
        self.known_devices.retain(|_, device| device.account_id != account_id);
        if let Some(account) = self.accounts.get_mut(&account_id) {
            account.clients_forgotten_at = Some(now);
        }
    }

    /// Deletes an account and every row that follows it (the store's `ON DELETE CASCADE`):
    /// sessions, API keys, sign-up attempts, reset links, known devices, usage counters and
    /// address changes. Security log entries, outbox entries, account requests and rate-limit
    /// counters name no account row, and stay. Returns whether the account existed.
    pub fn delete_account(&mut self, id: AccountId) -> bool {
        let Some(row) = self.accounts.remove(&id) else { return false };
        if self.account_by_email.get(row.email.as_str()) == Some(&id) {
            self.account_by_email.remove(row.email.as_str());
        }
        self.sessions.retain(|_, session| session.account_id != id);
        let api_key_by_hash = &mut self.api_key_by_hash;
        self.api_keys.retain(|_, key| {
            let keep = key.key.account_id() != id;
            if !keep {
                api_key_by_hash.remove(&key.hash);
            }
            keep
        });
        self.signup_attempts.retain(|_, attempt| attempt.link().account_id() != id);
        self.password_resets.retain(|_, link| link.account_id() != id);
        self.known_devices.retain(|_, device| device.account_id != id);
        self.usage.retain(|&(account_id, _), _| account_id != id);
        self.email_changes.retain(|_, change| change.account_id != id);
        self.mfa_factors.retain(|_, factor| factor.account_id != id);
        self.recovery_codes.retain(|_, code| code.account_id != id);
        self.mfa_challenges.retain(|_, challenge| challenge.account_id != id);
        self.passkey_ceremonies.retain(|_, ceremony| ceremony.account_id != Some(id));
        true
    }
}

/// The order of token digests when two rows tie on time: their bytes, as the store's index
/// orders them.
pub(crate) fn digest_order(a: &TokenHash, b: &TokenHash) -> std::cmp::Ordering {
    a.as_bytes().cmp(b.as_bytes())
}
