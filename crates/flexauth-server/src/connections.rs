//! How many connections the server holds, and how many one client address may hold.
//!
//! Every connection costs a file descriptor. A server that accepts more connections than its
//! file limit allows fails its own `accept` (and the database and mail connections it opens):
//! a few hundred slow clients would then keep everybody else out. So the total is capped below
//! the file limit, with room kept for the server's own files, and no single client address may
//! take more than its share: a connection beyond it is closed as soon as it is accepted, before
//! it can hold anything. Trusted proxies are exempt, since every client behind them shares
//! their address; they should apply limits of their own (docs/operations.md).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use flexauth_domain::limits::address_key;

use crate::client::Network;

/// The most connections one worker holds, whatever the file limit: actix's default.
const MOST_PER_WORKER: usize = 25_000;

/// The connection caps for a process whose file limit is `file_limit`, with `workers` HTTP
/// workers, and the per-address cap the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// The file limit the caps were computed from (`None`: the system set none).
    pub file_limit: Option<u64>,
    /// The connections each worker holds at most (actix's `max_connections`); beyond them, new
    /// connections wait in the listen queue until one ends.
    pub per_worker: usize,
    /// The connections one client address holds at most: the operator's setting, but never
    /// more than a quarter of the total, so that one address cannot fill the server.
    pub per_address: usize,
}

impl ConnectionCaps {
    /// Keeps a quarter of the file limit, between 32 and 256 descriptors, for the server's own
    /// files (database connections, the listeners, mail, logs) and shares the rest among the
    /// workers.
    pub fn for_file_limit(file_limit: Option<u64>, workers: usize, per_address: usize) -> Self {
        let workers = workers.max(1);
        let per_worker = match file_limit.and_then(|limit| usize::try_from(limit).ok()) {
            Some(limit) => {
                let reserve = (limit / 4).clamp(32, 256);
                (limit.saturating_sub(reserve) / workers).clamp(1, MOST_PER_WORKER)
            }
            None => MOST_PER_WORKER,
        };
        let total = per_worker.saturating_mul(workers);
        Self { file_limit, per_worker, per_address: per_address.min(total / 4).max(1) }
    }
}

/// The process's limit on open files, raised first to its hard limit (as Go's runtime does at
/// start): the soft limit is often 1024, far below what the hard limit allows a server.
pub fn raise_file_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limits = getrlimit(Resource::Nofile);
    if limits.current < limits.maximum {
        let raised = Rlimit { current: limits.maximum, maximum: limits.maximum };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(%error, "cannot raise the open-file limit to its hard limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// The connections each client address holds now, shared by every worker.
#[derive(Debug)]
pub struct ConnectionsPerAddress {
    cap: usize,
    exempt: Arc<[Network]>,
    held: Mutex<HashMap<String, usize>>,
}

/// A held connection's place in its address's count, given back when the connection ends (its
/// extensions are dropped with it).
#[derive(Debug)]
struct Held {
    counts: Arc<ConnectionsPerAddress>,
    key: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.counts.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

impl ConnectionsPerAddress {
    /// At most `cap` connections per client address (IPv6 clients by their /64), none for the
    /// `exempt` proxies.
    pub fn new(cap: usize, exempt: Arc<[Network]>) -> Arc<Self> {
        Arc::new(Self { cap, exempt, held: Mutex::new(HashMap::new()) })
    }

    /// Called for every accepted connection (actix's `on_connect`): counts it against its
    /// address, or, past the address's cap, shuts it down at once, so that it holds its file
    /// descriptor no longer than it takes the worker to notice.
    pub fn admit(self: &Arc<Self>, connection: &dyn std::any::Any, data: &mut Extensions) {
        let Some(stream) = connection.downcast_ref::<TcpStream>() else { return };
        let Ok(peer) = stream.peer_addr() else { return };
        let ip: IpAddr = peer.ip().to_canonical();
        if self.exempt.iter().any(|network| network.contains(ip)) {
            return;
        }
        let key = address_key(&ip.to_string());
        let admitted = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            let count = held.entry(key.clone()).or_insert(0);
            if *count < self.cap {
                *count += 1;
                true
            } else {
                false
            }
        };
        if admitted {
            data.insert(Held { counts: self.clone(), key });
        } else {
            tracing::debug!(client = %key, cap = self.cap, "connection refused: too many from this address");
            let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Both);
        }
    }

    /// The connections `ip`'s address holds now.
    pub fn held_by(&self, ip: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(&address_key(&ip.to_string())).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_stays_below_the_file_limit_and_one_address_gets_a_quarter_at_most() {
        let low = ConnectionCaps::for_file_limit(Some(160), 2, 256);
        assert_eq!((low.per_worker, low.per_address), (60, 30), "40 kept back, 120 shared, a quarter each");
        let usual = ConnectionCaps::for_file_limit(Some(1024), 2, 256);
        assert_eq!((usual.per_worker, usual.per_address), (384, 192));
        let high = ConnectionCaps::for_file_limit(Some(1_048_576), 4, 256);
        assert_eq!((high.per_worker, high.per_address), (25_000, 256), "actix's ceiling and the setting");
        let none = ConnectionCaps::for_file_limit(None, 2, 100);
        assert_eq!((none.per_worker, none.per_address), (25_000, 100));
        assert_eq!(ConnectionCaps::for_file_limit(Some(8), 2, 256).per_address, 1, "never zero");
    }
}
