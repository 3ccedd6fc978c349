//! The signing key ring: every key an instance knows, which of them signs now, which are
//! published in the JWKS, and which only still verify refresh tokens.
//!
//! A rotation adds a standby key that activates later: it is published at once, so every
//! resource server has it in its cached JWKS before the first token it signs exists. A
//! retired key stops signing, stays in the JWKS until the last access token it can have
//! signed has expired, and verifies refresh tokens until the last of those has expired too:
//! nobody is logged out by a rotation. A revoked key (a leaked one) leaves the ring at once:
//! it is no longer published and verifies nothing, whatever it signed.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use flexauth_domain::session::{AccessClaims, RefreshClaims, TokenRejection, TokenSigner};
use flexauth_domain::InfraError;
use time::{Duration, OffsetDateTime};

use crate::{JwtSettings, JwtTokens, SigningKeyPair};

/// One key of the ring, as stored.
#[derive(Debug, Clone)]
pub struct RingKey {
    /// Where it is stored (its key id, or `generated` for the first development key).
    pub slot: String,
    /// The key pair.
    pub key: SigningKeyPair,
    /// When it was stored, and so first published.
    pub published_at: OffsetDateTime,
    /// When it starts signing, as stored.
    pub activates_at: OffsetDateTime,
    /// When it stopped signing for good, if it was retired.
    pub retired_at: Option<OffsetDateTime>,
    /// When it was revoked, if it was: from then on it does nothing at all.
    pub revoked_at: Option<OffsetDateTime>,
}

/// How long tokens live, which decides how long a retired key is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingPlan {
    /// Access-token lifetime: a retired key stays in the JWKS this long.
    pub access_ttl: Duration,
    /// Refresh-token lifetime: a retired key verifies refresh tokens this long.
    pub refresh_ttl: Duration,
    /// How long this instance publishes a scheduled key before it signs with it, whatever
    /// activation was stored: its JWKS cache lifetime and the time it takes to read the keys
    /// again. A key that activates when it is stored (the first key, an emergency replacement)
    /// signs at once.
    pub publish_before_signing: Duration,
}

/// The ring at one instant.
#[derive(Debug)]
struct Arrangement<'a> {
    signing: &'a RingKey,
    published: Vec<&'a RingKey>,
    refresh_only: Vec<&'a RingKey>,
}

impl Arrangement<'_> {
    fn fingerprint(&self) -> String {
        let kids = |keys: &[&RingKey]| {
            let mut kids: Vec<&str> = keys.iter().map(|key| key.key.kid()).collect();
            kids.sort_unstable();
            kids.join(",")
        };
        format!("{}|{}|{}", self.signing.key.kid(), kids(&self.published), kids(&self.refresh_only))
    }
}

impl RingPlan {
    /// When `key` starts signing on this instance: its stored activation, but for a scheduled
    /// key never before it has been published here for [`RingPlan::publish_before_signing`],
    /// so that every JWKS this instance served has it before the first token it signs. (The
    /// command that stored it judged the delay by its own settings, not this instance's.)
    pub fn activation(&self, key: &RingKey) -> OffsetDateTime {
        if key.activates_at > key.published_at {
            key.activates_at.max(key.published_at + self.publish_before_signing)
        } else {
            key.activates_at
        }
    }

    /// Whether `key` signs at `now`: activated, neither retired nor revoked.
    fn is_active(&self, key: &RingKey, now: OffsetDateTime) -> bool {
        key.revoked_at.is_none() && self.activation(key) <= now && key.retired_at.is_none_or(|retired| retired > now)
    }

    /// The key that signs at `now`: of the active keys, the one activated last. `None` when
    /// no key is active.
    pub fn signer_at<'a>(&self, keys: &'a [RingKey], now: OffsetDateTime) -> Option<&'a RingKey> {
        keys.iter()
            .filter(|key| self.is_active(key, now))
            .max_by(|a, b| self.activation(a).cmp(&self.activation(b)).then_with(|| a.slot.cmp(&b.slot)))
    }

    /// Until when a retired key stays in the JWKS.
    pub fn published_until(&self, key: &RingKey) -> Option<OffsetDateTime> {
        key.retired_at.map(|retired| retired + self.access_ttl)
    }

    /// Until when a retired key verifies refresh tokens.
    pub fn verifies_until(&self, key: &RingKey) -> Option<OffsetDateTime> {
        key.retired_at.map(|retired| retired + self.refresh_ttl.max(self.access_ttl))
    }

    fn arrange<'a>(&self, keys: &'a [RingKey], now: OffsetDateTime) -> Option<Arrangement<'a>> {
        let signing = self.signer_at(keys, now)?;
        let mut published = Vec::new();
        let mut refresh_only = Vec::new();
        for key in keys.iter().filter(|key| key.slot != signing.slot && key.revoked_at.is_none()) {
            match (self.published_until(key), self.verifies_until(key)) {
                (None, _) => published.push(key),
                (Some(until), _) if now < until => published.push(key),
                (_, Some(until)) if now < until => refresh_only.push(key),
                _ => {}
            }
        }
        Some(Arrangement { signing, published, refresh_only })
    }
}

/// Why a ring cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// Every stored key is retired or not active yet.
    #[error("no signing key is active: every stored key is retired or not active yet")]
    NoActiveKey,
}

/// The ring in use, swapped whole when a key activates, is added or leaves; every token
/// operation reads it without a lock.
pub struct KeyRing {
    tokens: ArcSwap<JwtTokens>,
    fingerprint: Mutex<String>,
    settings: JwtSettings,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("signing_kid", &self.current().signing_kid()).finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A ring that never changes: one signing key and the retiring keys (from files).
    pub fn fixed(tokens: JwtTokens) -> Self {
        let settings = tokens.settings.clone();
        Self { tokens: ArcSwap::from_pointee(tokens), fingerprint: Mutex::default(), settings }
    }

    /// The ring of `keys` at `now`.
    ///
    /// # Errors
    /// [`RingError::NoActiveKey`].
    pub fn new(
        keys: &[RingKey],
        plan: RingPlan,
        now: OffsetDateTime,
        settings: JwtSettings,
    ) -> Result<Self, RingError> {
        let arrangement = plan.arrange(keys, now).ok_or(RingError::NoActiveKey)?;
        let tokens = Self::build(&arrangement, &settings);
        Ok(Self { tokens: ArcSwap::from_pointee(tokens), fingerprint: Mutex::new(arrangement.fingerprint()), settings })
    }

    fn build(arrangement: &Arrangement<'_>, settings: &JwtSettings) -> JwtTokens {
        let published: Vec<SigningKeyPair> = arrangement.published.iter().map(|key| key.key.clone()).collect();
        let refresh_only: Vec<SigningKeyPair> = arrangement.refresh_only.iter().map(|key| key.key.clone()).collect();
        JwtTokens::with_keys(&arrangement.signing.key, &published, &refresh_only, settings.clone())
    }

    /// Brings the ring up to `keys` at `now`. Returns whether anything changed: then a new
    /// set of keys is in use, with an empty verified-token cache, so no token is accepted from
    /// the cache under a key that has left.
    ///
    /// # Errors
    /// [`RingError::NoActiveKey`]; the ring in use stays as it was.
    pub fn update(&self, keys: &[RingKey], plan: RingPlan, now: OffsetDateTime) -> Result<bool, RingError> {
        let arrangement = plan.arrange(keys, now).ok_or(RingError::NoActiveKey)?;
        let fingerprint = arrangement.fingerprint();
        let mut current = self.fingerprint.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *current == fingerprint {
            return Ok(false);
        }
        self.tokens.store(Arc::new(Self::build(&arrangement, &self.settings)));
        *current = fingerprint;
        Ok(true)
    }

    /// The keys in use now (for the JWKS and the key id that signs).
    pub fn current(&self) -> Arc<JwtTokens> {
        self.tokens.load_full()
    }
}

impl TokenSigner for KeyRing {
    fn sign_access(&self, claims: &AccessClaims) -> Result<String, InfraError> {
        self.tokens.load().sign_access(claims)
    }

    fn sign_refresh(&self, claims: &RefreshClaims) -> Result<String, InfraError> {
        self.tokens.load().sign_refresh(claims)
    }

    fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenRejection> {
        self.tokens.load().verify_access(token)
    }

    fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenRejection> {
        self.tokens.load().verify_refresh(token)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-07-01 12:00 UTC);
    const PLAN: RingPlan = RingPlan {
        access_ttl: Duration::hours(1),
        refresh_ttl: Duration::days(30),
        publish_before_signing: Duration::minutes(5),
    };

    /// A key stored ten minutes before it activates (or at its activation, when that is
    /// more than ten minutes ago).
    fn key(slot: &str, activates_at: OffsetDateTime, retired_at: Option<OffsetDateTime>) -> RingKey {
        let key = SigningKeyPair::from_pem(&SigningKeyPair::generate_pem().unwrap()).unwrap();
        let published_at = activates_at - Duration::minutes(10);
        RingKey { slot: slot.to_owned(), key, published_at, activates_at, retired_at, revoked_at: None }
    }

    fn settings() -> JwtSettings {
        JwtSettings { issuer: "https://auth.example".into(), audience: "flexauth".into(), verified_cache_entries: 64 }
    }

    fn published(ring: &KeyRing) -> Vec<String> {
        let mut kids: Vec<String> = ring.current().jwks().keys.iter().map(|jwk| jwk.kid.clone()).collect();
        kids.sort();
        kids
    }

    /// A refresh token signed by `tokens` a day ago, valid for 29 days more.
    fn refresh_token_of(tokens: &JwtTokens) -> String {
        tokens
            .sign_refresh(&RefreshClaims {
                account_id: flexauth_domain::account::AccountId::from_uuid(uuid::Uuid::from_u128(1)),
                session_id: flexauth_domain::session::SessionId::from_uuid(uuid::Uuid::from_u128(2)),
                secret: flexauth_domain::session::RefreshSecret::from_bytes([3; 32]),
                issued_at: NOW - Duration::days(1),
                expires_at: NOW + Duration::days(29),
            })
            .unwrap()
    }

    fn sorted(mut kids: Vec<String>) -> Vec<String> {
        kids.sort();
        kids
    }

    #[test]
    fn a_standby_key_is_published_at_once_and_signs_from_its_activation() {
        let old = key("old", NOW - Duration::days(10), None);
        let standby = key("new", NOW + Duration::minutes(10), None);
        let keys = vec![old.clone(), standby.clone()];
        let ring = KeyRing::new(&keys, PLAN, NOW, settings()).unwrap();
        assert_eq!(ring.current().signing_kid(), old.key.kid());
        assert_eq!(published(&ring), sorted(vec![old.key.kid().to_owned(), standby.key.kid().to_owned()]));
        assert!(
            !ring.update(&keys, PLAN, NOW + Duration::minutes(9)).unwrap(),
            "nothing changes before the activation"
        );
        assert!(ring.update(&keys, PLAN, NOW + Duration::minutes(10)).unwrap());
        assert_eq!(ring.current().signing_kid(), standby.key.kid());
        assert_eq!(published(&ring).len(), 2, "the old key still verifies what it signed");
    }

    #[test]
    fn a_retired_key_leaves_the_jwks_after_the_access_lifetime_and_verifies_refresh_tokens_until_theirs() {
        let retired_at = NOW - Duration::minutes(5);
        let old = key("old", NOW - Duration::days(10), Some(retired_at));
        let current = key("new", NOW - Duration::hours(1), None);
        let keys = vec![old.clone(), current.clone()];
        let issued_before = JwtTokens::new(&old.key, &[], settings());
        let refresh = refresh_token_of(&issued_before);
        let ring = KeyRing::new(&keys, PLAN, NOW, settings()).unwrap();
        assert_eq!(published(&ring).len(), 2);
        ring.update(&keys, PLAN, retired_at + Duration::hours(1)).unwrap();
        assert_eq!(
            published(&ring),
            vec![current.key.kid().to_owned()],
            "gone from the JWKS once its access tokens expired"
        );
        assert!(ring.verify_refresh(&refresh).is_ok(), "its refresh tokens still refresh");
        ring.update(&keys, PLAN, retired_at + Duration::days(30)).unwrap();
        assert_eq!(ring.verify_refresh(&refresh).unwrap_err(), TokenRejection::UnknownKey);
    }

    #[test]
    fn a_scheduled_key_signs_only_once_this_instance_has_published_it_for_its_own_cache_lifetime() {
        let old = key("old", NOW - Duration::days(10), None);
        // Stored by a command whose cache lifetime was shorter: it asked for one minute.
        let hurried = RingKey { published_at: NOW, activates_at: NOW + Duration::minutes(1), ..key("new", NOW, None) };
        let keys = vec![old.clone(), hurried.clone()];
        let ring = KeyRing::new(&keys, PLAN, NOW, settings()).unwrap();
        assert!(!ring.update(&keys, PLAN, NOW + Duration::minutes(4)).unwrap(), "published, not signing yet");
        assert_eq!(ring.current().signing_kid(), old.key.kid());
        assert!(ring.update(&keys, PLAN, NOW + Duration::minutes(5)).unwrap());
        assert_eq!(ring.current().signing_kid(), hurried.key.kid());
        // A key that activates as it is stored (an emergency replacement) signs at once.
        let replacement = RingKey { published_at: NOW, activates_at: NOW, ..key("now", NOW, None) };
        let ring = KeyRing::new(&[old, replacement.clone()], PLAN, NOW, settings()).unwrap();
        assert_eq!(ring.current().signing_kid(), replacement.key.kid());
    }

    #[test]
    fn a_revoked_key_is_neither_published_nor_verifies_anything_at_once() {
        let leaked = key("leaked", NOW - Duration::days(10), None);
        let replacement = RingKey { published_at: NOW, activates_at: NOW, ..key("replacement", NOW, None) };
        let signed_before = JwtTokens::new(&leaked.key, &[], settings());
        let refresh = refresh_token_of(&signed_before);
        let keys = vec![leaked.clone(), replacement.clone()];
        let ring = KeyRing::new(&keys, PLAN, NOW, settings()).unwrap();
        assert!(ring.verify_refresh(&refresh).is_ok());
        let revoked = vec![RingKey { revoked_at: Some(NOW), ..leaked }, replacement.clone()];
        assert!(ring.update(&revoked, PLAN, NOW).unwrap());
        assert_eq!(published(&ring), vec![replacement.key.kid().to_owned()]);
        assert_eq!(ring.verify_refresh(&refresh).unwrap_err(), TokenRejection::UnknownKey);
    }

    #[test]
    fn a_ring_without_an_active_key_is_refused_and_an_update_to_one_keeps_the_ring_in_use() {
        let standby = key("new", NOW + Duration::minutes(10), None);
        assert_eq!(
            KeyRing::new(std::slice::from_ref(&standby), PLAN, NOW, settings()).unwrap_err(),
            RingError::NoActiveKey
        );
        let current = key("current", NOW - Duration::days(1), None);
        let ring = KeyRing::new(std::slice::from_ref(&current), PLAN, NOW, settings()).unwrap();
        let retired = RingKey { retired_at: Some(NOW), ..current.clone() };
        assert_eq!(ring.update(&[retired], PLAN, NOW + Duration::seconds(1)).unwrap_err(), RingError::NoActiveKey);
        assert_eq!(ring.current().signing_kid(), current.key.kid());
    }
}
