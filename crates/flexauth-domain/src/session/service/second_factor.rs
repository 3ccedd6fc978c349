//! The second factor of a session: the second step of a login on an account that has one, and
//! the step-up that a live session makes before the operations that guard the account. Wrong
//! codes are counted per challenge (five end it) and per account (in two windows, from which a
//! client the account knows is exempt, as at login), so that a guesser holding the password
//! gets a few hundred tries a year and never locks the owner out.

use time::OffsetDateTime;

use super::SessionService;
use crate::audit::AuditKind;
use crate::limits::{address_key, LimitDecision, RateLimited};
use crate::mfa::{CeremonyId, ConfirmedFactor, FactorId, MfaError, SecondFactorProof, SecondStepError};
use crate::newtypes::{AccountId, AuthenticationMethod, AuthenticationMethods, ClientInfo};
use crate::principal::{LiveSession, SessionEnded};
use crate::secret::LinkToken;
use crate::session::{LoginError, TokenPair};
use crate::InfraError;

/// The key of an account's counters of wrong second-factor codes.
fn second_factor_key(account_id: AccountId) -> String {
    format!("second-factor:{account_id}")
}

impl SessionService {
    /// The second step of a login: the challenge token a right password yielded, and a code
    /// of the account's authenticator or a recovery code. Returns the tokens of a new session
    /// whose `amr` names both methods. The challenge is spent by the step that succeeds.
    ///
    /// # Errors
    /// [`SecondStepError::InvalidChallenge`] (unknown, spent, expired, or ended by wrong
    /// codes), [`SecondStepError::WrongCode`], [`SecondStepError::Throttled`],
    /// [`SecondStepError::AccountDisabled`] or [`SecondStepError::Unexpected`].
    pub async fn login_second_step(
        &self,
        token: &LinkToken,
        proof: &SecondFactorProof,
        client: ClientInfo,
    ) -> Result<TokenPair, SecondStepError> {
        let now = self.clock.now();
        let challenge = self.mfa.challenge(token).await?;
        let account = self.accounts.find_by_id(challenge.account_id).await?.ok_or(SecondStepError::InvalidChallenge)?;
        if account.is_disabled() {
            return Err(SecondStepError::AccountDisabled);
        }
        // A password reset or change since the password step ends the challenge, as it ends
        // sessions; the session below opens only at this version.
        if account.credential_version() != challenge.credential_version {
            return Err(SecondStepError::InvalidChallenge);
        }
        let since = account.clients_known_since(self.settings.limits.known_clients_since(now));
        let known = self.is_known_client(account.id(), &client, since).await?;
        let counted = self.count_second_factor_try(account.id(), known, now).await?;
        let Some(proved) = self.mfa.prove(account.id(), proof, None, &client).await? else {
            self.audit.record(&self.event(account.id(), AuditKind::SecondFactorFailed, now, &client, None)).await?;
            self.mfa.fail_challenge(token).await?;
            return Err(SecondStepError::WrongCode);
        };
        self.refund_second_factor_try(account.id(), counted, now).await?;
        // Of two requests that both proved a factor (a code and a recovery code), one opens
        // the session.
        if !self.mfa.spend_challenge(token).await? {
            return Err(SecondStepError::InvalidChallenge);
        }
        let methods = AuthenticationMethods::password().with(proved.method);
        let device_known = self.device_known(&account, &client, now).await?;
        self.open_session_on_device(&account, client, methods, now, device_known).await.map_err(|error| match error {
            // The password was reset between the steps.
            LoginError::InvalidCredentials => SecondStepError::InvalidChallenge,
            LoginError::Unexpected(cause) => SecondStepError::Unexpected(cause),
            other => SecondStepError::Unexpected(InfraError::new(other.to_string())),
        })
    }

    /// A step-up: the caller's session proves the account's second factor again, for the
    /// operations that need a recent one. Returns when it was proved.
    ///
    /// # Errors
    /// [`SecondStepError::WrongCode`], [`SecondStepError::Throttled`],
    /// [`SecondStepError::SessionEnded`] when the session ended meanwhile, or
    /// [`SecondStepError::Unexpected`].
    pub async fn step_up(
        &self,
        caller: &LiveSession,
        proof: &SecondFactorProof,
        client: &ClientInfo,
    ) -> Result<OffsetDateTime, SecondStepError> {
        let now = self.clock.now();
        let account_id = caller.account_id();
        // A stolen access token is enough to ask: the session gets five wrong codes in 15
        // minutes, and the account's counters refuse past their limits with no exemption (a
        // session is not a client the owner proved; the owner's logins stay exempt).
        let session_key = format!("second-factor-session:{}", caller.session_id());
        let limits = &self.settings.limits;
        if limits.enabled {
            let decision = self.limiter.hit(&session_key, &limits.second_factor_failures_per_session, now).await?;
            if !decision.allowed {
                return Err(RateLimited(decision).into());
            }
        }
        let counted = match self.count_second_factor_try(account_id, false, now).await {
            Ok(counted) => counted,
            Err(refused) => {
                if limits.enabled {
                    self.limiter.refund(&session_key, &limits.second_factor_failures_per_session, now).await?;
                }
                return Err(refused);
            }
        };
        let Some(proved) = self.mfa.prove(account_id, proof, Some(caller.session_id()), client).await? else {
            let event = self.event(account_id, AuditKind::SecondFactorFailed, now, client, Some(caller.session_id()));
            self.audit.record(&event).await?;
            return Err(SecondStepError::WrongCode);
        };
        self.refund_second_factor_try(account_id, counted, now).await?;
        if limits.enabled {
            self.limiter.refund(&session_key, &limits.second_factor_failures_per_session, now).await?;
        }
        let methods = AuthenticationMethods::password().with(proved.method);
        if self.sessions.mark_second_factor(caller.session_id(), now, methods).await? {
            Ok(now)
        } else {
            Err(SessionEnded.into())
        }
    }

    /// Confirms the caller's TOTP enrolment with its first code
    /// ([`crate::mfa::MfaService::confirm_totp`]); the caller's session has proved the factor
    /// with it, and counts as such.
    ///
    /// # Errors
    /// [`MfaError`], [`MfaError::Unexpected`] also when the session ended meanwhile.
    pub async fn confirm_totp(
        &self,
        caller: &LiveSession,
        id: FactorId,
        code: &str,
        client: ClientInfo,
    ) -> Result<ConfirmedFactor, MfaError> {
        let confirmed = self.mfa.confirm_totp(caller, id, code, client).await?;
        let methods = AuthenticationMethods::password().with(AuthenticationMethod::OneTimeCode);
        // A session that ended meanwhile keeps nothing; the factor counts all the same.
        self.sessions.mark_second_factor(caller.session_id(), self.clock.now(), methods).await?;
        Ok(confirmed)
    }

    /// Begins a login with a passkey ([`crate::mfa::MfaService::begin_passkey_authentication`]),
    /// counted against the client address: a passwordless start needs no credential and stores
    /// a ceremony, so one address may begin 30 a minute.
    ///
    /// # Errors
    /// [`SecondStepError::Throttled`], and those of the ceremony's start.
    pub async fn begin_passkey_login(
        &self,
        mfa_token: Option<&LinkToken>,
        client: &ClientInfo,
    ) -> Result<crate::mfa::CeremonyStarted, SecondStepError> {
        let limits = &self.settings.limits;
        if let (true, Some(ip)) = (limits.enabled, &client.ip) {
            let key = format!("passkey-ceremonies:{}", address_key(ip));
            let decision = self.limiter.hit(&key, &limits.passkey_ceremonies_per_address, self.clock.now()).await?;
            if !decision.allowed {
                return Err(RateLimited(decision).into());
            }
        }
        self.mfa.begin_passkey_authentication(mfa_token).await
    }

    /// A login with a passkey: the browser's answer to ceremony `id`, begun with
    /// [`crate::mfa::MfaService::begin_passkey_authentication`]. As the second step of a
    /// password login it spends that login's challenge, and the tokens say `pwd` and the
    /// passkey; passwordless, they say the passkey alone (a multi-factor login: the passkey
    /// verified its user).
    ///
    /// # Errors
    /// [`SecondStepError::InvalidCeremony`], [`SecondStepError::PasskeyRefused`],
    /// [`SecondStepError::InvalidChallenge`] when the login's challenge was spent or ended
    /// meanwhile, [`SecondStepError::AccountDisabled`] or [`SecondStepError::Unexpected`].
    pub async fn login_with_passkey(
        &self,
        id: CeremonyId,
        credential: &str,
        client: ClientInfo,
    ) -> Result<TokenPair, SecondStepError> {
        let now = self.clock.now();
        let login = self.mfa.finish_passkey_authentication(id, credential).await?;
        let account = self.accounts.find_by_id(login.account_id).await?.ok_or(SecondStepError::InvalidChallenge)?;
        if account.is_disabled() {
            return Err(SecondStepError::AccountDisabled);
        }
        let methods = match login.challenge {
            Some((challenge, credential_version)) => {
                if account.credential_version() != credential_version {
                    return Err(SecondStepError::InvalidChallenge);
                }
                if !self.mfa.spend_challenge_digest(&challenge).await? {
                    return Err(SecondStepError::InvalidChallenge);
                }
                AuthenticationMethods::password().with(login.method)
            }
            None => AuthenticationMethods::default().with(login.method),
        };
        let device_known = self.device_known(&account, &client, now).await?;
        self.open_session_on_device(&account, client, methods, now, device_known).await.map_err(|error| match error {
            LoginError::InvalidCredentials => SecondStepError::InvalidChallenge,
            LoginError::Unexpected(cause) => SecondStepError::Unexpected(cause),
            other => SecondStepError::Unexpected(InfraError::new(other.to_string())),
        })
    }

    async fn is_known_client(
        &self,
        account_id: AccountId,
        client: &ClientInfo,
        since: OffsetDateTime,
    ) -> Result<bool, InfraError> {
        if let Some(device) = &client.device {
            if self.sessions.device_known(account_id, &device.hash(), since).await? {
                return Ok(true);
            }
        }
        match &client.ip {
            Some(ip) => self.sessions.logged_in_from(account_id, ip, since).await,
            None => Ok(false),
        }
    }

    /// Counts one try against the account's counters before the code is checked, so that
    /// concurrent tries cannot all pass a limit none of them has counted. A known client is
    /// let through a full counter. Returns whether the counters were hit (to refund them on a
    /// right code).
    async fn count_second_factor_try(
        &self,
        account_id: AccountId,
        known_client: bool,
        now: OffsetDateTime,
    ) -> Result<bool, SecondStepError> {
        let limits = &self.settings.limits;
        if !limits.enabled {
            return Ok(false);
        }
        let key = second_factor_key(account_id);
        let mut refused: Option<LimitDecision> = None;
        for policy in limits.second_factor_limits() {
            let decision = self.limiter.hit(&key, &policy, now).await?;
            if !decision.allowed && refused.is_none_or(|earlier| decision.reset_after > earlier.reset_after) {
                refused = Some(decision);
            }
        }
        match refused {
            Some(decision) if !known_client => Err(RateLimited(decision).into()),
            _ => Ok(true),
        }
    }

    async fn refund_second_factor_try(
        &self,
        account_id: AccountId,
        counted: bool,
        now: OffsetDateTime,
    ) -> Result<(), InfraError> {
        if !counted {
            return Ok(());
        }
        let key = second_factor_key(account_id);
        for policy in self.settings.limits.second_factor_limits() {
            self.limiter.refund(&key, &policy, now).await?;
        }
        Ok(())
    }
}
