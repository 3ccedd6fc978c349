//! The owners' security log (`AuditLog`).

use super::*;

scenarios! { $ audit_scenarios;
    pub async fn the_security_log_pages_newest_first<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let mut written = Vec::new();
        for i in 0..5 {
            // Two entries share each millisecond, so the order needs the id too.
            let event = AuditEvent {
                at: NOW + Duration::milliseconds(i / 2),
                kind: AuditKind::LoginFailed,
                ..login_event(&account)
            };
            store.record(&event).await.unwrap();
            written.push(event);
        }
        written.sort_by_key(|event| std::cmp::Reverse((event.at, event.id)));
        let first = AuditLog::list(store, account.id(), None, 2).await.unwrap();
        assert_eq!(first, written[..2]);
        let cursor = AuditCursor { at: first[1].at, id: first[1].id };
        let second = AuditLog::list(store, account.id(), Some(cursor), 10).await.unwrap();
        assert_eq!(second, written[2..], "the next page continues exactly after the cursor");
        assert!(AuditLog::list(store, AccountId::from_uuid(Uuid::new_v4()), None, 10).await.unwrap().is_empty());
    }
}
