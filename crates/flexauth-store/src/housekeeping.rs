use async_trait::async_trait;
use diesel::prelude::*;
use flexauth_domain::housekeeping::{Housekeeping, PurgeCutoffs, PurgeReport};
use flexauth_domain::InfraError;

use crate::rows::millis;
use crate::schema::{
    accounts, api_keys, audit_events, email_verification_tokens, known_devices, mfa_challenges, mfa_factors,
    passkey_ceremonies, password_reset_tokens, rate_limits, session_endings, sessions, webhook_attempts,
    webhook_messages,
};
use crate::webhooks::{
    announce_keys_revoked, announce_never_verified, announce_sessions_ended, EndedSession, RevokedKey, ENDED_SESSION,
    REVOKED_KEY,
};
use crate::{per_backend, Store, StoreError};
use flexauth_domain::session::RevocationReason;
use flexauth_domain::webhook::KeyRevocationReason;

fn count(deleted: usize) -> u64 {
    u64::try_from(deleted).unwrap_or(u64::MAX)
}

#[async_trait]
impl Housekeeping for Store {
    async fn purge(&self, cutoffs: &PurgeCutoffs) -> Result<PurgeReport, InfraError> {
        let now = millis(cutoffs.now);
        let audit_before = millis(cutoffs.audit_events_before);
        let ended_before = millis(cutoffs.sessions_ended_before);
        let unverified_before = millis(cutoffs.unverified_created_before);
        let spent_before = millis(cutoffs.links_spent_before);
        let counters_before = millis(cutoffs.counters_before);
        let endings_before = millis(cutoffs.session_endings_before);
        let batch = i64::from(cutoffs.batch);
        let history_before = millis(cutoffs.webhook_history_before);
        let announce_after = millis(cutoffs.expiries_announced_after);
        let cutoffs_now = cutoffs.now;
        let enrolments_before = millis(cutoffs.now - flexauth_domain::mfa::MfaSettings::default().enrolment_ttl);
        // Each kind: read one batch of keys, delete those. Another instance purging at once
        // only finds less to delete.
        let report = self
            .run(move |c| {
                {
                    let old_events = audit_events::table
                        .filter(audit_events::at.lt(audit_before))
                        .select(audit_events::id)
                        .limit(batch)
                        .load::<String>(c)?;
                    let audit_events =
                        diesel::delete(audit_events::table.filter(audit_events::id.eq_any(old_events))).execute(c)?;

                    let ended = sessions::table
                        // A refresh token never outlives its session, so a session has ended by
                        // the time its refresh token expires: two indexed conditions.
                        .filter(sessions::revoked_at.lt(ended_before).or(sessions::current_expires_at.lt(ended_before)))
                        .select(sessions::id)
                        .limit(batch)
                        .load::<String>(c)?;
                    let sessions = diesel::delete(sessions::table.filter(sessions::id.eq_any(ended))).execute(c)?;

                    let spent_verifications = email_verification_tokens::table
                        .filter(
                            email_verification_tokens::used_at
                                .lt(spent_before)
                                .or(email_verification_tokens::expires_at.lt(spent_before)),
                        )
                        .select(email_verification_tokens::token_hash)
                        .limit(batch)
                        .load::<Vec<u8>>(c)?;
                    let mut links = diesel::delete(
                        email_verification_tokens::table
                            .filter(email_verification_tokens::token_hash.eq_any(spent_verifications)),
                    )
                    .execute(c)?;
                    let spent_resets = password_reset_tokens::table
                        .filter(
                            password_reset_tokens::used_at
                                .lt(spent_before)
                                .or(password_reset_tokens::expires_at.lt(spent_before)),
                        )
                        .select(password_reset_tokens::token_hash)
                        .limit(batch)
                        .load::<Vec<u8>>(c)?;
                    links += diesel::delete(
                        password_reset_tokens::table.filter(password_reset_tokens::token_hash.eq_any(spent_resets)),
                    )
                    .execute(c)?;

                    // An unverified account goes once old enough and no link of it still works
                    // (a resend keeps it); its rows in other tables go with it (ON DELETE CASCADE).
                    // The oldest unverified accounts by their own index, then which of them still
                    // have a working link by the links' account index: no scan of either table.
                    // (Accounts whose link was resent stay until it expires, within a day, and
                    // hold the others back no longer.)
                    let candidates: Vec<String> = accounts::table
                        .filter(accounts::email_verified_at.is_null())
                        .filter(accounts::created_at.lt(unverified_before))
                        .order(accounts::created_at.asc())
                        .select(accounts::id)
                        .limit(batch)
                        .load(c)?;
                    let kept: Vec<String> = email_verification_tokens::table
                        .filter(email_verification_tokens::account_id.eq_any(&candidates))
                        .filter(email_verification_tokens::used_at.is_null())
                        .filter(email_verification_tokens::expires_at.gt(now))
                        .select(email_verification_tokens::account_id)
                        .load(c)?;
                    let abandoned: Vec<String> = candidates.into_iter().filter(|id| !kept.contains(id)).collect();
                    let unverified_accounts = c.transaction(|c| {
                        // Still unverified at the delete (a reset link may have verified one
                        // since the read); each deleted one announced by whoever deleted it.
                        let deleted: Vec<String> = per_backend!(c, |c| diesel::delete(
                            accounts::table
                                .filter(accounts::id.eq_any(&abandoned))
                                .filter(accounts::email_verified_at.is_null())
                        )
                        .returning(accounts::id)
                        .get_results(c))?;
                        announce_never_verified(c, &deleted, cutoffs_now)?;
                        Ok::<_, diesel::result::Error>(deleted.len())
                    })?;

                    let forgotten = known_devices::table
                        .filter(known_devices::last_seen_at.lt(ended_before))
                        .select(known_devices::token_hash)
                        .limit(batch)
                        .load::<Vec<u8>>(c)?;
                    let devices =
                        diesel::delete(known_devices::table.filter(known_devices::token_hash.eq_any(forgotten)))
                            .execute(c)?;

                    let stale = rate_limits::table
                        .filter(rate_limits::window_start.lt(counters_before))
                        .select(rate_limits::key)
                        .limit(batch)
                        .load::<String>(c)?;
                    let counters =
                        diesel::delete(rate_limits::table.filter(rate_limits::key.eq_any(stale))).execute(c)?;

                    let old_endings = session_endings::table
                        .filter(session_endings::ended_at.lt(endings_before))
                        .select(session_endings::session_id)
                        .limit(batch)
                        .load::<String>(c)?;
                    let session_endings =
                        diesel::delete(session_endings::table.filter(session_endings::session_id.eq_any(old_endings)))
                            .execute(c)?;

                    // Login challenges and passkey ceremonies past their lifetime, and
                    // enrolments never confirmed within theirs.
                    let expired = mfa_challenges::table
                        .filter(mfa_challenges::expires_at.le(now))
                        .select(mfa_challenges::token_hash)
                        .limit(batch)
                        .load::<Vec<u8>>(c)?;
                    let mut ceremonies =
                        diesel::delete(mfa_challenges::table.filter(mfa_challenges::token_hash.eq_any(expired)))
                            .execute(c)?;
                    let expired = passkey_ceremonies::table
                        .filter(passkey_ceremonies::expires_at.le(now))
                        .select(passkey_ceremonies::id)
                        .limit(batch)
                        .load::<String>(c)?;
                    ceremonies +=
                        diesel::delete(passkey_ceremonies::table.filter(passkey_ceremonies::id.eq_any(expired)))
                            .execute(c)?;
                    let abandoned = mfa_factors::table
                        .filter(mfa_factors::confirmed_at.is_null().and(mfa_factors::created_at.lt(enrolments_before)))
                        .select(mfa_factors::id)
                        .limit(batch)
                        .load::<String>(c)?;
                    ceremonies +=
                        diesel::delete(mfa_factors::table.filter(mfa_factors::id.eq_any(abandoned))).execute(c)?;

                    let old_attempts = webhook_attempts::table
                        .filter(webhook_attempts::at.lt(history_before))
                        .select(webhook_attempts::id)
                        .limit(batch)
                        .load::<String>(c)?;
                    let mut webhook_records =
                        diesel::delete(webhook_attempts::table.filter(webhook_attempts::id.eq_any(old_attempts)))
                            .execute(c)?;
                    let given_up = webhook_messages::table
                        .filter(webhook_messages::failed_at.lt(history_before))
                        .select(webhook_messages::id)
                        .limit(batch)
                        .load::<String>(c)?;
                    webhook_records +=
                        diesel::delete(webhook_messages::table.filter(webhook_messages::id.eq_any(given_up)))
                            .execute(c)?;

                    // Sessions that expired without being ended are announced once each, by
                    // whichever instance marks them first.
                    let expired = sessions::table
                        .filter(sessions::revoked_at.is_null())
                        .filter(sessions::expiry_announced_at.is_null())
                        .filter(sessions::current_expires_at.le(now))
                        .filter(sessions::current_expires_at.gt(announce_after))
                        .select(ENDED_SESSION)
                        .limit(batch)
                        .load::<EndedSession>(c)?;
                    let mut expiries_announced = 0;
                    for session in expired {
                        let announced = c.transaction(|c| {
                            let marked = diesel::update(
                                sessions::table
                                    .find(&session.0)
                                    .filter(sessions::revoked_at.is_null())
                                    .filter(sessions::expiry_announced_at.is_null()),
                            )
                            .set(sessions::expiry_announced_at.eq(now))
                            .execute(c)?;
                            if marked == 1 {
                                // Read before the mark: announced once, as expired at its expiry.
                                announce_sessions_ended(c, &[session], RevocationReason::Expired, cutoffs_now)?;
                            }
                            Ok::<_, diesel::result::Error>(marked)
                        })?;
                        expiries_announced += announced;
                    }

                    // Keys that expired, likewise.
                    let expired_keys = api_keys::table
                        .filter(api_keys::revoked_at.is_null())
                        .filter(api_keys::expiry_announced_at.is_null())
                        .filter(api_keys::expires_at.le(now))
                        .filter(api_keys::expires_at.gt(announce_after))
                        .select(REVOKED_KEY)
                        .limit(batch)
                        .load::<RevokedKey>(c)?;
                    for key in expired_keys {
                        let announced = c.transaction(|c| {
                            let marked = diesel::update(
                                api_keys::table
                                    .find(&key.0)
                                    .filter(api_keys::revoked_at.is_null())
                                    .filter(api_keys::expiry_announced_at.is_null()),
                            )
                            .set(api_keys::expiry_announced_at.eq(now))
                            .execute(c)?;
                            if marked == 1 {
                                announce_keys_revoked(c, &[key], KeyRevocationReason::Expired, cutoffs_now)?;
                            }
                            Ok::<_, diesel::result::Error>(marked)
                        })?;
                        expiries_announced += announced;
                    }

                    Ok::<_, StoreError>(PurgeReport {
                        webhook_records: count(webhook_records),
                        expiries_announced: count(expiries_announced),
                        session_endings: count(session_endings),
                        audit_events: count(audit_events),
                        sessions: count(sessions),
                        unverified_accounts: count(unverified_accounts),
                        links: count(links),
                        counters: count(counters),
                        devices: count(devices),
                        ceremonies: count(ceremonies),
                    })
                }
            })
            .await?;
        Ok(report)
    }
}
