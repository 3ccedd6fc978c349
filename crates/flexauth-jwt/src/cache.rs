//! Access tokens already verified by this instance, so a client that sends the same token on
//! every request pays for its signature check once.
//!
//! An entry is keyed by the SHA-256 of the whole token, so a token that differs in any byte
//! (a forged signature, an altered claim) never finds one and is verified in full. It holds
//! only what verification established (the claims); the domain still judges `exp` and `nbf`
//! against its clock on every request, and still looks the session up when it is configured
//! to. An entry is dropped once its token has expired.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use flexauth_domain::session::AccessClaims;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// Shards keep two workers verifying different tokens off each other's lock.
const SHARDS: usize = 16;

pub(crate) type TokenDigest = [u8; 32];

pub(crate) struct VerifiedTokens {
    shards: Vec<Mutex<HashMap<TokenDigest, AccessClaims>>>,
    entries_per_shard: usize,
}

impl VerifiedTokens {
    /// `None` for a capacity of 0: no cache.
    pub(crate) fn with_capacity(entries: usize) -> Option<Self> {
        (entries > 0).then(|| Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            entries_per_shard: entries.div_ceil(SHARDS),
        })
    }

    pub(crate) fn digest(token: &str) -> TokenDigest {
        Sha256::digest(token.as_bytes()).into()
    }

    fn shard(&self, digest: &TokenDigest) -> MutexGuard<'_, HashMap<TokenDigest, AccessClaims>> {
        // A panic while holding the lock leaves verified claims behind, still true.
        self.shards[usize::from(digest[0]) % SHARDS].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The claims of a token verified before and not expired yet.
    pub(crate) fn get(&self, digest: &TokenDigest, now: OffsetDateTime) -> Option<AccessClaims> {
        let mut shard = self.shard(digest);
        match shard.get(digest) {
            Some(claims) if now < claims.expires_at => Some(claims.clone()),
            Some(_) => {
                shard.remove(digest);
                None
            }
            None => None,
        }
    }

    /// Remembers the claims of a token that was just verified in full. A full shard first
    /// drops its expired entries, then, if that was not enough, all of them: the cost is one
    /// more signature check for each token that comes back.
    pub(crate) fn insert(&self, digest: TokenDigest, claims: &AccessClaims, now: OffsetDateTime) {
        if now >= claims.expires_at {
            return;
        }
        let mut shard = self.shard(&digest);
        if shard.len() >= self.entries_per_shard {
            shard.retain(|_, cached| now < cached.expires_at);
            if shard.len() >= self.entries_per_shard {
                shard.clear();
            }
        }
        shard.insert(digest, claims.clone());
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().map_or(0, |shard| shard.len())).sum()
    }
}
