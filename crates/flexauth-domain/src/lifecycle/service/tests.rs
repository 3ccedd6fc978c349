use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use time::macros::datetime;
use uuid::Uuid;

use super::*;
use crate::account::{MockAccountRepository, PasswordHash};
use crate::api_key::MockApiKeyRepository;
use crate::audit::MockAuditLog;
use crate::lifecycle::MockLifecycleRepository;
use crate::mail::EmailKind;
use crate::newtypes::SessionId;
use crate::session::MockSessionRepository;
use crate::system::{MockClock, MockSecureRandom};

const NOW: OffsetDateTime = datetime!(2026-07-01 12:00 UTC);
const ACCOUNT: AccountId = AccountId::from_uuid(Uuid::from_u128(1));

fn ann() -> EmailAddress {
    EmailAddress::parse("ann@example.com").unwrap()
}

fn account_of(id: AccountId, email: EmailAddress) -> Account {
    Account::from_storage(crate::account::StoredAccount {
        id,
        email,
        password_hash: PasswordHash::from_phc("x".into()),
        email_verified_at: Some(NOW),
        created_at: NOW,
        credential_version: 3,
        disabled_at: None,
        clients_forgotten_at: None,
    })
}

/// The ports, with Ann's account and nothing else registered.
struct Ports {
    accounts: MockAccountRepository,
    lifecycle: MockLifecycleRepository,
    hasher: crate::account::MockPasswordHasher,
    audit: MockAuditLog,
    factors: crate::mfa::MockFactorRepository,
    holder_verified: bool,
}

impl Ports {
    fn new() -> Self {
        let mut accounts = MockAccountRepository::new();
        accounts.expect_find_by_id().returning(|id| Ok((id == ACCOUNT).then(|| account_of(ACCOUNT, ann()))));
        let mut hasher = crate::account::MockPasswordHasher::new();
        hasher.expect_hash().returning(|_| Ok(PasswordHash::from_phc("$argon2id$unusable".into())));
        Self {
            accounts,
            lifecycle: MockLifecycleRepository::new(),
            hasher,
            audit: MockAuditLog::new(),
            factors: crate::mfa::MockFactorRepository::new(),
            holder_verified: true,
        }
    }

    /// Another account holds `taken`: verified, unless `holder_verified` was cleared first.
    fn with_taken(mut self, taken: &'static str) -> Self {
        let verified = self.holder_verified;
        self.accounts.expect_find_by_email().returning(move |email| {
            Ok((email.as_str() == taken).then(|| {
                let holder = account_of(AccountId::from_uuid(Uuid::from_u128(99)), EmailAddress::parse(taken).unwrap());
                let email_verified_at = holder.email_verified_at().filter(|_| verified);
                Account::from_storage(crate::account::StoredAccount { email_verified_at, ..holder.stored() })
            }))
        });
        self
    }

    fn service(self) -> LifecycleService {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(NOW);
        let counter = AtomicU8::new(1);
        let mut random = MockSecureRandom::new();
        random
            .expect_fill()
            .returning(move |buffer| buffer.iter_mut().for_each(|b| *b = counter.fetch_add(7, Ordering::Relaxed)));
        LifecycleService::new(
            Arc::new(self.accounts),
            Arc::new(MockSessionRepository::new()),
            Arc::new(MockApiKeyRepository::new()),
            Arc::new(self.audit),
            Arc::new(self.lifecycle),
            Arc::new(self.factors),
            Arc::new(self.hasher),
            Arc::new(crate::limits::unlimited()),
            Arc::new(clock),
            Arc::new(random),
            crate::mail::Letters::new("https://auth.example.com", Arc::new(crate::mail::FactSheetWriter)),
            LifecycleSettings::default(),
        )
    }
}

fn caller_authenticated(ago: Duration) -> LiveSession {
    LiveSession::new(ACCOUNT, SessionId::from_uuid(Uuid::from_u128(2)), NOW - ago)
}

#[tokio::test]
async fn a_session_that_has_not_proved_its_password_recently_can_neither_delete_move_nor_export_the_account() {
    let mut ports = Ports::new().with_taken("nobody@example.com");
    ports.lifecycle.expect_erase().never();
    ports.lifecycle.expect_create_email_change().never();
    let service = ports.service();
    let stale = caller_authenticated(Duration::minutes(11));
    assert!(matches!(service.delete_own(&stale).await, Err(OwnerError::ReauthenticationRequired(_))));
    assert!(matches!(service.export_own(&stale).await, Err(OwnerError::ReauthenticationRequired(_))));
    let moved = service
        .request_email_change(&stale, EmailAddress::parse("new@example.com").unwrap(), ClientInfo::default())
        .await;
    assert!(matches!(moved, Err(EmailChangeError::ReauthenticationRequired(_))));
}

#[tokio::test]
async fn an_owner_deletion_keeps_the_log_under_a_fresh_id_and_says_goodbye_an_operator_deletion_does_not() {
    let erasures = Arc::new(Mutex::new(Vec::new()));
    let mut ports = Ports::new();
    let seen = Arc::clone(&erasures);
    ports.lifecycle.expect_erase().times(2).returning(move |erasure| {
        seen.lock().unwrap().push(erasure.clone());
        Ok(true)
    });
    let service = ports.service();
    service.delete_own(&caller_authenticated(Duration::minutes(1))).await.unwrap();
    service.erase(ACCOUNT).await.unwrap();
    let erasures = erasures.lock().unwrap();
    for erasure in erasures.iter() {
        assert_eq!(erasure.account_id, ACCOUNT);
        assert_ne!(erasure.tombstone, ACCOUNT, "the kept log must not name the erased account");
        assert_eq!(erasure.event.account_id, erasure.tombstone);
        assert_eq!(erasure.event.kind, AuditKind::AccountDeleted);
    }
    assert_ne!(erasures[0].tombstone, erasures[1].tombstone, "two erasures cannot be linked by their tombstones");
    let goodbye = erasures[0].goodbye.as_ref().expect("the owner is told");
    assert_eq!((goodbye.kind(), goodbye.to().as_str()), (EmailKind::AccountDeleted, "ann@example.com"));
    assert!(goodbye.kind().forgotten_once_sent());
    assert!(erasures[1].goodbye.is_none());
}

/// The messages and the change stored by one request to move Ann's account to `to`, while a
/// verified account holds `taken`.
async fn request_to(to: &str, taken: &'static str) -> (EmailChange, OutgoingEmailPair) {
    request_with(Ports::new().with_taken(taken), to).await
}

async fn request_with(mut ports: Ports, to: &str) -> (EmailChange, OutgoingEmailPair) {
    let stored = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&stored);
    ports.lifecycle.expect_create_email_change().times(1).returning(move |change, session, to_new, to_old, event| {
        assert_eq!(event.kind, AuditKind::EmailChangeRequested);
        assert_eq!(session, SessionId::from_uuid(Uuid::from_u128(2)), "the requesting session is locked and checked");
        *seen.lock().unwrap() = Some((change.clone(), (to_new.clone(), to_old.clone())));
        Ok(true)
    });
    let service = ports.service();
    service
        .request_email_change(
            &caller_authenticated(Duration::minutes(1)),
            EmailAddress::parse(to).unwrap(),
            ClientInfo::default(),
        )
        .await
        .unwrap();
    let stored = stored.lock().unwrap().take().unwrap();
    stored
}

type OutgoingEmailPair = (crate::mail::OutgoingEmail, crate::mail::OutgoingEmail);

#[tokio::test]
async fn a_change_to_a_free_address_sends_its_link_there_and_an_undo_link_to_the_old_address() {
    let (change, (to_new, to_old)) = request_to("new@example.com", "bob@example.com").await;
    assert_eq!((change.old_email.as_str(), change.new_email.as_str()), ("ann@example.com", "new@example.com"));
    assert_eq!(change.expires_at, NOW + Duration::hours(24));
    assert_eq!(change.undo_expires_at, NOW + Duration::days(7));
    assert_eq!((to_new.kind(), to_new.to().as_str()), (EmailKind::EmailChangeConfirmation, "new@example.com"));
    assert_eq!((to_old.kind(), to_old.to().as_str()), (EmailKind::EmailChangeRequested, "ann@example.com"));
    let link = |body: &str, path: &str| {
        LinkToken::parse(body.split(path).nth(1).unwrap().split_whitespace().next().unwrap()).unwrap()
    };
    assert_eq!(
        link(to_new.text_body(), "/v1/auth/email/confirm?token=").hash(),
        change.confirmation,
        "the link sent is the one stored"
    );
    assert_eq!(link(to_old.text_body(), "/v1/auth/email/undo?token=").hash(), change.undo);
}

#[tokio::test]
async fn a_change_to_a_taken_address_is_stored_alike_but_its_link_is_never_sent() {
    let (change, (to_new, to_old)) = request_to("bob@example.com", "bob@example.com").await;
    assert_eq!(change.new_email.as_str(), "bob@example.com");
    assert_eq!((to_new.kind(), to_new.to().as_str()), (EmailKind::EmailChangeAddressTaken, "bob@example.com"));
    assert!(!to_new.text_body().contains("token="), "no confirmation link goes to the other account's owner");
    assert_eq!(to_old.kind(), EmailKind::EmailChangeRequested, "the owner hears of it the same way");
}

#[tokio::test]
async fn an_unverified_sign_up_does_not_make_an_address_taken() {
    let ports = Ports { holder_verified: false, ..Ports::new() }.with_taken("squatted@example.com");
    let (_, (to_new, _)) = request_with(ports, "squatted@example.com").await;
    assert_eq!(to_new.kind(), EmailKind::EmailChangeConfirmation, "the owner gets the link, as for a free address");
}

#[tokio::test]
async fn only_the_accounts_password_confirms_a_move_and_a_wrong_one_is_recorded() {
    let mut ports = Ports::new();
    let change = pending_change(None, None, NOW + Duration::hours(1));
    ports.lifecycle.expect_find_email_change().returning(move |_| Ok(Some(change.clone())));
    ports.hasher.expect_verify().times(2).returning(|password, _| Ok(password.expose() == "ann's password"));
    ports
        .audit
        .expect_record()
        .withf(|event| {
            event.kind == AuditKind::PasswordCheckFailed && event.client.ip.as_deref() == Some("198.51.100.4")
        })
        .times(1)
        .returning(|_| Ok(()));
    ports
        .lifecycle
        .expect_confirm_email_change()
        .withf(|_, version, _, event| *version == 3 && event.kind == AuditKind::EmailChanged)
        .times(1)
        .returning(|_, _, _, _| Ok(ConfirmEmailChangeOutcome::Confirmed));
    let service = ports.service();
    let token = LinkToken::parse(&confirmation_text()).unwrap();
    let client = ClientInfo::new(None, Some("198.51.100.4".into()));
    let guess = Password::parse("the new mailbox's guess".into()).unwrap();
    let wrong = service.confirm_email_change(&token, &guess, &client).await;
    assert!(matches!(wrong, Err(EmailChangeLinkError::WrongPassword)), "{wrong:?}");
    let right = Password::parse("ann's password".into()).unwrap();
    assert_eq!(service.confirm_email_change(&token, &right, &client).await.unwrap().as_str(), "new@example.com");
}

#[tokio::test]
async fn a_confirmation_whose_password_an_undo_replaced_meanwhile_is_told_the_link_is_spent() {
    let mut ports = Ports::new();
    let mut reads = mockall::Sequence::new();
    let pending = pending_change(None, None, NOW + Duration::hours(1));
    let undone = pending_change(None, Some(NOW), NOW + Duration::hours(1));
    ports
        .lifecycle
        .expect_find_email_change()
        .times(1)
        .in_sequence(&mut reads)
        .returning(move |_| Ok(Some(pending.clone())));
    ports
        .lifecycle
        .expect_find_email_change()
        .times(1)
        .in_sequence(&mut reads)
        .returning(move |_| Ok(Some(undone.clone())));
    // The undo committed between the two reads: the account's password is now a random one.
    ports.hasher.expect_verify().times(1).returning(|_, _| Ok(false));
    ports.audit.expect_record().never();
    ports.lifecycle.expect_confirm_email_change().never();
    let token = LinkToken::parse(&confirmation_text()).unwrap();
    let right = Password::parse("ann's password".into()).unwrap();
    let outcome = ports.service().confirm_email_change(&token, &right, &ClientInfo::default()).await;
    assert!(matches!(outcome, Err(EmailChangeLinkError::Used)), "{outcome:?}");
}

#[tokio::test]
async fn a_change_to_the_same_address_is_refused() {
    let ports = Ports::new().with_taken("ann@example.com");
    let outcome = ports
        .service()
        .request_email_change(&caller_authenticated(Duration::minutes(1)), ann(), ClientInfo::default())
        .await;
    assert!(matches!(outcome, Err(EmailChangeError::SameAddress)));
}

fn confirmation_text() -> String {
    "A".repeat(43)
}

fn undo_text() -> String {
    format!("{}A", "Q".repeat(42))
}

fn pending_change(
    confirmed_at: Option<OffsetDateTime>,
    undone_at: Option<OffsetDateTime>,
    expires_at: OffsetDateTime,
) -> EmailChange {
    EmailChange {
        account_id: ACCOUNT,
        old_email: ann(),
        new_email: EmailAddress::parse("new@example.com").unwrap(),
        confirmation: LinkToken::parse(&confirmation_text()).unwrap().hash(),
        undo: LinkToken::parse(&undo_text()).unwrap().hash(),
        requested_at: NOW - Duration::hours(1),
        expires_at,
        undo_expires_at: NOW + Duration::days(6),
        confirmed_at,
        undone_at,
    }
}

#[tokio::test]
async fn spent_and_expired_confirmation_links_change_nothing() {
    for (change, expected) in [
        (pending_change(None, None, NOW), "expired"),
        (pending_change(Some(NOW - Duration::minutes(5)), None, NOW + Duration::hours(1)), "used"),
        (pending_change(None, Some(NOW - Duration::minutes(5)), NOW + Duration::hours(1)), "used"),
    ] {
        let mut ports = Ports::new();
        ports.lifecycle.expect_find_email_change().returning(move |_| Ok(Some(change.clone())));
        ports.lifecycle.expect_confirm_email_change().never();
        let token = LinkToken::parse(&confirmation_text()).unwrap();
        let password = Password::parse("any".into()).unwrap();
        let outcome = ports.service().confirm_email_change(&token, &password, &ClientInfo::default()).await;
        match (outcome, expected) {
            (Err(EmailChangeLinkError::Expired), "expired") | (Err(EmailChangeLinkError::Used), "used") => {}
            (other, _) => panic!("expected {expected}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_undo_link_works_after_the_confirmation_but_only_once() {
    let mut ports = Ports::new();
    let confirmed = pending_change(Some(NOW - Duration::minutes(5)), None, NOW + Duration::hours(1));
    ports.lifecycle.expect_find_email_change_by_undo().returning(move |_| Ok(Some(confirmed.clone())));
    ports.lifecycle.expect_undo_email_change().times(1).returning(|_, _, unusable, event| {
        assert_eq!(event.kind, AuditKind::EmailChangeUndone);
        assert_eq!(unusable.as_phc(), "$argon2id$unusable", "whoever asked loses the password too");
        Ok(UndoEmailChangeOutcome::Undone)
    });
    let service = ports.service();
    assert_eq!(service.undo_email_change(&LinkToken::parse(&undo_text()).unwrap()).await.unwrap(), ann());

    let mut ports = Ports::new();
    let undone =
        pending_change(Some(NOW - Duration::minutes(5)), Some(NOW - Duration::minutes(1)), NOW + Duration::hours(1));
    ports.lifecycle.expect_find_email_change_by_undo().returning(move |_| Ok(Some(undone.clone())));
    ports.lifecycle.expect_undo_email_change().never();
    assert!(matches!(
        ports.service().undo_email_change(&LinkToken::parse(&undo_text()).unwrap()).await,
        Err(EmailChangeLinkError::Used)
    ));
}

#[tokio::test]
async fn operator_commands_on_an_unknown_account_say_so() {
    let mut ports = Ports::new();
    ports.lifecycle.expect_disable().returning(|_, _, _| Ok(false));
    ports.lifecycle.expect_enable().returning(|_, _| Ok(false));
    ports.lifecycle.expect_erase().returning(|_| Ok(false));
    let service = ports.service();
    let unknown = AccountId::from_uuid(Uuid::from_u128(7));
    assert!(matches!(service.disable(unknown).await, Err(AdminError::NoSuchAccount)));
    assert!(matches!(service.enable(unknown).await, Err(AdminError::NoSuchAccount)));
    assert!(matches!(service.erase(unknown).await, Err(AdminError::NoSuchAccount)));
    assert!(matches!(service.export(unknown).await, Err(AdminError::NoSuchAccount)));
}
