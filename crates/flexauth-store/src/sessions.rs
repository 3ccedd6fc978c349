use async_trait::async_trait;
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use flexauth_domain::account::AccountId;
use flexauth_domain::audit::AuditEvent;
use flexauth_domain::mail::OutgoingEmail;
use flexauth_domain::newtypes::AuthenticationMethods;
use flexauth_domain::secret::TokenHash;
use flexauth_domain::session::{EndedSessions, RevocationReason, Rotation, Session, SessionId, SessionRepository};
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::rows::{millis, NewOutboxRow, SessionRow};
use crate::schema::{accounts, known_devices, outbox, sessions};
use crate::webhooks::{announce_sessions_ended, EndedSession, Recorded, ALL_TYPES, ENDED_SESSION};
use crate::{guarded, per_backend, DbConnection, Store, StoreError};

/// Ends session `id` at `at` for `reason` unless it ended already, and announces it, in the
/// caller's transaction; returns how many sessions it ended (0 or 1).
fn end_one(c: &mut DbConnection, id: &str, reason: RevocationReason, at: OffsetDateTime) -> Result<usize, DieselError> {
    let now = millis(at);
    let ended: Vec<EndedSession> =
        per_backend!(c, |c| diesel::update(sessions::table.find(id).filter(sessions::revoked_at.is_null()))
            .set((sessions::revoked_at.eq(now), sessions::revoked_reason.eq(reason.as_str())))
            .returning(ENDED_SESSION)
            .get_results(c))?;
    announce_sessions_ended(c, &ended, reason, at)?;
    Ok(ended.len())
}

/// Records that `device` logged in to the account at `now`, in the caller's transaction. A
/// token another account holds is left alone: it is never this device's.
fn remember_device_on(c: &mut DbConnection, account_id: &str, device: &[u8], now: i64) -> Result<(), DieselError> {
    per_backend!(c, |c| {
        diesel::insert_into(known_devices::table)
            .values((
                known_devices::token_hash.eq(device),
                known_devices::account_id.eq(account_id),
                known_devices::created_at.eq(now),
                known_devices::last_seen_at.eq(now),
            ))
            .on_conflict(known_devices::token_hash)
            .do_nothing()
            .execute(c)
    })?;
    diesel::update(known_devices::table.find(device).filter(known_devices::account_id.eq(account_id)))
        .set(known_devices::last_seen_at.eq(now))
        .execute(c)?;
    Ok(())
}

/// The columns a new session writes, in [`OPEN_SESSION`]'s order.
const NEW_SESSION_COLUMNS: &str = "id, account_id, created_at, expires_at, current_hash, current_issued_at, \
    current_expires_at, generation, user_agent, ip, authenticated_at, amr, second_factor_at";

/// A login's writes on PostgreSQL, as one statement: the guard on the account's credential
/// version, the session, the security log entry, the device, and (when an endpoint
/// subscribes) the webhook messages, each step reading what the one before wrote, so that
/// nothing is written unless the guard passed. The guard's `FOR SHARE` lock holds the account
/// row until commit, as a write to it would: a password change or reset, which writes that
/// row first, waits for this session and then ends it, or it committed first and the guard,
/// re-checked on the new row, finds the version moved. Concurrent logins of one account share
/// the lock and do not wait for each other.
fn open_session_in_one_statement(
    c: &mut diesel::pg::PgConnection,
    row: &SessionRow,
    credential_version: i64,
    event: &Recorded,
    device: &[u8],
) -> Result<bool, DieselError> {
    use diesel::sql_types::{BigInt, Binary, Nullable, Text};
    let audit = event.audit();
    let mut statement = format!(
        "WITH guard AS (SELECT id FROM accounts WHERE id = $1 AND credential_version = $2 FOR SHARE), \
         opened AS (INSERT INTO sessions ({NEW_SESSION_COLUMNS}) \
            SELECT $3, guard.id, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM guard \
            RETURNING account_id, created_at), \
         logged AS (INSERT INTO audit_events (id, account_id, kind, at, ip, user_agent, session_id, key_id) \
            SELECT $15, opened.account_id, $16, $17, $18, $19, $20, $21 FROM opened RETURNING id), \
         remembered AS (INSERT INTO known_devices (token_hash, account_id, created_at, last_seen_at) \
            SELECT $22, opened.account_id, opened.created_at, opened.created_at FROM opened \
            ON CONFLICT (token_hash) DO UPDATE SET last_seen_at = excluded.last_seen_at \
            WHERE known_devices.account_id = excluded.account_id)"
    );
    if event.webhook().is_some() {
        statement.push_str(
            ", queued AS (INSERT INTO webhook_messages (id, endpoint_id, event_id, event_type, occurred_at, \
                account_id, email, session_id, key_id, factor_id, reason, ip, user_agent, queued_at, \
                next_attempt_at, attempts) \
            SELECT endpoint.id || ':' || $23, endpoint.id, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, \
                $25, $25, 0 \
            FROM webhook_endpoints endpoint, logged \
            WHERE endpoint.disabled_at IS NULL AND endpoint.id IN \
                (SELECT endpoint_id FROM webhook_subscriptions WHERE event_type IN ($24, $34)))",
        );
    }
    statement.push_str(" SELECT count(*) AS opened FROM opened");
    let query = diesel::sql_query(statement)
        .into_boxed::<diesel::pg::Pg>()
        .bind::<Text, _>(&row.account_id)
        .bind::<BigInt, _>(credential_version)
        .bind::<Text, _>(&row.id)
        .bind::<BigInt, _>(row.created_at)
        .bind::<BigInt, _>(row.expires_at)
        .bind::<Binary, _>(&row.current_hash)
        .bind::<BigInt, _>(row.current_issued_at)
        .bind::<BigInt, _>(row.current_expires_at)
        .bind::<BigInt, _>(row.generation)
        .bind::<Nullable<Text>, _>(&row.user_agent)
        .bind::<Nullable<Text>, _>(&row.ip)
        .bind::<BigInt, _>(row.authenticated_at)
        .bind::<Text, _>(&row.amr)
        .bind::<Nullable<BigInt>, _>(row.second_factor_at)
        .bind::<Text, _>(&audit.id)
        .bind::<Text, _>(&audit.kind)
        .bind::<BigInt, _>(audit.at)
        .bind::<Nullable<Text>, _>(&audit.ip)
        .bind::<Nullable<Text>, _>(&audit.user_agent)
        .bind::<Nullable<Text>, _>(&audit.session_id)
        .bind::<Nullable<Text>, _>(&audit.key_id)
        .bind::<Binary, _>(device);
    let query = match event.webhook() {
        Some(webhook) => query
            .bind::<Text, _>(&webhook.id)
            .bind::<Text, _>(webhook.event_type)
            .bind::<BigInt, _>(webhook.occurred_at)
            .bind::<Text, _>(&webhook.account_id)
            .bind::<Nullable<Text>, _>(&webhook.email)
            .bind::<Nullable<Text>, _>(&webhook.session_id)
            .bind::<Nullable<Text>, _>(&webhook.key_id)
            .bind::<Nullable<Text>, _>(&webhook.factor_id)
            .bind::<Nullable<Text>, _>(&webhook.reason)
            .bind::<Nullable<Text>, _>(&webhook.ip)
            .bind::<Nullable<Text>, _>(&webhook.user_agent)
            .bind::<Text, _>(ALL_TYPES),
        None => query,
    };
    let opened: Opened = diesel::RunQueryDsl::get_result(query, c)?;
    Ok(opened.opened == 1)
}

/// How many sessions [`open_session_in_one_statement`] stored (0 or 1).
#[derive(QueryableByName)]
struct Opened {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    opened: i64,
}

/// Answered from the sessions that ended recently, kept in memory by the store.
impl EndedSessions for Store {
    fn has_ended(&self, id: SessionId) -> Option<bool> {
        self.note_request();
        let trusted = match &self.announcements {
            Some(announcements) => announcements.sessions_trusted(),
            None => self.sqlite_path.is_some() && self.ended_sessions.read_recently(),
        };
        self.ended_sessions.answer(&id.to_string(), trusted)
    }

    fn last_heard_ended(&self, id: SessionId) -> bool {
        self.ended_sessions.last_heard(&id.to_string())
    }
}

#[async_trait]
impl SessionRepository for Store {
    async fn create(
        &self,
        session: &Session,
        credential_version: i64,
        event: &AuditEvent,
        device: &TokenHash,
    ) -> Result<bool, InfraError> {
        let row = SessionRow::from(session);
        let event = Recorded::from(event);
        let device = device.as_bytes().to_vec();
        let outcome = self
            .run(move |c| match c {
                DbConnection::Postgres(c) => {
                    if open_session_in_one_statement(c, &row, credential_version, &event, &device)? {
                        Ok(())
                    } else {
                        Err(StoreError::Query(DieselError::RollbackTransaction))
                    }
                }
                DbConnection::Sqlite(_) => (c.transaction(|c| {
                    // SQLite serialises writers: a password change or reset either committed
                    // before this transaction (the guard finds the version moved) or waits for
                    // it and then ends this session.
                    let current = accounts::table
                        .find(&row.account_id)
                        .filter(accounts::credential_version.eq(credential_version))
                        .select(accounts::id)
                        .first::<String>(c)
                        .optional()?;
                    if current.is_none() {
                        return Err(DieselError::RollbackTransaction);
                    }
                    diesel::insert_into(sessions::table).values(&row).execute(c)?;
                    event.insert(c)?;
                    remember_device_on(c, &row.account_id, &device, row.created_at)?;
                    Ok::<_, DieselError>(())
                }))
                .map_err(StoreError::from),
            })
            .await;
        Ok(guarded(outcome)?)
    }

    async fn revoke_with_notice(
        &self,
        id: SessionId,
        now: OffsetDateTime,
        reason: RevocationReason,
        notice: &OutgoingEmail,
        event: &AuditEvent,
    ) -> Result<bool, InfraError> {
        let id = id.to_string();
        let event = Recorded::from(event);
        let outbox_row = NewOutboxRow::new(notice, now);
        let at = now;
        let revoked = self
            .run(move |c| {
                (c.transaction(|c| {
                    let revoked = end_one(c, &id, reason, at)?;
                    if revoked == 1 {
                        diesel::insert_into(outbox::table).values(&outbox_row).execute(c)?;
                        event.insert(c)?;
                    }
                    Ok::<_, DieselError>(revoked == 1)
                }))
                .map_err(StoreError::from)
            })
            .await?;
        if revoked {
            self.announce_sessions_ended().await;
        }
        Ok(revoked)
    }

    async fn mark_authenticated(&self, id: SessionId, now: OffsetDateTime) -> Result<bool, InfraError> {
        let id = id.to_string();
        let now = millis(now);
        let updated = self
            .run(move |c| {
                Ok(diesel::update(sessions::table.find(&id).filter(sessions::revoked_at.is_null()))
                    .set(sessions::authenticated_at.eq(now))
                    .execute(c)?)
            })
            .await?;
        Ok(updated == 1)
    }

    async fn mark_second_factor(
        &self,
        id: SessionId,
        now: OffsetDateTime,
        methods: AuthenticationMethods,
    ) -> Result<bool, InfraError> {
        let id = id.to_string();
        let now = millis(now);
        let amr = methods.to_stored();
        let updated = self
            .run(move |c| {
                Ok(diesel::update(sessions::table.find(&id).filter(sessions::revoked_at.is_null()))
                    .set((sessions::second_factor_at.eq(now), sessions::amr.eq(&amr)))
                    .execute(c)?)
            })
            .await?;
        Ok(updated == 1)
    }

    async fn find(&self, id: SessionId) -> Result<Option<Session>, InfraError> {
        let id = id.to_string();
        let row = self
            .run(move |c| Ok(sessions::table.find(&id).select(SessionRow::as_select()).first(c).optional()?))
            .await?;
        Ok(row.map(Session::try_from).transpose()?)
    }

    async fn rotate(&self, rotation: &Rotation) -> Result<bool, InfraError> {
        let id = rotation.session_id.to_string();
        let expected = rotation.expected_current.as_bytes().to_vec();
        let new_current = rotation.new_current.as_bytes().to_vec();
        let nonce = rotation.nonce.as_bytes().to_vec();
        let (issued_at, expires_at, generation) =
            (millis(rotation.issued_at), millis(rotation.expires_at), rotation.generation);
        // The filter on the live digest is the compare-and-swap: under concurrent rotations
        // PostgreSQL re-checks it after the first writer commits, SQLite serialises writers,
        // and either way only one UPDATE matches.
        let updated = self
            .run(move |c| {
                Ok(diesel::update(
                    sessions::table
                        .find(&id)
                        .filter(sessions::current_hash.eq(&expected))
                        .filter(sessions::revoked_at.is_null()),
                )
                .set((
                    sessions::previous_hash.eq(&expected),
                    sessions::current_hash.eq(&new_current),
                    sessions::rotation_nonce.eq(&nonce),
                    sessions::current_issued_at.eq(issued_at),
                    sessions::current_expires_at.eq(expires_at),
                    sessions::generation.eq(generation),
                ))
                .execute(c)?)
            })
            .await?;
        Ok(updated == 1)
    }

    async fn revoke(&self, id: SessionId, now: OffsetDateTime, reason: RevocationReason) -> Result<bool, InfraError> {
        let id = id.to_string();
        let at = now;
        let updated =
            self.run(move |c| (c.transaction(|c| end_one(c, &id, reason, at))).map_err(StoreError::from)).await?;
        if updated == 1 {
            self.announce_sessions_ended().await;
        }
        Ok(updated == 1)
    }

    async fn logged_in_from(&self, account_id: AccountId, ip: &str, since: OffsetDateTime) -> Result<bool, InfraError> {
        let (account_id, ip, since) = (account_id.to_string(), ip.to_owned(), millis(since));
        let found: Option<String> = self
            .run(move |c| {
                Ok(sessions::table
                    .filter(sessions::account_id.eq(&account_id))
                    .filter(sessions::ip.eq(&ip))
                    .filter(sessions::created_at.ge(since))
                    .select(sessions::id)
                    .first(c)
                    .optional()?)
            })
            .await?;
        Ok(found.is_some())
    }

    async fn device_known(
        &self,
        account_id: AccountId,
        device: &TokenHash,
        since: OffsetDateTime,
    ) -> Result<bool, InfraError> {
        let (account_id, device, since) = (account_id.to_string(), device.as_bytes().to_vec(), millis(since));
        let found: Option<Vec<u8>> = self
            .run(move |c| {
                Ok(known_devices::table
                    .find(&device)
                    .filter(known_devices::account_id.eq(&account_id))
                    .filter(known_devices::last_seen_at.ge(since))
                    .select(known_devices::token_hash)
                    .first(c)
                    .optional()?)
            })
            .await?;
        Ok(found.is_some())
    }

    async fn remember_device(
        &self,
        account_id: AccountId,
        device: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<(), InfraError> {
        let (account_id, device, now) = (account_id.to_string(), device.as_bytes().to_vec(), millis(now));
        self.run(move |c| Ok(remember_device_on(c, &account_id, &device, now)?)).await?;
        Ok(())
    }

    async fn list_live(&self, account_id: AccountId, now: OffsetDateTime) -> Result<Vec<Session>, InfraError> {
        let account_id = account_id.to_string();
        let now = millis(now);
        let rows = self
            .run(move |c| {
                Ok(sessions::table
                    .filter(sessions::account_id.eq(&account_id))
                    .filter(sessions::revoked_at.is_null())
                    .filter(sessions::expires_at.gt(now))
                    .filter(sessions::current_expires_at.gt(now))
                    .order((sessions::created_at.desc(), sessions::id.asc()))
                    .select(SessionRow::as_select())
                    .load(c)?)
            })
            .await?;
        Ok(rows.into_iter().map(Session::try_from).collect::<Result<_, _>>()?)
    }

    async fn forget_known_clients(&self, account_id: AccountId, now: OffsetDateTime) -> Result<(), InfraError> {
        let (account_id, now) = (account_id.to_string(), millis(now));
        self.run(move |c| Ok(c.transaction(|c| crate::accounts::forget_known_clients(c, &account_id, now))?)).await?;
        Ok(())
    }

    async fn revoke_all(
        &self,
        account_id: AccountId,
        keep: Option<SessionId>,
        now: OffsetDateTime,
        reason: RevocationReason,
    ) -> Result<u64, InfraError> {
        let account_id = account_id.to_string();
        // No session is kept when none is named: an id no session has.
        let keep = keep.map(|id| id.to_string()).unwrap_or_default();
        let at = now;
        let now = millis(now);
        let revoked = self
            .run(move |c| {
                (c.transaction(|c| {
                    let ended: Vec<EndedSession> = per_backend!(c, |c| diesel::update(
                        sessions::table
                            .filter(sessions::account_id.eq(&account_id))
                            .filter(sessions::revoked_at.is_null())
                            .filter(sessions::id.ne(&keep))
                    )
                    .set((sessions::revoked_at.eq(now), sessions::revoked_reason.eq(reason.as_str())))
                    .returning(ENDED_SESSION)
                    .get_results(c))?;
                    announce_sessions_ended(c, &ended, reason, at)?;
                    Ok::<_, DieselError>(ended.len())
                }))
                .map_err(StoreError::from)
            })
            .await?;
        // A count of rows changed: usize always fits u64 on the platforms flexauth builds for.
        if revoked > 0 {
            self.announce_sessions_ended().await;
        }
        Ok(revoked as u64)
    }
}
