//! Second factors: TOTP enrolment, the factor list, removal, recovery codes, and the second
//! step of a login.

use actix_web::{web, HttpRequest, HttpResponse};
use flexauth_domain::mfa::{Factor, FactorId, FactorName, MfaOverview, RecoveryCode, SecondFactorProof};
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
    #[schema(min_length = 1, max_length = 64)]
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
    let body: EnrolBody =
        if body.is_empty() { EnrolBody::default() } else { super::body::json_object(&request, &body)? };
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

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SecondStepBody {
    /// The `mfa_token` of the login's `403 mfa_required` answer.
    #[schema(max_length = 256)]
    mfa_token: String,
    /// The authenticator's current code; or else `recovery_code`.
    #[schema(max_length = 64)]
    code: Option<String>,
    /// One of the account's unused recovery codes; or else `code`.
    #[schema(max_length = 64)]
    recovery_code: Option<String>,
}

/// The proof of a body that holds a code or a recovery code, exactly one.
pub(crate) fn proof_of(code: Option<String>, recovery_code: Option<String>) -> Result<SecondFactorProof, ApiError> {
    match (code, recovery_code) {
        (Some(code), None) => Ok(SecondFactorProof::Code(code)),
        (None, Some(code)) => Ok(SecondFactorProof::RecoveryCode(code)),
        _ => Err(ApiError::with_message(ErrorCode::InvalidRequest, "send either `code` or `recovery_code`")),
    }
}

/// Finish a login with a second factor
///
/// The second step of a login on an account with a second factor: the `mfa_token` of the login's `403
/// mfa_required` answer, and a code of the account's authenticator (`code`) or one of its recovery codes
/// (`recovery_code`). Answers exactly as a login does, headers and cookies included; the access token's `amr` is
/// `["pwd","otp","mfa"]`. A code passes once. A wrong code gets `400 invalid_code` and counts against the
/// challenge (the 5th ends it: `401 invalid_mfa_token`) and against the account (10 in 15 minutes, 30 a day, `429
/// rate_limited` past them, except for a client that logged in to the account before). A recovery code emails the
/// owner "A recovery code was used" with the count left.
#[utoipa::path(
    post, path = "/v1/auth/login/mfa", operation_id = "loginSecondStep", tag = "sessions",
    params(("Refresh-Token-Transport" = Option<String>, Header, description = "`cookie`: as for `POST /v1/auth/login`.")),
    request_body = SecondStepBody,
    responses((status = 200, description = "A new session's tokens.", body = Data<super::sessions::TokenResponse>, headers(("cache-control" = String, description = "`no-store` (RFC 6749 §5.1)."), ("pragma" = String, description = "`no-cache`."), ("set-cookie" = String, description = "As for `POST /v1/auth/login`.")))),
    extensions(("x-flexauth-errors" = json!(["invalid_json", "payload_too_large", "request_timeout", "unsupported_media_type", "invalid_request", "invalid_mfa_token", "invalid_code", "account_disabled", "rate_limited", "unavailable", "internal_error"])))
)]
#[tracing::instrument(skip_all)]
pub async fn login_second_step(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: super::JsonObject<SecondStepBody>,
) -> Result<HttpResponse, ApiError> {
    let SecondStepBody { mfa_token, code, recovery_code } = body.into_inner();
    let proof = proof_of(code, recovery_code)?;
    let token = LinkToken::parse(mfa_token.trim()).map_err(|_| ApiError::from(ErrorCode::InvalidMfaToken))?;
    let mut client = state.client_info(&request);
    client.device = super::sessions::device_cookie(&request);
    let pair = state.sessions.login_second_step(&token, &proof, client).await?;
    Ok(super::sessions::login_response(&state, &request, pair))
}
