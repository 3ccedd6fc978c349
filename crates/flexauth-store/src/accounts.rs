use async_trait::async_trait;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};
use flexauth_domain::account::{
    Account, AccountId, AccountRepository, CreateAccountError, CredentialChange, EmailAddress, EmailConfirmation,
    LinkTokenRecord, LoginCandidate, SessionsToEnd, SignupAttempt,
};
use flexauth_domain::mail::OutgoingEmail;
use flexauth_domain::secret::TokenHash;
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::rows::{instant, millis, AccountRow, NewOutboxRow, PasswordResetRow, SignupAttemptRow};
use crate::schema::{
    accounts, api_keys, email_verification_tokens, known_devices, mfa_factors, outbox, password_reset_tokens, sessions,
};
use crate::webhooks::{
    announce, announce_keys_revoked, announce_sessions_ended, announce_verified, EndedSession, Recorded, RevokedKey,
    ENDED_SESSION, REVOKED_KEY,
};
use crate::{guarded, per_backend, DbConnection, Store, StoreError};
use flexauth_domain::webhook::{KeyRevocationReason, WebhookEvent};
use uuid::Uuid;

/// Forgets the clients account `account_id` knew, at `now`: its known devices are deleted, and
/// its `clients_forgotten_at` says that no login from before counts any more. Part of the
/// transaction of the change that causes it (a reset, a password change, an undo, a disable, a
/// global logout).
pub(crate) fn forget_known_clients(c: &mut DbConnection, account_id: &str, now: i64) -> QueryResult<()> {
    diesel::delete(known_devices::table.filter(known_devices::account_id.eq(account_id))).execute(c)?;
    diesel::update(accounts::table.find(account_id)).set(accounts::clients_forgotten_at.eq(now)).execute(c)?;
    Ok(())
}

/// Whether a unique violation is the one on `accounts.email` (PostgreSQL names the
/// constraint, SQLite names the column in its message).
pub(crate) fn is_email_taken(info: &dyn DatabaseErrorInformation) -> bool {
    info.constraint_name() == Some("accounts_email_key") || info.message().contains("accounts.email")
}

#[async_trait]
impl AccountRepository for Store {
    async fn create_unverified(
        &self,
        account: &Account,
        attempt: &SignupAttempt,
        email: &OutgoingEmail,
    ) -> Result<(), CreateAccountError> {
        let account_row = AccountRow::from(account);
        let attempt_row = SignupAttemptRow::from(attempt);
        let outbox_row = NewOutboxRow::new(email, account.created_at());
        let created =
            WebhookEvent::account_created(Uuid::new_v4(), account.id(), account.email().clone(), account.created_at());
        let outcome = self
            .run(move |c| {
                (c.transaction(|c| {
                    diesel::insert_into(accounts::table).values(&account_row).execute(c)?;
                    diesel::insert_into(email_verification_tokens::table).values(&attempt_row).execute(c)?;
                    diesel::insert_into(outbox::table).values(&outbox_row).execute(c)?;
                    announce(c, &created)?;
                    Ok::<_, DieselError>(())
                }))
                .map_err(StoreError::from)
            })
            .await;
        match outcome {
            Ok(()) => Ok(()),
            Err(StoreError::Query(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)))
                if is_email_taken(info.as_ref()) =>
            {
                Err(CreateAccountError::EmailTaken)
            }
            Err(other) => Err(CreateAccountError::Unexpected(other.into())),
        }
    }

    async fn find_by_email(&self, email: &EmailAddress) -> Result<Option<Account>, InfraError> {
        let email = email.as_str().to_owned();
        let row = self
            .run(move |c| {
                Ok(accounts::table
                    .filter(accounts::email.eq(&email))
                    .select(AccountRow::as_select())
                    .first(c)
                    .optional()?)
            })
            .await?;
        Ok(row.map(Account::try_from).transpose()?)
    }

    async fn find_for_login(
        &self,
        email: &EmailAddress,
        device: Option<TokenHash>,
    ) -> Result<Option<LoginCandidate>, InfraError> {
        let email = email.as_str().to_owned();
        // No device is looked up as an empty digest, which no device has.
        let device = device.map(|device| device.as_bytes().to_vec()).unwrap_or_default();
        let row: Option<(AccountRow, bool, Option<i64>)> = self
            .run(move |c| {
                let has_second_factor = diesel::dsl::exists(
                    mfa_factors::table
                        .filter(mfa_factors::account_id.eq(accounts::id))
                        .filter(mfa_factors::confirmed_at.is_not_null()),
                );
                let device_last_seen_at = known_devices::table
                    .filter(known_devices::token_hash.eq(&device))
                    .filter(known_devices::account_id.eq(accounts::id))
                    .select(known_devices::last_seen_at)
                    .single_value();
                Ok(accounts::table
                    .filter(accounts::email.eq(&email))
                    .select((AccountRow::as_select(), has_second_factor, device_last_seen_at))
                    .first(c)
                    .optional()?)
            })
            .await?;
        let Some((account, has_second_factor, device_last_seen_at)) = row else {
            return Ok(None);
        };
        Ok(Some(LoginCandidate {
            account: Account::try_from(account)?,
            has_second_factor,
            device_last_seen_at: device_last_seen_at.map(instant).transpose()?,
        }))
    }

    async fn find_by_id(&self, id: AccountId) -> Result<Option<Account>, InfraError> {
        let id = id.to_string();
        let row = self
            .run(move |c| Ok(accounts::table.find(&id).select(AccountRow::as_select()).first(c).optional()?))
            .await?;
        Ok(row.map(Account::try_from).transpose()?)
    }

    async fn add_signup_attempt(
        &self,
        attempt: &SignupAttempt,
        email: &OutgoingEmail,
        now: OffsetDateTime,
        keep: u32,
    ) -> Result<bool, InfraError> {
        let attempt_row = SignupAttemptRow::from(attempt);
        let outbox_row = NewOutboxRow::new(email, now);
        let outcome = self
            .run(move |c| {
                (c.transaction(|c| {
                    // Takes the account row's lock and checks, under it, that the address is still
                    // unverified: an attempt added after a confirmation would only mail a dead link.
                    let unverified = diesel::update(
                        accounts::table.find(&attempt_row.account_id).filter(accounts::email_verified_at.is_null()),
                    )
                    .set(accounts::credential_version.eq(accounts::credential_version))
                    .execute(c)?;
                    if unverified == 0 {
                        return Err(DieselError::RollbackTransaction);
                    }
                    diesel::insert_into(email_verification_tokens::table).values(&attempt_row).execute(c)?;
                    let unused: Vec<Vec<u8>> = email_verification_tokens::table
                        .filter(email_verification_tokens::account_id.eq(&attempt_row.account_id))
                        .filter(email_verification_tokens::used_at.is_null())
                        .order((
                            email_verification_tokens::created_at.desc(),
                            email_verification_tokens::token_hash.asc(),
                        ))
                        .select(email_verification_tokens::token_hash)
                        .load(c)?;
                    let dropped: Vec<Vec<u8>> = unused
                        .into_iter()
                        .filter(|hash| *hash != attempt_row.token_hash)
                        .skip(keep.saturating_sub(1) as usize)
                        .collect();
                    if !dropped.is_empty() {
                        diesel::delete(
                            email_verification_tokens::table
                                .filter(email_verification_tokens::token_hash.eq_any(&dropped)),
                        )
                        .execute(c)?;
                    }
                    diesel::insert_into(outbox::table).values(&outbox_row).execute(c)?;
                    Ok::<_, DieselError>(())
                }))
                .map_err(StoreError::from)
            })
            .await;
        Ok(guarded(outcome)?)
    }

    async fn find_signup_attempt(&self, hash: &TokenHash) -> Result<Option<SignupAttempt>, InfraError> {
        let hash = hash.as_bytes().to_vec();
        let row = self
            .run(move |c| {
                Ok(email_verification_tokens::table
                    .find(&hash)
                    .select(SignupAttemptRow::as_select())
                    .first(c)
                    .optional()?)
            })
            .await?;
        Ok(row.map(SignupAttempt::try_from).transpose()?)
    }

    async fn pending_signup_attempts(
        &self,
        account_id: AccountId,
        now: OffsetDateTime,
    ) -> Result<Vec<SignupAttempt>, InfraError> {
        let account_id = account_id.to_string();
        let now = millis(now);
        let rows = self
            .run(move |c| {
                Ok(email_verification_tokens::table
                    .filter(email_verification_tokens::account_id.eq(&account_id))
                    .filter(email_verification_tokens::used_at.is_null())
                    .filter(email_verification_tokens::expires_at.gt(now))
                    .order((email_verification_tokens::created_at.desc(), email_verification_tokens::token_hash.asc()))
                    .select(SignupAttemptRow::as_select())
                    .load(c)?)
            })
            .await?;
        Ok(rows.into_iter().map(SignupAttempt::try_from).collect::<Result<_, _>>()?)
    }

    async fn confirm_email(&self, confirmation: &EmailConfirmation) -> Result<bool, InfraError> {
        let account_id = confirmation.account_id.to_string();
        let attempt = confirmation.attempt.as_bytes().to_vec();
        let password_hash = confirmation.password_hash.as_phc().to_owned();
        let (confirmed_at, account) = (confirmation.confirmed_at, confirmation.account_id);
        let now = millis(confirmation.confirmed_at);
        let outcome = self
            .run(move |c| {
                (c.transaction(|c| {
                    // The account row first, as in every transaction that writes it: two
                    // confirmations (or a confirmation and a reset) then queue on that one
                    // lock instead of deadlocking on each other's link rows. Only an
                    // unverified account takes a password from a sign-up link: once verified,
                    // its password changes by reset or change only.
                    let activated =
                        diesel::update(accounts::table.find(&account_id).filter(accounts::email_verified_at.is_null()))
                            .set((
                                accounts::password_hash.eq(&password_hash),
                                accounts::email_verified_at.eq(now),
                                accounts::credential_version.eq(accounts::credential_version + 1),
                            ))
                            .execute(c)?;
                    if activated == 0 {
                        return Err(DieselError::RollbackTransaction);
                    }
                    let spent = diesel::update(
                        email_verification_tokens::table
                            .find(&attempt)
                            .filter(email_verification_tokens::used_at.is_null()),
                    )
                    .set(email_verification_tokens::used_at.eq(now))
                    .execute(c)?;
                    if spent == 0 {
                        return Err(DieselError::RollbackTransaction);
                    }
                    diesel::delete(
                        email_verification_tokens::table
                            .filter(email_verification_tokens::account_id.eq(&account_id))
                            .filter(email_verification_tokens::used_at.is_null()),
                    )
                    .execute(c)?;
                    announce_verified(c, account, confirmed_at)?;
                    Ok::<_, DieselError>(())
                }))
                .map_err(StoreError::from)
            })
            .await;
        Ok(guarded(outcome)?)
    }

    async fn create_password_reset(
        &self,
        token: &LinkTokenRecord,
        email: &OutgoingEmail,
        now: OffsetDateTime,
    ) -> Result<(), InfraError> {
        let token_row = PasswordResetRow::from(token);
        let outbox_row = NewOutboxRow::new(email, now);
        self.run(move |c| {
            (c.transaction(|c| {
                diesel::insert_into(password_reset_tokens::table).values(&token_row).execute(c)?;
                diesel::insert_into(outbox::table).values(&outbox_row).execute(c)?;
                Ok::<_, DieselError>(())
            }))
            .map_err(StoreError::from)
        })
        .await?;
        Ok(())
    }

    async fn find_password_reset(&self, hash: &TokenHash) -> Result<Option<LinkTokenRecord>, InfraError> {
        let hash = hash.as_bytes().to_vec();
        let row = self
            .run(move |c| {
                Ok(password_reset_tokens::table
                    .find(&hash)
                    .select(PasswordResetRow::as_select())
                    .first(c)
                    .optional()?)
            })
            .await?;
        Ok(row.map(LinkTokenRecord::try_from).transpose()?)
    }

    async fn apply_credential_change(&self, change: &CredentialChange) -> Result<bool, InfraError> {
        let account_id = change.account_id.to_string();
        let password_hash = change.password_hash.as_phc().to_owned();
        let expected_version = change.expected_version;
        let reset_link = change.reset_link.map(|hash| hash.as_bytes().to_vec());
        // No session id is the empty string, so "end them all" needs no second query shape.
        let keep = match change.end_sessions {
            SessionsToEnd::All => String::new(),
            SessionsToEnd::AllExcept(id) => id.to_string(),
        };
        let revocation = change.reason;
        let reason = change.reason.as_str();
        let (at, account) = (change.at, change.account_id);
        let verify_email = change.verify_email;
        let revoke_keys_made_before = change.revoke_keys_made_before.map(millis);
        let outbox_row = NewOutboxRow::new(&change.notice, change.at);
        let event = Recorded::from(&change.event);
        let now = millis(change.at);
        let outcome = self
            .run(move |c| {
                (c.transaction(|c| {
                    // The account row first: it is the lock a concurrent login takes before it
                    // inserts its session (see SessionRepository::create), and taking it before
                    // any link row makes two resets, or a reset and a change, queue on it
                    // rather than deadlock.
                    let set = (
                        accounts::password_hash.eq(&password_hash),
                        accounts::credential_version.eq(accounts::credential_version + 1),
                    );
                    let updated = match expected_version {
                        Some(version) => diesel::update(
                            accounts::table.find(&account_id).filter(accounts::credential_version.eq(version)),
                        )
                        .set(set)
                        .execute(c)?,
                        None => diesel::update(accounts::table.find(&account_id)).set(set).execute(c)?,
                    };
                    if updated == 0 {
                        return Err(DieselError::RollbackTransaction);
                    }
                    if let Some(link) = &reset_link {
                        let spent = diesel::update(
                            password_reset_tokens::table.find(link).filter(password_reset_tokens::used_at.is_null()),
                        )
                        .set(password_reset_tokens::used_at.eq(now))
                        .execute(c)?;
                        if spent == 0 {
                            return Err(DieselError::RollbackTransaction);
                        }
                    }
                    if verify_email
                        && diesel::update(
                            accounts::table.find(&account_id).filter(accounts::email_verified_at.is_null()),
                        )
                        .set(accounts::email_verified_at.eq(now))
                        .execute(c)?
                            == 1
                    {
                        announce_verified(c, account, at)?;
                    }
                    diesel::update(
                        password_reset_tokens::table
                            .filter(password_reset_tokens::account_id.eq(&account_id))
                            .filter(password_reset_tokens::used_at.is_null()),
                    )
                    .set(password_reset_tokens::used_at.eq(now))
                    .execute(c)?;
                    diesel::delete(
                        email_verification_tokens::table
                            .filter(email_verification_tokens::account_id.eq(&account_id))
                            .filter(email_verification_tokens::used_at.is_null()),
                    )
                    .execute(c)?;
                    let ended: Vec<EndedSession> = per_backend!(c, |c| diesel::update(
                        sessions::table
                            .filter(sessions::account_id.eq(&account_id))
                            .filter(sessions::id.ne(&keep))
                            .filter(sessions::revoked_at.is_null()),
                    )
                    .set((sessions::revoked_at.eq(now), sessions::revoked_reason.eq(reason)))
                    .returning(ENDED_SESSION)
                    .get_results(c))?;
                    announce_sessions_ended(c, &ended, revocation, at)?;
                    // The trigger of migration 7 tells every instance's key cache at commit.
                    let keys_revoked = match revoke_keys_made_before {
                        Some(before) => {
                            let revoked: Vec<RevokedKey> = per_backend!(c, |c| diesel::update(
                                api_keys::table
                                    .filter(api_keys::account_id.eq(&account_id))
                                    .filter(api_keys::revoked_at.is_null())
                                    .filter(api_keys::created_at.lt(before)),
                            )
                            .set(api_keys::revoked_at.eq(now))
                            .returning(REVOKED_KEY)
                            .get_results(c))?;
                            announce_keys_revoked(c, &revoked, KeyRevocationReason::PasswordReset, at)?;
                            revoked.len()
                        }
                        None => 0,
                    };
                    forget_known_clients(c, &account_id, now)?;
                    diesel::insert_into(outbox::table).values(&outbox_row).execute(c)?;
                    event.insert(c)?;
                    Ok::<_, DieselError>(keys_revoked > 0)
                }))
                .map_err(StoreError::from)
            })
            .await;
        match outcome {
            Ok(keys_revoked) => {
                // Sessions ended (every one, or every one but the caller's, when there were).
                self.announce_endings(keys_revoked, true).await;
                Ok(true)
            }
            Err(StoreError::Query(DieselError::RollbackTransaction)) => Ok(false),
            Err(other) => Err(other.into()),
        }
    }
}
