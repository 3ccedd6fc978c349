use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{unique_email, TestEnv};

/// Changes one character of the random part, keeping the alphabet.
fn one_character_changed(key: &str) -> String {
    let mut bytes = key.as_bytes().to_vec();
    let index = 20;
    bytes[index] = if bytes[index] == b'x' { b'y' } else { b'x' };
    String::from_utf8(bytes).unwrap()
}

#[actix_web::test]
async fn api_keys_work_end_to_end_across_two_instances() {
    let env = TestEnv::new().await;
    let (first, second) = (env.spawn().await, env.spawn().await);
    let login = first.verified_login(&env, &unique_email("keys")).await;
    let jwt = login["access_token"].as_str().unwrap();

    let created = first.post_json_with_bearer("/v1/api-keys", jwt, json!({ "name": "billing backend" })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let data = &created.body["data"];
    let key = data["key"].as_str().unwrap().to_owned();
    let id = data["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("fo_live_") && key.len() == 46);
    assert_eq!(data["prefix"].as_str().unwrap(), &key[..12]);
    assert_eq!(data["name"], "billing backend");
    assert_eq!(data["expires_at"], serde_json::Value::Null);

    // The key authenticates /v1/usage on the other instance.
    let usage = second.get_with_bearer("/v1/usage", &key).await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.text);
    assert_eq!(usage.body["data"]["auth_method"], "api_key");
    assert_eq!(usage.body["data"]["key_id"], id.as_str());
    assert_eq!(
        usage.body["data"]["account_id"],
        first.get_with_bearer("/v1/usage", jwt).await.body["data"]["account_id"]
    );

    // Listing shows the key without its secret, and that it was used.
    let listed = second.get_with_bearer("/v1/api-keys", jwt).await;
    assert_eq!(listed.status, StatusCode::OK);
    let entry = &listed.body["data"][0];
    assert_eq!(entry["id"], id.as_str());
    assert!(entry.get("key").is_none());
    assert!(!listed.text.contains(&key[12..]), "the secret is never listed");
    assert!(entry["last_used_at"].is_string());

    // A key with one changed character is refused by its checksum.
    let typo = second.get_with_bearer("/v1/usage", &one_character_changed(&key)).await;
    assert_eq!((typo.status, typo.code()), (StatusCode::UNAUTHORIZED, "invalid_token"));
    assert!(typo.headers.get("www-authenticate").unwrap().to_str().unwrap().contains("malformed"));

    // JWT-only operations refuse keys.
    for reply in [
        first.post_json_with_bearer("/v1/api-keys", &key, json!({ "name": "minted by a key" })).await,
        first.get_with_bearer("/v1/api-keys", &key).await,
        first.delete_with_bearer(&format!("/v1/api-keys/{id}"), &key).await,
        first
            .post_json_with_bearer(
                "/v1/auth/password/change",
                &key,
                json!({ "current_password": "x", "new_password": "a new long password" }),
            )
            .await,
        first.get_with_bearer("/v1/auth/sessions", &key).await,
        first.get_with_bearer("/v1/auth/me", &key).await,
    ] {
        assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "jwt_required"), "{}", reply.text);
    }

    // Revocation takes effect at once on both instances.
    assert_eq!(first.delete_with_bearer(&format!("/v1/api-keys/{id}"), jwt).await.status, StatusCode::NO_CONTENT);
    for instance in [&first, &second] {
        let refused = instance.get_with_bearer("/v1/usage", &key).await;
        assert_eq!((refused.status, refused.code()), (StatusCode::UNAUTHORIZED, "invalid_token"));
    }
    let again = first.delete_with_bearer(&format!("/v1/api-keys/{id}"), jwt).await;
    assert_eq!((again.status, again.code()), (StatusCode::NOT_FOUND, "api_key_not_found"));
    assert_eq!(second.get_with_bearer("/v1/api-keys", jwt).await.body["data"], json!([]));
    first.stop().await;
    second.stop().await;
}

#[actix_web::test]
async fn key_creation_validates_its_input() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let jwt = app.verified_login(&env, &unique_email("keyinput")).await["access_token"].as_str().unwrap().to_owned();
    let cases = [
        (json!({ "name": "  " }), "invalid_api_key_name"),
        (json!({ "name": "x".repeat(101) }), "invalid_api_key_name"),
        (json!({ "name": "ci", "expires_at": "2001-01-01T00:00:00Z" }), "invalid_expiry"),
        (json!({ "name": "ci", "expires_at": "next week" }), "invalid_expiry"),
        (json!({ "expires_at": "2099-01-01T00:00:00Z" }), "invalid_json"),
    ];
    for (body, code) in cases {
        let reply = app.post_json_with_bearer("/v1/api-keys", &jwt, body.clone()).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, code), "{body}");
    }
    let expiring = app
        .post_json_with_bearer("/v1/api-keys", &jwt, json!({ "name": "ci", "expires_at": "2099-01-01T00:00:00Z" }))
        .await;
    assert_eq!(expiring.status, StatusCode::CREATED);
    assert_eq!(expiring.body["data"]["expires_at"], "2099-01-01T00:00:00.000Z");
    let unknown = app.delete_with_bearer("/v1/api-keys/not-a-uuid", &jwt).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "api_key_not_found"));
    app.stop().await;
}

#[actix_web::test]
async fn instants_have_one_shape_on_creation_and_on_listing() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let login = app.verified_login(&env, &unique_email("instants")).await;
    let jwt = login["access_token"].as_str().unwrap();
    let created = app
        .post_json_with_bearer(
            "/v1/api-keys",
            jwt,
            json!({ "name": "instants", "expires_at": "2099-01-01T00:00:00+02:00" }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let listed = app.get_with_bearer("/v1/api-keys", jwt).await.body["data"][0].clone();
    // RFC 3339, UTC, exactly milliseconds.
    let shaped = |text: &str| {
        let bytes = text.as_bytes();
        text.len() == 24
            && text.ends_with('Z')
            && bytes[19] == b'.'
            && bytes[20..23].iter().all(u8::is_ascii_digit)
            && time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_ok()
    };
    for field in ["created_at", "expires_at"] {
        let (on_creation, on_listing) =
            (created.body["data"][field].as_str().unwrap(), listed[field].as_str().unwrap());
        assert!(shaped(on_creation) && shaped(on_listing), "{field}: {on_creation} / {on_listing}");
        assert_eq!(on_creation, on_listing, "{field}");
    }
    assert_eq!(listed["expires_at"], "2098-12-31T22:00:00.000Z");
    app.stop().await;
}

#[actix_web::test]
async fn jwt_only_operations_refuse_an_api_key_before_reading_the_body() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let login = app.verified_login(&env, &unique_email("authorise-first")).await;
    let jwt = login["access_token"].as_str().unwrap();
    let created = app.post_json_with_bearer("/v1/api-keys", jwt, json!({ "name": "server" })).await;
    let key = created.body["data"]["key"].as_str().unwrap().to_owned();
    // Bodies and paths that would each be refused on their own: the key is refused first.
    for reply in [
        app.post_json_with_bearer(
            "/v1/auth/password/change",
            &key,
            json!({ "current_password": "x", "new_password": "short" }),
        )
        .await,
        app.post_json_with_bearer("/v1/api-keys", &key, json!({ "name": "" })).await,
        crate::helpers::read(
            app.client
                .post(app.url("/v1/api-keys"))
                .bearer_auth(&key)
                .header("content-type", "application/json")
                .body("not json")
                .send()
                .await
                .unwrap(),
        )
        .await,
        app.delete_with_bearer("/v1/auth/sessions/not-a-session-id", &key).await,
        app.delete_with_bearer("/v1/api-keys/not-a-key-id", &key).await,
        app.get_with_bearer("/v1/auth/events?limit=banana", &key).await,
    ] {
        assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "jwt_required"), "{}", reply.text);
    }
    app.stop().await;
}
