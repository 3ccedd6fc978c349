//! The OpenAPI document, generated from the code: each handler's `#[utoipa::path]` names its
//! path, parameters, body and success answers, the body and answer types derive their schemas,
//! and each operation lists the error codes it can answer in `x-flexauth-errors`. This module
//! turns those lists into the error answers, with their status, schema and headers, from the
//! one table of codes ([`ErrorCode`]), and adds what every answer carries.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::{account, accounts, api_keys, check, events, health, introspect, jwks, mfa, passwords, sessions, usage};
use crate::error::ErrorCode;

/// The extension in which an operation lists the codes of its error answers.
const ERRORS_EXTENSION: &str = "x-flexauth-errors";

/// The extension that marks a body the operation also takes absent (utoipa marks every body of
/// a type that is not an `Option` required, and an `Option` would allow a JSON `null`).
const OPTIONAL_BODY_EXTENSION: &str = "x-flexauth-optional-body";

const DESCRIPTION: &str = "The HTTP API of flexauth, v1. The prose reference is docs/api.md.

- Request bodies are JSON objects and need `Content-Type: application/json` (else `415 unsupported_media_type`); unknown fields are ignored (except by `POST /v1/auth/email/change`, which refuses them with `400 invalid_json`); a body that is not a JSON object, not of the expected shape or misses a field gets `400 invalid_json`. Bodies over 16 KiB get `413 payload_too_large`.
- Success answers are `{\"data\": …}` (lists: `{\"data\": [ … ]}`); the JWKS is a bare JWK set. The HTML pages \
    behind the links in emails and `204` answers are the other exceptions.
- Errors are `{\"error\": {\"code\", \"message\"}}` with `Cache-Control: no-store`; rely on `code` (`ErrorCode` \
    lists every one, and each answer lists the codes it can carry).
- Email addresses are case-insensitive and stored in lower case, the domain in IDNA ASCII form (`you@bücher.example` and `you@xn--bcher-kva.example` are one account). Passwords are counted in characters as sent, then NFKC-normalised before they are checked against the common-password list or hashed.
- Every response carries `x-request-id`.
- An unknown path answers `404 not_found`; a path below asked with a method it does not list answers `405 method_not_allowed`, with an `Allow` header listing the methods the path serves.";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flexauth",
        description = DESCRIPTION,
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "http://127.0.0.1:8080", description = "The server `cargo run -p flexauth-server` starts")),
    paths(
        accounts::signup,
        accounts::confirmation_page,
        accounts::verify,
        accounts::resend_verification,
        accounts::me,
        sessions::login,
        sessions::refresh,
        sessions::logout,
        sessions::list,
        sessions::revoke,
        sessions::reauthenticate,
        mfa::login_second_step,
        mfa::list,
        mfa::enrol_totp,
        mfa::confirm_totp,
        mfa::remove,
        mfa::regenerate_recovery_codes,
        mfa::start_passkey_registration,
        mfa::finish_passkey_registration,
        mfa::start_passkey_authentication,
        mfa::finish_passkey_authentication,
        events::list,
        passwords::forgot,
        passwords::reset_form,
        passwords::reset,
        passwords::change,
        account::delete,
        account::export,
        account::request_change,
        account::confirm_page,
        account::confirm,
        account::undo_page,
        account::undo,
        api_keys::create,
        api_keys::list,
        api_keys::revoke,
        usage::usage,
        check::check,
        introspect::introspect,
        jwks::jwks,
        serve,
        health::healthz,
        health::readyz,
    ),
    tags(
        (name = "accounts", description = "Sign-up, email verification, and the caller's account: its address \
            change, export and deletion."),
        (name = "sessions", description = "Login, refresh, logout and session management."),
        (name = "passwords", description = "Forgotten and changed passwords."),
        (name = "mfa", description = "Second factors: authenticator apps (TOTP), passkeys and recovery codes."),
        (name = "api-keys", description = "API keys for servers."),
        (name = "usage", description = "The example protected endpoint."),
        (name = "gateway", description = "Checks of bearer credentials for the operator's own API: gateways and \
            resource servers."),
        (name = "keys", description = "Public keys to verify access tokens."),
        (name = "health", description = "Liveness, readiness and this document."),
    ),
)]
struct ApiDocument;

/// This document
///
/// The OpenAPI 3.1 description of this API, generated from the code of the server that answers it.
#[utoipa::path(
    get, path = "/openapi.json", operation_id = "getOpenApi", tag = "health",
    responses((status = 200, description = "This document.", content_type = "application/json", body = Object, headers(("cache-control" = String, description = "`public, max-age=300`."))))
)]
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("cache-control", "public, max-age=300"))
        .body(document())
}

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = serde_json::to_value(ApiDocument::openapi()).unwrap_or_else(|_| json!({}));
        complete(&mut document);
        serde_json::to_string_pretty(&document).unwrap_or_default()
    })
}

/// Adds what the derive cannot say: the error answers of every operation, the headers every
/// answer carries, the security scheme and the shared error schemas.
fn complete(document: &mut Value) {
    if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for operation in item.values_mut() {
                complete_operation(operation);
            }
        }
    }
    let components = document.as_object_mut().map(|root| root.entry("components").or_insert_with(|| json!({})));
    if let Some(components) = components.and_then(Value::as_object_mut) {
        components.insert(
            "securitySchemes".into(),
            json!({
                "bearer": bearer_scheme(),
                "client": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "A resource server registered with `flexauth clients create`: its `client_id` and \
                        `client_secret` (RFC 6749 `client_secret_basic`)."
                }
            }),
        );
        let schemas = components.entry("schemas").or_insert_with(|| json!({}));
        if let Some(schemas) = schemas.as_object_mut() {
            schemas.insert("ErrorCode".into(), error_code_schema());
            schemas.insert(
                "ErrorEnvelope".into(),
                error_envelope(ErrorCode::ALL, "Every error answer (except the HTML pages)."),
            );
        }
    }
}

fn complete_operation(operation: &mut Value) {
    let Some(operation) = operation.as_object_mut() else { return };
    if operation.remove(OPTIONAL_BODY_EXTENSION).is_some() {
        if let Some(body) = operation.get_mut("requestBody").and_then(Value::as_object_mut) {
            body.insert("required".into(), Value::Bool(false));
        }
    }
    let codes: Vec<ErrorCode> = operation
        .remove(ERRORS_EXTENSION)
        .and_then(|listed| listed.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|text| ErrorCode::ALL.iter().copied().find(|code| code.as_str() == text))
        .collect();
    let responses = operation.entry("responses").or_insert_with(|| json!({}));
    let Some(responses) = responses.as_object_mut() else { return };
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for code in codes {
        by_status.entry(code.status().as_u16()).or_default().push(code);
    }
    for (status, codes) in by_status {
        let response = responses.entry(status.to_string()).or_insert_with(|| json!({ "description": "" }));
        add_error_answer(response, &codes);
    }
    for response in responses.values_mut() {
        if let Some(headers) =
            response.as_object_mut().map(|response| response.entry("headers").or_insert_with(|| json!({})))
        {
            if let Some(headers) = headers.as_object_mut() {
                headers.insert(
                    "x-request-id".into(),
                    header(
                        "The request id: the request's own `x-request-id` if it is 1 to 64 letters, digits, `-`, \
                        `_` or `.`, else a new UUID.",
                    ),
                );
            }
        }
    }
}

/// Adds the JSON error envelope of `codes` (all of one status) to an answer, beside any page
/// the answer already describes.
fn add_error_answer(response: &mut Value, codes: &[ErrorCode]) {
    let Some(status) = codes.first().map(|code| code.status()) else { return };
    let Some(response) = response.as_object_mut() else { return };
    let listed =
        codes.iter().map(|code| format!("`{}`: {}", code.as_str(), code.spec().meaning)).collect::<Vec<_>>().join(" ");
    let reason = status.canonical_reason().unwrap_or("Error");
    let earlier = response.get("description").and_then(Value::as_str).unwrap_or_default().to_owned();
    let description = if earlier.is_empty() {
        format!("{reason}. Possible codes: {listed}")
    } else {
        format!("{earlier} As JSON, possible codes: {listed}")
    };
    response.insert("description".into(), Value::String(description));
    let content = response.entry("content").or_insert_with(|| json!({}));
    if let Some(content) = content.as_object_mut() {
        content.insert("application/json".into(), json!({ "schema": error_envelope(codes, "") }));
    }
    let headers = response.entry("headers").or_insert_with(|| json!({}));
    let Some(headers) = headers.as_object_mut() else { return };
    headers.insert("cache-control".into(), header("`no-store`."));
    if codes == [ErrorCode::InvalidClient] {
        headers.insert("www-authenticate".into(), header("`Basic realm=\"flexauth\", charset=\"UTF-8\"`."));
    } else if status.as_u16() == 401 {
        headers.insert(
            "www-authenticate".into(),
            header(
                "`Bearer realm=\"flexauth\"`, and for `invalid_token` `Bearer realm=\"flexauth\", \
                error=\"invalid_token\", error_description=\"…\"` (RFC 6750).",
            ),
        );
    }
    if codes.contains(&ErrorCode::InsufficientScope) {
        headers.insert(
            "www-authenticate".into(),
            header(
                "`Bearer realm=\"flexauth\", error=\"insufficient_scope\", error_description=\"…\", scope=\"…\"` \
                (RFC 6750), `scope` naming every scope asked for.",
            ),
        );
    }
    if codes.iter().any(|code| matches!(code, ErrorCode::RateLimited | ErrorCode::Overloaded | ErrorCode::Unavailable))
    {
        headers.insert(
            "retry-after".into(),
            header(
                "Seconds to wait before trying again (RFC 9110): the limit's reset for `rate_limited`, 1 for \
                `overloaded`, 2 for `unavailable`.",
            ),
        );
    }
    if codes.contains(&ErrorCode::RateLimited) {
        headers.insert(
            "ratelimit-policy".into(),
            header(
                "The limit that applied, as `\"name\";q=<limit>;w=<window seconds>` (IETF RateLimit header fields).",
            ),
        );
        headers.insert(
            "ratelimit".into(),
            header("What is left of that limit, as `\"name\";r=<remaining>;t=<seconds until reset>`."),
        );
    }
}

fn header(description: &str) -> Value {
    json!({ "description": description, "schema": { "type": "string" } })
}

/// The error envelope whose `code` is one of `codes`.
fn error_envelope(codes: &[ErrorCode], description: &str) -> Value {
    let code = if codes.len() == ErrorCode::ALL.len() {
        json!({ "$ref": "#/components/schemas/ErrorCode" })
    } else {
        json!({ "type": "string", "enum": codes.iter().map(|code| code.as_str()).collect::<Vec<_>>() })
    };
    let mut envelope = json!({
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": code,
                    "message": { "type": "string", "description": "A sentence for humans. For `internal_error` a \
                        fixed sentence quoting the request id." }
                }
            }
        }
    });
    if let (false, Some(object)) = (description.is_empty(), envelope.as_object_mut()) {
        object.insert("description".into(), Value::String(description.to_owned()));
    }
    envelope
}

fn error_code_schema() -> Value {
    let table = ErrorCode::ALL
        .iter()
        .map(|code| format!("- `{}` ({}): {}", code.as_str(), code.status().as_u16(), code.spec().meaning))
        .collect::<Vec<_>>()
        .join("\n");
    let mut schema = Map::new();
    schema.insert("type".into(), json!("string"));
    schema.insert("description".into(), Value::String(format!("Every error code, with its status:\n\n{table}")));
    schema.insert("enum".into(), json!(ErrorCode::ALL.iter().map(|code| code.as_str()).collect::<Vec<_>>()));
    Value::Object(schema)
}

fn bearer_scheme() -> Value {
    json!({
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <credential>`, where the credential is either a JWT access token \
            (from login or refresh) or an API key (`fo_live_…`); flexauth tells them apart by the `fo_live_` prefix. The scheme name is case-insensitive. Operations marked \"JWT only\" answer `403 jwt_required` to an API key. Every 401 carries `WWW-Authenticate`. Access tokens are checked without a database read (unless `FLEXAUTH_VERIFY_SESSION_ON_REQUEST` is on) on `/v1/usage`, `/v1/auth/me` and logout with scope `current`; the account-management operations look the session up on every call, and a token of an ended session gets `401 invalid_token` with `error_description=\"the session of the access token has ended\"`."
    })
}
