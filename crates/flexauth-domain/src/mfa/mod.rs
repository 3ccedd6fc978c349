//! Second factors: TOTP authenticators and single-use recovery codes, the second step of a
//! login, and the proof of a recent second factor that the operations guarding an account ask
//! for (step-up).

mod model;
mod ports;
mod service;

pub use model::{
    CeremonyId, CeremonyPurpose, Factor, FactorConfirmation, FactorId, FactorKind, FactorName, FactorNameError,
    MfaChallenge, NewPasskey, PasskeyAddition, PasskeyCeremony, PasskeyRefusal, PasskeyUse, PresentedPasskey,
    RecoveryCode, SealedSecret, SecondFactorProof, StoredFactor, TotpEnrolment, TotpSecret, RECOVERY_CODE_COUNT,
};
pub use ports::{FactorRepository, OneTimeCodes, Passkeys, SecretSealer};
pub use service::{
    CeremonyStarted, ChallengeIssued, ConfirmedFactor, MfaError, MfaOverview, MfaService, MfaSettings, PasskeyLogin,
    PasskeysUnavailable, ProvedSecondFactor, SecondStepError, StepUpRequired,
};

#[cfg(test)]
pub(crate) use service::test_mfa;

#[cfg(any(test, feature = "mocks"))]
pub use ports::{MockFactorRepository, MockOneTimeCodes, MockPasskeys, MockSecretSealer};
