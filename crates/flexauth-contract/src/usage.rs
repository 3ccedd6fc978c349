//! Request counts per account and day (`UsageRepository`).

use super::*;

scenarios! { $ usage_scenarios;
    pub async fn usage_counts_per_account_and_day<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let account = stored_account(store).await;
        let other = new_account("other@example.com");
        store.create_unverified(&other, &attempt_for(&other, 2), &mail_to("other@example.com")).await.unwrap();
        let (day, next_day) = (date!(2026 - 11 - 27), date!(2026 - 11 - 28));
        let count = |account: &Account, day, requests| UsageCount { account_id: account.id(), day, requests };
        assert_eq!(store.requests_on(account.id(), day).await.unwrap(), Some(0));
        let mut totals = store.add_requests(&[count(&account, day, 3), count(&other, day, 1)]).await.unwrap();
        totals.sort_by_key(|total| total.requests);
        assert_eq!(totals, [count(&other, day, 1), count(&account, day, 3)]);
        assert_eq!(store.add_requests(&[count(&account, day, 2), count(&account, next_day, 5)]).await.unwrap().len(), 2);
        assert_eq!(store.requests_on(account.id(), day).await.unwrap(), Some(5), "increments add up");
        assert_eq!(store.requests_on(account.id(), next_day).await.unwrap(), Some(5), "each day counts apart");
        // An account that no longer exists does not fail the batch: its count is dropped.
        let gone = new_account("gone@example.com");
        let totals = store.add_requests(&[count(&gone, day, 4), count(&other, day, 1)]).await.unwrap();
        assert_eq!(totals, [count(&other, day, 2)]);
        assert_eq!(store.requests_on(gone.id(), day).await.unwrap(), None, "no such account");
    }
}
