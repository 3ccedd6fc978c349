use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use flexauth_domain::account::AccountId;
use flexauth_domain::session::{AccessClaims, SessionId, TokenSigner};
use flexauth_jwt::{JwtSettings, JwtTokens, SigningKeyPair};
use reqwest::StatusCode;
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::helpers::{unique_email, Reply, TestApp, TestEnv, PUBLIC_URL};

fn part(token: &str, index: usize) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(index).unwrap()).unwrap()).unwrap()
}

/// Verifies `token` the way an independent resource server would: only the JWKS, raw Ed25519.
fn verify_with_jwks(token: &str, jwks: &Value) -> bool {
    let header = part(token, 0);
    let Some(jwk) = jwks["keys"].as_array().unwrap().iter().find(|key| key["kid"] == header["kid"]) else {
        return false;
    };
    let x: [u8; 32] = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap().try_into().unwrap();
    let (message, signature) = token.rsplit_once('.').unwrap();
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
    header["alg"] == "EdDSA"
        && VerifyingKey::from_bytes(&x).unwrap().verify_strict(message.as_bytes(), &signature).is_ok()
}

#[actix_web::test]
async fn access_tokens_verify_with_nothing_but_the_jwks() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let data = app.verified_login(&env, &unique_email("jwks")).await;
    let access = data["access_token"].as_str().unwrap();
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status, StatusCode::OK);
    let key = &jwks.body["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str(), key["use"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"), Some("sig"))
    );
    assert!(verify_with_jwks(access, &jwks.body));

    let header = part(access, 0);
    assert_eq!(header["typ"], "at+jwt");
    let claims = part(access, 1);
    assert_eq!(claims["iss"], PUBLIC_URL);
    assert_eq!(claims["aud"], "flexauth");
    assert!(Uuid::parse_str(claims["sub"].as_str().unwrap()).is_ok());
    assert!(Uuid::parse_str(claims["sid"].as_str().unwrap()).is_ok());
    assert!(Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    assert_eq!(claims["nbf"], claims["iat"]);
    app.stop().await;
}

fn assert_invalid_token(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    assert_eq!(reply.code(), "invalid_token");
    let challenge = reply.headers.get("www-authenticate").unwrap().to_str().unwrap();
    assert!(
        challenge.starts_with(r#"Bearer realm="flexauth", error="invalid_token", error_description=""#),
        "{challenge}"
    );
}

async fn usage_with(app: &TestApp, token: &str) -> Reply {
    app.get_with_bearer("/v1/usage", token).await
}

#[actix_web::test]
async fn forged_and_misused_tokens_get_401_invalid_token() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let data = app.verified_login(&env, &unique_email("attack")).await;
    let access = data["access_token"].as_str().unwrap();
    let refresh = data["refresh_token"].as_str().unwrap();
    let (header, payload, signature) = {
        let mut parts = access.split('.');
        (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap())
    };

    // Tampered claims under the original signature.
    let mut claims = part(access, 1);
    claims["sub"] = Value::String(Uuid::new_v4().to_string());
    let tampered = format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()));
    assert_invalid_token(&usage_with(&app, &tampered).await);

    // alg: none, unsigned.
    let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#));
    assert_invalid_token(&usage_with(&app, &none).await);

    // Algorithm confusion: HS256 keyed with the public key from the JWKS.
    let jwks = app.get("/.well-known/jwks.json").await.body;
    let public = URL_SAFE_NO_PAD.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.typ = Some("at+jwt".into());
    hs_header.kid = jwks["keys"][0]["kid"].as_str().map(str::to_owned);
    let confused =
        jsonwebtoken::encode(&hs_header, &part(access, 1), &jsonwebtoken::EncodingKey::from_secret(&public)).unwrap();
    assert_invalid_token(&usage_with(&app, &confused).await);

    // A token signed by a key flexauth does not know.
    let foreign_key = SigningKeyPair::from_pem(&SigningKeyPair::generate_pem().unwrap()).unwrap();
    let settings = JwtSettings { issuer: PUBLIC_URL.into(), audience: "flexauth".into(), verified_cache_entries: 1024 };
    let foreign = JwtTokens::new(&foreign_key, &[], settings.clone());
    let claims = AccessClaims {
        account_id: AccountId::from_uuid(Uuid::parse_str(part(access, 1)["sub"].as_str().unwrap()).unwrap()),
        session_id: SessionId::from_uuid(Uuid::new_v4()),
        token_id: Uuid::new_v4(),
        issued_at: OffsetDateTime::now_utc(),
        not_before: OffsetDateTime::now_utc(),
        expires_at: OffsetDateTime::now_utc() + Duration::hours(1),
        methods: flexauth_domain::newtypes::AuthenticationMethods::password(),
    };
    assert_invalid_token(&usage_with(&app, &foreign.sign_access(&claims).unwrap()).await);

    // An expired token signed with the real key.
    let real_pem = flexauth_store::test_db::generated_signing_key_pem(env.store()).await;
    let real = JwtTokens::new(&SigningKeyPair::from_pem(&real_pem).unwrap(), &[], settings);
    // A token of the real key whose nbf lies an hour ahead, its iat now.
    let early = AccessClaims { not_before: claims.issued_at + Duration::hours(1), ..claims.clone() };
    let reply = usage_with(&app, &real.sign_access(&early).unwrap()).await;
    assert_invalid_token(&reply);
    assert!(
        reply.headers.get("www-authenticate").unwrap().to_str().unwrap().contains("not valid yet"),
        "{}",
        reply.text
    );
    let expired = AccessClaims {
        not_before: claims.issued_at - Duration::hours(2),
        issued_at: claims.issued_at - Duration::hours(2),
        expires_at: claims.issued_at - Duration::hours(1),
        ..claims.clone()
    };
    let reply = usage_with(&app, &real.sign_access(&expired).unwrap()).await;
    assert_invalid_token(&reply);
    assert!(reply.headers.get("www-authenticate").unwrap().to_str().unwrap().contains("expired"));
    // The same real key with valid times is accepted: the refusals above are about the token.
    assert_eq!(usage_with(&app, &real.sign_access(&claims).unwrap()).await.status, StatusCode::OK);

    // A refresh token is not an access token, and the reverse.
    assert_invalid_token(&usage_with(&app, refresh).await);
    let as_refresh = app.refresh(access).await;
    assert_eq!((as_refresh.status, as_refresh.code()), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));

    for garbage in ["garbage", "a.b.c", "eyJ.eyJ.sig", "fo_live_notakey"] {
        assert_invalid_token(&usage_with(&app, garbage).await);
    }
    let missing = app.get("/v1/usage").await;
    assert_eq!((missing.status, missing.code()), (StatusCode::UNAUTHORIZED, "missing_token"));
    assert_eq!(missing.headers.get("www-authenticate").unwrap(), r#"Bearer realm="flexauth""#);
    app.stop().await;
}

/// Rotating the signing key logs nobody out: the old key, configured as retiring, still
/// verifies the tokens it signed while the new key signs everything new.
#[actix_web::test]
async fn a_key_rotation_with_the_old_key_retiring_logs_nobody_out() {
    let env = TestEnv::new().await;
    let before = env.spawn().await;
    let session = before.verified_login(&env, &unique_email("rotation")).await;
    before.stop().await;

    let old_pem = flexauth_store::test_db::generated_signing_key_pem(env.store()).await;
    let old_kid = SigningKeyPair::from_pem(&old_pem).unwrap().kid().to_owned();
    let keys = tempfile::tempdir().unwrap();
    let old_file = keys.path().join("old.pem");
    let new_file = keys.path().join("new.pem");
    std::fs::write(&old_file, &old_pem).unwrap();
    std::fs::write(&new_file, SigningKeyPair::generate_pem().unwrap()).unwrap();
    let (old_path, new_path) = (old_file.display().to_string(), new_file.display().to_string());

    let rotated = env.spawn_with(&["--signing-key-file", &new_path, "--retiring-key-files", &old_path]).await;
    let jwks = rotated.get("/.well-known/jwks.json").await.body;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    // A resource server holding only the JWKS still accepts the token the old key signed.
    assert!(
        verify_with_jwks(session["access_token"].as_str().unwrap(), &jwks),
        "the old token verifies through the published JWKS"
    );
    assert_eq!(usage_with(&rotated, session["access_token"].as_str().unwrap()).await.status, StatusCode::OK);
    let refreshed = rotated.refresh(session["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    let new_access = refreshed.body["data"]["access_token"].as_str().unwrap().to_owned();
    assert_ne!(part(&new_access, 0)["kid"], old_kid.as_str(), "new tokens are signed with the new key");
    assert!(verify_with_jwks(&new_access, &jwks));
    rotated.stop().await;

    // Once the old key is retired for good, its tokens stop verifying.
    let retired = env.spawn_with(&["--signing-key-file", &new_path]).await;
    let jwks = retired.get("/.well-known/jwks.json").await.body;
    assert!(!verify_with_jwks(session["access_token"].as_str().unwrap(), &jwks), "a retired key leaves the JWKS");
    assert!(verify_with_jwks(&new_access, &jwks));
    assert_invalid_token(&usage_with(&retired, session["access_token"].as_str().unwrap()).await);
    assert_eq!(usage_with(&retired, &new_access).await.status, StatusCode::OK);
    retired.stop().await;
}
