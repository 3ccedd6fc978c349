//! The outbox of emails: leases, retries and bodies forgotten once sent (`Outbox`).

use super::*;

scenarios! { $ outbox_scenarios;
    pub async fn an_outbox_entry_is_leased_to_one_worker_at_a_time<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        store.enqueue(&mail_to("a@example.com"), NOW).await.unwrap();
        let first = claim_all(store, NOW).await;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].to().as_str(), "a@example.com");
        assert!(claim_all(store, NOW + Duration::minutes(4)).await.is_empty(), "leased to the first worker");
        assert_eq!(claim_all(store, NOW + Duration::minutes(5)).await.len(), 1, "claimable again once the lease ran out");
    }

    pub async fn concurrent_workers_never_claim_the_same_entry<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        for i in 0..30 {
            store.enqueue(&mail_to(&format!("user{i}@example.com")), NOW).await.unwrap();
        }
        let mut workers = Vec::new();
        for _ in 0..5 {
            let store = store.clone();
            workers.push(tokio::spawn(async move {
                // Workers racing for the same candidates win fewer than they asked for, so each
                // keeps claiming until nothing is left.
                let mut mine = Vec::new();
                loop {
                    let lease = LeaseId::from_uuid(Uuid::new_v4());
                    let batch = Outbox::claim_due(&store, NOW, lease, NOW + Duration::minutes(5), 10).await.unwrap();
                    if batch.is_empty() {
                        break mine;
                    }
                    mine.extend(batch);
                }
            }));
        }
        let mut claimed: Vec<Uuid> = Vec::new();
        for worker in workers {
            claimed.extend(worker.await.unwrap().into_iter().map(|entry| entry.email.id()));
        }
        let total = claimed.len();
        claimed.sort();
        claimed.dedup();
        assert_eq!(claimed.len(), total, "an entry was claimed twice");
        assert_eq!(total, 30);
    }

    pub async fn a_sent_email_loses_its_bodies_and_is_never_claimed_again<P: Backend, I: Inspect>(store: &P, inspect: &I) {
        let mail = mail_to("a@example.com");
        store.enqueue(&mail, NOW).await.unwrap();
        let lease = LeaseId::from_uuid(Uuid::new_v4());
        let entries = Outbox::claim_due(store, NOW, lease, NOW + Duration::minutes(5), 10).await.unwrap();
        assert_eq!(entries[0].email, mail);
        // A worker whose lease was taken over cannot mark the entry.
        store.mark_sent(mail.id(), LeaseId::from_uuid(Uuid::new_v4()), NOW).await.unwrap();
        assert_eq!(claim_all(store, NOW + Duration::minutes(6)).await.len(), 1);

        let stored = inspect.outbox_bodies(mail.id()).await;
        assert_eq!(
            stored,
            Some((Some(mail.text_body().to_owned()), Some(mail.html_body().to_owned()))),
            "unsent, the bodies stay"
        );
        let lease = LeaseId::from_uuid(Uuid::new_v4());
        Outbox::claim_due(store, NOW + Duration::minutes(12), lease, NOW + Duration::minutes(17), 10).await.unwrap();
        store.mark_sent(mail.id(), lease, NOW + Duration::minutes(12)).await.unwrap();
        assert_eq!(inspect.outbox_bodies(mail.id()).await, Some((None, None)), "the link-bearing bodies are gone");
        assert!(claim_all(store, NOW + Duration::days(1)).await.is_empty());
    }

    pub async fn a_retry_waits_for_its_time_and_counts_the_attempt<P: Backend, I: Inspect>(store: &P, inspect: &I) {
        let mail = mail_to("a@example.com");
        store.enqueue(&mail, NOW).await.unwrap();
        let lease = LeaseId::from_uuid(Uuid::new_v4());
        Outbox::claim_due(store, NOW, lease, NOW + Duration::minutes(5), 10).await.unwrap();
        store.schedule_retry(mail.id(), lease, NOW + Duration::seconds(2), "connection refused").await.unwrap();
        assert!(claim_all(store, NOW + Duration::seconds(1)).await.is_empty());
        let lease = LeaseId::from_uuid(Uuid::new_v4());
        let entries = Outbox::claim_due(store, NOW + Duration::seconds(2), lease, NOW + Duration::minutes(5), 10).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].attempts, 1);
        store.mark_failed(mail.id(), lease, NOW, "550 no such user").await.unwrap();
        assert!(claim_all(store, NOW + Duration::days(1)).await.is_empty());
        assert_eq!(inspect.outbox_bodies(mail.id()).await, Some((None, None)), "a given-up email keeps no link either");
    }
}
