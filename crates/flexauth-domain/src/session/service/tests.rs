use super::*;
use crate::account::{
    Account, ChangePasswordError, LinkTokenRecord, MockAccountRepository, MockPasswordHasher, NewPassword, Password,
    PasswordHash, SessionsToEnd, SignupAttempt,
};
use crate::limits::{email_key, LimitSettlement};
use crate::mail::EmailKind;
use crate::newtypes::{AuthenticationMethods, EmailAddress};
use crate::principal::AuthMethod;
use crate::session::{MockSessionRepository, MockTokenSigner, StoredSession, TokenRejection};
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
    signer
        .expect_sign_access()
        .returning(|claims| Ok(format!("at:{}:{}", claims.token_id, claims.issued_at.unix_timestamp())));
    signer.expect_sign_refresh().returning(|claims| {
        Ok(format!("rt:{}:{}", URL_SAFE_NO_PAD.encode(claims.secret.expose()), claims.issued_at.unix_timestamp()))
    });
    signer.expect_verify_refresh().returning(|token| {
        let secret =
            token.strip_prefix("rt:").and_then(|rest| rest.split(':').next()).ok_or(TokenRejection::Malformed)?;
        let bytes: [u8; 32] =
            URL_SAFE_NO_PAD.decode(secret).ok().and_then(|b| b.try_into().ok()).ok_or(TokenRejection::Malformed)?;
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
    ended: crate::session::MockEndedSessions,
    limiter: crate::limits::MockRateLimiter,
    audit: crate::audit::MockAuditLog,
    now: OffsetDateTime,
    /// Whether the account has a confirmed second factor.
    has_second_factor: bool,
}

impl Ports {
    fn new() -> Self {
        Self {
            accounts: MockAccountRepository::new(),
            sessions: MockSessionRepository::new(),
            hasher: MockPasswordHasher::new(),
            signer: readable_signer(),
            // Nothing has ended unless a test says so.
            ended: {
                let mut ended = crate::session::MockEndedSessions::new();
                ended.expect_has_ended().returning(|_| Some(false));
                ended
            },
            limiter: crate::limits::unlimited(),
            audit: {
                let mut audit = crate::audit::MockAuditLog::new();
                audit.expect_record().returning(|_| Ok(()));
                audit
            },
            now: NOW,
            has_second_factor: false,
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
            Arc::new(self.ended),
            Arc::new(self.limiter),
            Arc::new(self.audit),
            Arc::new(clock),
            Arc::new(random),
            crate::mfa::test_mfa(self.has_second_factor),
            crate::mail::Letters::new("https://auth.example.com", Arc::new(crate::mail::FactSheetWriter)),
            SessionSettings::default(),
        )
    }
}

fn account(verified: bool) -> Account {
    Account::from_storage(stored_account(verified))
}

fn stored_account(verified: bool) -> crate::account::StoredAccount {
    crate::account::StoredAccount {
        id: ACCOUNT,
        email: EmailAddress::parse("ann@example.com").unwrap(),
        password_hash: PasswordHash::from_phc("h".into()),
        email_verified_at: verified.then_some(NOW),
        created_at: NOW,
        credential_version: 4,
        disabled_at: None,
        clients_forgotten_at: None,
    }
}

/// A pending sign-up attempt whose password hashes to `phc`.
fn attempt(phc: &str) -> SignupAttempt {
    attempt_made(phc, NOW - Duration::hours(2))
}

/// A pending sign-up attempt whose password hashes to `phc`, made at `at`.
fn attempt_made(phc: &str, at: OffsetDateTime) -> SignupAttempt {
    let link = LinkTokenRecord::issue(crate::secret::TokenHash::of(phc.as_bytes()), ACCOUNT, NOW + Duration::hours(1));
    SignupAttempt::issue(link, Some(PasswordHash::from_phc(phc.into())), at)
}

fn session_caller() -> Principal {
    Principal { account_id: ACCOUNT, method: AuthMethod::Session(SESSION), grants: crate::newtypes::Grants::Every }
}

/// What the store answers a login that names `account` (or nothing): no second factor, no
/// device it knows.
fn found(account: Option<Account>) -> Result<Option<crate::account::LoginCandidate>, crate::InfraError> {
    Ok(account.map(|account| crate::account::LoginCandidate {
        account,
        has_second_factor: false,
        device_last_seen_at: None,
    }))
}

fn credentials() -> (EmailAddress, Password) {
    (EmailAddress::parse("ann@example.com").unwrap(), Password::parse("a long enough passphrase".into()).unwrap())
}

#[tokio::test]
async fn login_with_an_unknown_email_spends_a_dummy_verification_and_fails_like_a_wrong_password() {
    let mut ports = Ports::new();
    ports.accounts.expect_find_for_login().returning(|_, _| found(None));
    ports.hasher.expect_verify_against_dummy().times(1).returning(|_| Ok(()));
    ports.sessions.expect_create().never();
    let (email, password) = credentials();
    assert!(matches!(
        ports.service().login(&email, &password, ClientInfo::default()).await,
        Err(LoginError::InvalidCredentials)
    ));
}

#[tokio::test]
async fn a_wrong_password_on_an_address_with_pending_sign_ups_costs_the_one_verification_every_login_does() {
    let mut ports = Ports::new();
    ports.accounts.expect_find_for_login().returning(|_, _| found(Some(account(false))));
    ports.accounts.expect_pending_signup_attempts().returning(|_, _| {
        Ok(vec![attempt_made("first", NOW - Duration::hours(1)), attempt_made("second", NOW), attempt("third")])
    });
    ports.hasher.expect_verify().times(1).returning(|_, _| Ok(false));
    ports.hasher.expect_verify_against_dummy().never();
    let (email, password) = credentials();
    assert!(matches!(
        ports.service().login(&email, &password, ClientInfo::default()).await,
        Err(LoginError::InvalidCredentials)
    ));
}

#[tokio::test]
async fn login_says_email_not_verified_for_the_password_of_the_newest_pending_sign_up_only() {
    for (right, expected) in [("newest", true), ("older", false)] {
        let mut ports = Ports::new();
        ports.accounts.expect_find_for_login().returning(|_, _| found(Some(account(false))));
        ports
            .accounts
            .expect_pending_signup_attempts()
            .returning(|_, _| Ok(vec![attempt_made("older", NOW - Duration::minutes(5)), attempt_made("newest", NOW)]));
        // The account row's placeholder hash ("h") is never what decides.
        ports.hasher.expect_verify().times(1).returning(move |_, hash| Ok(hash.as_phc() == right));
        ports.sessions.expect_create().never();
        let (email, password) = credentials();
        let outcome = ports.service().login(&email, &password, ClientInfo::default()).await;
        assert_eq!(matches!(outcome, Err(LoginError::EmailNotVerified)), expected, "the password of {right}");
        assert_eq!(matches!(outcome, Err(LoginError::InvalidCredentials)), !expected, "the password of {right}");
    }
}

#[tokio::test]
async fn a_disabled_account_is_told_so_only_after_the_right_password_and_opens_no_session() {
    for (right, expected) in [(true, "disabled"), (false, "invalid")] {
        let mut ports = Ports::new();
        ports.accounts.expect_find_for_login().returning(|_, _| {
            let disabled = Some(NOW - Duration::hours(1));
            found(Some(Account::from_storage(crate::account::StoredAccount {
                disabled_at: disabled,
                ..stored_account(true)
            })))
        });
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
    ports.accounts.expect_find_for_login().returning(|_, _| found(Some(account(false))));
    ports.accounts.expect_pending_signup_attempts().returning(|_, _| Ok(vec![]));
    ports.hasher.expect_verify().never();
    ports.hasher.expect_verify_against_dummy().times(1).returning(|_| Ok(()));
    let (email, password) = credentials();
    assert!(matches!(
        ports.service().login(&email, &password, ClientInfo::default()).await,
        Err(LoginError::InvalidCredentials)
    ));
}

#[tokio::test]
async fn a_login_whose_password_was_reset_during_the_check_opens_no_session() {
    let mut ports = Ports::new();
    ports.accounts.expect_find_for_login().returning(|_, _| found(Some(account(true))));
    ports.hasher.expect_verify().returning(|_, _| Ok(true));
    // The store refuses the insert: the credential version is no longer 4.
    ports.sessions.expect_create().withf(|_, version, _, _| *version == 4).times(1).returning(|_, _, _, _| Ok(false));
    let (email, password) = credentials();
    assert!(matches!(
        ports.service().login(&email, &password, ClientInfo::default()).await,
        Err(LoginError::InvalidCredentials)
    ));
}

#[tokio::test]
async fn the_right_password_of_an_account_with_a_second_factor_opens_no_session_but_a_challenge() {
    let mut ports = Ports::new();
    ports.has_second_factor = true;
    ports.accounts.expect_find_for_login().returning(|_, _| {
        Ok(Some(crate::account::LoginCandidate {
            account: account(true),
            has_second_factor: true,
            device_last_seen_at: None,
        }))
    });
    ports.hasher.expect_verify().returning(|_, _| Ok(true));
    ports.sessions.expect_create().never();
    ports.sessions.expect_remember_device().never();
    let (email, password) = credentials();
    match ports.service().login(&email, &password, ClientInfo::default()).await {
        Err(LoginError::SecondFactorRequired(challenge)) => {
            assert_eq!(challenge.methods, vec!["totp"]);
            assert_eq!(challenge.expires_in, 300);
        }
        other => panic!("expected a challenge, got {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_password_answers_the_same_with_or_without_a_second_factor() {
    for has_second_factor in [false, true] {
        let mut ports = Ports::new();
        ports.has_second_factor = has_second_factor;
        ports.accounts.expect_find_for_login().returning(move |_, _| {
            Ok(Some(crate::account::LoginCandidate {
                account: account(true),
                has_second_factor,
                device_last_seen_at: None,
            }))
        });
        ports.hasher.expect_verify().returning(|_, _| Ok(false));
        let (email, password) = credentials();
        assert!(matches!(
            ports.service().login(&email, &password, ClientInfo::default()).await,
            Err(LoginError::InvalidCredentials)
        ));
    }
}

#[tokio::test]
async fn login_opens_a_session_and_returns_a_one_hour_pair() {
    let mut ports = Ports::new();
    ports.accounts.expect_find_for_login().returning(|_, _| found(Some(account(true))));
    ports.hasher.expect_verify().returning(|_, _| Ok(true));
    ports
        .sessions
        .expect_create()
        .withf(|session, version, event, _| {
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
        .returning(|_, _, _, _| Ok(true));
    // The device is remembered with the session, not by a write of its own.
    ports.sessions.expect_device_known().never();
    ports.sessions.expect_remember_device().never();
    let (email, password) = credentials();
    let pair = ports.service().login(&email, &password, ClientInfo::default()).await.unwrap();
    assert!(pair.new_device.is_some(), "a device the account does not know gets a token");
    assert_eq!(pair.expires_in, 3600);
    assert!(pair.access_token.starts_with("at:"));
    assert!(pair.refresh_token.starts_with("rt:"));
}

fn live_session(secret: &RefreshSecret) -> Session {
    Session::start(
        SESSION,
        ACCOUNT,
        secret,
        NOW - Duration::minutes(5),
        Duration::days(30),
        Duration::days(90),
        ClientInfo::default(),
        AuthenticationMethods::password(),
    )
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
        .withf(move |rotation| {
            rotation.expected_current == expected && rotation.issued_at == NOW && rotation.generation == 1
        })
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
    AccessClaims {
        account_id: ACCOUNT,
        session_id: SESSION,
        token_id: Uuid::nil(),
        issued_at,
        not_before: issued_at,
        expires_at: issued_at + Duration::hours(1),
        methods: AuthenticationMethods::password(),
    }
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
    assert!(matches!(
        ports.service().authenticate("t").await,
        Err(AuthenticateError::Rejected(TokenRejection::WrongType))
    ));
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

fn ended_answering(answer: Option<bool>) -> crate::session::MockEndedSessions {
    let mut ended = crate::session::MockEndedSessions::new();
    ended.expect_has_ended().with(mockall::predicate::eq(SESSION)).returning(move |_| answer);
    ended
}

#[tokio::test]
async fn an_ended_sessions_access_token_is_refused_from_memory_without_a_storage_read() {
    for (answer, refused) in [(Some(true), true), (Some(false), false)] {
        let mut ports = Ports::new();
        ports.signer = signer_returning(access_claims(NOW - Duration::minutes(1)));
        ports.ended = ended_answering(answer);
        ports.sessions.expect_find().never();
        let outcome = ports.service().authenticate("t").await;
        assert_eq!(matches!(outcome, Err(AuthenticateError::SessionRevoked)), refused, "{answer:?}: {outcome:?}");
        assert_eq!(outcome.is_ok(), !refused);
    }
}

#[tokio::test]
async fn when_memory_cannot_vouch_for_its_answer_storage_is_read_instead() {
    for (found, refused) in [(true, false), (false, true)] {
        let mut ports = Ports::new();
        ports.signer = signer_returning(access_claims(NOW - Duration::minutes(1)));
        ports.ended = ended_answering(None);
        let session = live_session(&RefreshSecret::from_bytes([1; 32]));
        ports.sessions.expect_find().times(1).returning(move |_| Ok(found.then(|| session.clone())));
        let outcome = ports.service().authenticate("t").await;
        assert_eq!(matches!(outcome, Err(AuthenticateError::SessionRevoked)), refused, "{found}: {outcome:?}");
    }
}

#[tokio::test]
async fn logout_scopes_revoke_the_current_the_others_or_all() {
    use mockall::predicate::{always, eq};
    let mut ports = Ports::new();
    let session = live_session(&RefreshSecret::from_bytes([1; 32]));
    ports.sessions.expect_find().returning(move |_| Ok(Some(session.clone())));
    ports
        .sessions
        .expect_revoke()
        .with(eq(SESSION), eq(NOW), eq(RevocationReason::Logout))
        .times(1)
        .returning(|_, _, _| Ok(true));
    ports
        .sessions
        .expect_revoke_all()
        .with(eq(ACCOUNT), eq(Some(SESSION)), eq(NOW), always())
        .times(1)
        .returning(|_, _, _, _| Ok(2));
    ports
        .sessions
        .expect_revoke_all()
        .with(eq(ACCOUNT), eq(None), eq(NOW), always())
        .times(1)
        .returning(|_, _, _, _| Ok(3));
    // Only the global logout forgets the clients the account knew.
    ports.sessions.expect_forget_known_clients().with(eq(ACCOUNT), eq(NOW)).times(1).returning(|_, _| Ok(()));
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
    let caller = Principal {
        account_id: ACCOUNT,
        method: AuthMethod::ApiKey(crate::newtypes::ApiKeyId::from_uuid(Uuid::nil())),
        grants: crate::newtypes::Grants::Only(Default::default()),
    };
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
    assert!(matches!(service.require_live(&session_caller()).await, Err(LiveSessionError::SessionEnded(_))));
    assert!(matches!(
        service.logout(&session_caller(), LogoutScope::Global).await,
        Err(ManageSessionsError::SessionEnded(_))
    ));
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
    ports
        .sessions
        .expect_mark_authenticated()
        .with(mockall::predicate::eq(SESSION), mockall::predicate::eq(NOW))
        .times(1)
        .returning(|_, _| Ok(true));
    let service = ports.service();
    let caller = LiveSession::new(ACCOUNT, SESSION, NOW - Duration::hours(1));
    let wrong =
        service.reauthenticate(&caller, &Password::parse("wrong one".into()).unwrap(), &client_at("192.0.2.7")).await;
    assert!(matches!(wrong, Err(ReauthenticateError::WrongPassword)));
    assert_eq!(
        service
            .reauthenticate(&caller, &Password::parse("right one".into()).unwrap(), &client_at("192.0.2.7"))
            .await
            .unwrap(),
        NOW
    );
}

fn live_caller() -> LiveSession {
    LiveSession::new(ACCOUNT, SESSION, NOW - Duration::minutes(5))
}

/// A limiter that counts hits per key and policy in memory, with the real window arithmetic,
/// and records every refund.
#[derive(Clone, Default)]
struct CountingLimiter {
    counts: Arc<Mutex<std::collections::HashMap<String, u64>>>,
    refunds: Arc<Mutex<Vec<String>>>,
}

impl CountingLimiter {
    fn mock(&self) -> crate::limits::MockRateLimiter {
        use crate::limits::{window_start, LimitDecision};
        let mut limiter = crate::limits::MockRateLimiter::new();
        let counts = self.counts.clone();
        limiter.expect_hit().returning(move |key, policy, now| {
            let mut counts = counts.lock().unwrap();
            let count = counts.entry(format!("{}:{key}", policy.name)).or_default();
            *count += 1;
            Ok(LimitDecision::of_count(*policy, *count, window_start(policy, now), now))
        });
        let (counts, refunds) = (self.counts.clone(), self.refunds.clone());
        limiter.expect_refund().returning(move |key, policy, _| {
            let name = format!("{}:{key}", policy.name);
            if let Some(count) = counts.lock().unwrap().get_mut(&name) {
                *count = count.saturating_sub(1);
            }
            refunds.lock().unwrap().push(name);
            Ok(())
        });
        limiter.expect_reset().returning(|_, _| Ok(()));
        limiter
    }
}

#[tokio::test]
async fn the_wrong_password_that_uses_up_the_sessions_checks_ends_the_session_and_tells_the_owner() {
    let mut ports = Ports::new();
    let counting = CountingLimiter::default();
    ports.limiter = counting.mock();
    ports.accounts.expect_find_by_id().returning(|_| Ok(Some(account(true))));
    ports.hasher.expect_verify().times(5).returning(|_, _| Ok(false));
    let recorded: Arc<Mutex<Vec<AuditKind>>> = Arc::default();
    ports.audit = crate::audit::MockAuditLog::new();
    ports.audit.expect_record().returning({
        let recorded = recorded.clone();
        move |event| {
            assert_eq!((event.session_id, event.client.ip.as_deref()), (Some(SESSION), Some("203.0.113.9")));
            recorded.lock().unwrap().push(event.kind);
            Ok(())
        }
    });
    ports
        .sessions
        .expect_revoke_with_notice()
        .withf(|id, at, reason, notice, event| {
            (*id, *at, *reason) == (SESSION, NOW, RevocationReason::PasswordFailures)
                && notice.kind() == EmailKind::SessionEndedForPasswordFailures
                && notice.text_body().contains("client_ip: 203.0.113.9")
                && event.kind == AuditKind::SessionEndedForPasswordFailures
        })
        .times(1)
        .returning(|_, _, _, _, _| Ok(true));
    let service = ports.service();
    let client = client_at("203.0.113.9");
    for guess in 1..=4 {
        let wrong =
            service.reauthenticate(&live_caller(), &Password::parse(format!("guess {guess}")).unwrap(), &client).await;
        assert!(matches!(wrong, Err(ReauthenticateError::WrongPassword)), "guess {guess}");
    }
    let fifth = service
        .change_password(&live_caller(), &Password::parse("guess 5".into()).unwrap(), &new_password(), &client)
        .await;
    assert!(matches!(fifth, Err(ChangePasswordError::WrongPassword)));
    assert_eq!(*recorded.lock().unwrap(), vec![AuditKind::PasswordCheckFailed; 5]);
    // The sixth is refused before any hashing (the mock allows five verifications).
    let sixth = service.reauthenticate(&live_caller(), &Password::parse("guess 6".into()).unwrap(), &client).await;
    assert!(matches!(sixth, Err(ReauthenticateError::Throttled(_))));
    assert!(counting.refunds.lock().unwrap().is_empty(), "a wrong password is never refunded");
}

fn new_password() -> NewPassword {
    NewPassword::parse("a brand new passphrase".into()).unwrap()
}

#[tokio::test]
async fn a_right_password_takes_back_its_count_from_the_session_the_account_and_the_address() {
    let mut ports = Ports::new();
    let counting = CountingLimiter::default();
    ports.limiter = counting.mock();
    ports.accounts.expect_find_by_id().returning(|_| Ok(Some(account(true))));
    ports.hasher.expect_verify().returning(|_, _| Ok(true));
    ports.sessions.expect_mark_authenticated().returning(|_, _| Ok(true));
    ports.sessions.expect_revoke_with_notice().never();
    let service = ports.service();
    let right = Password::parse("the right one".into()).unwrap();
    service.reauthenticate(&live_caller(), &right, &client_at("2001:db8:1:2::7")).await.unwrap();
    let mut refunds = counting.refunds.lock().unwrap().clone();
    refunds.sort();
    assert_eq!(
        refunds,
        [
            format!("password_checks_per_account:{ACCOUNT}"),
            "password_checks_per_address:2001:db8:1:2::/64".to_owned(),
            format!("password_checks_per_session:{SESSION}"),
        ]
    );
}

#[tokio::test]
async fn a_change_needs_the_current_password_keeps_the_callers_session_and_commits_only_on_the_version_it_checked() {
    let mut ports = Ports::new();
    ports.accounts.expect_find_by_id().returning(|_| Ok(Some(account(true))));
    ports.hasher.expect_verify().returning(|password, _| Ok(password.expose() == "the current one"));
    ports
        .hasher
        .expect_hash()
        .returning(|password| Ok(PasswordHash::from_phc(format!("hash of {}", password.expose()))));
    ports
        .accounts
        .expect_apply_credential_change()
        .withf(|change| {
            change.expected_version == Some(4)
                && change.reset_link.is_none()
                && change.end_sessions == SessionsToEnd::AllExcept(SESSION)
                && change.reason == RevocationReason::PasswordChange
                && !change.verify_email
                && change.notice.kind() == EmailKind::PasswordChanged
                && change.event.client.ip.as_deref() == Some("192.0.2.7")
        })
        .times(2)
        .returning({
            let outcomes = Mutex::new(vec![false, true]);
            move |_| Ok(outcomes.lock().unwrap().pop().unwrap_or(false))
        });
    let service = ports.service();
    let client = client_at("192.0.2.7");
    let wrong = service
        .change_password(&live_caller(), &Password::parse("not it".into()).unwrap(), &new_password(), &client)
        .await;
    assert!(matches!(wrong, Err(ChangePasswordError::WrongPassword)));
    let current = Password::parse("the current one".into()).unwrap();
    service.change_password(&live_caller(), &current, &new_password(), &client).await.unwrap();
    let raced = service.change_password(&live_caller(), &current, &new_password(), &client).await;
    assert!(matches!(raced, Err(ChangePasswordError::CredentialsChanged)));
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
    let each = hits.clone();
    limiter.expect_hit().returning(move |key, policy, _| {
        each.lock().unwrap().push(format!("{}:{key}", policy.name));
        Ok(decide(key, policy))
    });
    limiter.expect_hit_all().returning(move |counters, _| {
        let mut hits = hits.lock().unwrap();
        hits.extend(counters.iter().map(|counter| format!("{}:{}", counter.policy.name, counter.key)));
        Ok(counters.iter().map(|counter| decide(&counter.key, &counter.policy)).collect())
    });
    limiter.expect_reset().returning(|_, _| Ok(()));
    limiter.expect_refund().returning(|_, _, _| Ok(()));
    limiter.expect_settle().returning(|_, _| Ok(()));
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
    ports.accounts.expect_find_for_login().never();
    ports.hasher.expect_verify().never();
    ports.hasher.expect_verify_against_dummy().never();
    let (email, password) = credentials();
    let outcome = ports.service().login(&email, &password, client_at("192.0.2.7")).await;
    assert!(matches!(outcome, Err(LoginError::Throttled(limited)) if limited.0.reset_after == Duration::seconds(42)));
}

#[tokio::test]
async fn an_address_past_its_limit_gives_the_account_its_counts_back() {
    // The counters are hit together; an attacker's address that is over its limit must not
    // wear down the per-account limit of whatever address it types.
    let mut limiter = crate::limits::MockRateLimiter::new();
    limiter.expect_hit_all().times(1).returning(|counters, _| {
        Ok(counters
            .iter()
            .map(|counter| crate::limits::LimitDecision {
                policy: counter.policy,
                allowed: counter.policy.name != "login_failures_per_address",
                remaining: 0,
                reset_after: Duration::seconds(42),
            })
            .collect())
    });
    limiter
        .expect_settle()
        .withf(|settlements, _| {
            let account = email_key(&credentials().0);
            settlements.len() == 2
                && settlements
                    .iter()
                    .all(|settlement| matches!(settlement, LimitSettlement::Refund(counter) if counter.key == account))
        })
        .times(1)
        .returning(|_, _| Ok(()));
    let mut ports = Ports::new();
    ports.limiter = limiter;
    ports.accounts.expect_find_for_login().never();
    ports.hasher.expect_verify_against_dummy().never();
    let (email, password) = credentials();
    let outcome = ports.service().login(&email, &password, client_at("192.0.2.7")).await;
    assert!(
        matches!(outcome, Err(LoginError::Throttled(limited)) if limited.0.policy.name == "login_failures_per_address")
    );
}

#[tokio::test]
async fn a_failed_login_counts_against_the_address_and_the_account_typed_known_or_not() {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let mut ports = Ports::new();
    ports.limiter = limiter_over("nothing", hits.clone());
    ports.accounts.expect_find_for_login().returning(|_, _| found(None));
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
    ports.accounts.expect_find_for_login().returning(|_, _| found(Some(account(true))));
    ports
        .sessions
        .expect_logged_in_from()
        .returning(|_, ip, since| Ok(ip == "198.51.100.1" && since == NOW - Duration::days(30)));
    ports.hasher.expect_verify().returning(|_, _| Ok(true));
    ports.sessions.expect_create().times(1).returning(|_, _, _, _| Ok(true));
    let service = ports.service();
    let (email, password) = credentials();
    let stranger = service.login(&email, &password, client_at("203.0.113.9")).await;
    assert!(matches!(stranger, Err(LoginError::Throttled(_))), "even with the right password, an unknown client waits");
    service.login(&email, &password, client_at("198.51.100.1")).await.unwrap();
}

#[tokio::test]
async fn a_client_known_only_from_before_the_account_forgot_its_clients_is_a_stranger() {
    let mut ports = Ports::new();
    ports.limiter = limiter_over(leak(email_key(&credentials().0)), Arc::default());
    let forgotten = NOW - Duration::hours(2);
    // The device last logged in to the account just before the owner made it forget its
    // clients.
    ports.accounts.expect_find_for_login().returning(move |_, device| {
        Ok(Some(crate::account::LoginCandidate {
            account: Account::from_storage(crate::account::StoredAccount {
                clients_forgotten_at: Some(forgotten),
                ..stored_account(true)
            }),
            has_second_factor: false,
            device_last_seen_at: device.map(|_| forgotten - Duration::minutes(1)),
        }))
    });
    // The store answers for the window it is asked about: after the forgetting, not 30 days.
    let after = forgotten + Duration::milliseconds(1);
    ports.sessions.expect_logged_in_from().withf(move |_, _, since| *since == after).returning(|_, _, _| Ok(false));
    ports.hasher.expect_verify().never();
    let (email, password) = credentials();
    let mut client = client_at("198.51.100.1");
    client.device = Some(crate::secret::DeviceToken::parse(&"A".repeat(43)).unwrap());
    let outcome = ports.service().login(&email, &password, client).await;
    assert!(matches!(outcome, Err(LoginError::Throttled(_))));
}

#[tokio::test]
async fn an_attack_that_waits_out_the_short_window_is_told_to_wait_for_the_daily_one() {
    use crate::limits::{LimitDecision, LimitPolicy};
    let mut limiter = crate::limits::MockRateLimiter::new();
    // The fifteen-minute tier has room again; the daily one is full.
    let decide = |policy: &LimitPolicy| {
        let daily = policy.name == "login_failures_per_account_daily";
        let reset_after = if daily { Duration::hours(9) } else { Duration::minutes(4) };
        LimitDecision { policy: *policy, allowed: !daily, remaining: 0, reset_after }
    };
    limiter.expect_hit().returning(move |_, policy: &LimitPolicy, _| Ok(decide(policy)));
    limiter.expect_hit_all().returning(move |counters, _| Ok(counters.iter().map(|c| decide(&c.policy)).collect()));
    let mut ports = Ports::new();
    ports.limiter = limiter;
    ports.accounts.expect_find_for_login().returning(|_, _| found(Some(account(true))));
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
    let known = crate::secret::DeviceToken::parse(&"A".repeat(43)).unwrap();
    let known_hash = known.hash();
    ports.accounts.expect_find_for_login().returning(move |_, device| {
        Ok(Some(crate::account::LoginCandidate {
            account: account(true),
            has_second_factor: false,
            device_last_seen_at: (device == Some(known_hash)).then_some(NOW - Duration::days(2)),
        }))
    });
    ports.sessions.expect_logged_in_from().returning(|_, _, _| Ok(false));
    ports.hasher.expect_verify().returning(|_, _| Ok(true));
    // The known device is remembered again with the session.
    ports
        .sessions
        .expect_create()
        .withf(move |_, _, _, device| *device == known_hash)
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    let service = ports.service();
    let (email, password) = credentials();
    let mut client = client_at("203.0.113.200");
    assert!(matches!(service.login(&email, &password, client.clone()).await, Err(LoginError::Throttled(_))));
    client.device = Some(known);
    let pair = service.login(&email, &password, client).await.unwrap();
    assert!(pair.new_device.is_none(), "a known device keeps its token");
}

#[tokio::test]
async fn a_successful_login_settles_each_counter_once() {
    let mut ports = Ports::new();
    ports.accounts.expect_find_for_login().returning(|_, _| found(Some(account(true))));
    ports.hasher.expect_verify().returning(|_, _| Ok(true));
    ports.sessions.expect_create().returning(|_, _, _, _| Ok(true));
    // A strict limiter: a call it was not told of fails the test. The three counters are hit
    // in one call and settled in one call.
    let mut limiter = crate::limits::MockRateLimiter::new();
    limiter.expect_hit_all().times(1).returning(|counters, _| {
        Ok(counters
            .iter()
            .map(|counter| crate::limits::LimitDecision {
                policy: counter.policy,
                allowed: true,
                remaining: counter.policy.limit,
                reset_after: counter.policy.window,
            })
            .collect())
    });
    // The address gets its count back; the account's two tiers are cleared, not refunded first.
    limiter
        .expect_settle()
        .withf(|settlements, _| {
            let account = email_key(&credentials().0);
            matches!(settlements, [
                LimitSettlement::Refund(address),
                LimitSettlement::Clear(short),
                LimitSettlement::Clear(daily),
            ] if address.policy.name == "login_failures_per_address"
                && short.key == account && daily.key == account
                && short.policy.name == "login_failures_per_account"
                && daily.policy.name == "login_failures_per_account_daily")
        })
        .times(1)
        .returning(|_, _| Ok(()));
    ports.limiter = limiter;
    let (email, password) = credentials();
    ports.service().login(&email, &password, client_at("192.0.2.8")).await.unwrap();
}
