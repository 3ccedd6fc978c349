use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{unique_email, TestEnv};

/// Path, content type, body, expected status, expected code.
type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, StatusCode, &'a str);

/// Every malformed request gets a 4xx with the error envelope and its stable code; none gets a
/// 5xx, and none writes anything.
#[actix_web::test]
async fn bad_input_gets_a_4xx_with_a_stable_code() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let json = Some("application/json");
    let huge = format!(r#"{{"email":"{}@example.com","password":"x"}}"#, "a".repeat(20 * 1024));
    let cases: Vec<Case> = vec![
        ("/v1/auth/signup", json, b"{not json".to_vec(), StatusCode::BAD_REQUEST, "invalid_json"),
        ("/v1/auth/signup", json, b"".to_vec(), StatusCode::BAD_REQUEST, "invalid_json"),
        ("/v1/auth/signup", json, br#"{"email":"a@example.com"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_json"),
        (
            "/v1/auth/signup",
            json,
            br#"{"email":5,"password":"long enough pass"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        ("/v1/auth/signup", json, br#"[1,2,3]"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_json"),
        // serde reads a struct from an array of its fields in order; the API takes objects only.
        (
            "/v1/auth/signup",
            json,
            br#"["a@example.com","long enough pass"]"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "/v1/auth/login",
            json,
            br#"["a@example.com","long enough pass"]"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        ("/v1/auth/refresh", json, br#"["garbage"]"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_json"),
        ("/v1/auth/logout", json, br#"[]"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_json"),
        ("/v1/auth/logout", json, br#"["garbage"]"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_json"),
        (
            "/v1/auth/signup",
            Some("text/plain"),
            br#"{"email":"a@example.com","password":"long enough pass"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/v1/auth/signup",
            None,
            br#"{"email":"a@example.com","password":"long enough pass"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        ("/v1/auth/signup", json, huge.into_bytes(), StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        (
            "/v1/auth/signup",
            json,
            br#"{"email":"not-an-email","password":"long enough pass"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_email",
        ),
        (
            "/v1/auth/signup",
            json,
            br#"{"email":"","password":"long enough pass"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_email",
        ),
        (
            "/v1/auth/signup",
            json,
            br#"{"email":"a@example.com","password":"short"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "password_too_short",
        ),
        (
            "/v1/auth/signup",
            json,
            br#"{"email":"a@example.com","password":"password123"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "password_too_common",
        ),
        (
            "/v1/auth/signup",
            json,
            format!(r#"{{"email":"a@example.com","password":"{}"}}"#, "p".repeat(300)).into_bytes(),
            StatusCode::BAD_REQUEST,
            "password_too_long",
        ),
        (
            "/v1/auth/login",
            json,
            format!(r#"{{"email":"a@example.com","password":"{}"}}"#, "p".repeat(300)).into_bytes(),
            StatusCode::BAD_REQUEST,
            "password_too_long",
        ),
        (
            "/v1/auth/login",
            json,
            br#"{"email":"@@","password":"whatever pass"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_email",
        ),
        ("/v1/auth/login", json, br#"{"password":"whatever pass"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_json"),
        (
            "/v1/auth/refresh",
            json,
            br#"{"refresh_token":"garbage"}"#.to_vec(),
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
        ),
        (
            "/v1/auth/refresh",
            json,
            br#"{"refresh_token":""}"#.to_vec(),
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
        ),
        ("/v1/auth/refresh", json, br#"{}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_json"),
        (
            "/v1/auth/verify",
            json,
            br#"{"token":"\u0000\u0001"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_verification_token",
        ),
        ("/v1/auth/verify/resend", json, br#"{"email":"nope"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_email"),
        (
            "/v1/auth/logout",
            json,
            br#"{"refresh_token":"garbage"}"#.to_vec(),
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
        ),
        ("/v1/auth/logout", json, b"{oops".to_vec(), StatusCode::BAD_REQUEST, "invalid_json"),
        ("/v1/nowhere", json, b"{}".to_vec(), StatusCode::NOT_FOUND, "not_found"),
    ];
    for (path, content_type, body, status, code) in cases {
        let shown = String::from_utf8_lossy(&body).chars().take(80).collect::<String>();
        let reply = app.post_raw(path, content_type, body).await;
        assert_eq!((reply.status, reply.code()), (status, code), "POST {path} {shown}: {}", reply.text);
        assert!(reply.body["error"]["message"].is_string());
        assert!(reply.headers.contains_key("x-request-id"));
    }
    let wrong_method = app.get("/v1/auth/login").await;
    assert_eq!((wrong_method.status, wrong_method.code()), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
    assert_eq!(wrong_method.headers.get("allow").unwrap(), "POST");
    let oversized_logout = app.post_raw("/v1/auth/logout", json, vec![b' '; 20 * 1024]).await;
    assert_eq!(
        (oversized_logout.status, oversized_logout.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let me = app.get("/v1/auth/me").await;
    assert_eq!((me.status, me.code()), (StatusCode::UNAUTHORIZED, "missing_token"));
    let wrong_scheme =
        app.client.get(app.url("/v1/usage")).header("authorization", "Basic dXNlcjpwYXNz").send().await.unwrap();
    assert_eq!(wrong_scheme.status(), StatusCode::UNAUTHORIZED);

    // Nothing above stored a request or queued an email: once the email of a valid signup made
    // after them has arrived (the worker handles requests in order), it is the only one.
    let after = unique_email("after");
    assert_eq!(
        app.post("/v1/auth/signup", json!({ "email": after, "password": "long enough pass" })).await.status,
        StatusCode::ACCEPTED
    );
    crate::helpers::wait_for_mail_to(env.smtp(), &after).await;
    assert_eq!(env.smtp().messages().len(), 1, "only the valid signup sent an email");
    app.stop().await;
}

#[actix_web::test]
async fn health_and_readiness_answer() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    assert_eq!(app.get("/healthz").await.body, json!({ "data": { "status": "ok" } }));
    assert_eq!(app.get("/readyz").await.body, json!({ "data": { "status": "ready" } }));
    app.stop().await;
}

/// Every operation of the published OpenAPI description exists with its method: none answers
/// 404 or 405.
#[actix_web::test]
async fn every_operation_of_the_openapi_description_is_served() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let document = app.get("/openapi.json").await;
    assert_eq!(document.status, StatusCode::OK);
    let paths = document.body["paths"].as_object().expect("paths");
    assert!(paths.len() >= 18);
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
        for method in item
            .as_object()
            .unwrap()
            .keys()
            .filter(|key| ["get", "post", "delete", "put", "patch"].contains(&key.as_str()))
        {
            let request = app.client.request(method.to_uppercase().parse().unwrap(), app.url(&concrete));
            let status = request.send().await.unwrap().status();
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: {status}"
            );
            operations += 1;
        }
    }
    assert!(operations >= 21);
    app.stop().await;
}

/// docs/openapi.json is the document the server generates and serves, so a reader of the
/// repository sees the API of this commit. `just openapi` writes it.
#[actix_web::test]
async fn the_openapi_document_in_docs_is_the_one_the_server_serves() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let served = app.client.get(app.url("/openapi.json")).send().await.unwrap().bytes().await.unwrap();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json")).unwrap();
    assert!(
        committed.trim_end() == std::str::from_utf8(&served).unwrap(),
        "docs/openapi.json is not the generated document: run `just openapi`"
    );
    app.stop().await;
}

/// Every error code an operation can answer is listed in its answers with the status it has,
/// and every code of the API is listed by some operation.
#[actix_web::test]
async fn the_openapi_document_lists_every_error_code_under_its_status() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let document = app.get("/openapi.json").await.body;
    let all: Vec<String> = document["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect();
    assert!(all.len() >= 40);
    let mut listed = std::collections::BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, answer) in operation["responses"].as_object().unwrap() {
                let Some(codes) = answer["content"]["application/json"]["schema"]["properties"]["error"]["properties"]
                    ["code"]["enum"]
                    .as_array()
                else {
                    continue;
                };
                assert!(
                    status.starts_with('4') || status.starts_with('5'),
                    "{method} {path}: error codes under {status}"
                );
                assert!(answer["headers"]["cache-control"].is_object(), "{method} {path} {status}: no cache-control");
                if status == "401" {
                    assert!(
                        answer["headers"]["www-authenticate"].is_object(),
                        "{method} {path}: a 401 without www-authenticate"
                    );
                }
                for code in codes {
                    listed.insert(code.as_str().unwrap().to_owned());
                }
            }
        }
    }
    // Answered outside any one operation: unknown paths and methods.
    listed.insert("not_found".into());
    listed.insert("method_not_allowed".into());
    let unlisted: Vec<&String> = all.iter().filter(|code| !listed.contains(*code)).collect();
    assert!(unlisted.is_empty(), "codes no operation lists: {unlisted:?}");
    app.stop().await;
}

#[actix_web::test]
async fn json_errors_name_what_the_endpoint_takes_never_an_internal_type() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    for body in [&b"[]"[..], b"\"text\"", b"42", b"{\"email\": []}"] {
        let reply = app.post_raw("/v1/auth/login", Some("application/json"), body.to_vec()).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "invalid_json"), "{}", reply.text);
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(!message.contains("struct") && !message.contains("Credentials"), "{message}");
    }
    app.stop().await;
}
