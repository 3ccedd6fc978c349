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
pub mod middleware;
pub mod request_id;
pub mod routes;
pub mod services;
pub mod startup;
pub mod state;
pub mod system;
pub mod worker;

/// The floors check of the domain, shared by including its file.
#[cfg(test)]
#[path = "../../flexauth-domain/src/floors.rs"]
mod floors;

/// The floors of the server, lowest first, as the domain has them: a module may name a module
/// on a lower floor, never one on its own floor or above, so the files form layers with no
/// import loop.
#[cfg(test)]
mod floor_plan {
    const FLOORS: &[&[&str]] = &[
        &["system", "client", "body_deadline", "request_id", "browser"],
        &["config", "connections"],
        &["error"],
        &["metrics"],
        &["state", "worker"],
        &["auth", "middleware"],
        &["routes", "services"],
        &["startup"],
        &["admin"],
    ];

    #[test]
    fn every_file_names_only_modules_on_lower_floors() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let upward = super::floors::upward_imports(&root, FLOORS, &["lib", "main"], 30);
        assert!(upward.is_empty(), "imports that do not point down: {upward:#?}");
    }
}
