//! The one place where failures become HTTP responses: every domain error is matched
//! explicitly to a status and a stable `code`.

use std::fmt::Write as _;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use flexauth_domain::account::{AccountLookupError, ChangePasswordError, EmailError, PasswordError, ResetPasswordError, SignupError, VerifyEmailError};
use flexauth_domain::api_key::{ApiKeyNameError, CreateApiKeyError, ListApiKeysError, RevokeApiKeyError};
use flexauth_domain::lifecycle::{EmailChangeError, EmailChangeLinkError, OwnerError};
use flexauth_domain::limits::{LimitDecision, RateLimited};
use flexauth_domain::principal::{ReauthenticationRequired, SessionRequired};
use flexauth_domain::session::{AuthenticateError, LiveSessionError, LoginError, ManageSessionsError, ReauthenticateError, RefreshError, TokenRejection};
use flexauth_domain::InfraError;
use serde_json::json;

use crate::request_id;

mod code;
pub use code::{ErrorCode, ErrorSpec};

/// An error answered to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON for this endpoint: {0}")]
    InvalidJson(String),
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("the request body is larger than 16 KiB")]
    PayloadTooLarge,
    #[error("{0}")]
    InvalidEmail(EmailError),
    #[error("{0}")]
    InvalidPassword(PasswordError),
    #[error("the token is malformed or unknown")]
    InvalidVerificationToken,
    #[error("the verification link has expired; request a new one")]
    VerificationTokenExpired,
    /// The confirmation must choose the password (a resent link, or several pending sign-ups).
    #[error("choose a password to confirm your email address with this link")]
    PasswordRequired,
    /// Creating an API key needs a recent authentication.
    #[error("re-enter your password at /v1/auth/reauthenticate, then try again")]
    ReauthenticationRequired,
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("verify your email address before logging in")]
    EmailNotVerified,
    #[error("this account is disabled; contact the operator of this service")]
    AccountDisabled,
    #[error("the account has this email address already")]
    EmailUnchanged,
    #[error("the link is not valid or was used already")]
    InvalidEmailChangeLink,
    #[error("the link has expired")]
    EmailChangeLinkExpired,
    /// The address moved or was taken since the link was sent.
    #[error("{0}")]
    EmailChangeConflict(&'static str),
    #[error("the refresh token is invalid")]
    InvalidRefreshToken,
    #[error("the refresh token has expired; log in again")]
    RefreshTokenExpired,
    #[error("the session has ended; log in again")]
    SessionRevoked,
    #[error("this refresh token was already used; the session is revoked, log in again")]
    RefreshTokenReused,
    /// No credentials on an endpoint that needs them.
    #[error("this endpoint requires a bearer token")]
    MissingToken,
    /// Credentials that do not authenticate; the description goes into `WWW-Authenticate`.
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("{0}")]
    InvalidApiKeyName(ApiKeyNameError),
    #[error("expires_at must be an RFC 3339 instant in the future")]
    InvalidExpiry,
    #[error("scope must be \"current\", \"others\" or \"global\"")]
    InvalidScope,
    #[error("after must be the next cursor of an earlier page, and limit a whole number from 1 to 100")]
    InvalidCursor,
    #[error("the reset link is not valid; request a new one")]
    InvalidResetToken,
    #[error("the reset link has expired; request a new one")]
    ResetTokenExpired,
    #[error("the current password is wrong")]
    InvalidCurrentPassword,
    /// The operation needs a person's JWT, not an API key.
    #[error("this operation requires a JWT access token; API keys cannot perform it")]
    JwtRequired,
    /// The refresh cookie was sent from a page of an origin that may not use it.
    #[error("the refresh cookie may not be used from this origin")]
    OriginNotAllowed,
    #[error("no such API key")]
    ApiKeyNotFound,
    #[error("no such session")]
    SessionNotFound,
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error("the database is not reachable")]
    NotReady,
    /// The database (or another system a request needs) cannot be reached right now.
    #[error("the service is unavailable for a moment; try again")]
    Unavailable,
    /// The password hashing pool is full: answered at once, before any hashing.
    #[error("the server is busy; try again in a moment")]
    Overloaded,
    /// Over a rate limit; the decision carries the limit and the wait.
    #[error("too many attempts; try again in {} seconds", .0.reset_after.whole_seconds())]
    RateLimited(LimitDecision),
    #[error("unexpected failure")]
    Unexpected(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// The stable, documented code of the error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidJson(_) => ErrorCode::InvalidJson,
            Self::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            Self::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            Self::InvalidEmail(_) => ErrorCode::InvalidEmail,
            Self::InvalidPassword(PasswordError::TooShort) => ErrorCode::PasswordTooShort,
            Self::InvalidPassword(PasswordError::TooLong) => ErrorCode::PasswordTooLong,
            Self::InvalidPassword(PasswordError::TooCommon) => ErrorCode::PasswordTooCommon,
            Self::InvalidVerificationToken => ErrorCode::InvalidVerificationToken,
            Self::VerificationTokenExpired => ErrorCode::VerificationTokenExpired,
            Self::PasswordRequired => ErrorCode::PasswordRequired,
            Self::ReauthenticationRequired => ErrorCode::ReauthenticationRequired,
            Self::InvalidCredentials => ErrorCode::InvalidCredentials,
            Self::EmailNotVerified => ErrorCode::EmailNotVerified,
            Self::AccountDisabled => ErrorCode::AccountDisabled,
            Self::EmailUnchanged => ErrorCode::EmailUnchanged,
            Self::InvalidEmailChangeLink => ErrorCode::InvalidLink,
            Self::EmailChangeLinkExpired => ErrorCode::LinkExpired,
            Self::EmailChangeConflict(_) => ErrorCode::EmailChangeConflict,
            Self::InvalidRefreshToken => ErrorCode::InvalidRefreshToken,
            Self::RefreshTokenExpired => ErrorCode::RefreshTokenExpired,
            Self::SessionRevoked => ErrorCode::SessionRevoked,
            Self::RefreshTokenReused => ErrorCode::RefreshTokenReused,
            Self::MissingToken => ErrorCode::MissingToken,
            Self::InvalidToken(_) => ErrorCode::InvalidToken,
            Self::InvalidApiKeyName(_) => ErrorCode::InvalidApiKeyName,
            Self::InvalidExpiry => ErrorCode::InvalidExpiry,
            Self::InvalidScope => ErrorCode::InvalidScope,
            Self::InvalidCursor => ErrorCode::InvalidCursor,
            Self::InvalidResetToken => ErrorCode::InvalidResetToken,
            Self::ResetTokenExpired => ErrorCode::ResetTokenExpired,
            Self::InvalidCurrentPassword => ErrorCode::InvalidCurrentPassword,
            Self::JwtRequired => ErrorCode::JwtRequired,
            Self::OriginNotAllowed => ErrorCode::OriginNotAllowed,
            Self::ApiKeyNotFound => ErrorCode::ApiKeyNotFound,
            Self::SessionNotFound => ErrorCode::SessionNotFound,
            Self::NotFound => ErrorCode::NotFound,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::NotReady => ErrorCode::NotReady,
            Self::Unavailable => ErrorCode::Unavailable,
            Self::RateLimited(_) => ErrorCode::RateLimited,
            Self::Overloaded => ErrorCode::Overloaded,
            Self::Unexpected(_) => ErrorCode::InternalError,
        }
    }

    /// The message shown to the client. Unexpected failures get a fixed sentence: their cause
    /// goes to the log only.
    fn client_message(&self) -> String {
        match self {
            Self::Unexpected(_) => {
                let mut message = String::from("An unexpected error occurred.");
                if let Some(id) = request_id::current() {
                    let _ = write!(message, " Quote request id {id} when reporting it.");
                }
                message
            }
            other => other.to_string(),
        }
    }
}

/// Formats an error and its causes on one line, for logs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(chain, ": {cause}");
        source = cause.source();
    }
    chain
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Unexpected(cause) = self {
            tracing::error!(error.chain = %error_chain(cause.as_ref()), "request failed unexpectedly");
        }
        let mut response = HttpResponse::build(self.status_code());
        // RFC 6750 §3: a protected resource names the scheme, and the error once a token was
        // offered.
        // Every 401 names the scheme (RFC 9110 §15.5.2), also where the credentials were a
        // password or a refresh token.
        let challenge = match self {
            Self::InvalidToken(description) => Some(format!(r#"Bearer realm="flexauth", error="invalid_token", error_description="{description}""#)),
            other if other.status_code() == StatusCode::UNAUTHORIZED => Some(r#"Bearer realm="flexauth""#.to_owned()),
            _ => None,
        };
        if let Some(value) = challenge.and_then(|challenge| HeaderValue::from_str(&challenge).ok()) {
            response.insert_header((header::WWW_AUTHENTICATE, value));
        }
        if let Self::Overloaded = self {
            response.insert_header((header::RETRY_AFTER, "1"));
        }
        if let Self::Unavailable = self {
            response.insert_header((header::RETRY_AFTER, "2"));
        }
        if let Self::RateLimited(decision) = self {
            // Retry-After (RFC 9110) and the IETF RateLimit-Policy / RateLimit fields.
            let seconds = decision.reset_after.whole_seconds().max(1);
            let policy = decision.policy;
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
            response.insert_header(("ratelimit-policy", format!("\"{}\";q={};w={}", policy.name, policy.limit, policy.window.whole_seconds())));
            response.insert_header(("ratelimit", format!("\"{}\";r={};t={seconds}", policy.name, decision.remaining)));
        }
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        response.json(json!({ "error": { "code": self.code().as_str(), "message": self.client_message() } }))
    }
}

impl From<flexauth_domain::usage::UsageError> for ApiError {
    fn from(error: flexauth_domain::usage::UsageError) -> Self {
        match error {
            flexauth_domain::usage::UsageError::AccountGone => Self::InvalidToken("the account no longer exists"),
            flexauth_domain::usage::UsageError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<crate::browser::CookieRefusal> for ApiError {
    fn from(refusal: crate::browser::CookieRefusal) -> Self {
        match refusal {
            crate::browser::CookieRefusal::ForeignOrigin => Self::OriginNotAllowed,
        }
    }
}

impl From<InfraError> for ApiError {
    fn from(error: InfraError) -> Self {
        if error.is_unavailable() {
            // The store has logged the outage once; the client learns to come back.
            Self::Unavailable
        } else {
            Self::Unexpected(Box::new(error))
        }
    }
}

impl From<EmailError> for ApiError {
    fn from(error: EmailError) -> Self {
        Self::InvalidEmail(error)
    }
}

impl From<PasswordError> for ApiError {
    fn from(error: PasswordError) -> Self {
        Self::InvalidPassword(error)
    }
}

impl From<RateLimited> for ApiError {
    fn from(RateLimited(decision): RateLimited) -> Self {
        Self::RateLimited(decision)
    }
}

impl From<SignupError> for ApiError {
    fn from(error: SignupError) -> Self {
        match error {
            SignupError::Throttled(limited) => limited.into(),
            SignupError::Overloaded => Self::Overloaded,
            SignupError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<VerifyEmailError> for ApiError {
    fn from(error: VerifyEmailError) -> Self {
        match error {
            VerifyEmailError::InvalidToken => Self::InvalidVerificationToken,
            VerifyEmailError::Expired => Self::VerificationTokenExpired,
            VerifyEmailError::PasswordRequired => Self::PasswordRequired,
            VerifyEmailError::Overloaded => Self::Overloaded,
            VerifyEmailError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::InvalidCredentials => Self::InvalidCredentials,
            LoginError::EmailNotVerified => Self::EmailNotVerified,
            LoginError::AccountDisabled => Self::AccountDisabled,
            LoginError::Throttled(limited) => limited.into(),
            LoginError::Overloaded => Self::Overloaded,
            LoginError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(error: RefreshError) -> Self {
        match error {
            RefreshError::InvalidToken(_) => Self::InvalidRefreshToken,
            RefreshError::Expired => Self::RefreshTokenExpired,
            RefreshError::Revoked => Self::SessionRevoked,
            RefreshError::Throttled(limited) => limited.into(),
            RefreshError::Reused { account_id, session_id } => {
                // An audit event: a spent refresh token came back, so someone else may hold
                // the session's tokens.
                tracing::warn!(target: "flexauth::audit", event = "refresh_token_reuse", %account_id, %session_id, "spent refresh token presented; session revoked");
                Self::RefreshTokenReused
            }
            RefreshError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<AuthenticateError> for ApiError {
    fn from(error: AuthenticateError) -> Self {
        Self::InvalidToken(match error {
            AuthenticateError::Expired => "the credential has expired",
            AuthenticateError::NotYetValid => "the access token is not valid yet",
            AuthenticateError::SessionRevoked => "the session of the access token was revoked",
            AuthenticateError::MalformedApiKey => "the API key is malformed",
            AuthenticateError::UnknownApiKey => "the API key is not valid",
            AuthenticateError::Rejected(TokenRejection::Malformed) => "the access token is malformed",
            AuthenticateError::Rejected(TokenRejection::WrongType) => "the token is not an access token",
            AuthenticateError::Rejected(TokenRejection::UnknownKey) => "the access token was signed by an unknown key",
            AuthenticateError::Rejected(TokenRejection::BadSignature) => "the access token signature is invalid",
            AuthenticateError::Rejected(TokenRejection::WrongParty) => "the access token was issued for another party",
            AuthenticateError::Unexpected(cause) => return cause.into(),
        })
    }
}

impl From<SessionRequired> for ApiError {
    fn from(_: SessionRequired) -> Self {
        Self::JwtRequired
    }
}

impl From<ReauthenticationRequired> for ApiError {
    fn from(_: ReauthenticationRequired) -> Self {
        Self::ReauthenticationRequired
    }
}

impl From<LiveSessionError> for ApiError {
    fn from(error: LiveSessionError) -> Self {
        match error {
            LiveSessionError::SessionRequired(required) => required.into(),
            LiveSessionError::SessionEnded => Self::InvalidToken("the session of the access token has ended"),
            LiveSessionError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<ReauthenticateError> for ApiError {
    fn from(error: ReauthenticateError) -> Self {
        match error {
            ReauthenticateError::WrongPassword => Self::InvalidCurrentPassword,
            ReauthenticateError::SessionEnded => Self::InvalidToken("the session of the access token has ended"),
            ReauthenticateError::Throttled(limited) => limited.into(),
            ReauthenticateError::Overloaded => Self::Overloaded,
            ReauthenticateError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<ApiKeyNameError> for ApiError {
    fn from(error: ApiKeyNameError) -> Self {
        Self::InvalidApiKeyName(error)
    }
}

impl From<CreateApiKeyError> for ApiError {
    fn from(error: CreateApiKeyError) -> Self {
        match error {
            CreateApiKeyError::ReauthenticationRequired(required) => required.into(),
            CreateApiKeyError::AccountGone => Self::InvalidToken("the account no longer exists"),
            CreateApiKeyError::SessionEnded => Self::InvalidToken("the session of the access token has ended"),
            CreateApiKeyError::ExpiryInPast => Self::InvalidExpiry,
            CreateApiKeyError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<ListApiKeysError> for ApiError {
    fn from(error: ListApiKeysError) -> Self {
        match error {
            ListApiKeysError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<RevokeApiKeyError> for ApiError {
    fn from(error: RevokeApiKeyError) -> Self {
        match error {
            RevokeApiKeyError::NotFound => Self::ApiKeyNotFound,
            RevokeApiKeyError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<ManageSessionsError> for ApiError {
    fn from(error: ManageSessionsError) -> Self {
        match error {
            ManageSessionsError::SessionRequired(required) => required.into(),
            ManageSessionsError::SessionEnded => Self::InvalidToken("the session of the access token has ended"),
            ManageSessionsError::NotFound => Self::SessionNotFound,
            ManageSessionsError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<ResetPasswordError> for ApiError {
    fn from(error: ResetPasswordError) -> Self {
        match error {
            ResetPasswordError::InvalidToken => Self::InvalidResetToken,
            ResetPasswordError::Expired => Self::ResetTokenExpired,
            ResetPasswordError::Throttled(limited) => limited.into(),
            ResetPasswordError::Overloaded => Self::Overloaded,
            ResetPasswordError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<ChangePasswordError> for ApiError {
    fn from(error: ChangePasswordError) -> Self {
        match error {
            ChangePasswordError::WrongPassword => Self::InvalidCurrentPassword,
            // A reset won the race and ended this session too.
            ChangePasswordError::CredentialsChanged => Self::SessionRevoked,
            ChangePasswordError::Overloaded => Self::Overloaded,
            ChangePasswordError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<AccountLookupError> for ApiError {
    fn from(error: AccountLookupError) -> Self {
        match error {
            AccountLookupError::SessionRequired(required) => required.into(),
            AccountLookupError::Gone => Self::InvalidToken("the account no longer exists"),
            AccountLookupError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<OwnerError> for ApiError {
    fn from(error: OwnerError) -> Self {
        match error {
            OwnerError::ReauthenticationRequired(required) => required.into(),
            OwnerError::AccountGone => Self::InvalidToken("the account no longer exists"),
            OwnerError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<EmailChangeError> for ApiError {
    fn from(error: EmailChangeError) -> Self {
        match error {
            EmailChangeError::ReauthenticationRequired(required) => required.into(),
            EmailChangeError::SameAddress => Self::EmailUnchanged,
            EmailChangeError::Throttled(limited) => limited.into(),
            EmailChangeError::SessionEnded => Self::InvalidToken("the session of the access token has ended"),
            EmailChangeError::AccountGone => Self::InvalidToken("the account no longer exists"),
            EmailChangeError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<EmailChangeLinkError> for ApiError {
    fn from(error: EmailChangeLinkError) -> Self {
        match error {
            EmailChangeLinkError::Unknown | EmailChangeLinkError::Used => Self::InvalidEmailChangeLink,
            EmailChangeLinkError::Expired => Self::EmailChangeLinkExpired,
            EmailChangeLinkError::AddressTaken => Self::EmailChangeConflict("the address belongs to another account now; nothing was changed"),
            EmailChangeLinkError::AccountChanged => Self::EmailChangeConflict("the account's address changed since this link was sent; nothing was changed"),
            EmailChangeLinkError::Overloaded => Self::Overloaded,
            EmailChangeLinkError::Unexpected(cause) => cause.into(),
        }
    }
}

/// Turns actix's JSON extractor failures into the error envelope.
/// serde's message, unless it names one of flexauth's internal types ("expected struct
/// Credentials"): the client is told what the endpoint takes instead.
fn describe_json_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    if text.contains("struct ") || text.contains("enum ") || text.contains("variant ") {
        format!("the body must be a JSON object with this endpoint's fields (line {}, column {})", error.line(), error.column())
    } else {
        text
    }
}

pub fn json_error(error: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError;
    match error {
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => ApiError::PayloadTooLarge,
        JsonPayloadError::Deserialize(cause) => ApiError::InvalidJson(describe_json_error(&cause)),
        other => ApiError::InvalidJson(other.to_string()),
    }
}
