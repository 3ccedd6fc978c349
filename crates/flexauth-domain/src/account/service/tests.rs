use super::*;
use crate::account::{
    AccountId, AccountRequest, AccountRequestKind, EmailAddress, MockAccountRepository, MockAccountRequestQueue,
    MockPasswordHasher,
};
use crate::mail::{EmailKind, MockOutbox};
use crate::secret::TokenHash;
use crate::system::{MockClock, MockSecureRandom};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use time::macros::datetime;
use uuid::Uuid;

const NOW: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);
const ACCOUNT: AccountId = AccountId::from_uuid(Uuid::nil());

struct Ports {
    accounts: MockAccountRepository,
    requests: MockAccountRequestQueue,
    outbox: MockOutbox,
    hasher: MockPasswordHasher,
    limiter: crate::limits::MockRateLimiter,
}

impl Ports {
    fn new() -> Self {
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_hash().returning(|password| Ok(PasswordHash::from_phc(format!("hash of {}", password.expose()))));
        Self {
            accounts: MockAccountRepository::new(),
            requests: MockAccountRequestQueue::new(),
            outbox: MockOutbox::new(),
            hasher,
            limiter: crate::limits::unlimited(),
        }
    }

    /// The worker's side: `request` is the one queued request.
    fn with_request(mut self, kind: AccountRequestKind) -> Self {
        let request = AccountRequest { id: Uuid::from_u128(9), email: email(), kind, requested_at: NOW };
        self.requests.expect_claim().times(1).returning(move |_, _, _, _| Ok(vec![request.clone()]));
        self.requests.expect_complete().withf(|id, _| *id == Uuid::from_u128(9)).times(1).returning(|_, _| Ok(()));
        self
    }

    fn service(self) -> AccountService {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(NOW);
        // Each draw differs, so ids and tokens are distinct, yet the sequence is fixed.
        let counter = AtomicU8::new(0);
        let mut random = MockSecureRandom::new();
        random.expect_fill().returning(move |buffer| buffer.fill(counter.fetch_add(1, Ordering::Relaxed)));
        let settings = AccountSettings {
            verification_ttl: Duration::hours(24),
            password_reset_ttl: Duration::hours(1),
            limits: LimitSettings::default(),
        };
        AccountService::new(
            Arc::new(self.accounts),
            Arc::new(self.requests),
            Arc::new(self.outbox),
            Arc::new(self.hasher),
            Arc::new(self.limiter),
            Arc::new(clock),
            Arc::new(random),
            crate::mail::Letters::new("https://auth.example.com", Arc::new(crate::mail::FactSheetWriter)),
            settings,
        )
    }
}

fn email() -> EmailAddress {
    EmailAddress::parse("ann@example.com").unwrap()
}

fn password(text: &str) -> NewPassword {
    NewPassword::parse(text.into()).unwrap()
}

fn account(verified: bool) -> Account {
    Account::from_storage(crate::account::StoredAccount {
        id: ACCOUNT,
        email: email(),
        password_hash: PasswordHash::from_phc("stored".into()),
        email_verified_at: verified.then_some(NOW),
        created_at: NOW,
        credential_version: 7,
        disabled_at: None,
        clients_forgotten_at: None,
    })
}

fn attempt(
    name: &str,
    password_hash: Option<&str>,
    used_at: Option<OffsetDateTime>,
    expires_at: OffsetDateTime,
) -> SignupAttempt {
    let link = LinkTokenRecord::from_storage(TokenHash::of(name.as_bytes()), ACCOUNT, expires_at, used_at);
    SignupAttempt::from_storage(link, password_hash.map(|phc| PasswordHash::from_phc(phc.into())), NOW)
}

fn pending(name: &str, password_hash: Option<&str>) -> SignupAttempt {
    attempt(name, password_hash, None, NOW + Duration::hours(1))
}

/// The token whose link is the attempt called `name` in these tests.
fn some_token() -> LinkToken {
    LinkToken::parse(&"A".repeat(43)).unwrap()
}

#[tokio::test]
async fn signup_resend_and_forgot_store_one_request_and_never_look_the_address_up() {
    let mut ports = Ports::new();
    let kinds = Arc::new(Mutex::new(Vec::new()));
    let seen = kinds.clone();
    ports.requests.expect_submit().times(3).returning(move |request| {
        seen.lock().unwrap().push((request.kind.clone(), request.email.as_str().to_owned(), request.requested_at));
        Ok(())
    });
    ports.accounts.expect_find_by_email().never();
    let service = ports.service();
    service.signup(email(), &password("a long enough passphrase"), Some("192.0.2.7")).await.unwrap();
    service.resend_verification(email(), Some("192.0.2.7")).await.unwrap();
    service.forgot_password(email(), None).await.unwrap();
    let kinds = kinds.lock().unwrap().clone();
    assert_eq!(
        kinds,
        vec![
            (
                AccountRequestKind::Signup {
                    password_hash: PasswordHash::from_phc("hash of a long enough passphrase".into())
                },
                "ann@example.com".into(),
                NOW
            ),
            (AccountRequestKind::ResendVerification, "ann@example.com".into(), NOW),
            (AccountRequestKind::ForgotPassword, "ann@example.com".into(), NOW),
        ]
    );
}

#[tokio::test]
async fn a_signup_for_a_new_address_creates_the_account_with_an_attempt_that_carries_its_password() {
    let mut ports = Ports::new()
        .with_request(AccountRequestKind::Signup { password_hash: PasswordHash::from_phc("chosen".into()) });
    ports.accounts.expect_find_by_email().returning(|_| Ok(None));
    ports
        .accounts
        .expect_create_unverified()
        .withf(|account, attempt, mail| {
            !account.is_email_verified()
                && attempt.link().account_id() == account.id()
                && attempt.link().expires_at() == NOW + Duration::hours(24)
                && attempt.password_hash().map(PasswordHash::as_phc) == Some("chosen")
                && mail.kind() == EmailKind::Verification
                && mail.to() == account.email()
        })
        .times(1)
        .returning(|_, _, _| Ok(()));
    assert_eq!(ports.service().handle_due_requests().await.unwrap().handled, 1);
}

#[tokio::test]
async fn a_signup_for_an_unverified_address_adds_an_attempt_and_keeps_the_newest_three() {
    let mut ports = Ports::new()
        .with_request(AccountRequestKind::Signup { password_hash: PasswordHash::from_phc("second".into()) });
    ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(false))));
    ports
        .accounts
        .expect_add_signup_attempt()
        .withf(|attempt, mail, now, keep| {
            attempt.password_hash().map(PasswordHash::as_phc) == Some("second")
                && mail.kind() == EmailKind::Verification
                && *now == NOW
                && *keep == 3
        })
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    ports.outbox.expect_enqueue().never();
    ports.service().handle_due_requests().await.unwrap();
}

#[tokio::test]
async fn a_signup_that_meets_a_confirmation_committed_meanwhile_tells_the_owner_instead() {
    let mut ports =
        Ports::new().with_request(AccountRequestKind::Signup { password_hash: PasswordHash::from_phc("late".into()) });
    ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(false))));
    ports.accounts.expect_add_signup_attempt().times(1).returning(|_, _, _, _| Ok(false));
    ports
        .outbox
        .expect_enqueue()
        .withf(|mail, _| mail.kind() == EmailKind::AccountExists)
        .times(1)
        .returning(|_, _| Ok(()));
    ports.service().handle_due_requests().await.unwrap();
}

#[tokio::test]
async fn a_request_that_fails_stays_queued_and_the_rest_of_the_batch_goes_on() {
    let mut ports = Ports::new();
    let requests: Vec<AccountRequest> = [1u128, 2]
        .map(|n| AccountRequest {
            id: Uuid::from_u128(n),
            email: email(),
            kind: AccountRequestKind::ForgotPassword,
            requested_at: NOW,
        })
        .into();
    ports.requests.expect_claim().returning(move |_, _, _, _| Ok(requests.clone()));
    ports.requests.expect_complete().withf(|id, _| *id == Uuid::from_u128(2)).times(1).returning(|_, _| Ok(()));
    let lookups = Mutex::new(0);
    ports.accounts.expect_find_by_email().returning(move |_| {
        let mut count = lookups.lock().unwrap();
        *count += 1;
        if *count == 1 {
            Err(InfraError::new("the database blinked"))
        } else {
            Ok(None)
        }
    });
    let report = ports.service().handle_due_requests().await.unwrap();
    assert_eq!(report.handled, 1);
    assert_eq!(report.failed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [Uuid::from_u128(1)]);
}

#[tokio::test]
async fn a_signup_for_a_verified_address_changes_nothing_and_tells_the_owner() {
    let mut ports =
        Ports::new().with_request(AccountRequestKind::Signup { password_hash: PasswordHash::from_phc("other".into()) });
    ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(true))));
    ports.accounts.expect_add_signup_attempt().never();
    ports
        .outbox
        .expect_enqueue()
        .withf(|mail, now| *now == NOW && mail.kind() == EmailKind::AccountExists)
        .times(1)
        .returning(|_, _| Ok(()));
    ports.service().handle_due_requests().await.unwrap();
}

#[tokio::test]
async fn a_resend_adds_an_attempt_without_a_password_and_only_for_an_unverified_address() {
    let mut ports = Ports::new().with_request(AccountRequestKind::ResendVerification);
    ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(false))));
    ports
        .accounts
        .expect_add_signup_attempt()
        .withf(|attempt, _, _, _| attempt.password_hash().is_none())
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    ports.service().handle_due_requests().await.unwrap();

    for found in [None, Some(account(true))] {
        let mut ports = Ports::new().with_request(AccountRequestKind::ResendVerification);
        ports.accounts.expect_find_by_email().returning(move |_| Ok(found.clone()));
        ports.accounts.expect_add_signup_attempt().never();
        ports.outbox.expect_enqueue().never();
        ports.service().handle_due_requests().await.unwrap();
    }
}

#[tokio::test]
async fn forgot_queues_a_one_hour_link_only_for_a_known_address() {
    let mut ports = Ports::new().with_request(AccountRequestKind::ForgotPassword);
    ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(true))));
    ports
        .accounts
        .expect_create_password_reset()
        .withf(|token, mail, now| {
            *now == NOW
                && token.expires_at() == NOW + Duration::hours(1)
                && mail.text_body().contains("/v1/auth/password/reset?token=")
        })
        .times(1)
        .returning(|_, _, _| Ok(()));
    ports.service().handle_due_requests().await.unwrap();

    let mut ports = Ports::new().with_request(AccountRequestKind::ForgotPassword);
    ports.accounts.expect_find_by_email().returning(|_| Ok(None));
    ports.accounts.expect_create_password_reset().never();
    ports.service().handle_due_requests().await.unwrap();
}

#[tokio::test]
async fn the_only_pending_signup_confirms_with_one_button_and_activates_its_own_password() {
    let mut ports = Ports::new();
    ports.accounts.expect_find_signup_attempt().returning(|_| Ok(Some(pending("mine", Some("my hash")))));
    ports.accounts.expect_pending_signup_attempts().returning(|_, _| Ok(vec![pending("mine", Some("my hash"))]));
    ports
        .accounts
        .expect_confirm_email()
        .withf(|confirmation| {
            confirmation.password_hash.as_phc() == "my hash"
                && confirmation.confirmed_at == NOW
                && confirmation.account_id == ACCOUNT
        })
        .times(1)
        .returning(|_| Ok(true));
    let service = ports.service();
    assert_eq!(
        service.confirmation_page(&some_token()).await.unwrap(),
        ConfirmationPage::ConfirmButton { signed_up_at: NOW }
    );
    assert_eq!(service.confirm_email(&some_token(), None).await.unwrap(), VerifyOutcome::Verified);
}

#[tokio::test]
async fn with_several_pending_signups_the_confirming_person_chooses_the_password() {
    let mut ports = Ports::new();
    ports.accounts.expect_find_signup_attempt().returning(|_| Ok(Some(pending("mine", Some("my hash")))));
    ports
        .accounts
        .expect_pending_signup_attempts()
        .returning(|_, _| Ok(vec![pending("attacker", Some("attacker hash")), pending("mine", Some("my hash"))]));
    ports
        .accounts
        .expect_confirm_email()
        .withf(|confirmation| confirmation.password_hash.as_phc() == "hash of typed at confirmation")
        .times(1)
        .returning(|_| Ok(true));
    let service = ports.service();
    assert_eq!(service.confirmation_page(&some_token()).await.unwrap(), ConfirmationPage::ChoosePassword);
    assert!(matches!(service.confirm_email(&some_token(), None).await, Err(VerifyEmailError::PasswordRequired)));
    let chosen = password("typed at confirmation");
    assert_eq!(service.confirm_email(&some_token(), Some(&chosen)).await.unwrap(), VerifyOutcome::Verified);
}

#[tokio::test]
async fn a_resent_link_always_asks_for_the_password() {
    let mut ports = Ports::new();
    ports.accounts.expect_find_signup_attempt().returning(|_| Ok(Some(pending("resent", None))));
    ports.accounts.expect_pending_signup_attempts().returning(|_, _| Ok(vec![pending("resent", None)]));
    ports.accounts.expect_confirm_email().never();
    let service = ports.service();
    assert_eq!(service.confirmation_page(&some_token()).await.unwrap(), ConfirmationPage::ChoosePassword);
    assert!(matches!(service.confirm_email(&some_token(), None).await, Err(VerifyEmailError::PasswordRequired)));
}

#[tokio::test]
async fn used_expired_and_unknown_links_confirm_nothing() {
    let mut ports = Ports::new();
    ports
        .accounts
        .expect_find_signup_attempt()
        .returning(|_| Ok(Some(attempt("used", Some("h"), Some(NOW - Duration::hours(2)), NOW - Duration::hours(1)))));
    ports.accounts.expect_confirm_email().never();
    let service = ports.service();
    assert_eq!(service.confirm_email(&some_token(), None).await.unwrap(), VerifyOutcome::AlreadyVerified);
    assert_eq!(service.confirmation_page(&some_token()).await.unwrap(), ConfirmationPage::AlreadyVerified);

    let mut ports = Ports::new();
    ports.accounts.expect_find_signup_attempt().returning(|_| Ok(Some(attempt("old", Some("h"), None, NOW))));
    assert!(matches!(ports.service().confirm_email(&some_token(), None).await, Err(VerifyEmailError::Expired)));

    let mut ports = Ports::new();
    ports.accounts.expect_find_signup_attempt().returning(|_| Ok(None));
    assert!(matches!(ports.service().confirmation_page(&some_token()).await, Err(VerifyEmailError::InvalidToken)));
}

fn reset_record(used_at: Option<OffsetDateTime>, expires_at: OffsetDateTime) -> LinkTokenRecord {
    LinkTokenRecord::from_storage(TokenHash::of(b"reset"), ACCOUNT, expires_at, used_at)
}

#[tokio::test]
async fn a_reset_ends_every_session_spends_its_link_verifies_the_address_and_tells_the_owner() {
    let mut ports = Ports::new();
    ports
        .accounts
        .expect_find_password_reset()
        .returning(|_| Ok(Some(reset_record(None, NOW + Duration::minutes(30)))));
    ports.accounts.expect_find_by_id().returning(|_| Ok(Some(account(true))));
    ports
        .accounts
        .expect_apply_credential_change()
        .withf(|change| {
            change.password_hash.as_phc() == "hash of a brand new passphrase"
                && change.expected_version.is_none()
                && change.reset_link == Some(TokenHash::of(b"reset"))
                && change.end_sessions == SessionsToEnd::All
                && change.reason == RevocationReason::PasswordReset
                && change.verify_email
                && change.notice.kind() == EmailKind::PasswordWasReset
                && change.at == NOW
        })
        .times(1)
        .returning(|_| Ok(true));
    ports.service().reset_password(&some_token(), &password("a brand new passphrase"), None).await.unwrap();
}

#[tokio::test]
async fn a_used_expired_or_outraced_reset_link_is_refused() {
    let mut ports = Ports::new();
    ports
        .accounts
        .expect_find_password_reset()
        .returning(|_| Ok(Some(reset_record(Some(NOW), NOW + Duration::minutes(30)))));
    assert!(matches!(
        ports.service().reset_password(&some_token(), &password("a brand new passphrase"), None).await,
        Err(ResetPasswordError::InvalidToken)
    ));
    let mut ports = Ports::new();
    ports.accounts.expect_find_password_reset().returning(|_| Ok(Some(reset_record(None, NOW))));
    assert!(matches!(
        ports.service().reset_password(&some_token(), &password("a brand new passphrase"), None).await,
        Err(ResetPasswordError::Expired)
    ));
    let mut ports = Ports::new();
    ports
        .accounts
        .expect_find_password_reset()
        .returning(|_| Ok(Some(reset_record(None, NOW + Duration::minutes(30)))));
    ports.accounts.expect_find_by_id().returning(|_| Ok(Some(account(true))));
    ports.accounts.expect_apply_credential_change().returning(|_| Ok(false));
    assert!(matches!(
        ports.service().reset_password(&some_token(), &password("a brand new passphrase"), None).await,
        Err(ResetPasswordError::InvalidToken)
    ));
}

#[tokio::test]
async fn past_the_mail_cap_a_request_is_handled_as_usual_but_queues_nothing() {
    let mut ports = Ports::new().with_request(AccountRequestKind::ForgotPassword);
    let mut limiter = crate::limits::MockRateLimiter::new();
    limiter
        .expect_hit()
        .withf(|key, policy, _| {
            key == format!("password_reset:{}", email_key(&email())) && policy.name == "emails_per_recipient"
        })
        .times(1)
        .returning(|_, policy, _| {
            Ok(crate::limits::LimitDecision {
                policy: *policy,
                allowed: false,
                remaining: 0,
                reset_after: Duration::minutes(30),
            })
        });
    ports.limiter = limiter;
    ports.accounts.expect_find_by_email().returning(|_| Ok(Some(account(true))));
    ports.accounts.expect_create_password_reset().never();
    assert_eq!(ports.service().handle_due_requests().await.unwrap().handled, 1, "the request is done with");
}

#[tokio::test]
async fn an_address_past_its_request_limit_is_refused_before_hashing_or_storing() {
    let mut ports = Ports::new();
    let mut limiter = crate::limits::MockRateLimiter::new();
    limiter
        .expect_hit()
        .withf(|key, policy, _| key == "192.0.2.7" && policy.name == "mail_requests_per_address")
        .returning(|_, policy, _| {
            Ok(crate::limits::LimitDecision {
                policy: *policy,
                allowed: false,
                remaining: 0,
                reset_after: Duration::minutes(3),
            })
        });
    ports.limiter = limiter;
    ports.hasher = MockPasswordHasher::new();
    ports.hasher.expect_hash().never();
    ports.requests.expect_submit().never();
    let outcome = ports.service().signup(email(), &password("a long enough passphrase"), Some("192.0.2.7")).await;
    assert!(matches!(outcome, Err(SignupError::Throttled(_))));
}
