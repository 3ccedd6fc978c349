//! Row structs and their conversions to and from domain types. Domain types carry no diesel
//! derives; everything storage-shaped lives here.

use diesel::prelude::*;
use flexauth_domain::account::{
    Account, AccountId, AccountRequest, AccountRequestKind, EmailAddress, LinkTokenRecord, PasswordHash, SignupAttempt,
    StoredAccount,
};
use flexauth_domain::api_key::{ApiKey, ApiKeyId, ApiKeyName, StoredApiKey};
use flexauth_domain::introspection::{ClientName, IntrospectionClient, IntrospectionClientId};
use flexauth_domain::mail::{EmailKind, LeaseId, OutboxEntry, OutgoingEmail};
use flexauth_domain::newtypes::{space_separated, AuthenticationMethods, Scope};
use flexauth_domain::secret::TokenHash;
use flexauth_domain::session::{ClientInfo, RotationNonce, Session, SessionId, StoredSession};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::schema::{
    account_requests, accounts, api_keys, email_verification_tokens, introspection_clients, outbox,
    password_reset_tokens, sessions,
};
use crate::StoreError;

fn optional_millis(instant: Option<OffsetDateTime>) -> Option<i64> {
    instant.map(millis)
}

pub(crate) fn millis(instant: OffsetDateTime) -> i64 {
    // Unix milliseconds fit an i64 for the next 292 million years.
    (instant.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn instant(millis: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .map_err(|_| StoreError::CorruptRow("timestamp out of range"))
}

pub(crate) fn optional_instant(millis: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    millis.map(instant).transpose()
}

/// A stored count, which is never negative: a negative one is a damaged row, not a zero.
pub(crate) fn stored_count<T: TryFrom<i64>>(value: impl Into<i64>) -> Result<T, StoreError> {
    T::try_from(value.into()).map_err(|_| StoreError::CorruptRow("a stored count is negative or too large"))
}

pub(crate) fn parse_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|_| StoreError::CorruptRow("identifier is not a UUID"))
}

pub(crate) fn token_hash(bytes: &[u8]) -> Result<TokenHash, StoreError> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| StoreError::CorruptRow("digest is not 32 bytes"))?;
    Ok(TokenHash::from_storage(bytes))
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = accounts)]
pub(crate) struct AccountRow {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub email_verified_at: Option<i64>,
    pub created_at: i64,
    pub credential_version: i64,
    pub disabled_at: Option<i64>,
    pub clients_forgotten_at: Option<i64>,
}

impl From<&Account> for AccountRow {
    fn from(account: &Account) -> Self {
        let stored = account.stored();
        Self {
            id: stored.id.to_string(),
            email: stored.email.as_str().to_owned(),
            password_hash: stored.password_hash.as_phc().to_owned(),
            email_verified_at: optional_millis(stored.email_verified_at),
            created_at: millis(stored.created_at),
            credential_version: stored.credential_version,
            disabled_at: optional_millis(stored.disabled_at),
            clients_forgotten_at: optional_millis(stored.clients_forgotten_at),
        }
    }
}

impl TryFrom<AccountRow> for Account {
    type Error = StoreError;

    fn try_from(row: AccountRow) -> Result<Self, StoreError> {
        Ok(Account::from_storage(StoredAccount {
            id: AccountId::from_uuid(parse_uuid(&row.id)?),
            email: EmailAddress::from_storage(row.email),
            password_hash: PasswordHash::from_phc(row.password_hash),
            email_verified_at: optional_instant(row.email_verified_at)?,
            created_at: instant(row.created_at)?,
            credential_version: row.credential_version,
            disabled_at: optional_instant(row.disabled_at)?,
            clients_forgotten_at: optional_instant(row.clients_forgotten_at)?,
        }))
    }
}

/// A sign-up attempt: its verification link and the password chosen with it.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = email_verification_tokens)]
pub(crate) struct SignupAttemptRow {
    pub token_hash: Vec<u8>,
    pub account_id: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub password_hash: Option<String>,
    pub created_at: i64,
}

impl From<&SignupAttempt> for SignupAttemptRow {
    fn from(attempt: &SignupAttempt) -> Self {
        let link = attempt.link();
        Self {
            token_hash: link.hash().as_bytes().to_vec(),
            account_id: link.account_id().to_string(),
            expires_at: millis(link.expires_at()),
            used_at: link.used_at().map(millis),
            password_hash: attempt.password_hash().map(|hash| hash.as_phc().to_owned()),
            created_at: millis(attempt.created_at()),
        }
    }
}

impl TryFrom<SignupAttemptRow> for SignupAttempt {
    type Error = StoreError;

    fn try_from(row: SignupAttemptRow) -> Result<Self, StoreError> {
        let link = LinkTokenRecord::from_storage(
            token_hash(&row.token_hash)?,
            AccountId::from_uuid(parse_uuid(&row.account_id)?),
            instant(row.expires_at)?,
            optional_instant(row.used_at)?,
        );
        Ok(SignupAttempt::from_storage(link, row.password_hash.map(PasswordHash::from_phc), instant(row.created_at)?))
    }
}

/// A stored account request.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = account_requests)]
pub(crate) struct AccountRequestRow {
    pub id: String,
    pub kind: String,
    pub email: String,
    pub password_hash: Option<String>,
    pub requested_at: i64,
}

impl From<&AccountRequest> for AccountRequestRow {
    fn from(request: &AccountRequest) -> Self {
        let password_hash = match &request.kind {
            AccountRequestKind::Signup { password_hash } => Some(password_hash.as_phc().to_owned()),
            AccountRequestKind::ResendVerification | AccountRequestKind::ForgotPassword => None,
        };
        Self {
            id: request.id.to_string(),
            kind: request.kind.as_str().to_owned(),
            email: request.email.as_str().to_owned(),
            password_hash,
            requested_at: millis(request.requested_at),
        }
    }
}

impl TryFrom<AccountRequestRow> for AccountRequest {
    type Error = StoreError;

    fn try_from(row: AccountRequestRow) -> Result<Self, StoreError> {
        let kind = match (row.kind.as_str(), row.password_hash) {
            ("signup", Some(phc)) => AccountRequestKind::Signup { password_hash: PasswordHash::from_phc(phc) },
            ("resend_verification", _) => AccountRequestKind::ResendVerification,
            ("forgot_password", _) => AccountRequestKind::ForgotPassword,
            _ => return Err(StoreError::CorruptRow("unknown account request")),
        };
        Ok(AccountRequest {
            id: parse_uuid(&row.id)?,
            email: EmailAddress::from_storage(row.email),
            kind,
            requested_at: instant(row.requested_at)?,
        })
    }
}

/// A reset link's columns.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = password_reset_tokens)]
pub(crate) struct PasswordResetRow {
    pub token_hash: Vec<u8>,
    pub account_id: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

impl From<&LinkTokenRecord> for PasswordResetRow {
    fn from(token: &LinkTokenRecord) -> Self {
        Self {
            token_hash: token.hash().as_bytes().to_vec(),
            account_id: token.account_id().to_string(),
            expires_at: millis(token.expires_at()),
            used_at: token.used_at().map(millis),
        }
    }
}

impl TryFrom<PasswordResetRow> for LinkTokenRecord {
    type Error = StoreError;

    fn try_from(row: PasswordResetRow) -> Result<Self, StoreError> {
        Ok(LinkTokenRecord::from_storage(
            token_hash(&row.token_hash)?,
            AccountId::from_uuid(parse_uuid(&row.account_id)?),
            instant(row.expires_at)?,
            optional_instant(row.used_at)?,
        ))
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub(crate) struct ApiKeyRow {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    /// Space-separated, as the RFC 6749 `scope` parameter.
    pub scopes: String,
}

impl From<&ApiKey> for ApiKeyRow {
    fn from(key: &ApiKey) -> Self {
        Self {
            id: key.id().to_string(),
            account_id: key.account_id().to_string(),
            name: key.name().as_str().to_owned(),
            prefix: key.prefix().to_owned(),
            created_at: millis(key.created_at()),
            last_used_at: optional_millis(key.last_used_at()),
            expires_at: optional_millis(key.expires_at()),
            scopes: space_separated(key.scopes()),
        }
    }
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(row: ApiKeyRow) -> Result<Self, StoreError> {
        Ok(ApiKey::from_storage(StoredApiKey {
            id: ApiKeyId::from_uuid(parse_uuid(&row.id)?),
            account_id: AccountId::from_uuid(parse_uuid(&row.account_id)?),
            name: ApiKeyName::from_storage(row.name),
            prefix: row.prefix,
            created_at: instant(row.created_at)?,
            last_used_at: optional_instant(row.last_used_at)?,
            expires_at: optional_instant(row.expires_at)?,
            scopes: row
                .scopes
                .split_whitespace()
                .map(|scope| Scope::parse(scope).map_err(|_| StoreError::CorruptRow("a stored scope is not a scope")))
                .collect::<Result<_, _>>()?,
        }))
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub(crate) struct SessionRow {
    pub id: String,
    pub account_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub current_hash: Vec<u8>,
    pub current_issued_at: i64,
    pub current_expires_at: i64,
    pub previous_hash: Option<Vec<u8>>,
    pub rotation_nonce: Option<Vec<u8>>,
    pub generation: i64,
    pub revoked_at: Option<i64>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub authenticated_at: i64,
    pub amr: String,
    pub second_factor_at: Option<i64>,
}

impl From<&Session> for SessionRow {
    fn from(session: &Session) -> Self {
        let s = session.stored();
        Self {
            id: s.id.to_string(),
            account_id: s.account_id.to_string(),
            created_at: millis(s.created_at),
            expires_at: millis(s.expires_at),
            current_hash: s.current_hash.as_bytes().to_vec(),
            current_issued_at: millis(s.current_issued_at),
            current_expires_at: millis(s.current_expires_at),
            previous_hash: s.previous_hash.map(|hash| hash.as_bytes().to_vec()),
            rotation_nonce: s.rotation_nonce.map(|nonce| nonce.as_bytes().to_vec()),
            generation: s.generation,
            revoked_at: s.revoked_at.map(millis),
            user_agent: s.client.user_agent.clone(),
            ip: s.client.ip.clone(),
            authenticated_at: millis(s.authenticated_at),
            amr: s.methods.to_stored(),
            second_factor_at: s.second_factor_at.map(millis),
        }
    }
}

impl TryFrom<SessionRow> for Session {
    type Error = StoreError;

    fn try_from(row: SessionRow) -> Result<Self, StoreError> {
        let rotation_nonce = row
            .rotation_nonce
            .map(|bytes| {
                <[u8; 16]>::try_from(bytes.as_slice())
                    .map(RotationNonce::from_bytes)
                    .map_err(|_| StoreError::CorruptRow("nonce is not 16 bytes"))
            })
            .transpose()?;
        Ok(Session::from_storage(StoredSession {
            id: SessionId::from_uuid(parse_uuid(&row.id)?),
            account_id: AccountId::from_uuid(parse_uuid(&row.account_id)?),
            created_at: instant(row.created_at)?,
            expires_at: instant(row.expires_at)?,
            current_hash: token_hash(&row.current_hash)?,
            current_issued_at: instant(row.current_issued_at)?,
            current_expires_at: instant(row.current_expires_at)?,
            previous_hash: row.previous_hash.as_deref().map(token_hash).transpose()?,
            rotation_nonce,
            generation: row.generation,
            revoked_at: optional_instant(row.revoked_at)?,
            client: ClientInfo { user_agent: row.user_agent, ip: row.ip, device: None },
            authenticated_at: instant(row.authenticated_at)?,
            methods: AuthenticationMethods::from_stored(&row.amr),
            second_factor_at: optional_instant(row.second_factor_at)?,
        }))
    }
}

#[derive(Insertable)]
#[diesel(table_name = outbox)]
pub(crate) struct NewOutboxRow {
    pub id: String,
    pub kind: &'static str,
    pub recipient: String,
    pub subject: String,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub queued_at: i64,
    pub next_attempt_at: i64,
    pub attempts: i32,
}

impl NewOutboxRow {
    pub(crate) fn new(email: &OutgoingEmail, now: OffsetDateTime) -> Self {
        Self {
            id: email.id().to_string(),
            kind: email.kind().as_str(),
            recipient: email.to().as_str().to_owned(),
            subject: email.subject().to_owned(),
            text_body: Some(email.text_body().to_owned()),
            html_body: Some(email.html_body().to_owned()),
            queued_at: millis(now),
            next_attempt_at: millis(now),
            attempts: 0,
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub(crate) struct OutboxRow {
    pub id: String,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub attempts: i32,
}

impl OutboxRow {
    pub(crate) fn into_entry(self, lease: LeaseId) -> Result<OutboxEntry, StoreError> {
        let kind = EmailKind::from_stored(&self.kind).ok_or(StoreError::CorruptRow("unknown email kind"))?;
        let (Some(text), Some(html)) = (self.text_body, self.html_body) else {
            return Err(StoreError::CorruptRow("a pending email has no body"));
        };
        let email = OutgoingEmail::new(
            parse_uuid(&self.id)?,
            kind,
            EmailAddress::from_storage(self.recipient),
            self.subject,
            text,
            html,
        );
        Ok(OutboxEntry { email, attempts: stored_count(self.attempts)?, lease })
    }
}

/// A security log entry.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = crate::schema::audit_events)]
pub(crate) struct AuditEventRow {
    pub id: String,
    pub account_id: String,
    pub kind: String,
    pub at: i64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub session_id: Option<String>,
    pub key_id: Option<String>,
}

impl From<&flexauth_domain::audit::AuditEvent> for AuditEventRow {
    fn from(event: &flexauth_domain::audit::AuditEvent) -> Self {
        Self {
            id: event.id.to_string(),
            account_id: event.account_id.to_string(),
            kind: event.kind.as_str().to_owned(),
            at: millis(event.at),
            ip: event.client.ip.clone(),
            user_agent: event.client.user_agent.clone(),
            session_id: event.session_id.map(|id| id.to_string()),
            key_id: event.key_id.map(|id| id.to_string()),
        }
    }
}

impl TryFrom<AuditEventRow> for flexauth_domain::audit::AuditEvent {
    type Error = StoreError;

    fn try_from(row: AuditEventRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: parse_uuid(&row.id)?,
            account_id: AccountId::from_uuid(parse_uuid(&row.account_id)?),
            kind: flexauth_domain::audit::AuditKind::from_stored(&row.kind)
                .ok_or(StoreError::CorruptRow("unknown audit event kind"))?,
            at: instant(row.at)?,
            client: ClientInfo { user_agent: row.user_agent, ip: row.ip, device: None },
            session_id: row.session_id.as_deref().map(parse_uuid).transpose()?.map(SessionId::from_uuid),
            key_id: row.key_id.as_deref().map(parse_uuid).transpose()?.map(ApiKeyId::from_uuid),
            email: None,
            factor_id: None,
        })
    }
}

/// A requested address change.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = crate::schema::email_changes)]
pub(crate) struct EmailChangeRow {
    pub token_hash: Vec<u8>,
    pub undo_hash: Vec<u8>,
    pub account_id: String,
    pub old_email: String,
    pub new_email: String,
    pub requested_at: i64,
    pub expires_at: i64,
    pub undo_expires_at: i64,
    pub confirmed_at: Option<i64>,
    pub undone_at: Option<i64>,
}

impl From<&flexauth_domain::lifecycle::EmailChange> for EmailChangeRow {
    fn from(change: &flexauth_domain::lifecycle::EmailChange) -> Self {
        Self {
            token_hash: change.confirmation.as_bytes().to_vec(),
            undo_hash: change.undo.as_bytes().to_vec(),
            account_id: change.account_id.to_string(),
            old_email: change.old_email.as_str().to_owned(),
            new_email: change.new_email.as_str().to_owned(),
            requested_at: millis(change.requested_at),
            expires_at: millis(change.expires_at),
            undo_expires_at: millis(change.undo_expires_at),
            confirmed_at: optional_millis(change.confirmed_at),
            undone_at: optional_millis(change.undone_at),
        }
    }
}

impl TryFrom<EmailChangeRow> for flexauth_domain::lifecycle::EmailChange {
    type Error = StoreError;

    fn try_from(row: EmailChangeRow) -> Result<Self, StoreError> {
        Ok(Self {
            account_id: AccountId::from_uuid(parse_uuid(&row.account_id)?),
            old_email: EmailAddress::from_storage(row.old_email),
            new_email: EmailAddress::from_storage(row.new_email),
            confirmation: token_hash(&row.token_hash)?,
            undo: token_hash(&row.undo_hash)?,
            requested_at: instant(row.requested_at)?,
            expires_at: instant(row.expires_at)?,
            undo_expires_at: instant(row.undo_expires_at)?,
            confirmed_at: optional_instant(row.confirmed_at)?,
            undone_at: optional_instant(row.undone_at)?,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = introspection_clients)]
pub(crate) struct IntrospectionClientRow {
    pub id: String,
    pub name: String,
    pub secret_hash: Vec<u8>,
    pub created_at: i64,
}

impl From<&IntrospectionClient> for IntrospectionClientRow {
    fn from(client: &IntrospectionClient) -> Self {
        Self {
            id: client.id.to_string(),
            name: client.name.as_str().to_owned(),
            secret_hash: client.secret_hash.as_bytes().to_vec(),
            created_at: millis(client.created_at),
        }
    }
}

impl TryFrom<IntrospectionClientRow> for IntrospectionClient {
    type Error = StoreError;

    fn try_from(row: IntrospectionClientRow) -> Result<Self, StoreError> {
        Ok(IntrospectionClient {
            id: IntrospectionClientId::from_uuid(parse_uuid(&row.id)?),
            name: ClientName::from_storage(row.name),
            secret_hash: token_hash(&row.secret_hash)?,
            created_at: instant(row.created_at)?,
        })
    }
}
