//! flexauth's password hashing adapter: argon2id behind the domain's `PasswordHasher` port.
//!
//! Hashing is deliberately slow and memory-hungry, so it never runs on the async executor, nor
//! on tokio's blocking pool (whose dozens of threads would each keep an argon2 block of their
//! own): a fixed set of worker threads (one per core by default) each own one block of
//! `memory_kib` that they reuse for every hash. The pool's memory is therefore `workers ×
//! memory_kib`, allocated once. In front of the workers sits a bounded queue; when it is full,
//! or a job has waited longer than [`MAX_WAIT`], the caller gets [`HashError::Overloaded`] at once
//! and nothing is hashed. A job whose caller went away (its future dropped) is skipped; a job a
//! worker has started runs to its end on that worker, so dropping a future never lets more
//! hashes run at once than there are workers. This crate must not depend on a web framework or
//! a database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash as PhcHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use flexauth_domain::account::{HashError, Password, PasswordHash, PasswordHasher};
use flexauth_domain::InfraError;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;

/// How long a job may wait in the queue before it is answered "overloaded" unhashed: a login
/// that waited longer would only answer after its client gave up.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// The cost parameters of argon2id and the size of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    /// Memory cost in KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// Number of passes (OWASP: 2).
    pub iterations: u32,
    /// Degree of parallelism (OWASP: 1).
    pub parallelism: u32,
    /// Worker threads; each holds one block of `memory_kib` for its whole life.
    pub workers: usize,
    /// Jobs that may wait for a worker, per worker; one more is refused as overloaded.
    pub queue_per_worker: usize,
}

impl Default for Argon2Settings {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self { memory_kib: 19_456, iterations: 2, parallelism: 1, workers: cores, queue_per_worker: 16 }
    }
}

/// Why the hasher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Argon2ConfigError {
    /// The cost parameters are outside what argon2 accepts.
    #[error("invalid argon2 parameters: {0}")]
    InvalidParams(argon2::Error),
    /// The dummy hash used for unknown-email logins could not be computed.
    #[error("could not compute the dummy hash: {0}")]
    DummyHash(String),
    /// At least one worker must run.
    #[error("workers must be at least 1")]
    NoWorkers,
    /// A worker thread could not be started.
    #[error("could not start a hashing worker: {0}")]
    Thread(std::io::Error),
}

/// Why one hashing operation failed.
#[derive(Debug, thiserror::Error)]
enum HashingError {
    #[error("argon2 failed: {0}")]
    Argon2(argon2::Error),
    #[error("the stored hash is not a valid PHC string: {0}")]
    BadStoredHash(argon2::password_hash::Error),
    #[error("the hashing pool is full")]
    Overloaded,
    #[error("the hashing pool is closed")]
    PoolClosed,
    #[error("a hashing worker panicked; it goes on with the next job")]
    WorkerPanicked,
}

impl From<HashingError> for HashError {
    fn from(error: HashingError) -> Self {
        match error {
            HashingError::Overloaded => HashError::Overloaded,
            other => HashError::Unexpected(InfraError::new(other)),
        }
    }
}

/// What a worker is asked to do.
enum Work {
    Hash { password: SecretString },
    Verify { password: SecretString, phc: Arc<str> },
}

/// What a worker answers.
enum Outcome {
    Hashed(String),
    Verified(bool),
}

/// What the pool tells its metrics: jobs waiting, jobs shed, and how long each job waited.
#[derive(Default)]
struct PoolCounters {
    queued: AtomicU64,
    shed: AtomicU64,
    wait_observer: std::sync::OnceLock<Box<dyn Fn(Duration) + Send + Sync>>,
}

impl PoolCounters {
    fn shed_one(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of the hashing pool, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Worker threads, each holding one argon2 block.
    pub workers: usize,
    /// Jobs waiting for a worker now.
    pub queued: u64,
    /// Jobs answered "overloaded" unhashed since the start: the queue was full, or the job
    /// waited longer than [`MAX_WAIT`].
    pub shed: u64,
}

struct Job {
    work: Work,
    queued_at: Instant,
    reply: oneshot::Sender<Result<Outcome, HashingError>>,
}

/// One worker thread's state: the argon2 instance of the configured cost and its memory.
struct Worker {
    argon2: Argon2<'static>,
    params: Params,
    memory: Vec<Block>,
    computations: Arc<AtomicU64>,
    extra_allocations: Arc<AtomicU64>,
    counters: Arc<PoolCounters>,
}

impl Worker {
    fn run(mut self, jobs: &Mutex<Receiver<Job>>) {
        loop {
            // The lock is held only while taking a job, never while hashing.
            let job = match jobs.lock() {
                Ok(receiver) => receiver.recv(),
                Err(_) => return,
            };
            let Ok(job) = job else {
                // Every sender is gone: the hasher was dropped.
                return;
            };
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            if job.reply.is_closed() {
                continue;
            }
            let waited = job.queued_at.elapsed();
            if let Some(observe) = self.counters.wait_observer.get() {
                observe(waited);
            }
            let outcome = if waited > MAX_WAIT {
                self.counters.shed_one();
                Err(HashingError::Overloaded)
            } else {
                // A panic inside argon2 must not take the worker with it: the pool would shrink
                // for good, and with its last worker every login would fail.
                let work = job.work;
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.work(work)))
                    .unwrap_or(Err(HashingError::WorkerPanicked))
            };
            let _ = job.reply.send(outcome);
        }
    }

    fn work(&mut self, work: Work) -> Result<Outcome, HashingError> {
        let outcome = match work {
            Work::Hash { password } => self.hash(password.expose_secret().as_bytes()).map(Outcome::Hashed),
            Work::Verify { password, phc } => {
                self.verify(password.expose_secret().as_bytes(), &phc).map(Outcome::Verified)
            }
        };
        self.computations.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    fn hash(&mut self, password: &[u8]) -> Result<String, HashingError> {
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_raw = salt.decode_b64(&mut salt_bytes).map_err(HashingError::BadStoredHash)?;
        let mut out = [0u8; 32];
        self.argon2
            .hash_password_into_with_memory(password, salt_raw, &mut out, &mut self.memory)
            .map_err(HashingError::Argon2)?;
        let params = ParamsString::try_from(&self.params).map_err(HashingError::BadStoredHash)?;
        let output = Output::new(&out).map_err(HashingError::BadStoredHash)?;
        Ok(format!("$argon2id$v=19${params}${}${output}", salt.as_str()))
    }

    fn verify(&mut self, password: &[u8], phc: &str) -> Result<bool, HashingError> {
        let parsed = PhcHash::new(phc).map_err(HashingError::BadStoredHash)?;
        let expected = parsed.hash.ok_or(HashingError::BadStoredHash(argon2::password_hash::Error::PhcStringField))?;
        let salt = parsed.salt.ok_or(HashingError::BadStoredHash(argon2::password_hash::Error::PhcStringField))?;
        let mut salt_bytes = [0u8; 64];
        let salt_raw = salt.decode_b64(&mut salt_bytes).map_err(HashingError::BadStoredHash)?;
        let params = Params::try_from(&parsed).map_err(HashingError::BadStoredHash)?;
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(HashingError::BadStoredHash)?;
        let version =
            parsed.version.map(Version::try_from).transpose().map_err(HashingError::Argon2)?.unwrap_or(Version::V0x13);
        let mut out = vec![0u8; expected.len()];
        // The output length is not part of the cost (the buffer above has the stored length),
        // so a stored hash of the configured cost reuses this worker's memory.
        let same_cost = params.m_cost() == self.params.m_cost()
            && params.t_cost() == self.params.t_cost()
            && params.p_cost() == self.params.p_cost();
        if same_cost && algorithm == Algorithm::Argon2id && version == Version::V0x13 {
            self.argon2
                .hash_password_into_with_memory(password, salt_raw, &mut out, &mut self.memory)
                .map_err(HashingError::Argon2)?;
        } else {
            // A hash made under earlier settings: memory of its own size, this once.
            self.extra_allocations.fetch_add(1, Ordering::Relaxed);
            Argon2::new(algorithm, version, params)
                .hash_password_into(password, salt_raw, &mut out)
                .map_err(HashingError::Argon2)?;
        }
        // Output compares in constant time.
        Ok(Output::new(&out).map_err(HashingError::BadStoredHash)? == expected)
    }
}

/// argon2id password hashing on a fixed pool of worker threads.
#[derive(Clone)]
pub struct Argon2Hasher {
    jobs: SyncSender<Job>,
    params: Params,
    workers: usize,
    /// A hash of a random password nobody knows, verified against for unknown emails.
    dummy_hash: Arc<str>,
    /// argon2 computations finished (hashes and verifications, the dummy ones included).
    computations: Arc<AtomicU64>,
    /// Verifications of hashes of another cost, which needed memory beyond the pool's.
    extra_allocations: Arc<AtomicU64>,
    counters: Arc<PoolCounters>,
}

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Hasher")
            .field("params", &self.params)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl Argon2Hasher {
    /// Starts the workers, each allocating its block once, and computes the dummy hash (one
    /// hash's worth of time).
    ///
    /// # Errors
    /// [`Argon2ConfigError`] when the parameters are invalid or a worker cannot start.
    pub fn new(settings: Argon2Settings) -> Result<Self, Argon2ConfigError> {
        if settings.workers == 0 {
            return Err(Argon2ConfigError::NoWorkers);
        }
        let params = Params::new(settings.memory_kib, settings.iterations, settings.parallelism, None)
            .map_err(Argon2ConfigError::InvalidParams)?;
        let (jobs, receiver) = sync_channel(settings.workers * settings.queue_per_worker.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let computations = Arc::new(AtomicU64::new(0));
        let extra_allocations = Arc::new(AtomicU64::new(0));
        let counters = Arc::new(PoolCounters::default());
        for index in 0..settings.workers {
            let worker = Worker {
                argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone()),
                params: params.clone(),
                memory: vec![Block::default(); params.block_count()],
                computations: Arc::clone(&computations),
                extra_allocations: Arc::clone(&extra_allocations),
                counters: Arc::clone(&counters),
            };
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("flexauth-argon2-{index}"))
                .spawn(move || worker.run(&receiver))
                .map_err(Argon2ConfigError::Thread)?;
        }
        let mut setup = Worker {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone()),
            params: params.clone(),
            memory: vec![Block::default(); params.block_count()],
            computations: Arc::new(AtomicU64::new(0)),
            extra_allocations: Arc::new(AtomicU64::new(0)),
            counters: Arc::new(PoolCounters::default()),
        };
        let unknown = SaltString::generate(&mut OsRng);
        let dummy_hash =
            setup.hash(unknown.as_str().as_bytes()).map_err(|error| Argon2ConfigError::DummyHash(error.to_string()))?;
        Ok(Self {
            jobs,
            params,
            workers: settings.workers,
            dummy_hash: dummy_hash.into(),
            computations,
            extra_allocations,
            counters,
        })
    }

    /// How many argon2 computations (hashes and verifications, the dummy ones included) this
    /// hasher has finished: the work behind logins, for tests and metrics.
    pub fn computations(&self) -> u64 {
        self.computations.load(Ordering::Relaxed)
    }

    /// How many verifications needed memory beyond the pool's: hashes made under other argon2
    /// settings. At the configured cost, none does.
    pub fn extra_allocations(&self) -> u64 {
        self.extra_allocations.load(Ordering::Relaxed)
    }

    /// The memory the workers hold, in bytes: workers × the configured cost.
    pub fn pool_memory_bytes(&self) -> u64 {
        self.workers as u64 * u64::from(self.params.m_cost()) * 1024
    }

    /// The pool's size, queue depth and shed count now.
    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            workers: self.workers,
            queued: self.counters.queued.load(Ordering::Relaxed),
            shed: self.counters.shed.load(Ordering::Relaxed),
        }
    }

    /// Calls `observer` with how long each job waited in the queue before a worker took it
    /// (for a metrics histogram). Only the first observer set is kept.
    pub fn observe_queue_waits(&self, observer: impl Fn(Duration) + Send + Sync + 'static) {
        let _ = self.counters.wait_observer.set(Box::new(observer));
    }

    async fn submit(&self, work: Work) -> Result<Outcome, HashingError> {
        let (reply, answer) = oneshot::channel();
        // Counted before the send, so a worker taking the job at once never counts below zero.
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        match self.jobs.try_send(Job { work, queued_at: Instant::now(), reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                self.counters.shed_one();
                return Err(HashingError::Overloaded);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                return Err(HashingError::PoolClosed);
            }
        }
        answer.await.map_err(|_| HashingError::PoolClosed)?
    }

    async fn verify_phc(&self, password: &Password, phc: Arc<str>) -> Result<bool, HashingError> {
        match self.submit(Work::Verify { password: SecretString::from(password.expose()), phc }).await? {
            Outcome::Verified(matches) => Ok(matches),
            Outcome::Hashed(_) => Err(HashingError::PoolClosed),
        }
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        match self.submit(Work::Hash { password: SecretString::from(password.expose()) }).await? {
            Outcome::Hashed(phc) => Ok(PasswordHash::from_phc(phc)),
            Outcome::Verified(_) => Err(HashingError::PoolClosed.into()),
        }
    }

    async fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<bool, HashError> {
        Ok(self.verify_phc(password, Arc::from(hash.as_phc())).await?)
    }

    async fn verify_against_dummy(&self, password: &Password) -> Result<(), HashError> {
        self.verify_phc(password, Arc::clone(&self.dummy_hash)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Hasher {
        Argon2Hasher::new(Argon2Settings {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            workers: 2,
            queue_per_worker: 4,
        })
        .unwrap()
    }

    fn password(text: &str) -> Password {
        Password::parse(text.to_owned()).unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let hasher = cheap();
        let hash = hasher.hash(&password("correct horse battery")).await.unwrap();
        assert!(hash.as_phc().starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(hasher.verify(&password("correct horse battery"), &hash).await.unwrap());
        assert!(!hasher.verify(&password("wrong horse battery"), &hash).await.unwrap());
    }

    #[tokio::test]
    async fn two_hashes_of_one_password_differ_by_their_salt() {
        let hasher = cheap();
        let first = hasher.hash(&password("same password")).await.unwrap();
        let second = hasher.hash(&password("same password")).await.unwrap();
        assert_ne!(first, second);
    }

    #[tokio::test]
    async fn default_parameters_are_the_owasp_ones() {
        let hasher = Argon2Hasher::new(Argon2Settings::default()).unwrap();
        let hash = hasher.hash(&password("some password")).await.unwrap();
        assert!(hash.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }

    #[tokio::test]
    async fn the_dummy_verification_accepts_any_password_without_error() {
        cheap().verify_against_dummy(&password("anything at all")).await.unwrap();
    }

    #[tokio::test]
    async fn the_dummy_verification_is_one_real_argon2_verification_at_the_configured_cost() {
        let hasher = cheap();
        // The dummy hash has the cost of every other hash, so verifying against it costs the same.
        assert!(hasher.dummy_hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{}", hasher.dummy_hash);
        assert_eq!(hasher.computations(), 0);
        hasher.verify_against_dummy(&password("anything at all")).await.unwrap();
        assert_eq!(hasher.computations(), 1, "an unknown-email login must spend one argon2 verification");
        let hash = hasher.hash(&password("anything at all")).await.unwrap();
        assert!(!hasher.verify(&password("something else"), &hash).await.unwrap());
        assert_eq!(hasher.computations(), 3);
    }

    #[tokio::test]
    async fn a_corrupt_stored_hash_is_an_error_not_a_mismatch() {
        let outcome = cheap().verify(&password("x"), &PasswordHash::from_phc("not a phc string".into())).await;
        let error = outcome.expect_err("a corrupt hash is an error");
        let HashError::Unexpected(cause) = error else { panic!("not overloaded: {error:?}") };
        assert!(
            std::error::Error::source(&cause)
                .is_some_and(|cause| cause.to_string().starts_with("the stored hash is not a valid PHC string")),
            "{cause:?}"
        );
    }

    #[tokio::test]
    async fn hashes_of_the_old_argon2_library_path_still_verify() {
        // A PHC string from the crate's own allocating API, as stored before the worker pool.
        use argon2::password_hash::PasswordHasher as _;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(1024, 1, 1, None).unwrap());
        let stored = argon2.hash_password(b"kept from before", &SaltString::generate(&mut OsRng)).unwrap().to_string();
        let hasher = cheap();
        assert!(hasher.verify(&password("kept from before"), &PasswordHash::from_phc(stored.clone())).await.unwrap());
        assert!(!hasher.verify(&password("something else"), &PasswordHash::from_phc(stored)).await.unwrap());
        let own = hasher.hash(&password("made here")).await.unwrap();
        assert!(hasher.verify(&password("made here"), &own).await.unwrap());
        hasher.verify_against_dummy(&password("anything")).await.unwrap();
        assert_eq!(hasher.extra_allocations(), 0, "hashes of the configured cost reuse the workers' memory");
        // And one made under other settings verifies too, with memory of its own.
        let other = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(2048, 2, 1, None).unwrap());
        let older = other.hash_password(b"older settings", &SaltString::generate(&mut OsRng)).unwrap().to_string();
        assert!(hasher.verify(&password("older settings"), &PasswordHash::from_phc(older)).await.unwrap());
        assert_eq!(hasher.extra_allocations(), 1);
    }

    #[tokio::test]
    async fn a_full_queue_answers_overloaded_at_once_and_hashes_nothing_more() {
        // One worker with room for one waiting job, at a cost that keeps the worker busy.
        let hasher = Argon2Hasher::new(Argon2Settings {
            memory_kib: 65_536,
            iterations: 4,
            parallelism: 1,
            workers: 1,
            queue_per_worker: 1,
        })
        .unwrap();
        let waits = Arc::new(AtomicU64::new(0));
        let observed = Arc::clone(&waits);
        hasher.observe_queue_waits(move |_| {
            observed.fetch_add(1, Ordering::Relaxed);
        });
        let flood: Vec<_> = (0..6)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.hash(&Password::parse("flooding".into()).unwrap()).await })
            })
            .collect();
        let mut overloaded = 0;
        let mut hashed = 0;
        for job in flood {
            match job.await.unwrap() {
                Ok(_) => hashed += 1,
                Err(HashError::Overloaded) => overloaded += 1,
                Err(other) => panic!("{other:?}"),
            }
        }
        assert!(overloaded >= 1, "six jobs for one worker and one queue slot: some must be refused");
        assert_eq!(hasher.computations(), hashed, "refused jobs were not hashed");
        assert_eq!(hasher.pool_memory_bytes(), 64 * 1024 * 1024);
        assert_eq!(
            hasher.pool_stats(),
            PoolStats { workers: 1, queued: 0, shed: overloaded },
            "every refusal is counted, and nothing waits any more"
        );
        assert_eq!(waits.load(Ordering::Relaxed), hashed, "each job a worker took reported its wait");
    }

    #[test]
    fn zero_workers_are_refused() {
        let settings = Argon2Settings { workers: 0, ..Argon2Settings::default() };
        assert!(matches!(Argon2Hasher::new(settings), Err(Argon2ConfigError::NoWorkers)));
    }
}
