//! The signing keys an instance uses: from files (fixed until a restart), or the ring stored
//! in the database, read again whenever it changes (see [`spawn_key_ring_refresher`]). Which stored keys may be used is
//! `flexauth-jwt`'s policy ([`flexauth_jwt::open_stored`]); this reads the rows and the files.

use std::sync::Arc;

use flexauth_domain::system::Clock;
pub use flexauth_jwt::KeyLoad;
use flexauth_jwt::{
    JwtSettings, JwtTokens, KeyEncryptionKey, KeyRing, RingKey, RingPlan, SigningKeyPair, StoredKey, StoredKeyError,
};
use flexauth_store::{Store, GENERATED_SLOT};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::StartupError;
use crate::config::{Settings, SigningKeySource};

async fn read_key_file(path: &std::path::Path) -> Result<SigningKeyPair, StartupError> {
    let pem = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| StartupError::SigningKeyFile { path: path.display().to_string(), source })?;
    SigningKeyPair::from_pem(&pem).map_err(|source| StartupError::KeyFile { path: path.display().to_string(), source })
}

/// The ring plan of these settings: how long a retired key is kept.
pub fn ring_plan(settings: &Settings) -> RingPlan {
    RingPlan {
        access_ttl: settings.access_token_ttl,
        refresh_ttl: settings.refresh_token_ttl,
        // However an instance learns of a new key (an announcement, or its own look), it does
        // within the longer of the two intervals.
        publish_before_signing: settings.jwks_max_age
            + time::Duration::try_from(settings.key_ring_refresh.max(settings.announced_work_poll_interval))
                .unwrap_or(time::Duration::SECOND),
    }
}

fn jwt_settings(settings: &Settings) -> JwtSettings {
    JwtSettings {
        issuer: settings.public_base(),
        audience: settings.audience.clone(),
        verified_cache_entries: settings.verified_token_cache,
    }
}

/// The stored signing keys, opened by the policy of `flexauth-jwt` ([`flexauth_jwt::open_stored`]),
/// and how many were left out ([`KeyLoad::Refresh`]).
///
/// # Errors
/// [`StartupError::Keys`] when a sealed key cannot be opened (no key-encryption key, or the
/// wrong one), except in [`KeyLoad::Refresh`]; [`StartupError::Store`] when the database fails.
pub async fn stored_keys(
    store: &Store,
    kek: Option<&KeyEncryptionKey>,
    load: KeyLoad,
) -> Result<(Vec<RingKey>, usize), StartupError> {
    let rows = store.signing_keys().await?;
    let records = rows.iter().map(|row| StoredKey {
        slot: &row.slot,
        private_key: &row.private_key,
        created_at: row.created_at,
        activates_at: row.activates_at,
        retired_at: row.retired_at,
        revoked_at: row.revoked_at,
    });
    flexauth_jwt::open_stored(records, kek, load).map_err(|error| match error {
        StoredKeyError::Seal(error) => StartupError::Keys(error),
        StoredKeyError::Damaged { slot, source } => {
            StartupError::KeyFile { path: format!("the database (slot {slot})"), source }
        }
    })
}

/// The signing keys: from files (fixed until a restart), or the ring stored in the database
/// (created on first start), which each instance reads again whenever it changes.
pub(super) async fn key_ring(
    settings: &Settings,
    store: &Store,
    clock: &dyn Clock,
) -> Result<(KeyRing, bool), StartupError> {
    if let SigningKeySource::File(path) = &settings.signing_key {
        let signing = read_key_file(path).await?;
        let mut retiring = Vec::with_capacity(settings.retiring_keys.len());
        for path in &settings.retiring_keys {
            let key = read_key_file(path).await?;
            tracing::info!(kid = key.kid(), "retiring key loaded: it verifies tokens but signs none");
            retiring.push(key);
        }
        tracing::info!(kid = signing.kid(), "signing key loaded");
        return Ok((KeyRing::fixed(JwtTokens::new(&signing, &retiring, jwt_settings(settings))), false));
    }
    tracing::warn!(
        "FLEXAUTH_SIGNING_KEY_FILE is not set: signing with keys stored in the database (generated on first start, \
            rotated with `flexauth keys rotate`)"
    );
    let kek = settings.key_encryption_key.as_ref();
    if kek.is_none() {
        tracing::warn!(
            "FLEXAUTH_KEY_ENCRYPTION_KEY is not set: the private signing keys are stored in the database in the \
                clear; anyone who can read it can forge tokens"
        );
    }
    let pem = SigningKeyPair::generate_pem()?;
    let candidate = match kek {
        Some(kek) => kek.seal(GENERATED_SLOT, &pem).map_err(StartupError::Keys)?,
        None => pem,
    };
    if store.store_first_signing_key(candidate, clock.now()).await? {
        tracing::info!("first signing key generated and stored");
    }
    let (keys, in_the_clear) = stored_keys(store, kek, KeyLoad::Start).await?;
    if in_the_clear > 0 {
        tracing::warn!(
            in_the_clear,
            "stored signing keys left out: they are in the clear while FLEXAUTH_KEY_ENCRYPTION_KEY is set; seal \
                them with `flexauth keys seal` if you stored them"
        );
    }
    let (plan, now) = (ring_plan(settings), clock.now());
    let ring = KeyRing::new(&keys, plan, now, jwt_settings(settings)).map_err(|error| {
        if in_the_clear > 0 {
            return StartupError::KeysInTheClear(in_the_clear);
        }
        // Only scheduled keys: say when the first of them signs.
        match plan.next_signer(&keys, now) {
            Some((key, at)) => StartupError::NotSigningYet {
                kid: key.key.kid().to_owned(),
                at: crate::system::instant(at),
                seconds: (at - now).whole_seconds().max(1),
            },
            None => StartupError::Ring(error),
        }
    })?;
    tracing::info!(kid = ring.current().signing_kid(), keys = keys.len(), "signing key ring loaded");
    Ok((ring, true))
}

/// Reads the stored keys when the database announces a change to them (PostgreSQL without a
/// transaction pooler), and anyway every `settings.announced_work_poll_interval` there or every
/// `settings.key_ring_refresh` elsewhere, and brings the ring up to date: a rotated key is
/// published within that interval, and signs from its activation on, without a restart.
pub(super) fn spawn_key_ring_refresher(
    ring: Arc<KeyRing>,
    store: Store,
    clock: Arc<dyn Clock>,
    settings: &Settings,
    metrics: Arc<crate::metrics::Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let pace = crate::worker::Pace {
        polling: settings.key_ring_refresh,
        announced: settings.announced_work_poll_interval,
        signals: store.work_signals(),
    };
    let (kek, plan) = (settings.key_encryption_key.clone(), ring_plan(settings));
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(pace.interval()) => {}
                () = pace.heard(|signals| &signals.keys) => {}
                _ = shutdown.changed() => break,
            }
            let outcome = match stored_keys(&store, kek.as_ref(), KeyLoad::Refresh).await {
                Ok((keys, left_out)) => {
                    if left_out > 0 && !failing {
                        tracing::warn!(
                            left_out,
                            "stored signing keys left out: they do not open with the key-encryption key, or are in \
                                the clear while one is set"
                        );
                    }
                    failing = left_out > 0;
                    ring.update(&keys, plan, clock.now()).map_err(StartupError::Ring)
                }
                Err(error) => Err(error),
            };
            match outcome {
                Ok(changed) => {
                    if changed {
                        let current = ring.current();
                        metrics.set_signing_key(current.signing_kid());
                        tracing::info!(
                            kid = current.signing_kid(),
                            published = current.jwks().keys.len(),
                            "signing key ring changed"
                        );
                    }
                }
                // Said once per failing stretch; the ring in use stays as it was.
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(error = %error, "the stored signing keys could not be read; the keys in use stay");
                }
                Err(_) => {}
            }
        }
    })
}
