//! flexauth's webhook adapter: posts each message as Standard Webhooks describes it
//! (standardwebhooks.com): the headers `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` (`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`, one per
//! signing secret, space-separated), and a JSON body `{"type","timestamp","data"}`.
//!
//! Only addresses the destination policy allows are connected to: the resolver checks every
//! address a name resolves to at delivery time (so a name that later resolves to an internal
//! address reaches nothing), an address in the URL is checked before the request, no proxy
//! from the environment is used, redirects are not followed, and at most a short excerpt of an
//! answer is read.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use flexauth_domain::webhook::{
    DestinationError, DestinationPolicy, QueuedMessage, SigningSecret, TransportOutcome, WebhookEvent, WebhookTransport,
};
use hmac::{Hmac, Mac as _};
use serde::Serialize;
use sha2::Sha256;
use time::OffsetDateTime;

/// How much of a receiver's answer is kept for operators.
const EXCERPT_BYTES: usize = 256;

/// The body of a message.
#[derive(Serialize)]
struct Body<'a> {
    r#type: &'static str,
    timestamp: String,
    data: Data<'a>,
}

/// What the event carries: identifiers, the address where the event is about it, and the
/// client; never a password, a token, a key or a link.
#[derive(Serialize)]
struct Data<'a> {
    account_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    factor_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
}

/// The JSON body of `event`: the same bytes for every attempt.
///
/// # Errors
/// When the event's time cannot be written (out of the RFC 3339 range).
pub fn body(event: &WebhookEvent) -> Result<String, String> {
    let timestamp = event
        .at
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|error| format!("the event time cannot be written: {error}"))?;
    let body = Body {
        r#type: event.event_type.as_str(),
        timestamp,
        data: Data {
            account_id: event.account_id.to_string(),
            email: event.email.as_ref().map(|email| email.as_str()),
            session_id: event.session_id.map(|id| id.to_string()),
            key_id: event.key_id.map(|id| id.to_string()),
            factor_id: event.factor_id.map(|id| id.to_string()),
            reason: event.reason.as_deref(),
            ip: event.client.ip.as_deref(),
            user_agent: event.client.user_agent.as_deref(),
        },
    };
    serde_json::to_string(&body).map_err(|error| format!("the body cannot be written: {error}"))
}

/// The `webhook-signature` header: `v1,<signature>` for each secret, space-separated.
///
/// # Errors
/// When a secret is not a `whsec_` secret.
pub fn signature(id: &str, timestamp: i64, body: &str, secrets: &[SigningSecret]) -> Result<String, String> {
    let mut signatures = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let key = secret.key().ok_or("a signing secret is not a whsec_ secret")?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|error| error.to_string())?;
        mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
        let signed = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        signatures.push(format!("v1,{signed}"));
    }
    Ok(signatures.join(" "))
}

/// Resolves names for the HTTP client, keeping only the addresses the policy allows.
struct CheckedResolver {
    policy: DestinationPolicy,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                found.iter().copied().filter(|address| policy.check_address(address.ip()).is_ok()).collect();
            match (allowed.is_empty(), found.first()) {
                (false, _) => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
                (true, Some(refused)) => Err(DestinationError::NotPublic(refused.ip()).into()),
                (true, None) => Err(DestinationError::Unresolvable(host).into()),
            }
        })
    }
}

/// Posts messages over HTTP(S).
#[derive(Debug, Clone)]
pub struct HttpWebhookTransport {
    client: reqwest::Client,
    policy: DestinationPolicy,
}

impl HttpWebhookTransport {
    /// A transport that gives each attempt `timeout` in all (connection, request and the read
    /// of the answer's excerpt).
    ///
    /// # Errors
    /// When the TLS backend cannot be set up.
    pub fn new(policy: DestinationPolicy, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .dns_resolver(Arc::new(CheckedResolver { policy }))
            .user_agent(concat!("flexauth-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("the webhook HTTP client cannot be set up: {error}"))?;
        Ok(Self { client, policy })
    }

    fn parse(&self, text: &str) -> Result<url::Url, DestinationError> {
        let url = url::Url::parse(text.trim()).map_err(|_| DestinationError::NotHttp)?;
        self.policy.check_scheme(url.scheme())?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DestinationError::Credentials);
        }
        match url.host() {
            None => Err(DestinationError::NotHttp),
            Some(url::Host::Ipv4(address)) => self.policy.check_address(IpAddr::V4(address)).map(|()| url),
            Some(url::Host::Ipv6(address)) => self.policy.check_address(IpAddr::V6(address)).map(|()| url),
            Some(url::Host::Domain(_)) => Ok(url),
        }
    }

    async fn send(
        &self,
        message: &QueuedMessage,
        secrets: &[SigningSecret],
        sent_at: OffsetDateTime,
    ) -> Result<TransportOutcome, String> {
        let url = self.parse(&message.url).map_err(|error| error.to_string())?;
        let body = body(&message.event)?;
        let id = message.event.id.to_string();
        let timestamp = sent_at.unix_timestamp();
        let signature = signature(&id, timestamp, &body, secrets)?;
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|error| describe(&error))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(TransportOutcome::Answered { status, excerpt: String::new() });
        }
        Ok(TransportOutcome::Answered { status, excerpt: excerpt(response).await })
    }
}

/// The start of an answer's body, as text, without reading the rest.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(EXCERPT_BYTES);
    String::from_utf8_lossy(&bytes).chars().filter(|c| !c.is_control()).collect()
}

/// What went wrong, without the URL (its query may hold the receiver's own secret) and with
/// the causes that say why (a refused address, a timeout, a TLS failure).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() { "timed out".to_owned() } else { String::new() };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    while let Some(cause) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.is_empty() {
        "the request failed".to_owned()
    } else {
        text
    }
}

#[async_trait]
impl WebhookTransport for HttpWebhookTransport {
    async fn post(
        &self,
        message: &QueuedMessage,
        secrets: &[SigningSecret],
        sent_at: OffsetDateTime,
    ) -> TransportOutcome {
        self.send(message, secrets, sent_at).await.unwrap_or_else(TransportOutcome::Failed)
    }

    async fn check_destination(&self, url: &str) -> Result<String, DestinationError> {
        let url = self.parse(url)?;
        if let Some(url::Host::Domain(host)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(443);
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
                .await
                .map_err(|error| DestinationError::Unresolvable(format!("{host}: {error}")))?
                .collect();
            if found.is_empty() {
                return Err(DestinationError::Unresolvable(host.to_owned()));
            }
            for address in found {
                self.policy.check_address(address.ip())?;
            }
        }
        Ok(url.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flexauth_domain::newtypes::{AccountId, ClientInfo, SessionId};
    use flexauth_domain::webhook::EventType;
    use time::macros::datetime;
    use uuid::Uuid;

    fn event() -> WebhookEvent {
        WebhookEvent::session_ended(
            Uuid::from_u128(1),
            AccountId::from_uuid(Uuid::from_u128(2)),
            SessionId::from_uuid(Uuid::from_u128(3)),
            flexauth_domain::newtypes::RevocationReason::Logout,
            datetime!(2026-12-06 12:00:00.25 UTC),
            ClientInfo::new(Some("agent"), Some("192.0.2.7".into())),
        )
    }

    #[test]
    fn the_body_carries_the_type_the_time_and_the_ids_and_nothing_unset() {
        let json: serde_json::Value = serde_json::from_str(&body(&event()).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "session.ended",
                "timestamp": "2026-12-06T12:00:00.25Z",
                "data": {
                    "account_id": "00000000-0000-0000-0000-000000000002",
                    "session_id": "00000000-0000-0000-0000-000000000003",
                    "reason": "logout",
                    "ip": "192.0.2.7",
                    "user_agent": "agent",
                }
            })
        );
        assert_eq!(event().event_type, EventType::SessionEnded);
    }

    #[test]
    fn the_official_library_verifies_each_of_the_signatures_made_during_a_rotation() {
        let (old, new) = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
        let secrets = [SigningSecret::from_storage(new.into()), SigningSecret::from_storage(old.into())];
        let body = body(&event()).unwrap();
        let timestamp = OffsetDateTime::now_utc().unix_timestamp();
        let header = signature("msg_1", timestamp, &body, &secrets).unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", "msg_1".parse().unwrap());
        headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        headers.insert("webhook-signature", header.parse().unwrap());
        for secret in [old, new] {
            standardwebhooks::Webhook::new(secret).unwrap().verify(body.as_bytes(), &headers).unwrap();
        }
        let stranger = standardwebhooks::Webhook::new("whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldCBhdCBhbGw=").unwrap();
        assert!(stranger.verify(body.as_bytes(), &headers).is_err());
    }

    #[tokio::test]
    async fn private_addresses_and_credentials_are_refused_unless_allowed() {
        let strict = HttpWebhookTransport::new(DestinationPolicy::default(), Duration::from_secs(1)).unwrap();
        for url in
            ["https://127.0.0.1/hook", "https://[::1]/hook", "https://169.254.169.254/latest", "https://localhost/hook"]
        {
            assert!(matches!(strict.check_destination(url).await, Err(DestinationError::NotPublic(_))), "{url}");
        }
        assert_eq!(strict.check_destination("http://93.184.215.14/hook").await, Err(DestinationError::PlainHttp));
        assert_eq!(
            strict.check_destination("https://user:pass@93.184.215.14/hook").await,
            Err(DestinationError::Credentials)
        );
        assert_eq!(strict.check_destination("ftp://93.184.215.14/").await, Err(DestinationError::NotHttp));
        let local =
            HttpWebhookTransport::new(DestinationPolicy { allow_private: true }, Duration::from_secs(1)).unwrap();
        assert_eq!(local.check_destination("http://127.0.0.1:9/hook").await.unwrap(), "http://127.0.0.1:9/hook");
    }
}
