use std::fmt;

use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::newtypes::{AccountId, AuthenticationMethods, ClientInfo, SessionId};
use crate::secret::TokenHash;

/// The secret inside a refresh token: 256 bits. Only its [`TokenHash`] is stored.
///
/// The first secret of a session is random. Each rotation derives the next one from the
/// presented secret and a random nonce that is stored with the session. The server can thus
/// rebuild the current token, byte for byte, for someone who presents its direct parent inside
/// the grace window, without ever storing a usable token: the database holds digests and
/// nonces, and neither yields a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshSecret([u8; 32]);

/// The random value mixed into a rotation; stored in plain with the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationNonce([u8; 16]);

impl RotationNonce {
    /// Wraps random bytes, or bytes read back from trusted storage.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes, for storage.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl RefreshSecret {
    /// Wraps random bytes, or the bytes decoded from a token the signer verified.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes, for the token signer only.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest stored in place of the secret.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }

    /// The secret that replaces this one in a rotation under `nonce`.
    pub fn child(&self, nonce: &RotationNonce) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"flexauth refresh rotation v1\0");
        hasher.update(self.0);
        hasher.update(nonce.0);
        Self(hasher.finalize().into())
    }

    /// The `jti` of the access token issued together with this refresh secret. Deriving it
    /// makes the pair reproducible for the grace window; it reveals nothing about the secret.
    pub fn access_token_id(&self) -> Uuid {
        let mut hasher = Sha256::new();
        hasher.update(b"flexauth access jti v1\0");
        hasher.update(self.0);
        let digest: [u8; 32] = hasher.finalize().into();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

impl fmt::Debug for RefreshSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshSecret(<redacted>)")
    }
}

/// The columns of a stored session, as storage hands them back. Build a [`Session`] from it
/// with [`Session::from_storage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub id: SessionId,
    pub account_id: AccountId,
    pub created_at: OffsetDateTime,
    /// The absolute end of the session, whatever the rotations.
    pub expires_at: OffsetDateTime,
    pub current_hash: TokenHash,
    pub current_issued_at: OffsetDateTime,
    pub current_expires_at: OffsetDateTime,
    /// The digest of the current token's parent, if the session has rotated.
    pub previous_hash: Option<TokenHash>,
    /// The nonce that derived the current secret from its parent.
    pub rotation_nonce: Option<RotationNonce>,
    /// How many rotations the session went through.
    pub generation: i64,
    pub revoked_at: Option<OffsetDateTime>,
    /// Where the login came from.
    pub client: ClientInfo,
    /// When the session last proved the password: its login, or a re-authentication.
    pub authenticated_at: OffsetDateTime,
    /// How the login was made (the `amr` of its tokens), kept across refreshes.
    pub methods: AuthenticationMethods,
    /// When the session last proved a second factor: its login, or a step-up.
    pub second_factor_at: Option<OffsetDateTime>,
}

impl StoredSession {
    /// Applies `rotation` if it still finds the live token it expects in a session that is not
    /// revoked, and says whether it did. A repository that keeps sessions in memory calls this
    /// under its lock; one that keeps them in a database writes the same condition into its
    /// `UPDATE`.
    pub fn apply(&mut self, rotation: &Rotation) -> bool {
        if self.id != rotation.session_id || self.revoked_at.is_some() || self.current_hash != rotation.expected_current
        {
            return false;
        }
        self.previous_hash = Some(rotation.expected_current);
        self.current_hash = rotation.new_current;
        self.rotation_nonce = Some(rotation.nonce);
        self.current_issued_at = rotation.issued_at;
        self.current_expires_at = rotation.expires_at;
        self.generation = rotation.generation;
        true
    }

    /// Whether retention may forget the session at `cutoff`: it ended (was revoked, or
    /// reached the end of its lifetime or of its last token) before it.
    pub fn ended_before(&self, cutoff: OffsetDateTime) -> bool {
        self.revoked_at.is_some_and(|at| at < cutoff) || self.expires_at < cutoff || self.current_expires_at < cutoff
    }
}

/// A login session: one lineage of refresh tokens, of which only the newest is live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session(StoredSession);

/// What presenting a refresh token to a session means at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshDecision {
    /// The live token: rotate it.
    Rotate,
    /// The direct parent of the live token, inside the grace window: a second tab or a retry
    /// that lost the race. Answer with the current pair again.
    ReplayCurrent,
    /// A spent token outside the grace window: the lineage leaked; revoke the session.
    Reused,
    /// The session was revoked earlier.
    Revoked,
    /// The token or the session is past its lifetime.
    Expired,
}

/// A compare-and-swap rotation: it applies only if the session's live token is still
/// `expected_current`, which makes exactly one of several concurrent refreshes win.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub session_id: SessionId,
    pub expected_current: TokenHash,
    pub new_current: TokenHash,
    pub nonce: RotationNonce,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub generation: i64,
}

impl Session {
    /// A session opened at `now` with `secret` as its first refresh secret, for a login made
    /// with `methods`.
    // Each argument is a distinct fact of the login; a struct would only rename the list.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        id: SessionId,
        account_id: AccountId,
        secret: &RefreshSecret,
        now: OffsetDateTime,
        refresh_ttl: Duration,
        lifetime: Duration,
        client: ClientInfo,
        methods: AuthenticationMethods,
    ) -> Self {
        let expires_at = now + lifetime;
        Self(StoredSession {
            id,
            account_id,
            created_at: now,
            expires_at,
            current_hash: secret.hash(),
            current_issued_at: now,
            current_expires_at: (now + refresh_ttl).min(expires_at),
            previous_hash: None,
            rotation_nonce: None,
            generation: 0,
            revoked_at: None,
            client,
            authenticated_at: now,
            methods,
            second_factor_at: methods.is_multi_factor().then_some(now),
        })
    }

    /// Rebuilds a session read back from trusted storage; no rule is checked again.
    pub fn from_storage(stored: StoredSession) -> Self {
        Self(stored)
    }

    /// The stored form, for the repository only: the rules read the session through the
    /// methods below.
    pub fn stored(&self) -> &StoredSession {
        &self.0
    }

    /// The session identifier.
    pub fn id(&self) -> SessionId {
        self.0.id
    }

    /// The account the session belongs to.
    pub fn account_id(&self) -> AccountId {
        self.0.account_id
    }

    /// When the session was opened, by a login.
    pub fn created_at(&self) -> OffsetDateTime {
        self.0.created_at
    }

    /// The absolute end of the session, whatever the rotations.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.0.expires_at
    }

    /// When the live refresh token was issued: the login, or the last rotation.
    pub fn last_refreshed_at(&self) -> OffsetDateTime {
        self.0.current_issued_at
    }

    /// When the live refresh token expires; never after [`Session::expires_at`].
    pub fn token_expires_at(&self) -> OffsetDateTime {
        self.0.current_expires_at
    }

    /// When the session was revoked, if it was.
    pub fn revoked_at(&self) -> Option<OffsetDateTime> {
        self.0.revoked_at
    }

    /// How many rotations the session went through.
    pub fn generation(&self) -> i64 {
        self.0.generation
    }

    /// Where the login came from.
    pub fn client(&self) -> &ClientInfo {
        &self.0.client
    }

    /// When the session last proved the password: its login, or a re-authentication.
    pub fn authenticated_at(&self) -> OffsetDateTime {
        self.0.authenticated_at
    }

    /// How the login was made.
    pub fn methods(&self) -> AuthenticationMethods {
        self.0.methods
    }

    /// When the session last proved a second factor.
    pub fn second_factor_at(&self) -> Option<OffsetDateTime> {
        self.0.second_factor_at
    }

    /// Whether the session can still be refreshed at `now` (not revoked, not past its
    /// lifetime or its live token's expiry).
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.0.revoked_at.is_none() && now < self.0.expires_at && now < self.0.current_expires_at
    }

    /// Decides what presenting a refresh secret with digest `presented` means at `now`.
    pub fn decide(&self, presented: &TokenHash, now: OffsetDateTime, grace: Duration) -> RefreshDecision {
        let s = &self.0;
        if s.revoked_at.is_some() {
            return RefreshDecision::Revoked;
        }
        if now >= s.expires_at {
            return RefreshDecision::Expired;
        }
        if *presented == s.current_hash {
            return if now >= s.current_expires_at { RefreshDecision::Expired } else { RefreshDecision::Rotate };
        }
        if s.previous_hash.as_ref() == Some(presented) && now < s.current_issued_at + grace {
            return RefreshDecision::ReplayCurrent;
        }
        RefreshDecision::Reused
    }

    /// The live refresh secret, rebuilt from its direct `parent` and the stored nonce, for a
    /// [`RefreshDecision::ReplayCurrent`]. `None` when the session never rotated, or when the
    /// derivation does not lead to the stored digest: then the row and the token disagree,
    /// and the only safe reading is reuse.
    pub fn replay(&self, parent: &RefreshSecret) -> Option<RefreshSecret> {
        let current = parent.child(&self.0.rotation_nonce?);
        (current.hash() == self.0.current_hash).then_some(current)
    }

    /// The rotation that replaces the live token by `child` (derived under `nonce`) at `now`.
    pub fn rotation(
        &self,
        child: &RefreshSecret,
        nonce: RotationNonce,
        now: OffsetDateTime,
        refresh_ttl: Duration,
    ) -> Rotation {
        Rotation {
            session_id: self.0.id,
            expected_current: self.0.current_hash,
            new_current: child.hash(),
            nonce,
            issued_at: now,
            expires_at: (now + refresh_ttl).min(self.0.expires_at),
            generation: self.0.generation + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-05-01 10:00 UTC);

    fn secret(byte: u8) -> RefreshSecret {
        RefreshSecret::from_bytes([byte; 32])
    }

    fn session() -> Session {
        Session::start(
            SessionId::from_uuid(Uuid::nil()),
            AccountId::from_uuid(Uuid::nil()),
            &secret(1),
            T0,
            Duration::days(30),
            Duration::days(90),
            ClientInfo::default(),
            AuthenticationMethods::password(),
        )
    }

    fn rotated(session: &Session, parent: &RefreshSecret, now: OffsetDateTime) -> (Session, RefreshSecret) {
        let nonce = RotationNonce::from_bytes([5; 16]);
        let child = parent.child(&nonce);
        let rotation = session.rotation(&child, nonce, now, Duration::days(30));
        let mut stored = session.stored().clone();
        assert!(stored.apply(&rotation));
        (Session::from_storage(stored), child)
    }

    const GRACE: Duration = Duration::seconds(10);

    #[test]
    fn the_live_token_rotates() {
        assert_eq!(session().decide(&secret(1).hash(), T0, GRACE), RefreshDecision::Rotate);
    }

    #[test]
    fn the_direct_parent_inside_the_grace_window_replays_the_current_pair() {
        let (session, _) = rotated(&session(), &secret(1), T0);
        assert_eq!(session.decide(&secret(1).hash(), T0 + Duration::seconds(9), GRACE), RefreshDecision::ReplayCurrent);
    }

    #[test]
    fn the_direct_parent_after_the_grace_window_is_reuse() {
        let (session, _) = rotated(&session(), &secret(1), T0);
        assert_eq!(session.decide(&secret(1).hash(), T0 + Duration::seconds(10), GRACE), RefreshDecision::Reused);
    }

    #[test]
    fn a_grandparent_is_reuse_even_inside_the_grace_window() {
        let (once, child) = rotated(&session(), &secret(1), T0);
        let (twice, _) = rotated(&once, &child, T0 + Duration::seconds(1));
        assert_eq!(twice.decide(&secret(1).hash(), T0 + Duration::seconds(2), GRACE), RefreshDecision::Reused);
    }

    #[test]
    fn a_revoked_session_refuses_even_its_live_token() {
        let mut stored = session().stored().clone();
        stored.revoked_at = Some(T0);
        assert_eq!(Session::from_storage(stored).decide(&secret(1).hash(), T0, GRACE), RefreshDecision::Revoked);
    }

    #[test]
    fn tokens_expire_with_their_ttl_and_sessions_with_their_lifetime() {
        assert_eq!(session().decide(&secret(1).hash(), T0 + Duration::days(30), GRACE), RefreshDecision::Expired);
        let mut stored = session().stored().clone();
        stored.current_expires_at = T0 + Duration::days(200);
        assert_eq!(
            Session::from_storage(stored).decide(&secret(1).hash(), T0 + Duration::days(90), GRACE),
            RefreshDecision::Expired
        );
    }

    #[test]
    fn a_rotation_never_outlives_the_session() {
        let rotation = session().rotation(
            &secret(2),
            RotationNonce::from_bytes([0; 16]),
            T0 + Duration::days(80),
            Duration::days(30),
        );
        assert_eq!(rotation.expires_at, T0 + Duration::days(90));
        assert_eq!(rotation.generation, 1);
    }

    #[test]
    fn only_the_direct_parent_replays_the_live_secret() {
        assert_eq!(session().replay(&secret(1)), None, "a session that never rotated has nothing to replay");
        let (once, child) = rotated(&session(), &secret(1), T0);
        assert_eq!(once.replay(&secret(1)), Some(child.clone()));
        let (twice, grandchild) = rotated(&once, &child, T0 + Duration::seconds(1));
        assert_eq!(twice.replay(&child), Some(grandchild));
        assert_eq!(twice.replay(&secret(1)), None, "a grandparent derives a secret the session never stored");
    }

    #[test]
    fn a_rotation_applies_once_and_never_to_a_revoked_session() {
        let nonce = RotationNonce::from_bytes([5; 16]);
        let rotation = session().rotation(&secret(1).child(&nonce), nonce, T0, Duration::days(30));
        let mut stored = session().stored().clone();
        assert!(stored.apply(&rotation));
        assert_eq!(stored.previous_hash, Some(secret(1).hash()));
        assert!(!stored.apply(&rotation), "the expected live digest is gone after the first apply");
        let mut revoked = session().stored().clone();
        revoked.revoked_at = Some(T0);
        assert!(!revoked.apply(&rotation));
        assert_eq!(revoked.current_hash, secret(1).hash());
    }

    #[test]
    fn a_session_is_due_for_purging_once_it_ended_before_the_cutoff() {
        let stored = session().stored().clone();
        assert!(!stored.ended_before(T0 + Duration::days(30)), "its token expires at the cutoff, not before");
        assert!(stored.ended_before(T0 + Duration::days(30) + Duration::seconds(1)));
        let revoked = StoredSession { revoked_at: Some(T0 + Duration::hours(1)), ..stored };
        assert!(revoked.ended_before(T0 + Duration::hours(2)));
        assert!(!revoked.ended_before(T0 + Duration::hours(1)));
    }

    #[test]
    fn child_derivation_is_deterministic_and_depends_on_the_nonce() {
        let a = RotationNonce::from_bytes([1; 16]);
        let b = RotationNonce::from_bytes([2; 16]);
        assert_eq!(secret(1).child(&a), secret(1).child(&a));
        assert_ne!(secret(1).child(&a), secret(1).child(&b));
        assert_ne!(secret(1).child(&a).hash(), secret(1).hash());
    }
}
