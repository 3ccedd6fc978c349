//! The one place where failures become HTTP responses. An [`ApiError`] is a code from the
//! table in [`code`](ErrorCode), the sentence the client reads, and for the log the cause; each
//! domain error becomes one in a single `match`, below. Adding a domain error is one arm there.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use flexauth_domain::account::{
    AccountLookupError, ChangePasswordError, EmailError, PasswordError, ResetPasswordError, SignupError,
    VerifyEmailError,
};
use flexauth_domain::api_key::{ApiKeyNameError, CreateApiKeyError, ListApiKeysError, RevokeApiKeyError};
use flexauth_domain::bearer::CheckError;
use flexauth_domain::introspection::IntrospectError;
use flexauth_domain::lifecycle::{EmailChangeError, EmailChangeLinkError, OwnerError};
use flexauth_domain::limits::{LimitDecision, RateLimited};
use flexauth_domain::mfa::{FactorNameError, MfaError, PasskeyRefusal, SecondStepError};
use flexauth_domain::newtypes::space_separated;
use flexauth_domain::principal::{
    AccountGone, ReauthenticationRequired, SessionEnded, SessionRequired, StepUpRequired,
};
use flexauth_domain::session::{
    AuthenticateError, LiveSessionError, LoginError, ManageSessionsError, ReauthenticateError, RefreshError,
    TokenRejection,
};
use flexauth_domain::InfraError;
use serde_json::json;

use crate::request_id;

mod code;
pub use code::{ErrorCode, ErrorSpec};

/// An error answered to the client: its code, the sentence the client reads, and what caused
/// it (logged, never sent).
pub struct ApiError {
    code: ErrorCode,
    message: Cow<'static, str>,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// The limit and the wait of a `rate_limited` answer, for its headers; boxed, as few
    /// errors carry one and every `Result` of a handler has room for the error.
    rate_limit: Option<Box<LimitDecision>>,
    /// The scopes an `insufficient_scope` answer names in its challenge (RFC 6750 §3).
    required_scope: Option<Box<str>>,
    /// Fields of the error object beside `code` and `message`: the challenge of an
    /// `mfa_required` answer.
    fields: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl ApiError {
    /// An error of `code` whose message says more than the code's own sentence.
    pub fn with_message(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self { code, message: message.into(), cause: None, rate_limit: None, required_scope: None, fields: None }
    }

    /// A credential that does not authenticate; the description also goes into
    /// `WWW-Authenticate` (RFC 6750 §3).
    pub fn invalid_token(description: &'static str) -> Self {
        Self::with_message(ErrorCode::InvalidToken, description)
    }

    /// A credential that lacks some of the scopes `required` (space-separated), named in the
    /// challenge so that the client learns what to ask for.
    pub fn insufficient_scope(required: String) -> Self {
        Self { required_scope: Some(required.into_boxed_str()), ..Self::from(ErrorCode::InsufficientScope) }
    }

    /// Anything unexpected: the client gets `internal_error` and the request id, the log the
    /// cause.
    pub fn unexpected(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { cause: Some(cause.into()), ..Self::from(ErrorCode::InternalError) }
    }

    /// The stable, documented code of the error.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message shown to the client. Unexpected failures get a fixed sentence: their cause
    /// goes to the log only.
    fn client_message(&self) -> Cow<'static, str> {
        match (self.code, request_id::current()) {
            (ErrorCode::InternalError, Some(id)) => {
                Cow::Owned(format!("{} Quote request id {id} when reporting it.", self.message))
            }
            _ => self.message.clone(),
        }
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        Self::with_message(code, code.spec().message)
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("code", &self.code.as_str())
            .field("message", &self.message)
            .field("cause", &self.cause)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|cause| cause as &(dyn std::error::Error + 'static))
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
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(cause) = &self.cause {
            tracing::error!(error.chain = %error_chain(cause.as_ref()), "request failed unexpectedly");
        }
        let mut response = HttpResponse::build(self.status_code());
        // Every 401 names the scheme (RFC 9110 §15.5.2), also where the credentials were a
        // password or a refresh token; once a token was offered, also the error (RFC 6750 §3).
        let challenge = match self.code {
            ErrorCode::InvalidToken => {
                Some(format!(r#"Bearer realm="flexauth", error="invalid_token", error_description="{}""#, self.message))
            }
            ErrorCode::InsufficientScope => Some(format!(
                r#"Bearer realm="flexauth", error="insufficient_scope", error_description="{}", scope="{}""#,
                self.message,
                self.required_scope.as_deref().unwrap_or_default()
            )),
            // A resource server authenticates with HTTP Basic (RFC 6749 §5.2).
            ErrorCode::InvalidClient => Some(r#"Basic realm="flexauth", charset="UTF-8""#.to_owned()),
            code if code.status() == StatusCode::UNAUTHORIZED => Some(r#"Bearer realm="flexauth""#.to_owned()),
            _ => None,
        };
        if let Some(value) = challenge.and_then(|challenge| HeaderValue::from_str(&challenge).ok()) {
            response.insert_header((header::WWW_AUTHENTICATE, value));
        }
        match self.code {
            ErrorCode::Overloaded => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ErrorCode::Unavailable => {
                response.insert_header((header::RETRY_AFTER, "2"));
            }
            _ => {}
        }
        if let Some(decision) = &self.rate_limit {
            // Retry-After (RFC 9110) and the IETF RateLimit-Policy / RateLimit fields.
            let seconds = decision.reset_after.whole_seconds().max(1);
            let policy = decision.policy;
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
            response.insert_header((
                "ratelimit-policy",
                format!("\"{}\";q={};w={}", policy.name, policy.limit, policy.window.whole_seconds()),
            ));
            response.insert_header(("ratelimit", format!("\"{}\";r={};t={seconds}", policy.name, decision.remaining)));
        }
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        let mut error = serde_json::Map::new();
        error.insert("code".to_owned(), json!(self.code.as_str()));
        error.insert("message".to_owned(), json!(self.client_message()));
        if let Some(fields) = &self.fields {
            error.extend(fields.iter().map(|(name, value)| (name.clone(), value.clone())));
        }
        response.json(json!({ "error": error }))
    }
}

impl From<flexauth_domain::usage::UsageError> for ApiError {
    fn from(error: flexauth_domain::usage::UsageError) -> Self {
        match error {
            flexauth_domain::usage::UsageError::AccountGone(gone) => gone.into(),
            flexauth_domain::usage::UsageError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<crate::browser::CookieRefusal> for ApiError {
    fn from(refusal: crate::browser::CookieRefusal) -> Self {
        match refusal {
            crate::browser::CookieRefusal::ForeignOrigin => Self::from(ErrorCode::OriginNotAllowed),
            crate::browser::CookieRefusal::Ambiguous => Self::with_message(
                ErrorCode::InvalidRefreshToken,
                "the request carries more than one refresh cookie; log in again",
            ),
        }
    }
}

impl From<InfraError> for ApiError {
    fn from(error: InfraError) -> Self {
        if error.is_unavailable() {
            // The store has logged the outage once; the client learns to come back.
            Self::from(ErrorCode::Unavailable)
        } else {
            Self::unexpected(error)
        }
    }
}

impl From<EmailError> for ApiError {
    fn from(error: EmailError) -> Self {
        Self::with_message(ErrorCode::InvalidEmail, error.to_string())
    }
}

impl From<PasswordError> for ApiError {
    fn from(error: PasswordError) -> Self {
        let code = match error {
            PasswordError::TooShort => ErrorCode::PasswordTooShort,
            PasswordError::TooLong => ErrorCode::PasswordTooLong,
            PasswordError::TooCommon => ErrorCode::PasswordTooCommon,
        };
        Self::with_message(code, error.to_string())
    }
}

impl From<RateLimited> for ApiError {
    fn from(RateLimited(decision): RateLimited) -> Self {
        let mut error = Self::with_message(
            ErrorCode::RateLimited,
            format!("too many attempts; try again in {} seconds", decision.reset_after.whole_seconds()),
        );
        error.rate_limit = Some(Box::new(decision));
        error
    }
}

impl From<SignupError> for ApiError {
    fn from(error: SignupError) -> Self {
        match error {
            SignupError::Throttled(limited) => limited.into(),
            SignupError::Overloaded => Self::from(ErrorCode::Overloaded),
            SignupError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<VerifyEmailError> for ApiError {
    fn from(error: VerifyEmailError) -> Self {
        match error {
            VerifyEmailError::InvalidToken => Self::from(ErrorCode::InvalidVerificationToken),
            VerifyEmailError::Expired => Self::from(ErrorCode::VerificationTokenExpired),
            VerifyEmailError::PasswordRequired => Self::from(ErrorCode::PasswordRequired),
            VerifyEmailError::Overloaded => Self::from(ErrorCode::Overloaded),
            VerifyEmailError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::InvalidCredentials => Self::from(ErrorCode::InvalidCredentials),
            LoginError::EmailNotVerified => Self::from(ErrorCode::EmailNotVerified),
            LoginError::AccountDisabled => Self::from(ErrorCode::AccountDisabled),
            LoginError::SecondFactorRequired(challenge) => {
                let mut fields = serde_json::Map::new();
                fields.insert("mfa_token".to_owned(), json!(challenge.token.expose()));
                fields.insert("methods".to_owned(), json!(challenge.methods));
                fields.insert("expires_in".to_owned(), json!(challenge.expires_in));
                Self { fields: Some(Box::new(fields)), ..Self::from(ErrorCode::MfaRequired) }
            }
            LoginError::Throttled(limited) => limited.into(),
            LoginError::Overloaded => Self::from(ErrorCode::Overloaded),
            LoginError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(error: RefreshError) -> Self {
        match error {
            RefreshError::InvalidToken(_) | RefreshError::UnknownSession => Self::from(ErrorCode::InvalidRefreshToken),
            RefreshError::Expired => Self::from(ErrorCode::RefreshTokenExpired),
            RefreshError::Revoked => Self::from(ErrorCode::SessionRevoked),
            RefreshError::Throttled(limited) => limited.into(),
            RefreshError::Reused { .. } => Self::from(ErrorCode::RefreshTokenReused),
            RefreshError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<AuthenticateError> for ApiError {
    fn from(error: AuthenticateError) -> Self {
        let description = match error {
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
        };
        Self::invalid_token(description)
    }
}

impl From<CheckError> for ApiError {
    fn from(error: CheckError) -> Self {
        match error {
            CheckError::Authenticate(error) => error.into(),
            CheckError::InsufficientScope { wanted } => Self::insufficient_scope(space_separated(&wanted)),
        }
    }
}

impl From<IntrospectError> for ApiError {
    fn from(error: IntrospectError) -> Self {
        match error {
            IntrospectError::InvalidClient => Self::from(ErrorCode::InvalidClient),
            IntrospectError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<SessionRequired> for ApiError {
    fn from(_: SessionRequired) -> Self {
        Self::from(ErrorCode::JwtRequired)
    }
}

impl From<SessionEnded> for ApiError {
    fn from(_: SessionEnded) -> Self {
        Self::invalid_token(SessionEnded::DESCRIPTION)
    }
}

impl From<AccountGone> for ApiError {
    fn from(_: AccountGone) -> Self {
        Self::invalid_token(AccountGone::DESCRIPTION)
    }
}

impl From<StepUpRequired> for ApiError {
    fn from(_: StepUpRequired) -> Self {
        Self::from(ErrorCode::MfaStepUpRequired)
    }
}

impl From<FactorNameError> for ApiError {
    fn from(error: FactorNameError) -> Self {
        Self::with_message(ErrorCode::InvalidFactorName, error.to_string())
    }
}

impl From<MfaError> for ApiError {
    fn from(error: MfaError) -> Self {
        match error {
            MfaError::ReauthenticationRequired(required) => required.into(),
            MfaError::StepUpRequired(required) => required.into(),
            MfaError::AccountGone(gone) => gone.into(),
            MfaError::NotFound => Self::from(ErrorCode::FactorNotFound),
            MfaError::AlreadyConfirmed => Self::from(ErrorCode::FactorAlreadyConfirmed),
            MfaError::WrongCode => Self::from(ErrorCode::InvalidCode),
            MfaError::NoFactor => Self::from(ErrorCode::NoSecondFactor),
            MfaError::TooManyFactors => Self::from(ErrorCode::TooManyFactors),
            MfaError::InvalidCeremony => Self::from(ErrorCode::InvalidCeremony),
            MfaError::PasskeysUnavailable(_) => Self::from(ErrorCode::PasskeysUnavailable),
            MfaError::PasskeyRefused(refusal) => refusal.into(),
            MfaError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<PasskeyRefusal> for ApiError {
    fn from(refusal: PasskeyRefusal) -> Self {
        if refusal == PasskeyRefusal::CounterWentBackwards {
            // A copy of the authenticator may exist: worth an operator's attention.
            tracing::warn!(target: "flexauth::audit", event = "passkey_counter_went_backwards", "a passkey's signature counter went backwards; the login was refused");
        }
        Self::with_message(ErrorCode::PasskeyRefused, refusal.to_string())
    }
}

impl From<SecondStepError> for ApiError {
    fn from(error: SecondStepError) -> Self {
        match error {
            SecondStepError::InvalidChallenge => Self::from(ErrorCode::InvalidMfaToken),
            SecondStepError::WrongCode => Self::from(ErrorCode::InvalidCode),
            SecondStepError::AccountDisabled => Self::from(ErrorCode::AccountDisabled),
            SecondStepError::SessionEnded(ended) => ended.into(),
            SecondStepError::Throttled(limited) => limited.into(),
            SecondStepError::InvalidCeremony => Self::from(ErrorCode::InvalidCeremony),
            SecondStepError::PasskeysUnavailable(_) => Self::from(ErrorCode::PasskeysUnavailable),
            SecondStepError::PasskeyRefused(refusal) => refusal.into(),
            SecondStepError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<ReauthenticationRequired> for ApiError {
    fn from(_: ReauthenticationRequired) -> Self {
        Self::from(ErrorCode::ReauthenticationRequired)
    }
}

impl From<LiveSessionError> for ApiError {
    fn from(error: LiveSessionError) -> Self {
        match error {
            LiveSessionError::SessionRequired(required) => required.into(),
            LiveSessionError::SessionEnded(ended) => ended.into(),
            LiveSessionError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<ReauthenticateError> for ApiError {
    fn from(error: ReauthenticateError) -> Self {
        match error {
            ReauthenticateError::WrongPassword => Self::from(ErrorCode::InvalidCurrentPassword),
            ReauthenticateError::SessionEnded(ended) => ended.into(),
            ReauthenticateError::Throttled(limited) => limited.into(),
            ReauthenticateError::Overloaded => Self::from(ErrorCode::Overloaded),
            ReauthenticateError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<ApiKeyNameError> for ApiError {
    fn from(error: ApiKeyNameError) -> Self {
        Self::with_message(ErrorCode::InvalidApiKeyName, error.to_string())
    }
}

impl From<CreateApiKeyError> for ApiError {
    fn from(error: CreateApiKeyError) -> Self {
        match error {
            CreateApiKeyError::ReauthenticationRequired(required) => required.into(),
            CreateApiKeyError::StepUpRequired(required) => required.into(),
            CreateApiKeyError::AccountGone(gone) => gone.into(),
            CreateApiKeyError::SessionEnded(ended) => ended.into(),
            CreateApiKeyError::ExpiryInPast => Self::from(ErrorCode::InvalidExpiry),
            CreateApiKeyError::UnknownScope(scope) => Self::with_message(
                ErrorCode::InvalidScope,
                format!("`{scope}` is not a scope this server declared (FLEXAUTH_API_KEY_SCOPES)"),
            ),
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
            RevokeApiKeyError::NotFound => Self::from(ErrorCode::ApiKeyNotFound),
            RevokeApiKeyError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<ManageSessionsError> for ApiError {
    fn from(error: ManageSessionsError) -> Self {
        match error {
            ManageSessionsError::SessionRequired(required) => required.into(),
            ManageSessionsError::SessionEnded(ended) => ended.into(),
            ManageSessionsError::NotFound => Self::from(ErrorCode::SessionNotFound),
            ManageSessionsError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<ResetPasswordError> for ApiError {
    fn from(error: ResetPasswordError) -> Self {
        match error {
            ResetPasswordError::InvalidToken => Self::from(ErrorCode::InvalidResetToken),
            ResetPasswordError::Expired => Self::from(ErrorCode::ResetTokenExpired),
            ResetPasswordError::Throttled(limited) => limited.into(),
            ResetPasswordError::Overloaded => Self::from(ErrorCode::Overloaded),
            ResetPasswordError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<ChangePasswordError> for ApiError {
    fn from(error: ChangePasswordError) -> Self {
        match error {
            ChangePasswordError::WrongPassword => Self::from(ErrorCode::InvalidCurrentPassword),
            ChangePasswordError::StepUpRequired(required) => required.into(),
            ChangePasswordError::Throttled(limited) => limited.into(),
            ChangePasswordError::SessionEnded(ended) => ended.into(),
            // A reset won the race and ended this session too.
            ChangePasswordError::CredentialsChanged => Self::from(ErrorCode::SessionRevoked),
            ChangePasswordError::Overloaded => Self::from(ErrorCode::Overloaded),
            ChangePasswordError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<AccountLookupError> for ApiError {
    fn from(error: AccountLookupError) -> Self {
        match error {
            AccountLookupError::SessionRequired(required) => required.into(),
            AccountLookupError::AccountGone(gone) => gone.into(),
            AccountLookupError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<OwnerError> for ApiError {
    fn from(error: OwnerError) -> Self {
        match error {
            OwnerError::ReauthenticationRequired(required) => required.into(),
            OwnerError::StepUpRequired(required) => required.into(),
            OwnerError::AccountGone(gone) => gone.into(),
            OwnerError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<EmailChangeError> for ApiError {
    fn from(error: EmailChangeError) -> Self {
        match error {
            EmailChangeError::ReauthenticationRequired(required) => required.into(),
            EmailChangeError::StepUpRequired(required) => required.into(),
            EmailChangeError::SameAddress => Self::from(ErrorCode::EmailUnchanged),
            EmailChangeError::Throttled(limited) => limited.into(),
            EmailChangeError::SessionEnded(ended) => ended.into(),
            EmailChangeError::AccountGone(gone) => gone.into(),
            EmailChangeError::Unexpected(cause) => cause.into(),
        }
    }
}

impl From<EmailChangeLinkError> for ApiError {
    fn from(error: EmailChangeLinkError) -> Self {
        match error {
            EmailChangeLinkError::Unknown | EmailChangeLinkError::Used => Self::from(ErrorCode::InvalidLink),
            EmailChangeLinkError::Expired => Self::from(ErrorCode::LinkExpired),
            EmailChangeLinkError::AddressTaken => Self::with_message(
                ErrorCode::EmailChangeConflict,
                "the address belongs to another account now; nothing was changed",
            ),
            EmailChangeLinkError::AccountChanged => Self::with_message(
                ErrorCode::EmailChangeConflict,
                "the account's address changed since this link was sent; nothing was changed",
            ),
            EmailChangeLinkError::WrongPassword => Self::from(ErrorCode::InvalidCurrentPassword),
            EmailChangeLinkError::Throttled(limited) => limited.into(),
            EmailChangeLinkError::Overloaded => Self::from(ErrorCode::Overloaded),
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
        format!(
            "the body must be a JSON object with this endpoint's fields (line {}, column {})",
            error.line(),
            error.column()
        )
    } else {
        text
    }
}

pub fn json_error(error: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError;
    match error {
        JsonPayloadError::ContentType => ErrorCode::UnsupportedMediaType.into(),
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ErrorCode::PayloadTooLarge.into()
        }
        JsonPayloadError::Payload(cause) if crate::body_deadline::is_body_timeout(&cause) => {
            ErrorCode::RequestTimeout.into()
        }
        JsonPayloadError::Deserialize(cause) => {
            ApiError::with_message(ErrorCode::InvalidJson, describe_json_error(&cause))
        }
        other => ApiError::with_message(ErrorCode::InvalidJson, other.to_string()),
    }
}
