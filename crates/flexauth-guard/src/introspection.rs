//! API keys (and, when asked, access tokens) checked with flexauth's introspection, each answer
//! kept a few seconds.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{Caller, ClientCredentials, Credential, Refusal, Scopes};

/// Answers kept at most; one more empties the cache.
const CAPACITY: usize = 10_000;

/// An answer as kept: when it was asked for, and the caller (`None`: not active).
type KeptAnswer = (Instant, Option<Caller>);

/// RFC 7662's answer, as far as the guard reads it.
#[derive(Deserialize)]
struct Answer {
    active: bool,
    sub: Option<String>,
    token_type: Option<String>,
    scope: Option<String>,
    sid: Option<String>,
    key_id: Option<String>,
}

pub(crate) struct Introspection {
    url: String,
    http: reqwest::Client,
    client: ClientCredentials,
    kept_for: Duration,
    /// Answers by the SHA-256 of the credential: the cache holds no secret.
    answers: Mutex<HashMap<[u8; 32], KeptAnswer>>,
}

impl Introspection {
    pub(crate) fn new(url: String, http: reqwest::Client, client: ClientCredentials, kept_for: Duration) -> Self {
        Self { url, http, client, kept_for, answers: Mutex::new(HashMap::new()) }
    }

    /// The caller `credential` is, as flexauth says (or said less than `kept_for` ago).
    pub(crate) async fn caller(&self, credential: &str) -> Result<Caller, Refusal> {
        let digest: [u8; 32] = Sha256::digest(credential.as_bytes()).into();
        let kept = self.answers.lock().unwrap_or_else(PoisonError::into_inner).get(&digest).cloned();
        let answer = match kept {
            Some((at, answer)) if at.elapsed() < self.kept_for => answer,
            _ => {
                let asked = Instant::now();
                let answer = self.ask(credential).await?;
                let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
                if answers.len() >= CAPACITY {
                    answers.clear();
                }
                answers.insert(digest, (asked, answer.clone()));
                answer
            }
        };
        answer.ok_or_else(|| Refusal::Invalid("the credential is not active".into()))
    }

    async fn ask(&self, credential: &str) -> Result<Option<Caller>, Refusal> {
        let response = self
            .http
            .post(&self.url)
            .basic_auth(&self.client.id, Some(&self.client.secret))
            .form(&[("token", credential)])
            .send()
            .await
            .map_err(|error| unavailable(&format!("introspection failed: {error}")))?;
        let status = response.status();
        if status.as_u16() == 401 {
            return Err(unavailable("flexauth refused the guard's client credentials (flexauth clients list)"));
        }
        if status.as_u16() == 400 {
            // A credential too long to be flexauth's.
            return Ok(None);
        }
        if !status.is_success() {
            return Err(unavailable(&format!("introspection answered {status}")));
        }
        let answer: Answer =
            response.json().await.map_err(|error| unavailable(&format!("introspection answer unreadable: {error}")))?;
        Ok(caller_of(answer))
    }
}

fn unavailable(cause: &str) -> Refusal {
    tracing::error!(cause, "cannot check a credential with flexauth");
    Refusal::Unavailable
}

fn caller_of(answer: Answer) -> Option<Caller> {
    if !answer.active {
        return None;
    }
    let credential = match answer.token_type.as_deref() {
        Some("access_token") => Credential::AccessToken { session_id: answer.sid? },
        Some("api_key") => Credential::ApiKey { key_id: answer.key_id? },
        _ => return None,
    };
    let scopes: BTreeSet<String> = answer.scope.unwrap_or_default().split_whitespace().map(str::to_owned).collect();
    Some(Caller { account_id: answer.sub?, credential, scopes: Scopes::Only(scopes) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: serde_json::Value) -> Option<Caller> {
        caller_of(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn only_an_active_credential_of_a_known_kind_is_a_caller() {
        let key = answer(serde_json::json!({
            "active": true, "sub": "a", "token_type": "api_key", "scope": "x y", "key_id": "k"
        }))
        .unwrap();
        assert_eq!(key.credential, Credential::ApiKey { key_id: "k".into() });
        assert!(key.has_scope("y") && !key.has_scope("z"));
        assert_eq!(answer(serde_json::json!({ "active": false })), None);
        assert_eq!(answer(serde_json::json!({ "active": true, "sub": "a", "token_type": "refresh_token" })), None);
        assert_eq!(answer(serde_json::json!({ "active": true, "token_type": "api_key", "key_id": "k" })), None);
    }
}
