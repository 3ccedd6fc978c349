use std::error::Error;

/// A failure of the infrastructure behind a port (database down, SMTP unreachable, I/O error).
///
/// The domain never inspects it: it carries the cause up to the boundary that logs it and
/// answers with a generic failure.
#[derive(Debug, thiserror::Error)]
#[error("infrastructure failure")]
pub struct InfraError(#[source] Box<dyn Error + Send + Sync + 'static>);

impl InfraError {
    /// Wraps the adapter's own error as the cause.
    pub fn new(cause: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        Self(cause.into())
    }
}
