//! Accounts: email addresses, passwords and their policy, sign-up attempts and email
//! verification, password reset (a change of the password from a session is
//! `SessionService::change_password`, since it may end that session).

mod errors;
mod model;
mod password;
mod password_check;
mod plan;
mod ports;
mod request;
mod service;

pub use crate::newtypes::{AccountId, EmailAddress, EmailError};
pub use errors::{AccountLookupError, ChangePasswordError, ResetPasswordError, SignupError, VerifyEmailError};
pub use model::{Account, LinkTokenRecord, SignupAttempt, StoredAccount};
pub(crate) use password::from_hash_error;
pub use password::{
    HashError, NewPassword, Password, PasswordError, PasswordHash, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS,
};
pub(crate) use password_check::{PasswordCheck, PasswordCheckError, PasswordChecker};
pub use plan::{CredentialChange, EmailConfirmation, SessionsToEnd};
pub use ports::{AccountRepository, AccountRequestQueue, CreateAccountError, LoginCandidate, PasswordHasher};
pub use request::{AccountRequest, AccountRequestKind};
pub use service::{
    newest_pending_password, AccountService, AccountSettings, ConfirmationPage, RequestsReport, VerifyOutcome,
    MAX_PENDING_SIGNUP_ATTEMPTS,
};

#[cfg(any(test, feature = "mocks"))]
pub use ports::{MockAccountRepository, MockAccountRequestQueue, MockPasswordHasher};
