//! Black-box tests of the HTTP API: real servers on port 0, a real database (PostgreSQL when
//! FLEXAUTH_TEST_POSTGRES_URL is set, else SQLite) and a real SMTP server in-process.

// Test support code outside #[test] functions may unwrap: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod abuse;
mod api_keys;
mod bad_input;
mod browser;
mod check;
mod connections;
mod error_codes;
mod failover;
mod fast_paths;
mod first_day;
mod gateways;
mod guard;
mod introspection;
mod keys;
mod lifecycle;
mod mail;
mod mfa;
mod operations;
mod pages;
mod passkeys;
mod passwords;
mod resource_server;
mod revocation;
mod scale_out;
mod secrets_at_rest;
mod session_management;
mod sessions;
mod signup;
mod statements;
mod takeover;
mod tokens;
mod webhooks;
