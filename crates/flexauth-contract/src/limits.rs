//! Rate-limit counters (`RateLimiter`).

use super::*;

scenarios! { $ limits_scenarios;
    pub async fn rate_limit_counters_count_per_window_and_start_over<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let at = NOW + Duration::seconds(10);
        assert!(store.peek("a", &THREE_A_MINUTE, at).await.unwrap().allowed);
        for expected_remaining in [2, 1, 0] {
            let decision = store.hit("a", &THREE_A_MINUTE, at).await.unwrap();
            assert!(decision.allowed);
            assert_eq!(decision.remaining, expected_remaining);
        }
        let fourth = store.hit("a", &THREE_A_MINUTE, at).await.unwrap();
        assert!(!fourth.allowed);
        assert_eq!(fourth.reset_after, Duration::seconds(50));
        assert!(!store.peek("a", &THREE_A_MINUTE, at).await.unwrap().allowed, "peeking counts nothing but sees the count");
        assert!(store.hit("b", &THREE_A_MINUTE, at).await.unwrap().allowed, "keys count apart");
        assert!(
            store.hit("a", &THREE_A_MINUTE, NOW + Duration::minutes(1)).await.unwrap().allowed,
            "the next window starts over"
        );
        store.reset("a", &THREE_A_MINUTE).await.unwrap();
        assert_eq!(store.peek("a", &THREE_A_MINUTE, NOW + Duration::minutes(1)).await.unwrap().remaining, 2);
    }

    pub async fn concurrent_hits_are_all_counted<P: Backend, I: Inspect>(store: &P, _inspect: &I) {
        let policy = LimitPolicy { name: "contract", limit: 1000, window: Duration::hours(1) };
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move { store.hit("shared", &policy, NOW).await.unwrap() }));
        }
        let mut remaining: Vec<u32> = Vec::new();
        for task in tasks {
            remaining.push(task.await.unwrap().remaining);
        }
        remaining.sort_unstable();
        // Each of the 40 hits saw a different count: none was lost or doubled.
        assert_eq!(remaining, (960..1000).collect::<Vec<u32>>());
    }

    pub async fn a_refund_takes_back_one_attempt_of_the_current_window_only<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        for _ in 0..3 {
            store.hit("r", &THREE_A_MINUTE, NOW).await.unwrap();
        }
        assert!(!store.peek("r", &THREE_A_MINUTE, NOW).await.unwrap().allowed);
        store.refund("r", &THREE_A_MINUTE, NOW).await.unwrap();
        let decision = store.peek("r", &THREE_A_MINUTE, NOW).await.unwrap();
        assert!(decision.allowed && decision.remaining == 0, "one more fits again: {decision:?}");
        // A refund of a key never counted, or in a later window, takes nothing below zero.
        store.refund("never", &THREE_A_MINUTE, NOW).await.unwrap();
        assert_eq!(store.peek("never", &THREE_A_MINUTE, NOW).await.unwrap().remaining, 2);
        store.refund("r", &THREE_A_MINUTE, NOW + Duration::minutes(1)).await.unwrap();
        assert_eq!(store.peek("r", &THREE_A_MINUTE, NOW + Duration::minutes(1)).await.unwrap().remaining, 2);
    }

    pub async fn counters_hit_together_count_each_and_settle_together<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let daily = LimitPolicy { name: "contract_daily", limit: 5, window: Duration::days(1) };
        let counters = [
            LimitCounter::new("address", THREE_A_MINUTE),
            LimitCounter::new("account", THREE_A_MINUTE),
            LimitCounter::new("account", daily),
        ];
        store.hit("account", &THREE_A_MINUTE, NOW).await.unwrap();
        let decisions = store.hit_all(&counters, NOW).await.unwrap();
        // In the order asked, each counted as `hit` counts it.
        assert_eq!(decisions.iter().map(|decision| decision.remaining).collect::<Vec<_>>(), [2, 1, 4]);
        assert_eq!(decisions.iter().map(|decision| decision.policy).collect::<Vec<_>>(), [THREE_A_MINUTE, THREE_A_MINUTE, daily]);
        for _ in 0..2 {
            store.hit_all(&counters, NOW).await.unwrap();
        }
        let over = store.hit_all(&counters, NOW).await.unwrap();
        assert_eq!(over.iter().map(|decision| decision.allowed).collect::<Vec<_>>(), [false, false, true]);
        // A refund takes one attempt back in the current window; a clear forgets them all.
        store
            .settle(
                &[
                    LimitSettlement::Refund(counters[0].clone()),
                    LimitSettlement::Clear(counters[1].clone()),
                    LimitSettlement::Refund(counters[2].clone()),
                ],
                NOW,
            )
            .await
            .unwrap();
        assert_eq!(store.peek("address", &THREE_A_MINUTE, NOW).await.unwrap().remaining, 0);
        assert_eq!(store.peek("account", &THREE_A_MINUTE, NOW).await.unwrap().remaining, 2);
        assert_eq!(store.peek("account", &daily, NOW).await.unwrap().remaining, 1);
        assert!(store.hit_all(&counters[1..2], NOW).await.unwrap()[0].allowed, "a cleared counter starts over");
        // A refund in a later window takes nothing, and no count goes below zero.
        let later = NOW + Duration::minutes(1);
        store.settle(&[LimitSettlement::Refund(LimitCounter::new("never", THREE_A_MINUTE))], NOW).await.unwrap();
        store.settle(&[LimitSettlement::Refund(counters[0].clone())], later).await.unwrap();
        assert_eq!(store.peek("never", &THREE_A_MINUTE, NOW).await.unwrap().remaining, 2);
        assert_eq!(store.peek("address", &THREE_A_MINUTE, NOW).await.unwrap().remaining, 0);
        // The next window starts over for each counter of a batch.
        let next = store.hit_all(&counters, later).await.unwrap();
        assert_eq!(next.iter().map(|decision| decision.remaining).collect::<Vec<_>>(), [2, 2, 1]);
    }
}
