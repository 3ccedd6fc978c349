//! Second factors: TOTP enrolment, the factor list, removal, recovery codes, and the second
//! step of a login.

use actix_web::{web, HttpRequest, HttpResponse};
use flexauth_domain::mfa::{CeremonyId, Factor, FactorId, FactorName, MfaOverview, RecoveryCode, SecondFactorProof};
use flexauth_domain::secret::LinkToken;
use serde::{Deserialize, Serialize};

use super::{optional_rfc3339, rfc3339, Data};
use crate::auth::LiveCaller;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// A second factor as its owner sees it (never its secret).
#[derive(Serialize, utoipa::ToSchema)]
pub struct FactorView {
    id: String,
    /// `totp`.
    #[schema(value_type = String, pattern = "^(totp|passkey)$")]
    kind: &'static str,
    name: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    last_used_at: Option<String>,
}

pub(crate) fn factor_view(factor: &Factor) -> Result<FactorView, ApiError> {
    Ok(FactorView {
        id: factor.id.to_string(),
        kind: factor.kind.as_str(),
        name: factor.name.as_str().to_owned(),
        created_at: rfc3339(factor.created_at)?,
        last_used_at: optional_rfc3339(factor.last_used_at)?,
    })
}

/// The caller's second factors.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MfaView {
    /// The confirmed factors, oldest first.
    factors: Vec<FactorView>,
    /// Unused recovery codes.
    recovery_codes_left: u32,
}

/// List the caller's second factors
///
/// The confirmed factors of the caller's account, oldest first, and how many unused recovery codes are left.
/// JWT only: 403 jwt_required with an API key. Account management: the session of the access token is looked up
/// on every call; a token of an ended session gets `401 invalid_token`.
#[utoipa::path(
    get, path = "/v1/auth/mfa", operation_id = "listSecondFactors", tag = "mfa", security(("bearer" = [])),
    responses((status = 200, description = "The factors and the recovery codes left.", body = Data<MfaView>)),
    extensions(("x-flexauth-errors" = json!(["missing_token", "invalid_token", "jwt_required", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn list(state: web::Data<AppState>, caller: LiveCaller) -> Result<HttpResponse, ApiError> {
    let MfaOverview { factors, recovery_codes_left } = state.mfa.overview(&caller).await?;
    let factors = factors.iter().map(factor_view).collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(Data { data: MfaView { factors, recovery_codes_left } }))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct EnrolBody {
    /// A label to tell factors apart ("phone"): 1 to 64 characters, no control characters.
    /// Without it, "authenticator app".
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: Option<String>,
}

/// What an authenticator app needs; the secret is shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TotpEnrolmentView {
    factor_id: String,
    /// The shared secret in base32, for typing in by hand.
    secret: String,
    /// `otpauth://totp/…`: SHA-1, 6 digits, 30 seconds.
    otpauth_uri: String,
    /// The URI as a QR code: an SVG document.
    qr_svg: String,
}

/// Start adding an authenticator app
///
/// Creates an unconfirmed TOTP factor and returns its secret, its `otpauth://` URI and that URI as an SVG QR code.
/// The factor counts only once `POST /v1/auth/mfa/totp/{factor_id}/confirm` sees a first code, within an hour.
/// The body is optional. Needs a recent authentication (`403 reauthentication_required`), and, when the account
/// already has a factor, a recent second factor (`403 mfa_step_up_required`). JWT only.
#[utoipa::path(
    post, path = "/v1/auth/mfa/totp", operation_id = "enrolTotp", tag = "mfa", security(("bearer" = [])),
    request_body(content = Option<EnrolBody>, description = "Optional."),
    responses((status = 201, description = "The enrolment; the secret is shown this once.", body = Data<TotpEnrolmentView>, headers(("cache-control" = String, description = "`no-store`.")))),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "missing_token", "invalid_token", "jwt_required", "invalid_factor_name", "reauthentication_required", "mfa_step_up_required", "too_many_factors", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn enrol_totp(
    state: web::Data<AppState>,
    request: HttpRequest,
    caller: LiveCaller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: EnrolBody = super::body::optional_json_object(&request, &body)?;
    let name = body.name.as_deref().map(FactorName::parse).transpose()?;
    let enrolment = state.mfa.begin_totp(&caller, name).await?;
    Ok(HttpResponse::Created().insert_header(("cache-control", "no-store")).json(Data {
        data: TotpEnrolmentView {
            factor_id: enrolment.factor_id.to_string(),
            secret: enrolment.secret.clone(),
            otpauth_uri: enrolment.otpauth_uri.clone(),
            qr_svg: enrolment.qr_svg.clone(),
        },
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CodeBody {
    /// The authenticator's current 6-digit code.
    #[schema(max_length = 64)]
    code: String,
}

/// A confirmed factor, with the recovery codes when it is the account's first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConfirmedView {
    factor_id: String,
    /// Ten single-use codes, shown this once; present when this is the account's first factor.
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_codes: Option<Vec<String>>,
}

fn exposed(codes: &[RecoveryCode]) -> Vec<String> {
    codes.iter().map(|code| code.expose().to_owned()).collect()
}

/// Confirm an authenticator app
///
/// Confirms an enrolment with the authenticator's first code, which is spent. From then on, a login of the account
/// needs a second step. The account's first factor comes with ten recovery codes, shown this once. The owner is
/// emailed "A second factor was added to your account", and the caller's session counts as having proved the
/// factor. Needs a recent authentication, and a recent second factor when the account has one already. JWT only.
#[utoipa::path(
    post, path = "/v1/auth/mfa/totp/{factor_id}/confirm", operation_id = "confirmTotp", tag = "mfa", security(("bearer" = [])),
    params(("factor_id" = String, Path, description = "The factor of the enrolment (a UUID); anything else answers \
        `404 factor_not_found`.")),
    request_body = CodeBody,
    responses((status = 200, description = "The factor counts now.", body = Data<ConfirmedView>, headers(("cache-control" = String, description = "`no-store`.")))),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "missing_token", "invalid_token", "jwt_required", "invalid_code", "reauthentication_required", "mfa_step_up_required", "factor_not_found", "factor_already_confirmed", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn confirm_totp(
    state: web::Data<AppState>,
    request: HttpRequest,
    caller: LiveCaller,
    path: web::Path<String>,
    body: super::JsonAfterCaller<CodeBody>,
) -> Result<HttpResponse, actix_web::Error> {
    let body = body?.into_inner();
    let id = FactorId::from_uuid(super::path_id(&path, ErrorCode::FactorNotFound)?);
    let client = state.client_info(&request);
    let confirmed = state.sessions.confirm_totp(&caller, id, &body.code, client).await.map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().insert_header(("cache-control", "no-store")).json(Data {
        data: ConfirmedView {
            factor_id: confirmed.factor_id.to_string(),
            recovery_codes: confirmed.recovery_codes.as_deref().map(exposed),
        },
    }))
}

/// Remove a second factor
///
/// Removes one of the caller's factors, confirmed or not; with the last one go the recovery codes, and logins need
/// the password alone again. The owner is emailed "A second factor was removed from your account". Needs a recent
/// authentication and a recent second factor. JWT only.
#[utoipa::path(
    delete, path = "/v1/auth/mfa/{factor_id}", operation_id = "removeSecondFactor", tag = "mfa", security(("bearer" = [])),
    params(("factor_id" = String, Path, description = "A factor id (a UUID); anything else answers `404 factor_not_found`.")),
    responses((status = 204, description = "The factor is removed. No body.")),
    extensions(("x-flexauth-errors" = json!(["missing_token", "invalid_token", "jwt_required", "reauthentication_required", "mfa_step_up_required", "factor_not_found", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn remove(
    state: web::Data<AppState>,
    request: HttpRequest,
    caller: LiveCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = FactorId::from_uuid(super::path_id(&path, ErrorCode::FactorNotFound)?);
    state.mfa.remove(&caller, id, state.client_info(&request)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A new set of recovery codes.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecoveryCodesView {
    /// Ten single-use codes, shown this once.
    recovery_codes: Vec<String>,
}

/// Make new recovery codes
///
/// Replaces the account's recovery codes by ten new ones, shown this once; the old set stops working. The owner is
/// emailed "Your recovery codes were replaced". Needs a confirmed factor (`409 no_second_factor`), a recent
/// authentication and a recent second factor. JWT only.
#[utoipa::path(
    post, path = "/v1/auth/mfa/recovery-codes", operation_id = "regenerateRecoveryCodes", tag = "mfa", security(("bearer" = [])),
    responses((status = 200, description = "The new codes.", body = Data<RecoveryCodesView>, headers(("cache-control" = String, description = "`no-store`.")))),
    extensions(("x-flexauth-errors" = json!(["missing_token", "invalid_token", "jwt_required", "reauthentication_required", "mfa_step_up_required", "no_second_factor", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn regenerate_recovery_codes(
    state: web::Data<AppState>,
    request: HttpRequest,
    caller: LiveCaller,
) -> Result<HttpResponse, ApiError> {
    let codes = state.mfa.regenerate_recovery_codes(&caller, state.client_info(&request)).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(Data { data: RecoveryCodesView { recovery_codes: exposed(&codes) } }))
}

/// The second step with the authenticator's code.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeStep {
    /// The `mfa_token` of the login's `403 mfa_required` answer.
    #[schema(max_length = 256)]
    mfa_token: String,
    /// The authenticator's current code.
    #[schema(max_length = 64)]
    code: String,
}

/// The second step with a recovery code.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryCodeStep {
    /// The `mfa_token` of the login's `403 mfa_required` answer.
    #[schema(max_length = 256)]
    mfa_token: String,
    /// One of the account's unused recovery codes.
    #[schema(max_length = 64)]
    recovery_code: String,
}

/// A code or a recovery code, exactly one.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SecondStepBody {
    Code(CodeStep),
    RecoveryCode(RecoveryCodeStep),
}

/// Finish a login with a second factor
///
/// The second step of a login on an account with a second factor: the `mfa_token` of the login's `403
/// mfa_required` answer, and a code of the account's authenticator (`code`) or one of its recovery codes
/// (`recovery_code`), not both (`400 invalid_json`). Answers exactly as a login does, headers and cookies included; the access token's `amr` is
/// `["pwd","otp","mfa"]`. A code passes once. A wrong code gets `400 invalid_code` and counts against the
/// challenge (the 5th ends it: `401 invalid_mfa_token`) and against the account (10 in 15 minutes, 30 a day, `429
/// rate_limited` past them, except for a client that logged in to the account before). A recovery code emails the
/// owner "A recovery code was used" with the count left.
#[utoipa::path(
    post, path = "/v1/auth/login/mfa", operation_id = "loginSecondStep", tag = "sessions",
    params(("Refresh-Token-Transport" = Option<String>, Header, description = "`cookie`: as for `POST /v1/auth/login`.")),
    request_body = SecondStepBody,
    responses((status = 200, description = "A new session's tokens.", body = Data<super::sessions::TokenResponse>, headers(("cache-control" = String, description = "`no-store` (RFC 6749 §5.1)."), ("pragma" = String, description = "`no-cache`."), ("set-cookie" = String, description = "As for `POST /v1/auth/login`.")))),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "invalid_mfa_token", "invalid_code", "account_disabled", "rate_limited", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn login_second_step(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: super::JsonObject<SecondStepBody>,
) -> Result<HttpResponse, ApiError> {
    let (mfa_token, proof) = match body.into_inner() {
        SecondStepBody::Code(CodeStep { mfa_token, code }) => (mfa_token, SecondFactorProof::Code(code)),
        SecondStepBody::RecoveryCode(RecoveryCodeStep { mfa_token, recovery_code }) => {
            (mfa_token, SecondFactorProof::RecoveryCode(recovery_code))
        }
    };
    let token = LinkToken::parse(mfa_token.trim()).map_err(|_| ApiError::from(ErrorCode::InvalidMfaToken))?;
    let mut client = state.client_info(&request);
    client.device = super::sessions::device_cookie(&request);
    let pair = state.sessions.login_second_step(&token, &proof, client).await?;
    Ok(super::sessions::login_response(&state, &request, pair))
}

/// A passkey ceremony begun: what `navigator.credentials` needs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CeremonyView {
    /// Where the browser's answer goes.
    ceremony_id: String,
    /// The `publicKey` options, as `PublicKeyCredential.parseCreationOptionsFromJSON` (or
    /// `parseRequestOptionsFromJSON`) reads them.
    #[schema(value_type = Object)]
    options: serde_json::Value,
}

fn ceremony_view(started: flexauth_domain::mfa::CeremonyStarted) -> Result<HttpResponse, ApiError> {
    let options = serde_json::from_str(&started.options).map_err(ApiError::unexpected)?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(Data { data: CeremonyView { ceremony_id: started.ceremony_id.to_string(), options } }))
}

/// Start adding a passkey
///
/// Begins a passkey registration for the caller's account: the creation options for
/// `navigator.credentials.create`, valid 5 minutes, and the ceremony to send the browser's answer to. The
/// relying party is `FLEXAUTH_WEBAUTHN_RP_ID`; the page must be on one of `FLEXAUTH_WEBAUTHN_ORIGINS`. Needs a
/// recent authentication, and a recent second factor when the account has one. JWT only.
#[utoipa::path(
    post, path = "/v1/auth/passkeys/registration", operation_id = "startPasskeyRegistration", tag = "mfa", security(("bearer" = [])),
    responses((status = 200, description = "The ceremony and its options.", body = Data<CeremonyView>)),
    extensions(("x-flexauth-errors" = json!(["missing_token", "invalid_token", "jwt_required", "reauthentication_required", "mfa_step_up_required", "too_many_factors", "passkeys_unavailable", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn start_passkey_registration(
    state: web::Data<AppState>,
    caller: LiveCaller,
) -> Result<HttpResponse, ApiError> {
    ceremony_view(state.mfa.begin_passkey_registration(&caller).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasskeyRegistrationBody {
    /// A label to tell factors apart ("laptop"): 1 to 64 characters. Without it, "passkey".
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: Option<String>,
    /// The browser's answer: `credential.toJSON()` of `navigator.credentials.create`.
    #[schema(value_type = Object)]
    credential: serde_json::Value,
}

/// Finish adding a passkey
///
/// Verifies the browser's answer to a registration ceremony; the passkey counts at once (no attestation is
/// asked). The account's first factor comes with ten recovery codes, shown this once. The owner is emailed "A
/// second factor was added to your account". A ceremony finishes once. JWT only.
#[utoipa::path(
    post, path = "/v1/auth/passkeys/registration/{ceremony_id}", operation_id = "finishPasskeyRegistration", tag = "mfa", security(("bearer" = [])),
    params(("ceremony_id" = String, Path, description = "The ceremony of the registration (a UUID); anything else \
        answers `404 invalid_ceremony`.")),
    request_body = PasskeyRegistrationBody,
    responses((status = 201, description = "The passkey counts now.", body = Data<ConfirmedView>, headers(("cache-control" = String, description = "`no-store`.")))),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "missing_token", "invalid_token", "jwt_required", "invalid_factor_name", "reauthentication_required", "mfa_step_up_required", "invalid_ceremony", "passkey_refused", "passkeys_unavailable", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all, fields(account_id = %caller.account_id()))]
pub async fn finish_passkey_registration(
    state: web::Data<AppState>,
    request: HttpRequest,
    caller: LiveCaller,
    path: web::Path<String>,
    body: super::JsonAfterCaller<PasskeyRegistrationBody>,
) -> Result<HttpResponse, actix_web::Error> {
    let body = body?.into_inner();
    let id = CeremonyId::parse(&path).ok_or_else(|| ApiError::from(ErrorCode::InvalidCeremony))?;
    let name = body.name.as_deref().map(FactorName::parse).transpose().map_err(ApiError::from)?;
    let client = state.client_info(&request);
    let credential = body.credential.to_string();
    let confirmed =
        state.mfa.finish_passkey_registration(&caller, id, name, &credential, client).await.map_err(ApiError::from)?;
    Ok(HttpResponse::Created().insert_header(("cache-control", "no-store")).json(Data {
        data: ConfirmedView {
            factor_id: confirmed.factor_id.to_string(),
            recovery_codes: confirmed.recovery_codes.as_deref().map(exposed),
        },
    }))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct PasskeyAuthenticationBody {
    /// The `mfa_token` of a login's `403 mfa_required` answer, for a passkey as its second
    /// step; without it, a passwordless login with any discoverable passkey.
    #[schema(max_length = 256)]
    mfa_token: Option<String>,
}

/// Start a passkey login
///
/// Begins a login with a passkey: with the `mfa_token` of a login's `403 mfa_required` answer, as its second step
/// (the options list the account's passkeys); without one, passwordless (any discoverable passkey of this relying
/// party, nothing typed). The body is optional. The request options are for `navigator.credentials.get`, valid 5
/// minutes. One client address may begin 30 a minute (`429 rate_limited` past them).
#[utoipa::path(
    post, path = "/v1/auth/passkeys/authentication", operation_id = "startPasskeyAuthentication", tag = "sessions",
    request_body(content = Option<PasskeyAuthenticationBody>, description = "Optional."),
    responses((status = 200, description = "The ceremony and its options.", body = Data<CeremonyView>)),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "invalid_mfa_token", "rate_limited", "passkeys_unavailable", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn start_passkey_authentication(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: PasskeyAuthenticationBody = super::body::optional_json_object(&request, &body)?;
    let token = body
        .mfa_token
        .map(|token| LinkToken::parse(token.trim()).map_err(|_| ApiError::from(ErrorCode::InvalidMfaToken)))
        .transpose()?;
    let client = state.client_info(&request);
    ceremony_view(state.sessions.begin_passkey_login(token.as_ref(), &client).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasskeyAssertionBody {
    /// The browser's answer: `credential.toJSON()` of `navigator.credentials.get`.
    #[schema(value_type = Object)]
    credential: serde_json::Value,
}

/// Finish a passkey login
///
/// Verifies the browser's answer to a login ceremony and answers exactly as a login does, headers and cookies
/// included. As a second step it spends the login's challenge, and the access token's `amr` is `["pwd","hwk","mfa"]`
/// (`swk` for a synced passkey); passwordless, `["hwk","mfa"]` or `["swk","mfa"]`: the passkey verified its user.
/// A signature counter of 0 (synced passkeys) is accepted; a non-zero counter that went backwards is refused
/// (`400 passkey_refused`) and logged.
#[utoipa::path(
    post, path = "/v1/auth/passkeys/authentication/{ceremony_id}", operation_id = "finishPasskeyAuthentication", tag = "sessions",
    params(("ceremony_id" = String, Path, description = "The ceremony of the login (a UUID); anything else answers \
        `400 invalid_ceremony`."), ("Refresh-Token-Transport" = Option<String>, Header, description = "`cookie`: as for `POST /v1/auth/login`.")),
    request_body = PasskeyAssertionBody,
    responses((status = 200, description = "A new session's tokens.", body = Data<super::sessions::TokenResponse>, headers(("cache-control" = String, description = "`no-store` (RFC 6749 §5.1)."), ("pragma" = String, description = "`no-cache`."), ("set-cookie" = String, description = "As for `POST /v1/auth/login`.")))),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "invalid_ceremony", "passkey_refused", "invalid_mfa_token", "account_disabled", "passkeys_unavailable", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn finish_passkey_authentication(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: super::JsonObject<PasskeyAssertionBody>,
) -> Result<HttpResponse, ApiError> {
    let id = CeremonyId::parse(&path).ok_or_else(|| ApiError::from(ErrorCode::InvalidCeremony))?;
    let credential = body.into_inner().credential.to_string();
    let mut client = state.client_info(&request);
    client.device = super::sessions::device_cookie(&request);
    let pair = state.sessions.login_with_passkey(id, &credential, client).await?;
    Ok(super::sessions::login_response(&state, &request, pair))
}
