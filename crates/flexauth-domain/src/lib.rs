//! flexauth's business rules and the ports they need.
//!
//! This crate decides who may sign up, log in and refresh, when a refresh token counts as
//! reused, what expires when and how an email is retried. It performs no I/O of its own: every
//! effect goes through a port trait (storage, password hashing, token signing, the words of an
//! email, mail transport, clock, randomness) that an adapter crate implements. It must never depend on a web
//! framework, a database driver, an async runtime, a mail library, a JWT library or a password
//! hashing backend, so that services embedding it can supply their own adapters and unit-test
//! the rules against the `mocks` feature's mockall mocks.
//!
//! # Embedding it: the whole flow in one program
//!
//! The rules run wherever their ports are implemented. Here every storage port is
//! `flexauth-memory`, hashing is `flexauth-argon2`, tokens are `flexauth-jwt`, the emails are
//! written by `flexauth-mail`'s built-in templates, and the mail transport is a list that keeps what it is given; the clock and the random source are four
//! lines each. Sign-up, confirmation, login, a protected call and a refresh:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//!
//! use flexauth_domain::account::{AccountService, AccountSettings, EmailAddress, NewPassword, Password};
//! use flexauth_domain::limits::LimitSettings;
//! use flexauth_domain::mail::{DeliveryService, DeliverySettings, Letters, MailTransport, OutgoingEmail, SendError};
//! use flexauth_domain::mfa::{MfaService, MfaSettings};
//! use flexauth_domain::system::{Clock, SecureRandom};
//! use flexauth_domain::secret::LinkToken;
//! use flexauth_domain::session::{ClientInfo, SessionService, SessionSettings};
//!
//! struct SystemClock;
//! impl Clock for SystemClock {
//!     fn now(&self) -> time::OffsetDateTime {
//!         time::OffsetDateTime::now_utc()
//!     }
//! }
//!
//! /// The operating system's CSPRNG; a source that cannot deliver stops the process.
//! struct OsRandom;
//! impl SecureRandom for OsRandom {
//!     fn fill(&self, buffer: &mut [u8]) {
//!         getrandom::getrandom(buffer).expect("the operating system's random source");
//!     }
//! }
//!
//! /// Keeps every email it is asked to send: the inbox of this example.
//! #[derive(Default)]
//! struct Inbox(Mutex<Vec<OutgoingEmail>>);
//! #[async_trait::async_trait]
//! impl MailTransport for Inbox {
//!     async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
//!         self.0.lock().unwrap().push(email.clone());
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let public_url = "https://auth.example.com".to_owned();
//! let store = Arc::new(flexauth_memory::MemoryStore::new());
//! // A cheap argon2 cost for the example; production keeps the defaults (19 MiB, 2 passes).
//! let cost = flexauth_argon2::Argon2Settings { memory_kib: 1024, iterations: 1, ..Default::default() };
//! let hasher = Arc::new(flexauth_argon2::Argon2Hasher::new(cost)?);
//! let key = flexauth_jwt::SigningKeyPair::from_pem(&flexauth_jwt::SigningKeyPair::generate_pem()?)?;
//! let jwt = flexauth_jwt::JwtSettings { issuer: public_url.clone(), audience: "my-service".into(), verified_cache_entries: 1024 };
//! let tokens = Arc::new(flexauth_jwt::JwtTokens::new(&key, &[], jwt));
//! let (clock, random): (Arc<dyn Clock>, Arc<dyn SecureRandom>) = (Arc::new(SystemClock), Arc::new(OsRandom));
//! let inbox = Arc::new(Inbox::default());
//! let letters = Letters::new(&public_url, Arc::new(flexauth_mail::EmailTemplates::builtin()?));
//!
//! let accounts = AccountService::new(
//!     store.clone(), store.clone(), store.clone(), hasher.clone(), store.clone(), clock.clone(), random.clone(),
//!     letters.clone(),
//!     AccountSettings {
//!         verification_ttl: time::Duration::hours(24),
//!         password_reset_ttl: time::Duration::hours(1),
//!         limits: LimitSettings::default(),
//!     },
//! );
//! // Second factors: TOTP codes by flexauth-totp (no key-encryption key seals their secrets
//! // here) and passkeys by flexauth-webauthn, for pages of the public URL.
//! let mfa = MfaService::new(
//!     store.clone(), store.clone(), Arc::new(flexauth_totp::Totp), Arc::new(flexauth_jwt::SecretSealing::new(None)),
//!     Some(Arc::new(flexauth_webauthn::WebauthnPasskeys::new("auth.example.com", "Example", &[public_url.parse()?])?)),
//!     clock.clone(), random.clone(), letters.clone(), MfaSettings::default(),
//! );
//! let sessions = SessionService::new(
//!     store.clone(), store.clone(), hasher, tokens, store.clone(), store.clone(), store.clone(), clock.clone(),
//!     random.clone(),
//!     mfa,
//!     letters,
//!     SessionSettings::default(),
//! );
//! let delivery = DeliveryService::new(store, inbox.clone(), clock, random, DeliverySettings::default());
//!
//! // 1. Sign up. The answer is the same for a taken address; the work happens in a queue
//! //    (a background task in a server), which creates the account and queues the link.
//! let email = EmailAddress::parse("Ann@Example.com")?;
//! let password = "correct horse battery staple";
//! accounts.signup(email.clone(), &NewPassword::parse(password.into())?, None).await?;
//! accounts.handle_due_requests().await?;
//! delivery.deliver_due().await?;
//!
//! // 2. Confirm the address with the token of the link in the email.
//! let mail = inbox.0.lock().unwrap().pop().expect("the verification email");
//! assert_eq!(mail.to().as_str(), "ann@example.com");
//! let token = mail.text_body().split("token=").nth(1).and_then(|rest| rest.split_whitespace().next()).expect("a link");
//! accounts.confirm_email(&LinkToken::parse(token)?, None).await?;
//!
//! // 3. Log in: an access token (an Ed25519 JWT) and a refresh token.
//! let pair = sessions.login(&email, &Password::parse(password.into())?, ClientInfo::default()).await?;
//!
//! // 4. A protected call: whose access token is this?
//! let caller = sessions.authenticate(&pair.access_token).await?;
//!
//! // 5. Refresh: the presented token is spent, a new pair comes back for the same account.
//! let next = sessions.refresh(&pair.refresh_token, None).await?;
//! assert_eq!(sessions.authenticate(&next.access_token).await?.account_id, caller.account_id);
//! assert_ne!(next.refresh_token, pair.refresh_token);
//! # Ok(())
//! # }
//! ```
//!
//! `examples/embedded` in the repository serves the same flow over HTTP with axum.

pub mod account;
pub mod api_key;
pub mod audit;
pub mod bearer;
pub mod housekeeping;
pub mod introspection;
pub mod lifecycle;
pub mod limits;
pub mod mail;
pub mod mfa;
pub mod newtypes;
pub mod principal;
pub mod secret;
pub mod session;
pub mod system;
pub mod usage;
pub mod webhook;

mod error;

pub use error::InfraError;

#[cfg(test)]
mod floors;

/// The floors of the domain, lowest first. A module may name a module on a lower floor, never
/// one on its own floor or above: the ground floor (`system`, `secret`, `newtypes`) names no
/// concept, and each concept names only what it builds on.
#[cfg(test)]
mod floor_plan {
    const FLOORS: &[&[&str]] = &[
        &["system"],
        &["secret"],
        &["newtypes"],
        &["principal"],
        &["limits", "mail", "usage", "housekeeping"],
        &["audit"],
        &["account"],
        &["mfa"],
        &["session"],
        &["api_key"],
        &["webhook"],
        &["bearer", "lifecycle"],
        &["introspection"],
    ];

    #[test]
    fn every_module_names_only_modules_on_lower_floors() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let upward = super::floors::upward_imports(&root, FLOORS, &["lib", "error", "floors"], 30);
        assert!(upward.is_empty(), "imports that do not point down: {upward:#?}");
    }
}
