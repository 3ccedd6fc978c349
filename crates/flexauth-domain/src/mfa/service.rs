use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use time::{Duration, OffsetDateTime};

use super::SealedSecret;
use super::{
    CeremonyId, CeremonyPurpose, Factor, FactorConfirmation, FactorId, FactorKind, FactorName, FactorRepository,
    MfaChallenge, OneTimeCodes, PasskeyAddition, PasskeyCeremony, PasskeyRefusal, Passkeys, RecoveryCode,
    SecondFactorProof, SecretSealer, StoredFactor, TotpEnrolment, TotpSecret, RECOVERY_CODE_COUNT,
};
use crate::account::AccountRepository;
use crate::audit::{AuditEvent, AuditKind};
use crate::mail::{Letter, Letters};
use crate::newtypes::{AccountId, AuthenticationMethod, ClientInfo, SessionId};
use crate::principal::{AccountGone, LiveSession, ReauthenticationRequired};
use crate::secret::{LinkToken, TokenHash};
use crate::system::{random_uuid, Clock, SecureRandom};
use crate::InfraError;

pub use crate::principal::StepUpRequired;

/// The settings of the second-factor rules.
#[derive(Debug, Clone)]
pub struct MfaSettings {
    /// The issuer an authenticator app shows beside the account (the public URL's host).
    pub issuer: String,
    /// How long the second step of a login may wait after the password (5 minutes).
    pub challenge_ttl: Duration,
    /// Wrong codes a login challenge survives; the next one ends it (5).
    pub challenge_failures: u32,
    /// How recently the session must have proved its password to add or remove a factor or
    /// make new recovery codes (10 minutes), as for API keys.
    pub reauthentication_window: Duration,
    /// How recently the session must have proved a second factor, when the account has one,
    /// for the operations that guard the account (10 minutes).
    pub step_up_window: Duration,
    /// How long an enrolment may wait for its first code (1 hour); unconfirmed factors older
    /// than that are deleted with the next enrolment.
    pub enrolment_ttl: Duration,
    /// The most confirmed factors an account may have (10).
    pub max_factors: usize,
    /// How long a passkey ceremony may wait for the browser's answer (5 minutes).
    pub ceremony_ttl: Duration,
}

impl Default for MfaSettings {
    fn default() -> Self {
        Self {
            issuer: "flexauth".to_owned(),
            challenge_ttl: Duration::minutes(5),
            challenge_failures: 5,
            reauthentication_window: Duration::minutes(10),
            step_up_window: Duration::minutes(10),
            enrolment_ttl: Duration::hours(1),
            max_factors: 10,
            ceremony_ttl: Duration::minutes(5),
        }
    }
}

/// Why a second-factor operation of the owner failed.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// The session has not proved its password recently enough.
    #[error(transparent)]
    ReauthenticationRequired(#[from] ReauthenticationRequired),
    /// The account has a factor and the session has not proved one recently enough.
    #[error(transparent)]
    StepUpRequired(#[from] StepUpRequired),
    /// The account was deleted meanwhile.
    #[error(transparent)]
    AccountGone(#[from] AccountGone),
    /// No such factor belongs to the caller (or its enrolment expired).
    #[error("no such factor")]
    NotFound,
    /// The factor was confirmed already.
    #[error("the factor is confirmed already")]
    AlreadyConfirmed,
    /// The code is not the authenticator's code of now.
    #[error("the code is wrong")]
    WrongCode,
    /// Recovery codes need a confirmed factor first.
    #[error("the account has no second factor")]
    NoFactor,
    /// The passkey ceremony is unknown, used, expired or another account's.
    #[error("no such passkey ceremony")]
    InvalidCeremony,
    /// The server has no WebAuthn relying party.
    #[error(transparent)]
    PasskeysUnavailable(#[from] PasskeysUnavailable),
    /// The passkey credential does not verify, or is registered already.
    #[error(transparent)]
    PasskeyRefused(#[from] PasskeyRefusal),
    /// The account has as many factors as it may, or as many enrolments waiting for their
    /// first code.
    #[error("the account has the most factors it may have")]
    TooManyFactors,
    /// The store failed; nothing was written.
    #[error(transparent)]
    Unexpected(#[from] InfraError),
}

/// Why the second step of a login, or a step-up, was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecondStepError {
    /// The challenge token is unknown, spent, expired, or ended by too many wrong codes: log
    /// in again with the password.
    #[error("the login challenge is not valid; log in again")]
    InvalidChallenge,
    /// The code or recovery code is wrong, or was used before.
    #[error("the code is wrong")]
    WrongCode,
    /// The account has been disabled since the password step.
    #[error("the account is disabled")]
    AccountDisabled,
    /// The caller's session ended before the step-up was recorded.
    #[error(transparent)]
    SessionEnded(#[from] crate::principal::SessionEnded),
    /// The passkey ceremony is unknown, used, expired, or not of this login.
    #[error("no such passkey ceremony")]
    InvalidCeremony,
    /// The server has no WebAuthn relying party.
    #[error(transparent)]
    PasskeysUnavailable(#[from] PasskeysUnavailable),
    /// The passkey credential does not verify, or is no passkey of the account.
    #[error(transparent)]
    PasskeyRefused(#[from] PasskeyRefusal),
    /// Too many wrong codes for this account.
    #[error(transparent)]
    Throttled(#[from] crate::limits::RateLimited),
    /// The store failed.
    #[error(transparent)]
    Unexpected(#[from] InfraError),
}

/// A login challenge handed to the client in place of tokens.
#[derive(Clone)]
pub struct ChallengeIssued {
    /// The single-use token of the second step.
    pub token: LinkToken,
    /// What the second step accepts (`totp`, `recovery_code`).
    pub methods: Vec<&'static str>,
    /// Seconds until the challenge expires.
    pub expires_in: i64,
}

impl std::fmt::Debug for ChallengeIssued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChallengeIssued").field("methods", &self.methods).finish_non_exhaustive()
    }
}

/// The server has no WebAuthn relying party (its public URL is on an IP address and no id was
/// named), so passkeys are off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("passkeys are not available on this server")]
pub struct PasskeysUnavailable;

/// A passkey ceremony begun: the options for `navigator.credentials`, and the id that the
/// browser's answer is sent to.
#[derive(Debug, Clone)]
pub struct CeremonyStarted {
    pub ceremony_id: CeremonyId,
    /// The `publicKey` options, JSON.
    pub options: String,
}

/// A passkey that verified for a login.
#[derive(Debug, Clone)]
pub struct PasskeyLogin {
    pub account_id: AccountId,
    /// `hwk` or `swk`.
    pub method: AuthenticationMethod,
    /// The login challenge it is the second step of, with the credential version its password
    /// was checked at; `None` for a passwordless login.
    pub challenge: Option<(TokenHash, i64)>,
}

/// The factors of an account, as its owner sees them.
#[derive(Debug, Clone)]
pub struct MfaOverview {
    /// The confirmed factors, oldest first.
    pub factors: Vec<Factor>,
    /// Unused recovery codes.
    pub recovery_codes_left: u32,
}

/// A factor that counts from now on.
#[derive(Debug, Clone)]
pub struct ConfirmedFactor {
    pub factor_id: FactorId,
    /// The recovery codes, shown this once, when this is the account's first factor.
    pub recovery_codes: Option<Vec<RecoveryCode>>,
}

/// What proved the second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvedSecondFactor {
    /// The method, for the `amr` claim.
    pub method: AuthenticationMethod,
}

/// The rules of second factors: enrolment, removal, recovery codes, and the proof of a
/// second factor that a login's second step and a step-up check.
#[derive(Clone)]
pub struct MfaService {
    factors: Arc<dyn FactorRepository>,
    accounts: Arc<dyn AccountRepository>,
    codes: Arc<dyn OneTimeCodes>,
    sealer: Arc<dyn SecretSealer>,
    /// `None` when the server has no WebAuthn relying party.
    passkeys: Option<Arc<dyn Passkeys>>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
    letters: Letters,
    settings: MfaSettings,
}

impl std::fmt::Debug for MfaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaService").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// The storage slot a factor's secret is sealed for: a sealed secret copied to another row
/// does not open.
fn slot(id: FactorId) -> String {
    format!("totp:{id}")
}

/// Compares two codes in time that does not depend on where they differ.
fn same_code(left: &str, right: &str) -> bool {
    left.len() == right.len() && left.bytes().zip(right.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The TOTP time step of `now`: 30-second steps since the epoch.
fn step_of(now: OffsetDateTime) -> i64 {
    now.unix_timestamp().div_euclid(30)
}

impl MfaService {
    /// Wires the service to its ports.
    // One argument per port, each a distinct capability.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        factors: Arc<dyn FactorRepository>,
        accounts: Arc<dyn AccountRepository>,
        codes: Arc<dyn OneTimeCodes>,
        sealer: Arc<dyn SecretSealer>,
        passkeys: Option<Arc<dyn Passkeys>>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn SecureRandom>,
        letters: Letters,
        settings: MfaSettings,
    ) -> Self {
        Self { factors, accounts, codes, sealer, passkeys, clock, random, letters, settings }
    }

    /// The settings.
    pub fn settings(&self) -> &MfaSettings {
        &self.settings
    }

    fn event(&self, account_id: AccountId, kind: AuditKind, now: OffsetDateTime) -> AuditEvent {
        AuditEvent::new(self.random.as_ref(), account_id, kind, now)
    }

    /// Whether the account has a confirmed factor (then a right password yields a challenge,
    /// not tokens).
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    pub async fn has_factor(&self, account_id: AccountId) -> Result<bool, InfraError> {
        self.factors.has_confirmed_factor(account_id).await
    }

    /// The caller's confirmed factors and how many recovery codes are left.
    ///
    /// # Errors
    /// [`MfaError::Unexpected`].
    pub async fn overview(&self, caller: &LiveSession) -> Result<MfaOverview, MfaError> {
        let factors = self.factors.factors(caller.account_id()).await?;
        let factors = factors.iter().filter(|factor| factor.confirmed_at.is_some()).map(Factor::from).collect();
        let recovery_codes_left = self.factors.recovery_codes_left(caller.account_id()).await?;
        Ok(MfaOverview { factors, recovery_codes_left })
    }

    /// The checks every change to the caller's factors passes: a recent password, and a
    /// recent second factor when the account has one.
    fn require_recent_proof(&self, caller: &LiveSession, now: OffsetDateTime) -> Result<(), MfaError> {
        caller.require_recent_authentication(now, self.settings.reauthentication_window)?;
        caller.require_recent_second_factor(now, self.settings.step_up_window)?;
        Ok(())
    }

    /// Starts adding a TOTP authenticator: a fresh secret, sealed and stored with an
    /// unconfirmed factor, and what the app needs to read it. The factor counts only once
    /// [`MfaService::confirm_totp`] sees a first code.
    ///
    /// # Errors
    /// [`MfaError::ReauthenticationRequired`], [`MfaError::StepUpRequired`],
    /// [`MfaError::TooManyFactors`], [`MfaError::AccountGone`] or [`MfaError::Unexpected`].
    pub async fn begin_totp(&self, caller: &LiveSession, name: Option<FactorName>) -> Result<TotpEnrolment, MfaError> {
        let now = self.clock.now();
        self.require_recent_proof(caller, now)?;
        let account = self.accounts.find_by_id(caller.account_id()).await?.ok_or(AccountGone)?;
        let existing = self.factors.factors(account.id()).await?;
        let confirmed = existing.iter().filter(|factor| factor.confirmed_at.is_some()).count();
        // Enrolments still waiting for their first code count too, so that a session cannot
        // fill the table with them.
        let waiting = existing
            .iter()
            .filter(|factor| factor.confirmed_at.is_none() && factor.created_at >= now - self.settings.enrolment_ttl)
            .count();
        if confirmed >= self.settings.max_factors || waiting >= self.settings.max_factors {
            return Err(MfaError::TooManyFactors);
        }
        let id = FactorId::from_uuid(random_uuid(self.random.as_ref()));
        let secret = TotpSecret::generate(self.random.as_ref());
        let sealed = self.sealer.seal(&slot(id), &URL_SAFE_NO_PAD.encode(secret.expose()))?;
        let name = match name {
            Some(name) => name,
            None => FactorName::from_storage("authenticator app".to_owned()),
        };
        let factor = StoredFactor {
            id,
            account_id: account.id(),
            kind: FactorKind::Totp,
            name,
            secret: sealed,
            credential_id: None,
            created_at: now,
            confirmed_at: None,
            last_step: None,
            last_used_at: None,
        };
        self.factors.add_factor(&factor, now - self.settings.enrolment_ttl).await?;
        let (secret_text, otpauth_uri, qr_svg) =
            self.codes.describe(&secret, &self.settings.issuer, account.email().as_str());
        Ok(TotpEnrolment { factor_id: id, secret: secret_text, otpauth_uri, qr_svg })
    }

    /// Confirms an enrolment with the authenticator's first `code`, which is spent. The
    /// account's first factor comes with ten recovery codes, shown this once. The owner is
    /// told by email, and the caller's session counts as having proved the factor.
    ///
    /// # Errors
    /// [`MfaError::NotFound`] (also for an expired enrolment), [`MfaError::AlreadyConfirmed`],
    /// [`MfaError::WrongCode`], [`MfaError::ReauthenticationRequired`],
    /// [`MfaError::StepUpRequired`] or [`MfaError::Unexpected`].
    pub async fn confirm_totp(
        &self,
        caller: &LiveSession,
        id: FactorId,
        code: &str,
        client: ClientInfo,
    ) -> Result<ConfirmedFactor, MfaError> {
        let now = self.clock.now();
        self.require_recent_proof(caller, now)?;
        let account = self.accounts.find_by_id(caller.account_id()).await?.ok_or(AccountGone)?;
        let factors = self.factors.factors(account.id()).await?;
        let factor = factors.iter().find(|factor| factor.id == id).ok_or(MfaError::NotFound)?;
        if factor.confirmed_at.is_some() {
            return Err(MfaError::AlreadyConfirmed);
        }
        if factor.created_at < now - self.settings.enrolment_ttl {
            return Err(MfaError::NotFound);
        }
        let step = self.matching_step(factor, code, now)?.ok_or(MfaError::WrongCode)?;
        let first = !factors.iter().any(|factor| factor.confirmed_at.is_some());
        let recovery_codes: Option<Vec<RecoveryCode>> = first.then(|| self.new_recovery_codes());
        let hashes: Vec<TokenHash> = recovery_codes.iter().flatten().map(RecoveryCode::hash).collect();
        let event = self
            .event(account.id(), AuditKind::SecondFactorAdded, now)
            .of_session(caller.session_id())
            .of_factor(factor.id)
            .from_client(client);
        let letter = Letter::SecondFactorAdded {
            factor_name: factor.name.as_str().to_owned(),
            factor_kind: factor.kind.as_str(),
        };
        let notice = self.letters.email(random_uuid(self.random.as_ref()), account.email().clone(), &letter);
        let confirmation = FactorConfirmation {
            account_id: account.id(),
            factor_id: id,
            step,
            at: now,
            recovery_codes: hashes,
            event,
            notice,
        };
        let confirmed = self.factors.confirm_factor(&confirmation).await?;
        if !confirmed {
            return Err(MfaError::AlreadyConfirmed);
        }
        Ok(ConfirmedFactor { factor_id: id, recovery_codes })
    }

    /// Removes one of the caller's factors (confirmed or not); with the last one go the
    /// recovery codes. The owner is told by email.
    ///
    /// # Errors
    /// [`MfaError::NotFound`], [`MfaError::ReauthenticationRequired`],
    /// [`MfaError::StepUpRequired`] or [`MfaError::Unexpected`].
    pub async fn remove(&self, caller: &LiveSession, id: FactorId, client: ClientInfo) -> Result<(), MfaError> {
        let now = self.clock.now();
        self.require_recent_proof(caller, now)?;
        let account = self.accounts.find_by_id(caller.account_id()).await?.ok_or(AccountGone)?;
        let factors = self.factors.factors(account.id()).await?;
        let factor = factors.iter().find(|factor| factor.id == id).ok_or(MfaError::NotFound)?;
        let event = self
            .event(account.id(), AuditKind::SecondFactorRemoved, now)
            .of_session(caller.session_id())
            .of_factor(id)
            .from_client(client);
        let letter = Letter::SecondFactorRemoved { factor_name: factor.name.as_str().to_owned() };
        let notice = self.letters.email(random_uuid(self.random.as_ref()), account.email().clone(), &letter);
        if self.factors.remove_factor(account.id(), id, &event, &notice).await? {
            Ok(())
        } else {
            Err(MfaError::NotFound)
        }
    }

    /// A new set of recovery codes, shown this once; the old set dies. The owner is told by
    /// email.
    ///
    /// # Errors
    /// [`MfaError::NoFactor`], [`MfaError::ReauthenticationRequired`],
    /// [`MfaError::StepUpRequired`] or [`MfaError::Unexpected`].
    pub async fn regenerate_recovery_codes(
        &self,
        caller: &LiveSession,
        client: ClientInfo,
    ) -> Result<Vec<RecoveryCode>, MfaError> {
        let now = self.clock.now();
        self.require_recent_proof(caller, now)?;
        let account = self.accounts.find_by_id(caller.account_id()).await?.ok_or(AccountGone)?;
        if !self.factors.has_confirmed_factor(account.id()).await? {
            return Err(MfaError::NoFactor);
        }
        let codes = self.new_recovery_codes();
        let hashes: Vec<TokenHash> = codes.iter().map(RecoveryCode::hash).collect();
        let event = self
            .event(account.id(), AuditKind::RecoveryCodesRegenerated, now)
            .of_session(caller.session_id())
            .from_client(client);
        let notice = self.letters.email(
            random_uuid(self.random.as_ref()),
            account.email().clone(),
            &Letter::RecoveryCodesRegenerated,
        );
        self.factors.replace_recovery_codes(account.id(), &hashes, now, &event, &notice).await?;
        Ok(codes)
    }

    /// Removes every factor and recovery code of the account, for an operator helping an
    /// owner who lost both; audited and emailed to the owner.
    ///
    /// # Errors
    /// [`MfaError::AccountGone`] or [`MfaError::Unexpected`].
    pub async fn reset_by_operator(&self, account_id: AccountId) -> Result<(), MfaError> {
        let now = self.clock.now();
        let account = self.accounts.find_by_id(account_id).await?.ok_or(AccountGone)?;
        let event = self.event(account.id(), AuditKind::SecondFactorsReset, now);
        let notice =
            self.letters.email(random_uuid(self.random.as_ref()), account.email().clone(), &Letter::SecondFactorsReset);
        self.factors.remove_all(account.id(), &event, &notice).await?;
        Ok(())
    }

    fn new_recovery_codes(&self) -> Vec<RecoveryCode> {
        (0..RECOVERY_CODE_COUNT).map(|_| RecoveryCode::generate(self.random.as_ref())).collect()
    }

    /// The time step whose code `code` is, within one step of now, if it is later than every
    /// step the factor accepted before.
    fn matching_step(&self, factor: &StoredFactor, code: &str, now: OffsetDateTime) -> Result<Option<i64>, InfraError> {
        let typed: String = code.chars().filter(|character| !character.is_whitespace()).collect();
        if typed.len() != 6 || !typed.bytes().all(|byte| byte.is_ascii_digit()) {
            return Ok(None);
        }
        let secret = self.open(factor)?;
        let current = step_of(now);
        for step in [current - 1, current, current + 1] {
            if factor.last_step.is_some_and(|last| step <= last) {
                continue;
            }
            let Ok(unsigned) = u64::try_from(step) else { continue };
            if same_code(&self.codes.code_at(&secret, unsigned), &typed) {
                return Ok(Some(step));
            }
        }
        Ok(None)
    }

    fn open(&self, factor: &StoredFactor) -> Result<TotpSecret, InfraError> {
        let text = self.sealer.open(&slot(factor.id), &factor.secret)?;
        URL_SAFE_NO_PAD
            .decode(text.as_bytes())
            .ok()
            .and_then(|bytes| TotpSecret::from_bytes(&bytes))
            .ok_or_else(|| InfraError::new(format!("the stored secret of second factor {} is damaged", factor.id)))
    }

    /// Opens a login challenge for an account whose password was just proved at
    /// `credential_version`.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    pub async fn open_challenge(
        &self,
        account_id: AccountId,
        credential_version: i64,
        client: ClientInfo,
    ) -> Result<ChallengeIssued, InfraError> {
        let now = self.clock.now();
        let token = LinkToken::generate(self.random.as_ref());
        let challenge = MfaChallenge {
            token_hash: token.hash(),
            account_id,
            created_at: now,
            expires_at: now + self.settings.challenge_ttl,
            failures: 0,
            credential_version,
            client,
        };
        self.factors.create_challenge(&challenge).await?;
        let factors = self.factors.factors(account_id).await?;
        let confirmed =
            |kind: FactorKind| factors.iter().any(|factor| factor.kind == kind && factor.confirmed_at.is_some());
        let mut methods = Vec::new();
        if confirmed(FactorKind::Totp) {
            methods.push("totp");
        }
        if confirmed(FactorKind::Passkey) {
            methods.push("passkey");
        }
        if self.factors.recovery_codes_left(account_id).await? > 0 {
            methods.push("recovery_code");
        }
        Ok(ChallengeIssued { token, methods, expires_in: self.settings.challenge_ttl.whole_seconds() })
    }

    /// The live challenge of `token`.
    ///
    /// # Errors
    /// [`SecondStepError::InvalidChallenge`] for an unknown, spent or expired one.
    pub async fn challenge(&self, token: &LinkToken) -> Result<MfaChallenge, SecondStepError> {
        let now = self.clock.now();
        match self.factors.find_challenge(&token.hash()).await? {
            Some(challenge) if challenge.expires_at > now => Ok(challenge),
            _ => Err(SecondStepError::InvalidChallenge),
        }
    }

    /// Counts a wrong code against the challenge of `token`; it ends at the limit.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    pub async fn fail_challenge(&self, token: &LinkToken) -> Result<(), InfraError> {
        self.factors.fail_challenge(&token.hash(), self.settings.challenge_failures).await.map(|_| ())
    }

    /// Spends the challenge whose token has digest `hash`; says whether this call did.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    pub async fn spend_challenge_digest(&self, hash: &TokenHash) -> Result<bool, InfraError> {
        self.factors.spend_challenge(hash).await
    }

    /// Spends the challenge of `token`; says whether this call did.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    pub async fn spend_challenge(&self, token: &LinkToken) -> Result<bool, InfraError> {
        self.factors.spend_challenge(&token.hash()).await
    }

    /// Checks `proof` against the account's factors and spends it: a TOTP code's time step,
    /// or a recovery code (the owner is emailed with the count left). `None` for a wrong or
    /// already used code.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    pub async fn prove(
        &self,
        account_id: AccountId,
        proof: &SecondFactorProof,
        session: Option<SessionId>,
        client: &ClientInfo,
    ) -> Result<Option<ProvedSecondFactor>, InfraError> {
        let now = self.clock.now();
        match proof {
            SecondFactorProof::Code(code) => {
                let factors = self.factors.factors(account_id).await?;
                let totps = factors.iter().filter(|factor| factor.kind == FactorKind::Totp);
                for factor in totps.filter(|factor| factor.confirmed_at.is_some()) {
                    if let Some(step) = self.matching_step(factor, code, now)? {
                        // The compare-and-swap decides between two requests with one code.
                        return Ok(self
                            .factors
                            .spend_step(factor.id, step, now)
                            .await?
                            .then_some(ProvedSecondFactor { method: AuthenticationMethod::OneTimeCode }));
                    }
                }
                Ok(None)
            }
            SecondFactorProof::RecoveryCode(code) => {
                let Some(account) = self.accounts.find_by_id(account_id).await? else { return Ok(None) };
                let left = self.factors.recovery_codes_left(account_id).await?;
                if left == 0 {
                    return Ok(None);
                }
                let mut event = self.event(account_id, AuditKind::RecoveryCodeUsed, now).from_client(client.clone());
                if let Some(session) = session {
                    event = event.of_session(session);
                }
                let letter = Letter::RecoveryCodeUsed { codes_left: left - 1 };
                let notice = self.letters.email(random_uuid(self.random.as_ref()), account.email().clone(), &letter);
                let spent = self
                    .factors
                    .spend_recovery_code(account_id, &RecoveryCode::hash_typed(code), now, &event, &notice)
                    .await?;
                Ok(spent.then_some(ProvedSecondFactor { method: AuthenticationMethod::OneTimeCode }))
            }
        }
    }
}

impl MfaService {
    fn passkeys(&self) -> Result<&dyn Passkeys, PasskeysUnavailable> {
        self.passkeys.as_deref().ok_or(PasskeysUnavailable)
    }

    /// Begins adding a passkey to the caller's account: the creation options for the browser.
    /// Needs a recent password, and a recent second factor when the account has one.
    ///
    /// # Errors
    /// [`MfaError::ReauthenticationRequired`], [`MfaError::StepUpRequired`],
    /// [`MfaError::TooManyFactors`], [`MfaError::AccountGone`] or [`MfaError::Unexpected`].
    pub async fn begin_passkey_registration(&self, caller: &LiveSession) -> Result<CeremonyStarted, MfaError> {
        let now = self.clock.now();
        self.require_recent_proof(caller, now)?;
        let account = self.accounts.find_by_id(caller.account_id()).await?.ok_or(AccountGone)?;
        let factors = self.factors.factors(account.id()).await?;
        if factors.iter().filter(|factor| factor.confirmed_at.is_some()).count() >= self.settings.max_factors {
            return Err(MfaError::TooManyFactors);
        }
        let exclude: Vec<String> = factors.iter().filter_map(|factor| factor.credential_id.clone()).collect();
        let (options, state) =
            self.passkeys()?.start_registration(account.id().as_uuid(), account.email().as_str(), &exclude)?;
        let ceremony = self.ceremony(CeremonyPurpose::Registration, Some(account.id()), None, state, now);
        self.factors.create_ceremony(&ceremony).await?;
        Ok(CeremonyStarted { ceremony_id: ceremony.id, options })
    }

    /// Finishes adding a passkey with the browser's answer. A passkey that verifies counts at
    /// once; the account's first factor comes with ten recovery codes. The owner is told by
    /// email.
    ///
    /// # Errors
    /// [`MfaError::InvalidCeremony`], [`MfaError::PasskeyRefused`],
    /// [`MfaError::ReauthenticationRequired`], [`MfaError::StepUpRequired`] or
    /// [`MfaError::Unexpected`].
    pub async fn finish_passkey_registration(
        &self,
        caller: &LiveSession,
        id: CeremonyId,
        name: Option<FactorName>,
        credential: &str,
        client: ClientInfo,
    ) -> Result<ConfirmedFactor, MfaError> {
        let now = self.clock.now();
        self.require_recent_proof(caller, now)?;
        let ceremony = self.factors.take_ceremony(id).await?.ok_or(MfaError::InvalidCeremony)?;
        let ours = ceremony.purpose == CeremonyPurpose::Registration
            && ceremony.account_id == Some(caller.account_id())
            && ceremony.expires_at > now;
        if !ours {
            return Err(MfaError::InvalidCeremony);
        }
        let account = self.accounts.find_by_id(caller.account_id()).await?.ok_or(AccountGone)?;
        let passkey = self.passkeys()?.finish_registration(credential, &ceremony.state)?;
        if self.factors.factor_by_credential(&passkey.credential_id).await?.is_some() {
            return Err(PasskeyRefusal::Invalid("the passkey is registered already".to_owned()).into());
        }
        let first = !self.factors.has_confirmed_factor(account.id()).await?;
        let recovery_codes: Option<Vec<RecoveryCode>> = first.then(|| self.new_recovery_codes());
        let name = name.unwrap_or_else(|| FactorName::from_storage("passkey".to_owned()));
        let factor_id = FactorId::from_uuid(random_uuid(self.random.as_ref()));
        let event = self
            .event(account.id(), AuditKind::SecondFactorAdded, now)
            .of_session(caller.session_id())
            .of_factor(factor_id)
            .from_client(client);
        let letter = Letter::SecondFactorAdded { factor_name: name.as_str().to_owned(), factor_kind: "passkey" };
        let notice = self.letters.email(random_uuid(self.random.as_ref()), account.email().clone(), &letter);
        let addition = PasskeyAddition {
            factor: StoredFactor {
                id: factor_id,
                account_id: account.id(),
                kind: FactorKind::Passkey,
                name,
                secret: SealedSecret(passkey.stored),
                credential_id: Some(passkey.credential_id),
                created_at: now,
                confirmed_at: Some(now),
                last_step: None,
                last_used_at: None,
            },
            recovery_codes: recovery_codes.iter().flatten().map(RecoveryCode::hash).collect(),
            event,
            notice,
        };
        self.factors.add_passkey(&addition).await?;
        Ok(ConfirmedFactor { factor_id, recovery_codes })
    }

    /// Begins a login with a passkey: as the second step of the login whose challenge token
    /// is `mfa_token` (with one of that account's passkeys), or, without one, passwordless
    /// (with any discoverable passkey, nothing typed).
    ///
    /// # Errors
    /// [`SecondStepError::InvalidChallenge`] for a challenge that is not live or whose account
    /// has no passkey; [`SecondStepError::Unexpected`].
    pub async fn begin_passkey_authentication(
        &self,
        mfa_token: Option<&LinkToken>,
    ) -> Result<CeremonyStarted, SecondStepError> {
        let now = self.clock.now();
        let ceremony = match mfa_token {
            Some(token) => {
                let challenge = self.challenge(token).await?;
                let factors = self.factors.factors(challenge.account_id).await?;
                let passkeys: Vec<String> = factors
                    .iter()
                    .filter(|factor| factor.kind == FactorKind::Passkey && factor.confirmed_at.is_some())
                    .map(|factor| factor.secret.0.clone())
                    .collect();
                if passkeys.is_empty() {
                    return Err(SecondStepError::InvalidChallenge);
                }
                let (options, state) = self.passkeys()?.start_authentication(&passkeys)?;
                let ceremony = self.ceremony(
                    CeremonyPurpose::SecondFactor,
                    Some(challenge.account_id),
                    Some(challenge.token_hash),
                    state,
                    now,
                );
                (ceremony, options)
            }
            None => {
                let (options, state) = self.passkeys()?.start_authentication(&[])?;
                (self.ceremony(CeremonyPurpose::Passwordless, None, None, state, now), options)
            }
        };
        let (ceremony, options) = ceremony;
        self.factors.create_ceremony(&ceremony).await?;
        Ok(CeremonyStarted { ceremony_id: ceremony.id, options })
    }

    /// Verifies the browser's answer to a login ceremony: which account's passkey signed, and
    /// how. A counter that went backwards is logged and refused; a counter of 0 is normal.
    ///
    /// # Errors
    /// [`SecondStepError::InvalidCeremony`], [`SecondStepError::PasskeyRefused`] or
    /// [`SecondStepError::Unexpected`].
    pub async fn finish_passkey_authentication(
        &self,
        id: CeremonyId,
        credential: &str,
    ) -> Result<PasskeyLogin, SecondStepError> {
        let now = self.clock.now();
        let ceremony = self.factors.take_ceremony(id).await?.ok_or(SecondStepError::InvalidCeremony)?;
        let login = matches!(ceremony.purpose, CeremonyPurpose::SecondFactor | CeremonyPurpose::Passwordless);
        if !login || ceremony.expires_at <= now {
            return Err(SecondStepError::InvalidCeremony);
        }
        let presented = self.passkeys()?.presented(credential)?;
        let factor = self
            .factors
            .factor_by_credential(&presented.credential_id)
            .await?
            .filter(|factor| factor.kind == FactorKind::Passkey && factor.confirmed_at.is_some())
            .ok_or_else(|| PasskeyRefusal::Invalid("no account has this passkey".to_owned()))?;
        // The second step is for the challenge's account only; a passwordless login's user
        // handle must name the passkey's own account.
        let account_matches = match ceremony.purpose {
            CeremonyPurpose::SecondFactor => ceremony.account_id == Some(factor.account_id),
            _ => presented.user.is_none_or(|user| user == factor.account_id.as_uuid()),
        };
        if !account_matches {
            return Err(PasskeyRefusal::Invalid("the passkey is another account's".to_owned()).into());
        }
        // A counter that went backwards is refused here and logged by the server, which sees
        // the refusal's reason.
        let used = self.passkeys()?.finish_authentication(credential, &ceremony.state, &factor.secret.0)?;
        self.factors.record_passkey_use(factor.id, used.stored, now).await?;
        let method = if used.synced { AuthenticationMethod::SoftwareKey } else { AuthenticationMethod::HardwareKey };
        let challenge = match ceremony.challenge {
            Some(hash) => {
                let challenge = self
                    .factors
                    .find_challenge(&hash)
                    .await?
                    .filter(|challenge| challenge.expires_at > now)
                    .ok_or(SecondStepError::InvalidChallenge)?;
                Some((hash, challenge.credential_version))
            }
            None => None,
        };
        Ok(PasskeyLogin { account_id: factor.account_id, method, challenge })
    }

    fn ceremony(
        &self,
        purpose: CeremonyPurpose,
        account_id: Option<AccountId>,
        challenge: Option<TokenHash>,
        state: String,
        now: OffsetDateTime,
    ) -> PasskeyCeremony {
        PasskeyCeremony {
            id: CeremonyId::from_uuid(random_uuid(self.random.as_ref())),
            purpose,
            account_id,
            challenge,
            state,
            created_at: now,
            expires_at: now + self.settings.ceremony_ttl,
        }
    }
}

/// A service whose accounts have a confirmed factor or not, which opens login challenges, and
/// must not be asked anything else: for the tests of the rules that only ask that.
#[cfg(test)]
pub(crate) fn test_mfa(has_factor: bool) -> MfaService {
    let mut factors = super::MockFactorRepository::new();
    factors.expect_has_confirmed_factor().returning(move |_| Ok(has_factor));
    factors.expect_create_challenge().returning(|_| Ok(()));
    factors.expect_factors().returning(|account_id| {
        Ok(vec![StoredFactor {
            id: FactorId::from_uuid(uuid::Uuid::from_u128(1)),
            account_id,
            kind: FactorKind::Totp,
            name: FactorName::from_storage("phone".to_owned()),
            secret: SealedSecret(String::new()),
            credential_id: None,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            confirmed_at: Some(time::OffsetDateTime::UNIX_EPOCH),
            last_step: None,
            last_used_at: None,
        }])
    });
    factors.expect_recovery_codes_left().returning(|_| Ok(0));
    let mut clock = crate::system::MockClock::new();
    clock.expect_now().returning(time::OffsetDateTime::now_utc);
    let mut random = crate::system::MockSecureRandom::new();
    random.expect_fill().returning(|buffer| buffer.fill(5));
    MfaService::new(
        Arc::new(factors),
        Arc::new(crate::account::MockAccountRepository::new()),
        Arc::new(super::MockOneTimeCodes::new()),
        Arc::new(super::MockSecretSealer::new()),
        None,
        Arc::new(clock),
        Arc::new(random),
        Letters::new("https://auth.example.com", Arc::new(crate::mail::FactSheetWriter)),
        MfaSettings::default(),
    )
}

#[cfg(test)]
mod tests;
