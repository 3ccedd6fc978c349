//! Every statement of a hot path and of the purge uses an index on a large database: the real
//! store runs each operation on PostgreSQL tables of a few hundred thousand rows, diesel's
//! instrumentation records every statement it sends, and each is explained
//! (`PREPARE` with its parameters' types as PostgreSQL infers them, then `EXPLAIN EXECUTE` with
//! the values it was sent): a sequential scan of a large table fails the test. The statements
//! of each operation are counted and printed too.

use std::sync::{Mutex, OnceLock};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use flexauth_contract::{api_key, device_of, login_event, new_session, stored_account, NOW, THREE_A_MINUTE};
use flexauth_domain::account::{AccountRepository, AccountRequestQueue, EmailAddress};
use flexauth_domain::api_key::ApiKeyRepository;
use flexauth_domain::audit::AuditLog;
use flexauth_domain::housekeeping::{Housekeeping, RetentionSettings};
use flexauth_domain::limits::{LimitCounter, LimitPolicy, LimitSettlement, RateLimiter};
use flexauth_domain::mail::{LeaseId, Outbox};
use flexauth_domain::secret::TokenHash;
use flexauth_domain::session::{RefreshSecret, SessionRepository};
use flexauth_domain::webhook::WebhookQueue;
use flexauth_store::test_db::TestDatabase;
use time::Duration;
use uuid::Uuid;

/// The tables that are large in production; a sequential scan of another (the endpoints, the
/// signing keys) is fine.
const LARGE: &[&str] = &[
    "accounts",
    "sessions",
    "audit_events",
    "rate_limits",
    "api_keys",
    "known_devices",
    "email_verification_tokens",
    "password_reset_tokens",
    "session_endings",
    "outbox",
    "webhook_messages",
    "webhook_attempts",
    "mfa_factors",
];

/// The database whose statements are recorded, and what was recorded.
static WATCHED: OnceLock<String> = OnceLock::new();
static RECORDED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records the statements of connections to the watched database only: other tests of this
/// binary run beside this one.
struct Recorder {
    watched: bool,
}

impl Instrumentation for Recorder {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartEstablishConnection { url, .. } => {
                self.watched = WATCHED.get().is_some_and(|name| url.contains(name.as_str()));
            }
            InstrumentationEvent::StartQuery { query, .. } if self.watched => {
                RECORDED.lock().unwrap().push(query.to_string());
            }
            _ => {}
        }
    }
}

fn recorder() -> Option<Box<dyn Instrumentation>> {
    Some(Box::new(Recorder { watched: false }))
}

fn psql(url: &str, sql: &str) -> String {
    let output = std::process::Command::new("psql")
        .args([url, "-AtqX", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(output.status.success(), "psql: {}\n{sql}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A few hundred thousand rows in the tables that grow, as they stand between two purges: almost
/// nothing due (the purge took what was), so a query that must find the few due rows without an
/// index reads every row. `{now}` is the scenarios' NOW.
fn fill(url: &str) {
    psql(url, &"
        INSERT INTO accounts (id, email, password_hash, email_verified_at, created_at, credential_version)
          SELECT gen_random_uuid()::text, 'filler' || n || '@example.com', 'hash',
                 CASE WHEN n % 100 = 0 THEN NULL ELSE {now} - 86400000::bigint * 29 END, {now} - 86400000::bigint * 30 + n, 1
          FROM generate_series(1, 100000) AS n;
        UPDATE accounts SET created_at = {now} - 86400000 WHERE email_verified_at IS NULL;
        CREATE TEMP TABLE filler AS SELECT id, row_number() OVER () AS n FROM accounts;
        INSERT INTO sessions (id, account_id, created_at, expires_at, current_hash, current_issued_at,
                              current_expires_at, generation, revoked_at, authenticated_at, amr)
          SELECT gen_random_uuid()::text, f.id, {now} - 86400000, {now} + 86400000::bigint * 60,
                 sha256((f.n * 3 + k)::text::bytea), {now} - 86400000, {now} + 86400000::bigint * 10, 1,
                 CASE WHEN k = 0 THEN {now} - 86400000 ELSE NULL END, {now} - 86400000, 'pwd'
          FROM filler f, generate_series(0, 2) AS k;
        INSERT INTO audit_events (id, account_id, kind, at)
          SELECT gen_random_uuid()::text, f.id, 'login_succeeded', {now} - 86400000::bigint * (f.n % 89)
          FROM filler f, generate_series(0, 2) AS k;
        INSERT INTO rate_limits (key, window_start, hits)
          SELECT 'login:' || n, {now} - 600000, 3 FROM generate_series(1, 100000) AS n;
        INSERT INTO api_keys (id, account_id, name, prefix, key_hash, created_at, scopes)
          SELECT gen_random_uuid()::text, f.id, 'filler', 'fo_live_abcd', sha256(('key' || f.n)::bytea), {now} - 86400000, ''
          FROM filler f WHERE f.n % 4 = 0;
        INSERT INTO known_devices (token_hash, account_id, created_at, last_seen_at)
          SELECT sha256(('device' || f.n)::bytea), f.id, {now} - 86400000, {now} - 86400000 FROM filler f WHERE f.n % 2 = 0;
        INSERT INTO email_verification_tokens (token_hash, account_id, expires_at, used_at, created_at)
          SELECT sha256(('verify' || f.n)::bytea), f.id, {now} + 86400000, NULL, {now} - 3600000
          FROM filler f WHERE f.n % 2 = 0;
        INSERT INTO password_reset_tokens (token_hash, account_id, expires_at, used_at)
          SELECT sha256(('reset' || f.n)::bytea), f.id, {now} + 3600000, NULL FROM filler f WHERE f.n % 2 = 0;
        INSERT INTO session_endings (session_id, ended_at)
          SELECT gen_random_uuid()::text, {now} - 3600000 FROM generate_series(1, 100000);
        INSERT INTO outbox (id, kind, recipient, subject, queued_at, next_attempt_at, attempts, sent_at)
          SELECT gen_random_uuid()::text, 'verification', 'filler@example.com', 's', {now} - 3600000, {now} - 3600000, 1, {now} - 3600000
          FROM generate_series(1, 100000);
        INSERT INTO mfa_factors (id, account_id, kind, name, secret, created_at, confirmed_at)
          SELECT gen_random_uuid()::text, f.id, 'totp', 'phone', 'sealed', {now} - 86400000, {now} - 86400000
          FROM filler f WHERE f.n % 2 = 0;
        INSERT INTO webhook_endpoints (id, url, secret, created_at)
          VALUES ('00000000-0000-4000-8000-000000000001', 'https://hooks.example.com/', 'whsec_x', {now} - 86400000);
        INSERT INTO webhook_subscriptions (event_type, endpoint_id) VALUES ('*', '00000000-0000-4000-8000-000000000001');
        INSERT INTO webhook_attempts (id, endpoint_id, event_id, event_type, attempt, at, duration_ms, status, result)
          SELECT gen_random_uuid()::text, '00000000-0000-4000-8000-000000000001', gen_random_uuid()::text,
                 'session.created', 1, {now} - 86400000, 5, 204, 'delivered'
          FROM generate_series(1, 100000);
        INSERT INTO webhook_messages (id, endpoint_id, event_id, event_type, occurred_at, account_id, queued_at,
                                      next_attempt_at, attempts, failed_at)
          SELECT '00000000-0000-4000-8000-000000000001:' || e, '00000000-0000-4000-8000-000000000001', e,
                 'session.created', {now} - 86400000, f.id, {now} - 86400000, {now} - 86400000, 8, {now} - 3600000
          FROM (SELECT gen_random_uuid()::text AS e, f.id FROM filler f) AS f;
        ANALYZE;
    ".replace("{now}", &NOW_MILLIS.to_string()));
}

/// The scenarios' NOW in Unix milliseconds.
const NOW_MILLIS: i64 = 1_795_780_800_000;

/// The value of a bind as diesel's debug output wrote it, as an SQL literal of `type_name`.
fn literal(value: &str, type_name: &str) -> String {
    let value = value.trim();
    if value == "None" {
        return "NULL".to_owned();
    }
    if let Some(inner) = value.strip_prefix("Some(").and_then(|rest| rest.strip_suffix(')')) {
        return literal(inner, type_name);
    }
    if type_name == "bytea" {
        let bytes: Vec<u8> = split_list(value).iter().map(|byte| byte.trim().parse().unwrap()).collect();
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        return format!("'\\x{hex}'::bytea");
    }
    if let Some(element) = type_name.strip_suffix("[]") {
        let items: Vec<String> = split_list(value).iter().map(|item| literal(item, element)).collect();
        return format!("ARRAY[{}]::{type_name}", items.join(","));
    }
    if let Some(text) = value.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')) {
        let text = text.replace("\\\"", "\"").replace("\\\\", "\\");
        return format!("'{}'", text.replace('\'', "''"));
    }
    value.to_owned()
}

/// The items of a debug-printed list `[a, b, "c, d"]`, at its outermost level.
fn split_list(list: &str) -> Vec<String> {
    let inner = list.trim().strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).unwrap_or(list);
    let (mut items, mut current, mut depth, mut quoted, mut escaped) = (Vec::new(), String::new(), 0, false, false);
    for character in inner.chars() {
        match character {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '[' | '(' if !quoted => depth += 1,
            ']' | ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(character);
    }
    if !current.trim().is_empty() {
        items.push(current);
    }
    items
}

/// The plan of a recorded statement, or `None` for one that scans nothing (transaction
/// control, a plain insert of values).
fn plan(url: &str, recorded: &str) -> Option<String> {
    let (sql, binds) = recorded.split_once(" -- binds: ").unwrap_or((recorded, "[]"));
    let upper = sql.trim_start().to_ascii_uppercase();
    let scans = upper.starts_with("SELECT")
        || upper.starts_with("UPDATE")
        || upper.starts_with("DELETE")
        || (upper.starts_with("INSERT") && upper.contains("SELECT"))
        || upper.starts_with("WITH");
    if !scans || upper.starts_with("SELECT 1") || upper.contains("PG_ADVISORY") || upper.contains("PG_BACKEND_PID") {
        return None;
    }
    let types = psql(url, &format!("PREPARE probe AS {sql}; SELECT array_to_string(parameter_types, ',') FROM pg_prepared_statements WHERE name = 'probe'"));
    let types: Vec<&str> = types.split(',').filter(|name| !name.is_empty()).collect();
    let values = split_list(binds);
    let arguments: Vec<String> =
        values.iter().zip(&types).map(|(value, type_name)| literal(value, type_name)).collect();
    let execute = if arguments.is_empty() {
        "EXECUTE probe".to_owned()
    } else {
        format!("EXECUTE probe({})", arguments.join(", "))
    };
    Some(psql(url, &format!("PREPARE probe AS {sql}; EXPLAIN {execute}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_every_statement_of_a_hot_path_and_of_the_purge_uses_an_index_on_a_large_database() {
    let Some(db) = TestDatabase::postgres().await else { return };
    let flexauth_store::DatabaseConfig::Postgres(url) = db.config().clone() else { unreachable!() };
    let name = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    fill(&url);
    WATCHED.set(name).unwrap();
    diesel::connection::set_default_instrumentation(recorder).unwrap();
    // A store of its own, so that every connection is made after the recorder is in place.
    let store = flexauth_store::Store::connect(db.config().clone()).unwrap();
    let store = &store;

    let account = stored_account(store).await;
    let address = EmailAddress::parse("owner@example.com").unwrap();
    let secret = RefreshSecret::from_bytes([1; 32]);
    let session = new_session(&account, &secret);
    let mut counts: Vec<(&str, usize)> = Vec::new();
    let mut statements: Vec<(String, String)> = Vec::new();
    macro_rules! operation {
        ($name:expr, $body:expr) => {{
            RECORDED.lock().unwrap().clear();
            $body;
            let recorded = std::mem::take(&mut *RECORDED.lock().unwrap());
            counts.push(($name, recorded.len()));
            statements.extend(recorded.into_iter().map(|sql| ($name.to_owned(), sql)));
        }};
    }
    let login_counters = [
        LimitCounter::new("192.0.2.7", THREE_A_MINUTE),
        LimitCounter::new("owner", THREE_A_MINUTE),
        LimitCounter::new("owner", LimitPolicy { name: "daily", ..THREE_A_MINUTE }),
    ];
    operation!("login: the limits counted", store.hit_all(&login_counters, NOW).await.unwrap());
    operation!(
        "login: the account, its factors and device",
        store.find_for_login(&address, Some(TokenHash::of(b"device"))).await.unwrap()
    );
    operation!(
        "login: a known client",
        store.logged_in_from(account.id(), "192.0.2.7", NOW - Duration::days(30)).await.unwrap()
    );
    let settlements = [
        LimitSettlement::Refund(login_counters[0].clone()),
        LimitSettlement::Clear(login_counters[1].clone()),
        LimitSettlement::Clear(login_counters[2].clone()),
    ];
    operation!("login: the limits settled", store.settle(&settlements, NOW).await.unwrap());
    operation!("a limit counted", store.hit("login:owner", &THREE_A_MINUTE, NOW).await.unwrap());
    operation!(
        "login: the session",
        SessionRepository::create(store, &session, 0, &login_event(&account), &device_of(&session)).await.unwrap()
    );
    operation!("refresh: the session", SessionRepository::find(store, session.id()).await.unwrap());
    operation!("protected call: an API key", store.find_active_by_hash(&TokenHash::of(b"no such key")).await.unwrap());
    let key = api_key(&account, "ci");
    let (hash, notice, event) =
        (TokenHash::of(b"ci"), flexauth_contract::mail_to("owner@example.com"), login_event(&account));
    operation!(
        "key creation",
        ApiKeyRepository::create(store, &key, &hash, &notice, session.id(), &event).await.unwrap()
    );
    operation!("security log", AuditLog::list(store, account.id(), None, 50).await.unwrap());
    operation!(
        "logout",
        SessionRepository::revoke(store, session.id(), NOW, flexauth_domain::session::RevocationReason::Logout)
            .await
            .unwrap()
    );
    let lease = LeaseId::from_uuid(Uuid::new_v4());
    operation!("worker: mail", Outbox::claim_due(store, NOW, lease, NOW + Duration::minutes(5), 5).await.unwrap());
    operation!("worker: account requests", store.claim(NOW, lease, NOW + Duration::minutes(5), 5).await.unwrap());
    operation!(
        "worker: webhooks",
        WebhookQueue::claim_due(store, NOW, lease, NOW + Duration::minutes(2), 4, &[]).await.unwrap()
    );
    operation!("purge", store.purge(&RetentionSettings::default().cutoffs(NOW)).await.unwrap());

    let mut scans = Vec::new();
    for (operation, recorded) in &statements {
        let Some(plan) = plan(&url, recorded) else { continue };
        for table in LARGE {
            if plan.contains(&format!("Seq Scan on {table} ")) || plan.ends_with(&format!("Seq Scan on {table}")) {
                let statement: String = recorded.chars().take(400).collect();
                scans.push(format!("{operation}: {table}\n  {statement}\n{plan}"));
            }
        }
    }
    eprintln!("statements per operation on PostgreSQL (BEGIN and COMMIT included): {counts:?}");
    assert!(scans.is_empty(), "sequential scans of large tables:\n{}", scans.join("\n\n"));
}
