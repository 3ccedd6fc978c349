//! Checking an account's password where a guess costs the guesser, not the server: each check
//! is counted before the hash against the counters the caller names (a session, the account, a
//! client address), and taken back when it was no guess (the right password, or a hash pool too
//! busy to check). Re-authentication, a password change and the confirmation of an address
//! change all check this way, against the same counters.

use time::OffsetDateTime;

use super::{Account, AccountRepository, HashError, Password, PasswordHasher};
use crate::limits::{LimitDecision, LimitPolicy, RateLimited, RateLimiter};
use crate::newtypes::AccountId;
use crate::InfraError;

/// What a check found.
#[derive(Debug)]
pub(crate) enum PasswordCheck {
    /// The password is the account's.
    Right(Account),
    /// The password is wrong. `used_up` says whether this check took the last attempt of the
    /// first counter (the one whose exhaustion has consequences, such as a session's).
    Wrong { account: Account, used_up: bool },
    /// No account has this id (erased meanwhile); a dummy hash was checked all the same.
    NoAccount,
}

/// Why a check did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PasswordCheckError {
    #[error(transparent)]
    Throttled(#[from] RateLimited),
    #[error("the server is overloaded")]
    Overloaded,
    #[error(transparent)]
    Unexpected(#[from] InfraError),
}

/// The ports a check uses.
pub(crate) struct PasswordChecker<'a> {
    pub accounts: &'a dyn AccountRepository,
    pub hasher: &'a dyn PasswordHasher,
    pub limiter: &'a dyn RateLimiter,
}

impl PasswordChecker<'_> {
    /// Checks `password` against account `account_id`, counting it first under each of
    /// `counters` (empty when limits are off).
    pub(crate) async fn check(
        &self,
        account_id: AccountId,
        password: &Password,
        counters: &[(String, LimitPolicy)],
        now: OffsetDateTime,
    ) -> Result<PasswordCheck, PasswordCheckError> {
        // One atomic step each, before the hash, so that concurrent guesses cannot all pass a
        // limit none of them has counted yet.
        let mut first: Option<LimitDecision> = None;
        for (key, policy) in counters {
            let decision = self.limiter.hit(key, policy, now).await?;
            if !decision.allowed {
                return Err(RateLimited(decision).into());
            }
            first.get_or_insert(decision);
        }
        let Some(account) = self.accounts.find_by_id(account_id).await? else {
            self.hasher.verify_against_dummy(password).await.map_err(PasswordCheckError::from)?;
            return Ok(PasswordCheck::NoAccount);
        };
        match self.hasher.verify(password, account.password_hash()).await {
            Ok(true) => {
                self.refund(counters, now).await?;
                Ok(PasswordCheck::Right(account))
            }
            Ok(false) => {
                Ok(PasswordCheck::Wrong { account, used_up: first.is_some_and(|decision| decision.remaining == 0) })
            }
            Err(HashError::Overloaded) => {
                self.refund(counters, now).await?;
                Err(PasswordCheckError::Overloaded)
            }
            Err(HashError::Unexpected(cause)) => Err(cause.into()),
        }
    }

    async fn refund(&self, counters: &[(String, LimitPolicy)], now: OffsetDateTime) -> Result<(), InfraError> {
        for (key, policy) in counters {
            self.limiter.refund(key, policy, now).await?;
        }
        Ok(())
    }
}

impl From<HashError> for PasswordCheckError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Overloaded => Self::Overloaded,
            HashError::Unexpected(cause) => Self::Unexpected(cause),
        }
    }
}
