use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{ClientName, ClientSecret, IntrospectionClient, IntrospectionClientId, IntrospectionClientRepository};
use crate::bearer::{BearerAuthenticator, CheckError, Checked};
use crate::session::AuthenticateError;
use crate::system::{random_uuid, Clock, SecureRandom};
use crate::InfraError;

/// How old the instance's copy of the client list may be: a client deleted on another
/// instance is refused within this, and the list is read at most once per this, whatever the
/// traffic.
pub const CLIENTS_FRESH_FOR: Duration = Duration::from_secs(1);

/// Why an introspection is not answered.
#[derive(Debug, thiserror::Error)]
pub enum IntrospectError {
    /// The client credentials are missing, malformed, unknown or wrong (RFC 6749
    /// `invalid_client`).
    #[error("the client credentials are not valid")]
    InvalidClient,
    /// Storage could not answer, so neither could the introspection.
    #[error("introspection failed")]
    Unexpected(#[from] InfraError),
}

/// The instance's copy of the client list, and whether a read of it is under way.
#[derive(Default)]
struct ClientList {
    read: Option<(Instant, Arc<HashMap<IntrospectionClientId, IntrospectionClient>>)>,
    reading: bool,
}

/// The operator's register of resource servers: `flexauth clients create`, `list`, `delete`.
#[derive(Clone)]
pub struct ClientRegistry {
    clients: Arc<dyn IntrospectionClientRepository>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn SecureRandom>,
}

impl std::fmt::Debug for ClientRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRegistry").finish_non_exhaustive()
    }
}

impl ClientRegistry {
    /// A register over its storage.
    pub fn new(
        clients: Arc<dyn IntrospectionClientRepository>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn SecureRandom>,
    ) -> Self {
        Self { clients, clock, random }
    }

    /// Registers a resource server; returns it and its secret, which exists nowhere else.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    pub async fn create(&self, name: ClientName) -> Result<(IntrospectionClient, ClientSecret), InfraError> {
        let secret = ClientSecret::generate(self.random.as_ref());
        let client = IntrospectionClient {
            id: IntrospectionClientId::from_uuid(random_uuid(self.random.as_ref())),
            name,
            secret_hash: secret.hash(),
            created_at: self.clock.now(),
        };
        self.clients.create(&client).await?;
        Ok((client, secret))
    }

    /// Every registered resource server, oldest first.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    pub async fn list(&self) -> Result<Vec<IntrospectionClient>, InfraError> {
        self.clients.list().await
    }

    /// Deletes a resource server; every instance refuses it within [`CLIENTS_FRESH_FOR`].
    /// Returns whether it existed.
    ///
    /// # Errors
    /// [`InfraError`] when the store fails.
    pub async fn delete(&self, id: IntrospectionClientId) -> Result<bool, InfraError> {
        self.clients.delete(id).await
    }
}

/// Answering the introspections of registered resource servers.
#[derive(Clone)]
pub struct IntrospectionService {
    clients: Arc<dyn IntrospectionClientRepository>,
    bearer: BearerAuthenticator,
    fresh_for: Duration,
    list: Arc<Mutex<ClientList>>,
}

impl std::fmt::Debug for IntrospectionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionService").field("fresh_for", &self.fresh_for).finish_non_exhaustive()
    }
}

impl IntrospectionService {
    /// A service over its ports; the client list is kept for [`CLIENTS_FRESH_FOR`].
    pub fn new(clients: Arc<dyn IntrospectionClientRepository>, bearer: BearerAuthenticator) -> Self {
        Self::with_freshness(clients, bearer, CLIENTS_FRESH_FOR)
    }

    /// As [`new`](Self::new), keeping the client list for `fresh_for` (zero reads it on every
    /// introspection).
    pub fn with_freshness(
        clients: Arc<dyn IntrospectionClientRepository>,
        bearer: BearerAuthenticator,
        fresh_for: Duration,
    ) -> Self {
        Self { clients, bearer, fresh_for, list: Arc::default() }
    }

    /// The resource server whose credentials these are.
    ///
    /// # Errors
    /// [`IntrospectError::InvalidClient`] for a malformed, unknown or wrong pair;
    /// [`IntrospectError::Unexpected`] when the list was never read and cannot be.
    pub async fn authenticate_client(&self, id: &str, secret: &str) -> Result<IntrospectionClient, IntrospectError> {
        let id = IntrospectionClientId::parse(id).ok_or(IntrospectError::InvalidClient)?;
        let presented = ClientSecret::parse(secret).map_err(|_| IntrospectError::InvalidClient)?.hash();
        let clients = self.clients().await?;
        let client = clients.get(&id).ok_or(IntrospectError::InvalidClient)?;
        // Digests of random secrets: comparing in constant time costs nothing and leaks
        // nothing either way.
        let difference =
            client.secret_hash.as_bytes().iter().zip(presented.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference != 0 {
            return Err(IntrospectError::InvalidClient);
        }
        Ok(client.clone())
    }

    /// What a resource server learns of `token`: the credential, when it is an active access
    /// token or API key; `None` for anything else (a refresh token, an expired, revoked,
    /// forged or unknown one). Uses the same caches and revocation memory as every bearer
    /// check.
    ///
    /// # Errors
    /// [`IntrospectError::Unexpected`] when storage could not say whether it is active.
    pub async fn introspect(&self, token: &str) -> Result<Option<Checked>, IntrospectError> {
        match self.bearer.check(token, &BTreeSet::new()).await {
            Ok(checked) => Ok(Some(checked)),
            Err(CheckError::Authenticate(AuthenticateError::Unexpected(cause))) => Err(cause.into()),
            Err(_) => Ok(None),
        }
    }

    /// The client list, read again when it is older than `fresh_for` (by one caller at a time;
    /// the others use the copy in hand). A read that fails keeps the old copy.
    async fn clients(&self) -> Result<Arc<HashMap<IntrospectionClientId, IntrospectionClient>>, InfraError> {
        let stale = {
            let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
            match &list.read {
                Some((at, clients)) if at.elapsed() < self.fresh_for || list.reading => return Ok(clients.clone()),
                stale => {
                    let stale = stale.as_ref().map(|(_, clients)| clients.clone());
                    list.reading = true;
                    stale
                }
            }
        };
        // Clears `reading` however this ends, a dropped request included: else every later
        // caller would keep the old copy for ever.
        let reading = Reading(&self.list);
        let started = Instant::now();
        let outcome = self.clients.list().await;
        drop(reading);
        match outcome {
            Ok(read) => {
                let clients = Arc::new(read.into_iter().map(|client| (client.id, client)).collect::<HashMap<_, _>>());
                self.list.lock().unwrap_or_else(PoisonError::into_inner).read = Some((started, clients.clone()));
                Ok(clients)
            }
            Err(cause) => stale.ok_or(cause),
        }
    }
}

/// A read of the client list under way.
struct Reading<'a>(&'a Mutex<ClientList>);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).reading = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::MockAccountRepository;
    use crate::api_key::{ApiKeyService, ApiKeySettings, MockApiKeyRepository};
    use crate::introspection::MockIntrospectionClientRepository;
    use crate::secret::TokenHash;
    use crate::session::{MockTokenSigner, SessionService, SessionSettings, TokenRejection};
    use crate::system::{MockClock, MockSecureRandom};
    use time::macros::datetime;

    const ID: &str = "6f1c1e52-8d0a-4f3e-9a57-2b1f0d8c4e11";

    fn clock() -> Arc<MockClock> {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(datetime!(2026-12-06 12:00 UTC));
        Arc::new(clock)
    }

    /// A random source that gives `byte` and nothing else.
    fn filled(byte: u8) -> Arc<MockSecureRandom> {
        let mut random = MockSecureRandom::new();
        random.expect_fill().returning(move |buffer| buffer.fill(byte));
        Arc::new(random)
    }

    fn random() -> Arc<MockSecureRandom> {
        filled(7)
    }

    /// A bearer check whose token signer refuses every token as `rejection`, and whose key
    /// storage answers with `keys`.
    fn bearer(rejection: TokenRejection, keys: MockApiKeyRepository) -> BearerAuthenticator {
        let mut signer = MockTokenSigner::new();
        signer.expect_verify_access().returning(move |_| Err(rejection));
        let sessions = SessionService::new(
            Arc::new(MockAccountRepository::new()),
            Arc::new(crate::session::MockSessionRepository::new()),
            Arc::new(crate::account::MockPasswordHasher::new()),
            Arc::new(signer),
            Arc::new(crate::session::MockEndedSessions::new()),
            Arc::new(crate::limits::unlimited()),
            Arc::new(crate::audit::MockAuditLog::new()),
            clock(),
            random(),
            crate::mfa::test_mfa(false),
            crate::mail::Letters::new("https://auth.example.com", Arc::new(crate::mail::FactSheetWriter)),
            SessionSettings::default(),
        );
        let api_keys = ApiKeyService::new(
            Arc::new(keys),
            Arc::new(MockAccountRepository::new()),
            clock(),
            random(),
            crate::mail::Letters::new("https://auth.example.com", Arc::new(crate::mail::FactSheetWriter)),
            ApiKeySettings::default(),
        );
        BearerAuthenticator::new(sessions, api_keys)
    }

    fn registered(secret: &ClientSecret) -> IntrospectionClient {
        IntrospectionClient {
            id: IntrospectionClientId::parse(ID).unwrap(),
            name: ClientName::parse("billing API").unwrap(),
            secret_hash: secret.hash(),
            created_at: datetime!(2026-12-01 00:00 UTC),
        }
    }

    fn service(clients: MockIntrospectionClientRepository, fresh_for: Duration) -> IntrospectionService {
        let bearer = bearer(TokenRejection::Malformed, MockApiKeyRepository::new());
        IntrospectionService::with_freshness(Arc::new(clients), bearer, fresh_for)
    }

    #[tokio::test]
    async fn a_registered_client_is_stored_with_the_digest_of_the_secret_it_is_given_once() {
        let mut clients = MockIntrospectionClientRepository::new();
        clients.expect_create().withf(|client| client.name.as_str() == "billing API").times(1).returning(|_| Ok(()));
        let registry = ClientRegistry::new(Arc::new(clients), clock(), random());
        let (client, secret) = registry.create(ClientName::parse("  billing API ").unwrap()).await.unwrap();
        assert_eq!(client.secret_hash, secret.hash());
        assert_eq!(client.secret_hash, ClientSecret::parse(&secret.expose()).unwrap().hash());
    }

    #[tokio::test]
    async fn only_the_registered_pair_authenticates_and_the_list_is_read_once_per_freshness() {
        let secret = ClientSecret::generate(filled(3).as_ref());
        let client = registered(&secret);
        let mut clients = MockIntrospectionClientRepository::new();
        let listed = client.clone();
        clients.expect_list().times(1).returning(move || Ok(vec![listed.clone()]));
        let service = service(clients, Duration::from_secs(60));

        assert_eq!(service.authenticate_client(ID, &secret.expose()).await.unwrap(), client);
        let other = ClientSecret::generate(filled(4).as_ref()).expose();
        for (id, secret) in [
            (ID, other.as_str()),
            ("7f1c1e52-8d0a-4f3e-9a57-2b1f0d8c4e11", secret.expose().as_str()),
            ("not-a-uuid", secret.expose().as_str()),
            (ID, "fo_live_not_a_client_secret"),
            (ID, ""),
        ] {
            let refused = service.authenticate_client(id, secret).await;
            assert!(matches!(refused, Err(IntrospectError::InvalidClient)), "{id} {secret}");
        }
    }

    #[tokio::test]
    async fn a_deleted_client_is_refused_once_the_list_is_read_again() {
        let secret = ClientSecret::generate(filled(3).as_ref());
        let client = registered(&secret);
        let mut clients = MockIntrospectionClientRepository::new();
        let mut reads = mockall::Sequence::new();
        clients.expect_list().times(1).in_sequence(&mut reads).returning(move || Ok(vec![client.clone()]));
        clients.expect_list().times(1).in_sequence(&mut reads).returning(|| Ok(Vec::new()));
        let service = service(clients, Duration::ZERO);
        assert!(service.authenticate_client(ID, &secret.expose()).await.is_ok());
        assert!(matches!(service.authenticate_client(ID, &secret.expose()).await, Err(IntrospectError::InvalidClient)));
    }

    #[tokio::test]
    async fn a_failed_read_keeps_the_list_in_hand_and_without_one_says_so() {
        let secret = ClientSecret::generate(filled(3).as_ref());
        let client = registered(&secret);
        let mut clients = MockIntrospectionClientRepository::new();
        let mut reads = mockall::Sequence::new();
        clients.expect_list().times(1).in_sequence(&mut reads).returning(|| Err(InfraError::unavailable("down")));
        clients.expect_list().times(1).in_sequence(&mut reads).returning(move || Ok(vec![client.clone()]));
        clients.expect_list().times(1).in_sequence(&mut reads).returning(|| Err(InfraError::unavailable("down")));
        let service = service(clients, Duration::ZERO);
        assert!(matches!(service.authenticate_client(ID, &secret.expose()).await, Err(IntrospectError::Unexpected(_))));
        assert!(service.authenticate_client(ID, &secret.expose()).await.is_ok());
        assert!(service.authenticate_client(ID, &secret.expose()).await.is_ok(), "the copy in hand stands");
    }

    #[tokio::test]
    async fn anything_but_an_active_credential_is_inactive_and_a_storage_failure_is_no_answer() {
        let introspect = |rejection, keys| {
            IntrospectionService::new(Arc::new(MockIntrospectionClientRepository::new()), bearer(rejection, keys))
        };
        // A refresh token is a JWT of the wrong type; a forged one fails its signature.
        for rejection in [TokenRejection::WrongType, TokenRejection::BadSignature, TokenRejection::Malformed] {
            let service = introspect(rejection, MockApiKeyRepository::new());
            assert!(matches!(service.introspect("eyJ.x.y").await, Ok(None)), "{rejection:?}");
        }
        let key = crate::api_key::ApiKeySecret::generate(random().as_ref());
        let mut unknown = MockApiKeyRepository::new();
        unknown.expect_find_active_by_hash().returning(|_: &TokenHash| Ok(None));
        assert!(matches!(introspect(TokenRejection::Malformed, unknown).introspect(key.expose()).await, Ok(None)));
        let mut down = MockApiKeyRepository::new();
        down.expect_find_active_by_hash().returning(|_: &TokenHash| Err(InfraError::unavailable("down")));
        let outcome = introspect(TokenRejection::Malformed, down).introspect(key.expose()).await;
        assert!(matches!(outcome, Err(IntrospectError::Unexpected(_))));
    }
}
