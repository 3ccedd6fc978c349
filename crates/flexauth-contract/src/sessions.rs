//! Sessions: rotation, revocation, password reset and change, known devices (`SessionRepository`).

use super::*;

scenarios! { $ sessions_scenarios;
    pub async fn a_session_round_trips<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let session = new_session(&account, &RefreshSecret::from_bytes([3; 32]));
        assert!(SessionRepository::create(store, &session, 0, &login_event(&account), &device_of(&session)).await.unwrap());
        assert_eq!(store.find(session.id()).await.unwrap(), Some(session));
        assert_eq!(store.find(SessionId::from_uuid(Uuid::new_v4())).await.unwrap(), None);
    }

    pub async fn rotation_is_a_compare_and_swap<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let parent = RefreshSecret::from_bytes([3; 32]);
        let session = new_session(&account, &parent);
        assert!(SessionRepository::create(store, &session, 0, &login_event(&account), &device_of(&session)).await.unwrap());
        let nonce = RotationNonce::from_bytes([4; 16]);
        let child = parent.child(&nonce);
        let rotation = session.rotation(&child, nonce, NOW + Duration::minutes(1), Duration::days(30));
        assert!(store.rotate(&rotation).await.unwrap());
        assert!(!store.rotate(&rotation).await.unwrap(), "the same expected digest cannot win twice");
        let stored = store.find(session.id()).await.unwrap().unwrap();
        let s = stored.stored();
        assert_eq!(s.current_hash, child.hash());
        assert_eq!(s.previous_hash, Some(parent.hash()));
        assert_eq!(s.rotation_nonce, Some(nonce));
        assert_eq!(s.current_issued_at, NOW + Duration::minutes(1));
        assert_eq!(s.generation, 1);
    }

    pub async fn concurrent_rotations_have_exactly_one_winner<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let parent = RefreshSecret::from_bytes([3; 32]);
        let session = new_session(&account, &parent);
        assert!(SessionRepository::create(store, &session, 0, &login_event(&account), &device_of(&session)).await.unwrap());
        let mut tasks = Vec::new();
        for i in 0..20u8 {
            let store = store.clone();
            let nonce = RotationNonce::from_bytes([i; 16]);
            let rotation = session.rotation(&parent.child(&nonce), nonce, NOW, Duration::days(30));
            tasks.push(tokio::spawn(async move { store.rotate(&rotation).await.unwrap() }));
        }
        let mut winners = 0;
        for task in tasks {
            winners += usize::from(task.await.unwrap());
        }
        assert_eq!(winners, 1);
        assert_eq!(store.find(session.id()).await.unwrap().unwrap().generation(), 1);
    }

    pub async fn a_revoked_session_cannot_rotate<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let parent = RefreshSecret::from_bytes([3; 32]);
        let session = new_session(&account, &parent);
        assert!(SessionRepository::create(store, &session, 0, &login_event(&account), &device_of(&session)).await.unwrap());
        assert!(SessionRepository::revoke(store, session.id(), NOW, RevocationReason::RefreshTokenReuse).await.unwrap());
        assert!(!SessionRepository::revoke(store, session.id(), NOW + Duration::hours(1), RevocationReason::Logout)
            .await
            .unwrap());
        let nonce = RotationNonce::from_bytes([4; 16]);
        assert!(!store.rotate(&session.rotation(&parent.child(&nonce), nonce, NOW, Duration::days(30))).await.unwrap());
        assert_eq!(store.find(session.id()).await.unwrap().unwrap().revoked_at(), Some(NOW));
    }

    pub async fn a_password_reset_spends_its_token_once_and_ends_every_session<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let account = stored_account(store).await;
        let sessions = [
            new_session(&account, &RefreshSecret::from_bytes([1; 32])),
            new_session(&account, &RefreshSecret::from_bytes([2; 32])),
        ];
        for session in &sessions {
            assert!(SessionRepository::create(store, session, 0, &login_event(&account), &device_of(session)).await.unwrap());
        }
        let token = LinkTokenRecord::issue(TokenHash::of(b"reset"), account.id(), NOW + Duration::hours(1));
        store.create_password_reset(&token, &mail_to("owner@example.com"), NOW).await.unwrap();
        assert_eq!(store.find_password_reset(&TokenHash::of(b"reset")).await.unwrap(), Some(token));

        let other_link = LinkTokenRecord::issue(TokenHash::of(b"older reset"), account.id(), NOW + Duration::hours(1));
        store.create_password_reset(&other_link, &mail_to("owner@example.com"), NOW).await.unwrap();

        // A key made before the cut the reset is given (the instant the address was proven), one
        // made after it, and a device that logged in.
        let creator = creator(store, &account).await;
        let keys = [(NOW - Duration::hours(1), b"old key"), (NOW, b"new key")];
        for (created_at, secret) in keys {
            let key = ApiKey::from_storage(StoredApiKey { created_at, ..api_key(&account, "made").stored().clone() });
            let (hash, notice, event) = (TokenHash::of(secret), mail_to("owner@example.com"), login_event(&account));
            assert!(ApiKeyRepository::create(store, &key, &hash, &notice, creator, &event).await.unwrap());
        }
        store.remember_device(account.id(), &TokenHash::of(b"device"), NOW).await.unwrap();

        let new_hash = PasswordHash::from_phc("$argon2id$new".into());
        let reset = CredentialChange {
            account_id: account.id(),
            password_hash: new_hash.clone(),
            expected_version: None,
            reset_link: Some(TokenHash::of(b"reset")),
            end_sessions: SessionsToEnd::All,
            reason: RevocationReason::PasswordReset,
            verify_email: true,
            revoke_keys_made_before: Some(NOW - Duration::minutes(30)),
            notice: mail_to("owner@example.com"),
            at: NOW,
            event: login_event(&account),
        };
        assert!(store.apply_credential_change(&reset).await.unwrap());
        let again = CredentialChange {
            password_hash: PasswordHash::from_phc("$argon2id$other".into()),
            notice: mail_to("owner@example.com"),
            ..reset
        };
        assert!(!store.apply_credential_change(&again).await.unwrap());
        assert_eq!(
            store.find_password_reset(&TokenHash::of(b"older reset")).await.unwrap().unwrap().used_at(),
            Some(NOW),
            "every reset link is spent"
        );
        assert!(
            store.pending_signup_attempts(account.id(), NOW).await.unwrap().is_empty(),
            "no sign-up link outlives the reset"
        );

        let account = store.find_by_id(account.id()).await.unwrap().unwrap();
        assert_eq!(account.password_hash(), &new_hash);
        assert!(account.is_email_verified(), "the reset link proved control of the address");
        assert_eq!(store.find_password_reset(&TokenHash::of(b"reset")).await.unwrap().unwrap().used_at(), Some(NOW));
        for session in &sessions {
            assert_eq!(store.find(session.id()).await.unwrap().unwrap().revoked_at(), Some(NOW));
        }
        assert_eq!(store.find_active_by_hash(&TokenHash::of(b"old key")).await.unwrap(), None, "made before the cut");
        assert!(store.find_active_by_hash(&TokenHash::of(b"new key")).await.unwrap().is_some(), "made after the cut");
        assert_eq!(account.clients_forgotten_at(), Some(NOW), "the clients it knew are forgotten");
        assert!(!store.device_known(account.id(), &TokenHash::of(b"device"), NOW - Duration::days(30)).await.unwrap());
        // The verification email, the two reset emails, two key notices and one reset notice.
        assert_eq!(claim_all(store, NOW).await.len(), 6);
    }

    pub async fn a_password_change_keeps_only_the_callers_session<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let mine = new_session(&account, &RefreshSecret::from_bytes([1; 32]));
        let other = new_session(&account, &RefreshSecret::from_bytes([2; 32]));
        assert!(SessionRepository::create(store, &mine, 0, &login_event(&account), &device_of(&mine)).await.unwrap());
        assert!(SessionRepository::create(store, &other, 0, &login_event(&account), &device_of(&other)).await.unwrap());
        let new_hash = PasswordHash::from_phc("$argon2id$changed".into());
        let change = CredentialChange {
            account_id: account.id(),
            password_hash: new_hash.clone(),
            expected_version: Some(0),
            reset_link: None,
            end_sessions: SessionsToEnd::AllExcept(mine.id()),
            reason: RevocationReason::PasswordChange,
            verify_email: false,
            revoke_keys_made_before: None,
            notice: mail_to("owner@example.com"),
            at: NOW,
            event: login_event(&account),
        };
        assert!(store.apply_credential_change(&change).await.unwrap());
        assert_eq!(store.find_by_id(account.id()).await.unwrap().unwrap().password_hash(), &new_hash);
        assert_eq!(store.find(mine.id()).await.unwrap().unwrap().revoked_at(), None);
        assert_eq!(store.find(other.id()).await.unwrap().unwrap().revoked_at(), Some(NOW));
    }

    pub async fn live_sessions_are_listed_and_revoked_in_bulk<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let older = new_session(&account, &RefreshSecret::from_bytes([1; 32]));
        let newer = Session::start(
            SessionId::from_uuid(Uuid::new_v4()),
            account.id(),
            &RefreshSecret::from_bytes([2; 32]),
            NOW + Duration::minutes(1),
            Duration::days(30),
            Duration::days(90),
            ClientInfo::default(),
            AuthenticationMethods::password(),
        );
        let revoked = new_session(&account, &RefreshSecret::from_bytes([3; 32]));
        for session in [&older, &newer, &revoked] {
            assert!(SessionRepository::create(store, session, 0, &login_event(&account), &device_of(session)).await.unwrap());
        }
        SessionRepository::revoke(store, revoked.id(), NOW, RevocationReason::Logout).await.unwrap();
        let live = store.list_live(account.id(), NOW + Duration::minutes(2)).await.unwrap();
        assert_eq!(live.iter().map(Session::id).collect::<Vec<_>>(), [newer.id(), older.id()]);
        assert_eq!(
            *live[1].client(),
            ClientInfo { user_agent: Some("curl/8.0".into()), ip: Some("192.0.2.7".into()), device: None }
        );
        assert!(
            store.list_live(account.id(), NOW + Duration::days(31)).await.unwrap().is_empty(),
            "expired sessions are not live"
        );

        assert_eq!(store.revoke_all(account.id(), Some(newer.id()), NOW, RevocationReason::Logout).await.unwrap(), 1);
        assert_eq!(store.revoke_all(account.id(), None, NOW, RevocationReason::Logout).await.unwrap(), 1);
        assert!(store.list_live(account.id(), NOW).await.unwrap().is_empty());
    }

    pub async fn a_device_is_known_only_to_its_account_and_only_while_recent<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let account = stored_account(store).await;
        let other = new_account("other@example.com");
        store.create_unverified(&other, &attempt_for(&other, 7), &mail_to("other@example.com")).await.unwrap();
        let device = TokenHash::of(b"device token");
        assert!(!store.device_known(account.id(), &device, NOW - Duration::days(30)).await.unwrap());
        store.remember_device(account.id(), &device, NOW).await.unwrap();
        assert!(store.device_known(account.id(), &device, NOW - Duration::days(30)).await.unwrap());
        assert!(!store.device_known(account.id(), &device, NOW + Duration::seconds(1)).await.unwrap(), "not seen since");
        // Another account presenting the same token neither knows it nor takes it over.
        store.remember_device(other.id(), &device, NOW + Duration::days(1)).await.unwrap();
        assert!(!store.device_known(other.id(), &device, NOW - Duration::days(30)).await.unwrap());
        store.remember_device(account.id(), &device, NOW + Duration::days(2)).await.unwrap();
        assert!(
            store.device_known(account.id(), &device, NOW + Duration::days(1)).await.unwrap(),
            "a new login refreshes it"
        );
        // Forgetting the account's clients deletes its devices and dates the forgetting; another
        // account's devices stay.
        let others = TokenHash::of(b"the other account's device");
        store.remember_device(other.id(), &others, NOW).await.unwrap();
        store.forget_known_clients(account.id(), NOW + Duration::days(3)).await.unwrap();
        assert!(!store.device_known(account.id(), &device, NOW - Duration::days(30)).await.unwrap());
        assert!(store.device_known(other.id(), &others, NOW - Duration::days(30)).await.unwrap());
        let forgotten = store.find_by_id(account.id()).await.unwrap().unwrap().clients_forgotten_at();
        assert_eq!(forgotten, Some(NOW + Duration::days(3)));
        assert_eq!(store.find_by_id(other.id()).await.unwrap().unwrap().clients_forgotten_at(), None);
    }

    pub async fn a_revocation_with_notice_queues_its_mail_and_event_only_when_it_revokes<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let account = stored_account(store).await;
        let session = creator(store, &account).await;
        let before = claim_all(store, NOW).await.len();
        let notice = mail_to("owner@example.com");
        let reason = RevocationReason::RefreshTokenReuse;
        assert!(store.revoke_with_notice(session, NOW, reason, &notice, &login_event(&account)).await.unwrap());
        assert_eq!(store.find(session).await.unwrap().unwrap().revoked_at(), Some(NOW));
        let queued = claim_all(store, NOW + Duration::minutes(11)).await;
        assert_eq!(queued.iter().filter(|mail| mail.id() == notice.id()).count(), 1, "{before} before");
        let logged = AuditLog::list(store, account.id(), None, 10).await.unwrap().len();
        // A second revocation of the same session revokes nothing, so it writes nothing.
        let again = mail_to("owner@example.com");
        let reason = RevocationReason::RefreshTokenReuse;
        assert!(!store.revoke_with_notice(session, NOW, reason, &again, &login_event(&account)).await.unwrap());
        assert!(claim_all(store, NOW + Duration::minutes(30)).await.iter().all(|mail| mail.id() != again.id()));
        assert_eq!(AuditLog::list(store, account.id(), None, 10).await.unwrap().len(), logged);
    }

    pub async fn a_live_session_records_its_reauthentication_and_a_revoked_one_does_not<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let account = stored_account(store).await;
        let session = creator(store, &account).await;
        let later = NOW + Duration::minutes(5);
        assert!(store.mark_authenticated(session, later).await.unwrap());
        assert_eq!(store.find(session).await.unwrap().unwrap().authenticated_at(), later);
        SessionRepository::revoke(store, session, later, RevocationReason::Logout).await.unwrap();
        assert!(!store.mark_authenticated(session, later + Duration::minutes(1)).await.unwrap());
        assert_eq!(store.find(session).await.unwrap().unwrap().authenticated_at(), later);
        assert!(!store.mark_authenticated(SessionId::from_uuid(Uuid::new_v4()), later).await.unwrap());
    }

    pub async fn an_address_is_known_to_an_account_that_logged_in_from_it_since<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let account = stored_account(store).await;
        let other = new_account("other@example.com");
        store.create_unverified(&other, &attempt_for(&other, 8), &mail_to("other@example.com")).await.unwrap();
        // The sessions of `creator` come from 192.0.2.7, at NOW.
        creator(store, &account).await;
        assert!(store.logged_in_from(account.id(), "192.0.2.7", NOW - Duration::days(1)).await.unwrap());
        assert!(store.logged_in_from(account.id(), "192.0.2.7", NOW).await.unwrap(), "at the instant counts");
        assert!(!store.logged_in_from(account.id(), "192.0.2.7", NOW + Duration::seconds(1)).await.unwrap());
        assert!(!store.logged_in_from(account.id(), "192.0.2.8", NOW - Duration::days(1)).await.unwrap());
        assert!(!store.logged_in_from(other.id(), "192.0.2.7", NOW - Duration::days(1)).await.unwrap());
    }
}
