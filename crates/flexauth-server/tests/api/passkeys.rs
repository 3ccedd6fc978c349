//! Passkeys in headless Chromium with a virtual authenticator (the DevTools `WebAuthn`
//! domain), on `localhost`: registered from a page of the operator's app on an allowed
//! origin, used as the second step of a password login and passwordless, and removed. The
//! page does what the browser example of docs/authentication.md does.

use serde_json::{json, Value};

use crate::browser::{page_server, Shared};
use crate::helpers::{unique_email, TestEnv};
use crate::pages::{chromium, Browser};

/// The operator's page: a helper that calls flexauth and returns the status and the body.
const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>passkeys</title></head><body>
<script>
window.api = async (path, token, body) => {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch("FLEXAUTH" + path, { method: "POST", headers, body: JSON.stringify(body ?? {}) });
  return { status: response.status, body: await response.json().catch(() => null) };
};
const bytes = (text) => Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
const base64url = (data) => btoa(String.fromCharCode(...data)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
// What a synced passkey reports at registration: a signature counter of 0. With attestation
// "none" the authenticator data in the attestation object is not signed, so the test sets
// its four counter bytes (after the 32-byte RP id hash and the flags) to 0.
const zeroCounter = (json) => {
  const attestation = bytes(json.response.attestationObject);
  const rpIdHash = bytes(json.response.authenticatorData).slice(0, 32);
  for (let at = 0; at + 37 <= attestation.length; at++) {
    if (rpIdHash.every((byte, i) => attestation[at + i] === byte)) {
      attestation.set([0, 0, 0, 0], at + 33);
      json.response.attestationObject = base64url(attestation);
      return json;
    }
  }
  throw new Error("no authenticator data in the attestation object");
};
window.register = async (token, synced) => {
  const start = await api("/v1/auth/passkeys/registration", token);
  if (start.status !== 200) return { step: "start", ...start };
  const options = PublicKeyCredential.parseCreationOptionsFromJSON(start.body.data.options);
  const credential = await navigator.credentials.create({ publicKey: options });
  const json = synced ? zeroCounter(credential.toJSON()) : credential.toJSON();
  return api(`/v1/auth/passkeys/registration/${start.body.data.ceremony_id}`, token, { name: "laptop", credential: json });
};
window.logIn = async (mfaToken) => {
  const start = await api("/v1/auth/passkeys/authentication", null, mfaToken ? { mfa_token: mfaToken } : {});
  if (start.status !== 200) return { step: "start", ...start };
  const options = PublicKeyCredential.parseRequestOptionsFromJSON(start.body.data.options);
  const credential = await navigator.credentials.get({ publicKey: options });
  return api(`/v1/auth/passkeys/authentication/${start.body.data.ceremony_id}`, null,
             { credential: credential.toJSON() });
};
</script></body></html>"#;

fn amr(tokens: &Value) -> Value {
    use base64::Engine as _;
    let token = tokens["body"]["data"]["access_token"].as_str().unwrap_or_else(|| panic!("tokens: {tokens}"));
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["amr"].clone()
}

/// flexauth with a relying party of `localhost`, the operator's page on a `localhost` origin,
/// a verified account's fresh session, and Chromium on the page with a virtual authenticator of
/// `options` (merged into a CTAP2 platform authenticator that verifies its user).
struct Setup {
    app: crate::helpers::TestApp,
    browser: Browser,
    authenticator: String,
    email: String,
    access: String,
}

async fn setup(env: &TestEnv, chromium: &std::ffi::OsStr, options: Value) -> Setup {
    let page: Shared<String> = Shared::default();
    let origin = page_server("localhost", page.clone(), Shared::default()).await;
    let app = env
        .spawn_with(&["--cors-origins", &origin, "--webauthn-rp-id", "localhost", "--webauthn-origins", &origin])
        .await;
    *page.lock().unwrap() = PAGE.replace("FLEXAUTH", &app.address);
    let email = unique_email("passkey");
    let session = app.verified_login(env, &email).await;
    let access = session["access_token"].as_str().unwrap().to_owned();
    let mut browser = Browser::start(chromium).await;
    browser.call("WebAuthn.enable", json!({})).await;
    let mut authenticator = json!({
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
        "hasUserVerification": true, "isUserVerified": true, "automaticPresenceSimulation": true
    });
    authenticator.as_object_mut().unwrap().extend(options.as_object().unwrap().clone());
    let added = browser.call("WebAuthn.addVirtualAuthenticator", json!({ "options": authenticator })).await;
    let authenticator = added["authenticatorId"].as_str().unwrap().to_owned();
    browser.open(&format!("{origin}/")).await;
    Setup { app, browser, authenticator, email, access }
}

/// Replaces the authenticator's credential by the same one with `sign_count`.
async fn set_sign_count(browser: &mut Browser, authenticator: &str, sign_count: i64) {
    let credentials = browser.call("WebAuthn.getCredentials", json!({ "authenticatorId": authenticator })).await;
    let credential = credentials["credentials"][0].clone();
    let mut changed = credential.clone();
    changed["signCount"] = json!(sign_count);
    browser
        .call(
            "WebAuthn.removeCredential",
            json!({ "authenticatorId": authenticator, "credentialId": credential["credentialId"] }),
        )
        .await;
    browser.call("WebAuthn.addCredential", json!({ "authenticatorId": authenticator, "credential": changed })).await;
}

#[actix_web::test]
async fn a_passkey_is_registered_in_chromium_and_logs_in_as_a_second_factor_and_passwordless() {
    let Some(chromium) = chromium() else { return };
    let env = TestEnv::new().await;
    let Setup { app, mut browser, authenticator, email, access } = setup(&env, &chromium, json!({})).await;

    let registered = browser.eval_async(&format!("register({access:?})")).await;
    assert_eq!(registered["status"], 201, "{registered}");
    assert_eq!(registered["body"]["data"]["recovery_codes"].as_array().map(Vec::len), Some(10), "{registered}");
    let factors = app.get_with_bearer("/v1/auth/mfa", &access).await;
    assert_eq!(factors.body["data"]["factors"][0]["kind"], "passkey", "{}", factors.text);
    assert_eq!(factors.body["data"]["factors"][0]["name"], "laptop");

    // A password login now needs the passkey.
    let login = app.login(&email).await;
    assert_eq!(login.code(), "mfa_required", "{}", login.text);
    assert_eq!(login.body["error"]["methods"], json!(["passkey", "recovery_code"]));
    let token = login.body["error"]["mfa_token"].as_str().unwrap();
    let second = browser.eval_async(&format!("logIn({token:?})")).await;
    assert_eq!(second["status"], 200, "{second}");
    assert_eq!(amr(&second), json!(["pwd", "hwk", "mfa"]));
    // The challenge was spent by the passkey.
    let again = app.post("/v1/auth/login/mfa", json!({ "mfa_token": token, "code": "123456" })).await;
    assert_eq!(again.code(), "invalid_mfa_token");

    // Passwordless: nothing typed.
    let passwordless = browser.eval_async("logIn(null)").await;
    assert_eq!(passwordless["status"], 200, "{passwordless}");
    assert_eq!(amr(&passwordless), json!(["hwk", "mfa"]));

    // An authenticator whose counter stays at 0, as a synced passkey's does, keeps working;
    // one whose non-zero counter goes backwards is refused.
    set_sign_count(&mut browser, &authenticator, 0).await;
    let backwards = browser.eval_async("logIn(null)").await;
    assert_eq!(
        (backwards["status"].clone(), backwards["body"]["error"]["code"].clone()),
        (json!(400), json!("passkey_refused")),
        "{backwards}"
    );

    // Removed with a session that proved the passkey: a password login needs nothing more.
    let fresh = passwordless["body"]["data"]["access_token"].as_str().unwrap();
    let factor = factors.body["data"]["factors"][0]["id"].as_str().unwrap();
    let removed = app.delete_with_bearer(&format!("/v1/auth/mfa/{factor}"), fresh).await;
    assert_eq!(removed.status.as_u16(), 204, "{}", removed.text);
    assert_eq!(app.login(&email).await.status.as_u16(), 200);
    app.stop().await;
}

#[actix_web::test]
async fn a_synced_passkey_whose_counter_stays_at_zero_keeps_logging_in() {
    let Some(chromium) = chromium() else { return };
    let env = TestEnv::new().await;
    let synced = json!({ "defaultBackupEligibility": true, "defaultBackupState": true });
    let Setup { app, mut browser, authenticator, access, .. } = setup(&env, &chromium, synced).await;
    let registered = browser.eval_async(&format!("register({access:?}, true)")).await;
    assert_eq!(registered["status"], 201, "{registered}");
    for _ in 0..3 {
        // A synced passkey reports a counter of 0 on every use. The virtual authenticator adds
        // one before it signs, in 32 unsigned bits: set to -1 (the protocol's int32 for the
        // largest value), it signs with 0.
        set_sign_count(&mut browser, &authenticator, -1).await;
        let login = browser.eval_async("logIn(null)").await;
        assert_eq!(login["status"], 200, "{login}");
        assert_eq!(amr(&login), json!(["swk", "mfa"]));
    }
    // The authenticator said 0 each time, and the stored counter is still 0.
    let me = app.get_with_bearer("/v1/auth/me", &access).await;
    let account =
        flexauth_domain::account::AccountId::from_uuid(me.body["data"]["id"].as_str().unwrap().parse().unwrap());
    let stored = flexauth_domain::mfa::FactorRepository::factors(env.store(), account).await.unwrap();
    let passkey: Value = serde_json::from_str(&stored[0].secret.0).unwrap();
    assert_eq!(passkey["cred"]["counter"], 0, "{passkey}");
    app.stop().await;
}

#[actix_web::test]
async fn one_address_begins_thirty_passwordless_ceremonies_a_minute_and_no_more() {
    let env = TestEnv::new().await;
    // Frozen: the counter counts in minutes aligned to the epoch, and real time crossing one's
    // end would start the count over.
    let app = env.spawn_with_clock(&[], std::sync::Arc::new(crate::helpers::TestClock::frozen())).await;
    for _ in 0..30 {
        let started = app.post("/v1/auth/passkeys/authentication", json!({})).await;
        assert_eq!(started.status.as_u16(), 200, "{}", started.text);
    }
    let flood = app.post("/v1/auth/passkeys/authentication", json!({})).await;
    assert_eq!((flood.status.as_u16(), flood.code()), (429, "rate_limited"), "{}", flood.text);
    assert!(flood.headers.contains_key("retry-after"));
    app.stop().await;
}
