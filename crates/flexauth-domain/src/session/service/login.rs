//! Logging in: the rate limits around the password check, the check itself (with the same
//! hashing work whether or not the account exists) and the new session with its device token.

use time::OffsetDateTime;

use super::SessionService;
use crate::account::{newest_pending_password, Account, Password};
use crate::audit::AuditKind;
use crate::limits::{address_key, email_key, LimitDecision, LimitPolicy, RateLimited};
use crate::newtypes::{AccountId, AuthenticationMethods, EmailAddress};
use crate::secret::DeviceToken;
use crate::session::{ClientInfo, LoginError, RefreshSecret, Session, SessionId, TokenPair};
use crate::system::{random_array, random_uuid};
use crate::InfraError;

impl SessionService {
    /// Checks the credentials and opens a session.
    ///
    /// # Errors
    /// [`LoginError::InvalidCredentials`] for an unknown email or a wrong password, after the
    /// same hashing work; [`LoginError::EmailNotVerified`] only once the password is proven
    /// right; [`LoginError::Unexpected`].
    pub async fn login(
        &self,
        email: &EmailAddress,
        password: &Password,
        client: ClientInfo,
    ) -> Result<TokenPair, LoginError> {
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
            let mut refused: Option<LimitDecision> = None;
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
                let account_id = found.as_ref().map_or(AccountId::from_uuid(uuid::Uuid::nil()), Account::id);
                // Nothing from before the account last forgot its clients counts.
                let since = found.as_ref().map_or(limits.known_clients_since(now), |account| {
                    account.clients_known_since(limits.known_clients_since(now))
                });
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
        let account_id = found.as_ref().map(Account::id);
        let attempt = LoginAttempt { address: address.as_deref(), account_key: &account_key, under_attack };
        match self.check_password(found, password, now).await {
            Err(LoginError::InvalidCredentials) => {
                if let Some(account_id) = account_id {
                    self.audit.record(&self.event(account_id, AuditKind::LoginFailed, now, &client, None)).await?;
                }
                Err(LoginError::InvalidCredentials)
            }
            Err(other) => {
                // The right password of an unverified account, or no check at all: no guess.
                self.settle(&attempt, Settlement::NoGuess, now).await?;
                Err(other)
            }
            Ok(account) => {
                self.settle(&attempt, Settlement::Success, now).await?;
                // A right password is not enough for an account with a second factor: the
                // client gets a challenge for the second step, never tokens.
                if self.mfa.has_factor(account.id()).await? {
                    let challenge = self.mfa.open_challenge(account.id(), account.credential_version(), client).await?;
                    return Err(LoginError::SecondFactorRequired(challenge));
                }
                self.open_session_on_device(&account, client, AuthenticationMethods::password(), now).await
            }
        }
    }

    /// Opens a session for a login made with `methods`, and keeps the client's device token
    /// (a device the account knows keeps its token; any other gets a new one).
    pub(super) async fn open_session_on_device(
        &self,
        account: &Account,
        client: ClientInfo,
        methods: AuthenticationMethods,
        now: OffsetDateTime,
    ) -> Result<TokenPair, LoginError> {
        let presented = client.device.clone();
        let mut pair = self.open_session(account, client, methods, now).await?;
        let since = account.clients_known_since(self.settings.limits.known_clients_since(now));
        let device = match presented {
            Some(device) if self.sessions.device_known(account.id(), &device.hash(), since).await? => device,
            _ => {
                let fresh = DeviceToken::generate(self.random.as_ref());
                pair.new_device = Some(fresh.clone());
                fresh
            }
        };
        self.sessions.remember_device(account.id(), &device.hash(), now).await?;
        Ok(pair)
    }

    /// Settles the counters `attempt` hit, once its outcome is known. An attempt that was no
    /// guess gives its counts back. A success gives back the address's count and clears the
    /// account's counters (a few typos are forgiven), unless the account is under attack:
    /// then it only gives its own count back, or every login of the exempt owner would hand
    /// the attacker a fresh allowance. Each counter is written once.
    async fn settle(
        &self,
        attempt: &LoginAttempt<'_>,
        outcome: Settlement,
        now: OffsetDateTime,
    ) -> Result<(), InfraError> {
        let limits = &self.settings.limits;
        if !limits.enabled {
            return Ok(());
        }
        if let Some(address) = attempt.address {
            self.limiter.refund(address, &limits.login_failures_per_address, now).await?;
        }
        let clear = outcome == Settlement::Success && !attempt.under_attack;
        for policy in limits.account_login_limits() {
            if clear {
                self.limiter.reset(attempt.account_key, &policy).await?;
            } else {
                self.limiter.refund(attempt.account_key, &policy, now).await?;
            }
        }
        Ok(())
    }

    /// Records a throttled login in the owner's log, at most once per window of the account
    /// limit, so a flood of refused attempts cannot bury the log.
    async fn log_throttled(
        &self,
        found: Option<&Account>,
        account_key: &str,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Result<(), InfraError> {
        let Some(account) = found else {
            return Ok(());
        };
        let once = LimitPolicy {
            name: "throttle_logged",
            limit: 1,
            window: self.settings.limits.login_failures_per_account.window,
        };
        if self.limiter.hit(account_key, &once, now).await?.allowed {
            self.audit.record(&self.event(account.id(), AuditKind::LoginThrottled, now, client, None)).await?;
        }
        Ok(())
    }

    /// Checks `password` against the account found (or a dummy hash for none), with the same
    /// hashing work either way.
    async fn check_password(
        &self,
        found: Option<Account>,
        password: &Password,
        now: OffsetDateTime,
    ) -> Result<Account, LoginError> {
        let Some(account) = found else {
            self.hasher.verify_against_dummy(password).await?;
            return Err(LoginError::InvalidCredentials);
        };
        if !account.is_email_verified() {
            // The account's own hash is only a placeholder until a confirmation sets it: the
            // password in play is that of the newest pending sign-up attempt, checked with the
            // one verification every other login does.
            let attempts = self.accounts.pending_signup_attempts(account.id(), now).await?;
            let Some(candidate) = newest_pending_password(&attempts) else {
                self.hasher.verify_against_dummy(password).await?;
                return Err(LoginError::InvalidCredentials);
            };
            return Err(if self.hasher.verify(password, candidate).await? {
                LoginError::EmailNotVerified
            } else {
                LoginError::InvalidCredentials
            });
        }
        if !self.hasher.verify(password, account.password_hash()).await? {
            return Err(LoginError::InvalidCredentials);
        }
        // Said only to whoever proved the password, like an unverified address.
        if account.is_disabled() {
            return Err(LoginError::AccountDisabled);
        }
        Ok(account)
    }

    /// Opens a session for `account`, whose password was just checked.
    pub(super) async fn open_session(
        &self,
        account: &Account,
        client: ClientInfo,
        methods: AuthenticationMethods,
        now: OffsetDateTime,
    ) -> Result<TokenPair, LoginError> {
        let secret = RefreshSecret::from_bytes(random_array(self.random.as_ref()));
        let session_id = SessionId::from_uuid(random_uuid(self.random.as_ref()));
        let event = self.event(account.id(), AuditKind::LoginSucceeded, now, &client, Some(session_id));
        let session = Session::start(
            session_id,
            account.id(),
            &secret,
            now,
            self.settings.refresh_ttl,
            self.settings.session_lifetime,
            client,
            methods,
        );
        if !self.sessions.create(&session, account.credential_version(), &event).await? {
            // The password was reset while this one was being checked: it is not the
            // account's password any more.
            return Err(LoginError::InvalidCredentials);
        }
        Ok(self.issue_pair(
            account.id(),
            session_id,
            methods,
            &secret,
            session.last_refreshed_at(),
            session.token_expires_at(),
        )?)
    }
}

/// The counters one login attempt hit before its password was checked.
struct LoginAttempt<'a> {
    /// The client's address key, when it has an address.
    address: Option<&'a str>,
    /// The key of the address typed.
    account_key: &'a str,
    /// Whether the account's limit was reached (the client was let through as a known one).
    under_attack: bool,
}

/// How a login attempt that was not a wrong password ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settlement {
    /// The password was right but no session opened (unverified, disabled), or nothing was
    /// checked: no guess.
    NoGuess,
    /// A session opened.
    Success,
}
