use super::*;
use flexauth_domain::newtypes::{AuthenticationMethod, AuthenticationMethods};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use time::macros::datetime;
use uuid::Uuid;

const RFC8410_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";

fn settings() -> JwtSettings {
    JwtSettings { issuer: "https://auth.example.com".into(), audience: "flexauth".into(), verified_cache_entries: 1024 }
}

fn key() -> SigningKeyPair {
    SigningKeyPair::from_pem(&SigningKeyPair::generate_pem().unwrap()).unwrap()
}

fn access_claims() -> AccessClaims {
    let issued_at = datetime!(2026-01-01 0:00 UTC);
    AccessClaims {
        account_id: AccountId::from_uuid(Uuid::from_u128(1)),
        session_id: SessionId::from_uuid(Uuid::from_u128(2)),
        token_id: Uuid::from_u128(3),
        issued_at,
        not_before: issued_at,
        expires_at: issued_at + time::Duration::hours(1),
        methods: AuthenticationMethods::password(),
    }
}

fn refresh_claims() -> RefreshClaims {
    let issued_at = datetime!(2026-01-01 0:00 UTC);
    RefreshClaims {
        account_id: AccountId::from_uuid(Uuid::from_u128(1)),
        session_id: SessionId::from_uuid(Uuid::from_u128(2)),
        secret: RefreshSecret::from_bytes([9; 32]),
        issued_at,
        expires_at: issued_at + time::Duration::days(30),
    }
}

fn decode_part(token: &str, index: usize) -> serde_json::Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn access_tokens_carry_the_header_and_claims_of_the_contract() {
    let key = key();
    let tokens = JwtTokens::new(&key, &[], settings());
    let token = tokens.sign_access(&access_claims()).unwrap();
    assert!(token.starts_with("eyJ"));
    let header = decode_part(&token, 0);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], key.kid());
    let claims = decode_part(&token, 1);
    assert_eq!(claims["iss"], "https://auth.example.com");
    assert_eq!(claims["aud"], "flexauth");
    assert_eq!(claims["sub"], Uuid::from_u128(1).to_string());
    assert_eq!(claims["sid"], Uuid::from_u128(2).to_string());
    assert_eq!(claims["jti"], Uuid::from_u128(3).to_string());
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    assert_eq!(claims["nbf"], claims["iat"]);
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    assert_eq!(claims["acr"], "aal1");
    assert_eq!(tokens.verify_access(&token).unwrap(), access_claims());
}

#[test]
fn a_multi_factor_login_says_so_in_amr_and_acr_and_a_token_without_them_reads_as_a_password_login() {
    let tokens = JwtTokens::new(&key(), &[], settings());
    let both = AuthenticationMethods::password().with(AuthenticationMethod::OneTimeCode);
    let claims = AccessClaims { methods: both, ..access_claims() };
    let token = tokens.sign_access(&claims).unwrap();
    let payload = decode_part(&token, 1);
    assert_eq!(payload["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
    assert_eq!(payload["acr"], "aal2");
    assert_eq!(tokens.verify_access(&token).unwrap(), claims);
}

#[test]
fn signing_is_deterministic() {
    let tokens = JwtTokens::new(&key(), &[], settings());
    assert_eq!(tokens.sign_access(&access_claims()).unwrap(), tokens.sign_access(&access_claims()).unwrap());
    assert_eq!(tokens.sign_refresh(&refresh_claims()).unwrap(), tokens.sign_refresh(&refresh_claims()).unwrap());
}

#[test]
fn refresh_tokens_round_trip_and_look_like_jwts() {
    let tokens = JwtTokens::new(&key(), &[], settings());
    let token = tokens.sign_refresh(&refresh_claims()).unwrap();
    assert!(token.starts_with("eyJ"));
    assert_eq!(decode_part(&token, 0)["typ"], "rt+jwt");
    assert_eq!(tokens.verify_refresh(&token).unwrap(), refresh_claims());
}

#[test]
fn a_refresh_token_is_never_an_access_token_nor_the_reverse() {
    let tokens = JwtTokens::new(&key(), &[], settings());
    let access = tokens.sign_access(&access_claims()).unwrap();
    let refresh = tokens.sign_refresh(&refresh_claims()).unwrap();
    assert_eq!(tokens.verify_access(&refresh), Err(TokenRejection::WrongType));
    assert_eq!(tokens.verify_refresh(&access), Err(TokenRejection::WrongType));
}

#[test]
fn a_tampered_payload_fails_the_signature_check() {
    let tokens = JwtTokens::new(&key(), &[], settings());
    let token = tokens.sign_access(&access_claims()).unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = decode_part(&token, 1);
    claims["sub"] = serde_json::json!(Uuid::from_u128(99).to_string());
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    assert_eq!(tokens.verify_access(&parts.join(".")), Err(TokenRejection::BadSignature));
}

#[test]
fn an_unsigned_alg_none_token_is_refused() {
    let tokens = JwtTokens::new(&key(), &[], settings());
    let token = tokens.sign_access(&access_claims()).unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
    // jsonwebtoken has no "none" algorithm: the header does not even parse.
    assert_eq!(tokens.verify_access(&format!("{header}.{payload}.")), Err(TokenRejection::Malformed));
}

#[test]
fn a_token_signed_by_a_foreign_key_is_refused_even_under_our_kid() {
    let ours = key();
    let tokens = JwtTokens::new(&ours, &[], settings());
    let foreign = JwtTokens::new(&key(), &[], settings());
    let forged = foreign.sign_access(&access_claims()).unwrap();
    assert_eq!(tokens.verify_access(&forged), Err(TokenRejection::UnknownKey));

    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some(ACCESS_TOKEN_TYPE.into());
    header.kid = Some(ours.kid().to_owned());
    let payload = decode_part(&forged, 1);
    let foreign_key = key();
    let forged_with_our_kid =
        jsonwebtoken::encode(&header, &payload, &EncodingKey::from_ed_der(foreign_key.private_pkcs8_der())).unwrap();
    assert_eq!(tokens.verify_access(&forged_with_our_kid), Err(TokenRejection::BadSignature));
}

#[test]
fn an_hmac_token_keyed_with_our_public_key_is_refused() {
    let ours = key();
    let tokens = JwtTokens::new(&ours, &[], settings());
    let payload = decode_part(&tokens.sign_access(&access_claims()).unwrap(), 1);
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some(ACCESS_TOKEN_TYPE.into());
    header.kid = Some(ours.kid().to_owned());
    let confused = jsonwebtoken::encode(&header, &payload, &EncodingKey::from_secret(ours.public_key())).unwrap();
    assert_eq!(tokens.verify_access(&confused), Err(TokenRejection::WrongType));
}

#[test]
fn tokens_for_another_issuer_or_audience_are_refused() {
    let key = key();
    let ours = JwtTokens::new(&key, &[], settings());
    let other_issuer = JwtTokens::new(
        &key,
        &[],
        JwtSettings {
            issuer: "https://evil.example".into(),
            audience: "flexauth".into(),
            verified_cache_entries: 1024,
        },
    );
    let other_audience = JwtTokens::new(
        &key,
        &[],
        JwtSettings {
            issuer: "https://auth.example.com".into(),
            audience: "billing".into(),
            verified_cache_entries: 1024,
        },
    );
    assert_eq!(
        ours.verify_access(&other_issuer.sign_access(&access_claims()).unwrap()),
        Err(TokenRejection::WrongParty)
    );
    assert_eq!(
        ours.verify_access(&other_audience.sign_access(&access_claims()).unwrap()),
        Err(TokenRejection::WrongParty)
    );
}

#[test]
fn garbage_is_malformed() {
    let tokens = JwtTokens::new(&key(), &[], settings());
    for garbage in ["", "abc", "a.b.c", "fo_live_123"] {
        assert_eq!(tokens.verify_access(garbage), Err(TokenRejection::Malformed), "{garbage}");
        assert_eq!(tokens.verify_refresh(garbage).err(), Some(TokenRejection::Malformed), "{garbage}");
    }
    // A well-formed EdDSA header without flexauth's `typ` is refused for its type.
    assert_eq!(tokens.verify_access("eyJhbGciOiJFZERTQSJ9.e30."), Err(TokenRejection::WrongType));
    assert_eq!(tokens.verify_refresh("eyJhbGciOiJFZERTQSJ9.e30.").err(), Some(TokenRejection::WrongType));
}

#[test]
fn a_retiring_key_still_verifies_tokens_it_signed() {
    let old = key();
    let new = key();
    let before = JwtTokens::new(&old, &[], settings()).sign_access(&access_claims()).unwrap();
    let after_rotation = JwtTokens::new(&new, std::slice::from_ref(&old), settings());
    assert_eq!(after_rotation.verify_access(&before).unwrap(), access_claims());
    assert_eq!(after_rotation.jwks().keys.len(), 2);
}

#[test]
fn an_openssl_style_pem_loads_with_a_stable_thumbprint_kid() {
    let key = SigningKeyPair::from_pem(RFC8410_PEM).unwrap();
    let public_hex: String = key.public_key().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(public_hex, "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1");
    assert_eq!(SigningKeyPair::from_pem(RFC8410_PEM).unwrap().kid(), key.kid());
    let jwk = key.jwk();
    assert_eq!((jwk.kty, jwk.crv, jwk.alg, jwk.usage), ("OKP", "Ed25519", "EdDSA", "sig"));
}

#[test]
fn a_pem_that_is_not_ed25519_is_refused() {
    assert!(matches!(SigningKeyPair::from_pem("not a pem"), Err(KeyError::NotEd25519Pem)));
}

#[test]
fn debug_output_never_shows_the_private_key() {
    let key = key();
    let debug = format!("{key:?}");
    assert!(debug.contains(key.kid()));
    assert!(!debug.contains("private"));
}

fn current_access_claims(token_id: u128) -> AccessClaims {
    let issued_at = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    AccessClaims {
        token_id: Uuid::from_u128(token_id),
        issued_at,
        not_before: issued_at,
        expires_at: issued_at + time::Duration::hours(1),
        ..access_claims()
    }
}

#[test]
fn refresh_tokens_are_signed_with_a_secret_no_jwks_key_verifies() {
    let key = key();
    let tokens = JwtTokens::new(&key, &[], settings());
    let refresh = tokens.sign_refresh(&refresh_claims()).unwrap();
    let header = decode_part(&refresh, 0);
    assert_eq!(header["alg"], "HS256");
    let kid = header["kid"].as_str().unwrap();
    assert!(tokens.jwks().keys.iter().all(|jwk| jwk.kid != kid), "the refresh kid {kid} must not be a JWKS key id");

    // A resource server that verifies with the published key and forgets to check `typ`
    // still cannot accept a refresh token: no JWKS key verifies its signature.
    let public = DecodingKey::from_ed_der(key.public_key());
    let mut forgets_typ = Validation::new(Algorithm::EdDSA);
    forgets_typ.validate_exp = false;
    forgets_typ.validate_aud = false;
    forgets_typ.required_spec_claims.clear();
    assert!(jsonwebtoken::decode::<serde_json::Value>(&refresh, &public, &forgets_typ).is_err());
    // While an access token passes that same check.
    let access = tokens.sign_access(&access_claims()).unwrap();
    assert!(jsonwebtoken::decode::<serde_json::Value>(&access, &public, &forgets_typ).is_ok());
}

#[test]
fn a_refresh_token_signed_with_ed25519_by_an_earlier_version_still_verifies() {
    let key = key();
    let tokens = JwtTokens::new(&key, &[], settings());
    let payload = decode_part(&tokens.sign_refresh(&refresh_claims()).unwrap(), 1);
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some(REFRESH_TOKEN_TYPE.into());
    header.kid = Some(key.kid().to_owned());
    let legacy = jsonwebtoken::encode(&header, &payload, &EncodingKey::from_ed_der(key.private_pkcs8_der())).unwrap();
    assert_eq!(tokens.verify_refresh(&legacy).unwrap(), refresh_claims());

    // The same under a key that signed it before a rotation.
    let rotated = JwtTokens::new(&self::key(), std::slice::from_ref(&key), settings());
    assert_eq!(rotated.verify_refresh(&legacy).unwrap(), refresh_claims());
    assert_eq!(rotated.verify_refresh(&tokens.sign_refresh(&refresh_claims()).unwrap()).unwrap(), refresh_claims());
}

#[test]
fn a_refresh_token_keyed_with_anything_but_our_secret_is_refused() {
    let key = key();
    let tokens = JwtTokens::new(&key, &[], settings());
    let genuine = tokens.sign_refresh(&refresh_claims()).unwrap();
    let header = decode_part(&genuine, 0);
    let payload = decode_part(&genuine, 1);
    let mut forged_header = Header::new(Algorithm::HS256);
    forged_header.typ = Some(REFRESH_TOKEN_TYPE.into());
    forged_header.kid = Some(header["kid"].as_str().unwrap().to_owned());
    for secret in [key.public_key().as_slice(), b"", b"flexauth refresh-token secret v1"] {
        let forged = jsonwebtoken::encode(&forged_header, &payload, &EncodingKey::from_secret(secret)).unwrap();
        assert_eq!(tokens.verify_refresh(&forged), Err(TokenRejection::BadSignature));
    }
    // Another server's key derives another secret.
    assert_eq!(JwtTokens::new(&self::key(), &[], settings()).verify_refresh(&genuine), Err(TokenRejection::UnknownKey));
}

#[test]
fn a_cached_token_is_served_only_for_its_exact_bytes() {
    let tokens = JwtTokens::new(&key(), &[], settings());
    let expected = current_access_claims(3);
    let token = tokens.sign_access(&expected).unwrap();
    assert_eq!(tokens.verify_access(&token).unwrap(), expected);
    assert_eq!(tokens.verified.as_ref().unwrap().len(), 1);
    assert_eq!(tokens.verify_access(&token).unwrap(), expected, "served from the cache");
    assert_eq!(tokens.verified.as_ref().unwrap().len(), 1);

    // Every single-character change of the cached token is verified in full, and fails.
    let mut same_bytes = 0;
    for (index, original) in token.char_indices().filter(|(_, c)| *c != '.') {
        let replacement = if original == 'A' { 'B' } else { 'A' };
        let mut tampered = token.clone();
        tampered.replace_range(index..=index, &replacement.to_string());
        match tokens.verify_access(&tampered) {
            Err(_) => {}
            // Only a change in the unused bits of a part's last base64 character could decode
            // to the same bytes, and would then carry the very same claims.
            Ok(claims) => {
                assert_eq!(claims, expected, "position {index}");
                same_bytes += 1;
            }
        }
    }
    assert!(same_bytes <= 3, "{same_bytes} changed tokens were accepted");
    assert_eq!(tokens.verified.as_ref().unwrap().len(), 1 + same_bytes, "no refused token was cached");
}

#[test]
fn expired_tokens_are_never_cached_and_the_cache_stays_bounded() {
    let tokens = JwtTokens::new(&key(), &[], JwtSettings { verified_cache_entries: 32, ..settings() });
    // access_claims() expired in 2026-01: verified (the domain judges time), not remembered.
    let expired = tokens.sign_access(&access_claims()).unwrap();
    assert_eq!(tokens.verify_access(&expired).unwrap(), access_claims());
    assert_eq!(tokens.verified.as_ref().unwrap().len(), 0);
    for token_id in 0..1000 {
        // One reading of the clock per token: two could fall either side of a second.
        let claims = current_access_claims(token_id);
        let token = tokens.sign_access(&claims).unwrap();
        assert_eq!(tokens.verify_access(&token).unwrap(), claims);
    }
    assert!(tokens.verified.as_ref().unwrap().len() <= 32 + 16, "{} entries", tokens.verified.as_ref().unwrap().len());
}

#[test]
fn a_cache_of_zero_entries_is_no_cache() {
    let tokens = JwtTokens::new(&key(), &[], JwtSettings { verified_cache_entries: 0, ..settings() });
    assert!(tokens.verified.is_none());
    let expected = current_access_claims(1);
    let token = tokens.sign_access(&expected).unwrap();
    assert_eq!(tokens.verify_access(&token).unwrap(), expected);
}
