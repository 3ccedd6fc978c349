//! The pages behind the links in emails, as a person sees them: headless Chromium (Debian's
//! `chromium`, driven over its DevTools protocol) opens the emailed link, presses the button
//! with the mouse or the keyboard, types into the form, and reads the page it lands on, for
//! the happy paths and for used and expired links. Every page is checked for landmarks,
//! labels, contrast and third-party resources, and photographed on a phone-sized screen:
//! `just screenshots` writes the pictures to docs/screenshots (otherwise to
//! target/screenshots). Skipped unless `FLEXAUTH_TEST_CHROMIUM` names the browser.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt as _;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    unique_email, verify_path, wait_for_mails, wait_for_subject, TestApp, TestClock, TestEnv, PASSWORD,
};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One headless Chromium with one page, driven over the DevTools protocol.
pub(crate) struct Browser {
    socket: Socket,
    session: String,
    next_id: u64,
    events: VecDeque<Value>,
    _process: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn start(chromium: &std::ffi::OsStr) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut process = tokio::process::Command::new(chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
            ])
            .arg("--remote-allow-origins=*")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("Chromium starts");
        let mut lines = tokio::io::BufReader::new(process.stderr.take().unwrap()).lines();
        let endpoint = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("Chromium exited before it listened");
        })
        .await
        .expect("Chromium listens within a minute");
        // Chromium keeps writing to stderr; the pipe must be drained.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        // A full-page screenshot arrives as one base64 message of several MiB.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_frame_size(Some(64 << 20))
            .max_message_size(Some(64 << 20));
        let (socket, _) = tokio_tungstenite::connect_async_with_config(endpoint, Some(config), false)
            .await
            .expect("the DevTools socket opens");
        let mut browser = Self {
            socket,
            session: String::new(),
            next_id: 0,
            events: VecDeque::new(),
            _process: process,
            _profile: profile,
        };
        let target = browser.call_browser("Target.createTarget", json!({ "url": "about:blank" })).await;
        let attached = browser
            .call_browser("Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true }))
            .await;
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call("Page.enable", json!({})).await;
        browser.call("Runtime.enable", json!({})).await;
        // A phone: 390 × 760 CSS pixels.
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": 390, "height": 760, "deviceScaleFactor": 1, "mobile": true }),
            )
            .await;
        browser
    }

    async fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket.send(Message::text(message.to_string())).await.unwrap();
        loop {
            let message = self.receive().await;
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
            self.events.push_back(message);
        }
    }

    async fn receive(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(std::time::Duration::from_secs(30), self.socket.next())
                .await
                .expect("Chromium answers")
                .unwrap()
                .unwrap();
            match frame {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Ping(bytes) => self.socket.send(Message::Pong(bytes)).await.unwrap(),
                _ => {}
            }
        }
    }

    async fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(None, method, params).await
    }

    pub(crate) async fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(Some(&session), method, params).await
    }

    /// Waits for the page's next load event.
    async fn loaded(&mut self) {
        while let Some(event) = self.events.pop_front() {
            if event["method"] == "Page.loadEventFired" {
                return;
            }
        }
        loop {
            let message = self.receive().await;
            if message["method"] == "Page.loadEventFired" {
                return;
            }
        }
    }

    pub(crate) async fn open(&mut self, url: &str) {
        self.events.clear();
        self.call("Page.navigate", json!({ "url": url })).await;
        self.loaded().await;
    }

    /// The value of `script`, a promise awaited.
    pub(crate) async fn eval_async(&mut self, script: &str) -> Value {
        let result = self
            .call("Runtime.evaluate", json!({ "expression": script, "returnByValue": true, "awaitPromise": true }))
            .await;
        assert!(result.get("exceptionDetails").is_none(), "{script}: {result}");
        result["result"]["value"].clone()
    }

    async fn eval(&mut self, script: &str) -> Value {
        let result = self.call("Runtime.evaluate", json!({ "expression": script, "returnByValue": true })).await;
        assert!(result.get("exceptionDetails").is_none(), "{script}: {result}");
        result["result"]["value"].clone()
    }

    async fn text(&mut self) -> String {
        self.eval("document.body.innerText").await.as_str().unwrap_or_default().to_owned()
    }

    /// Presses the page's button with the mouse, as a person does, and waits for the page the
    /// form leads to.
    async fn click_button(&mut self) {
        let center = self
            .eval(
                "(() => { const r = document.querySelector('button').getBoundingClientRect(); return [r.x + \
                r.width / 2, r.y + r.height / 2]; })()",
            )
            .await;
        let (x, y) = (center[0].as_f64().unwrap(), center[1].as_f64().unwrap());
        self.events.clear();
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            )
            .await;
        }
        self.loaded().await;
    }

    /// Presses a key (`Tab`, `Enter`).
    async fn key(&mut self, key: &str) {
        let (code, text) = match key {
            "Enter" => (13, "\r"),
            _ => (9, ""),
        };
        self.call(
            "Input.dispatchKeyEvent",
            json!({ "type": "keyDown", "key": key, "code": key, "windowsVirtualKeyCode": code, "text": text }),
        )
        .await;
        self.call(
            "Input.dispatchKeyEvent",
            json!({ "type": "keyUp", "key": key, "code": key, "windowsVirtualKeyCode": code }),
        )
        .await;
    }

    /// Types `text` into the focused field.
    async fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({ "text": text })).await;
    }

    async fn screenshot(&mut self, name: &str) {
        let shot =
            self.call("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": false })).await;
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// What every page must be: one `main` landmark with the `h1`, English, every visible
    /// field labelled, text and button at a contrast of 4.5:1 or more, nothing fetched from
    /// anywhere (no script, font, image or stylesheet of any origin).
    async fn assert_accessible_and_self_contained(&mut self, what: &str) {
        let report = self
            .eval(
                r#"(() => {
  const luminance = (color) => {
    const [r, g, b] = color.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number).map(v => v / 255)
      .map(v => v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const contrast = (element, background) => {
    const fg = luminance(getComputedStyle(element).color);
    const bg = luminance(getComputedStyle(background).backgroundColor);
    return (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
  };
  const main = document.querySelector('main');
  const button = document.querySelector('button');
  const fields = [...document.querySelectorAll('input:not([type=hidden])')];
  return {
    lang: document.documentElement.lang,
    mains: document.querySelectorAll('main').length,
    h1_in_main: !!(main && main.querySelector('h1')),
    unlabelled: fields.filter(field => field.labels.length === 0).length,
    text_contrast: contrast(main.querySelector('p') || main, main),
    button_contrast: button ? contrast(button, button) : 21,
    fetched: performance.getEntriesByType('resource').length,
    scripts: document.scripts.length,
  };
})()"#,
            )
            .await;
        assert_eq!(report["lang"], "en", "{what}: {report}");
        assert_eq!(report["mains"], 1, "{what}: {report}");
        assert_eq!(report["h1_in_main"], true, "{what}: {report}");
        assert_eq!(report["unlabelled"], 0, "{what}: {report}");
        assert!(report["text_contrast"].as_f64().unwrap() >= 4.5, "{what}: {report}");
        assert!(report["button_contrast"].as_f64().unwrap() >= 4.5, "{what}: {report}");
        assert_eq!((report["fetched"].as_u64(), report["scripts"].as_u64()), (Some(0), Some(0)), "{what}: {report}");
    }
}

fn screenshots_dir() -> PathBuf {
    match std::env::var_os("FLEXAUTH_TEST_SCREENSHOTS_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots"),
    }
}

pub(crate) fn chromium() -> Option<std::ffi::OsString> {
    let path = std::env::var_os("FLEXAUTH_TEST_CHROMIUM").filter(|path| !path.is_empty());
    if path.is_none() {
        flexauth_store::test_db::skip(
            "a page test",
            "FLEXAUTH_TEST_CHROMIUM is not set (scripts/browser-up)",
            Some("FLEXAUTH_TEST_REQUIRE_CHROMIUM"),
        );
    }
    path
}

/// The link of `mail` on the instance (the public URL in emails is not where it listens).
fn link(app: &TestApp, mail: &crate::helpers::ReceivedMessage) -> String {
    app.url(&verify_path(mail))
}

#[actix_web::test]
async fn a_person_confirms_an_address_and_resets_a_password_in_chromium_and_meets_used_and_expired_links() {
    let Some(chromium) = chromium() else { return };
    let env = TestEnv::new().await;
    let clock = Arc::new(TestClock::default());
    let app = env.spawn_with_clock(&[], clock.clone()).await;
    let mut browser = Browser::start(&chromium).await;

    // The verification link: a page with one button; pressing it confirms.
    let email = unique_email("browser");
    assert_eq!(app.signup(&email).await.status, StatusCode::ACCEPTED);
    let verification = wait_for_subject(env.smtp(), &email, "Verify your email address").await;
    browser.open(&link(&app, &verification)).await;
    assert!(browser.text().await.contains("press the button to confirm"), "{}", browser.text().await);
    browser.assert_accessible_and_self_contained("the confirmation page").await;
    browser.screenshot("verify-confirm").await;
    browser.click_button().await;
    assert!(browser.text().await.contains("Your email address is verified"), "{}", browser.text().await);
    browser.assert_accessible_and_self_contained("the verified page").await;
    browser.screenshot("verify-done").await;
    assert_eq!(app.login(&email).await.status, StatusCode::OK);

    // Two pending sign-ups: the page asks for the password, with its rules.
    let twice = unique_email("twice");
    app.signup(&twice).await;
    app.post("/v1/auth/signup", json!({ "email": twice, "password": "another passphrase" })).await;
    let links = wait_for_mails(env.smtp(), &twice, 2).await;
    browser.open(&link(&app, &links[0])).await;
    assert!(browser.text().await.contains("At least 8 characters"), "the rules are stated: {}", browser.text().await);
    browser.assert_accessible_and_self_contained("the choose-password page").await;
    browser.screenshot("verify-choose-password").await;

    // The reset link, with the keyboard only: Tab to the field, type, Enter.
    assert_eq!(app.post("/v1/auth/password/forgot", json!({ "email": email })).await.status, StatusCode::ACCEPTED);
    let reset = wait_for_subject(env.smtp(), &email, "Reset your password").await;
    browser.open(&link(&app, &reset)).await;
    browser.assert_accessible_and_self_contained("the reset form").await;
    browser.screenshot("reset-form").await;
    browser.key("Tab").await;
    assert_eq!(browser.eval("document.activeElement.id").await, "password", "Tab reaches the field first");
    // Too short is refused by the field itself (minlength), before anything is sent.
    browser.type_text("short").await;
    assert_eq!(browser.eval("document.getElementById('password').validity.tooShort").await, true);
    browser.eval("document.getElementById('password').value = ''").await;
    // Long enough but too common: refused by the server.
    browser.type_text("password1").await;
    browser.events.clear();
    browser.key("Enter").await;
    browser.loaded().await;
    // A refused password: the same form, the reason beside the field.
    let error = browser.eval("document.getElementById('password-error')?.textContent ?? ''").await;
    assert!(error.as_str().unwrap().contains("common"), "{error}");
    assert_eq!(browser.eval("document.getElementById('password').getAttribute('aria-invalid')").await, "true");
    // `autofocus` is applied by the browser a moment after the load.
    let mut focused = Value::Null;
    for _ in 0..40 {
        focused = browser.eval("document.activeElement.id").await;
        if focused == "password" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(focused, "password", "the field has the focus again");
    browser.assert_accessible_and_self_contained("the reset form with an error").await;
    browser.screenshot("reset-error").await;
    browser.type_text("a brand new passphrase").await;
    browser.click_button().await;
    assert!(browser.text().await.contains("Your password is changed"), "{}", browser.text().await);
    browser.screenshot("reset-done").await;
    assert_eq!(
        app.post("/v1/auth/login", json!({ "email": email, "password": "a brand new passphrase" })).await.status,
        StatusCode::OK
    );

    // The same link again, and a link past its hour.
    browser.open(&link(&app, &reset)).await;
    assert!(browser.text().await.contains("not valid or was used already"), "{}", browser.text().await);
    browser.assert_accessible_and_self_contained("the used link").await;
    browser.screenshot("link-used").await;
    app.post("/v1/auth/password/forgot", json!({ "email": email })).await;
    let late = crate::helpers::eventually("the second reset link", || {
        let resets: Vec<_> = crate::helpers::mails_to(env.smtp(), &email)
            .into_iter()
            .filter(|mail| mail.subject().as_deref() == Some("Reset your password"))
            .collect();
        (resets.len() == 2).then(|| resets[1].clone())
    })
    .await;
    clock.advance(time::Duration::hours(2));
    browser.open(&link(&app, &late)).await;
    assert!(browser.text().await.contains("has expired"), "{}", browser.text().await);
    browser.screenshot("link-expired").await;
    assert_eq!(
        app.post("/v1/auth/login", json!({ "email": email, "password": PASSWORD })).await.code(),
        "invalid_credentials"
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_person_confirms_a_new_address_and_the_old_one_undoes_it_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    let mut browser = Browser::start(&chromium).await;
    let (old, new) = (unique_email("old-address"), unique_email("new-address"));
    let login = app.verified_login(&env, &old).await;
    let asked = app
        .post_json_with_bearer(
            "/v1/auth/email/change",
            login["access_token"].as_str().unwrap(),
            json!({ "new_email": new }),
        )
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED);
    let confirmation = wait_for_subject(env.smtp(), &new, "Confirm your new email address").await;
    let undo = wait_for_subject(env.smtp(), &old, "Your account's email address is changing").await;

    browser.open(&link(&app, &confirmation)).await;
    assert!(browser.text().await.contains(&new), "the page names the new address");
    browser.assert_accessible_and_self_contained("the address confirmation page").await;
    browser.screenshot("email-change-confirm").await;
    // The account's password is asked for: someone who only reads the new mailbox cannot
    // confirm. With the keyboard: Tab to the field, type, Enter.
    browser.key("Tab").await;
    assert_eq!(browser.eval("document.activeElement.id").await, "password", "Tab reaches the field first");
    browser.type_text("not the password").await;
    browser.events.clear();
    browser.key("Enter").await;
    browser.loaded().await;
    let error = browser.eval("document.getElementById('password-error')?.textContent ?? ''").await;
    assert!(error.as_str().unwrap().contains("Wrong password"), "{error}");
    assert_eq!(browser.eval("document.getElementById('password').getAttribute('aria-invalid')").await, "true");
    browser.assert_accessible_and_self_contained("the address confirmation page with an error").await;
    browser.eval("document.getElementById('password').focus()").await;
    browser.type_text(PASSWORD).await;
    browser.click_button().await;
    assert!(browser.text().await.contains("Your account now uses"), "{}", browser.text().await);
    browser.screenshot("email-change-done").await;

    browser.open(&link(&app, &undo)).await;
    browser.assert_accessible_and_self_contained("the undo page").await;
    browser.screenshot("email-change-undo").await;
    // The keyboard alone: Tab to the button, Enter.
    browser.key("Tab").await;
    assert_eq!(browser.eval("document.activeElement.tagName").await, "BUTTON");
    browser.events.clear();
    browser.key("Enter").await;
    browser.loaded().await;
    assert!(browser.text().await.contains("Change undone"), "{}", browser.text().await);
    browser.screenshot("email-change-undone").await;
    let (ok, found, _) = crate::lifecycle::flexauth(&env, &["accounts", "find", &old]);
    assert!(ok && found["account"]["email"] == old.as_str());
    app.stop().await;
}

#[actix_web::test]
async fn every_page_is_served_with_its_safety_headers() {
    let env = TestEnv::new().await;
    let app = env.spawn().await;
    for path in [
        "/v1/auth/verify?token=nope",
        "/v1/auth/password/reset?token=nope",
        "/v1/auth/email/confirm?token=nope",
        "/v1/auth/email/undo?token=nope",
    ] {
        let page = app.get(path).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{path}");
        let header =
            |name: &str| page.headers.get(name).map(|value| value.to_str().unwrap().to_owned()).unwrap_or_default();
        assert!(header("content-type").starts_with("text/html"), "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}: the token in the URL never leaves in a Referer");
        assert_eq!(header("cache-control"), "no-store", "{path}");
        let csp = header("content-security-policy");
        assert!(
            csp.contains("default-src 'none'")
                && csp.contains("form-action 'self'")
                && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert!(!page.text.contains("http://") && !page.text.contains("https://"), "{path}: no resource of any origin");
    }
    app.stop().await;
}
