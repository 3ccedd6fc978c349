//! flexauth's public keys, as its JWKS publishes them, kept as its `Cache-Control` allows.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::DecodingKey;
use reqwest::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;

use crate::Refusal;

/// How long a JWKS without a usable `max-age` is kept; flexauth always sends one.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// The longest `max-age` believed.
const LONGEST_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// After a failed fetch, the keys in hand serve this long before the next try.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// The keys in hand and what the last answer said of them.
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    fresh_until: Instant,
    etag: Option<String>,
    /// When flexauth last answered for them (a `200` or a `304`).
    answered_at: Instant,
}

/// The JWKS of one flexauth.
pub(crate) struct Jwks {
    url: String,
    http: reqwest::Client,
    unknown_kid_refetch_after: Duration,
    held: Mutex<Option<KeySet>>,
    /// When a fetch was last made for a `kid` the keys in hand lacked.
    last_unknown_kid_fetch: Mutex<Option<Instant>>,
    /// One fetch at a time; the others wait for its result.
    fetching: tokio::sync::Mutex<()>,
}

impl Jwks {
    pub(crate) fn new(url: String, http: reqwest::Client, unknown_kid_refetch_after: Duration) -> Self {
        Self {
            url,
            http,
            unknown_kid_refetch_after,
            held: Mutex::new(None),
            last_unknown_kid_fetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The key `kid` names: from the keys in hand while they are fresh, else after fetching
    /// (revalidating with the `ETag`); a `kid` they lack makes one fetch, at most once per
    /// `unknown_kid_refetch_after`.
    pub(crate) async fn key(&self, kid: &str) -> Result<DecodingKey, Refusal> {
        let (found, fresh) = self.lookup(kid);
        if let (Some(key), true) = (&found, fresh) {
            return Ok(key.clone());
        }
        // Stale keys are fetched again; fresh ones lacking the kid only now and then.
        if !fresh || self.may_fetch_for_unknown_kid() {
            self.fetch().await?;
        }
        self.lookup(kid).0.ok_or_else(|| Refusal::Invalid("the access token was signed by an unknown key".into()))
    }

    fn lookup(&self, kid: &str) -> (Option<DecodingKey>, bool) {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_ref() {
            Some(set) => (set.keys.get(kid).cloned(), Instant::now() < set.fresh_until),
            None => (None, false),
        }
    }

    fn may_fetch_for_unknown_kid(&self) -> bool {
        let mut last = self.last_unknown_kid_fetch.lock().unwrap_or_else(PoisonError::into_inner);
        match *last {
            Some(at) if at.elapsed() < self.unknown_kid_refetch_after => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }

    /// Fetches the JWKS, unless another caller did while this one waited. A failure keeps the
    /// keys in hand (for [`RETRY_AFTER_FAILURE`]) and refuses only when there are none.
    async fn fetch(&self) -> Result<(), Refusal> {
        let started = Instant::now();
        let _turn = self.fetching.lock().await;
        let etag = {
            let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            if held.as_ref().is_some_and(|set| set.answered_at >= started) {
                // Another caller fetched while this one waited for its turn.
                return Ok(());
            }
            held.as_ref().and_then(|set| set.etag.clone())
        };
        match self.request(etag.as_deref()).await {
            Ok(Answer::NotModified { max_age }) => {
                if let Some(set) = self.held.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
                    set.answered_at = Instant::now();
                    set.fresh_until = set.answered_at + max_age;
                }
                Ok(())
            }
            Ok(Answer::Keys(set)) => {
                *self.held.lock().unwrap_or_else(PoisonError::into_inner) = Some(set);
                Ok(())
            }
            Err(cause) => {
                tracing::warn!(url = %self.url, error = %cause, "cannot fetch flexauth's JWKS; the keys in hand serve meanwhile");
                let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
                match held.as_mut() {
                    Some(set) => {
                        set.fresh_until = Instant::now() + RETRY_AFTER_FAILURE;
                        Ok(())
                    }
                    None => Err(Refusal::Unavailable),
                }
            }
        }
    }

    async fn request(&self, etag: Option<&str>) -> Result<Answer, String> {
        let mut request = self.http.get(&self.url);
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let response = request.send().await.map_err(|error| error.to_string())?;
        let max_age = max_age(response.headers().get(CACHE_CONTROL).and_then(|value| value.to_str().ok()));
        if response.status() == StatusCode::NOT_MODIFIED && etag.is_some() {
            return Ok(Answer::NotModified { max_age });
        }
        if !response.status().is_success() {
            return Err(format!("the JWKS answered {}", response.status()));
        }
        let etag = response.headers().get(ETAG).and_then(|value| value.to_str().ok()).map(str::to_owned);
        let set: JwkSet = response.json().await.map_err(|error| format!("the JWKS is not a JWK set: {error}"))?;
        // Only Ed25519 signing keys with an id: flexauth publishes nothing else, and a verifier
        // that took any key of the set could be handed one of another kind.
        let keys = set
            .keys
            .iter()
            .filter(|jwk| matches!(&jwk.algorithm, jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(okp) if okp.curve == jsonwebtoken::jwk::EllipticCurve::Ed25519))
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
            .collect();
        let answered_at = Instant::now();
        Ok(Answer::Keys(KeySet { keys, fresh_until: answered_at + max_age, etag, answered_at }))
    }
}

enum Answer {
    NotModified { max_age: Duration },
    Keys(KeySet),
}

/// The `max-age` of a `Cache-Control` value; the default when there is none.
fn max_age(cache_control: Option<&str>) -> Duration {
    cache_control
        .into_iter()
        .flat_map(|value| value.split(','))
        .filter_map(|directive| directive.trim().strip_prefix("max-age="))
        .find_map(|seconds| seconds.trim().parse::<u64>().ok())
        .map_or(DEFAULT_MAX_AGE, |seconds| Duration::from_secs(seconds).min(LONGEST_MAX_AGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_max_age_is_read_from_cache_control_and_bounded() {
        assert_eq!(max_age(Some("public, max-age=300")), Duration::from_secs(300));
        assert_eq!(max_age(Some("max-age=5")), Duration::from_secs(5));
        assert_eq!(max_age(Some("no-cache")), DEFAULT_MAX_AGE);
        assert_eq!(max_age(None), DEFAULT_MAX_AGE);
        assert_eq!(max_age(Some("max-age=99999999")), LONGEST_MAX_AGE);
    }
}
