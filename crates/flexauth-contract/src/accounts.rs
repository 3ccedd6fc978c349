//! Accounts and their sign-up attempts, credential versions and queued account requests (`AccountRepository`, `AccountRequestQueue`).

use super::*;

scenarios! { $ accounts_scenarios;
    pub async fn an_account_is_found_by_email_and_id<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let by_email = store.find_by_email(&email("OWNER@example.com")).await.unwrap().unwrap();
        assert_eq!(by_email.id(), account.id());
        assert_eq!(by_email.email().as_str(), "owner@example.com");
        assert_eq!(by_email.password_hash(), account.password_hash());
        assert_eq!(by_email.created_at(), NOW);
        assert!(!by_email.is_email_verified());
        assert_eq!(store.find_by_id(account.id()).await.unwrap().unwrap().email().as_str(), "owner@example.com");
        assert!(store.find_by_email(&email("nobody@example.com")).await.unwrap().is_none());
    }

    pub async fn a_taken_email_is_refused_and_nothing_is_written<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        stored_account(store).await;
        let twin = new_account("owner@example.com");
        let outcome = store.create_unverified(&twin, &attempt_for(&twin, 2), &mail_to("owner@example.com")).await;
        assert!(matches!(outcome, Err(CreateAccountError::EmailTaken)));
        assert!(store.find_by_id(twin.id()).await.unwrap().is_none());
        assert!(store.find_signup_attempt(&TokenHash::of(&[2; 32])).await.unwrap().is_none());
        assert_eq!(claim_all(store, NOW).await.len(), 1, "only the first account's email is queued");
    }

    pub async fn confirming_activates_the_attempts_password_and_discards_the_others<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let account = stored_account(store).await;
        for seed in [2, 3] {
            store.add_signup_attempt(&attempt_for(&account, seed), &mail_to("owner@example.com"), NOW, 3).await.unwrap();
        }
        let attempt = store.find_signup_attempt(&TokenHash::of(&[2; 32])).await.unwrap().unwrap();
        assert_eq!(attempt, attempt_for(&account, 2));
        let pending = store.pending_signup_attempts(account.id(), NOW).await.unwrap();
        assert_eq!(
            pending.iter().map(|attempt| attempt.created_at()).collect::<Vec<_>>(),
            [3, 2, 1].map(|s| NOW + Duration::seconds(s))
        );

        let confirmation = EmailConfirmation {
            account_id: account.id(),
            attempt: TokenHash::of(&[2; 32]),
            password_hash: PasswordHash::from_phc("attempt 2".into()),
            confirmed_at: NOW,
        };
        assert!(store.confirm_email(&confirmation).await.unwrap());
        assert!(!store.confirm_email(&confirmation).await.unwrap(), "a spent link confirms nothing");
        let stored = store.find_by_id(account.id()).await.unwrap().unwrap();
        assert_eq!(
            (stored.password_hash().as_phc(), stored.email_verified_at(), stored.credential_version()),
            ("attempt 2", Some(NOW), 1)
        );
        assert_eq!(store.find_signup_attempt(&TokenHash::of(&[2; 32])).await.unwrap().unwrap().link().used_at(), Some(NOW));
        for other in [1, 3] {
            assert!(
                store.find_signup_attempt(&TokenHash::of(&[other; 32])).await.unwrap().is_none(),
                "attempt {other} was discarded"
            );
        }
        // A link of a verified account cannot set its password, even if one were left.
        store.add_signup_attempt(&attempt_for(&account, 4), &mail_to("owner@example.com"), NOW, 3).await.unwrap();
        let late = EmailConfirmation {
            attempt: TokenHash::of(&[4; 32]),
            password_hash: PasswordHash::from_phc("attempt 4".into()),
            ..confirmation
        };
        assert!(!store.confirm_email(&late).await.unwrap());
        assert_eq!(store.find_by_id(account.id()).await.unwrap().unwrap().password_hash().as_phc(), "attempt 2");
    }

    pub async fn only_the_newest_pending_attempts_are_kept<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        for seed in 2..=5 {
            store.add_signup_attempt(&attempt_for(&account, seed), &mail_to("owner@example.com"), NOW, 3).await.unwrap();
        }
        let pending = store.pending_signup_attempts(account.id(), NOW).await.unwrap();
        assert_eq!(
            pending.iter().map(|attempt| attempt.password_hash().unwrap().as_phc().to_owned()).collect::<Vec<_>>(),
            ["attempt 5", "attempt 4", "attempt 3"]
        );
        assert!(
            store.pending_signup_attempts(account.id(), NOW + Duration::hours(24)).await.unwrap().is_empty(),
            "expired attempts are not pending"
        );
        // The first account's email and four more.
        assert_eq!(claim_all(store, NOW).await.len(), 5);
    }

    pub async fn a_session_is_refused_once_the_credential_version_moved<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let first = new_session(&account, &RefreshSecret::from_bytes([1; 32]));
        assert!(SessionRepository::create(store, &first, 0, &login_event(&account), &device_of(&first)).await.unwrap());
        let owner = &EmailAddress::parse("owner@example.com").unwrap();
        let seen = |device: TokenHash| async move {
            store.find_for_login(owner, Some(device)).await.unwrap().unwrap().device_last_seen_at
        };
        assert_eq!(seen(device_of(&first)).await, Some(NOW), "a login remembers its device with its session");
        let change = CredentialChange {
            account_id: account.id(),
            password_hash: PasswordHash::from_phc("changed".into()),
            expected_version: Some(0),
            reset_link: None,
            end_sessions: SessionsToEnd::All,
            reason: RevocationReason::PasswordChange,
            verify_email: false,
            revoke_keys_made_before: None,
            notice: mail_to("owner@example.com"),
            at: NOW,
            event: login_event(&account),
        };
        assert!(store.apply_credential_change(&change).await.unwrap());
        let late = new_session(&account, &RefreshSecret::from_bytes([2; 32]));
        assert!(
            !SessionRepository::create(store, &late, 0, &login_event(&account), &device_of(&late)).await.unwrap(),
            "the password checked is no longer the account's"
        );
        assert_eq!(store.find(late.id()).await.unwrap(), None);
        assert_eq!(seen(device_of(&late)).await, None, "a refused login remembers no device");
        assert!(SessionRepository::create(store, &late, 1, &login_event(&account), &device_of(&late)).await.unwrap());
        assert_eq!(seen(device_of(&late)).await, Some(NOW));
        // A device another account holds is not this account's, and an unknown address is
        // no candidate.
        let other = new_account("other@example.com");
        store.create_unverified(&other, &attempt_for(&other, 7), &mail_to("other@example.com")).await.unwrap();
        let theirs = EmailAddress::parse("other@example.com").unwrap();
        let candidate = store.find_for_login(&theirs, Some(device_of(&late))).await.unwrap().unwrap();
        assert_eq!((candidate.account.id(), candidate.device_last_seen_at), (other.id(), None));
        let nobody = EmailAddress::parse("nobody@example.com").unwrap();
        assert!(store.find_for_login(&nobody, None).await.unwrap().is_none());
        assert!(!store.apply_credential_change(&change).await.unwrap(), "a change against a stale version writes nothing");
        assert_eq!(store.find(late.id()).await.unwrap().unwrap().revoked_at(), None);
    }

    pub async fn account_requests_are_leased_to_one_worker_and_deleted_once_handled<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let requests: Vec<AccountRequest> = [
            AccountRequestKind::Signup { password_hash: PasswordHash::from_phc("chosen".into()) },
            AccountRequestKind::ResendVerification,
            AccountRequestKind::ForgotPassword,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, kind)| AccountRequest {
            id: Uuid::new_v4(),
            email: email("owner@example.com"),
            kind,
            requested_at: NOW + Duration::seconds(i as i64),
        })
        .collect();
        for request in &requests {
            store.submit(request).await.unwrap();
        }
        let lease = LeaseId::from_uuid(Uuid::new_v4());
        let claimed = store.claim(NOW, lease, NOW + Duration::minutes(2), 2).await.unwrap();
        assert_eq!(claimed, requests[..2]);
        let other = LeaseId::from_uuid(Uuid::new_v4());
        assert_eq!(
            store.claim(NOW, other, NOW + Duration::minutes(2), 10).await.unwrap(),
            requests[2..],
            "leased requests are not claimed again"
        );
        store.complete(requests[0].id, other).await.unwrap();
        store.complete(requests[1].id, lease).await.unwrap();
        let later = LeaseId::from_uuid(Uuid::new_v4());
        let reclaimed = store.claim(NOW + Duration::minutes(2), later, NOW + Duration::minutes(4), 10).await.unwrap();
        assert_eq!(
            reclaimed,
            [requests[0].clone(), requests[2].clone()],
            "a request completed under another lease stays; a handled one is gone"
        );
    }
}
