//! The HTTP API, one file per endpoint group. Handlers parse input into domain types, call
//! one service method and map the result.

mod account;
mod accounts;
mod api_keys;
mod body;
mod check;
mod events;
mod fallback;
mod health;
mod introspect;
mod jwks;
mod mfa;
mod openapi;
mod pages;
mod passwords;
mod sessions;
mod usage;

use actix_web::{guard, web};
use serde::Serialize;
use time::OffsetDateTime;

pub use account::{export_view, ExportView};
pub use fallback::not_found;
pub use openapi::document as openapi_document;

use crate::error::ApiError;
pub(crate) use body::{JsonAfterCaller, JsonObject};

const FORM: &str = "application/x-www-form-urlencoded";

/// A route for GET that also answers HEAD (the same status and headers, no body), as HTTP
/// expects of every GET resource.
fn get() -> actix_web::Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// Registers every endpoint. Each path is one resource, so a known path asked with another
/// method answers 405 rather than 404.
pub fn configure(config: &mut web::ServiceConfig) {
    let resource = |path: &str, allow: &'static str| {
        web::resource(path.to_owned()).default_service(web::to(move || fallback::method_not_allowed(allow)))
    };
    // The hot paths first: actix tries the resources in this order, and each resource with
    // a `{id}` segment before a path costs that path a regex match.
    config
        .service(resource("/v1/auth/introspect", "POST").route(web::post().to(introspect::introspect)))
        .service(
            resource("/v1/auth/check", CHECK_METHODS)
                .route(web::route().guard(guard::fn_guard(is_check_method)).to(check::check)),
        )
        .service(resource("/v1/usage", "GET, HEAD").route(get().to(usage::usage)))
        .service(resource("/healthz", "GET, HEAD").route(get().to(health::healthz)))
        .service(resource("/readyz", "GET, HEAD").route(get().to(health::readyz)))
        .service(resource("/v1/auth/signup", "POST").route(web::post().to(accounts::signup)))
        .service(
            resource("/v1/auth/verify", "GET, HEAD, POST")
                .route(get().to(accounts::confirmation_page))
                .route(web::post().guard(guard::fn_guard(is_form)).to(accounts::confirm_from_form))
                .route(web::post().to(accounts::verify)),
        )
        .service(resource("/v1/auth/verify/resend", "POST").route(web::post().to(accounts::resend_verification)))
        .service(resource("/v1/auth/me", "GET, HEAD").route(get().to(accounts::me)))
        .service(resource("/v1/auth/login", "POST").route(web::post().to(sessions::login)))
        .service(resource("/v1/auth/login/mfa", "POST").route(web::post().to(mfa::login_second_step)))
        .service(
            resource("/v1/auth/passkeys/authentication", "POST")
                .route(web::post().to(mfa::start_passkey_authentication)),
        )
        .service(
            resource("/v1/auth/passkeys/authentication/{ceremony_id}", "POST")
                .route(web::post().to(mfa::finish_passkey_authentication)),
        )
        .service(
            resource("/v1/auth/passkeys/registration", "POST").route(web::post().to(mfa::start_passkey_registration)),
        )
        .service(
            resource("/v1/auth/passkeys/registration/{ceremony_id}", "POST")
                .route(web::post().to(mfa::finish_passkey_registration)),
        )
        .service(resource("/v1/auth/refresh", "POST").route(web::post().to(sessions::refresh)))
        .service(resource("/v1/auth/logout", "POST").route(web::post().to(sessions::logout)))
        .service(resource("/v1/auth/reauthenticate", "POST").route(web::post().to(sessions::reauthenticate)))
        .service(resource("/v1/auth/sessions", "GET, HEAD").route(get().to(sessions::list)))
        .service(resource("/v1/auth/events", "GET, HEAD").route(get().to(events::list)))
        .service(resource("/v1/auth/sessions/{id}", "DELETE").route(web::delete().to(sessions::revoke)))
        .service(resource("/v1/auth/mfa", "GET, HEAD").route(get().to(mfa::list)))
        .service(resource("/v1/auth/mfa/totp", "POST").route(web::post().to(mfa::enrol_totp)))
        .service(resource("/v1/auth/mfa/recovery-codes", "POST").route(web::post().to(mfa::regenerate_recovery_codes)))
        .service(resource("/v1/auth/mfa/totp/{factor_id}/confirm", "POST").route(web::post().to(mfa::confirm_totp)))
        .service(resource("/v1/auth/mfa/{factor_id}", "DELETE").route(web::delete().to(mfa::remove)))
        .service(resource("/v1/auth/password/forgot", "POST").route(web::post().to(passwords::forgot)))
        .service(
            resource("/v1/auth/password/reset", "GET, HEAD, POST")
                .route(get().to(passwords::reset_form))
                .route(web::post().guard(guard::fn_guard(is_form)).to(passwords::reset_from_form))
                .route(web::post().to(passwords::reset)),
        )
        .service(resource("/v1/auth/password/change", "POST").route(web::post().to(passwords::change)))
        .service(resource("/v1/auth/account", "DELETE").route(web::delete().to(account::delete)))
        .service(resource("/v1/auth/account/export", "GET, HEAD").route(get().to(account::export)))
        .service(resource("/v1/auth/email/change", "POST").route(web::post().to(account::request_change)))
        .service(
            resource("/v1/auth/email/confirm", "GET, HEAD, POST")
                .route(get().to(account::confirm_page))
                .route(web::post().guard(guard::fn_guard(is_form)).to(account::confirm_from_form))
                .route(web::post().to(account::confirm)),
        )
        .service(
            resource("/v1/auth/email/undo", "GET, HEAD, POST")
                .route(get().to(account::undo_page))
                .route(web::post().guard(guard::fn_guard(is_form)).to(account::undo_from_form))
                .route(web::post().to(account::undo)),
        )
        .service(
            resource("/v1/api-keys", "GET, HEAD, POST")
                .route(web::post().to(api_keys::create))
                .route(get().to(api_keys::list)),
        )
        .service(resource("/v1/api-keys/{id}", "DELETE").route(web::delete().to(api_keys::revoke)))
        .service(resource("/.well-known/jwks.json", "GET, HEAD").route(get().to(jwks::jwks)))
        .service(resource("/openapi.json", "GET, HEAD").route(get().to(openapi::serve)));
}

/// The methods `/v1/auth/check` answers: those a gateway may forward a request with.
const CHECK_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

fn is_check_method(context: &guard::GuardContext<'_>) -> bool {
    use actix_web::http::Method;
    [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS]
        .contains(&context.head().method)
}

/// Whether the request body is an HTML form submission (with or without a charset).
fn is_form(context: &guard::GuardContext<'_>) -> bool {
    context
        .head()
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with(FORM))
}

/// An email and a password, as login takes them: only the length limit applies to the
/// password, so that a password that predates a policy change still logs in.
#[derive(serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct Credentials {
    #[schema(format = "email", max_length = 254, examples("you@company.com"))]
    email: String,
    #[schema(max_length = 256, format = Password)]
    password: String,
}

/// The success envelope.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Data<T> {
    pub data: T,
}

/// A human-readable acknowledgement, for endpoints that must not reveal more.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Message {
    #[schema(value_type = String)]
    pub message: &'static str,
}

/// Every instant in a response has one shape: RFC 3339 in UTC with exactly three fractional
/// digits (`2026-12-01T22:31:05.120Z`), whatever precision it was stored or made with.
const RESPONSE_INSTANT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// The id in the path of `DELETE /v1/…/{id}`: a text that is no UUID names nothing the caller
/// has, so it gets the same `not_found` answer as an id of someone else's.
fn path_id(path: &str, not_found: crate::error::ErrorCode) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(path).map_err(|_| ApiError::from(not_found))
}

fn rfc3339(instant: OffsetDateTime) -> Result<String, ApiError> {
    instant.to_offset(time::UtcOffset::UTC).format(RESPONSE_INSTANT).map_err(ApiError::unexpected)
}

fn optional_rfc3339(instant: Option<OffsetDateTime>) -> Result<Option<String>, ApiError> {
    instant.map(rfc3339).transpose()
}
