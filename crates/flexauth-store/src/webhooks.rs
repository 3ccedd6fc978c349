//! Webhook endpoints and their message queue, and the writes the other repositories make in
//! their transactions: an event becomes one message per endpoint that subscribes to its type,
//! with one `INSERT … SELECT` (no row, and one cheap statement, when nobody subscribes).

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use flexauth_domain::audit::AuditEvent;
use flexauth_domain::mail::LeaseId;
use flexauth_domain::mfa::SealedSecret;
use flexauth_domain::newtypes::{AccountId, ApiKeyId, ClientInfo, EmailAddress, FactorId, RevocationReason, SessionId};
use flexauth_domain::webhook::{
    ending_announcement, AttemptResult, DeliveryAttempt, Endpoint, EndpointId, EventFilter, EventType,
    KeyRevocationReason, NewEndpoint, QueuedMessage, WebhookBacklog, WebhookEndpoints, WebhookEvent, WebhookQueue,
};
use flexauth_domain::InfraError;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::lease::claim_each;
use crate::rows::{instant, millis, parse_uuid, AuditEventRow};
use crate::schema::{audit_events, webhook_attempts, webhook_endpoints, webhook_messages, webhook_subscriptions};
use crate::{per_backend, DbConnection, Store, StoreError};

/// The subscription that receives every type.
pub(crate) const ALL_TYPES: &str = "*";

/// An event as its messages store it.
#[derive(Debug, Clone)]
pub(crate) struct EventRow {
    pub(crate) id: String,
    pub(crate) event_type: &'static str,
    pub(crate) occurred_at: i64,
    pub(crate) account_id: String,
    pub(crate) email: Option<String>,
    pub(crate) session_id: Option<String>,
    pub(crate) key_id: Option<String>,
    pub(crate) factor_id: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) ip: Option<String>,
    pub(crate) user_agent: Option<String>,
}

impl From<&WebhookEvent> for EventRow {
    fn from(event: &WebhookEvent) -> Self {
        Self {
            id: event.id.to_string(),
            event_type: event.event_type.as_str(),
            occurred_at: millis(event.at),
            account_id: event.account_id.to_string(),
            email: event.email.as_ref().map(|email| email.as_str().to_owned()),
            session_id: event.session_id.map(|id| id.to_string()),
            key_id: event.key_id.map(|id| id.to_string()),
            factor_id: event.factor_id.map(|id| id.to_string()),
            reason: event.reason.clone(),
            ip: event.client.ip.clone(),
            user_agent: event.client.user_agent.clone(),
        }
    }
}

impl EventRow {
    /// Queues the event for every endpoint that subscribes to its type and is not disabled,
    /// on `connection`, in the caller's transaction. Returns how many messages it queued.
    pub(crate) fn queue(&self, connection: &mut DbConnection) -> Result<usize, diesel::result::Error> {
        let now = self.occurred_at;
        per_backend!(connection, |c| {
            let subscribed = webhook_subscriptions::table
                .filter(webhook_subscriptions::event_type.eq_any([self.event_type, ALL_TYPES]))
                .select(webhook_subscriptions::endpoint_id);
            let messages = webhook_endpoints::table
                .filter(webhook_endpoints::disabled_at.is_null())
                .filter(webhook_endpoints::id.eq_any(subscribed))
                .select((
                    webhook_endpoints::id.concat(format!(":{}", self.id)),
                    webhook_endpoints::id,
                    self.id.clone().into_sql::<Text>(),
                    self.event_type.into_sql::<Text>(),
                    self.occurred_at.into_sql::<BigInt>(),
                    self.account_id.clone().into_sql::<Text>(),
                    self.email.clone().into_sql::<Nullable<Text>>(),
                    self.session_id.clone().into_sql::<Nullable<Text>>(),
                    self.key_id.clone().into_sql::<Nullable<Text>>(),
                    self.factor_id.clone().into_sql::<Nullable<Text>>(),
                    self.reason.clone().into_sql::<Nullable<Text>>(),
                    self.ip.clone().into_sql::<Nullable<Text>>(),
                    self.user_agent.clone().into_sql::<Nullable<Text>>(),
                    now.into_sql::<BigInt>(),
                    now.into_sql::<BigInt>(),
                    0.into_sql::<Integer>(),
                ));
            diesel::insert_into(webhook_messages::table)
                .values(messages)
                .into_columns((
                    webhook_messages::id,
                    webhook_messages::endpoint_id,
                    webhook_messages::event_id,
                    webhook_messages::event_type,
                    webhook_messages::occurred_at,
                    webhook_messages::account_id,
                    webhook_messages::email,
                    webhook_messages::session_id,
                    webhook_messages::key_id,
                    webhook_messages::factor_id,
                    webhook_messages::reason,
                    webhook_messages::ip,
                    webhook_messages::user_agent,
                    webhook_messages::queued_at,
                    webhook_messages::next_attempt_at,
                    webhook_messages::attempts,
                ))
                .execute(c)
        })
    }
}

/// An entry of the security log and the webhook event it makes, written together.
pub(crate) struct Recorded {
    audit: AuditEventRow,
    webhook: Option<EventRow>,
}

impl From<&AuditEvent> for Recorded {
    fn from(event: &AuditEvent) -> Self {
        Self {
            audit: AuditEventRow::from(event),
            webhook: WebhookEvent::from_audit(event).as_ref().map(EventRow::from),
        }
    }
}

impl Recorded {
    /// Stores the entry and queues its event, in the caller's transaction.
    pub(crate) fn insert(&self, c: &mut DbConnection) -> Result<(), diesel::result::Error> {
        diesel::insert_into(audit_events::table).values(&self.audit).execute(c)?;
        self.announce(c)
    }

    /// The security log row alone.
    pub(crate) fn audit(&self) -> &AuditEventRow {
        &self.audit
    }

    /// The webhook event, when the entry makes one.
    pub(crate) fn webhook(&self) -> Option<&EventRow> {
        self.webhook.as_ref()
    }

    /// Queues only the event, when the caller stored the entry with [`Recorded::audit`].
    pub(crate) fn announce(&self, c: &mut DbConnection) -> Result<(), diesel::result::Error> {
        if let Some(event) = &self.webhook {
            event.queue(c)?;
        }
        Ok(())
    }
}

/// A session as an `UPDATE … RETURNING` that ended it reads it back: id, account id, client
/// address, user agent, when its refresh token expired or expires, and when its expiry was
/// announced.
pub(crate) type EndedSession = (String, String, Option<String>, Option<String>, i64, Option<i64>);

/// The columns of [`EndedSession`].
pub(crate) const ENDED_SESSION: (
    crate::schema::sessions::id,
    crate::schema::sessions::account_id,
    crate::schema::sessions::ip,
    crate::schema::sessions::user_agent,
    crate::schema::sessions::current_expires_at,
    crate::schema::sessions::expiry_announced_at,
) = (
    crate::schema::sessions::id,
    crate::schema::sessions::account_id,
    crate::schema::sessions::ip,
    crate::schema::sessions::user_agent,
    crate::schema::sessions::current_expires_at,
    crate::schema::sessions::expiry_announced_at,
);

/// Queues one `session.ended` for each of `ended`, which a write at `at` ended for `reason`:
/// a session that was live then, for `reason`; one that had expired already, as `expired` at
/// its expiry, unless its expiry was announced (or is older than a day, as the purge would
/// not announce it either). So every session is announced once, whichever ends it first.
pub(crate) fn announce_sessions_ended(
    c: &mut DbConnection,
    ended: &[EndedSession],
    reason: RevocationReason,
    at: OffsetDateTime,
) -> Result<(), diesel::result::Error> {
    for (id, account_id, ip, user_agent, expires_at, announced) in ended {
        let (Ok(id), Ok(account_id), Ok(expires_at)) =
            (Uuid::parse_str(id), Uuid::parse_str(account_id), instant(*expires_at))
        else {
            continue;
        };
        let Some((reason, at)) =
            ending_announcement(Some(expires_at), announced.is_some(), at, reason, RevocationReason::Expired)
        else {
            continue;
        };
        let client = ClientInfo { ip: ip.clone(), user_agent: user_agent.clone(), device: None };
        let event = WebhookEvent::session_ended(
            Uuid::new_v4(),
            AccountId::from_uuid(account_id),
            SessionId::from_uuid(id),
            reason,
            at,
            client,
        );
        EventRow::from(&event).queue(c)?;
    }
    Ok(())
}

/// A key as an `UPDATE … RETURNING` that revoked it reads it back: id, account id, when it
/// expires, and when its expiry was announced.
pub(crate) type RevokedKey = (String, String, Option<i64>, Option<i64>);

/// The columns of [`RevokedKey`].
pub(crate) const REVOKED_KEY: (
    crate::schema::api_keys::id,
    crate::schema::api_keys::account_id,
    crate::schema::api_keys::expires_at,
    crate::schema::api_keys::expiry_announced_at,
) = (
    crate::schema::api_keys::id,
    crate::schema::api_keys::account_id,
    crate::schema::api_keys::expires_at,
    crate::schema::api_keys::expiry_announced_at,
);

/// Queues one `api_key.revoked` for each of `revoked`, which a write at `at` revoked for
/// `reason`: a key that still worked, for `reason`; one that had expired already, as
/// `expired` at its expiry, unless that was announced (or is older than a day). So every key
/// is announced once, whichever stops it first.
pub(crate) fn announce_keys_revoked(
    c: &mut DbConnection,
    revoked: &[RevokedKey],
    reason: KeyRevocationReason,
    at: OffsetDateTime,
) -> Result<(), diesel::result::Error> {
    for (id, account_id, expires_at, announced) in revoked {
        let (Ok(id), Ok(account_id), Ok(expires_at)) =
            (Uuid::parse_str(id), Uuid::parse_str(account_id), expires_at.map(instant).transpose())
        else {
            continue;
        };
        let Some((reason, at)) =
            ending_announcement(expires_at, announced.is_some(), at, reason, KeyRevocationReason::Expired)
        else {
            continue;
        };
        let event = WebhookEvent::key_revoked(
            Uuid::new_v4(),
            AccountId::from_uuid(account_id),
            ApiKeyId::from_uuid(id),
            reason,
            at,
        );
        EventRow::from(&event).queue(c)?;
    }
    Ok(())
}

/// Queues `account.deleted` with the reason `never_verified` for each unverified account of
/// `deleted`, removed at `at` (by the purge, or because another account took its address).
pub(crate) fn announce_never_verified(
    c: &mut DbConnection,
    deleted: &[String],
    at: OffsetDateTime,
) -> Result<(), diesel::result::Error> {
    for id in deleted {
        let Ok(id) = Uuid::parse_str(id) else { continue };
        announce(c, &WebhookEvent::never_verified_deleted(Uuid::new_v4(), AccountId::from_uuid(id), at))?;
    }
    Ok(())
}

/// Queues `account.verified` for `account`, confirmed at `at`, with the address it has now.
pub(crate) fn announce_verified(
    c: &mut DbConnection,
    account: AccountId,
    at: OffsetDateTime,
) -> Result<(), diesel::result::Error> {
    let email: String =
        crate::schema::accounts::table.find(account.to_string()).select(crate::schema::accounts::email).first(c)?;
    match EmailAddress::parse(&email) {
        Ok(email) => announce(c, &WebhookEvent::account_verified(Uuid::new_v4(), account, email, at)),
        Err(_) => {
            tracing::error!(account_id = %account, "account.verified not sent: the stored address does not parse");
            Ok(())
        }
    }
}

/// Queues `event`, built by the caller, in the caller's transaction.
pub(crate) fn announce(c: &mut DbConnection, event: &WebhookEvent) -> Result<(), diesel::result::Error> {
    EventRow::from(event).queue(c).map(|_| ())
}

fn text_event(kind: &str) -> Result<EventType, StoreError> {
    EventType::parse(kind).ok_or(StoreError::CorruptRow("unknown webhook event type"))
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = webhook_endpoints)]
struct EndpointRow {
    id: String,
    url: String,
    created_at: i64,
    failing_since: Option<i64>,
    disabled_at: Option<i64>,
    previous_secret_until: Option<i64>,
}

impl EndpointRow {
    fn into_endpoint(self, types: &[(String, String)]) -> Result<Endpoint, StoreError> {
        let names: Vec<&str> =
            types.iter().filter(|(endpoint, _)| *endpoint == self.id).map(|(_, kind)| kind.as_str()).collect();
        let filter = if names.contains(&ALL_TYPES) || names.is_empty() {
            EventFilter::All
        } else {
            EventFilter::Only(names.iter().map(|name| text_event(name)).collect::<Result<_, _>>()?)
        };
        Ok(Endpoint {
            id: EndpointId::from_uuid(parse_uuid(&self.id)?),
            url: self.url,
            filter,
            created_at: instant(self.created_at)?,
            failing_since: self.failing_since.map(instant).transpose()?,
            disabled_at: self.disabled_at.map(instant).transpose()?,
            previous_secret_until: self.previous_secret_until.map(instant).transpose()?,
        })
    }
}

#[async_trait]
impl WebhookEndpoints for Store {
    async fn add(&self, endpoint: &NewEndpoint) -> Result<(), InfraError> {
        let id = endpoint.id.to_string();
        let (url, secret, created_at) = (endpoint.url.clone(), endpoint.secret.0.clone(), millis(endpoint.created_at));
        let subscriptions: Vec<_> = endpoint
            .filter
            .names()
            .into_iter()
            .map(|name| (webhook_subscriptions::event_type.eq(name), webhook_subscriptions::endpoint_id.eq(id.clone())))
            .collect();
        self.run(move |c| {
            c.transaction(|c| {
                diesel::insert_into(webhook_endpoints::table)
                    .values((
                        webhook_endpoints::id.eq(&id),
                        webhook_endpoints::url.eq(&url),
                        webhook_endpoints::secret.eq(&secret),
                        webhook_endpoints::created_at.eq(created_at),
                    ))
                    .execute(c)?;
                for subscription in &subscriptions {
                    diesel::insert_into(webhook_subscriptions::table).values(subscription.clone()).execute(c)?;
                }
                Ok::<_, diesel::result::Error>(())
            })
            .map_err(StoreError::from)
        })
        .await?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Endpoint>, InfraError> {
        let (rows, types) = self
            .run(|c| {
                let rows = webhook_endpoints::table
                    .order((webhook_endpoints::created_at.asc(), webhook_endpoints::id.asc()))
                    .select(EndpointRow::as_select())
                    .load(c)?;
                let types = webhook_subscriptions::table
                    .select((webhook_subscriptions::endpoint_id, webhook_subscriptions::event_type))
                    .load::<(String, String)>(c)?;
                Ok((rows, types))
            })
            .await?;
        Ok(rows.into_iter().map(|row| row.into_endpoint(&types)).collect::<Result<_, _>>()?)
    }

    async fn remove(&self, id: EndpointId) -> Result<bool, InfraError> {
        let id = id.to_string();
        let removed = self.run(move |c| Ok(diesel::delete(webhook_endpoints::table.find(&id)).execute(c)?)).await?;
        Ok(removed == 1)
    }

    async fn rotate_secret(
        &self,
        id: EndpointId,
        secret: &SealedSecret,
        previous_until: OffsetDateTime,
    ) -> Result<bool, InfraError> {
        let (id, secret, until) = (id.to_string(), secret.0.clone(), millis(previous_until));
        let updated = self
            .run(move |c| {
                // The right-hand sides read the row as it was: the current secret becomes the
                // previous one.
                Ok(diesel::update(webhook_endpoints::table.find(&id))
                    .set((
                        webhook_endpoints::previous_secret.eq(webhook_endpoints::secret.nullable()),
                        webhook_endpoints::previous_secret_until.eq(until),
                        webhook_endpoints::secret.eq(&secret),
                    ))
                    .execute(c)?)
            })
            .await?;
        Ok(updated == 1)
    }

    async fn enable(&self, id: EndpointId, now: OffsetDateTime) -> Result<bool, InfraError> {
        let (id, now) = (id.to_string(), millis(now));
        let updated = self
            .run(move |c| {
                c.transaction(|c| {
                    let found = diesel::update(webhook_endpoints::table.find(&id))
                        .set((
                            webhook_endpoints::disabled_at.eq(None::<i64>),
                            webhook_endpoints::failing_since.eq(None::<i64>),
                        ))
                        .execute(c)?;
                    // Every message kept for it, given up on or not, is due again, with the
                    // whole retry schedule ahead of it.
                    diesel::update(webhook_messages::table.filter(webhook_messages::endpoint_id.eq(&id)))
                        .set((
                            webhook_messages::next_attempt_at.eq(now),
                            webhook_messages::failed_at.eq(None::<i64>),
                            webhook_messages::attempts.eq(0),
                        ))
                        .execute(c)?;
                    Ok::<_, diesel::result::Error>(found)
                })
                .map_err(StoreError::from)
            })
            .await?;
        Ok(updated == 1)
    }

    async fn attempts(&self, id: EndpointId, limit: u32) -> Result<Vec<DeliveryAttempt>, InfraError> {
        let endpoint = id;
        let id = id.to_string();
        type AttemptRow = (String, String, i32, i64, i64, Option<i32>, Option<String>, String);
        let rows = self
            .run(move |c| {
                Ok(webhook_attempts::table
                    .filter(webhook_attempts::endpoint_id.eq(&id))
                    .order((webhook_attempts::at.desc(), webhook_attempts::id.desc()))
                    .limit(i64::from(limit))
                    .select((
                        webhook_attempts::event_id,
                        webhook_attempts::event_type,
                        webhook_attempts::attempt,
                        webhook_attempts::at,
                        webhook_attempts::duration_ms,
                        webhook_attempts::status,
                        webhook_attempts::error,
                        webhook_attempts::result,
                    ))
                    .load::<AttemptRow>(c)?)
            })
            .await?;
        let attempts = rows
            .into_iter()
            .map(|(event_id, event_type, attempt, at, duration_ms, status, error, result)| {
                let result = match result.as_str() {
                    "delivered" => AttemptResult::Delivered,
                    "failed" => AttemptResult::GivenUp,
                    // The time of the retry is not kept with the attempt; the message has it.
                    _ => AttemptResult::RetryAt(instant(at)?),
                };
                Ok(DeliveryAttempt {
                    endpoint_id: endpoint,
                    event_id: parse_uuid(&event_id)?,
                    event_type: text_event(&event_type)?,
                    attempt: u32::try_from(attempt).unwrap_or(0),
                    at: instant(at)?,
                    duration: time::Duration::milliseconds(duration_ms),
                    status: status.and_then(|status| u16::try_from(status).ok()),
                    error,
                    result,
                    endpoint_failing_since: None,
                    disable_endpoint: false,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(attempts)
    }
}

#[derive(Queryable)]
struct MessageRow {
    id: String,
    endpoint_id: String,
    event_id: String,
    event_type: String,
    occurred_at: i64,
    account_id: String,
    email: Option<String>,
    session_id: Option<String>,
    key_id: Option<String>,
    factor_id: Option<String>,
    reason: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    attempts: i32,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_until: Option<i64>,
    failing_since: Option<i64>,
}

impl MessageRow {
    fn into_message(self, now: i64) -> Result<QueuedMessage, StoreError> {
        let uuid = |text: &Option<String>| text.as_deref().map(parse_uuid).transpose();
        let email = self
            .email
            .map(|email| EmailAddress::parse(&email).map_err(|_| StoreError::CorruptRow("unreadable webhook address")))
            .transpose()?;
        let mut secrets = vec![SealedSecret(self.secret)];
        if let (Some(previous), Some(until)) = (self.previous_secret, self.previous_secret_until) {
            if until > now {
                secrets.push(SealedSecret(previous));
            }
        }
        let _ = self.id;
        Ok(QueuedMessage {
            event: WebhookEvent {
                id: parse_uuid(&self.event_id)?,
                event_type: text_event(&self.event_type)?,
                at: instant(self.occurred_at)?,
                account_id: AccountId::from_uuid(parse_uuid(&self.account_id)?),
                email,
                session_id: uuid(&self.session_id)?.map(SessionId::from_uuid),
                key_id: uuid(&self.key_id)?.map(ApiKeyId::from_uuid),
                factor_id: uuid(&self.factor_id)?.map(FactorId::from_uuid),
                reason: self.reason,
                client: ClientInfo { ip: self.ip, user_agent: self.user_agent, device: None },
            },
            endpoint_id: EndpointId::from_uuid(parse_uuid(&self.endpoint_id)?),
            url: self.url,
            secrets,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            endpoint_failing_since: self.failing_since.map(instant).transpose()?,
        })
    }
}

#[async_trait]
impl WebhookQueue for Store {
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: LeaseId,
        lease_until: OffsetDateTime,
        per_endpoint: u32,
        skip: &[EndpointId],
    ) -> Result<Vec<QueuedMessage>, InfraError> {
        let (now, lease_until, lease) = (millis(now), millis(lease_until), lease.as_uuid().to_string());
        let skip: Vec<String> = skip.iter().map(ToString::to_string).collect();
        let rows = self
            .run(move |c| {
                let due = webhook_messages::failed_at
                    .is_null()
                    .and(webhook_messages::next_attempt_at.le(now))
                    .and(webhook_messages::lease_until.is_null().or(webhook_messages::lease_until.le(now)));
                // The endpoints with something due, then a few of each: an endpoint with a
                // backlog cannot fill the batch.
                let endpoints: Vec<String> = webhook_messages::table
                    .inner_join(webhook_endpoints::table)
                    .filter(webhook_endpoints::disabled_at.is_null())
                    .filter(due)
                    .filter(webhook_messages::endpoint_id.ne_all(&skip))
                    .select(webhook_messages::endpoint_id)
                    .distinct()
                    .limit(100)
                    .load(c)?;
                let mut candidates: Vec<String> = Vec::new();
                for endpoint in &endpoints {
                    candidates.extend(
                        webhook_messages::table
                            .filter(webhook_messages::endpoint_id.eq(endpoint))
                            .filter(due)
                            .order(webhook_messages::next_attempt_at.asc())
                            .limit(i64::from(per_endpoint))
                            .select(webhook_messages::id)
                            .load::<String>(c)?,
                    );
                }
                claim_each(
                    c,
                    candidates,
                    |c, id| {
                        Ok(diesel::update(
                            webhook_messages::table
                                .find(id)
                                .filter(webhook_messages::failed_at.is_null())
                                .filter(webhook_messages::next_attempt_at.le(now))
                                .filter(
                                    webhook_messages::lease_until.is_null().or(webhook_messages::lease_until.le(now)),
                                ),
                        )
                        .set((webhook_messages::lease_id.eq(&lease), webhook_messages::lease_until.eq(lease_until)))
                        .execute(c)?)
                    },
                    |c, id| {
                        Ok(webhook_messages::table
                            .inner_join(webhook_endpoints::table)
                            .filter(webhook_messages::id.eq(id))
                            .select((
                                webhook_messages::id,
                                webhook_messages::endpoint_id,
                                webhook_messages::event_id,
                                webhook_messages::event_type,
                                webhook_messages::occurred_at,
                                webhook_messages::account_id,
                                webhook_messages::email,
                                webhook_messages::session_id,
                                webhook_messages::key_id,
                                webhook_messages::factor_id,
                                webhook_messages::reason,
                                webhook_messages::ip,
                                webhook_messages::user_agent,
                                webhook_messages::attempts,
                                webhook_endpoints::url,
                                webhook_endpoints::secret,
                                webhook_endpoints::previous_secret,
                                webhook_endpoints::previous_secret_until,
                                webhook_endpoints::failing_since,
                            ))
                            .first::<MessageRow>(c)?)
                    },
                )
            })
            .await?;
        // A message this instance cannot read (a type added by a newer version during a rolling
        // upgrade) stays leased, and another instance takes it once the lease runs out; one
        // that no instance reads keeps coming back, and the log says so each time.
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let id = row.id.clone();
                row.into_message(now)
                    .inspect_err(|error| tracing::error!(webhook_message = %id, %error, "webhook message skipped: it cannot be read"))
                    .ok()
            })
            .collect())
    }

    async fn release(&self, messages: &[(EndpointId, Uuid)], lease: LeaseId) -> Result<(), InfraError> {
        let ids: Vec<String> = messages.iter().map(|(endpoint, event)| format!("{endpoint}:{event}")).collect();
        let lease = lease.as_uuid().to_string();
        self.run(move |c| {
            Ok(diesel::update(
                webhook_messages::table
                    .filter(webhook_messages::id.eq_any(&ids))
                    .filter(webhook_messages::lease_id.eq(&lease)),
            )
            .set((webhook_messages::lease_id.eq(None::<String>), webhook_messages::lease_until.eq(None::<i64>)))
            .execute(c)?)
        })
        .await?;
        Ok(())
    }

    async fn record_attempt(&self, attempt: &DeliveryAttempt, lease: LeaseId) -> Result<bool, InfraError> {
        let endpoint = attempt.endpoint_id.to_string();
        let message = format!("{endpoint}:{}", attempt.event_id);
        let lease = lease.as_uuid().to_string();
        let at = millis(attempt.at);
        let finished = millis(attempt.at + attempt.duration);
        let attempt_row = (
            webhook_attempts::id.eq(Uuid::new_v4().to_string()),
            webhook_attempts::endpoint_id.eq(endpoint.clone()),
            webhook_attempts::event_id.eq(attempt.event_id.to_string()),
            webhook_attempts::event_type.eq(attempt.event_type.as_str()),
            webhook_attempts::attempt.eq(i32::try_from(attempt.attempt).unwrap_or(i32::MAX)),
            webhook_attempts::at.eq(at),
            webhook_attempts::duration_ms.eq(i64::try_from(attempt.duration.whole_milliseconds()).unwrap_or(i64::MAX)),
            webhook_attempts::status.eq(attempt.status.map(i32::from)),
            webhook_attempts::error.eq(attempt.error.as_ref().map(|error| error.chars().take(500).collect::<String>())),
            webhook_attempts::result.eq(attempt.result.as_str()),
        );
        let result = attempt.result.clone();
        let failing_since = attempt.endpoint_failing_since.map(millis);
        let disable = attempt.disable_endpoint;
        let recorded = self
            .run(move |c| {
                c.transaction(|c| {
                    let held = webhook_messages::table.find(&message).filter(webhook_messages::lease_id.eq(&lease));
                    let changed = match result {
                        AttemptResult::Delivered => diesel::delete(held).execute(c)?,
                        AttemptResult::RetryAt(next) => diesel::update(held)
                            .set((
                                webhook_messages::attempts.eq(webhook_messages::attempts + 1),
                                webhook_messages::next_attempt_at.eq(millis(next)),
                                webhook_messages::lease_id.eq(None::<String>),
                                webhook_messages::lease_until.eq(None::<i64>),
                            ))
                            .execute(c)?,
                        AttemptResult::GivenUp => diesel::update(held)
                            .set((
                                webhook_messages::attempts.eq(webhook_messages::attempts + 1),
                                webhook_messages::failed_at.eq(finished),
                                webhook_messages::lease_id.eq(None::<String>),
                                webhook_messages::lease_until.eq(None::<i64>),
                            ))
                            .execute(c)?,
                    };
                    if changed == 0 {
                        return Ok(false);
                    }
                    diesel::insert_into(webhook_attempts::table).values(attempt_row).execute(c)?;
                    let endpoint_row = webhook_endpoints::table.find(&endpoint);
                    if disable {
                        diesel::update(endpoint_row.filter(webhook_endpoints::disabled_at.is_null()))
                            .set(webhook_endpoints::disabled_at.eq(finished))
                            .execute(c)?;
                    } else if failing_since.is_none() {
                        diesel::update(endpoint_row.filter(webhook_endpoints::failing_since.is_not_null()))
                            .set(webhook_endpoints::failing_since.eq(None::<i64>))
                            .execute(c)?;
                    } else {
                        // The first failure in a row sets it; later ones keep the earliest.
                        diesel::update(endpoint_row.filter(webhook_endpoints::failing_since.is_null()))
                            .set(webhook_endpoints::failing_since.eq(failing_since))
                            .execute(c)?;
                    }
                    Ok::<_, diesel::result::Error>(true)
                })
                .map_err(StoreError::from)
            })
            .await?;
        Ok(recorded)
    }

    async fn backlog(&self) -> Result<WebhookBacklog, InfraError> {
        let (pending, oldest, disabled) = self
            .run(|c| {
                let (pending, oldest) = webhook_messages::table
                    .filter(webhook_messages::failed_at.is_null())
                    .select((diesel::dsl::count_star(), diesel::dsl::min(webhook_messages::queued_at)))
                    .first::<(i64, Option<i64>)>(c)?;
                let disabled = webhook_endpoints::table
                    .filter(webhook_endpoints::disabled_at.is_not_null())
                    .count()
                    .get_result::<i64>(c)?;
                Ok((pending, oldest, disabled))
            })
            .await?;
        Ok(WebhookBacklog {
            pending: u64::try_from(pending).unwrap_or(0),
            oldest: oldest.map(instant).transpose()?,
            disabled_endpoints: u64::try_from(disabled).unwrap_or(0),
        })
    }
}
