//! Second factors, recovery codes and login challenges. Each use of a code is a
//! compare-and-swap on its row, so that one code passes once whatever the instance or the race.

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use flexauth_domain::account::AccountId;
use flexauth_domain::audit::AuditEvent;
use flexauth_domain::mail::OutgoingEmail;
use flexauth_domain::mfa::{
    CeremonyId, CeremonyPurpose, FactorConfirmation, FactorId, FactorKind, FactorName, FactorRepository, MfaChallenge,
    PasskeyAddition, PasskeyCeremony, SealedSecret, StoredFactor,
};
use flexauth_domain::newtypes::ClientInfo;
use flexauth_domain::secret::TokenHash;
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::rows::{instant, millis, optional_instant, parse_uuid, stored_count, token_hash, NewOutboxRow};
use crate::schema::{mfa_challenges, mfa_factors, mfa_recovery_codes, outbox, passkey_ceremonies};
use crate::webhooks::Recorded;
use crate::{guarded, Store, StoreError};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = mfa_factors)]
struct FactorRow {
    id: String,
    account_id: String,
    kind: String,
    name: String,
    secret: String,
    created_at: i64,
    confirmed_at: Option<i64>,
    last_step: Option<i64>,
    last_used_at: Option<i64>,
    credential_id: Option<String>,
}

impl From<&StoredFactor> for FactorRow {
    fn from(factor: &StoredFactor) -> Self {
        Self {
            id: factor.id.to_string(),
            account_id: factor.account_id.to_string(),
            kind: factor.kind.as_str().to_owned(),
            name: factor.name.as_str().to_owned(),
            secret: factor.secret.0.clone(),
            created_at: millis(factor.created_at),
            confirmed_at: factor.confirmed_at.map(millis),
            last_step: factor.last_step,
            last_used_at: factor.last_used_at.map(millis),
            credential_id: factor.credential_id.clone(),
        }
    }
}

impl TryFrom<FactorRow> for StoredFactor {
    type Error = StoreError;

    fn try_from(row: FactorRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: FactorId::from_uuid(parse_uuid(&row.id)?),
            account_id: AccountId::from_uuid(parse_uuid(&row.account_id)?),
            kind: FactorKind::from_stored(&row.kind).ok_or(StoreError::CorruptRow("unknown kind of second factor"))?,
            name: FactorName::from_storage(row.name),
            secret: SealedSecret(row.secret),
            created_at: instant(row.created_at)?,
            confirmed_at: optional_instant(row.confirmed_at)?,
            last_step: row.last_step,
            last_used_at: optional_instant(row.last_used_at)?,
            credential_id: row.credential_id,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = passkey_ceremonies)]
struct CeremonyRow {
    id: String,
    purpose: String,
    account_id: Option<String>,
    challenge_hash: Option<String>,
    state: String,
    created_at: i64,
    expires_at: i64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Result<TokenHash, StoreError> {
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|at| text.get(at..at + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect::<Option<_>>()
        .ok_or(StoreError::CorruptRow("a challenge digest is not hexadecimal"))?;
    token_hash(&bytes)
}

impl From<&PasskeyCeremony> for CeremonyRow {
    fn from(ceremony: &PasskeyCeremony) -> Self {
        Self {
            id: ceremony.id.to_string(),
            purpose: ceremony.purpose.as_str().to_owned(),
            account_id: ceremony.account_id.map(|id| id.to_string()),
            challenge_hash: ceremony.challenge.map(|hash| hex(hash.as_bytes())),
            state: ceremony.state.clone(),
            created_at: millis(ceremony.created_at),
            expires_at: millis(ceremony.expires_at),
        }
    }
}

impl TryFrom<CeremonyRow> for PasskeyCeremony {
    type Error = StoreError;

    fn try_from(row: CeremonyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: CeremonyId::from_uuid(parse_uuid(&row.id)?),
            purpose: CeremonyPurpose::from_stored(&row.purpose)
                .ok_or(StoreError::CorruptRow("unknown purpose of a passkey ceremony"))?,
            account_id: row.account_id.as_deref().map(parse_uuid).transpose()?.map(AccountId::from_uuid),
            challenge: row.challenge_hash.as_deref().map(unhex).transpose()?,
            state: row.state,
            created_at: instant(row.created_at)?,
            expires_at: instant(row.expires_at)?,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = mfa_challenges)]
struct ChallengeRow {
    token_hash: Vec<u8>,
    account_id: String,
    created_at: i64,
    expires_at: i64,
    failures: i32,
    user_agent: Option<String>,
    ip: Option<String>,
    credential_version: i64,
}

impl TryFrom<ChallengeRow> for MfaChallenge {
    type Error = StoreError;

    fn try_from(row: ChallengeRow) -> Result<Self, StoreError> {
        Ok(Self {
            token_hash: token_hash(&row.token_hash)?,
            account_id: AccountId::from_uuid(parse_uuid(&row.account_id)?),
            created_at: instant(row.created_at)?,
            expires_at: instant(row.expires_at)?,
            failures: stored_count(row.failures)?,
            credential_version: row.credential_version,
            client: ClientInfo { user_agent: row.user_agent, ip: row.ip, device: None },
        })
    }
}

/// The rows of a new set of recovery codes.
fn code_rows(account_id: &str, codes: &[TokenHash], at: i64) -> Vec<(Vec<u8>, String, i64)> {
    codes.iter().map(|code| (code.as_bytes().to_vec(), account_id.to_owned(), at)).collect()
}

/// Replaces the recovery codes of `account_id` by `rows`: the old set dies.
fn replace_codes(
    c: &mut crate::connection::DbConnection,
    account_id: &str,
    rows: &[(Vec<u8>, String, i64)],
) -> Result<(), DieselError> {
    diesel::delete(mfa_recovery_codes::table.filter(mfa_recovery_codes::account_id.eq(account_id))).execute(c)?;
    for (hash, account_id, at) in rows {
        diesel::insert_into(mfa_recovery_codes::table)
            .values((
                mfa_recovery_codes::code_hash.eq(hash),
                mfa_recovery_codes::account_id.eq(account_id),
                mfa_recovery_codes::created_at.eq(at),
            ))
            .execute(c)?;
    }
    Ok(())
}

/// Queues `notice` and records `event`, in the caller's transaction: every change to a factor
/// is told to the owner and kept in the security log with it.
fn record(c: &mut crate::connection::DbConnection, notice: &NewOutboxRow, event: &Recorded) -> Result<(), DieselError> {
    diesel::insert_into(outbox::table).values(notice).execute(c)?;
    event.insert(c)?;
    Ok(())
}

#[async_trait]
impl FactorRepository for Store {
    async fn factors(&self, account_id: AccountId) -> Result<Vec<StoredFactor>, InfraError> {
        let account = account_id.to_string();
        let rows = self
            .run(move |c| {
                Ok(mfa_factors::table
                    .filter(mfa_factors::account_id.eq(&account))
                    .order((mfa_factors::created_at.asc(), mfa_factors::id.asc()))
                    .select(FactorRow::as_select())
                    .load(c)?)
            })
            .await?;
        Ok(rows.into_iter().map(StoredFactor::try_from).collect::<Result<_, _>>()?)
    }

    async fn has_confirmed_factor(&self, account_id: AccountId) -> Result<bool, InfraError> {
        let account = account_id.to_string();
        let found = self
            .run(move |c| {
                Ok(mfa_factors::table
                    .filter(mfa_factors::account_id.eq(&account).and(mfa_factors::confirmed_at.is_not_null()))
                    .select(mfa_factors::id)
                    .first::<String>(c)
                    .optional()?)
            })
            .await?;
        Ok(found.is_some())
    }

    async fn add_factor(&self, factor: &StoredFactor, stale_before: OffsetDateTime) -> Result<(), InfraError> {
        let row = FactorRow::from(factor);
        let stale_before = millis(stale_before);
        self.run(move |c| {
            c.transaction(|c| {
                diesel::delete(
                    mfa_factors::table.filter(
                        mfa_factors::account_id
                            .eq(&row.account_id)
                            .and(mfa_factors::confirmed_at.is_null())
                            .and(mfa_factors::created_at.lt(stale_before)),
                    ),
                )
                .execute(c)?;
                diesel::insert_into(mfa_factors::table).values(&row).execute(c)?;
                Ok::<_, DieselError>(())
            })?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn confirm_factor(&self, confirmation: &FactorConfirmation) -> Result<bool, InfraError> {
        let (account_id, id, step, at) =
            (confirmation.account_id, confirmation.factor_id, confirmation.step, confirmation.at);
        let recovery_codes = &confirmation.recovery_codes;
        let (event, notice) = (&confirmation.event, &confirmation.notice);
        let (account, id) = (account_id.to_string(), id.to_string());
        let at_millis = millis(at);
        let codes = code_rows(&account, recovery_codes, at_millis);
        let event = Recorded::from(event);
        let notice = NewOutboxRow::new(notice, at);
        let outcome = self
            .run(move |c| {
                c.transaction(|c| {
                    let confirmed = diesel::update(
                        mfa_factors::table
                            .find(&id)
                            .filter(mfa_factors::account_id.eq(&account).and(mfa_factors::confirmed_at.is_null())),
                    )
                    .set((
                        mfa_factors::confirmed_at.eq(at_millis),
                        mfa_factors::last_step.eq(step),
                        mfa_factors::last_used_at.eq(at_millis),
                    ))
                    .execute(c)?;
                    if confirmed == 0 {
                        return Err(DieselError::RollbackTransaction);
                    }
                    if !codes.is_empty() {
                        replace_codes(c, &account, &codes)?;
                    }
                    record(c, &notice, &event)?;
                    Ok(())
                })
                .map_err(StoreError::from)
            })
            .await;
        Ok(guarded(outcome)?)
    }

    async fn spend_step(&self, id: FactorId, step: i64, at: OffsetDateTime) -> Result<bool, InfraError> {
        let id = id.to_string();
        let at = millis(at);
        let updated = self
            .run(move |c| {
                Ok(diesel::update(
                    mfa_factors::table.find(&id).filter(
                        mfa_factors::confirmed_at
                            .is_not_null()
                            .and(mfa_factors::last_step.is_null().or(mfa_factors::last_step.lt(step))),
                    ),
                )
                .set((mfa_factors::last_step.eq(step), mfa_factors::last_used_at.eq(at)))
                .execute(c)?)
            })
            .await?;
        Ok(updated == 1)
    }

    async fn remove_factor(
        &self,
        account_id: AccountId,
        id: FactorId,
        event: &AuditEvent,
        notice: &OutgoingEmail,
    ) -> Result<bool, InfraError> {
        let (account, id) = (account_id.to_string(), id.to_string());
        let at = event.at;
        let event = Recorded::from(event);
        let notice = NewOutboxRow::new(notice, at);
        let outcome = self
            .run(move |c| {
                c.transaction(|c| {
                    let removed =
                        diesel::delete(mfa_factors::table.find(&id).filter(mfa_factors::account_id.eq(&account)))
                            .execute(c)?;
                    if removed == 0 {
                        return Err(DieselError::RollbackTransaction);
                    }
                    let confirmed_left = mfa_factors::table
                        .filter(mfa_factors::account_id.eq(&account).and(mfa_factors::confirmed_at.is_not_null()))
                        .select(mfa_factors::id)
                        .first::<String>(c)
                        .optional()?;
                    if confirmed_left.is_none() {
                        diesel::delete(mfa_recovery_codes::table.filter(mfa_recovery_codes::account_id.eq(&account)))
                            .execute(c)?;
                    }
                    record(c, &notice, &event)?;
                    Ok(())
                })
                .map_err(StoreError::from)
            })
            .await;
        Ok(guarded(outcome)?)
    }

    async fn remove_all(
        &self,
        account_id: AccountId,
        event: &AuditEvent,
        notice: &OutgoingEmail,
    ) -> Result<(), InfraError> {
        let account = account_id.to_string();
        let at = event.at;
        let event = Recorded::from(event);
        let notice = NewOutboxRow::new(notice, at);
        self.run(move |c| {
            c.transaction(|c| {
                let confirmed = diesel::delete(
                    mfa_factors::table
                        .filter(mfa_factors::account_id.eq(&account))
                        .filter(mfa_factors::confirmed_at.is_not_null()),
                )
                .execute(c)?;
                diesel::delete(mfa_factors::table.filter(mfa_factors::account_id.eq(&account))).execute(c)?;
                diesel::delete(mfa_recovery_codes::table.filter(mfa_recovery_codes::account_id.eq(&account)))
                    .execute(c)?;
                diesel::delete(mfa_challenges::table.filter(mfa_challenges::account_id.eq(&account))).execute(c)?;
                diesel::insert_into(outbox::table).values(&notice).execute(c)?;
                diesel::insert_into(crate::schema::audit_events::table).values(event.audit()).execute(c)?;
                // Announced only when a factor that counted went: an account without one lost
                // nothing.
                if confirmed > 0 {
                    event.announce(c)?;
                }
                Ok::<_, DieselError>(())
            })?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn replace_recovery_codes(
        &self,
        account_id: AccountId,
        codes: &[TokenHash],
        at: OffsetDateTime,
        event: &AuditEvent,
        notice: &OutgoingEmail,
    ) -> Result<(), InfraError> {
        let account = account_id.to_string();
        let rows = code_rows(&account, codes, millis(at));
        let event = Recorded::from(event);
        let notice = NewOutboxRow::new(notice, at);
        self.run(move |c| {
            c.transaction(|c| {
                replace_codes(c, &account, &rows)?;
                record(c, &notice, &event)?;
                Ok::<_, DieselError>(())
            })?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn recovery_codes_left(&self, account_id: AccountId) -> Result<u32, InfraError> {
        let account = account_id.to_string();
        let count: i64 = self
            .run(move |c| {
                Ok(mfa_recovery_codes::table
                    .filter(mfa_recovery_codes::account_id.eq(&account).and(mfa_recovery_codes::used_at.is_null()))
                    .count()
                    .get_result(c)?)
            })
            .await?;
        Ok(stored_count(count)?)
    }

    async fn spend_recovery_code(
        &self,
        account_id: AccountId,
        code: &TokenHash,
        at: OffsetDateTime,
        event: &AuditEvent,
        notice: &OutgoingEmail,
    ) -> Result<bool, InfraError> {
        let account = account_id.to_string();
        let code = code.as_bytes().to_vec();
        let at_millis = millis(at);
        let event = Recorded::from(event);
        let notice = NewOutboxRow::new(notice, at);
        let outcome = self
            .run(move |c| {
                c.transaction(|c| {
                    let spent = diesel::update(mfa_recovery_codes::table.find(&code).filter(
                        mfa_recovery_codes::account_id.eq(&account).and(mfa_recovery_codes::used_at.is_null()),
                    ))
                    .set(mfa_recovery_codes::used_at.eq(at_millis))
                    .execute(c)?;
                    if spent == 0 {
                        return Err(DieselError::RollbackTransaction);
                    }
                    record(c, &notice, &event)?;
                    Ok(())
                })
                .map_err(StoreError::from)
            })
            .await;
        Ok(guarded(outcome)?)
    }

    async fn create_challenge(&self, challenge: &MfaChallenge) -> Result<(), InfraError> {
        let row = ChallengeRow {
            token_hash: challenge.token_hash.as_bytes().to_vec(),
            account_id: challenge.account_id.to_string(),
            created_at: millis(challenge.created_at),
            expires_at: millis(challenge.expires_at),
            failures: i32::try_from(challenge.failures).unwrap_or(i32::MAX),
            user_agent: challenge.client.user_agent.clone(),
            ip: challenge.client.ip.clone(),
            credential_version: challenge.credential_version,
        };
        self.run(move |c| {
            diesel::insert_into(mfa_challenges::table).values(&row).execute(c)?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn find_challenge(&self, hash: &TokenHash) -> Result<Option<MfaChallenge>, InfraError> {
        let hash = hash.as_bytes().to_vec();
        let row = self
            .run(move |c| {
                Ok(mfa_challenges::table.find(&hash).select(ChallengeRow::as_select()).first(c).optional()?)
            })
            .await?;
        Ok(row.map(MfaChallenge::try_from).transpose()?)
    }

    async fn fail_challenge(&self, hash: &TokenHash, max_failures: u32) -> Result<Option<u32>, InfraError> {
        let hash = hash.as_bytes().to_vec();
        let max = i32::try_from(max_failures).unwrap_or(i32::MAX);
        let failures = self
            .run(move |c| {
                Ok(c.transaction(|c| {
                    let counted = diesel::update(mfa_challenges::table.find(&hash))
                        .set(mfa_challenges::failures.eq(mfa_challenges::failures + 1))
                        .execute(c)?;
                    if counted == 0 {
                        return Ok::<_, DieselError>(None);
                    }
                    let failures: i32 = mfa_challenges::table.find(&hash).select(mfa_challenges::failures).first(c)?;
                    if failures >= max {
                        diesel::delete(mfa_challenges::table.find(&hash)).execute(c)?;
                    }
                    Ok(Some(failures))
                })?)
            })
            .await?;
        Ok(failures.map(stored_count).transpose()?)
    }

    async fn spend_challenge(&self, hash: &TokenHash) -> Result<bool, InfraError> {
        let hash = hash.as_bytes().to_vec();
        let deleted = self.run(move |c| Ok(diesel::delete(mfa_challenges::table.find(&hash)).execute(c)?)).await?;
        Ok(deleted == 1)
    }

    async fn add_passkey(&self, addition: &PasskeyAddition) -> Result<(), InfraError> {
        let row = FactorRow::from(&addition.factor);
        let codes = code_rows(&row.account_id, &addition.recovery_codes, millis(addition.factor.created_at));
        let event = Recorded::from(&addition.event);
        let notice = NewOutboxRow::new(&addition.notice, addition.factor.created_at);
        self.run(move |c| {
            c.transaction(|c| {
                diesel::insert_into(mfa_factors::table).values(&row).execute(c)?;
                if !codes.is_empty() {
                    replace_codes(c, &row.account_id, &codes)?;
                }
                record(c, &notice, &event)?;
                Ok::<_, DieselError>(())
            })?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn factor_by_credential(&self, credential_id: &str) -> Result<Option<StoredFactor>, InfraError> {
        let credential_id = credential_id.to_owned();
        let row = self
            .run(move |c| {
                Ok(mfa_factors::table
                    .filter(mfa_factors::credential_id.eq(&credential_id))
                    .select(FactorRow::as_select())
                    .first(c)
                    .optional()?)
            })
            .await?;
        Ok(row.map(StoredFactor::try_from).transpose()?)
    }

    async fn record_passkey_use(
        &self,
        id: FactorId,
        stored: Option<String>,
        at: OffsetDateTime,
    ) -> Result<(), InfraError> {
        let id = id.to_string();
        let at = millis(at);
        self.run(move |c| {
            match &stored {
                Some(stored) => diesel::update(mfa_factors::table.find(&id))
                    .set((mfa_factors::secret.eq(stored), mfa_factors::last_used_at.eq(at)))
                    .execute(c)?,
                None => {
                    diesel::update(mfa_factors::table.find(&id)).set(mfa_factors::last_used_at.eq(at)).execute(c)?
                }
            };
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn create_ceremony(&self, ceremony: &PasskeyCeremony) -> Result<(), InfraError> {
        let row = CeremonyRow::from(ceremony);
        self.run(move |c| {
            diesel::insert_into(passkey_ceremonies::table).values(&row).execute(c)?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn take_ceremony(&self, id: CeremonyId) -> Result<Option<PasskeyCeremony>, InfraError> {
        let id = id.to_string();
        let row = self
            .run(move |c| {
                Ok(c.transaction(|c| {
                    let row =
                        passkey_ceremonies::table.find(&id).select(CeremonyRow::as_select()).first(c).optional()?;
                    // Whoever deletes it has it: of two requests, the second deletes nothing.
                    let deleted = diesel::delete(passkey_ceremonies::table.find(&id)).execute(c)?;
                    Ok::<_, DieselError>(row.filter(|_| deleted == 1))
                })?)
            })
            .await?;
        Ok(row.map(PasskeyCeremony::try_from).transpose()?)
    }
}
