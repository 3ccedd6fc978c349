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
