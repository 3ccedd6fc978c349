//! flexauth's business rules and the ports they need.
//!
//! This crate decides who may sign up, log in and refresh, when a refresh token counts as
//! reused, what expires when and how an email is retried. It performs no I/O of its own: every
//! effect goes through a port trait (storage, password hashing, token signing, mail transport,
//! clock, randomness) that an adapter crate implements. It must never depend on a web
//! framework, a database driver, an async runtime, a mail library, a JWT library or a password
//! hashing backend, so that services embedding it can supply their own adapters and unit-test
//! the rules against the `mocks` feature's mockall mocks.

pub mod account;
pub mod api_key;
pub mod audit;
pub mod bearer;
pub mod housekeeping;
pub mod lifecycle;
pub mod limits;
pub mod mail;
pub mod principal;
pub mod runtime;
pub mod secret;
pub mod session;
pub mod usage;

mod error;

pub use error::InfraError;
