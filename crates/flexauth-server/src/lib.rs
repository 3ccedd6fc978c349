//! flexauth's server: reads the configuration, builds the adapters, and serves the `/v1`
//! HTTP API with actix-web. It holds no business rule: handlers parse HTTP into domain types,
//! call one domain service method, and map the result (errors in exactly one place,
//! [`error::ApiError`]). It is the only crate that knows about HTTP.

pub mod admin;
pub mod auth;
pub mod body_deadline;
pub mod browser;
pub mod client;
pub mod config;
pub mod connections;
pub mod error;
pub mod metrics;
pub mod request_id;
pub mod routes;
pub mod startup;
pub mod state;
pub mod system;
pub mod worker;
