//! Accounts: email addresses, passwords and their policy, email verification, sign-up.

mod email;
mod model;
mod password;
mod ports;
mod service;

pub use email::{EmailAddress, EmailError};
pub use model::{Account, AccountId, LinkTokenRecord};
pub use password::{NewPassword, Password, PasswordError, PasswordHash, PasswordHasher, PASSWORD_MAX_BYTES, PASSWORD_MIN_CHARS};
pub use ports::{AccountRepository, CreateAccountError};
pub use service::{AccountLookupError, AccountService, AccountSettings, ChangePasswordError, ResetPasswordError, SignupError, VerifyEmailError, VerifyOutcome};

#[cfg(any(test, feature = "mocks"))]
pub use password::MockPasswordHasher;
#[cfg(any(test, feature = "mocks"))]
pub use ports::MockAccountRepository;
