use async_trait::async_trait;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};
use flexauth_domain::account::{Account, AccountId, AccountRepository, CreateAccountError, EmailAddress, LinkTokenRecord, PasswordHash};
use flexauth_domain::mail::OutgoingEmail;
use flexauth_domain::secret::TokenHash;
use flexauth_domain::session::{RevocationReason, SessionId};
use flexauth_domain::InfraError;
use time::OffsetDateTime;

use crate::rows::{millis, AccountRow, NewOutboxRow, PasswordResetRow, VerificationTokenRow};
use crate::schema::{accounts, email_verification_tokens, outbox, password_reset_tokens, sessions};
use crate::{with_connection, Store, StoreError};

/// Whether a unique violation is the one on `accounts.email` (PostgreSQL names the
/// constraint, SQLite names the column in its message).
fn is_email_taken(info: &dyn DatabaseErrorInformation) -> bool {
    info.constraint_name() == Some("accounts_email_key") || info.message().contains("accounts.email")
}

#[async_trait]
impl AccountRepository for Store {
    async fn create_unverified(&self, account: &Account, token: &LinkTokenRecord, email: &OutgoingEmail) -> Result<(), CreateAccountError> {
        let account_row = AccountRow::from(account);
        let token_row = VerificationTokenRow::from(token);
        let outbox_row = NewOutboxRow::new(email, account.created_at());
        let outcome = self
            .run(move |connection| {
                with_connection!(connection, |c| c.transaction(|c| {
                    diesel::insert_into(accounts::table).values(&account_row).execute(c)?;
                    diesel::insert_into(email_verification_tokens::table).values(&token_row).execute(c)?;
                    diesel::insert_into(outbox::table).values(&outbox_row).execute(c)?;
                    Ok::<_, DieselError>(())
                }))
                .map_err(StoreError::from)
            })
            .await;
        match outcome {
            Ok(()) => Ok(()),
            Err(StoreError::Query(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))) if is_email_taken(info.as_ref()) => {
                Err(CreateAccountError::EmailTaken)
            }
            Err(other) => Err(CreateAccountError::Unexpected(other.into())),
        }
    }

    async fn find_by_email(&self, email: &EmailAddress) -> Result<Option<Account>, InfraError> {
        let email = email.as_str().to_owned();
        let row = self
            .run(move |connection| {
                Ok(with_connection!(connection, |c| accounts::table.filter(accounts::email.eq(&email)).select(AccountRow::as_select()).first(c).optional())?)
            })
            .await?;
        Ok(row.map(Account::try_from).transpose()?)
    }

    async fn find_by_id(&self, id: AccountId) -> Result<Option<Account>, InfraError> {
        let id = id.to_string();
        let row = self
            .run(move |connection| Ok(with_connection!(connection, |c| accounts::table.find(&id).select(AccountRow::as_select()).first(c).optional())?))
            .await?;
        Ok(row.map(Account::try_from).transpose()?)
    }

    async fn replace_verification_token(&self, token: &LinkTokenRecord, email: &OutgoingEmail, now: OffsetDateTime) -> Result<(), InfraError> {
        let token_row = VerificationTokenRow::from(token);
        let outbox_row = NewOutboxRow::new(email, now);
        self.run(move |connection| {
            with_connection!(connection, |c| c.transaction(|c| {
                diesel::delete(
                    email_verification_tokens::table
                        .filter(email_verification_tokens::account_id.eq(&token_row.account_id))
                        .filter(email_verification_tokens::used_at.is_null()),
                )
                .execute(c)?;
                diesel::insert_into(email_verification_tokens::table).values(&token_row).execute(c)?;
                diesel::insert_into(outbox::table).values(&outbox_row).execute(c)?;
                Ok::<_, DieselError>(())
            }))
            .map_err(StoreError::from)
        })
        .await?;
        Ok(())
    }

    async fn find_verification_token(&self, hash: &TokenHash) -> Result<Option<LinkTokenRecord>, InfraError> {
        let hash = hash.as_bytes().to_vec();
        let row = self
            .run(move |connection| {
                Ok(with_connection!(connection, |c| email_verification_tokens::table
                    .find(&hash)
                    .select(VerificationTokenRow::as_select())
                    .first(c)
                    .optional())?)
            })
            .await?;
        Ok(row.map(LinkTokenRecord::try_from).transpose()?)
    }

    async fn mark_email_verified(&self, hash: &TokenHash, now: OffsetDateTime) -> Result<(), InfraError> {
        let hash = hash.as_bytes().to_vec();
        let now = millis(now);
        self.run(move |connection| {
            with_connection!(connection, |c| c.transaction(|c| {
                let account_id: Option<String> =
                    email_verification_tokens::table.find(&hash).select(email_verification_tokens::account_id).first(c).optional()?;
                let Some(account_id) = account_id else {
                    return Ok(());
                };
                diesel::update(email_verification_tokens::table.find(&hash).filter(email_verification_tokens::used_at.is_null()))
                    .set(email_verification_tokens::used_at.eq(now))
                    .execute(c)?;
                diesel::update(accounts::table.find(&account_id).filter(accounts::email_verified_at.is_null()))
                    .set(accounts::email_verified_at.eq(now))
                    .execute(c)?;
                Ok::<_, DieselError>(())
            }))
            .map_err(StoreError::from)
        })
        .await?;
        Ok(())
    }

    async fn create_password_reset(&self, token: &LinkTokenRecord, email: &OutgoingEmail, now: OffsetDateTime) -> Result<(), InfraError> {
        let token_row = PasswordResetRow::from(token);
        let outbox_row = NewOutboxRow::new(email, now);
        self.run(move |connection| {
            with_connection!(connection, |c| c.transaction(|c| {
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
            .run(move |connection| {
                Ok(with_connection!(connection, |c| password_reset_tokens::table.find(&hash).select(PasswordResetRow::as_select()).first(c).optional())?)
            })
            .await?;
        Ok(row.map(LinkTokenRecord::try_from).transpose()?)
    }

    async fn reset_password(
        &self,
        hash: &TokenHash,
        password_hash: &PasswordHash,
        now: OffsetDateTime,
        confirmation: &OutgoingEmail,
    ) -> Result<bool, InfraError> {
        let hash = hash.as_bytes().to_vec();
        let password_hash = password_hash.as_phc().to_owned();
        let outbox_row = NewOutboxRow::new(confirmation, now);
        let now = millis(now);
        let reset = self
            .run(move |connection| {
                with_connection!(connection, |c| c.transaction(|c| {
                    // Spending the token first makes a concurrent second reset find it used
                    // and write nothing.
                    let spent = diesel::update(password_reset_tokens::table.find(&hash).filter(password_reset_tokens::used_at.is_null()))
                        .set(password_reset_tokens::used_at.eq(now))
                        .execute(c)?;
                    if spent == 0 {
                        return Ok(false);
                    }
                    let account_id: String = password_reset_tokens::table.find(&hash).select(password_reset_tokens::account_id).first(c)?;
                    diesel::update(
                        password_reset_tokens::table.filter(password_reset_tokens::account_id.eq(&account_id)).filter(password_reset_tokens::used_at.is_null()),
                    )
                    .set(password_reset_tokens::used_at.eq(now))
                    .execute(c)?;
                    diesel::update(accounts::table.find(&account_id)).set(accounts::password_hash.eq(&password_hash)).execute(c)?;
                    diesel::update(accounts::table.find(&account_id).filter(accounts::email_verified_at.is_null()))
                        .set(accounts::email_verified_at.eq(now))
                        .execute(c)?;
                    diesel::update(sessions::table.filter(sessions::account_id.eq(&account_id)).filter(sessions::revoked_at.is_null()))
                        .set((sessions::revoked_at.eq(now), sessions::revoked_reason.eq(RevocationReason::PasswordReset.as_str())))
                        .execute(c)?;
                    diesel::insert_into(outbox::table).values(&outbox_row).execute(c)?;
                    Ok::<_, DieselError>(true)
                }))
                .map_err(StoreError::from)
            })
            .await?;
        Ok(reset)
    }

    async fn change_password(
        &self,
        account_id: AccountId,
        password_hash: &PasswordHash,
        keep: SessionId,
        now: OffsetDateTime,
        confirmation: &OutgoingEmail,
    ) -> Result<(), InfraError> {
        let account_id = account_id.to_string();
        let keep = keep.to_string();
        let password_hash = password_hash.as_phc().to_owned();
        let outbox_row = NewOutboxRow::new(confirmation, now);
        let now = millis(now);
        self.run(move |connection| {
            with_connection!(connection, |c| c.transaction(|c| {
                diesel::update(accounts::table.find(&account_id)).set(accounts::password_hash.eq(&password_hash)).execute(c)?;
                diesel::update(
                    sessions::table.filter(sessions::account_id.eq(&account_id)).filter(sessions::id.ne(&keep)).filter(sessions::revoked_at.is_null()),
                )
                .set((sessions::revoked_at.eq(now), sessions::revoked_reason.eq(RevocationReason::PasswordChange.as_str())))
                .execute(c)?;
                diesel::insert_into(outbox::table).values(&outbox_row).execute(c)?;
                Ok::<_, DieselError>(())
            }))
            .map_err(StoreError::from)
        })
        .await?;
        Ok(())
    }
}
