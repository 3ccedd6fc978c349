//! flexauth's password hashing adapter: argon2id behind the domain's `PasswordHasher` port.
//!
//! Hashing is deliberately slow and memory-hungry, so it never runs on the async executor: each
//! hash runs on tokio's blocking pool, and a semaphore bounds how many run at once. A burst of
//! logins therefore queues instead of starving other requests of executor threads or
//! allocating `burst × memory cost` at once. This crate must not depend on a web framework or a
//! database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash as PhcHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use flexauth_domain::account::{Password, PasswordHash, PasswordHasher};
use flexauth_domain::InfraError;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

/// The cost parameters of argon2id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    /// Memory cost in KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// Number of passes (OWASP: 2).
    pub iterations: u32,
    /// Degree of parallelism (OWASP: 1).
    pub parallelism: u32,
    /// How many hashes may run at the same time; each holds `memory_kib` while it runs.
    pub max_concurrent: usize,
}

impl Default for Argon2Settings {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self { memory_kib: 19_456, iterations: 2, parallelism: 1, max_concurrent: cores }
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
    DummyHash(argon2::password_hash::Error),
    /// At least one hash must be allowed to run.
    #[error("max_concurrent must be at least 1")]
    NoConcurrency,
}

/// Why one hashing operation failed.
#[derive(Debug, thiserror::Error)]
enum HashingError {
    #[error("argon2 failed: {0}")]
    Argon2(argon2::password_hash::Error),
    #[error("the stored hash is not a valid PHC string: {0}")]
    BadStoredHash(argon2::password_hash::Error),
    #[error("the hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the hashing pool is closed")]
    PoolClosed,
}

/// argon2id password hashing on a bounded blocking pool.
#[derive(Clone)]
pub struct Argon2Hasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// A hash of a random password nobody knows, verified against for unknown emails.
    dummy_hash: Arc<str>,
    /// argon2 computations finished (hashes and verifications, the dummy ones included).
    computations: Arc<AtomicU64>,
}

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Hasher").field("params", self.argon2.params()).finish_non_exhaustive()
    }
}

impl Argon2Hasher {
    /// Builds the hasher and computes its dummy hash (one hash's worth of time).
    ///
    /// # Errors
    /// [`Argon2ConfigError`] when the parameters are invalid.
    pub fn new(settings: Argon2Settings) -> Result<Self, Argon2ConfigError> {
        if settings.max_concurrent == 0 {
            return Err(Argon2ConfigError::NoConcurrency);
        }
        let params = Params::new(settings.memory_kib, settings.iterations, settings.parallelism, None).map_err(Argon2ConfigError::InvalidParams)?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let unknown = SaltString::generate(&mut OsRng);
        let dummy_hash =
            argon2.hash_password(unknown.as_str().as_bytes(), &SaltString::generate(&mut OsRng)).map_err(Argon2ConfigError::DummyHash)?.to_string();
        Ok(Self {
            argon2,
            permits: Arc::new(Semaphore::new(settings.max_concurrent)),
            dummy_hash: dummy_hash.into(),
            computations: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How many argon2 computations (hashes and verifications, the dummy ones included) this
    /// hasher has finished: the work behind logins, for tests and metrics.
    pub fn computations(&self) -> u64 {
        self.computations.load(Ordering::Relaxed)
    }

    /// Runs `work` on the blocking pool once a permit is free.
    async fn run_bounded<T: Send + 'static>(&self, work: impl FnOnce(&Argon2<'static>) -> Result<T, HashingError> + Send + 'static) -> Result<T, HashingError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashingError::PoolClosed)?;
        let argon2 = self.argon2.clone();
        let computations = Arc::clone(&self.computations);
        tokio::task::spawn_blocking(move || {
            let outcome = work(&argon2);
            computations.fetch_add(1, Ordering::Relaxed);
            outcome
        })
        .await?
    }

    async fn verify_phc(&self, password: &Password, phc: Arc<str>) -> Result<bool, HashingError> {
        let password = SecretString::from(password.expose());
        self.run_bounded(move |argon2| {
            let parsed = PhcHash::new(&phc).map_err(HashingError::BadStoredHash)?;
            match argon2.verify_password(password.expose_secret().as_bytes(), &parsed) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::Password) => Ok(false),
                Err(other) => Err(HashingError::Argon2(other)),
            }
        })
        .await
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, InfraError> {
        let password = SecretString::from(password.expose());
        let phc = self
            .run_bounded(move |argon2| {
                let salt = SaltString::generate(&mut OsRng);
                argon2.hash_password(password.expose_secret().as_bytes(), &salt).map(|hash| hash.to_string()).map_err(HashingError::Argon2)
            })
            .await
            .map_err(InfraError::new)?;
        Ok(PasswordHash::from_phc(phc))
    }

    async fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<bool, InfraError> {
        self.verify_phc(password, Arc::from(hash.as_phc())).await.map_err(InfraError::new)
    }

    async fn verify_against_dummy(&self, password: &Password) -> Result<(), InfraError> {
        self.verify_phc(password, Arc::clone(&self.dummy_hash)).await.map(|_| ()).map_err(InfraError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Hasher {
        Argon2Hasher::new(Argon2Settings { memory_kib: 1024, iterations: 1, parallelism: 1, max_concurrent: 2 }).unwrap()
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
        assert!(std::error::Error::source(&error).is_some_and(|cause| cause.to_string().starts_with("the stored hash is not a valid PHC string")), "{error:?}");
    }

    #[test]
    fn zero_concurrency_is_refused() {
        let settings = Argon2Settings { max_concurrent: 0, ..Argon2Settings::default() };
        assert!(matches!(Argon2Hasher::new(settings), Err(Argon2ConfigError::NoConcurrency)));
    }
}
