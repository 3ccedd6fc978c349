use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::errors::{
    AuthenticateError, LiveSessionError, LoginError, ManageSessionsError, ReauthenticateError, RefreshError,
};
use super::{
    AccessClaims, ClientInfo, EndedSessions, RefreshClaims, RefreshDecision, RefreshSecret, RevocationReason,
    RotationNonce, Session, SessionId, SessionRepository, TokenPair, TokenSigner, TokenTimeError,
};
use crate::account::{AccountRepository, PasswordHasher};
use crate::audit::{AuditEvent, AuditKind, AuditLog};
use crate::limits::{address_key, LimitCounter, LimitSettings, RateLimited, RateLimiter};
use crate::mail::{Letter, Letters};
use crate::mfa::MfaService;
use crate::newtypes::{AccountId, AuthenticationMethods};
use crate::principal::{LiveSession, Principal, SessionEnded};
use crate::system::{random_array, random_uuid, Clock, SecureRandom};
use crate::InfraError;

/// Lifetimes and windows of the session rules.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// How long an access token is valid (3600 s by default).
    pub access_ttl: Duration,
    /// How long a refresh token is valid if it is not rotated (30 days by default).
    pub refresh_ttl: Duration,
    /// The absolute lifetime of a session, however often it is refreshed.
    pub session_lifetime: Duration,
    /// How long after a rotation the direct parent still gets the current pair back.
    pub reuse_grace: Duration,
    /// Clock difference tolerated between the instance that issued a token and the one that
    /// checks its `nbf`.
    pub clock_leeway: Duration,
    /// Look the session up in storage on every request authenticated by an access token,
    /// instead of asking [`EndedSessions`] (which already refuses an ended session's tokens at
    /// once, from memory): what the read adds is a session past its absolute lifetime, and no
    /// reliance on the announcements. Costs one indexed read per request. The operations that
    /// manage an account look the session up whatever this says.
    pub verify_session_on_request: bool,
    /// The limits on logins, refreshes and re-authentications.
    pub limits: LimitSettings,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            access_ttl: Duration::hours(1),
            refresh_ttl: Duration::days(30),
            session_lifetime: Duration::days(90),
            reuse_grace: Duration::seconds(10),
            clock_leeway: Duration::seconds(30),
            verify_session_on_request: false,
            limits: LimitSettings::default(),
        }
    }
}

crate::account::from_hash_error!(LoginError, ReauthenticateError);

/// Which sessions a logout ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogoutScope {
    /// The caller's session.
    #[default]
    Current,
    /// Every session of the account but the caller's.
    Others,
    /// Every session of the account.
    Global,
}

/// A live session as its owner sees it in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    pub session: Session,
    /// Whether the caller's access token belongs to it.
    pub current: bool,
}

/// Login, refresh, logout and request authentication.
#[derive(Clone)]
pub struct SessionService {
    accounts: Arc<dyn AccountRepository>,
    sessions: Arc<dyn SessionRepository>,
    hasher: Arc<dyn PasswordHasher>,
    signer: Arc<dyn TokenSigner>,
    ended: Arc<dyn EndedSessions>,
    limiter: Arc<dyn RateLimiter>,
    audit: Arc<dyn AuditLog>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
    /// The second factors: a login's second step and the step-up of a session.
    mfa: MfaService,
    letters: Letters,
    settings: SessionSettings,
}

impl std::fmt::Debug for SessionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// Concurrent refreshes of one token can make a rotation lose its compare-and-swap; the loser
/// re-reads the session and then finds itself the grace-window parent. Two re-reads settle any
/// honest race; more means something else is wrong.
const ROTATION_ATTEMPTS: usize = 3;

impl SessionService {
    /// Wires the service to its ports.
    // One argument per port, each a distinct capability: bundling them into a struct would
    // only rename the same list.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        accounts: Arc<dyn AccountRepository>,
        sessions: Arc<dyn SessionRepository>,
        hasher: Arc<dyn PasswordHasher>,
        signer: Arc<dyn TokenSigner>,
        ended: Arc<dyn EndedSessions>,
        limiter: Arc<dyn RateLimiter>,
        audit: Arc<dyn AuditLog>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn SecureRandom>,
        mfa: MfaService,
        letters: Letters,
        settings: SessionSettings,
    ) -> Self {
        Self { accounts, sessions, hasher, signer, ended, limiter, audit, clock, random, mfa, letters, settings }
    }

    fn event(
        &self,
        account_id: AccountId,
        kind: AuditKind,
        at: OffsetDateTime,
        client: &ClientInfo,
        session_id: Option<SessionId>,
    ) -> AuditEvent {
        let event = AuditEvent::new(self.random.as_ref(), account_id, kind, at).from_client(client.clone());
        match session_id {
            Some(session_id) => event.of_session(session_id),
            None => event,
        }
    }

    /// Rotates a refresh token: the presented one is spent and a new pair is returned. The
    /// direct parent of the live token, within the grace window, gets the live pair again,
    /// byte for byte; any other spent token revokes the whole session.
    ///
    /// # Errors
    /// [`RefreshError::InvalidToken`], [`RefreshError::Expired`], [`RefreshError::Revoked`],
    /// [`RefreshError::Reused`] (the session is revoked when this returns), or
    /// [`RefreshError::Unexpected`].
    pub async fn refresh(&self, refresh_token: &str, client_address: Option<&str>) -> Result<TokenPair, RefreshError> {
        let claims = self.signer.verify_refresh(refresh_token).map_err(RefreshError::InvalidToken)?;
        let now = self.clock.now();
        if claims.is_expired(now) {
            return Err(RefreshError::Expired);
        }
        let limits = &self.settings.limits;
        if limits.enabled {
            // The session's counter and the address's, in one step.
            let session_counter = LimitCounter::new(claims.session_id.to_string(), limits.refreshes_per_session);
            let address_counter =
                client_address.map(|address| LimitCounter::new(address_key(address), limits.refreshes_per_address));
            let counters: Vec<LimitCounter> = std::iter::once(session_counter).chain(address_counter).collect();
            let decisions = self.limiter.hit_all(&counters, now).await?;
            if let Some(refused) = decisions.into_iter().find(|decision| !decision.allowed) {
                return Err(RateLimited(refused).into());
            }
        }
        let presented = claims.secret.hash();
        for _ in 0..ROTATION_ATTEMPTS {
            let session = self.session_of(&claims).await?;
            match session.decide(&presented, now, self.settings.reuse_grace) {
                RefreshDecision::Rotate => {
                    let nonce = RotationNonce::from_bytes(random_array(self.random.as_ref()));
                    let child = claims.secret.child(&nonce);
                    let rotation = session.rotation(&child, nonce, now, self.settings.refresh_ttl);
                    if self.sessions.rotate(&rotation).await? {
                        return Ok(self.issue_pair(
                            claims.account_id,
                            claims.session_id,
                            session.methods(),
                            &child,
                            rotation.issued_at,
                            rotation.expires_at,
                        )?);
                    }
                }
                RefreshDecision::ReplayCurrent => {
                    if let Some(current) = session.replay(&claims.secret) {
                        let pair = self.issue_pair(
                            claims.account_id,
                            claims.session_id,
                            session.methods(),
                            &current,
                            session.last_refreshed_at(),
                            session.token_expires_at(),
                        )?;
                        return Ok(TokenPair { replayed: true, ..pair });
                    }
                    return Err(self.revoke_for_reuse(&session, now).await);
                }
                RefreshDecision::Reused => return Err(self.revoke_for_reuse(&session, now).await),
                RefreshDecision::Revoked => return Err(RefreshError::Revoked),
                RefreshDecision::Expired => return Err(RefreshError::Expired),
            }
        }
        Err(RefreshError::Unexpected(InfraError::new("the session kept changing during rotation")))
    }

    /// Revokes the session of a refresh token. A spent token still names its session, and
    /// ending that session is what its holder asked for, so any token of the session works.
    ///
    /// # Errors
    /// [`RefreshError::InvalidToken`] or [`RefreshError::Unexpected`].
    pub async fn logout_with_refresh_token(&self, refresh_token: &str) -> Result<(), RefreshError> {
        let claims = self.signer.verify_refresh(refresh_token).map_err(RefreshError::InvalidToken)?;
        let session = self.session_of(&claims).await?;
        self.sessions.revoke(session.id(), self.clock.now(), RevocationReason::Logout).await?;
        Ok(())
    }

    /// Ends the caller's session, the account's other sessions, or all of them.
    ///
    /// # Errors
    /// [`ManageSessionsError::SessionRequired`] for an API key; `Unexpected` when storage fails.
    pub async fn logout(&self, caller: &Principal, scope: LogoutScope) -> Result<(), ManageSessionsError> {
        let current = caller.require_session()?;
        let now = self.clock.now();
        if scope == LogoutScope::Current {
            // Ending one's own session needs no live check: an ended session stays ended.
            self.sessions.revoke(current, now, RevocationReason::Logout).await?;
            return Ok(());
        }
        // Ending other sessions manages the account: a token of an ended session may not.
        let live = self.require_live(caller).await.map_err(|error| match error {
            LiveSessionError::SessionRequired(required) => ManageSessionsError::SessionRequired(required),
            LiveSessionError::SessionEnded(ended) => ManageSessionsError::SessionEnded(ended),
            LiveSessionError::Unexpected(cause) => ManageSessionsError::Unexpected(cause),
        })?;
        // The caller's own session ends by logout; the others were ended by their owner from
        // here, which is how a webhook receiver tells them apart.
        let (keep, reason) = match scope {
            LogoutScope::Others => (Some(live.session_id()), RevocationReason::Revoked),
            _ => (None, RevocationReason::Logout),
        };
        self.sessions.revoke_all(live.account_id(), keep, now, reason).await?;
        if scope == LogoutScope::Global {
            // Logging out everywhere is how an owner throws someone out: their address and
            // device lose the exemption from the per-account login limit too.
            self.sessions.forget_known_clients(live.account_id(), now).await?;
        }
        Ok(())
    }

    /// Checks that the caller's session is live in storage, whatever
    /// [`SessionSettings::verify_session_on_request`] says: one indexed lookup. The operations
    /// that manage an account (keys, sessions, the password) take the [`LiveSession`] it
    /// returns.
    ///
    /// # Errors
    /// [`LiveSessionError::SessionRequired`] for an API key, [`LiveSessionError::SessionEnded`]
    /// for a session that was revoked or expired, [`LiveSessionError::Unexpected`].
    pub async fn require_live(&self, caller: &Principal) -> Result<LiveSession, LiveSessionError> {
        let session_id = caller.require_session()?;
        let now = self.clock.now();
        let session = self
            .sessions
            .find(session_id)
            .await?
            .filter(|session| session.account_id() == caller.account_id && session.is_live(now));
        let session = session.ok_or(SessionEnded)?;
        let has_second_factor = self.mfa.has_factor(session.account_id()).await?;
        Ok(LiveSession::new(session.account_id(), session.id(), session.authenticated_at())
            .with_second_factor(has_second_factor, session.second_factor_at()))
    }

    /// The caller's live sessions, the current one marked.
    ///
    /// # Errors
    /// [`ManageSessionsError::SessionRequired`] for an API key; `Unexpected` when storage fails.
    pub async fn list(&self, caller: &LiveSession) -> Result<Vec<SessionSummary>, ManageSessionsError> {
        let current = caller.session_id();
        let sessions = self.sessions.list_live(caller.account_id(), self.clock.now()).await?;
        Ok(sessions.into_iter().map(|session| SessionSummary { current: session.id() == current, session }).collect())
    }

    /// Revokes one of the caller's sessions.
    ///
    /// # Errors
    /// [`ManageSessionsError::NotFound`] when no such session of the caller exists (another
    /// account's session is reported the same way), `SessionRequired`, or `Unexpected`.
    pub async fn revoke(&self, caller: &LiveSession, id: SessionId) -> Result<(), ManageSessionsError> {
        let session = self
            .sessions
            .find(id)
            .await?
            .filter(|session| session.account_id() == caller.account_id())
            .ok_or(ManageSessionsError::NotFound)?;
        let reason =
            if session.id() == caller.session_id() { RevocationReason::Logout } else { RevocationReason::Revoked };
        self.sessions.revoke(session.id(), self.clock.now(), reason).await?;
        Ok(())
    }

    /// Authenticates a request by its access token: a signature check, then whether its
    /// session has ended, from memory ([`EndedSessions`]); storage is read only when memory
    /// cannot vouch for its answer, or when [`SessionSettings::verify_session_on_request`] is
    /// on.
    ///
    /// # Errors
    /// [`AuthenticateError::Rejected`], [`AuthenticateError::Expired`],
    /// [`AuthenticateError::NotYetValid`], [`AuthenticateError::SessionRevoked`] or
    /// [`AuthenticateError::Unexpected`].
    pub async fn authenticate(&self, access_token: &str) -> Result<Principal, AuthenticateError> {
        Ok(self.verify_access_token(access_token).await?.principal())
    }

    /// The claims of `access_token`, if it authenticates: what
    /// [`authenticate`](Self::authenticate) checks, returning every claim (its issue and expiry
    /// among them) for a resource server's check.
    ///
    /// # Errors
    /// As [`authenticate`](Self::authenticate).
    pub async fn verify_access_token(&self, access_token: &str) -> Result<AccessClaims, AuthenticateError> {
        let claims = self.signer.verify_access(access_token)?;
        let now = self.clock.now();
        claims.check(now, self.settings.clock_leeway).map_err(|error| match error {
            TokenTimeError::Expired => AuthenticateError::Expired,
            TokenTimeError::NotYetValid => AuthenticateError::NotYetValid,
        })?;
        let strict = self.settings.verify_session_on_request;
        let ended = match self.ended.has_ended(claims.session_id) {
            Some(ended) if !strict => ended,
            _ => match self.sessions.find(claims.session_id).await {
                Ok(session) => !session.is_some_and(|session| session.is_live(now)),
                // Storage cannot be reached, so no session can end meanwhile: what was last
                // heard stands (the strict mode waits for storage instead).
                Err(cause) if cause.is_unavailable() && !strict => self.ended.last_heard_ended(claims.session_id),
                Err(cause) => return Err(cause.into()),
            },
        };
        if ended {
            return Err(AuthenticateError::SessionRevoked);
        }
        Ok(claims)
    }

    async fn session_of(&self, claims: &RefreshClaims) -> Result<Session, RefreshError> {
        let session = self.sessions.find(claims.session_id).await?;
        session.filter(|session| session.account_id() == claims.account_id).ok_or(RefreshError::UnknownSession)
    }

    /// Ends a session whose spent token came back and tells its owner, who may be the only
    /// one able to tell an attacker's copy from a second device of their own.
    async fn revoke_for_reuse(&self, session: &Session, now: OffsetDateTime) -> RefreshError {
        let revoked = match self.accounts.find_by_id(session.account_id()).await {
            Ok(Some(account)) => {
                let notice = self.letters.email(
                    random_uuid(self.random.as_ref()),
                    account.email().clone(),
                    &Letter::RefreshTokenReuse,
                );
                let event = self.event(
                    session.account_id(),
                    AuditKind::RefreshTokenReuse,
                    now,
                    &ClientInfo::default(),
                    Some(session.id()),
                );
                self.sessions
                    .revoke_with_notice(session.id(), now, RevocationReason::RefreshTokenReuse, &notice, &event)
                    .await
            }
            Ok(None) => self.sessions.revoke(session.id(), now, RevocationReason::RefreshTokenReuse).await,
            Err(cause) => Err(cause),
        };
        match revoked {
            Ok(_) => RefreshError::Reused { account_id: session.account_id(), session_id: session.id() },
            Err(cause) => RefreshError::Unexpected(cause),
        }
    }

    fn issue_pair(
        &self,
        account_id: AccountId,
        session_id: SessionId,
        methods: AuthenticationMethods,
        secret: &RefreshSecret,
        issued_at: OffsetDateTime,
        refresh_expires_at: OffsetDateTime,
    ) -> Result<TokenPair, InfraError> {
        let access = AccessClaims {
            account_id,
            session_id,
            token_id: secret.access_token_id(),
            issued_at,
            not_before: issued_at,
            expires_at: issued_at + self.settings.access_ttl,
            methods,
        };
        let refresh =
            RefreshClaims { account_id, session_id, secret: secret.clone(), issued_at, expires_at: refresh_expires_at };
        Ok(TokenPair {
            access_token: self.signer.sign_access(&access)?,
            refresh_token: self.signer.sign_refresh(&refresh)?,
            expires_in: self.settings.access_ttl.whole_seconds(),
            new_device: None,
            replayed: false,
        })
    }
}

mod login;
mod password_check;
mod second_factor;
#[cfg(test)]
mod tests;
