//! Request accounting for `/v1/usage`: how many authenticated requests an account made today.
//!
//! Counting must not cost a database write per request, so each instance counts in memory and
//! [`UsageService::flush`] adds what it counted to the stored counters in one batch (the
//! server calls it every second and once more at a graceful shutdown). A request reads the
//! store only the first time an instance sees its account on a day, or after a minute
//! without requests. The report is the stored count, as of this instance's last flush, plus
//! what the instance counted since: other instances' requests appear within a flush
//! interval. A crash loses the counts of at most one interval.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use time::{Date, Duration, OffsetDateTime};

use crate::newtypes::AccountId;
use crate::principal::AccountGone;
use crate::system::Clock;
use crate::InfraError;

mod ports;

#[cfg(any(test, feature = "mocks"))]
pub use ports::MockUsageRepository;
pub use ports::{UsageCount, UsageRepository};

/// What `/v1/usage` reports about the caller's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageReport {
    /// The UTC day counted.
    pub day: Date,
    /// Requests on that day, this one included.
    pub requests_today: u64,
}

/// Why a request could not be counted.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// The caller's account was deleted while its credential was still valid.
    #[error(transparent)]
    AccountGone(#[from] AccountGone),
    /// The store failed.
    #[error(transparent)]
    Unexpected(#[from] InfraError),
}

/// What one [`UsageService::flush`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Counters written.
    pub counters: usize,
    /// Requests added to them.
    pub requests: u64,
}

/// How long a counter nobody used stays in memory; the next request reads the store again.
const IDLE_COUNTER_LIFETIME: Duration = Duration::minutes(1);

#[derive(Debug, Clone, Copy)]
struct Counter {
    /// The stored total as of the last read or flush.
    stored: u64,
    /// Counted here and not written yet (including a batch in flight).
    pending: u64,
    last_used: OffsetDateTime,
}

type Counters = HashMap<(AccountId, Date), Counter>;

/// Counts requests and reports them.
#[derive(Clone)]
pub struct UsageService {
    usage: Arc<dyn UsageRepository>,
    clock: Arc<dyn Clock>,
    counters: Arc<Mutex<Counters>>,
    /// Set while a flush runs: a second one at the same time would send the same increments.
    flushing: Arc<AtomicBool>,
}

impl std::fmt::Debug for UsageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageService").finish_non_exhaustive()
    }
}

impl UsageService {
    /// Wires the service to its ports.
    pub fn new(usage: Arc<dyn UsageRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { usage, clock, counters: Arc::default(), flushing: Arc::default() }
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        // A panic while holding the lock leaves plain counts behind, still worth using.
        self.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts this request and reports today's total. Reads the store only when this
    /// instance has no counter for the account and day yet; that read, and every flush, also
    /// find out whether the account still exists, so the credential of a deleted account
    /// stops counting within a flush interval.
    ///
    /// # Errors
    /// [`UsageError::AccountGone`], or [`UsageError::Unexpected`] when the store cannot be
    /// read.
    pub async fn record(&self, account_id: AccountId) -> Result<UsageReport, UsageError> {
        let now = self.clock.now();
        let day = now.date();
        if let Some(report) = self.count(account_id, day, now, None) {
            return Ok(report);
        }
        let stored = self.usage.requests_on(account_id, day).await?.ok_or(AccountGone)?;
        Ok(self.count(account_id, day, now, Some(stored)).unwrap_or(UsageReport { day, requests_today: stored + 1 }))
    }

    /// Adds one request to the counter, creating it from `stored` when it is missing; `None`
    /// when it is missing and nothing was read yet.
    fn count(&self, account_id: AccountId, day: Date, now: OffsetDateTime, stored: Option<u64>) -> Option<UsageReport> {
        let mut counters = self.counters();
        let counter = match (counters.get_mut(&(account_id, day)), stored) {
            (Some(counter), _) => counter,
            (None, Some(stored)) => {
                counters.entry((account_id, day)).or_insert(Counter { stored, pending: 0, last_used: now })
            }
            (None, None) => return None,
        };
        counter.pending += 1;
        counter.last_used = now;
        Some(UsageReport { day, requests_today: counter.stored + counter.pending })
    }

    /// Writes what this instance counted since the last flush, in one batch, and forgets the
    /// counters of past days and those idle for a minute. When the store fails, the counts
    /// stay here for the next flush. A flush called while another runs does nothing.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    pub async fn flush(&self) -> Result<FlushReport, InfraError> {
        if self.flushing.swap(true, Ordering::AcqRel) {
            return Ok(FlushReport::default());
        }
        // Cleared on every exit, a cancelled flush included.
        let _alone = FlushGuard(&self.flushing);
        self.flush_alone().await
    }

    async fn flush_alone(&self) -> Result<FlushReport, InfraError> {
        let now = self.clock.now();
        let batch: Vec<UsageCount> = self
            .counters()
            .iter()
            .filter(|(_, counter)| counter.pending > 0)
            .map(|(&(account_id, day), counter)| UsageCount { account_id, day, requests: counter.pending })
            .collect();
        if batch.is_empty() {
            self.forget_idle(now);
            return Ok(FlushReport::default());
        }
        let totals = self.usage.add_requests(&batch).await?;
        let totals: HashMap<(AccountId, Date), u64> =
            totals.into_iter().map(|total| ((total.account_id, total.day), total.requests)).collect();
        let mut counters = self.counters();
        for written in &batch {
            let key = (written.account_id, written.day);
            match (totals.get(&key), counters.get_mut(&key)) {
                (Some(&total), Some(counter)) => {
                    // Requests counted while the batch was in flight stay pending.
                    counter.pending -= written.requests;
                    counter.stored = total;
                }
                // The account is gone: nothing to count for it any more.
                (None, Some(_)) => {
                    counters.remove(&key);
                }
                (_, None) => {}
            }
        }
        drop(counters);
        self.forget_idle(now);
        Ok(FlushReport {
            counters: totals.len(),
            requests: batch
                .iter()
                .filter(|count| totals.contains_key(&(count.account_id, count.day)))
                .map(|count| count.requests)
                .sum(),
        })
    }

    fn forget_idle(&self, now: OffsetDateTime) {
        let today = now.date();
        self.counters().retain(|&(_, day), counter| {
            counter.pending > 0 || (day == today && now - counter.last_used < IDLE_COUNTER_LIFETIME)
        });
    }
}

struct FlushGuard<'a>(&'a AtomicBool);

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::AtomicU64;

    use time::macros::datetime;

    use super::*;

    /// A clock the test moves.
    struct Hands(AtomicU64);

    impl Clock for Hands {
        fn now(&self) -> OffsetDateTime {
            datetime!(2026-11-30 23:59:00 UTC)
                + Duration::seconds(i64::try_from(self.0.load(Ordering::SeqCst)).unwrap())
        }
    }

    fn service(repository: MockUsageRepository) -> (UsageService, Arc<Hands>) {
        let clock = Arc::new(Hands(AtomicU64::new(0)));
        (UsageService::new(Arc::new(repository), clock.clone()), clock)
    }

    fn account() -> AccountId {
        AccountId::from_uuid(uuid::Uuid::from_u128(7))
    }

    #[tokio::test]
    async fn requests_are_counted_in_memory_after_one_read_and_written_in_one_batch() {
        let mut repository = MockUsageRepository::new();
        repository.expect_requests_on().times(1).returning(|_, _| Ok(Some(40)));
        repository
            .expect_add_requests()
            .times(1)
            .withf(|batch| {
                batch == [UsageCount { account_id: account(), day: time::macros::date!(2026 - 11 - 30), requests: 3 }]
            })
            .returning(|batch| Ok(vec![UsageCount { requests: 40 + batch[0].requests + 100, ..batch[0] }]));
        let (usage, _) = service(repository);
        for expected in 41..=43 {
            assert_eq!(usage.record(account()).await.unwrap().requests_today, expected);
        }
        assert_eq!(usage.flush().await.unwrap(), FlushReport { counters: 1, requests: 3 });
        // The flush brought back what other instances added (100).
        assert_eq!(usage.record(account()).await.unwrap().requests_today, 144);
    }

    #[tokio::test]
    async fn a_failed_flush_keeps_the_counts_for_the_next() {
        let mut repository = MockUsageRepository::new();
        repository.expect_requests_on().returning(|_, _| Ok(Some(0)));
        let mut attempts = 0;
        repository.expect_add_requests().times(2).returning(move |batch| {
            attempts += 1;
            if attempts == 1 {
                Err(InfraError::new(std::io::Error::other("database down")))
            } else {
                assert_eq!(batch[0].requests, 3, "the two requests of the failed flush and the one after");
                Ok(batch.to_vec())
            }
        });
        let (usage, _) = service(repository);
        usage.record(account()).await.unwrap();
        usage.record(account()).await.unwrap();
        assert!(usage.flush().await.is_err());
        assert_eq!(usage.record(account()).await.unwrap().requests_today, 3);
        assert_eq!(usage.flush().await.unwrap().requests, 3);
    }

    #[tokio::test]
    async fn a_new_day_starts_from_the_store_and_nothing_pending_means_no_write() {
        let mut repository = MockUsageRepository::new();
        repository
            .expect_requests_on()
            .times(2)
            .returning(|_, day| Ok(Some(if day == time::macros::date!(2026 - 11 - 30) { 9 } else { 0 })));
        repository.expect_add_requests().times(1).returning(|batch| Ok(batch.to_vec()));
        let (usage, clock) = service(repository);
        assert_eq!(usage.record(account()).await.unwrap().requests_today, 10);
        clock.0.store(120, Ordering::SeqCst);
        let report = usage.record(account()).await.unwrap();
        assert_eq!((report.day, report.requests_today), (time::macros::date!(2026 - 12 - 01), 1));
        usage.flush().await.unwrap();
        // Flushed and idle: forgotten, and a flush with nothing counted writes nothing.
        clock.0.store(600, Ordering::SeqCst);
        assert_eq!(usage.flush().await.unwrap(), FlushReport::default());
        assert!(usage.counters().is_empty());
    }

    #[tokio::test]
    async fn a_deleted_account_is_refused_and_its_counts_are_dropped() {
        let mut repository = MockUsageRepository::new();
        let mut reads = 0;
        repository.expect_requests_on().times(2).returning(move |_, _| {
            reads += 1;
            Ok((reads == 1).then_some(0))
        });
        repository.expect_add_requests().times(1).returning(|_| Ok(Vec::new()));
        let (usage, _) = service(repository);
        usage.record(account()).await.unwrap();
        // The flush finds the account gone and forgets its counter; the next request reads
        // the store again and learns the same.
        assert_eq!(usage.flush().await.unwrap(), FlushReport::default());
        assert!(usage.counters().is_empty());
        assert!(matches!(usage.record(account()).await, Err(UsageError::AccountGone(_))));
    }
}
