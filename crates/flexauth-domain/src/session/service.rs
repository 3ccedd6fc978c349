use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::{
    AccessClaims, ClientInfo, RefreshClaims, RefreshDecision, RefreshSecret, RevocationReason, RotationNonce, Session, SessionId, SessionRepository, TokenPair,
    TokenRejection, TokenSigner,
};
use crate::account::{pending_password_hashes, AccountRepository, Password, PasswordHasher};
use crate::audit::{AuditEvent, AuditKind, AuditLog};
use crate::limits::{address_key, email_key, LimitPolicy, LimitSettings, RateLimited, RateLimiter};
use crate::mail::refresh_token_reuse_email;
use crate::newtypes::{AccountId, EmailAddress};
use crate::principal::{AuthMethod, LiveSession, Principal, SessionRequired};
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
    /// Look the session up on every request authenticated by an access token, so that a
    /// revoked session's access tokens stop working at once instead of at their `exp`. Costs
    /// one indexed read per request. The operations that manage an account look the session
    /// up whatever this says.
    pub verify_session_on_request: bool,
    /// Base URL named in the emails the session rules send (reuse detection).
    pub public_url: String,
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
            public_url: "http://127.0.0.1:8080".to_owned(),
            limits: LimitSettings::default(),
        }
    }
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The password hashing pool is overloaded; nothing was done.
    #[error("the server is overloaded")]
    Overloaded,

    /// Unknown email or wrong password; the two are indistinguishable, timing included.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The password is right but the email address is not verified yet.
    #[error("the email address is not verified")]
    EmailNotVerified,
    /// The password is right but an operator disabled the account.
    #[error("the account is disabled")]
    AccountDisabled,
    /// Too many failed logins from this address, or on this account from clients it does not
    /// know; nothing was checked.
    #[error(transparent)]
    Throttled(#[from] RateLimited),
    /// Storage, hashing or signing failed.
    #[error("login failed")]
    Unexpected(#[from] InfraError),
}

/// Why a refresh (or a logout by refresh token) failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Not a refresh token this server issued.
    #[error("the refresh token is invalid: {0}")]
    InvalidToken(TokenRejection),
    /// A refresh token flexauth signed whose session is not stored (erased with its account,
    /// or purged), or belongs to another account.
    #[error("the session of the refresh token is unknown")]
    UnknownSession,
    /// The token or its session is past its lifetime.
    #[error("the refresh token has expired")]
    Expired,
    /// The session was revoked (logout, or an earlier reuse).
    #[error("the session was revoked")]
    Revoked,
    /// The session refreshes too often.
    #[error(transparent)]
    Throttled(#[from] RateLimited),
    /// A spent token was presented: the session is now revoked. An audit event.
    #[error("a spent refresh token was presented; the session is revoked")]
    Reused {
        /// The account whose session was revoked.
        account_id: AccountId,
        /// The revoked session.
        session_id: SessionId,
    },
    /// Storage or signing failed.
    #[error("refresh failed")]
    Unexpected(#[from] InfraError),
}

/// Why a bearer credential does not authenticate a request.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticateError {
    /// The access token failed a format, type, key, signature or party check.
    #[error(transparent)]
    Rejected(#[from] TokenRejection),
    /// The access token is past its `exp`, or the API key past its expiry.
    #[error("the credential has expired")]
    Expired,
    /// The token's `nbf` lies in the future.
    #[error("the access token is not valid yet")]
    NotYetValid,
    /// The session of the access token was revoked (only checked when
    /// [`SessionSettings::verify_session_on_request`] is on).
    #[error("the session was revoked")]
    SessionRevoked,
    /// Not of the API key format, or its checksum is wrong.
    #[error("the API key is malformed")]
    MalformedApiKey,
    /// No live API key has this secret (never issued, revoked, or its account is gone).
    #[error("the API key is not valid")]
    UnknownApiKey,
    /// Storage failed.
    #[error("authentication failed")]
    Unexpected(#[from] InfraError),
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

/// Why an operation that manages the account cannot run for this caller.
#[derive(Debug, thiserror::Error)]
pub enum LiveSessionError {
    /// The caller used an API key; managing the account needs a person's JWT.
    #[error(transparent)]
    SessionRequired(#[from] SessionRequired),
    /// The access token's signature is fine, but its session has ended (logout, password
    /// reset or change, reuse detection) or expired.
    #[error("the session of the access token has ended")]
    SessionEnded,
    #[error("looking up the session failed")]
    Unexpected(#[from] InfraError),
}

/// Why a re-authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum ReauthenticateError {
    /// The password hashing pool is overloaded; nothing was done.
    #[error("the server is overloaded")]
    Overloaded,

    /// The password is not the account's.
    #[error("the password is wrong")]
    WrongPassword,
    /// The session ended meanwhile.
    #[error("the session has ended")]
    SessionEnded,
    /// Too many re-authentications of this session.
    #[error(transparent)]
    Throttled(#[from] RateLimited),
    #[error("re-authentication failed")]
    Unexpected(#[from] InfraError),
}

/// Why listing or revoking sessions failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageSessionsError {
    /// Sessions are managed with a JWT only.
    #[error(transparent)]
    SessionRequired(#[from] SessionRequired),
    /// The caller's own session has ended.
    #[error("the session of the access token has ended")]
    SessionEnded,
    /// No such session belongs to the caller.
    #[error("no such session")]
    NotFound,
    #[error("managing sessions failed")]
    Unexpected(#[from] InfraError),
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
    limiter: Arc<dyn RateLimiter>,
    audit: Arc<dyn AuditLog>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
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
        limiter: Arc<dyn RateLimiter>,
        audit: Arc<dyn AuditLog>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn SecureRandom>,
        settings: SessionSettings,
    ) -> Self {
        Self { accounts, sessions, hasher, signer, limiter, audit, clock, random, settings }
    }

    fn event(&self, account_id: AccountId, kind: AuditKind, at: OffsetDateTime, client: &ClientInfo, session_id: Option<SessionId>) -> AuditEvent {
        let event = AuditEvent::new(self.random.as_ref(), account_id, kind, at).from_client(client.clone());
        match session_id {
            Some(session_id) => event.of_session(session_id),
            None => event,
        }
    }

    /// Checks the credentials and opens a session.
    ///
    /// # Errors
    /// [`LoginError::InvalidCredentials`] for an unknown email or a wrong password, after the
    /// same hashing work; [`LoginError::EmailNotVerified`] only once the password is proven
    /// right; [`LoginError::Unexpected`].
    pub async fn login(&self, email: &EmailAddress, password: &Password, client: ClientInfo) -> Result<TokenPair, LoginError> {
        let now = self.clock.now();
        let limits = &self.settings.limits;
        let address = client.ip.as_deref().map(address_key);
        let account_key = email_key(email);
        // Attempts are counted before the password is checked, in one atomic step each, so
        // that concurrent attempts cannot all pass a limit that none of them has counted yet;
        // an attempt that turns out not to be a guess is refunded below.
        if let (true, Some(address)) = (limits.enabled, &address) {
            let decision = self.limiter.hit(address, &limits.login_failures_per_address, now).await?;
            if !decision.allowed {
                return Err(RateLimited(decision).into());
            }
        }
        let found = self.accounts.find_by_email(email).await?;
        let mut under_attack = false;
        if limits.enabled {
            // Counted per address typed, whether or not it has an account, so the limit itself
            // tells nothing. A client that logged in to the account from the same address
            // before is exempt: an attack from elsewhere never locks the owner out.
            // Both tiers count; a refusal names the longer wait.
            let mut refused: Option<crate::limits::LimitDecision> = None;
            for policy in limits.account_login_limits() {
                let decision = self.limiter.hit(&account_key, &policy, now).await?;
                if !decision.allowed && refused.is_none_or(|earlier| decision.reset_after > earlier.reset_after) {
                    refused = Some(decision);
                }
            }
            if let Some(decision) = refused {
                under_attack = true;
                // The same lookup for an unknown email (under an id no account has), so the
                // time of a throttled answer does not tell whether the account exists.
                let account_id = found.as_ref().map_or(AccountId::from_uuid(uuid::Uuid::nil()), crate::account::Account::id);
                let since = now - limits.known_client_for;
                let known_device = match &client.device {
                    Some(device) => self.sessions.device_known(account_id, &device.hash(), since).await?,
                    None => false,
                };
                let known = known_device
                    || match &client.ip {
                        Some(ip) => self.sessions.logged_in_from(account_id, ip, since).await?,
                        None => false,
                    };
                if !known {
                    self.log_throttled(found.as_ref(), &account_key, &client, now).await?;
                    return Err(RateLimited(decision).into());
                }
            }
        }
        let account_id = found.as_ref().map(crate::account::Account::id);
        match self.check_password(found, password, now).await {
            Err(LoginError::InvalidCredentials) => {
                if let Some(account_id) = account_id {
                    self.audit.record(&self.event(account_id, AuditKind::LoginFailed, now, &client, None)).await?;
                }
                Err(LoginError::InvalidCredentials)
            }
            Err(other) => {
                // The right password of an unverified account, or no check at all: no guess.
                self.refund(address.as_deref(), &account_key, now).await?;
                Err(other)
            }
            Ok(account) => {
                self.refund(address.as_deref(), &account_key, now).await?;
                // A success clears a few typos; it does not clear an attack in progress, or
                // every login of the exempt owner would hand the attacker a fresh allowance.
                if limits.enabled && !under_attack {
                    for policy in limits.account_login_limits() {
                        self.limiter.reset(&account_key, &policy).await?;
                    }
                }
                let presented = client.device.clone();
                let mut pair = self.open_session(&account, client, now).await?;
                // A device the account knows keeps its token; any other gets a new one.
                let since = now - limits.known_client_for;
                let device = match presented {
                    Some(device) if self.sessions.device_known(account.id(), &device.hash(), since).await? => device,
                    _ => {
                        let fresh = crate::secret::DeviceToken::generate(self.random.as_ref());
                        pair.new_device = Some(fresh.clone());
                        fresh
                    }
                };
                self.sessions.remember_device(account.id(), &device.hash(), now).await?;
                Ok(pair)
            }
        }
    }

    /// Takes back the login attempt counted against the address and the account.
    async fn refund(&self, address: Option<&str>, account_key: &str, now: OffsetDateTime) -> Result<(), InfraError> {
        let limits = &self.settings.limits;
        if !limits.enabled {
            return Ok(());
        }
        if let Some(address) = address {
            self.limiter.refund(address, &limits.login_failures_per_address, now).await?;
        }
        for policy in limits.account_login_limits() {
            self.limiter.refund(account_key, &policy, now).await?;
        }
        Ok(())
    }

    /// Records a throttled login in the owner's log, at most once per window of the account
    /// limit, so a flood of refused attempts cannot bury the log.
    async fn log_throttled(
        &self,
        found: Option<&crate::account::Account>,
        account_key: &str,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Result<(), InfraError> {
        let Some(account) = found else {
            return Ok(());
        };
        let once = LimitPolicy { name: "throttle_logged", limit: 1, window: self.settings.limits.login_failures_per_account.window };
        if self.limiter.hit(account_key, &once, now).await?.allowed {
            self.audit.record(&self.event(account.id(), AuditKind::LoginThrottled, now, client, None)).await?;
        }
        Ok(())
    }

    /// Checks `password` against the account found (or a dummy hash for none), with the same
    /// hashing work either way.
    async fn check_password(
        &self,
        found: Option<crate::account::Account>,
        password: &Password,
        now: OffsetDateTime,
    ) -> Result<crate::account::Account, LoginError> {
        let Some(account) = found else {
            self.hasher.verify_against_dummy(password).await?;
            return Err(LoginError::InvalidCredentials);
        };
        if !account.is_email_verified() {
            // The account's own hash is only a placeholder until a confirmation sets it: the
            // passwords in play are those of the pending sign-up attempts.
            let candidates = pending_password_hashes(&self.accounts.pending_signup_attempts(account.id(), now).await?);
            if candidates.is_empty() {
                self.hasher.verify_against_dummy(password).await?;
                return Err(LoginError::InvalidCredentials);
            }
            for candidate in &candidates {
                if self.hasher.verify(password, candidate).await? {
                    return Err(LoginError::EmailNotVerified);
                }
            }
            return Err(LoginError::InvalidCredentials);
        }
        if !self.hasher.verify(password, account.password_hash()).await? {
            return Err(LoginError::InvalidCredentials);
        }
        // Said only to whoever proved the password, like an unverified address.
        if account.disabled_at().is_some() {
            return Err(LoginError::AccountDisabled);
        }
        Ok(account)
    }

    /// Opens a session for `account`, whose password was just checked.
    async fn open_session(&self, account: &crate::account::Account, client: ClientInfo, now: OffsetDateTime) -> Result<TokenPair, LoginError> {
        let secret = RefreshSecret::from_bytes(random_array(self.random.as_ref()));
        let session_id = SessionId::from_uuid(random_uuid(self.random.as_ref()));
        let event = self.event(account.id(), AuditKind::LoginSucceeded, now, &client, Some(session_id));
        let session = Session::start(session_id, account.id(), &secret, now, self.settings.refresh_ttl, self.settings.session_lifetime, client);
        if !self.sessions.create(&session, account.credential_version(), &event).await? {
            // The password was reset while this one was being checked: it is not the
            // account's password any more.
            return Err(LoginError::InvalidCredentials);
        }
        let stored = session.stored();
        Ok(self.issue_pair(account.id(), session_id, &secret, stored.current_issued_at, stored.current_expires_at)?)
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
        if now >= claims.expires_at {
            return Err(RefreshError::Expired);
        }
        let limits = &self.settings.limits;
        if limits.enabled {
            let decision = self.limiter.hit(&claims.session_id.to_string(), &limits.refreshes_per_session, now).await?;
            if !decision.allowed {
                return Err(RateLimited(decision).into());
            }
            if let Some(address) = client_address {
                let decision = self.limiter.hit(&address_key(address), &limits.refreshes_per_address, now).await?;
                if !decision.allowed {
                    return Err(RateLimited(decision).into());
                }
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
                        return Ok(self.issue_pair(claims.account_id, claims.session_id, &child, rotation.issued_at, rotation.expires_at)?);
                    }
                }
                RefreshDecision::ReplayCurrent => {
                    let stored = session.stored();
                    let current = stored.rotation_nonce.map(|nonce| claims.secret.child(&nonce));
                    // The derivation must lead to the stored digest; if it does not, the row
                    // and the token disagree, and the only safe reading is reuse.
                    if let Some(current) = current.filter(|secret| secret.hash() == stored.current_hash) {
                        let pair = self.issue_pair(claims.account_id, claims.session_id, &current, stored.current_issued_at, stored.current_expires_at)?;
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
            LiveSessionError::SessionEnded => ManageSessionsError::SessionEnded,
            LiveSessionError::Unexpected(cause) => ManageSessionsError::Unexpected(cause),
        })?;
        let keep = if scope == LogoutScope::Others { Some(live.session_id()) } else { None };
        self.sessions.revoke_all(live.account_id(), keep, now, RevocationReason::Logout).await?;
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
        let session = self.sessions.find(session_id).await?.filter(|session| session.account_id() == caller.account_id && session.is_live(now));
        let session = session.ok_or(LiveSessionError::SessionEnded)?;
        Ok(LiveSession::new(session.account_id(), session.id(), session.stored().authenticated_at))
    }

    /// Renews the caller's recent authentication by checking the account's password, for the
    /// operations that need one (creating an API key).
    ///
    /// # Errors
    /// [`ReauthenticateError::WrongPassword`], [`ReauthenticateError::SessionEnded`] or
    /// [`ReauthenticateError::Unexpected`].
    pub async fn reauthenticate(&self, caller: &LiveSession, password: &Password, client_address: Option<&str>) -> Result<OffsetDateTime, ReauthenticateError> {
        let limits = &self.settings.limits;
        if limits.enabled {
            let now = self.clock.now();
            let decision = self.limiter.hit(&caller.session_id().to_string(), &limits.reauthentications_per_session, now).await?;
            if !decision.allowed {
                return Err(RateLimited(decision).into());
            }
            if let Some(address) = client_address {
                let decision = self.limiter.hit(&address_key(address), &limits.reauthentications_per_address, now).await?;
                if !decision.allowed {
                    return Err(RateLimited(decision).into());
                }
            }
        }
        let Some(account) = self.accounts.find_by_id(caller.account_id()).await? else {
            self.hasher.verify_against_dummy(password).await?;
            return Err(ReauthenticateError::SessionEnded);
        };
        if !self.hasher.verify(password, account.password_hash()).await? {
            return Err(ReauthenticateError::WrongPassword);
        }
        let now = self.clock.now();
        if self.sessions.mark_authenticated(caller.session_id(), now).await? {
            Ok(now)
        } else {
            Err(ReauthenticateError::SessionEnded)
        }
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
        let session = self.sessions.find(id).await?.filter(|session| session.account_id() == caller.account_id()).ok_or(ManageSessionsError::NotFound)?;
        self.sessions.revoke(session.id(), self.clock.now(), RevocationReason::Logout).await?;
        Ok(())
    }

    /// Authenticates a request by its access token: a signature check, and a session lookup
    /// only when [`SessionSettings::verify_session_on_request`] is on.
    ///
    /// # Errors
    /// [`AuthenticateError::Rejected`], [`AuthenticateError::Expired`],
    /// [`AuthenticateError::NotYetValid`], [`AuthenticateError::SessionRevoked`] or
    /// [`AuthenticateError::Unexpected`].
    pub async fn authenticate(&self, access_token: &str) -> Result<Principal, AuthenticateError> {
        let claims = self.signer.verify_access(access_token)?;
        let now = self.clock.now();
        if now >= claims.expires_at {
            return Err(AuthenticateError::Expired);
        }
        if now + self.settings.clock_leeway < claims.issued_at {
            return Err(AuthenticateError::NotYetValid);
        }
        if self.settings.verify_session_on_request {
            let live = self.sessions.find(claims.session_id).await?.is_some_and(|session| session.is_live(now));
            if !live {
                return Err(AuthenticateError::SessionRevoked);
            }
        }
        Ok(Principal { account_id: claims.account_id, method: AuthMethod::Session(claims.session_id) })
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
                let notice = refresh_token_reuse_email(random_uuid(self.random.as_ref()), account.email().clone(), &self.settings.public_url);
                let event = self.event(session.account_id(), AuditKind::RefreshTokenReuse, now, &ClientInfo::default(), Some(session.id()));
                self.sessions.revoke_with_notice(session.id(), now, RevocationReason::RefreshTokenReuse, &notice, &event).await
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
        secret: &RefreshSecret,
        issued_at: OffsetDateTime,
        refresh_expires_at: OffsetDateTime,
    ) -> Result<TokenPair, InfraError> {
        let access = AccessClaims { account_id, session_id, token_id: secret.access_token_id(), issued_at, expires_at: issued_at + self.settings.access_ttl };
        let refresh = RefreshClaims { account_id, session_id, secret: secret.clone(), issued_at, expires_at: refresh_expires_at };
        Ok(TokenPair {
            access_token: self.signer.sign_access(&access)?,
            refresh_token: self.signer.sign_refresh(&refresh)?,
            expires_in: self.settings.access_ttl.whole_seconds(),
            new_device: None,
            replayed: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{Account, LinkTokenRecord, MockAccountRepository, MockPasswordHasher, PasswordHash, SignupAttempt};
    use crate::mail::EmailKind;
    use crate::session::{MockSessionRepository, MockTokenSigner, StoredSession};
    use crate::system::{MockClock, MockSecureRandom};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Mutex;
    use time::macros::datetime;
    use uuid::Uuid;

    const NOW: OffsetDateTime = datetime!(2026-06-01 08:00 UTC);
    const ACCOUNT: AccountId = AccountId::from_uuid(Uuid::from_u128(1));
    const SESSION: SessionId = SessionId::from_uuid(Uuid::from_u128(2));

    /// A signer whose tokens are readable strings, so tests can see exactly what was signed.
    fn readable_signer() -> MockTokenSigner {
        let mut signer = MockTokenSigner::new();
        signer.expect_sign_access().returning(|claims| Ok(format!("at:{}:{}", claims.token_id, claims.issued_at.unix_timestamp())));
        signer
            .expect_sign_refresh()
            .returning(|claims| Ok(format!("rt:{}:{}", URL_SAFE_NO_PAD.encode(claims.secret.expose()), claims.issued_at.unix_timestamp())));
        signer.expect_verify_refresh().returning(|token| {
            let secret = token.strip_prefix("rt:").and_then(|rest| rest.split(':').next()).ok_or(TokenRejection::Malformed)?;
            let bytes: [u8; 32] = URL_SAFE_NO_PAD.decode(secret).ok().and_then(|b| b.try_into().ok()).ok_or(TokenRejection::Malformed)?;
            Ok(RefreshClaims {
                account_id: ACCOUNT,
                session_id: SESSION,
                secret: RefreshSecret::from_bytes(bytes),
                issued_at: NOW,
                expires_at: NOW + Duration::days(30),
            })
        });
        signer
    }

    fn refresh_token_for(secret: &RefreshSecret) -> String {
        format!("rt:{}:0", URL_SAFE_NO_PAD.encode(secret.expose()))
    }

    struct Ports {
        accounts: MockAccountRepository,
        sessions: MockSessionRepository,
        hasher: MockPasswordHasher,
        signer: MockTokenSigner,
        limiter: crate::limits::MockRateLimiter,
        audit: crate::audit::MockAuditLog,
        now: OffsetDateTime,
    }

    impl Ports {
        fn new() -> Self {
            Self {
                accounts: MockAccountRepository::new(),
                sessions: MockSessionRepository::new(),
                hasher: MockPasswordHasher::new(),
                signer: readable_signer(),
                limiter: crate::limits::unlimited(),
                audit: {
                    let mut audit = crate::audit::MockAuditLog::new();
                    audit.expect_record().returning(|_| Ok(()));
                    audit
                },
                now: NOW,
            }
        }

        fn service(self) -> SessionService {
            let mut clock = MockClock::new();
            clock.expect_now().return_const(self.now);
            let counter = AtomicU8::new(100);
            let mut random = MockSecureRandom::new();
            random.expect_fill().returning(move |buffer| buffer.fill(counter.fetch_add(1, Ordering::Relaxed)));
            SessionService::new(
                Arc::new(self.accounts),
                Arc::new(self.sessions),
                Arc::new(self.hasher),
                Arc::new(self.signer),
                Arc::new(self.limiter),
                Arc::new(self.audit),
                Arc::new(clock),
                Arc::new(random),
                SessionSettings::default(),
            )
        }
    }

    fn account(verified: bool) -> Account {
        Account::from_storage(ACCOUNT, EmailAddress::parse("ann@example.com").unwrap(), PasswordHash::from_phc("h".into()), verified.then_some(NOW), NOW, 4)
    }

    /// A pending sign-up attempt whose password hashes to `phc`.
    fn attempt(phc: &str) -> SignupAttempt {
        let link = LinkTokenRecord::issue(crate::secret::TokenHash::of(phc.as_bytes()), ACCOUNT, NOW + Duration::hours(1));
        SignupAttempt::issue(link, Some(PasswordHash::from_phc(phc.into())), NOW)
    }

    fn session_caller() -> Principal {
        Principal { account_id: ACCOUNT, method: AuthMethod::Session(SESSION) }
    }

    fn credentials() -> (EmailAddress, Password) {
        (EmailAddress::parse("ann@example.com").unwrap(), Password::parse("a long enough passphrase".into()).unwrap())
    }

    #[tokio::test]
    async fn login_with_an_unknown_email_spends_a_dummy_verification_and_fails_like_a_wrong_password() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_by_email().returning(|_| Ok(None));
        ports.hasher.expect_verify_against_dummy().times(1).returning(|_| Ok(()));
        ports.sessions.expect_create().never();
        let (email, password) = credentials();
        assert!(matches!(ports.service().login(&email, &password, ClientInfo::default()).await, Err(LoginError::InvalidCredentials)));
    }

    #[tokio::test]
    async fn login_fails_with_a_wrong_password_even_for_an_unverified_account() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(false))));
        ports.accounts.expect_pending_signup_attempts().returning(|_, _| Ok(vec![attempt("first"), attempt("second")]));
        ports.hasher.expect_verify().times(2).returning(|_, _| Ok(false));
        let (email, password) = credentials();
        assert!(matches!(ports.service().login(&email, &password, ClientInfo::default()).await, Err(LoginError::InvalidCredentials)));
    }

    #[tokio::test]
    async fn login_fails_when_email_is_not_verified_for_the_password_of_any_pending_attempt() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(false))));
        ports.accounts.expect_pending_signup_attempts().returning(|_, _| Ok(vec![attempt("newest"), attempt("older")]));
        // The account row's placeholder hash ("h") is never what decides.
        ports.hasher.expect_verify().returning(|_, hash| Ok(hash.as_phc() == "older"));
        ports.sessions.expect_create().never();
        let (email, password) = credentials();
        assert!(matches!(ports.service().login(&email, &password, ClientInfo::default()).await, Err(LoginError::EmailNotVerified)));
    }

    #[tokio::test]
    async fn a_disabled_account_is_told_so_only_after_the_right_password_and_opens_no_session() {
        for (right, expected) in [(true, "disabled"), (false, "invalid")] {
            let mut ports = Ports::new();
            ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(true).disabled_since(Some(NOW - Duration::hours(1))))));
            ports.hasher.expect_verify().times(1).returning(move |_, _| Ok(right));
            ports.sessions.expect_create().never();
            let (email, password) = credentials();
            match (ports.service().login(&email, &password, ClientInfo::default()).await, expected) {
                (Err(LoginError::AccountDisabled), "disabled") | (Err(LoginError::InvalidCredentials), "invalid") => {}
                (other, _) => panic!("expected {expected}, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn login_on_an_unverified_account_without_pending_attempts_costs_one_dummy_hash() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(false))));
        ports.accounts.expect_pending_signup_attempts().returning(|_, _| Ok(vec![]));
        ports.hasher.expect_verify().never();
        ports.hasher.expect_verify_against_dummy().times(1).returning(|_| Ok(()));
        let (email, password) = credentials();
        assert!(matches!(ports.service().login(&email, &password, ClientInfo::default()).await, Err(LoginError::InvalidCredentials)));
    }

    #[tokio::test]
    async fn a_login_whose_password_was_reset_during_the_check_opens_no_session() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(true))));
        ports.hasher.expect_verify().returning(|_, _| Ok(true));
        // The store refuses the insert: the credential version is no longer 4.
        ports.sessions.expect_create().withf(|_, version, _| *version == 4).times(1).returning(|_, _, _| Ok(false));
        let (email, password) = credentials();
        assert!(matches!(ports.service().login(&email, &password, ClientInfo::default()).await, Err(LoginError::InvalidCredentials)));
    }

    #[tokio::test]
    async fn login_opens_a_session_and_returns_a_one_hour_pair() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(true))));
        ports.hasher.expect_verify().returning(|_, _| Ok(true));
        ports
            .sessions
            .expect_create()
            .withf(|session, version, event| {
                let s = session.stored();
                event.kind == AuditKind::LoginSucceeded
                    && event.session_id == Some(session.id())
                    && s.account_id == ACCOUNT
                    && s.current_expires_at == NOW + Duration::days(30)
                    && s.expires_at == NOW + Duration::days(90)
                    && s.generation == 0
                    && s.authenticated_at == NOW
                    && *version == 4
            })
            .times(1)
            .returning(|_, _, _| Ok(true));
        ports.sessions.expect_device_known().returning(|_, _, _| Ok(false));
        ports.sessions.expect_remember_device().times(1).returning(|_, _, _| Ok(()));
        let (email, password) = credentials();
        let pair = ports.service().login(&email, &password, ClientInfo::default()).await.unwrap();
        assert!(pair.new_device.is_some(), "a device the account does not know gets a token");
        assert_eq!(pair.expires_in, 3600);
        assert!(pair.access_token.starts_with("at:"));
        assert!(pair.refresh_token.starts_with("rt:"));
    }

    fn live_session(secret: &RefreshSecret) -> Session {
        Session::start(SESSION, ACCOUNT, secret, NOW - Duration::minutes(5), Duration::days(30), Duration::days(90), ClientInfo::default())
    }

    /// The session as the winning rotation left it, `seconds_ago` before NOW.
    fn rotated_session(parent: &RefreshSecret, nonce: RotationNonce, seconds_ago: i64) -> Session {
        let child = parent.child(&nonce);
        let mut stored: StoredSession = live_session(parent).stored().clone();
        stored.previous_hash = Some(parent.hash());
        stored.current_hash = child.hash();
        stored.current_issued_at = NOW - Duration::seconds(seconds_ago);
        stored.rotation_nonce = Some(nonce);
        stored.generation = 1;
        Session::from_storage(stored)
    }

    #[tokio::test]
    async fn refresh_rotates_the_live_token_with_a_compare_and_swap() {
        let secret = RefreshSecret::from_bytes([1; 32]);
        let mut ports = Ports::new();
        let session = live_session(&secret);
        ports.sessions.expect_find().returning(move |_| Ok(Some(session.clone())));
        let expected = secret.hash();
        ports
            .sessions
            .expect_rotate()
            .withf(move |rotation| rotation.expected_current == expected && rotation.issued_at == NOW && rotation.generation == 1)
            .times(1)
            .returning(|_| Ok(true));
        let pair = ports.service().refresh(&refresh_token_for(&secret), None).await.unwrap();
        assert_ne!(pair.refresh_token, refresh_token_for(&secret));
        assert!(!pair.replayed);
    }

    #[tokio::test]
    async fn a_refresh_that_loses_the_race_gets_the_winners_pair_byte_for_byte() {
        let secret = RefreshSecret::from_bytes([1; 32]);
        let winner_nonce = RotationNonce::from_bytes([42; 16]);
        let winner = secret.child(&winner_nonce);

        let mut ports = Ports::new();
        // First read: still live. The CAS then fails because another request rotated it;
        // the second read shows the winner's rotation.
        let reads = Mutex::new(vec![rotated_session(&secret, winner_nonce, 0), live_session(&secret)]);
        ports.sessions.expect_find().times(2).returning(move |_| Ok(reads.lock().unwrap().pop()));
        ports.sessions.expect_rotate().times(1).returning(|_| Ok(false));
        ports.sessions.expect_revoke().never();
        let pair = ports.service().refresh(&refresh_token_for(&secret), None).await.unwrap();
        assert_eq!(pair.refresh_token, format!("rt:{}:{}", URL_SAFE_NO_PAD.encode(winner.expose()), NOW.unix_timestamp()));
        assert_eq!(pair.access_token, format!("at:{}:{}", winner.access_token_id(), NOW.unix_timestamp()));
    }

    #[tokio::test]
    async fn the_parent_token_inside_the_grace_window_gets_the_current_pair_again() {
        let secret = RefreshSecret::from_bytes([1; 32]);
        let nonce = RotationNonce::from_bytes([7; 16]);
        let mut ports = Ports::new();
        let session = rotated_session(&secret, nonce, 9);
        ports.sessions.expect_find().returning(move |_| Ok(Some(session.clone())));
        ports.sessions.expect_rotate().never();
        ports.sessions.expect_revoke().never();
        let service = ports.service();
        let first = service.refresh(&refresh_token_for(&secret), None).await.unwrap();
        let second = service.refresh(&refresh_token_for(&secret), None).await.unwrap();
        assert_eq!(first, second);
        assert!(first.replayed, "a grace replay says so, for the metrics");
        assert!(first.refresh_token.starts_with(&format!("rt:{}", URL_SAFE_NO_PAD.encode(secret.child(&nonce).expose()))));
    }

    #[tokio::test]
    async fn reuse_of_a_spent_token_revokes_the_whole_session() {
        let secret = RefreshSecret::from_bytes([1; 32]);
        let mut ports = Ports::new();
        let session = rotated_session(&secret, RotationNonce::from_bytes([7; 16]), 11);
        ports.sessions.expect_find().returning(move |_| Ok(Some(session.clone())));
        ports.sessions.expect_rotate().never();
        ports.accounts.expect_find_by_id().returning(|_| Ok(Some(account(true))));
        ports
            .sessions
            .expect_revoke_with_notice()
            .withf(|id, now, reason, notice, event| {
                event.kind == AuditKind::RefreshTokenReuse
                    && *id == SESSION
                    && *now == NOW
                    && *reason == RevocationReason::RefreshTokenReuse
                    && notice.kind() == EmailKind::RefreshTokenReuse
                    && notice.to().as_str() == "ann@example.com"
            })
            .times(1)
            .returning(|_, _, _, _, _| Ok(true));
        let outcome = ports.service().refresh(&refresh_token_for(&secret), None).await;
        assert!(matches!(outcome, Err(RefreshError::Reused { account_id: ACCOUNT, session_id: SESSION })));
    }

    #[tokio::test]
    async fn a_token_of_a_revoked_session_is_refused() {
        let secret = RefreshSecret::from_bytes([1; 32]);
        let mut stored = live_session(&secret).stored().clone();
        stored.revoked_at = Some(NOW - Duration::minutes(1));
        let mut ports = Ports::new();
        ports.sessions.expect_find().returning(move |_| Ok(Some(Session::from_storage(stored.clone()))));
        ports.sessions.expect_rotate().never();
        assert!(matches!(ports.service().refresh(&refresh_token_for(&secret), None).await, Err(RefreshError::Revoked)));
    }

    #[tokio::test]
    async fn a_token_naming_an_unknown_session_is_invalid() {
        let mut ports = Ports::new();
        ports.sessions.expect_find().returning(|_| Ok(None));
        let outcome = ports.service().refresh(&refresh_token_for(&RefreshSecret::from_bytes([1; 32])), None).await;
        assert!(matches!(outcome, Err(RefreshError::UnknownSession)));
    }

    fn signer_returning(claims: AccessClaims) -> MockTokenSigner {
        let mut signer = MockTokenSigner::new();
        signer.expect_verify_access().returning(move |_| Ok(claims.clone()));
        signer
    }

    fn access_claims(issued_at: OffsetDateTime) -> AccessClaims {
        AccessClaims { account_id: ACCOUNT, session_id: SESSION, token_id: Uuid::nil(), issued_at, expires_at: issued_at + Duration::hours(1) }
    }

    #[tokio::test]
    async fn authenticate_accepts_a_token_inside_its_lifetime_without_touching_storage() {
        let mut ports = Ports::new();
        ports.signer = signer_returning(access_claims(NOW - Duration::minutes(59)));
        ports.sessions.expect_find().never();
        assert_eq!(ports.service().authenticate("t").await.unwrap(), session_caller());
    }

    #[tokio::test]
    async fn authenticate_refuses_an_expired_token() {
        let mut ports = Ports::new();
        ports.signer = signer_returning(access_claims(NOW - Duration::hours(1)));
        assert!(matches!(ports.service().authenticate("t").await, Err(AuthenticateError::Expired)));
    }

    #[tokio::test]
    async fn authenticate_refuses_a_token_from_the_future_beyond_the_leeway() {
        let mut ports = Ports::new();
        ports.signer = signer_returning(access_claims(NOW + Duration::minutes(5)));
        assert!(matches!(ports.service().authenticate("t").await, Err(AuthenticateError::NotYetValid)));
    }

    #[tokio::test]
    async fn authenticate_passes_on_the_signers_rejection() {
        let mut ports = Ports::new();
        ports.signer = MockTokenSigner::new();
        ports.signer.expect_verify_access().returning(|_| Err(TokenRejection::WrongType));
        assert!(matches!(ports.service().authenticate("t").await, Err(AuthenticateError::Rejected(TokenRejection::WrongType))));
    }

    #[tokio::test]
    async fn with_the_session_check_on_a_revoked_sessions_access_token_is_refused_at_once() {
        let mut ports = Ports::new();
        ports.signer = signer_returning(access_claims(NOW - Duration::minutes(1)));
        let mut stored = live_session(&RefreshSecret::from_bytes([1; 32])).stored().clone();
        stored.revoked_at = Some(NOW - Duration::seconds(1));
        ports.sessions.expect_find().returning(move |_| Ok(Some(Session::from_storage(stored.clone()))));
        let mut service = ports.service();
        service.settings.verify_session_on_request = true;
        assert!(matches!(service.authenticate("t").await, Err(AuthenticateError::SessionRevoked)));
    }

    #[tokio::test]
    async fn logout_scopes_revoke_the_current_the_others_or_all() {
        use mockall::predicate::{always, eq};
        let mut ports = Ports::new();
        let session = live_session(&RefreshSecret::from_bytes([1; 32]));
        ports.sessions.expect_find().returning(move |_| Ok(Some(session.clone())));
        ports.sessions.expect_revoke().with(eq(SESSION), eq(NOW), eq(RevocationReason::Logout)).times(1).returning(|_, _, _| Ok(true));
        ports.sessions.expect_revoke_all().with(eq(ACCOUNT), eq(Some(SESSION)), eq(NOW), always()).times(1).returning(|_, _, _, _| Ok(2));
        ports.sessions.expect_revoke_all().with(eq(ACCOUNT), eq(None), eq(NOW), always()).times(1).returning(|_, _, _, _| Ok(3));
        let service = ports.service();
        service.logout(&session_caller(), LogoutScope::Current).await.unwrap();
        service.logout(&session_caller(), LogoutScope::Others).await.unwrap();
        service.logout(&session_caller(), LogoutScope::Global).await.unwrap();
    }

    #[tokio::test]
    async fn another_accounts_session_cannot_be_revoked_and_looks_absent() {
        let mut ports = Ports::new();
        let mut stored = live_session(&RefreshSecret::from_bytes([1; 32])).stored().clone();
        stored.account_id = AccountId::from_uuid(Uuid::from_u128(77));
        ports.sessions.expect_find().returning(move |_| Ok(Some(Session::from_storage(stored.clone()))));
        ports.sessions.expect_revoke().never();
        let caller = LiveSession::new(ACCOUNT, SESSION, NOW);
        assert!(matches!(ports.service().revoke(&caller, SESSION).await, Err(ManageSessionsError::NotFound)));
    }

    #[tokio::test]
    async fn an_api_key_cannot_manage_sessions() {
        let caller = Principal { account_id: ACCOUNT, method: AuthMethod::ApiKey(crate::newtypes::ApiKeyId::from_uuid(Uuid::nil())) };
        let service = Ports::new().service();
        assert!(matches!(service.require_live(&caller).await, Err(LiveSessionError::SessionRequired(_))));
        assert!(matches!(service.logout(&caller, LogoutScope::Global).await, Err(ManageSessionsError::SessionRequired(_))));
    }

    #[tokio::test]
    async fn a_token_of_an_ended_session_is_not_live_whatever_the_per_request_setting() {
        let mut ports = Ports::new();
        let mut stored = live_session(&RefreshSecret::from_bytes([1; 32])).stored().clone();
        stored.revoked_at = Some(NOW - Duration::seconds(1));
        ports.sessions.expect_find().returning(move |_| Ok(Some(Session::from_storage(stored.clone()))));
        ports.sessions.expect_revoke_all().never();
        let service = ports.service();
        assert!(!service.settings.verify_session_on_request);
        assert!(matches!(service.require_live(&session_caller()).await, Err(LiveSessionError::SessionEnded)));
        assert!(matches!(service.logout(&session_caller(), LogoutScope::Global).await, Err(ManageSessionsError::SessionEnded)));
    }

    #[tokio::test]
    async fn a_live_session_carries_the_time_of_its_last_authentication() {
        let mut ports = Ports::new();
        let session = live_session(&RefreshSecret::from_bytes([1; 32]));
        ports.sessions.expect_find().returning(move |_| Ok(Some(session.clone())));
        let live = ports.service().require_live(&session_caller()).await.unwrap();
        assert_eq!((live.session_id(), live.authenticated_at()), (SESSION, NOW - Duration::minutes(5)));
    }

    #[tokio::test]
    async fn reauthentication_checks_the_password_and_renews_the_sessions_authentication_time() {
        let mut ports = Ports::new();
        ports.accounts.expect_find_by_id().returning(|_| Ok(Some(account(true))));
        ports.hasher.expect_verify().returning(|password, _| Ok(password.expose() == "right one"));
        ports.sessions.expect_mark_authenticated().with(mockall::predicate::eq(SESSION), mockall::predicate::eq(NOW)).times(1).returning(|_, _| Ok(true));
        let service = ports.service();
        let caller = LiveSession::new(ACCOUNT, SESSION, NOW - Duration::hours(1));
        let wrong = service.reauthenticate(&caller, &Password::parse("wrong one".into()).unwrap(), None).await;
        assert!(matches!(wrong, Err(ReauthenticateError::WrongPassword)));
        assert_eq!(service.reauthenticate(&caller, &Password::parse("right one".into()).unwrap(), Some("192.0.2.7")).await.unwrap(), NOW);
    }

    /// A limiter whose counter under `over` (a key prefix) is past its limit; every other key is
    /// within it. Hits are recorded in `hits`.
    fn limiter_over(over: &'static str, hits: Arc<Mutex<Vec<String>>>) -> crate::limits::MockRateLimiter {
        use crate::limits::{LimitDecision, LimitPolicy};
        let decide = move |key: &str, policy: &LimitPolicy| LimitDecision {
            policy: *policy,
            allowed: !key.starts_with(over),
            remaining: 0,
            reset_after: Duration::seconds(42),
        };
        let mut limiter = crate::limits::MockRateLimiter::new();
        limiter.expect_peek().returning(move |key, policy, _| Ok(decide(key, policy)));
        limiter.expect_hit().returning(move |key, policy, _| {
            hits.lock().unwrap().push(format!("{}:{key}", policy.name));
            Ok(decide(key, policy))
        });
        limiter.expect_reset().returning(|_, _| Ok(()));
        limiter.expect_refund().returning(|_, _, _| Ok(()));
        limiter
    }

    /// A key the limiter mock can hold for the whole test.
    fn leak(key: String) -> &'static str {
        Box::leak(key.into_boxed_str())
    }

    fn client_at(ip: &str) -> ClientInfo {
        ClientInfo::new(Some("test"), Some(ip.into()))
    }

    #[tokio::test]
    async fn an_address_past_its_failed_login_limit_is_refused_before_any_hashing() {
        let mut ports = Ports::new();
        ports.limiter = limiter_over("192.0.2.7", Arc::default());
        ports.accounts.expect_find_by_email().never();
        ports.hasher.expect_verify().never();
        ports.hasher.expect_verify_against_dummy().never();
        let (email, password) = credentials();
        let outcome = ports.service().login(&email, &password, client_at("192.0.2.7")).await;
        assert!(matches!(outcome, Err(LoginError::Throttled(limited)) if limited.0.reset_after == Duration::seconds(42)));
    }

    #[tokio::test]
    async fn a_failed_login_counts_against_the_address_and_the_account_typed_known_or_not() {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let mut ports = Ports::new();
        ports.limiter = limiter_over("nothing", hits.clone());
        ports.accounts.expect_find_by_email().returning(|_| Ok(None));
        ports.hasher.expect_verify_against_dummy().times(1).returning(|_| Ok(()));
        let (email, password) = credentials();
        let outcome = ports.service().login(&email, &password, client_at("2001:db8:1:2::77")).await;
        assert!(matches!(outcome, Err(LoginError::InvalidCredentials)));
        let account_key = email_key(&credentials().0);
        assert_eq!(
            *hits.lock().unwrap(),
            [
                "login_failures_per_address:2001:db8:1:2::/64".to_owned(),
                format!("login_failures_per_account:{account_key}"),
                format!("login_failures_per_account_daily:{account_key}")
            ]
        );
    }

    #[tokio::test]
    async fn an_account_under_attack_refuses_unknown_clients_but_not_one_that_logged_in_before() {
        let mut ports = Ports::new();
        ports.limiter = limiter_over(leak(email_key(&credentials().0)), Arc::default());
        ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(true))));
        ports.sessions.expect_logged_in_from().returning(|_, ip, since| Ok(ip == "198.51.100.1" && since == NOW - Duration::days(30)));
        ports.hasher.expect_verify().returning(|_, _| Ok(true));
        ports.sessions.expect_create().times(1).returning(|_, _, _| Ok(true));
        ports.sessions.expect_device_known().returning(|_, _, _| Ok(false));
        ports.sessions.expect_remember_device().returning(|_, _, _| Ok(()));
        let service = ports.service();
        let (email, password) = credentials();
        let stranger = service.login(&email, &password, client_at("203.0.113.9")).await;
        assert!(matches!(stranger, Err(LoginError::Throttled(_))), "even with the right password, an unknown client waits");
        service.login(&email, &password, client_at("198.51.100.1")).await.unwrap();
    }

    #[tokio::test]
    async fn an_attack_that_waits_out_the_short_window_is_told_to_wait_for_the_daily_one() {
        use crate::limits::{LimitDecision, LimitPolicy};
        let mut limiter = crate::limits::MockRateLimiter::new();
        // The fifteen-minute tier has room again; the daily one is full.
        limiter.expect_hit().returning(|_, policy: &LimitPolicy, _| {
            let daily = policy.name == "login_failures_per_account_daily";
            let reset_after = if daily { Duration::hours(9) } else { Duration::minutes(4) };
            Ok(LimitDecision { policy: *policy, allowed: !daily, remaining: 0, reset_after })
        });
        let mut ports = Ports::new();
        ports.limiter = limiter;
        ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(true))));
        ports.sessions.expect_logged_in_from().returning(|_, _, _| Ok(false));
        ports.hasher.expect_verify().never();
        let (email, password) = credentials();
        let outcome = ports.service().login(&email, &password, client_at("203.0.113.9")).await;
        assert!(
            matches!(outcome, Err(LoginError::Throttled(limited)) if limited.0.reset_after == Duration::hours(9) && limited.0.policy.name == "login_failures_per_account_daily")
        );
    }

    #[tokio::test]
    async fn an_account_under_attack_lets_in_a_device_that_logged_in_before_from_any_address() {
        let mut ports = Ports::new();
        ports.limiter = limiter_over(leak(email_key(&credentials().0)), Arc::default());
        ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(true))));
        let known = crate::secret::DeviceToken::parse(&"A".repeat(43)).unwrap();
        let known_hash = known.hash();
        ports.sessions.expect_device_known().returning(move |_, device, _| Ok(*device == known_hash));
        ports.sessions.expect_logged_in_from().returning(|_, _, _| Ok(false));
        ports.hasher.expect_verify().returning(|_, _| Ok(true));
        ports.sessions.expect_create().times(1).returning(|_, _, _| Ok(true));
        ports.sessions.expect_remember_device().times(1).returning(|_, _, _| Ok(()));
        let service = ports.service();
        let (email, password) = credentials();
        let mut client = client_at("203.0.113.200");
        assert!(matches!(service.login(&email, &password, client.clone()).await, Err(LoginError::Throttled(_))));
        client.device = Some(known);
        let pair = service.login(&email, &password, client).await.unwrap();
        assert!(pair.new_device.is_none(), "a known device keeps its token");
    }
}
