//! flexauth's rules inside another service: `flexauth-domain` with the in-memory store, the
//! JWT and the argon2 adapters, served by axum instead of flexauth's own actix-web server.
//!
//! `cargo run -p flexauth-example-embedded` starts the service on a free port of 127.0.0.1 and
//! walks through sign-up, confirmation, login, a protected call and a refresh over HTTP, as a
//! client would, then exits (status 1 if a step answers otherwise). With `--serve ADDRESS` it
//! only serves, until Ctrl-C.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flexauth_domain::account::{
    AccountService, AccountSettings, EmailAddress, NewPassword, Password, SignupError, VerifyEmailError,
};
use flexauth_domain::limits::LimitSettings;
use flexauth_domain::mail::{DeliveryService, DeliverySettings, Letters, MailTransport, OutgoingEmail, SendError};
use flexauth_domain::mfa::{MfaService, MfaSettings};
use flexauth_domain::secret::LinkToken;
use flexauth_domain::session::{
    AuthenticateError, ClientInfo, LoginError, RefreshError, SessionService, SessionSettings, TokenPair,
};
use flexauth_domain::system::{Clock, SecureRandom};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

/// The operating system's CSPRNG. The port demands a source that never returns weak bytes, so
/// one that fails stops the process.
struct OsRandom;

impl SecureRandom for OsRandom {
    #[allow(clippy::expect_used)]
    fn fill(&self, buffer: &mut [u8]) {
        getrandom::getrandom(buffer).expect("the operating system's random source");
    }
}

/// The example's mail transport: it keeps what it is asked to send, where the walk-through
/// reads the verification link. A real service plugs in `flexauth-mail` or its own.
#[derive(Default)]
struct Inbox(Mutex<Vec<OutgoingEmail>>);

impl Inbox {
    fn last_link_token(&self) -> Option<String> {
        let mails = self.0.lock().ok()?;
        let body = mails.last()?.text_body().to_owned();
        body.split("token=").nth(1).and_then(|rest| rest.split_whitespace().next()).map(str::to_owned)
    }
}

#[async_trait::async_trait]
impl MailTransport for Inbox {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
        self.0.lock().map_err(|_| SendError::Transient("the inbox lock is poisoned".into()))?.push(email.clone());
        Ok(())
    }
}

/// What the handlers reach.
#[derive(Clone)]
struct App {
    accounts: AccountService,
    sessions: SessionService,
    delivery: DeliveryService,
    inbox: Arc<Inbox>,
}

/// An answer with a status and a stable code, built from a domain error in one match each.
struct Failure(StatusCode, &'static str);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": { "code": self.1 } }))).into_response()
    }
}

impl From<SignupError> for Failure {
    fn from(error: SignupError) -> Self {
        match error {
            SignupError::Throttled(_) => Self(StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            SignupError::Overloaded => Self(StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            SignupError::Unexpected(_) => Self(StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

impl From<VerifyEmailError> for Failure {
    fn from(error: VerifyEmailError) -> Self {
        match error {
            VerifyEmailError::InvalidToken => Self(StatusCode::BAD_REQUEST, "invalid_verification_token"),
            VerifyEmailError::Expired => Self(StatusCode::BAD_REQUEST, "verification_token_expired"),
            VerifyEmailError::PasswordRequired => Self(StatusCode::BAD_REQUEST, "password_required"),
            VerifyEmailError::Overloaded => Self(StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            VerifyEmailError::Unexpected(_) => Self(StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

impl From<LoginError> for Failure {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::InvalidCredentials => Self(StatusCode::UNAUTHORIZED, "invalid_credentials"),
            LoginError::EmailNotVerified => Self(StatusCode::FORBIDDEN, "email_not_verified"),
            LoginError::AccountDisabled => Self(StatusCode::FORBIDDEN, "account_disabled"),
            // This example enrols no second factor, so a login never needs one.
            LoginError::SecondFactorRequired(_) => Self(StatusCode::FORBIDDEN, "mfa_required"),
            LoginError::Throttled(_) => Self(StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            LoginError::Overloaded => Self(StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            LoginError::Unexpected(_) => Self(StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

impl From<RefreshError> for Failure {
    fn from(error: RefreshError) -> Self {
        match error {
            RefreshError::InvalidToken(_) | RefreshError::UnknownSession => {
                Self(StatusCode::UNAUTHORIZED, "invalid_refresh_token")
            }
            RefreshError::Expired => Self(StatusCode::UNAUTHORIZED, "refresh_token_expired"),
            RefreshError::Revoked => Self(StatusCode::UNAUTHORIZED, "session_revoked"),
            RefreshError::Reused { .. } => Self(StatusCode::UNAUTHORIZED, "refresh_token_reused"),
            RefreshError::Throttled(_) => Self(StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            RefreshError::Unexpected(_) => Self(StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

impl From<AuthenticateError> for Failure {
    fn from(error: AuthenticateError) -> Self {
        match error {
            AuthenticateError::Unexpected(_) => Self(StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            _ => Self(StatusCode::UNAUTHORIZED, "invalid_token"),
        }
    }
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

fn pair(pair: TokenPair) -> Json<Value> {
    Json(
        json!({ "access_token": pair.access_token, "refresh_token": pair.refresh_token, "expires_in": pair.expires_in }),
    )
}

async fn signup(State(app): State<App>, Json(body): Json<Credentials>) -> Result<StatusCode, Failure> {
    let email = EmailAddress::parse(&body.email).map_err(|_| Failure(StatusCode::BAD_REQUEST, "invalid_email"))?;
    let password =
        NewPassword::parse(body.password).map_err(|_| Failure(StatusCode::BAD_REQUEST, "invalid_password"))?;
    app.accounts.signup(email, &password, None).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn verify(State(app): State<App>, Json(body): Json<TokenBody>) -> Result<StatusCode, Failure> {
    let token =
        LinkToken::parse(&body.token).map_err(|_| Failure(StatusCode::BAD_REQUEST, "invalid_verification_token"))?;
    app.accounts.confirm_email(&token, None).await?;
    Ok(StatusCode::OK)
}

async fn login(State(app): State<App>, Json(body): Json<Credentials>) -> Result<Json<Value>, Failure> {
    let email =
        EmailAddress::parse(&body.email).map_err(|_| Failure(StatusCode::UNAUTHORIZED, "invalid_credentials"))?;
    let password =
        Password::parse(body.password).map_err(|_| Failure(StatusCode::UNAUTHORIZED, "invalid_credentials"))?;
    Ok(pair(app.sessions.login(&email, &password, ClientInfo::default()).await?))
}

async fn refresh(State(app): State<App>, Json(body): Json<RefreshBody>) -> Result<Json<Value>, Failure> {
    Ok(pair(app.sessions.refresh(&body.refresh_token, None).await?))
}

/// A protected resource: the account behind the bearer access token.
async fn me(State(app): State<App>, headers: HeaderMap) -> Result<Json<Value>, Failure> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(Failure(StatusCode::UNAUTHORIZED, "missing_token"))?;
    let caller = app.sessions.authenticate(token).await?;
    Ok(Json(json!({ "account_id": caller.account_id.to_string() })))
}

/// The services on flexauth's adapters, and the background task that handles account
/// requests and delivers mail (every 100 ms here; flexauth's server polls every second).
fn build() -> Result<App, Box<dyn std::error::Error>> {
    let public_url = "http://127.0.0.1".to_owned();
    let store = Arc::new(flexauth_memory::MemoryStore::new());
    let hasher = Arc::new(flexauth_argon2::Argon2Hasher::new(flexauth_argon2::Argon2Settings::default())?);
    let key = flexauth_jwt::SigningKeyPair::from_pem(&flexauth_jwt::SigningKeyPair::generate_pem()?)?;
    let settings = flexauth_jwt::JwtSettings {
        issuer: public_url.clone(),
        audience: "embedded-example".into(),
        verified_cache_entries: 1024,
    };
    let tokens = Arc::new(flexauth_jwt::JwtTokens::new(&key, &[], settings));
    let (clock, random): (Arc<dyn Clock>, Arc<dyn SecureRandom>) = (Arc::new(SystemClock), Arc::new(OsRandom));
    let inbox = Arc::new(Inbox::default());
    // The emails in the words of flexauth-mail's built-in templates.
    let letters = Letters::new(&public_url, Arc::new(flexauth_mail::EmailTemplates::builtin()?));
    let account_settings = AccountSettings {
        verification_ttl: time::Duration::hours(24),
        password_reset_ttl: time::Duration::hours(1),
        limits: LimitSettings::default(),
    };
    let accounts = AccountService::new(
        store.clone(),
        store.clone(),
        store.clone(),
        hasher.clone(),
        store.clone(),
        clock.clone(),
        random.clone(),
        letters.clone(),
        account_settings,
    );
    let session_settings = SessionSettings::default();
    // Second factors: TOTP codes by flexauth-totp, secrets stored as they are (no
    // key-encryption key in this example), passkeys by flexauth-webauthn.
    let mfa = MfaService::new(
        store.clone(),
        store.clone(),
        Arc::new(flexauth_totp::Totp),
        Arc::new(flexauth_jwt::SecretSealing::new(None)),
        // This example serves no passkey ceremony; the relying party is a placeholder a page
        // on localhost:3000 would use.
        Some(Arc::new(flexauth_webauthn::WebauthnPasskeys::new(
            "localhost",
            "embedded example",
            &[url::Url::parse("http://localhost:3000")?],
        )?)),
        clock.clone(),
        random.clone(),
        letters.clone(),
        MfaSettings::default(),
    );
    let sessions = SessionService::new(
        store.clone(),
        store.clone(),
        hasher,
        tokens,
        store.clone(),
        store.clone(),
        store.clone(),
        clock.clone(),
        random.clone(),
        mfa,
        letters,
        session_settings,
    );
    let delivery = DeliveryService::new(store, inbox.clone(), clock, random, DeliverySettings::default());
    Ok(App { accounts, sessions, delivery, inbox })
}

fn spawn_worker(app: App) {
    tokio::spawn(async move {
        loop {
            if let Err(error) = app.accounts.handle_due_requests().await {
                eprintln!("account requests: {error}");
            }
            if let Err(error) = app.delivery.deliver_due().await {
                eprintln!("delivery: {error}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
}

fn router(app: App) -> Router {
    Router::new()
        .route("/signup", post(signup))
        .route("/verify", post(verify))
        .route("/login", post(login))
        .route("/refresh", post(refresh))
        .route("/me", get(me))
        .with_state(app)
}

/// One HTTP/1.1 request to `address`, as any client sends it; the status and the JSON body.
async fn call(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> std::io::Result<(u16, Value)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let body = body.map(|body| body.to_string()).unwrap_or_default();
    let authorization = bearer.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: \
            application/json\r\n{authorization}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let status =
        answer.split_whitespace().nth(1).and_then(|code| code.parse().ok()).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "the answer has no HTTP status line")
        })?;
    let json =
        answer.split_once("\r\n\r\n").and_then(|(_, body)| serde_json::from_str(body).ok()).unwrap_or(Value::Null);
    Ok((status, json))
}

fn expect(step: &str, (status, body): (u16, Value), wanted: u16) -> Result<Value, String> {
    println!("{step}: {status}");
    if status == wanted {
        Ok(body)
    } else {
        Err(format!("{step} answered {status} {body}, not {wanted}"))
    }
}

/// Sign-up, confirmation, login, a protected call and a refresh, over HTTP.
async fn walk_through(address: std::net::SocketAddr, inbox: &Inbox) -> Result<(), Box<dyn std::error::Error>> {
    let credentials = json!({ "email": "ann@example.com", "password": "correct horse battery staple" });
    expect("sign-up", call(address, "POST", "/signup", None, Some(credentials.clone())).await?, 202)?;
    // The worker creates the account and sends the link a moment later.
    let mut token = None;
    for _ in 0..100 {
        token = inbox.last_link_token();
        if token.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let token = token.ok_or("no verification email arrived")?;
    expect("login before confirming", call(address, "POST", "/login", None, Some(credentials.clone())).await?, 403)?;
    expect("confirmation", call(address, "POST", "/verify", None, Some(json!({ "token": token }))).await?, 200)?;
    let tokens = expect("login", call(address, "POST", "/login", None, Some(credentials)).await?, 200)?;
    let access = tokens["access_token"].as_str().ok_or("no access token")?;
    let me = expect("protected call", call(address, "GET", "/me", Some(access), None).await?, 200)?;
    expect("protected call without a token", call(address, "GET", "/me", None, None).await?, 401)?;
    let refresh_token = tokens["refresh_token"].as_str().ok_or("no refresh token")?;
    let refreshed = expect(
        "refresh",
        call(address, "POST", "/refresh", None, Some(json!({ "refresh_token": refresh_token }))).await?,
        200,
    )?;
    let next = refreshed["access_token"].as_str().ok_or("no access token after the refresh")?;
    let again =
        expect("protected call with the refreshed token", call(address, "GET", "/me", Some(next), None).await?, 200)?;
    if again["account_id"] != me["account_id"] {
        return Err("the refreshed token is another account's".into());
    }
    println!("account {} signed up, confirmed, logged in, called, refreshed", me["account_id"]);
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let serve_at = std::env::args().skip_while(|arg| arg != "--serve").nth(1);
    let outcome = async {
        let app = build()?;
        spawn_worker(app.clone());
        let listener = tokio::net::TcpListener::bind(serve_at.as_deref().unwrap_or("127.0.0.1:0")).await?;
        let address = listener.local_addr()?;
        let inbox = app.inbox.clone();
        let server = tokio::spawn(async move { axum::serve(listener, router(app)).await });
        if serve_at.is_some() {
            println!("serving on http://{address}");
            server.await??;
            return Ok(());
        }
        walk_through(address, &inbox).await
    };
    match outcome.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flexauth-example-embedded: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
