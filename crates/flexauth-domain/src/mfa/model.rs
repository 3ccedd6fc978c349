use std::fmt;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::AuditEvent;
use crate::mail::OutgoingEmail;
pub use crate::newtypes::FactorId;
use crate::newtypes::{AccountId, ClientInfo};
use crate::secret::TokenHash;
use crate::system::SecureRandom;

/// How many recovery codes a set has.
pub const RECOVERY_CODE_COUNT: usize = 10;

/// What kind of second factor it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorKind {
    /// An authenticator app's time-based codes (RFC 6238).
    Totp,
    /// A WebAuthn credential: a security key, a platform authenticator or a synced passkey.
    Passkey,
}

impl FactorKind {
    /// The stable name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::Passkey => "passkey",
        }
    }

    /// Reads a stored name.
    pub fn from_stored(name: &str) -> Option<Self> {
        match name {
            "totp" => Some(Self::Totp),
            "passkey" => Some(Self::Passkey),
            _ => None,
        }
    }
}

/// A label its owner gives a factor ("phone", "work laptop").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorName(String);

/// Why a factor name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FactorNameError {
    #[error("the factor name is empty")]
    Empty,
    #[error("the factor name is longer than 64 characters")]
    TooLong,
    #[error("the factor name contains control characters")]
    ControlCharacters,
}

impl FactorName {
    /// Trims and validates a name.
    ///
    /// # Errors
    /// [`FactorNameError`].
    pub fn parse(text: &str) -> Result<Self, FactorNameError> {
        if text.chars().count() > 64 {
            return Err(FactorNameError::TooLong);
        }
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(FactorNameError::Empty);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(FactorNameError::ControlCharacters);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// Rebuilds a stored name.
    pub fn from_storage(name: String) -> Self {
        Self(name)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The shared secret of a TOTP authenticator: 160 random bits, as RFC 4226 recommends.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret([u8; 20]);

impl TotpSecret {
    /// A fresh secret.
    pub fn generate(random: &dyn SecureRandom) -> Self {
        let mut bytes = [0u8; 20];
        random.fill(&mut bytes);
        Self(bytes)
    }

    /// Rebuilds a secret from its bytes, `None` unless there are 20.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The secret's bytes, for the code generator and the seal.
    pub fn expose(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

/// A secret as stored: sealed with the key-encryption key when one is set.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret(pub String);

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedSecret(<redacted>)")
    }
}

/// What an authenticator app needs to add a TOTP factor.
#[derive(Clone)]
pub struct TotpEnrolment {
    /// The factor, unconfirmed until a first code is entered.
    pub factor_id: FactorId,
    /// The secret in base32, for typing in by hand.
    pub secret: String,
    /// The `otpauth://totp/…` URI an authenticator reads.
    pub otpauth_uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
}

impl fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpEnrolment").field("factor_id", &self.factor_id).finish_non_exhaustive()
    }
}

/// A second factor as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredFactor {
    pub id: FactorId,
    pub account_id: AccountId,
    pub kind: FactorKind,
    pub name: FactorName,
    /// A TOTP factor's secret, sealed; a passkey's public key and signature counter, as the
    /// WebAuthn adapter stores them (public, stored as they are).
    pub secret: SealedSecret,
    /// A passkey's credential id (base64url), unique: a passwordless login finds the passkey
    /// by it.
    pub credential_id: Option<String>,
    pub created_at: OffsetDateTime,
    /// When the first code was entered; the factor counts from then on.
    pub confirmed_at: Option<OffsetDateTime>,
    /// The newest TOTP time step accepted: only a later one is accepted next.
    pub last_step: Option<i64>,
    pub last_used_at: Option<OffsetDateTime>,
}

impl fmt::Debug for StoredFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredFactor")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("kind", &self.kind)
            .field("confirmed_at", &self.confirmed_at)
            .finish_non_exhaustive()
    }
}

/// A second factor as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factor {
    pub id: FactorId,
    pub kind: FactorKind,
    pub name: FactorName,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

impl From<&StoredFactor> for Factor {
    fn from(stored: &StoredFactor) -> Self {
        Self {
            id: stored.id,
            kind: stored.kind,
            name: stored.name.clone(),
            created_at: stored.created_at,
            last_used_at: stored.last_used_at,
        }
    }
}

/// A single-use recovery code, shown once: ten characters of an alphabet without look-alikes
/// (50 bits), written in two groups of five.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

/// Crockford's base32 alphabet in lower case: no `i`, `l`, `o` or `u`.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

impl RecoveryCode {
    /// A fresh code.
    pub fn generate(random: &dyn SecureRandom) -> Self {
        let mut bytes = [0u8; 10];
        random.fill(&mut bytes);
        let characters: String = bytes.iter().map(|byte| char::from(ALPHABET[usize::from(byte & 31)])).collect();
        Self(format!("{}-{}", &characters[..5], &characters[5..]))
    }

    /// The code as shown to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The digest stored in place of the code, of its normal form.
    pub fn hash(&self) -> TokenHash {
        Self::hash_typed(&self.0)
    }

    /// The digest of a code as typed: case, spaces and hyphens do not matter, and the
    /// look-alikes `i`, `l` and `o` read as `1`, `1` and `0`.
    pub fn hash_typed(typed: &str) -> TokenHash {
        let normal: String = typed
            .chars()
            .filter(|character| !character.is_whitespace() && *character != '-')
            .map(|character| match character.to_ascii_lowercase() {
                'i' | 'l' => '1',
                'o' => '0',
                other => other,
            })
            .collect();
        TokenHash::of(normal.as_bytes())
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(<redacted>)")
    }
}

/// The second step of a login in progress: a right password was given for an account with a
/// second factor. Only the digest of its token is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaChallenge {
    pub token_hash: TokenHash,
    pub account_id: AccountId,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// Wrong codes entered against it so far.
    pub failures: u32,
    /// The account's credential version when its password was checked: a password reset or
    /// change since then ends the challenge.
    pub credential_version: i64,
    /// Where the password came from.
    pub client: ClientInfo,
}

/// What confirming a factor writes, in one transaction.
#[derive(Debug, Clone)]
pub struct FactorConfirmation {
    pub account_id: AccountId,
    pub factor_id: FactorId,
    /// The time step of the first code, spent by the confirmation.
    pub step: i64,
    pub at: OffsetDateTime,
    /// The digests of the account's new recovery codes; empty to keep those it has.
    pub recovery_codes: Vec<TokenHash>,
    /// The `second_factor_added` entry of the security log.
    pub event: AuditEvent,
    /// The email that tells the owner.
    pub notice: OutgoingEmail,
}

/// The identifier of a passkey ceremony in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CeremonyId(Uuid);

impl CeremonyId {
    /// Wraps a stored identifier.
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// Reads the identifier of a path, `None` if it is not a UUID.
    pub fn parse(text: &str) -> Option<Self> {
        Uuid::parse_str(text).ok().map(Self)
    }
}

impl fmt::Display for CeremonyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a passkey ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyPurpose {
    /// Adding a passkey to the account of `account_id`.
    Registration,
    /// The second step of a login, after the password (the challenge is named).
    SecondFactor,
    /// A login with a discoverable passkey and nothing typed.
    Passwordless,
}

impl CeremonyPurpose {
    /// The stable name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::SecondFactor => "second_factor",
            Self::Passwordless => "passwordless",
        }
    }

    /// Reads a stored name.
    pub fn from_stored(name: &str) -> Option<Self> {
        match name {
            "registration" => Some(Self::Registration),
            "second_factor" => Some(Self::SecondFactor),
            "passwordless" => Some(Self::Passwordless),
            _ => None,
        }
    }
}

/// A passkey ceremony in progress: the state the WebAuthn adapter keeps between the options
/// it sent and the credential that answers them. Single use and short-lived, and kept in
/// storage, so that any instance finishes a ceremony another began.
#[derive(Clone, PartialEq, Eq)]
pub struct PasskeyCeremony {
    pub id: CeremonyId,
    pub purpose: CeremonyPurpose,
    /// The registering account, or the account of the login's challenge.
    pub account_id: Option<AccountId>,
    /// The digest of the login challenge a second-factor ceremony belongs to.
    pub challenge: Option<TokenHash>,
    /// The adapter's state (it holds the WebAuthn challenge).
    pub state: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl fmt::Debug for PasskeyCeremony {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasskeyCeremony")
            .field("id", &self.id)
            .field("purpose", &self.purpose)
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

/// What adding a passkey writes, in one transaction.
#[derive(Debug, Clone)]
pub struct PasskeyAddition {
    /// The passkey, confirmed: a ceremony that verified is its own first proof.
    pub factor: StoredFactor,
    /// The new recovery codes, when this is the account's first factor; empty otherwise.
    pub recovery_codes: Vec<TokenHash>,
    pub event: AuditEvent,
    pub notice: OutgoingEmail,
}

/// A passkey the WebAuthn adapter verified at registration.
#[derive(Clone)]
pub struct NewPasskey {
    /// Its credential id, base64url.
    pub credential_id: String,
    /// Its public key and counter, as the adapter stores them.
    pub stored: String,
}

impl fmt::Debug for NewPasskey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewPasskey").field("credential_id", &self.credential_id).finish_non_exhaustive()
    }
}

/// The credential a browser presented, before it is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedPasskey {
    /// Its credential id, base64url.
    pub credential_id: String,
    /// The user handle of a discoverable credential: the account id it was registered for.
    pub user: Option<Uuid>,
}

/// A verified use of a passkey.
#[derive(Debug, Clone)]
pub struct PasskeyUse {
    /// The passkey's stored form with its new counter, when it changed.
    pub stored: Option<String>,
    /// Whether the passkey may be synced between devices (backup eligible): `swk` rather than
    /// `hwk` in the tokens' `amr`.
    pub synced: bool,
}

/// Why the WebAuthn adapter refused a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasskeyRefusal {
    /// Not an answer to this ceremony: malformed, another origin or relying party, another
    /// challenge, a bad signature, no user verification.
    #[error("the passkey credential does not verify: {0}")]
    Invalid(String),
    /// A non-zero signature counter that did not go up: a copy of the authenticator may
    /// exist. (A counter of 0, which synced passkeys report, is normal.)
    #[error("the passkey's signature counter went backwards")]
    CounterWentBackwards,
}

/// What the second step of a login, or a step-up, offers as proof.
#[derive(Clone)]
pub enum SecondFactorProof {
    /// A code of an authenticator app.
    Code(String),
    /// A recovery code.
    RecoveryCode(String),
}

impl fmt::Debug for SecondFactorProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Code(_) => "Code(<redacted>)",
            Self::RecoveryCode(_) => "RecoveryCode(<redacted>)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::MockSecureRandom;

    #[test]
    fn a_recovery_code_matches_however_it_is_typed() {
        let mut random = MockSecureRandom::new();
        random.expect_fill().returning(|buffer| buffer.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8 * 3));
        let code = RecoveryCode::generate(&random);
        assert_eq!(code.expose().len(), 11);
        assert_eq!(code.expose(), "0369c-fjnrv");
        assert_eq!(RecoveryCode::hash_typed(" 0369C FJNRV "), code.hash());
        assert_eq!(RecoveryCode::hash_typed("O369cfjnrv"), code.hash(), "o reads as 0");
        assert_ne!(RecoveryCode::hash_typed("0369c-fjnrw"), code.hash());
    }

    #[test]
    fn a_factor_name_is_trimmed_and_bounded() {
        assert_eq!(FactorName::parse("  phone ").unwrap().as_str(), "phone");
        assert_eq!(FactorName::parse(" "), Err(FactorNameError::Empty));
        assert_eq!(FactorName::parse(&"x".repeat(65)), Err(FactorNameError::TooLong));
        assert_eq!(FactorName::parse("a\u{0}b"), Err(FactorNameError::ControlCharacters));
    }
}
