use async_trait::async_trait;

use super::{PurgeCutoffs, PurgeReport};
use crate::InfraError;

/// Deletes what retention says is due.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Housekeeping: Send + Sync {
    /// Deletes at most `cutoffs.batch` rows of each kind that are past their cutoff.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails; what was deleted stays deleted.
    async fn purge(&self, cutoffs: &PurgeCutoffs) -> Result<PurgeReport, InfraError>;
}
