//! The `flexauth` binary: `flexauth` (or `flexauth serve`) serves, `flexauth migrate` only
//! migrates, `flexauth accounts …`, `keys …` and `clients …` administer accounts, signing keys
//! and the resource servers that introspect.

use std::process::ExitCode;

use clap::Parser as _;
use flexauth_server::config::{Cli, Command, LogFormat};
use flexauth_server::startup::{self, Application};
use tracing_subscriber::EnvFilter;

/// Logs go to stdout when serving; an operator's command prints its JSON there, so its log
/// lines go to stderr.
fn init_tracing(format: LogFormat, to_stderr: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: in a file or a pipe, escape codes would break
    // `grep`, and NO_COLOR (https://no-color.org) turns them off anywhere.
    let terminal = if to_stderr {
        std::io::IsTerminal::is_terminal(&std::io::stderr())
    } else {
        std::io::IsTerminal::is_terminal(&std::io::stdout())
    };
    let colours = terminal && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true).with_ansi(colours);
    match (format, to_stderr) {
        (LogFormat::Text, false) => builder.init(),
        (LogFormat::Text, true) => builder.with_writer(std::io::stderr).init(),
        (LogFormat::Json, false) => builder.json().flatten_event(true).init(),
        (LogFormat::Json, true) => builder.json().flatten_event(true).with_writer(std::io::stderr).init(),
    }
}

/// Writes `text` and a line end on standard output. A reader that stopped early
/// (`flexauth openapi | head`) closed the pipe: that is no failure of the command, and
/// `println!` would panic on it.
fn print_out(text: &str) -> ExitCode {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flexauth: cannot write to standard output: {error}");
            ExitCode::FAILURE
        }
    }
}

/// An operator's command: its JSON on stdout, or its one-line error on stderr.
fn printed(outcome: Result<String, flexauth_server::admin::AdminCommandError>) -> ExitCode {
    match outcome {
        Ok(output) => print_out(&output),
        Err(error) => {
            eprintln!("flexauth: {}", one_line(&error.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// libpq and others write multi-line messages; the operator gets one line.
fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|part| !part.is_empty()).collect::<Vec<_>>().join(" ")
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => match flexauth_server::config::explain(&error) {
            // A setting that does not parse: one line naming it, as for those checked later.
            Some(line) => {
                eprintln!("flexauth: {line}");
                return ExitCode::from(2);
            }
            // Help, the version, an unknown flag: clap's own answer and status.
            None => error.exit(),
        },
    };
    if cli.command == Some(Command::Openapi) {
        // The document needs no configuration, so that it can be written on any machine.
        return print_out(flexauth_server::routes::openapi_document());
    }
    let settings = match cli.config.resolve() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("flexauth: {error}");
            return ExitCode::from(2);
        }
    };
    init_tracing(
        settings.log_format,
        matches!(
            cli.command,
            Some(
                Command::Accounts { .. }
                    | Command::Keys { .. }
                    | Command::Clients { .. }
                    | Command::EmailTemplates { .. }
                    | Command::Webhooks { .. }
            )
        ),
    );
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi => Ok(()),
        Command::Migrate => startup::migrate_for_command(&settings).await.map(|_| ()),
        Command::Keys { command } => return printed(flexauth_server::admin::run_keys(&settings, &command).await),
        Command::Accounts { command } => {
            return printed(flexauth_server::admin::run_accounts(&settings, &command).await)
        }
        Command::Clients { command } => return printed(flexauth_server::admin::run_clients(&settings, &command).await),
        Command::EmailTemplates { command } => {
            return printed(flexauth_server::admin::run_email_templates(&settings, &command))
        }
        Command::Webhooks { command } => {
            return printed(flexauth_server::admin::run_webhooks(&settings, &command).await)
        }
        Command::Serve => match Application::build(&settings).await {
            Ok(app) => app.run_until_stopped().await.map_err(startup::StartupError::Serve),
            Err(error) => Err(error),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let line = one_line(&error.to_string());
            tracing::error!("{line}");
            eprintln!("flexauth: {line}");
            ExitCode::FAILURE
        }
    }
}
