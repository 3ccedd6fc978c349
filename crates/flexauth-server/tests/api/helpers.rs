use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flexauth_domain::system::Clock;

use actix_web::dev::ServerHandle;
pub use flexauth_mail::test_smtp::ReceivedMessage;
use flexauth_mail::test_smtp::SmtpSink;
use flexauth_server::config::{Cli, Settings};
use flexauth_server::startup::Application;
use flexauth_store::test_db::TestDatabase;
use flexauth_store::{DatabaseConfig, Store};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};

pub const PASSWORD: &str = "correct horse battery staple";
pub const PUBLIC_URL: &str = "http://auth.flexauth.test";

/// Chooses the database of the API tests: `sqlite` or `postgres`.
pub const API_BACKEND_VAR: &str = "FLEXAUTH_TEST_API_BACKEND";

/// Removes the developer's own `FLEXAUTH_*` settings (but not the `FLEXAUTH_TEST_*` ones) from
/// the process environment, once, before any instance is configured: the command-line parser
/// reads those variables, and a test must see only the flags it passes.
fn clean_environment() {
    static CLEANED: std::sync::Once = std::sync::Once::new();
    CLEANED.call_once(|| {
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("FLEXAUTH_") && !name.starts_with("FLEXAUTH_TEST_") {
                std::env::remove_var(&name);
            }
        }
    });
}

/// What several instances share: one database, one data directory, one SMTP server.
pub struct TestEnv {
    pub db: TestDatabase,
    pub smtp: SmtpSink,
    pub smtp_addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
}

impl TestEnv {
    /// The backend named by `FLEXAUTH_TEST_API_BACKEND` (`sqlite` or `postgres`); unset,
    /// PostgreSQL when configured, else SQLite. CI runs this suite once with each.
    pub async fn new() -> Self {
        clean_environment();
        let db = match std::env::var(API_BACKEND_VAR).as_deref() {
            Ok("sqlite") => TestDatabase::sqlite().await,
            Ok("postgres") => TestDatabase::postgres()
                .await
                .expect("FLEXAUTH_TEST_API_BACKEND=postgres needs FLEXAUTH_TEST_POSTGRES_URL"),
            Ok(other) => panic!("{API_BACKEND_VAR}={other:?}: expected sqlite or postgres"),
            Err(_) => match TestDatabase::postgres().await {
                Some(db) => db,
                None => TestDatabase::sqlite().await,
            },
        };
        let smtp = SmtpSink::start().await.unwrap();
        let smtp_addr = smtp.addr();
        Self { db, smtp, smtp_addr, data_dir: tempfile::tempdir().unwrap() }
    }

    /// Whether the shared database is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.db.config(), DatabaseConfig::Postgres(_))
    }

    pub fn store(&self) -> &Store {
        self.db.store()
    }

    pub fn smtp(&self) -> &SmtpSink {
        &self.smtp
    }

    pub fn settings(&self, extra: &[&str]) -> Settings {
        let database_url = match self.db.config() {
            DatabaseConfig::Postgres(url) => url.clone(),
            DatabaseConfig::Sqlite(path) => format!("sqlite://{}", path.display()),
        };
        let smtp_url = format!("smtp://{}", self.smtp_addr);
        let data_dir = self.data_dir.path().display().to_string();
        let mut args = vec![
            "flexauth",
            "--bind",
            "127.0.0.1:0",
            "--public-url",
            PUBLIC_URL,
            "--data-dir",
            &data_dir,
            "--database-url",
            &database_url,
            "--smtp-url",
            &smtp_url,
        ];
        args.extend_from_slice(extra);
        let mut settings = Cli::try_parse_from(args).unwrap().config.resolve().unwrap();
        settings.outbox_poll_interval = Duration::from_millis(100);
        // The workers look as often where the database announces work: the tests of retries
        // and key activations need not wait out production's ten seconds. The statement count
        // runs with production's intervals, and the store's tests hear the announcements.
        settings.announced_work_poll_interval = Duration::from_millis(100);
        settings.http_workers = 2;
        settings
    }

    pub async fn spawn(&self) -> TestApp {
        self.spawn_with(&[]).await
    }

    /// Starts one more instance on the shared database, with extra command-line flags.
    pub async fn spawn_with(&self, extra: &[&str]) -> TestApp {
        self.spawn_with_clock(extra, Arc::new(TestClock::default())).await
    }

    /// Starts an instance with settings the command line does not reach.
    pub async fn spawn_tuned(&self, tune: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = self.settings(&[]);
        tune(&mut settings);
        TestApp::start(Application::build_with_clock(&settings, Arc::new(TestClock::default())).await.unwrap())
    }

    /// Starts an instance with extra flags, settings the command line does not reach, and a
    /// clock the test moves.
    pub async fn spawn_configured(
        &self,
        extra: &[&str],
        tune: impl FnOnce(&mut Settings),
        clock: Arc<TestClock>,
    ) -> TestApp {
        let mut settings = self.settings(extra);
        tune(&mut settings);
        TestApp::start(Application::build_with_clock(&settings, clock).await.unwrap())
    }

    /// Starts an instance whose clock the test moves.
    pub async fn spawn_with_clock(&self, extra: &[&str], clock: Arc<TestClock>) -> TestApp {
        TestApp::start(Application::build_with_clock(&self.settings(extra), clock).await.unwrap())
    }
}

use clap::Parser as _;

/// The real time moved on by however much the test asked, so links, tokens and windows expire
/// without waiting; or, frozen, an instant that does not move at all (no UTC midnight passes
/// during the test).
#[derive(Default)]
pub struct TestClock {
    frozen_at: Option<time::OffsetDateTime>,
    ahead: Mutex<time::Duration>,
}

impl TestClock {
    /// A clock that stays at the instant of its creation until advanced.
    pub fn frozen() -> Self {
        Self { frozen_at: Some(time::OffsetDateTime::now_utc()), ahead: Mutex::default() }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: time::Duration) {
        *self.ahead.lock().unwrap() += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> time::OffsetDateTime {
        self.frozen_at.unwrap_or_else(time::OffsetDateTime::now_utc) + *self.ahead.lock().unwrap()
    }
}

/// One running instance.
pub struct TestApp {
    pub address: String,
    pub handle: ServerHandle,
    pub client: reqwest::Client,
    /// Begins a draining shutdown, as SIGTERM does.
    pub drain: Option<flexauth_server::startup::Drain>,
    /// `http://127.0.0.1:port` of the metrics listener, when the instance has one.
    pub metrics_address: Option<String>,
    running: Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<no error code>")
    }
}

pub async fn read(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, headers, body, text }
}

impl TestApp {
    fn start(app: Application) -> Self {
        let port = app.port();
        let handle = app.server_handle();
        let drain = Some(app.drain_handle());
        let metrics_address = app.metrics_port().map(|port| format!("http://127.0.0.1:{port}"));
        let running = tokio::spawn(app.run_until_stopped());
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            handle,
            drain,
            metrics_address,
            client: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
            running: Mutex::new(Some(running)),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        read(self.client.post(self.url(path)).json(&body).send().await.unwrap()).await
    }

    /// A POST as relayed by a proxy that saw the client at `client` (`X-Forwarded-For`).
    pub async fn post_from(&self, client: &str, path: &str, body: Value) -> Reply {
        read(self.client.post(self.url(path)).header("x-forwarded-for", client).json(&body).send().await.unwrap()).await
    }

    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Reply {
        let mut request = self.client.post(self.url(path));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        read(request.body(body).send().await.unwrap()).await
    }

    pub async fn post_with_bearer(&self, path: &str, token: &str) -> Reply {
        read(self.client.post(self.url(path)).bearer_auth(token).send().await.unwrap()).await
    }

    pub async fn post_json_with_bearer(&self, path: &str, token: &str, body: Value) -> Reply {
        read(self.client.post(self.url(path)).bearer_auth(token).json(&body).send().await.unwrap()).await
    }

    pub async fn delete_with_bearer(&self, path: &str, token: &str) -> Reply {
        read(self.client.delete(self.url(path)).bearer_auth(token).send().await.unwrap()).await
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        read(self.client.post(self.url(path)).form(&form).send().await.unwrap()).await
    }

    /// Logs in as a given client, so sessions can be told apart.
    pub async fn login_as(&self, email: &str, password: &str, user_agent: &str) -> Reply {
        let request = self.client.post(self.url("/v1/auth/login")).header("user-agent", user_agent);
        read(request.json(&json!({ "email": email, "password": password })).send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        read(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    pub async fn get_with_bearer(&self, path: &str, token: &str) -> Reply {
        read(self.client.get(self.url(path)).bearer_auth(token).send().await.unwrap()).await
    }

    pub async fn signup(&self, email: &str) -> Reply {
        self.post("/v1/auth/signup", json!({ "email": email, "password": PASSWORD })).await
    }

    pub async fn login(&self, email: &str) -> Reply {
        self.post("/v1/auth/login", json!({ "email": email, "password": PASSWORD })).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post("/v1/auth/refresh", json!({ "refresh_token": refresh_token })).await
    }

    /// Signs up, follows the link of the verification email, and logs in; returns the login
    /// response's `data`.
    pub async fn verified_login(&self, env: &TestEnv, email: &str) -> Value {
        assert_eq!(self.signup(email).await.status, StatusCode::ACCEPTED);
        let mail = wait_for_mail_to(env.smtp(), email).await;
        confirm_in_browser(self, &mail, PASSWORD).await;
        let login = self.login(email).await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.text);
        login.body["data"].clone()
    }

    /// The same instance reached at another address (through a proxy); stopping it is the
    /// original's business.
    pub fn via(&self, address: String) -> TestApp {
        TestApp {
            address,
            handle: self.handle.clone(),
            client: self.client.clone(),
            drain: None,
            metrics_address: None,
            running: Mutex::new(None),
        }
    }

    /// Stops the instance gracefully and waits until it has finished its shutdown work (the
    /// worker's last pass, the last write of request counts).
    pub async fn stop(&self) {
        self.handle.stop(true).await;
        let running = self.running.lock().unwrap().take();
        if let Some(running) = running {
            running.await.unwrap().unwrap();
        }
    }
}

/// The path and query of the link in `mail`, to be opened on any instance.
pub fn verify_path(mail: &ReceivedMessage) -> String {
    let link = mail.first_link().expect("the email has a link");
    let path = link.strip_prefix(PUBLIC_URL).expect("the link points at the public URL");
    path.to_owned()
}

/// The token in the link of `mail`.
pub fn token_of(mail: &ReceivedMessage) -> String {
    verify_path(mail).split_once("token=").unwrap().1.to_owned()
}

/// Polls `probe` until it yields a value, for at most 20 seconds (mail goes through the outbox
/// worker, so it arrives a moment after the request that queued it).
pub async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the first email to `address` with `subject`.
pub async fn wait_for_subject(smtp: &SmtpSink, address: &str, subject: &str) -> ReceivedMessage {
    eventually(&format!("an email \"{subject}\" to {address}"), || {
        mails_to(smtp, address).into_iter().find(|mail| mail.subject().as_deref() == Some(subject))
    })
    .await
}

/// Waits for the first email to `address`.
pub async fn wait_for_mail_to(smtp: &SmtpSink, address: &str) -> ReceivedMessage {
    eventually(&format!("an email to {address}"), || mails_to(smtp, address).into_iter().next()).await
}

/// Waits until `count` emails to `address` arrived, and returns them.
pub async fn wait_for_mails(smtp: &SmtpSink, address: &str, count: usize) -> Vec<ReceivedMessage> {
    eventually(&format!("{count} emails to {address}"), || {
        Some(mails_to(smtp, address)).filter(|mails| mails.len() >= count)
    })
    .await
}

pub fn mails_to(smtp: &SmtpSink, address: &str) -> Vec<ReceivedMessage> {
    smtp.messages().into_iter().filter(|mail| mail.rcpt_to.iter().any(|to| to == address)).collect()
}

pub fn unique_email(prefix: &str) -> String {
    format!("{prefix}-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// Starts an instance as `cargo run` does: embedded SQLite and mail files in `data_dir`, a
/// generated key, nothing else configured.
pub async fn spawn_embedded(data_dir: &std::path::Path) -> TestApp {
    clean_environment();
    let data_dir = data_dir.display().to_string();
    let args = ["flexauth", "--bind", "127.0.0.1:0", "--public-url", PUBLIC_URL, "--data-dir", &data_dir];
    let mut settings = Cli::try_parse_from(args).unwrap().config.resolve().unwrap();
    settings.outbox_poll_interval = Duration::from_millis(100);
    settings.http_workers = 2;
    TestApp::start(Application::build(&settings).await.unwrap())
}

/// The value of attribute `name` in the first tag of `html` that has `marker` in it.
fn attribute_near(html: &str, marker: &str, name: &str) -> Option<String> {
    let at = html.find(marker)?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = start + tag[start..].find('"')?;
    Some(tag[start..end].replace("&amp;", "&").replace("&quot;", "\"").replace("&#39;", "'"))
}

/// Opens the verification link of `mail` as a person in a browser does: loads the page and, if
/// it shows a form, submits it, typing `password` into its password field when it has one.
/// Returns the page the person ends up on.
pub async fn confirm_in_browser(app: &TestApp, mail: &ReceivedMessage, password: &str) -> Reply {
    let page = app.get(&verify_path(mail)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    if !page.text.contains("<form") {
        return page;
    }
    let action = attribute_near(&page.text, "<form", "action").expect("the form has an action");
    // A relative action resolves against the page's directory, as a browser does.
    let path = verify_path(mail);
    let action = if action.starts_with('/') {
        action
    } else {
        format!("{}{action}", &path[..path.split('?').next().unwrap_or("").rfind('/').unwrap() + 1])
    };
    let mut fields = vec![(
        "token".to_owned(),
        attribute_near(&page.text, "name=\"token\"", "value").expect("the form carries the token"),
    )];
    if page.text.contains("name=\"password\"") {
        fields.push(("password".to_owned(), password.to_owned()));
    }
    let form: Vec<(&str, &str)> = fields.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    let confirmed = app.post_form(&action, &form).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
    confirmed
}
