//! Serves the example API on `BIND` (127.0.0.1:3000), protected by the flexauth at
//! `FLEXAUTH_URL` (http://127.0.0.1:8080), with the introspection credentials of
//! `flexauth clients create` in `FLEXAUTH_CLIENT_ID` and `FLEXAUTH_CLIENT_SECRET` (without them,
//! API keys are refused).

use std::process::ExitCode;

use flexauth_guard::{Guard, GuardSettings};

#[tokio::main]
async fn main() -> ExitCode {
    let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let mut settings = GuardSettings::new(variable("FLEXAUTH_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into()));
    if let Some(audience) = variable("FLEXAUTH_AUDIENCE") {
        settings.audience = audience;
    }
    if let (Some(id), Some(secret)) = (variable("FLEXAUTH_CLIENT_ID"), variable("FLEXAUTH_CLIENT_SECRET")) {
        settings = settings.with_client(id, secret);
    }
    let bind = variable("BIND").unwrap_or_else(|| "127.0.0.1:3000".into());
    let guard = match Guard::new(settings) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("resource-server: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(&bind).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("resource-server: cannot listen on {bind}: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("resource-server: listening on http://{bind}");
    match flexauth_example_resource_server::serve(listener, guard).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("resource-server: {error}");
            ExitCode::FAILURE
        }
    }
}
