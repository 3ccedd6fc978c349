use async_trait::async_trait;
use flexauth_domain::account::AccountId;
use flexauth_domain::housekeeping::{Housekeeping, PurgeCutoffs, PurgeReport};
use flexauth_domain::InfraError;

use flexauth_domain::api_key::ApiKey;
use flexauth_domain::session::{RevocationReason, StoredSession};
use flexauth_domain::webhook::KeyRevocationReason;

use crate::state::State;
use crate::MemoryStore;

/// Removes at most `batch` entries of `map` that `due` selects; returns how many.
fn purge_batch<K, V>(map: &mut std::collections::HashMap<K, V>, batch: usize, due: impl Fn(&V) -> bool) -> u64
where
    K: std::hash::Hash + Eq + Clone,
{
    let keys: Vec<K> = map.iter().filter(|(_, value)| due(value)).map(|(key, _)| key.clone()).take(batch).collect();
    for key in &keys {
        map.remove(key);
    }
    u64::try_from(keys.len()).unwrap_or(u64::MAX)
}

#[async_trait]
impl Housekeeping for MemoryStore {
    async fn purge(&self, cutoffs: &PurgeCutoffs) -> Result<PurgeReport, InfraError> {
        let mut state = self.lock()?;
        let batch = cutoffs.batch as usize;
        let audit_events = purge_batch(&mut state.audit_events, batch, |event| event.at < cutoffs.audit_events_before);
        let ended = cutoffs.sessions_ended_before;
        let sessions = purge_batch(&mut state.sessions, batch, |session| session.ended_before(ended));
        // The marks of announced expiries go with their sessions.
        let State { sessions: live, expiries_announced, api_keys, key_expiries_announced, .. } = &mut *state;
        expiries_announced.retain(|id| live.contains_key(id));
        key_expiries_announced.retain(|id| api_keys.contains_key(id));
        let spent = cutoffs.links_spent_before;
        let mut links = purge_batch(&mut state.signup_attempts, batch, |attempt| attempt.link().spent_before(spent));
        links += purge_batch(&mut state.password_resets, batch, |link| link.spent_before(spent));

        // An unverified account goes once old enough and no link of it still works (a resend
        // keeps it); its rows in other tables go with it. Links are purged first, as in the
        // store, so an abandoned account's expired link counts among the links.
        let abandoned: Vec<AccountId> = state
            .accounts
            .values()
            .filter(|account| {
                account.email_verified_at.is_none() && account.created_at < cutoffs.unverified_created_before
            })
            .filter(|account| {
                !state
                    .signup_attempts
                    .values()
                    .any(|attempt| attempt.link().account_id() == account.id && attempt.link().is_usable(cutoffs.now))
            })
            .map(|account| account.id)
            .take(batch)
            .collect();
        let mut unverified_accounts = 0;
        for id in abandoned {
            // A receiver told of the sign-up learns that it is gone.
            if state.delete_account(id) {
                state.announce_never_verified(id, cutoffs.now);
                unverified_accounts += 1;
            }
        }

        let devices = purge_batch(&mut state.known_devices, batch, |device| device.last_seen_at < ended);
        let counters =
            purge_batch(&mut state.rate_limits, batch, |counter| counter.window_start < cutoffs.counters_before);
        let now = cutoffs.now;
        let stale_enrolments = now - flexauth_domain::mfa::MfaSettings::default().enrolment_ttl;
        let ceremonies = purge_batch(&mut state.mfa_challenges, batch, |challenge| challenge.expires_at <= now)
            + purge_batch(&mut state.passkey_ceremonies, batch, |ceremony| ceremony.expires_at <= now)
            + purge_batch(&mut state.mfa_factors, batch, |factor| {
                factor.confirmed_at.is_none() && factor.created_at < stale_enrolments
            });
        let history = cutoffs.webhook_history_before;
        let attempts_before = state.webhook_attempts.len();
        state.webhook_attempts.retain(|attempt| attempt.at >= history);
        let mut webhook_records = u64::try_from(attempts_before - state.webhook_attempts.len()).unwrap_or(u64::MAX);
        webhook_records +=
            purge_batch(&mut state.webhook_messages, batch, |message| message.failed_at.is_some_and(|at| at < history));

        // Sessions that expired without being ended are announced once each.
        let expired: Vec<StoredSession> = state
            .sessions
            .values()
            .filter(|session| {
                session.revoked_at.is_none()
                    && session.current_expires_at <= now
                    && session.current_expires_at > cutoffs.expiries_announced_after
                    && !state.expiries_announced.contains(&session.id)
            })
            .take(batch)
            .cloned()
            .collect();
        let mut expiries_announced = u64::try_from(expired.len()).unwrap_or(u64::MAX);
        for session in expired {
            state.announce_ended(&session, RevocationReason::Expired, now);
            state.expiries_announced.insert(session.id);
        }
        // Keys that expired, likewise.
        let expired_keys: Vec<ApiKey> = state
            .api_keys
            .values()
            .filter(|row| {
                row.revoked_at.is_none()
                    && row.key.expires_at().is_some_and(|at| at <= now && at > cutoffs.expiries_announced_after)
                    && !state.key_expiries_announced.contains(&row.key.id())
            })
            .take(batch)
            .map(|row| row.key.clone())
            .collect();
        expiries_announced += u64::try_from(expired_keys.len()).unwrap_or(u64::MAX);
        for key in expired_keys {
            state.announce_revoked(&key, KeyRevocationReason::Expired, now);
            state.key_expiries_announced.insert(key.id());
        }

        // The memory store keeps no record of endings: its sessions table answers at once.
        Ok(PurgeReport {
            webhook_records,
            expiries_announced,
            audit_events,
            sessions,
            unverified_accounts,
            links,
            counters,
            devices,
            session_endings: 0,
            ceremonies,
        })
    }
}
