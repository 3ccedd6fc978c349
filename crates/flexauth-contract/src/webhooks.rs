//! Webhook endpoints and their queue (`WebhookEndpoints`, `WebhookQueue`), and the events
//! the other repositories queue in their transactions.

use flexauth_domain::webhook::{
    AttemptResult, DeliveryAttempt, EndpointId, EventFilter, EventType, NewEndpoint, QueuedMessage,
};

use super::*;

/// A new endpoint that receives what `filter` lets through, signed with `secret`.
pub fn endpoint(filter: EventFilter, secret: &str) -> NewEndpoint {
    NewEndpoint {
        id: EndpointId::from_uuid(Uuid::new_v4()),
        url: "https://hooks.example.com/flexauth".into(),
        filter,
        secret: SealedSecret(secret.into()),
        created_at: NOW - Duration::minutes(1),
    }
}

async fn claim_webhooks<P: Backend>(store: &P, at: OffsetDateTime) -> Vec<QueuedMessage> {
    let lease = LeaseId::from_uuid(Uuid::new_v4());
    WebhookQueue::claim_due(store, at, lease, at + Duration::minutes(2), 100, &[]).await.unwrap()
}

/// The type of each message, sorted, with the endpoint it goes to.
fn types(messages: &[QueuedMessage]) -> Vec<(EndpointId, &'static str)> {
    let mut types: Vec<_> =
        messages.iter().map(|message| (message.endpoint_id, message.event.event_type.as_str())).collect();
    types.sort_by_key(|(endpoint, kind)| (endpoint.as_uuid(), *kind));
    types
}

fn attempt(message: &QueuedMessage, result: AttemptResult, at: OffsetDateTime) -> DeliveryAttempt {
    DeliveryAttempt {
        endpoint_id: message.endpoint_id,
        event_id: message.event.id,
        event_type: message.event.event_type,
        attempt: message.attempts + 1,
        at,
        duration: Duration::milliseconds(20),
        status: Some(if result == AttemptResult::Delivered { 204 } else { 503 }),
        error: (result != AttemptResult::Delivered).then(|| "HTTP 503".to_owned()),
        endpoint_failing_since: (result != AttemptResult::Delivered).then_some(at),
        disable_endpoint: false,
        result,
    }
}

scenarios! { $ webhooks_scenarios;
    pub async fn an_event_goes_to_each_endpoint_that_subscribes_and_a_failed_transaction_queues_nothing<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let all = endpoint(EventFilter::All, "whsec_a");
        let endings = endpoint(EventFilter::Only(vec![EventType::SessionEnded]), "whsec_b");
        store.add(&all).await.unwrap();
        store.add(&endings).await.unwrap();

        let account = stored_account(store).await;
        let created = claim_webhooks(store, NOW).await;
        assert_eq!(types(&created), vec![(all.id, "account.created")]);
        assert_eq!(created[0].event.email.as_ref().map(EmailAddress::as_str), Some("owner@example.com"));
        assert_eq!(created[0].event.account_id, account.id());
        assert_eq!((created[0].url.as_str(), created[0].secrets.clone()), (all.url.as_str(), vec![SealedSecret("whsec_a".into())]));

        // A sign-up that fails after its first write (its email's id is taken) queues nothing.
        let twin = new_account("twin@example.com");
        let taken = mail_to("twin@example.com");
        store.enqueue(&taken, NOW).await.unwrap();
        assert!(store.create_unverified(&twin, &attempt_for(&twin, 2), &taken).await.is_err());
        // A password reset that fails at its last write (its log entry's id is taken) ends no
        // session and queues nothing.
        let session = new_session(&account, &RefreshSecret::from_bytes([3; 32]));
        assert!(SessionRepository::create(store, &session, 0, &login_event(&account), &device_of(&session)).await.unwrap());
        let logged = AuditEvent { kind: AuditKind::LoginFailed, ..login_event(&account) };
        store.record(&logged).await.unwrap();
        let before = claim_webhooks(store, NOW).await;
        assert_eq!(types(&before), vec![(all.id, "session.created")], "the login, and the log entry of no type");
        let reset = CredentialChange {
            account_id: account.id(),
            password_hash: PasswordHash::from_phc("$argon2id$new".into()),
            expected_version: None,
            reset_link: None,
            end_sessions: SessionsToEnd::All,
            reason: RevocationReason::PasswordReset,
            verify_email: true,
            revoke_keys_made_before: None,
            notice: mail_to("owner@example.com"),
            at: NOW,
            event: AuditEvent { kind: AuditKind::PasswordReset, ..logged },
        };
        assert!(store.apply_credential_change(&reset).await.is_err());
        // (Within the lease of the messages claimed above.)
        assert!(claim_webhooks(store, NOW + Duration::minutes(1)).await.is_empty());
        assert!(store.find(session.id()).await.unwrap().unwrap().revoked_at().is_none());

        // The same reset with a fresh entry: the address verified, the session ended, the reset.
        let reset = CredentialChange { event: AuditEvent { id: Uuid::new_v4(), ..reset.event.clone() }, notice: mail_to("owner@example.com"), ..reset };
        assert!(store.apply_credential_change(&reset).await.unwrap());
        let after = claim_webhooks(store, NOW).await;
        assert_eq!(
            types(&after),
            {
                let mut expected = vec![
                    (all.id, "account.verified"),
                    (all.id, "password.reset"),
                    (all.id, "session.ended"),
                    (endings.id, "session.ended"),
                ];
                expected.sort_by_key(|(endpoint, kind)| (endpoint.as_uuid(), *kind));
                expected
            }
        );
        let ended = after.iter().find(|message| message.endpoint_id == endings.id).unwrap();
        assert_eq!(
            (ended.event.session_id, ended.event.reason.as_deref(), ended.event.client.ip.as_deref()),
            (Some(session.id()), Some("password_reset"), Some("192.0.2.7"))
        );
        let ids: std::collections::HashSet<_> = after.iter().filter(|message| message.endpoint_id == all.id).map(|message| message.event.id).collect();
        assert!(ids.contains(&ended.event.id), "one event, one id at every endpoint");
    }

    pub async fn a_message_is_leased_to_one_worker_retried_at_its_time_and_gone_once_delivered<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let hook = endpoint(EventFilter::All, "whsec_a");
        store.add(&hook).await.unwrap();
        stored_account(store).await;
        let lease = LeaseId::from_uuid(Uuid::new_v4());
        let claimed = WebhookQueue::claim_due(store, NOW, lease, NOW + Duration::minutes(2), 10, &[]).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert!(claim_webhooks(store, NOW).await.is_empty(), "leased to the first worker");
        assert!(WebhookQueue::claim_due(store, NOW + Duration::minutes(3), lease, NOW + Duration::minutes(5), 10, &[hook.id]).await.unwrap().is_empty(), "its endpoint is skipped");
        // Given back, it is due at once for another worker, then taken back by this one.
        store.release(&[(hook.id, claimed[0].event.id)], LeaseId::from_uuid(Uuid::new_v4())).await.unwrap();
        assert!(claim_webhooks(store, NOW).await.is_empty(), "only its own lease gives it back");
        store.release(&[(hook.id, claimed[0].event.id)], lease).await.unwrap();
        let lease = LeaseId::from_uuid(Uuid::new_v4());
        let claimed = WebhookQueue::claim_due(store, NOW, lease, NOW + Duration::minutes(2), 10, &[]).await.unwrap();
        assert_eq!(claimed.len(), 1);

        let stranger = LeaseId::from_uuid(Uuid::new_v4());
        assert!(!store.record_attempt(&attempt(&claimed[0], AttemptResult::Delivered, NOW), stranger).await.unwrap());
        assert!(store.record_attempt(&attempt(&claimed[0], AttemptResult::RetryAt(NOW + Duration::seconds(5)), NOW), lease).await.unwrap());
        let listed = WebhookEndpoints::list(store).await.unwrap();
        assert_eq!(listed[0].failing_since, Some(NOW));
        assert!(claim_webhooks(store, NOW + Duration::seconds(4)).await.is_empty());
        let backlog = WebhookQueue::backlog(store).await.unwrap();
        assert_eq!((backlog.pending, backlog.oldest), (1, Some(NOW)));

        let lease = LeaseId::from_uuid(Uuid::new_v4());
        let retried = WebhookQueue::claim_due(store, NOW + Duration::seconds(5), lease, NOW + Duration::minutes(2), 10, &[]).await.unwrap();
        assert_eq!(retried.len(), 1);
        assert_eq!((retried[0].attempts, retried[0].event.id), (1, claimed[0].event.id));
        assert!(store.record_attempt(&attempt(&retried[0], AttemptResult::Delivered, NOW + Duration::seconds(6)), lease).await.unwrap());
        assert!(claim_webhooks(store, NOW + Duration::days(2)).await.is_empty());
        assert_eq!(WebhookQueue::backlog(store).await.unwrap().pending, 0);
        assert_eq!(WebhookEndpoints::list(store).await.unwrap()[0].failing_since, None, "a success clears it");
        let attempts = store.attempts(hook.id, 10).await.unwrap();
        let summary: Vec<_> = attempts.iter().map(|attempt| (attempt.attempt, attempt.result.as_str(), attempt.status)).collect();
        assert_eq!(summary, vec![(2, "delivered", Some(204)), (1, "retrying", Some(503))]);
        assert_eq!(attempts[1].error.as_deref(), Some("HTTP 503"));
    }

    pub async fn a_disabled_endpoint_gets_nothing_new_and_enabling_it_revives_what_was_kept<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let hook = endpoint(EventFilter::All, "whsec_a");
        store.add(&hook).await.unwrap();
        let account = stored_account(store).await;
        let lease = LeaseId::from_uuid(Uuid::new_v4());
        let claimed = WebhookQueue::claim_due(store, NOW, lease, NOW + Duration::minutes(2), 10, &[]).await.unwrap();
        let given_up = DeliveryAttempt { disable_endpoint: true, ..attempt(&claimed[0], AttemptResult::GivenUp, NOW) };
        assert!(store.record_attempt(&given_up, lease).await.unwrap());
        let listed = WebhookEndpoints::list(store).await.unwrap();
        assert!(listed[0].disabled_at.is_some());
        assert_eq!(WebhookQueue::backlog(store).await.unwrap(), flexauth_domain::webhook::WebhookBacklog { pending: 0, oldest: None, disabled_endpoints: 1 });

        // Disabled: a new event is not queued for it at all.
        let session = new_session(&account, &RefreshSecret::from_bytes([4; 32]));
        assert!(SessionRepository::create(store, &session, 0, &login_event(&account), &device_of(&session)).await.unwrap());
        assert!(claim_webhooks(store, NOW + Duration::hours(1)).await.is_empty());
        assert!(WebhookEndpoints::enable(store, hook.id, NOW).await.unwrap());
        assert!(!WebhookEndpoints::enable(store, EndpointId::from_uuid(Uuid::new_v4()), NOW).await.unwrap());
        SessionRepository::revoke(store, session.id(), NOW, RevocationReason::Revoked).await.unwrap();
        let after = claim_webhooks(store, NOW).await;
        assert_eq!(types(&after), vec![(hook.id, "account.created"), (hook.id, "session.ended")], "the given-up message, revived");
        let revived = after.iter().find(|message| message.event.event_type == EventType::AccountCreated).unwrap();
        assert_eq!(revived.attempts, 0, "its retry schedule starts over");
        let ended = after.iter().find(|message| message.event.event_type == EventType::SessionEnded).unwrap();
        assert_eq!(ended.event.reason.as_deref(), Some("revoked"));
        assert!(WebhookEndpoints::remove(store, hook.id).await.unwrap());
        assert!(WebhookEndpoints::list(store).await.unwrap().is_empty());
        assert!(claim_webhooks(store, NOW + Duration::hours(1)).await.is_empty(), "its messages went with it");
    }

    pub async fn a_rotated_secret_signs_beside_the_new_one_until_its_overlap_ends<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let hook = endpoint(EventFilter::All, "whsec_old");
        store.add(&hook).await.unwrap();
        assert!(store.rotate_secret(hook.id, &SealedSecret("whsec_new".into()), NOW + Duration::hours(1)).await.unwrap());
        assert!(!store.rotate_secret(EndpointId::from_uuid(Uuid::new_v4()), &SealedSecret("x".into()), NOW).await.unwrap());
        stored_account(store).await;
        let during = claim_webhooks(store, NOW).await;
        assert_eq!(during[0].secrets, vec![SealedSecret("whsec_new".into()), SealedSecret("whsec_old".into())]);
        let after = claim_webhooks(store, NOW + Duration::hours(2)).await;
        assert_eq!(after[0].secrets, vec![SealedSecret("whsec_new".into())]);
        assert_eq!(WebhookEndpoints::list(store).await.unwrap()[0].previous_secret_until, Some(NOW + Duration::hours(1)));
    }

    pub async fn a_disabled_account_announces_each_session_and_key_that_ended<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let hook = endpoint(EventFilter::Only(vec![EventType::SessionEnded, EventType::ApiKeyRevoked, EventType::AccountDisabled]), "whsec_a");
        store.add(&hook).await.unwrap();
        let account = stored_account(store).await;
        let mut sessions = Vec::new();
        for seed in [5, 6] {
            let session = new_session(&account, &RefreshSecret::from_bytes([seed; 32]));
            assert!(SessionRepository::create(store, &session, 0, &login_event(&account), &device_of(&session)).await.unwrap());
            sessions.push(session);
        }
        let key = api_key(&account, "ci");
        let (hash, notice, event) = (TokenHash::of(b"key"), mail_to("owner@example.com"), login_event(&account));
        assert!(ApiKeyRepository::create(store, &key, &hash, &notice, sessions[0].id(), &event).await.unwrap());
        assert!(store.disable(account.id(), NOW, &AuditEvent { kind: AuditKind::AccountDisabled, ..login_event(&account) }).await.unwrap());
        let announced = claim_webhooks(store, NOW).await;
        let kinds: Vec<_> = types(&announced).into_iter().map(|(_, kind)| kind).collect();
        assert_eq!(kinds, vec!["account.disabled", "api_key.revoked", "session.ended", "session.ended"]);
        assert!(announced.iter().filter(|message| message.event.event_type == EventType::SessionEnded).all(|message| message.event.reason.as_deref() == Some("account_disabled")));
        let revoked = announced.iter().find(|message| message.event.event_type == EventType::ApiKeyRevoked).unwrap();
        assert_eq!((revoked.event.key_id, revoked.event.reason.as_deref()), (Some(key.id()), Some("account_disabled")));
    }

    pub async fn a_session_that_expired_is_announced_once_by_the_purge<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let hook = endpoint(EventFilter::Only(vec![EventType::SessionEnded]), "whsec_a");
        store.add(&hook).await.unwrap();
        let account = stored_account(store).await;
        let session = new_session(&account, &RefreshSecret::from_bytes([7; 32]));
        assert!(SessionRepository::create(store, &session, 0, &login_event(&account), &device_of(&session)).await.unwrap());
        // The account is unverified: kept here, so that its session is.
        let retention = RetentionSettings { unverified_accounts: Duration::days(365), ..RetentionSettings::default() };
        let live = retention.cutoffs(NOW + Duration::days(29));
        assert_eq!(store.purge(&live).await.unwrap().expiries_announced, 0, "not expired yet");
        // Its refresh token lives 30 days from NOW.
        let expired = retention.cutoffs(NOW + Duration::days(30) + Duration::minutes(10));
        assert_eq!(store.purge(&expired).await.unwrap().expiries_announced, 1);
        assert_eq!(store.purge(&expired).await.unwrap().expiries_announced, 0, "once");
        let announced = claim_webhooks(store, NOW + Duration::days(31)).await;
        assert_eq!(types(&announced), vec![(hook.id, "session.ended")]);
        assert_eq!(
            (announced[0].event.session_id, announced[0].event.reason.as_deref(), announced[0].event.at),
            (Some(session.id()), Some("expired"), NOW + Duration::days(30))
        );
        // Ending the sessions of the account later announces it no more: once per session.
        let later = NOW + Duration::days(30) + Duration::hours(1);
        store.revoke_all(account.id(), None, later, RevocationReason::Logout).await.unwrap();
        // (Within the lease of the message claimed above.)
        assert!(claim_webhooks(store, NOW + Duration::days(31) + Duration::minutes(1)).await.is_empty());
    }

    pub async fn a_session_that_expired_unannounced_is_announced_as_expired_by_whatever_ends_it<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let hook = endpoint(EventFilter::Only(vec![EventType::SessionEnded, EventType::AccountDisabled]), "whsec_a");
        store.add(&hook).await.unwrap();
        let account = stored_account(store).await;
        let expired = new_session(&account, &RefreshSecret::from_bytes([8; 32]));
        assert!(SessionRepository::create(store, &expired, 0, &login_event(&account), &device_of(&expired)).await.unwrap());
        // Expired ten minutes ago, before any purge announced it; the account is disabled now.
        let at = NOW + Duration::days(30) + Duration::minutes(10);
        let event = AuditEvent { kind: AuditKind::AccountDisabled, at, ..login_event(&account) };
        assert!(store.disable(account.id(), at, &event).await.unwrap());
        let announced = claim_webhooks(store, at).await;
        let ended = announced.iter().find(|message| message.event.event_type == EventType::SessionEnded).unwrap();
        assert_eq!((ended.event.reason.as_deref(), ended.event.at), (Some("expired"), NOW + Duration::days(30)));
        // Disabled again: nothing new to announce (the log still records the operator's try).
        let again = AuditEvent { id: Uuid::new_v4(), at: at + Duration::minutes(1), ..event };
        assert!(store.disable(account.id(), at + Duration::minutes(1), &again).await.unwrap());
        assert!(claim_webhooks(store, at + Duration::minutes(1)).await.is_empty());
        assert_eq!(types(&announced).len(), 2, "account.disabled and the one session: {:?}", types(&announced));
    }

    pub async fn an_erased_account_is_announced_and_its_waiting_messages_lose_its_address<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let hook = endpoint(EventFilter::All, "whsec_a");
        store.add(&hook).await.unwrap();
        let account = stored_account(store).await;
        let session = new_session(&account, &RefreshSecret::from_bytes([9; 32]));
        assert!(SessionRepository::create(store, &session, 0, &login_event(&account), &device_of(&session)).await.unwrap());
        let erasure = flexauth_domain::lifecycle::Erasure {
            account_id: account.id(),
            tombstone: AccountId::from_uuid(Uuid::new_v4()),
            event: AuditEvent { kind: AuditKind::AccountDeleted, ..login_event(&account) },
            goodbye: None,
        };
        assert!(store.erase(&erasure).await.unwrap());
        let announced = claim_webhooks(store, NOW).await;
        let kinds: Vec<_> = types(&announced).into_iter().map(|(_, kind)| kind).collect();
        assert_eq!(kinds, vec!["account.created", "account.deleted", "session.created", "session.ended"]);
        assert!(announced.iter().all(|message| message.event.account_id == account.id()), "the real id, not the tombstone");
        let created = announced.iter().find(|message| message.event.event_type == EventType::AccountCreated).unwrap();
        assert_eq!(created.event.email, None, "the address went with the account");
        let logged_in = announced.iter().find(|message| message.event.event_type == EventType::SessionCreated).unwrap();
        assert_eq!((logged_in.event.client.ip.clone(), logged_in.event.client.user_agent.clone()), (None, None));
        let ended = announced.iter().find(|message| message.event.event_type == EventType::SessionEnded).unwrap();
        assert_eq!(ended.event.reason.as_deref(), Some("account_deleted"));
    }

    pub async fn an_unverified_sign_up_that_is_purged_is_announced_deleted_once<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let hook = endpoint(EventFilter::Only(vec![EventType::AccountDeleted]), "whsec_a");
        store.add(&hook).await.unwrap();
        let account = stored_account(store).await;
        // Its link expired a day after NOW; eight days later it is purged.
        let cutoffs = RetentionSettings::default().cutoffs(NOW + Duration::days(8));
        assert_eq!(store.purge(&cutoffs).await.unwrap().unverified_accounts, 1);
        assert_eq!(store.purge(&cutoffs).await.unwrap().unverified_accounts, 0);
        let announced = claim_webhooks(store, NOW + Duration::days(9)).await;
        assert_eq!(types(&announced), vec![(hook.id, "account.deleted")]);
        assert_eq!(
            (announced[0].event.account_id, announced[0].event.reason.as_deref()),
            (account.id(), Some("never_verified"))
        );
    }
}
