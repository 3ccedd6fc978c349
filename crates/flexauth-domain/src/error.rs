use std::error::Error;

/// A failure of the infrastructure behind a port (database down, SMTP unreachable, I/O error).
///
/// The domain carries it up to the boundary that logs it and answers with a generic failure,
/// or, when the adapter said the system behind it cannot be reached right now, with
/// "unavailable, try again". One rule reads that flag: an access token's check answers from
/// what it last heard of ended sessions while storage cannot be reached.
#[derive(Debug, thiserror::Error)]
#[error("infrastructure failure")]
pub struct InfraError {
    #[source]
    cause: Box<dyn Error + Send + Sync + 'static>,
    unavailable: bool,
}

impl InfraError {
    /// Wraps the adapter's own error as the cause.
    pub fn new(cause: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        Self { cause: cause.into(), unavailable: false }
    }

    /// Wraps an error that means the system behind the port cannot be reached now (the
    /// database is down): the same request may succeed once it is back.
    pub fn unavailable(cause: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        Self { cause: cause.into(), unavailable: true }
    }

    /// Whether the adapter said the system behind the port cannot be reached now.
    pub fn is_unavailable(&self) -> bool {
        self.unavailable
    }
}
