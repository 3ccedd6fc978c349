//! Protects a Rust service with flexauth: the service accepts flexauth's access tokens (people)
//! and API keys (servers) as `Authorization: Bearer …`, and its handlers learn who calls.
//!
//! - Access tokens are verified offline with the keys of flexauth's JWKS: `EdDSA` only, `typ`
//!   `at+jwt` (a refresh token is refused before any key is looked up), flexauth's `iss` and
//!   `aud`, `exp` and `nbf` with a minute of leeway. The JWKS is kept for its `max-age`,
//!   revalidated with its `ETag`, and fetched again for a `kid` it does not hold, at most once
//!   a minute: a rotated key needs no restart.
//! - API keys are introspected (`POST /v1/auth/introspect`, RFC 7662) with the credentials of a
//!   client the operator registered (`flexauth clients create`), and each answer is kept for
//!   [`GuardSettings::key_answers_kept_for`] (5 s): a revoked key is refused at most that much
//!   later.
//!
//! An access token verified offline stays valid until its `exp` after its session ended (a
//! logout, a reset): set [`GuardSettings::introspect_access_tokens`] to ask flexauth about
//! those too, and refuse them within the same few seconds.
//!
//! With axum (feature `tower`), [`GuardLayer`] puts the [`Caller`] in the request's
//! extensions; with actix-web (feature `actix-web`), [`Caller`] is an extractor.
//!
//! ```ignore
//! let guard = Guard::new(GuardSettings::new("https://auth.example.com").with_client(id, secret))?;
//! let app = axum::Router::new()
//!     .route("/invoices", get(invoices).layer(GuardLayer::requiring(guard.clone(), ["invoices:read"])))
//!     .route("/me", get(me))
//!     .layer(GuardLayer::new(guard));
//! async fn me(Extension(caller): Extension<Caller>) -> String { caller.account_id }
//! ```

mod caller;
mod guard;
mod introspection;
mod jwks;
mod refusal;

#[cfg(feature = "actix-web")]
mod actix;
#[cfg(feature = "tower")]
mod layer;

pub use caller::{Caller, Credential, Scopes};
pub use guard::{ClientCredentials, Guard, GuardError, GuardSettings};
pub use refusal::Refusal;

#[cfg(feature = "tower")]
pub use layer::{GuardLayer, GuardService};
