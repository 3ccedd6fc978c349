//! The port contract (`flexauth-contract`) on a fresh in-memory store per scenario.

// Test support code outside #[test] functions may unwrap: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flexauth_memory::MemoryStore;
use uuid::Uuid;

/// Reads the stored bodies of an outbox entry through the store's own inspection method.
struct Bodies(MemoryStore);

#[async_trait::async_trait]
impl flexauth_contract::Inspect for Bodies {
    async fn outbox_bodies(&self, id: Uuid) -> Option<(Option<String>, Option<String>)> {
        self.0.outbox_bodies(id)
    }
}

/// A fresh store, and its inspector; nothing needs to outlive the scenario, so the guard is
/// empty.
fn fresh() -> Option<((), MemoryStore, Bodies)> {
    let store = MemoryStore::new();
    Some(((), store.clone(), Bodies(store)))
}

flexauth_contract::contract_suite!(fresh());
