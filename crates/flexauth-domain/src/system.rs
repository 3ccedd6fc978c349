//! What the domain asks of the system it runs on: the clock and the random source, injected so
//! that every rule is decided against a time and randomness that tests control.

use time::OffsetDateTime;

/// The current time. Services read it once per use case and pass `now` into pure rules.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    /// The current instant, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// A cryptographically secure random source.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait SecureRandom: Send + Sync {
    /// Fills `buffer` with unpredictable bytes. Implementations must use the operating
    /// system's CSPRNG (or one seeded from it) and may not fail silently: a random source that
    /// cannot deliver must abort the process rather than return weak bytes.
    fn fill(&self, buffer: &mut [u8]);
}

/// Convenience on top of [`SecureRandom`] for the fixed-size values the domain needs.
pub(crate) fn random_array<const N: usize>(random: &dyn SecureRandom) -> [u8; N] {
    let mut bytes = [0u8; N];
    random.fill(&mut bytes);
    bytes
}

/// A random version-4 UUID drawn from `random`.
pub(crate) fn random_uuid(random: &dyn SecureRandom) -> uuid::Uuid {
    uuid::Builder::from_random_bytes(random_array(random)).into_uuid()
}
