use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::*;
use crate::account::{Account, MockAccountRepository, PasswordHash, StoredAccount};
use crate::mail::FactSheetWriter;
use crate::mfa::{MockFactorRepository, MockOneTimeCodes, MockSecretSealer, SealedSecret};
use crate::newtypes::{EmailAddress, SessionId};
use crate::system::{MockClock, MockSecureRandom};

const NOW: OffsetDateTime = datetime!(2026-03-01 09:00:15 UTC);
const ACCOUNT: AccountId = AccountId::from_uuid(Uuid::from_u128(1));
const FACTOR: FactorId = FactorId::from_uuid(Uuid::from_u128(7));

fn account() -> Account {
    Account::from_storage(StoredAccount {
        id: ACCOUNT,
        email: EmailAddress::parse("ann@example.com").unwrap(),
        password_hash: PasswordHash::from_phc("h".into()),
        email_verified_at: Some(NOW - Duration::days(1)),
        created_at: NOW - Duration::days(2),
        credential_version: 1,
        disabled_at: None,
        clients_forgotten_at: None,
    })
}

/// Codes that are the step number, so a test can say which step a code belongs to.
fn step_codes() -> MockOneTimeCodes {
    let mut codes = MockOneTimeCodes::new();
    codes.expect_code_at().returning(|_, step| format!("{:06}", step % 1_000_000));
    codes
}

fn code_of(at: OffsetDateTime) -> String {
    format!("{:06}", at.unix_timestamp().div_euclid(30) % 1_000_000)
}

fn open_sealer() -> MockSecretSealer {
    let mut sealer = MockSecretSealer::new();
    sealer.expect_seal().returning(|_, secret| Ok(SealedSecret(format!("sealed:{secret}"))));
    sealer.expect_open().returning(|_, sealed| Ok(sealed.0.trim_start_matches("sealed:").to_owned()));
    sealer
}

fn confirmed_factor(last_step: Option<i64>) -> StoredFactor {
    StoredFactor {
        id: FACTOR,
        account_id: ACCOUNT,
        kind: FactorKind::Totp,
        name: FactorName::parse("phone").unwrap(),
        secret: SealedSecret(format!("sealed:{}", URL_SAFE_NO_PAD.encode([9u8; 20]))),
        credential_id: None,
        created_at: NOW - Duration::days(1),
        confirmed_at: Some(NOW - Duration::days(1)),
        last_step,
        last_used_at: None,
    }
}

fn service(factors: MockFactorRepository) -> MfaService {
    service_with_passkeys(factors, None)
}

fn service_with_passkeys(factors: MockFactorRepository, passkeys: Option<crate::mfa::MockPasskeys>) -> MfaService {
    let mut accounts = MockAccountRepository::new();
    accounts.expect_find_by_id().returning(|_| Ok(Some(account())));
    let mut clock = MockClock::new();
    clock.expect_now().return_const(NOW);
    let counter = AtomicU8::new(1);
    let mut random = MockSecureRandom::new();
    random.expect_fill().returning(move |buffer| buffer.fill(counter.fetch_add(1, Ordering::Relaxed)));
    MfaService::new(
        Arc::new(factors),
        Arc::new(accounts),
        Arc::new(step_codes()),
        Arc::new(open_sealer()),
        passkeys.map(|passkeys| Arc::new(passkeys) as Arc<dyn crate::mfa::Passkeys>),
        Arc::new(clock),
        Arc::new(random),
        Letters::new("https://auth.example.com", Arc::new(FactSheetWriter)),
        MfaSettings::default(),
    )
}

fn caller(authenticated_ago: Duration, second_factor: Option<Duration>, has_factor: bool) -> LiveSession {
    LiveSession::new(ACCOUNT, SessionId::from_uuid(Uuid::from_u128(2)), NOW - authenticated_ago)
        .with_second_factor(has_factor, second_factor.map(|ago| NOW - ago))
}

#[tokio::test]
async fn a_code_is_accepted_within_one_step_of_now_and_only_after_the_last_accepted_step() {
    let spent = Arc::new(Mutex::new(Vec::new()));
    let mut factors = MockFactorRepository::new();
    factors.expect_factors().returning(|_| Ok(vec![confirmed_factor(Some(NOW.unix_timestamp() / 30 - 1))]));
    let record = spent.clone();
    factors.expect_spend_step().returning(move |_, step, _| {
        record.lock().unwrap().push(step);
        Ok(true)
    });
    let mfa = service(factors);
    let client = ClientInfo::default();
    let code = |at| SecondFactorProof::Code(code_of(at));
    // The step before was accepted already: its code is a replay.
    assert_eq!(mfa.prove(ACCOUNT, &code(NOW - Duration::seconds(30)), None, &client).await.unwrap(), None);
    let proved = mfa.prove(ACCOUNT, &code(NOW), None, &client).await.unwrap();
    assert_eq!(proved, Some(ProvedSecondFactor { method: AuthenticationMethod::OneTimeCode }));
    assert!(mfa.prove(ACCOUNT, &code(NOW + Duration::seconds(30)), None, &client).await.unwrap().is_some());
    assert_eq!(
        mfa.prove(ACCOUNT, &code(NOW + Duration::seconds(60)), None, &client).await.unwrap(),
        None,
        "two steps ahead"
    );
    assert_eq!(mfa.prove(ACCOUNT, &SecondFactorProof::Code("12345".into()), None, &client).await.unwrap(), None);
    let now_step = NOW.unix_timestamp() / 30;
    assert_eq!(*spent.lock().unwrap(), vec![now_step, now_step + 1]);
}

#[tokio::test]
async fn of_two_requests_with_one_code_only_the_one_that_spends_the_step_passes() {
    let mut factors = MockFactorRepository::new();
    factors.expect_factors().returning(|_| Ok(vec![confirmed_factor(None)]));
    // The store's compare-and-swap: the first spend wins, the second finds the step spent.
    let taken = Mutex::new(false);
    factors.expect_spend_step().returning(move |_, _, _| Ok(!std::mem::replace(&mut *taken.lock().unwrap(), true)));
    let mfa = service(factors);
    let code = SecondFactorProof::Code(code_of(NOW));
    let client = ClientInfo::default();
    assert!(mfa.prove(ACCOUNT, &code, None, &client).await.unwrap().is_some());
    assert_eq!(mfa.prove(ACCOUNT, &code, None, &client).await.unwrap(), None);
}

#[tokio::test]
async fn changing_factors_needs_a_recent_password_and_then_a_recent_second_factor() {
    let mut factors = MockFactorRepository::new();
    factors.expect_factors().never();
    factors.expect_add_factor().never();
    factors.expect_remove_factor().never();
    factors.expect_replace_recovery_codes().never();
    let mfa = service(factors);
    let stale = caller(Duration::minutes(11), None, false);
    assert!(matches!(mfa.begin_totp(&stale, None).await, Err(MfaError::ReauthenticationRequired(_))));
    let no_step_up = caller(Duration::minutes(1), Some(Duration::minutes(11)), true);
    assert!(matches!(mfa.begin_totp(&no_step_up, None).await, Err(MfaError::StepUpRequired(_))));
    assert!(matches!(mfa.remove(&no_step_up, FACTOR, ClientInfo::default()).await, Err(MfaError::StepUpRequired(_))));
    assert!(matches!(
        mfa.regenerate_recovery_codes(&no_step_up, ClientInfo::default()).await,
        Err(MfaError::StepUpRequired(_))
    ));
}

#[tokio::test]
async fn the_first_factor_is_confirmed_with_its_first_code_and_brings_ten_recovery_codes() {
    let mut factors = MockFactorRepository::new();
    factors.expect_factors().returning(|_| {
        Ok(vec![StoredFactor { confirmed_at: None, created_at: NOW - Duration::minutes(2), ..confirmed_factor(None) }])
    });
    factors
        .expect_confirm_factor()
        .withf(|confirmation| {
            confirmation.account_id == ACCOUNT
                && confirmation.factor_id == FACTOR
                && confirmation.step == NOW.unix_timestamp() / 30
                && confirmation.recovery_codes.len() == RECOVERY_CODE_COUNT
                && confirmation.event.kind == AuditKind::SecondFactorAdded
                && confirmation.notice.kind() == crate::mail::EmailKind::SecondFactorAdded
        })
        .times(1)
        .returning(|_| Ok(true));
    let mfa = service(factors);
    let caller = caller(Duration::minutes(1), None, false);
    assert!(matches!(
        mfa.confirm_totp(&caller, FACTOR, "000000", ClientInfo::default()).await,
        Err(MfaError::WrongCode)
    ));
    let confirmed = mfa.confirm_totp(&caller, FACTOR, &code_of(NOW), ClientInfo::default()).await.unwrap();
    let codes = confirmed.recovery_codes.unwrap();
    assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
    let distinct: std::collections::HashSet<&str> = codes.iter().map(RecoveryCode::expose).collect();
    assert_eq!(distinct.len(), RECOVERY_CODE_COUNT);
}

#[tokio::test]
async fn an_enrolment_that_waited_too_long_is_gone() {
    let mut factors = MockFactorRepository::new();
    factors.expect_factors().returning(|_| {
        Ok(vec![StoredFactor { confirmed_at: None, created_at: NOW - Duration::minutes(61), ..confirmed_factor(None) }])
    });
    factors.expect_confirm_factor().never();
    let mfa = service(factors);
    let caller = caller(Duration::minutes(1), None, false);
    assert!(matches!(
        mfa.confirm_totp(&caller, FACTOR, &code_of(NOW), ClientInfo::default()).await,
        Err(MfaError::NotFound)
    ));
}

#[tokio::test]
async fn an_expired_challenge_is_refused() {
    let mut factors = MockFactorRepository::new();
    factors.expect_find_challenge().returning(|hash| {
        Ok(Some(MfaChallenge {
            token_hash: *hash,
            account_id: ACCOUNT,
            created_at: NOW - Duration::minutes(5),
            expires_at: NOW,
            failures: 0,
            credential_version: 1,
            client: ClientInfo::default(),
        }))
    });
    let mfa = service(factors);
    let token = LinkToken::parse(&"A".repeat(43)).unwrap();
    assert!(matches!(mfa.challenge(&token).await, Err(SecondStepError::InvalidChallenge)));
}

#[tokio::test]
async fn a_recovery_code_is_spent_once_and_the_owner_is_told_how_many_are_left() {
    let mut factors = MockFactorRepository::new();
    factors.expect_recovery_codes_left().returning(|_| Ok(4));
    factors
        .expect_spend_recovery_code()
        .withf(|_, hash, _, event, notice| {
            *hash == RecoveryCode::hash_typed("abcde-fghjk")
                && event.kind == AuditKind::RecoveryCodeUsed
                && notice.text_body().contains("codes_left: 3")
        })
        .times(1)
        .returning(|_, _, _, _, _| Ok(true));
    let mfa = service(factors);
    let proof = SecondFactorProof::RecoveryCode("ABCDE FGHJK".to_owned());
    assert!(mfa.prove(ACCOUNT, &proof, None, &ClientInfo::default()).await.unwrap().is_some());
}

#[tokio::test]
async fn enrolments_left_waiting_are_bounded_like_factors() {
    let mut factors = MockFactorRepository::new();
    factors.expect_factors().returning(|_| {
        Ok((0..10u128)
            .map(|n| StoredFactor {
                id: FactorId::from_uuid(Uuid::from_u128(100 + n)),
                confirmed_at: None,
                created_at: NOW - Duration::minutes(5),
                ..confirmed_factor(None)
            })
            .collect())
    });
    factors.expect_add_factor().never();
    let mfa = service(factors);
    let caller = caller(Duration::minutes(1), None, false);
    assert!(matches!(mfa.begin_totp(&caller, None).await, Err(MfaError::TooManyFactors)));
}

fn ceremony(purpose: crate::mfa::CeremonyPurpose, expires_at: OffsetDateTime) -> crate::mfa::PasskeyCeremony {
    crate::mfa::PasskeyCeremony {
        id: crate::mfa::CeremonyId::from_uuid(Uuid::from_u128(9)),
        purpose,
        account_id: None,
        challenge: None,
        state: "state".to_owned(),
        created_at: NOW - Duration::minutes(1),
        expires_at,
    }
}

fn passkey_factor() -> StoredFactor {
    StoredFactor {
        kind: FactorKind::Passkey,
        secret: SealedSecret("passkey".to_owned()),
        credential_id: Some("cred".to_owned()),
        ..confirmed_factor(None)
    }
}

#[tokio::test]
async fn a_passkey_whose_counter_went_backwards_is_refused_and_its_use_not_recorded() {
    let mut factors = MockFactorRepository::new();
    factors
        .expect_take_ceremony()
        .returning(|_| Ok(Some(ceremony(crate::mfa::CeremonyPurpose::Passwordless, NOW + Duration::minutes(4)))));
    factors.expect_factor_by_credential().returning(|_| Ok(Some(passkey_factor())));
    factors.expect_record_passkey_use().never();
    let mut passkeys = crate::mfa::MockPasskeys::new();
    passkeys.expect_presented().returning(|_| {
        Ok(crate::mfa::PresentedPasskey { credential_id: "cred".to_owned(), user: Some(ACCOUNT.as_uuid()) })
    });
    passkeys.expect_finish_authentication().returning(|_, _, _| Err(crate::mfa::PasskeyRefusal::CounterWentBackwards));
    let mfa = service_with_passkeys(factors, Some(passkeys));
    let id = crate::mfa::CeremonyId::from_uuid(Uuid::from_u128(9));
    assert!(matches!(
        mfa.finish_passkey_authentication(id, "{}").await,
        Err(SecondStepError::PasskeyRefused(crate::mfa::PasskeyRefusal::CounterWentBackwards))
    ));
}

#[tokio::test]
async fn an_expired_or_registration_ceremony_finishes_no_login() {
    for taken in [
        ceremony(crate::mfa::CeremonyPurpose::Passwordless, NOW),
        ceremony(crate::mfa::CeremonyPurpose::Registration, NOW + Duration::minutes(4)),
    ] {
        let mut factors = MockFactorRepository::new();
        factors.expect_take_ceremony().returning(move |_| Ok(Some(taken.clone())));
        factors.expect_factor_by_credential().never();
        let mfa = service_with_passkeys(factors, Some(crate::mfa::MockPasskeys::new()));
        let id = crate::mfa::CeremonyId::from_uuid(Uuid::from_u128(9));
        assert!(matches!(mfa.finish_passkey_authentication(id, "{}").await, Err(SecondStepError::InvalidCeremony)));
    }
}

#[tokio::test]
async fn a_passkey_of_another_account_does_not_finish_a_passwordless_login_for_its_user_handle() {
    let mut factors = MockFactorRepository::new();
    factors
        .expect_take_ceremony()
        .returning(|_| Ok(Some(ceremony(crate::mfa::CeremonyPurpose::Passwordless, NOW + Duration::minutes(4)))));
    factors.expect_factor_by_credential().returning(|_| Ok(Some(passkey_factor())));
    let mut passkeys = crate::mfa::MockPasskeys::new();
    passkeys.expect_presented().returning(|_| {
        Ok(crate::mfa::PresentedPasskey { credential_id: "cred".to_owned(), user: Some(Uuid::from_u128(99)) })
    });
    passkeys.expect_finish_authentication().never();
    let mfa = service_with_passkeys(factors, Some(passkeys));
    let id = crate::mfa::CeremonyId::from_uuid(Uuid::from_u128(9));
    assert!(matches!(
        mfa.finish_passkey_authentication(id, "{}").await,
        Err(SecondStepError::PasskeyRefused(crate::mfa::PasskeyRefusal::Invalid(_)))
    ));
}

#[tokio::test]
async fn without_a_relying_party_passkeys_are_unavailable() {
    let mfa = service(MockFactorRepository::new());
    assert!(matches!(mfa.begin_passkey_authentication(None).await, Err(SecondStepError::PasskeysUnavailable(_))));
}
