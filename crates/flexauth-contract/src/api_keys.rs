//! API keys (`ApiKeyRepository`).

use super::*;

scenarios! { $ api_keys_scenarios;
    pub async fn an_api_key_is_found_by_its_digest_until_revoked<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let key = api_key(&account, "ci");
        let hash = TokenHash::of(b"fo_live_secret");
        let session = creator(store, &account).await;
        assert!(ApiKeyRepository::create(
            store,
            &key,
            &hash,
            &mail_to("owner@example.com"),
            session,
            &login_event(&account)
        )
        .await
        .unwrap());
        assert_eq!(store.find_active_by_hash(&hash).await.unwrap(), Some(key.clone()));
        assert_eq!(store.find_active_by_hash(&TokenHash::of(b"other")).await.unwrap(), None);
        let stranger = AccountId::from_uuid(Uuid::new_v4());
        assert!(
            !ApiKeyRepository::revoke(store, stranger, key.id(), NOW, &login_event(&account)).await.unwrap(),
            "only the owner revokes"
        );
        assert!(ApiKeyRepository::revoke(store, account.id(), key.id(), NOW, &login_event(&account)).await.unwrap());
        assert_eq!(store.find_active_by_hash(&hash).await.unwrap(), None);
        assert!(!ApiKeyRepository::revoke(store, account.id(), key.id(), NOW, &login_event(&account)).await.unwrap());
    }

    pub async fn api_keys_are_listed_per_account_and_touched<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let first = api_key(&account, "first");
        let second = ApiKey::from_storage(StoredApiKey {
            created_at: NOW + Duration::seconds(1),
            ..api_key(&account, "second").stored().clone()
        });
        let session = creator(store, &account).await;
        ApiKeyRepository::create(
            store,
            &second,
            &TokenHash::of(b"2"),
            &mail_to("owner@example.com"),
            session,
            &login_event(&account),
        )
        .await
        .unwrap();
        ApiKeyRepository::create(
            store,
            &first,
            &TokenHash::of(b"1"),
            &mail_to("owner@example.com"),
            session,
            &login_event(&account),
        )
        .await
        .unwrap();
        SessionRepository::revoke(store, session, NOW, RevocationReason::PasswordReset).await.unwrap();
        let late = api_key(&account, "late");
        assert!(
            !ApiKeyRepository::create(
                store,
                &late,
                &TokenHash::of(b"3"),
                &mail_to("owner@example.com"),
                session,
                &login_event(&account)
            )
            .await
            .unwrap(),
            "a revoked session creates no key"
        );
        store.touch(first.id(), NOW + Duration::minutes(3)).await.unwrap();
        let listed = ApiKeyRepository::list(store, account.id()).await.unwrap();
        assert_eq!(listed.iter().map(|key| key.name().as_str()).collect::<Vec<_>>(), ["first", "second"]);
        assert_eq!(listed[0].last_used_at(), Some(NOW + Duration::minutes(3)));
        assert!(ApiKeyRepository::list(store, AccountId::from_uuid(Uuid::new_v4())).await.unwrap().is_empty());
    }
}
