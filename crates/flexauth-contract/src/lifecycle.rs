//! Disabling, erasing and moving an account to another address, with the store's guards and
//! cascades (`LifecycleRepository`).

use flexauth_domain::lifecycle::{ConfirmEmailChangeOutcome, EmailChange, Erasure, UndoEmailChangeOutcome};

use super::*;

fn change_to(account: AccountId, new: &str, seed: u8) -> EmailChange {
    EmailChange {
        account_id: account,
        old_email: email("owner@example.com"),
        new_email: email(new),
        confirmation: TokenHash::of(&[seed; 8]),
        undo: TokenHash::of(&[seed; 9]),
        requested_at: NOW,
        expires_at: NOW + Duration::hours(1),
        undo_expires_at: NOW + Duration::days(7),
        confirmed_at: None,
        undone_at: None,
    }
}

/// The change of `account` to `new`, stored through a live session of it; returns the session.
async fn asked<P: Backend>(
    store: &P,
    account: &flexauth_domain::account::Account,
    change: &EmailChange,
) -> flexauth_domain::session::SessionId {
    let session = creator(store, account).await;
    let (to_new, to_old) = (mail_to(change.new_email.as_str()), mail_to("owner@example.com"));
    assert!(store.create_email_change(change, session, &to_new, &to_old, &login_event(account)).await.unwrap());
    session
}

scenarios! { $ lifecycle_scenarios;
    pub async fn disabling_ends_every_session_and_key_and_moves_the_credential_version<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let session = creator(store, &account).await;
        let key = api_key(&account, "ci");
        assert!(ApiKeyRepository::create(
            store,
            &key,
            &TokenHash::of(b"k"),
            &mail_to("owner@example.com"),
            session,
            &login_event(&account)
        )
        .await
        .unwrap());
        store.remember_device(account.id(), &TokenHash::of(b"device"), NOW).await.unwrap();
        assert!(store.disable(account.id(), NOW, &login_event(&account)).await.unwrap());
        let stored = store.find_by_id(account.id()).await.unwrap().unwrap();
        assert_eq!((stored.disabled_at(), stored.credential_version()), (Some(NOW), 1));
        assert_eq!(stored.clients_forgotten_at(), Some(NOW), "disabling forgets known clients");
        assert!(!store.device_known(account.id(), &TokenHash::of(b"device"), NOW - Duration::days(1)).await.unwrap());
        assert_eq!(store.find(session).await.unwrap().unwrap().revoked_at(), Some(NOW));
        assert_eq!(store.find_active_by_hash(&TokenHash::of(b"k")).await.unwrap(), None);
        assert!(LifecycleRepository::enable(store, account.id(), &login_event(&account)).await.unwrap());
        assert_eq!(store.find_by_id(account.id()).await.unwrap().unwrap().disabled_at(), None);
        assert!(!store.disable(AccountId::from_uuid(Uuid::new_v4()), NOW, &login_event(&account)).await.unwrap());
    }

    pub async fn erasing_deletes_the_account_and_its_mail_but_keeps_its_log_under_the_tombstone<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let other = new_account("other@example.com");
        store.create_unverified(&other, &attempt_for(&other, 2), &mail_to("other@example.com")).await.unwrap();
        let session = creator(store, &account).await;
        let tombstone = AccountId::from_uuid(Uuid::new_v4());
        let goodbye = mail_to("owner@example.com");
        let event = flexauth_domain::audit::AuditEvent { account_id: tombstone, ..login_event(&account) };
        let erasure = Erasure { account_id: account.id(), tombstone, event, goodbye: Some(goodbye.clone()) };
        assert!(store.erase(&erasure).await.unwrap());
        assert!(store.find_by_id(account.id()).await.unwrap().is_none());
        assert!(store.find(session).await.unwrap().is_none(), "sessions go with the account");
        assert!(store.find_signup_attempt(&TokenHash::of(&[1; 32])).await.unwrap().is_none());
        assert_eq!(AuditLog::list(store, tombstone, None, 10).await.unwrap().len(), 2, "the login and the erasure");
        assert!(AuditLog::list(store, account.id(), None, 10).await.unwrap().is_empty());
        let queued = claim_all(store, NOW).await;
        assert_eq!(queued.len(), 2, "the other account's mail and the goodbye");
        assert!(queued.iter().any(|mail| mail.id() == goodbye.id()));
        assert!(!store.erase(&erasure).await.unwrap());
    }

    pub async fn an_address_change_is_confirmed_once_and_its_undo_moves_the_account_back<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let session = creator(store, &account).await;
        let change = change_to(account.id(), "new@example.com", 1);
        assert!(store
            .create_email_change(
                &change,
                session,
                &mail_to("new@example.com"),
                &mail_to("owner@example.com"),
                &login_event(&account)
            )
            .await
            .unwrap());
        assert_eq!(store.find_email_change_by_undo(&change.undo).await.unwrap(), Some(change.clone()));
        let confirmed =
            store.confirm_email_change(&change, 0, NOW + Duration::minutes(1), &login_event(&account)).await.unwrap();
        assert_eq!(confirmed, ConfirmEmailChangeOutcome::Confirmed);
        assert_eq!(
            store.confirm_email_change(&change, 0, NOW + Duration::minutes(1), &login_event(&account)).await.unwrap(),
            ConfirmEmailChangeOutcome::Spent
        );
        assert_eq!(store.find_by_email(&email("new@example.com")).await.unwrap().unwrap().id(), account.id());
        assert!(store.find_by_email(&email("owner@example.com")).await.unwrap().is_none());

        // Someone signs up with the freed address but never verifies it: the undo takes it back.
        let squatter = new_account("owner@example.com");
        store.create_unverified(&squatter, &attempt_for(&squatter, 5), &mail_to("owner@example.com")).await.unwrap();
        let unusable = PasswordHash::from_phc("!unusable".into());
        let undone =
            store.undo_email_change(&change, NOW + Duration::minutes(2), &unusable, &login_event(&account)).await.unwrap();
        assert_eq!(undone, UndoEmailChangeOutcome::Undone);
        assert!(store.find_by_id(squatter.id()).await.unwrap().is_none());
        let back = store.find_by_email(&email("owner@example.com")).await.unwrap().unwrap();
        assert_eq!((back.id(), back.password_hash(), back.credential_version()), (account.id(), &unusable, 1));
        assert!(store.find(session).await.unwrap().unwrap().revoked_at().is_some());
        assert_eq!(back.clients_forgotten_at(), Some(NOW + Duration::minutes(2)), "the undo forgets known clients");
        assert_eq!(
            store.undo_email_change(&change, NOW + Duration::minutes(3), &unusable, &login_event(&account)).await.unwrap(),
            UndoEmailChangeOutcome::Spent
        );
    }

    pub async fn a_confirmation_deletes_an_unverified_sign_up_of_the_new_address_and_needs_the_checked_password<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let squatter = new_account("wanted@example.com");
        store.create_unverified(&squatter, &attempt_for(&squatter, 6), &mail_to("wanted@example.com")).await.unwrap();
        let change = change_to(account.id(), "wanted@example.com", 7);
        asked(store, &account, &change).await;
        assert_eq!(
            store.confirm_email_change(&change, 1, NOW, &login_event(&account)).await.unwrap(),
            ConfirmEmailChangeOutcome::AccountChanged,
            "the password checked is no longer the account's"
        );
        assert!(store.find_by_id(squatter.id()).await.unwrap().is_some(), "a refused confirmation deletes nothing");
        assert_eq!(
            store.confirm_email_change(&change, 0, NOW, &login_event(&account)).await.unwrap(),
            ConfirmEmailChangeOutcome::Confirmed
        );
        assert!(store.find_by_id(squatter.id()).await.unwrap().is_none());
        assert!(store.find_signup_attempt(&TokenHash::of(&[6; 32])).await.unwrap().is_none(), "its link went with it");
        assert_eq!(store.find_by_email(&email("wanted@example.com")).await.unwrap().unwrap().id(), account.id());
    }

    pub async fn a_confirmation_to_a_taken_address_writes_nothing<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let other = new_account("taken@example.com");
        store.create_unverified(&other, &attempt_for(&other, 2), &mail_to("taken@example.com")).await.unwrap();
        let verified = flexauth_domain::account::EmailConfirmation {
            account_id: other.id(),
            attempt: TokenHash::of(&[2; 32]),
            password_hash: PasswordHash::from_phc("theirs".into()),
            confirmed_at: NOW,
        };
        assert!(store.confirm_email(&verified).await.unwrap());
        let session = creator(store, &account).await;
        let change = change_to(account.id(), "taken@example.com", 3);
        assert!(store
            .create_email_change(
                &change,
                session,
                &mail_to("taken@example.com"),
                &mail_to("owner@example.com"),
                &login_event(&account)
            )
            .await
            .unwrap());
        let outcome = store.confirm_email_change(&change, 0, NOW, &login_event(&account)).await.unwrap();
        assert_eq!(outcome, ConfirmEmailChangeOutcome::AddressTaken);
        assert_eq!(
            store.find_email_change(&change.confirmation).await.unwrap().unwrap().confirmed_at,
            None,
            "the link is still unspent"
        );
        assert_eq!(store.find_by_id(account.id()).await.unwrap().unwrap().email().as_str(), "owner@example.com");
        SessionRepository::revoke(store, session, NOW, flexauth_domain::session::RevocationReason::Logout).await.unwrap();
        let later = change_to(account.id(), "later@example.com", 4);
        assert!(!store
            .create_email_change(
                &later,
                session,
                &mail_to("later@example.com"),
                &mail_to("owner@example.com"),
                &login_event(&account)
            )
            .await
            .unwrap());
    }
}
