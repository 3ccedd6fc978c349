use async_trait::async_trait;

use super::{AuditCursor, AuditEvent};
use crate::newtypes::AccountId;
use crate::InfraError;

/// Storage of the security log.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Stores `event` on its own (events that belong to a change are stored by the change's
    /// own transaction instead).
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn record(&self, event: &AuditEvent) -> Result<(), InfraError>;

    /// The account's entries older than `after` (all, without one), newest first, at most
    /// `limit`.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    async fn list(
        &self,
        account_id: AccountId,
        after: Option<AuditCursor>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, InfraError>;
}
