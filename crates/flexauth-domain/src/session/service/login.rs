//! Logging in: the rate limits around the password check, the check itself (with the same
//! hashing work whether or not the account exists) and the new session with its device token.

use time::OffsetDateTime;

use super::SessionService;
use crate::account::{newest_pending_password, Account, Password};
use crate::audit::AuditKind;
use crate::limits::{address_key, email_key, LimitCounter, LimitPolicy, LimitSettlement, RateLimited};
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
        let account_key = email_key(email);
        // Attempts are counted before the password is checked, all counters in one atomic
        // step, so that concurrent attempts cannot all pass a limit that none of them has
        // counted yet; an attempt that turns out not to be a guess is refunded below. The
        // account is counted per address typed, whether or not it has an account, so the limit
        // itself tells nothing.
        let address = client.ip.as_deref().filter(|_| limits.enabled).map(address_key);
        let address_counter = address.map(|key| LimitCounter::new(key, limits.login_failures_per_address));
        let account_counters: Vec<LimitCounter> = if limits.enabled {
            limits
                .account_login_limits()
                .into_iter()
                .map(|policy| LimitCounter::new(account_key.clone(), policy))
                .collect()
        } else {
            Vec::new()
        };
        let counters: Vec<LimitCounter> = address_counter.iter().chain(&account_counters).cloned().collect();
        let decisions = if counters.is_empty() { Vec::new() } else { self.limiter.hit_all(&counters, now).await? };
        let (address_decision, account_decisions) = decisions.split_at(usize::from(address_counter.is_some()));
        if let Some(refused) = address_decision.iter().find(|decision| !decision.allowed) {
            // An address past its limit must not wear down the account's counters: the
            // owner's exemption aside, that would hand the lockout to whoever floods it.
            let refunds: Vec<LimitSettlement> = account_counters.iter().cloned().map(LimitSettlement::Refund).collect();
            self.limiter.settle(&refunds, now).await?;
            return Err(RateLimited(*refused).into());
        }
        let device = client.device.as_ref().map(DeviceToken::hash);
        let found = self.accounts.find_for_login(email, device).await?;
        // Both tiers count; a refusal names the longer wait.
        let refused = account_decisions
            .iter()
            .filter(|decision| !decision.allowed)
            .max_by_key(|decision| decision.reset_after)
            .copied();
        let under_attack = refused.is_some();
        if let Some(decision) = refused {
            // A client that logged in to the account from the same device or address before
            // is exempt: an attack from elsewhere never locks the owner out. The address is
            // looked up for an unknown email too (under an id no account has), so the time of
            // a throttled answer does not tell whether the account exists.
            let account = found.as_ref().map(|candidate| &candidate.account);
            let account_id = account.map_or(AccountId::from_uuid(uuid::Uuid::nil()), Account::id);
            // Nothing from before the account last forgot its clients counts.
            let since = account.map_or(limits.known_clients_since(now), |account| {
                account.clients_known_since(limits.known_clients_since(now))
            });
            let known_device =
                found.as_ref().and_then(|candidate| candidate.device_last_seen_at).is_some_and(|seen| seen >= since);
            let known = known_device
                || match &client.ip {
                    Some(ip) => self.sessions.logged_in_from(account_id, ip, since).await?,
                    None => false,
                };
            if !known {
                self.log_throttled(account, &account_key, &client, now).await?;
                return Err(RateLimited(decision).into());
            }
        }
        let account_id = found.as_ref().map(|candidate| candidate.account.id());
        let attempt = LoginAttempt { address: address_counter, account: account_counters, under_attack };
        let (has_second_factor, device_last_seen_at) = found
            .as_ref()
            .map_or((false, None), |candidate| (candidate.has_second_factor, candidate.device_last_seen_at));
        match self.check_password(found.map(|candidate| candidate.account), password, now).await {
            Err(LoginError::InvalidCredentials) => {
                if let Some(account_id) = account_id {
                    self.audit.record(&self.event(account_id, AuditKind::LoginFailed, now, &client, None)).await?;
                }
                Err(LoginError::InvalidCredentials)
            }
            Err(other) => {
                // The right password of an unverified account, or no check at all: no guess.
                self.settle(attempt, Outcome::NoGuess, now).await?;
                Err(other)
            }
            Ok(account) => {
                self.settle(attempt, Outcome::Success, now).await?;
                // A right password is not enough for an account with a second factor: the
                // client gets a challenge for the second step, never tokens.
                if has_second_factor {
                    let challenge = self.mfa.open_challenge(account.id(), account.credential_version(), client).await?;
                    return Err(LoginError::SecondFactorRequired(challenge));
                }
                let since = account.clients_known_since(limits.known_clients_since(now));
                let known = device_last_seen_at.is_some_and(|seen| seen >= since);
                self.open_session_on_device(&account, client, AuthenticationMethods::password(), now, known).await
            }
        }
    }

    /// Whether the device the client presented logged in to the account since it last
    /// forgot its clients (and within the window of known clients).
    pub(super) async fn device_known(
        &self,
        account: &Account,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Result<bool, InfraError> {
        let Some(device) = &client.device else {
            return Ok(false);
        };
        let since = account.clients_known_since(self.settings.limits.known_clients_since(now));
        self.sessions.device_known(account.id(), &device.hash(), since).await
    }

    /// Opens a session for a login made with `methods`, and keeps the client's device token
    /// when `device_known` (a device the account knows keeps its token; any other gets a new
    /// one), remembered with the session.
    pub(super) async fn open_session_on_device(
        &self,
        account: &Account,
        client: ClientInfo,
        methods: AuthenticationMethods,
        now: OffsetDateTime,
        device_known: bool,
    ) -> Result<TokenPair, LoginError> {
        let (device, new_device) = match client.device.clone() {
            Some(device) if device_known => (device, None),
            _ => {
                let fresh = DeviceToken::generate(self.random.as_ref());
                (fresh.clone(), Some(fresh))
            }
        };
        let pair = self.open_session(account, client, methods, &device, now).await?;
        Ok(TokenPair { new_device, ..pair })
    }

    /// Settles the counters `attempt` hit, once its outcome is known, in one step. An attempt
    /// that was no guess gives its counts back. A success gives back the address's count and
    /// clears the account's counters (a few typos are forgiven), unless the account is under
    /// attack: then it only gives its own count back, or every login of the exempt owner would
    /// hand the attacker a fresh allowance. Each counter is written once.
    async fn settle(&self, attempt: LoginAttempt, outcome: Outcome, now: OffsetDateTime) -> Result<(), InfraError> {
        let clear = outcome == Outcome::Success && !attempt.under_attack;
        let settlements: Vec<LimitSettlement> = attempt
            .address
            .into_iter()
            .map(LimitSettlement::Refund)
            .chain(attempt.account.into_iter().map(|counter| {
                if clear {
                    LimitSettlement::Clear(counter)
                } else {
                    LimitSettlement::Refund(counter)
                }
            }))
            .collect();
        if settlements.is_empty() {
            return Ok(());
        }
        self.limiter.settle(&settlements, now).await
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
        device: &DeviceToken,
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
        if !self.sessions.create(&session, account.credential_version(), &event, &device.hash()).await? {
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
struct LoginAttempt {
    /// The client's address counter, when it has an address and limits are on.
    address: Option<LimitCounter>,
    /// The account's counters (its two tiers), when limits are on.
    account: Vec<LimitCounter>,
    /// Whether the account's limit was reached (the client was let through as a known one).
    under_attack: bool,
}

/// How a login attempt that was not a wrong password ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The password was right but no session opened (unverified, disabled), or nothing was
    /// checked: no guess.
    NoGuess,
    /// A session opened.
    Success,
}
