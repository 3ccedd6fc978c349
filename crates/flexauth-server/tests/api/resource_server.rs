//! The resource-server recipe of docs/resource-servers.md, compiled and run: the Rust snippet
//! between the markers below is the one the page shows (a test compares them), and it accepts
//! flexauth's access tokens and nothing else.

use reqwest::StatusCode;

use crate::helpers::{unique_email, TestEnv, PUBLIC_URL};

// BEGIN docs/resource-servers.md
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// The claims of a flexauth access token.
#[derive(Debug, serde::Deserialize)]
pub struct AccessClaims {
    /// The account id.
    pub sub: String,
    /// The session id.
    pub sid: String,
    pub exp: i64,
    pub iat: i64,
    /// How the login was made (RFC 8176): `["pwd"]`, or `["pwd", "otp", "mfa"]` after a second
    /// factor. Require `mfa` for what only a two-factor login may do.
    #[serde(default)]
    pub amr: Vec<String>,
    /// `aal1` for a password alone, `aal2` with a second factor.
    #[serde(default)]
    pub acr: String,
}

/// Verifies a flexauth access token against the JWKS fetched from
/// `<FLEXAUTH_PUBLIC_URL>/.well-known/jwks.json` (cache it for its `Cache-Control: max-age`;
/// fetch it again, at most once a minute, when a token names an unknown `kid`).
pub fn verify_access_token(token: &str, jwks: &JwkSet, issuer: &str, audience: &str) -> Result<AccessClaims, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|error| error.to_string())?;
    // Pin the algorithm and the token type: a refresh token (`rt+jwt`, HS256) is never an
    // access token.
    if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some("at+jwt") {
        return Err("not a flexauth access token".into());
    }
    let kid = header.kid.ok_or("the token names no key")?;
    let jwk = jwks.find(&kid).ok_or("unknown key: fetch the JWKS again")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|error| error.to_string())?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation).map_err(|error| error.to_string())?;
    Ok(data.claims)
}
// END docs/resource-servers.md

#[test]
fn the_page_shows_the_snippet_this_file_runs() {
    let page = include_str!("../../../../docs/resource-servers.md");
    let source = include_str!("resource_server.rs");
    let between = |text: &str, start: &str, end: &str| {
        text.split(start).nth(1).and_then(|rest| rest.split(end).next()).map(str::trim).map(str::to_owned)
    };
    let shown = between(page, "```rust\n", "\n```").expect("the page has a Rust block");
    let run = between(source, "// BEGIN docs/resource-servers.md\n", "// END docs/resource-servers.md")
        .expect("the markers are here");
    assert_eq!(shown, run, "docs/resource-servers.md and tests/api/resource_server.rs differ");
}

#[actix_web::test]
async fn the_recipe_accepts_an_access_token_and_refuses_refresh_tokens_tampering_and_other_audiences() {
    // jsonwebtoken needs a crypto backend; a resource server enables its `rust_crypto` or
    // `aws_lc_rs` feature, this workspace installs flexauth's own (EdDSA and HS256 only).
    flexauth_jwt::install_crypto_provider();
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let login = app.verified_login(&env, &unique_email("resource")).await;
    let access = login["access_token"].as_str().unwrap();
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status, StatusCode::OK);
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&jwks.text).unwrap();
    let me = app.get_with_bearer("/v1/auth/me", access).await;

    let claims = verify_access_token(access, &jwks, PUBLIC_URL, "flexauth").unwrap();
    assert_eq!(claims.sub, me.body["data"]["id"].as_str().unwrap());
    assert!(claims.exp > claims.iat && !claims.sid.is_empty());
    assert_eq!((claims.amr, claims.acr.as_str()), (vec!["pwd".to_owned()], "aal1"), "a password-only login");

    let refresh = login["refresh_token"].as_str().unwrap();
    assert!(
        verify_access_token(refresh, &jwks, PUBLIC_URL, "flexauth").is_err(),
        "a refresh token is not an access token"
    );
    assert!(verify_access_token(access, &jwks, PUBLIC_URL, "another-service").is_err(), "pinned audience");
    assert!(verify_access_token(access, &jwks, "https://elsewhere.example", "flexauth").is_err(), "pinned issuer");
    let mut tampered = access.to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(verify_access_token(&tampered, &jwks, PUBLIC_URL, "flexauth").is_err());
    let empty = jsonwebtoken::jwk::JwkSet { keys: vec![] };
    assert_eq!(
        verify_access_token(access, &empty, PUBLIC_URL, "flexauth").unwrap_err(),
        "unknown key: fetch the JWKS again"
    );
    app.stop().await;
}
