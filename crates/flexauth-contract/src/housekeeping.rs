//! The purge of what retention lets go (`Housekeeping`).

use super::*;

scenarios! { $ housekeeping_scenarios;
    pub async fn the_purge_deletes_what_retention_says_and_nothing_else<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let old_event = AuditEvent { at: NOW - Duration::days(91), ..login_event(&account) };
        let recent_event = AuditEvent { at: NOW - Duration::days(89), ..login_event(&account) };
        for event in [&old_event, &recent_event] {
            store.record(event).await.unwrap();
        }
        let ended = Session::start(
            SessionId::from_uuid(Uuid::new_v4()),
            account.id(),
            &RefreshSecret::from_bytes([1; 32]),
            NOW - Duration::days(70),
            Duration::days(30),
            Duration::days(90),
            ClientInfo::default(),
            AuthenticationMethods::password(),
        );
        let live = new_session(&account, &RefreshSecret::from_bytes([2; 32]));
        for session in [&ended, &live] {
            assert!(SessionRepository::create(store, session, 0, &login_event(&account), &device_of(session)).await.unwrap());
        }
        // Two accounts never verified, created eight days ago: one with only an expired link, one
        // with a link resent yesterday that still works.
        let mut abandoned = Vec::new();
        for (address, link_expires) in
            [("gone@example.com", NOW - Duration::days(7)), ("kept@example.com", NOW + Duration::hours(1))]
        {
            let old = Account::new_unverified(
                AccountId::from_uuid(Uuid::new_v4()),
                email(address),
                PasswordHash::from_phc("x".into()),
                NOW - Duration::days(8),
            );
            let link = LinkTokenRecord::issue(TokenHash::of(address.as_bytes()), old.id(), link_expires);
            store
                .create_unverified(&old, &SignupAttempt::issue(link, None, NOW - Duration::days(8)), &mail_to(address))
                .await
                .unwrap();
            abandoned.push(old);
        }
        let spent = LinkTokenRecord::issue(TokenHash::of(b"spent reset"), account.id(), NOW - Duration::days(2));
        store.create_password_reset(&spent, &mail_to("owner@example.com"), NOW - Duration::days(3)).await.unwrap();
        store.hit("stale", &THREE_A_MINUTE, NOW - Duration::days(2)).await.unwrap();
        store.hit("fresh", &THREE_A_MINUTE, NOW).await.unwrap();

        let cutoffs = RetentionSettings::default().cutoffs(NOW);
        let report = store.purge(&cutoffs).await.unwrap();
        assert_eq!(
            (report.audit_events, report.sessions, report.unverified_accounts, report.counters),
            (1, 1, 1, 1),
            "{report:?}"
        );
        // The spent reset link and the expired link of the abandoned account (which went with it).
        assert!(report.links >= 1, "{report:?}");
        let events = AuditLog::list(store, account.id(), None, 100).await.unwrap();
        assert!(events.iter().any(|event| event.id == recent_event.id));
        assert!(!events.iter().any(|event| event.id == old_event.id));
        assert!(store.find(ended.id()).await.unwrap().is_none());
        assert!(store.find(live.id()).await.unwrap().is_some());
        assert!(store.find_by_id(abandoned[0].id()).await.unwrap().is_none(), "an abandoned sign-up goes");
        assert!(store.find_by_id(abandoned[1].id()).await.unwrap().is_some(), "a sign-up with a working link stays");
        assert!(store.find_by_id(account.id()).await.unwrap().is_some());
        assert!(store.find_password_reset(&TokenHash::of(b"spent reset")).await.unwrap().is_none());
        assert_eq!(store.peek("fresh", &THREE_A_MINUTE, NOW).await.unwrap().remaining, 1, "a current counter stays");
        assert_eq!(store.purge(&cutoffs).await.unwrap().total(), 0, "a second pass finds nothing");
    }
}
