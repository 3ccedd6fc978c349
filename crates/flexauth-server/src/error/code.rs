//! The error codes of the API: each one's status and what it means, in one table that the
//! error responses and the OpenAPI document both read.

use actix_web::http::StatusCode;

/// Declares the codes once: the enum and [`ErrorCode::ALL`] come from the same list, so no code
/// can be missing from the documentation.
macro_rules! error_codes {
    ($($code:ident),* $(,)?) => {
        /// A stable, documented `code` of the error envelope.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($code),*
        }

        impl ErrorCode {
            /// Every code, in the order the documentation lists them.
            pub const ALL: &'static [ErrorCode] = &[$(Self::$code),*];
        }
    };
}

error_codes! {
    InvalidJson,
    UnsupportedMediaType,
    PayloadTooLarge,
    RequestTimeout,
    InvalidEmail,
    PasswordTooShort,
    PasswordTooLong,
    PasswordTooCommon,
    InvalidVerificationToken,
    VerificationTokenExpired,
    PasswordRequired,
    InvalidResetToken,
    ResetTokenExpired,
    InvalidCurrentPassword,
    InvalidApiKeyName,
    InvalidFactorName,
    InvalidCode,
    InvalidCeremony,
    PasskeyRefused,
    InvalidExpiry,
    InvalidCursor,
    InvalidScope,
    InvalidRequest,
    EmailUnchanged,
    InvalidLink,
    LinkExpired,
    InvalidCredentials,
    InvalidMfaToken,
    EmailNotVerified,
    AccountDisabled,
    InvalidRefreshToken,
    RefreshTokenExpired,
    SessionRevoked,
    RefreshTokenReused,
    MissingToken,
    InvalidToken,
    InvalidClient,
    OriginNotAllowed,
    JwtRequired,
    ReauthenticationRequired,
    MfaRequired,
    MfaStepUpRequired,
    InsufficientScope,
    ApiKeyNotFound,
    SessionNotFound,
    FactorNotFound,
    PasskeysUnavailable,
    NotFound,
    MethodNotAllowed,
    EmailChangeConflict,
    FactorAlreadyConfirmed,
    NoSecondFactor,
    TooManyFactors,
    RateLimited,
    Overloaded,
    NotReady,
    Unavailable,
    InternalError,
}

/// What a code stands for: the status it is answered with, its text, the sentence the client
/// gets unless the error says more, and the sentence that documents it.
#[derive(Debug, Clone, Copy)]
pub struct ErrorSpec {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: &'static str,
    pub meaning: &'static str,
}

impl ErrorCode {
    /// The status, text, message and meaning of the code: the one table of them.
    pub const fn spec(self) -> ErrorSpec {
        use StatusCode as S;
        let (status, code, message, meaning) = match self {
            Self::InvalidJson => (
                S::BAD_REQUEST,
                "invalid_json", "the request body is not valid JSON for this endpoint",
                "The body is not JSON, not a JSON object of the expected shape, misses a field, or has a field of \
                    the wrong type. Also used, with the original status, for any other 4xx that the HTTP framework answers on its own.",
            ),
            Self::UnsupportedMediaType => (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "the request body must be application/json", "A JSON endpoint got a body without `Content-Type: application/json`."),
            Self::PayloadTooLarge => (S::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is larger than \
                16 KiB", "The body is over 16 KiB."),
            Self::RequestTimeout => (
                S::REQUEST_TIMEOUT,
                "request_timeout", "the request body did not arrive in time",
                "The body did not arrive within `FLEXAUTH_REQUEST_BODY_TIMEOUT` (10 s by default) of the request's \
                    head. The connection is closed after the answer.",
            ),
            Self::InvalidEmail => (
                S::BAD_REQUEST,
                "invalid_email", "the email address is not valid",
                "Not an email address flexauth accepts: empty, over 254 characters, a display name, no dot in the \
                    domain, an address literal.",
            ),
            Self::PasswordTooShort => (S::BAD_REQUEST, "password_too_short", "the password must have at least 8 \
                characters", "A new password under 8 characters (sign-up, confirmation, reset, change)."),
            Self::PasswordTooLong => (S::BAD_REQUEST, "password_too_long", "the password must not exceed 256 \
                characters", "A password over 256 characters (every JSON endpoint that takes a password)."),
            Self::PasswordTooCommon => {
                (S::BAD_REQUEST, "password_too_common", "the password is too common", "A new password on the \
                    common-password list (sign-up, confirmation, reset, change).")
            }
            Self::InvalidVerificationToken => (
                S::BAD_REQUEST,
                "invalid_verification_token", "the token is malformed or unknown",
                "The verification token is malformed, unknown, or discarded (a confirmation with another link, a \
                    password reset, or a fourth sign-up attempt).",
            ),
            Self::VerificationTokenExpired => (S::BAD_REQUEST, "verification_token_expired", "the verification link \
                has expired; request a new one", "The verification token expired unused. Ask for a new link."),
            Self::PasswordRequired => (
                S::BAD_REQUEST,
                "password_required", "choose a password to confirm your email address with this link",
                "`POST /v1/auth/verify`: this link needs a chosen password (a resent link, or several pending \
                    sign-ups). Send `password`.",
            ),
            Self::InvalidResetToken => (S::BAD_REQUEST, "invalid_reset_token", "the reset link is not valid; \
                request a new one", "The password reset token is malformed, unknown, or used."),
            Self::ResetTokenExpired => (S::BAD_REQUEST, "reset_token_expired", "the reset link has expired; request \
                a new one", "The password reset token expired unused. Ask for a new link."),
            Self::InvalidCurrentPassword => (
                S::BAD_REQUEST,
                "invalid_current_password", "the current password is wrong",
                "`POST /v1/auth/password/change`, `POST /v1/auth/reauthenticate` or `POST /v1/auth/email/confirm`: \
                    the password given is not the account's.",
            ),
            Self::InvalidApiKeyName => {
                (S::BAD_REQUEST, "invalid_api_key_name", "the API key name is not valid", "The key name is empty \
                    after trimming, over 100 characters, or holds control characters.")
            }
            Self::InvalidFactorName => (S::BAD_REQUEST, "invalid_factor_name", "the factor name is not valid", "The \
                factor name is empty after trimming, over 64 characters, or holds control characters."),
            Self::InvalidCode => (
                S::BAD_REQUEST,
                "invalid_code", "the code is wrong or was used already",
                "The authenticator code or recovery code is not one the account accepts now: wrong, used before (a \
                    code passes once), or outside one 30-second step of now. A login's challenge survives 4 of \
                    them; the 5th ends it.",
            ),
            Self::InvalidCeremony => (
                S::NOT_FOUND,
                "invalid_ceremony", "the passkey ceremony is not valid; start again",
                "A passkey ceremony id that is unknown, was finished already (each finishes once), is older than \
                    5 minutes, or is another account's or of another kind. Start the ceremony again.",
            ),
            Self::PasskeyRefused => (
                S::BAD_REQUEST,
                "passkey_refused", "the passkey was refused",
                "The browser's credential does not answer the ceremony (another origin or relying party, another \
                    challenge, a bad signature, no user verification), the passkey is no account's or another \
                    account's, is registered already, or its non-zero signature counter went backwards (a copy \
                    may exist; logged for the operator). A counter of 0, as synced passkeys report, is fine.",
            ),
            Self::InvalidExpiry => (S::BAD_REQUEST, "invalid_expiry", "expires_at must be an RFC 3339 instant in \
                the future", "`expires_at` is not an RFC 3339 instant in the future."),
            Self::InvalidCursor => (
                S::BAD_REQUEST,
                "invalid_cursor", "after must be the next cursor of an earlier page, and limit a whole number from \
                    1 to 100",
                "`GET /v1/auth/events`: `after` is not the `next` of an earlier page, or `limit` is not a whole \
                    number from 1 to 100.",
            ),
            Self::InvalidScope => (
                S::BAD_REQUEST,
                "invalid_scope", "the scope is not valid here",
                "The logout `scope` is not `current`, `others` or `global`; a scope of `POST /v1/api-keys` is not \
                    one of `FLEXAUTH_API_KEY_SCOPES`; or a `scope` asked of `/v1/auth/check` is not a scope token \
                    (1 to 64 printable ASCII characters without spaces, quotes or backslashes).",
            ),
            Self::InvalidRequest => (
                S::BAD_REQUEST,
                "invalid_request", "the introspection request needs one token parameter",
                "`POST /v1/auth/introspect`: the form has no `token`, more than one, a `token` over 1024 characters, \
                    or a `token_type_hint` over 64 characters or given twice.",
            ),
            Self::EmailUnchanged => (S::BAD_REQUEST, "email_unchanged", "the account has this email address \
                already", "`POST /v1/auth/email/change`: the account has this address already."),
            Self::InvalidLink => (
                S::BAD_REQUEST,
                "invalid_link", "the link is not valid or was used already",
                "`POST /v1/auth/email/confirm` or `/v1/auth/email/undo`: the token is malformed, unknown, or used \
                    (the change was confirmed or undone).",
            ),
            Self::LinkExpired => (
                S::BAD_REQUEST,
                "link_expired", "the link has expired",
                "`POST /v1/auth/email/confirm` or `/v1/auth/email/undo`: the link is past its time (24 hours to \
                    confirm, 7 days to undo), or a newer request or an undo ended the confirmation link. Nothing was changed.",
            ),
            Self::InvalidCredentials => (S::UNAUTHORIZED, "invalid_credentials", "invalid email or password", "Unknown email or wrong password."),
            Self::EmailNotVerified => {
                (S::FORBIDDEN, "email_not_verified", "verify your email address before logging in", "Right password (that of the newest pending sign-up attempt), but the address is not verified yet.")
            }
            Self::AccountDisabled => (
                S::FORBIDDEN,
                "account_disabled", "this account is disabled; contact the operator of this service",
                "Right password, but an operator disabled the account (`flexauth accounts disable ID`). A wrong \
                    password gets `invalid_credentials`.",
            ),
            Self::InvalidMfaToken => (
                S::UNAUTHORIZED,
                "invalid_mfa_token", "the login challenge is not valid; log in again",
                "`POST /v1/auth/login/mfa`: the `mfa_token` is unknown, expired (5 minutes), spent by a login, \
                    ended by 5 wrong codes, or ended by a password reset or change since the password step. Log in \
                    with the password again.",
            ),
            Self::InvalidRefreshToken => (S::UNAUTHORIZED, "invalid_refresh_token", "the refresh token is \
                invalid", "Not a refresh token flexauth issued, or its session is unknown."),
            Self::RefreshTokenExpired => (S::UNAUTHORIZED, "refresh_token_expired", "the refresh token has expired; \
                log in again", "The refresh token or its session is past its lifetime."),
            Self::SessionRevoked => (
                S::UNAUTHORIZED,
                "session_revoked", "the session has ended; log in again",
                "The session was ended (logout, a session revocation, a password reset or change, or after a \
                    reuse). Also `POST /v1/auth/password/change` when a reset committed first.",
            ),
            Self::RefreshTokenReused => {
                (S::UNAUTHORIZED, "refresh_token_reused", "this refresh token was already used; the session is \
                    revoked, log in again", "A spent refresh token outside the grace window; the session is now revoked.")
            }
            Self::MissingToken => (S::UNAUTHORIZED, "missing_token", "this endpoint requires a bearer token", "A protected endpoint got no credentials."),
            Self::InvalidToken => (
                S::UNAUTHORIZED,
                "invalid_token", "the credential is not valid",
                "The `Authorization` header holds no valid access token or API key, or, on the account-management \
                    endpoints, the session of the access token has ended.",
            ),
            Self::InvalidClient => (
                S::UNAUTHORIZED,
                "invalid_client", "the client credentials are not valid",
                "`POST /v1/auth/introspect`: no HTTP Basic credentials, or not those of a resource server registered \
                    with `flexauth clients create` (unknown, deleted, or the wrong secret). The answer carries \
                    `WWW-Authenticate: Basic realm=\"flexauth\"`.",
            ),
            Self::OriginNotAllowed => (
                S::FORBIDDEN,
                "origin_not_allowed", "the refresh cookie may not be used from this origin",
                "`POST /v1/auth/refresh` or `/v1/auth/logout` with `Refresh-Token-Transport: cookie` from a page \
                    whose `Origin` is neither flexauth's nor on `FLEXAUTH_CORS_ORIGINS`.",
            ),
            Self::JwtRequired => (S::FORBIDDEN, "jwt_required", "this operation requires a JWT access token; API \
                keys cannot perform it", "An API key was used for an operation reserved to JWT access tokens."),
            Self::InsufficientScope => (
                S::FORBIDDEN,
                "insufficient_scope", "the credential lacks a scope this request needs",
                "The credential authenticates but does not hold every scope that `/v1/auth/check` was asked for \
                    (an API key holds the scopes it was created with, an access token every one of \
                    `FLEXAUTH_API_KEY_SCOPES`; a scope not declared there is held by nobody). `WWW-Authenticate` \
                    names the scopes asked for.",
            ),
            Self::MfaRequired => (
                S::FORBIDDEN,
                "mfa_required", "the account has a second factor; finish the login at /v1/auth/login/mfa",
                "`POST /v1/auth/login`: the password is right and the account has a second factor. The error \
                    carries `mfa_token` (single use, 5 minutes) and `methods` (`totp`, `recovery_code`); send it \
                    with a code to `POST /v1/auth/login/mfa` for the tokens.",
            ),
            Self::MfaStepUpRequired => (
                S::FORBIDDEN,
                "mfa_step_up_required", "prove your second factor at /v1/auth/reauthenticate, then try again",
                "The account has a second factor and the session has not proved it within \
                    `FLEXAUTH_REAUTHENTICATION_WINDOW`. Send a code to `/v1/auth/reauthenticate`.",
            ),
            Self::ReauthenticationRequired => (
                S::FORBIDDEN,
                "reauthentication_required", "re-enter your password at /v1/auth/reauthenticate, then try again",
                "The session has not logged in or re-authenticated within `FLEXAUTH_REAUTHENTICATION_WINDOW`. \
                    Re-enter the password at `/v1/auth/reauthenticate`.",
            ),
            Self::ApiKeyNotFound => (S::NOT_FOUND, "api_key_not_found", "no such API key", "No such API key of the \
                caller's account, or it is already revoked."),
            Self::SessionNotFound => (S::NOT_FOUND, "session_not_found", "no such session", "No such session of the \
                caller's account."),
            Self::FactorNotFound => (S::NOT_FOUND, "factor_not_found", "no such second factor", "No such second \
                factor of the caller's account, or its enrolment waited more than an hour for its first code."),
            Self::PasskeysUnavailable => (
                S::NOT_FOUND,
                "passkeys_unavailable", "passkeys are not available on this server",
                "The server has no WebAuthn relying party: its public URL is on an IP address and \
                    `FLEXAUTH_WEBAUTHN_RP_ID` names none (WebAuthn needs a domain; `localhost` works for \
                    development).",
            ),
            Self::NotFound => (S::NOT_FOUND, "not_found", "no such endpoint", "No such endpoint."),
            Self::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this \
                endpoint", "The path exists, but not with this method."),
            Self::EmailChangeConflict => (
                S::CONFLICT,
                "email_change_conflict", "the address is not available; nothing was changed",
                "`POST /v1/auth/email/confirm`: a verified account has the new address now, or the account's \
                    address or password changed since the link was sent. `POST /v1/auth/email/undo`: another account holds the old address now. Nothing was changed.",
            ),
            Self::FactorAlreadyConfirmed => (S::CONFLICT, "factor_already_confirmed", "the factor is confirmed \
                already", "`POST /v1/auth/mfa/totp/{factor_id}/confirm`: the factor was confirmed before."),
            Self::NoSecondFactor => (S::CONFLICT, "no_second_factor", "the account has no second factor", "`POST \
                /v1/auth/mfa/recovery-codes`: recovery codes come with a confirmed factor; add one first."),
            Self::TooManyFactors => (S::CONFLICT, "too_many_factors", "the account has the most factors it may have",
                "`POST /v1/auth/mfa/totp`: the account has 10 confirmed factors, or 10 enrolments waiting for \
                    their first code within the hour; remove one first."),
            Self::RateLimited => (
                S::TOO_MANY_REQUESTS,
                "rate_limited", "too many attempts; try again later",
                "Over a rate limit: `Retry-After` gives the seconds to wait; `RateLimit-Policy` and `RateLimit` \
                    name the limit, what is left and when it resets.",
            ),
            Self::Overloaded => (
                S::SERVICE_UNAVAILABLE,
                "overloaded", "the server is busy; try again in a moment",
                "The password hashing pool is full: answered at once, before any hashing, with `Retry-After: 1`. \
                    Try again.",
            ),
            Self::NotReady => (
                S::SERVICE_UNAVAILABLE,
                "not_ready", "not ready for traffic",
                "`/readyz`: the database does not answer or lacks a migration this version needs, or the instance \
                    is draining for a shutdown.",
            ),
            Self::Unavailable => (
                S::SERVICE_UNAVAILABLE,
                "unavailable", "the service is unavailable for a moment; try again",
                "The database cannot be reached: answered within about 1.5 s with `Retry-After: 2`. Nothing was \
                    changed; try again.",
            ),
            Self::InternalError => (S::INTERNAL_SERVER_ERROR, "internal_error", "An unexpected error occurred.", "Anything unexpected. The message quotes the request id."),
        };
        ErrorSpec { status, code, message, meaning }
    }

    /// The code as the envelope spells it.
    pub const fn as_str(self) -> &'static str {
        self.spec().code
    }

    /// The status the code is answered with.
    pub const fn status(self) -> StatusCode {
        self.spec().status
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn every_code_is_listed_once_with_its_own_text() {
        let mut texts: Vec<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), ErrorCode::ALL.len());
    }
}
