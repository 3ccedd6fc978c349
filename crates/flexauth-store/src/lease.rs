//! The lease claim that the outbox and the account request queue share: candidates are read,
//! then each is taken with a compare-and-swap on its lease, so that of several workers (in this
//! process or on other instances) exactly one wins each row, on PostgreSQL and SQLite alike.

use crate::StoreError;

/// Takes each of `candidates` on `connection` with `take` (the compare-and-swap: an update
/// that matches only while the row is still free, returning how many rows it changed) and
/// reads back with `read` the ones this call won.
pub(crate) fn claim_each<C, T>(
    connection: &mut C,
    candidates: Vec<String>,
    mut take: impl FnMut(&mut C, &str) -> Result<usize, StoreError>,
    mut read: impl FnMut(&mut C, &str) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut claimed = Vec::with_capacity(candidates.len());
    for id in candidates {
        if take(connection, &id)? == 1 {
            claimed.push(read(connection, &id)?);
        }
    }
    Ok(claimed)
}
