//! What the domain asks of the system it runs on: the clock and the random source, injected so
//! that every rule is decided against a time and randomness that tests control.

mod ports;

pub use ports::{Clock, SecureRandom};
#[cfg(any(test, feature = "mocks"))]
pub use ports::{MockClock, MockSecureRandom};

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
