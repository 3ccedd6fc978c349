//! The production transport: an SMTP relay reached through lettre.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use flexauth_domain::mail::{MailTransport, OutgoingEmail, SendError};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use url::Url;

use crate::error::{parse_from, MailConfigError};
use crate::message::build_message;

/// How long lettre waits for the connection and for each SMTP reply. The delivery worker's
/// lease must be longer, so that a slow send finishes before another worker may take the entry.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The most one whole send may take, all SMTP steps together. The delivery worker's lease
/// covers a batch of sends, so it must exceed the batch size times this deadline.
pub const SEND_DEADLINE: Duration = Duration::from_secs(60);

/// The longest failure reason kept; a chatty server's multi-line reply is cut here so that the
/// outbox column and the log line stay readable.
const MAX_REASON_LEN: usize = 500;

/// Delivers email through an SMTP server.
///
/// Each send opens its own connection and closes it afterwards (lettre's `pool` feature is
/// off), so a server that restarted between two sends never leaves a broken pooled connection
/// behind: the next send simply connects again.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// `host:port`, for logs and `Debug`; the URL itself may hold a password.
    server: String,
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // lettre's transport would print the credentials, so only the server and sender show.
        f.debug_struct("SmtpMailer")
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// Builds a mailer for the server at `url` that sends as `from`.
    ///
    /// `url` follows lettre's connection URL syntax: `smtp://host:port` (plain text, port 25 by
    /// default), `smtp://host:port?tls=required` or `?tls=opportunistic` (STARTTLS, port 587 by
    /// default), `smtps://host:port` (TLS from the start, port 465 by default), each with an
    /// optional percent-encoded `user:password@` and an optional path naming the EHLO host.
    /// `from` is a mailbox such as `flexauth <no-reply@example.com>`. Connecting and every SMTP
    /// command time out after [`SMTP_TIMEOUT`]. Nothing is contacted until the first send.
    ///
    /// # Errors
    /// [`MailConfigError::InvalidUrl`], [`MailConfigError::MissingHost`],
    /// [`MailConfigError::UnsupportedScheme`], [`MailConfigError::UnsupportedTls`],
    /// [`MailConfigError::MissingPassword`] or [`MailConfigError::Transport`] when `url` is not
    /// usable, and [`MailConfigError::InvalidFrom`] when `from` is not a mailbox. None of them
    /// repeats the password.
    pub fn new(url: &str, from: &str) -> Result<Self, MailConfigError> {
        let server = check_url(url)?;
        let from = parse_from(from)?;
        // lettre parses the URL once more; the check above exists to name what is wrong in
        // our own terms, and what it accepts lettre accepts too.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|error| MailConfigError::Transport { reason: error.to_string() })?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(Self { transport, from, server })
    }
}

/// Validates what lettre's `from_url` would otherwise reject with a generic message (or, for a
/// user without a password, silently ignore) and returns `host:port` for logs.
fn check_url(url: &str) -> Result<String, MailConfigError> {
    let parsed = Url::parse(url.trim()).map_err(|reason| MailConfigError::InvalidUrl { reason })?;
    // The scheme first: `mail.example.com:587` parses with the scheme `mail.example.com` and
    // no host, and the missing scheme is what to tell.
    if !matches!(parsed.scheme(), "smtp" | "smtps") {
        return Err(MailConfigError::UnsupportedScheme { scheme: parsed.scheme().to_owned() });
    }
    let host = parsed.host_str().filter(|host| !host.is_empty()).ok_or(MailConfigError::MissingHost)?;
    let tls = parsed.query_pairs().find(|(key, _)| key == "tls").map(|(_, value)| value.into_owned());
    // The default ports are lettre's: 25 for plain SMTP, 587 for STARTTLS, 465 for SMTPS.
    let default_port = match (parsed.scheme(), tls.as_deref()) {
        ("smtp", None) => 25,
        ("smtp", Some("required" | "opportunistic")) => 587,
        ("smtp", Some(other)) => return Err(MailConfigError::UnsupportedTls { value: other.to_owned() }),
        ("smtps", _) => 465,
        (other, _) => return Err(MailConfigError::UnsupportedScheme { scheme: other.to_owned() }),
    };
    if !parsed.username().is_empty() && parsed.password().is_none() {
        return Err(MailConfigError::MissingPassword);
    }
    Ok(format!("{host}:{}", parsed.port().unwrap_or(default_port)))
}

/// The one place where lettre's errors become the port's: a 5xx reply will be refused again,
/// anything else (no connection, a timeout, a 4xx reply, a TLS failure, a garbled reply) may
/// well succeed later.
///
/// The reason is lettre's description: the error kind, the reply code and the server's reply
/// text, or the I/O error. None of these contains the message, whose bodies hold secrets.
fn classify(error: &lettre::transport::smtp::Error) -> SendError {
    let mut reason = error.to_string();
    if reason.len() > MAX_REASON_LEN {
        let mut end = MAX_REASON_LEN;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    if error.is_permanent() {
        SendError::Permanent(reason)
    } else {
        SendError::Transient(reason)
    }
}

#[async_trait]
impl MailTransport for SmtpMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
        let message_id = email.id();
        let kind = email.kind().as_str();
        // The domain stands in for the address: it tells which provider refuses mail without
        // putting personal data into the logs.
        let recipient_domain = email.to().domain();
        let message = build_message(&self.from, email).inspect_err(|error| {
            tracing::error!(%message_id, kind, recipient_domain, %error, "email cannot be built");
        })?;
        let outcome = match tokio::time::timeout(SEND_DEADLINE, self.transport.send(message)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::warn!(%message_id, kind, recipient_domain, server = %self.server, "email not delivered: \
                    the send took longer than its deadline");
                return Err(SendError::Transient(format!(
                    "the SMTP exchange took longer than {} s",
                    SEND_DEADLINE.as_secs()
                )));
            }
        };
        match outcome {
            Ok(_) => {
                tracing::info!(%message_id, kind, recipient_domain, server = %self.server, "email handed to the \
                    SMTP server");
                Ok(())
            }
            Err(error) => {
                let failure = classify(&error);
                tracing::warn!(%message_id, kind, recipient_domain, server = %self.server, error = %failure, "email not delivered");
                Err(failure)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: &str = "flexauth <no-reply@localhost>";

    #[test]
    fn accepts_the_url_forms_lettre_supports() {
        for url in [
            "smtp://localhost:1025",
            "smtp://localhost",
            "smtp://mail.example.com:587?tls=required",
            "smtp://mail.example.com?tls=opportunistic",
            "smtps://user:p%40ss@mail.example.com",
            "smtps://user:secret@mail.example.com:465/ehlo.example.com",
        ] {
            assert!(SmtpMailer::new(url, FROM).is_ok(), "{url}");
        }
    }

    #[test]
    fn default_ports_follow_the_scheme() {
        assert_eq!(check_url("smtp://mx.example").unwrap(), "mx.example:25");
        assert_eq!(check_url("smtp://mx.example?tls=required").unwrap(), "mx.example:587");
        assert_eq!(check_url("smtps://mx.example").unwrap(), "mx.example:465");
        assert_eq!(check_url("smtps://mx.example:2465").unwrap(), "mx.example:2465");
    }

    /// Builds a mailer from `url`, expecting a refusal that does not repeat the password.
    fn refused(url: &str) -> MailConfigError {
        let error = SmtpMailer::new(url, FROM).unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(!format!("{error:?}").contains("hunter2"), "{error:?}");
        error
    }

    #[test]
    fn refuses_bad_urls_by_name_without_repeating_the_password() {
        assert!(matches!(refused("not a url"), MailConfigError::InvalidUrl { .. }));
        assert!(matches!(refused("smtp://user:hunter2@mx.example:99999"), MailConfigError::InvalidUrl { .. }));
        assert!(matches!(
            refused("smtp://user:hunter2@:25"),
            MailConfigError::InvalidUrl { .. } | MailConfigError::MissingHost
        ));
        assert!(
            matches!(refused("http://user:hunter2@mx.example"), MailConfigError::UnsupportedScheme { scheme } if scheme == "http")
        );
        assert!(
            matches!(refused("smtp://user:hunter2@mx.example?tls=always"), MailConfigError::UnsupportedTls { value } if value == "always")
        );
        assert!(matches!(refused("smtp://user@mx.example"), MailConfigError::MissingPassword));
    }

    #[test]
    fn a_url_without_its_scheme_is_told_to_begin_with_smtp() {
        let error = refused("mail.example.com:587");
        assert_eq!(
            error.to_string(),
            "the SMTP URL must begin with smtp:// or smtps:// (as in smtp://mail.example.com:587?tls=required), not \
                `mail.example.com:`"
        );
    }

    #[test]
    fn refuses_a_sender_that_is_not_a_mailbox_and_shows_the_form() {
        let error = SmtpMailer::new("smtp://localhost", "no-reply").unwrap_err();
        assert!(matches!(error, MailConfigError::InvalidFrom { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.starts_with(
                "the sender `no-reply` is not a mailbox such as `flexauth <no-reply@example.com>` or `no-reply@example.com`"
            ),
            "{message}"
        );
    }

    #[test]
    fn debug_output_hides_the_credentials() {
        let mailer = SmtpMailer::new("smtps://user:hunter2@mx.example", FROM).unwrap();
        let debug = format!("{mailer:?}");
        assert!(debug.contains("mx.example:465"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}

/// Delivery over real TCP to the in-process SMTP server; run with `--features test-smtp` (or
/// `--all-features`).
#[cfg(test)]
#[cfg(feature = "test-smtp")]
mod sink_tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use flexauth_domain::account::EmailAddress;
    use flexauth_domain::mail::{Letter, LinkPage};
    use flexauth_domain::secret::LinkToken;
    use uuid::Uuid;

    use super::*;
    use crate::test_log;
    use crate::test_smtp::SmtpSink;

    const FROM: &str = "flexauth <no-reply@localhost>";
    const TOKEN: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE";
    const PUBLIC_URL: &str = "http://localhost:8080";

    fn verification(id: u128) -> OutgoingEmail {
        let token = LinkToken::parse(TOKEN).unwrap();
        let to = EmailAddress::parse("Ann@Example.com").unwrap();
        let letters = crate::templates::test_letters(PUBLIC_URL);
        let letter =
            Letter::Verification { link: letters.link(LinkPage::Verify, &token), valid_for: time::Duration::hours(24) };
        letters.email(Uuid::from_u128(id), to, &letter)
    }

    fn link() -> String {
        format!("{PUBLIC_URL}/v1/auth/verify?token={TOKEN}")
    }

    /// An address where nothing listens: bound once to get a free port, then released.
    async fn closed_port() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        addr
    }

    #[tokio::test]
    async fn delivers_a_multipart_message_whose_link_survives_the_encoding() {
        let sink = SmtpSink::start().await.unwrap();
        let mailer = SmtpMailer::new(&sink.url(), FROM).unwrap();
        let email = verification(1);

        mailer.send(&email).await.unwrap();

        let messages = sink.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(messages.len(), 1);
        let message = &messages[0];
        assert_eq!(message.mail_from, "no-reply@localhost");
        assert_eq!(message.rcpt_to, vec!["ann@example.com".to_owned()]);
        assert_eq!(message.subject().as_deref(), Some("Verify your email address"));
        assert_eq!(message.message_id(), Some(format!("<{}@flexauth>", email.id())));
        assert_eq!(message.header("From").as_deref(), Some("flexauth <no-reply@localhost>"));
        assert!(message.header("Content-Type").unwrap().starts_with("multipart/alternative"));
        assert_eq!(message.first_link(), Some(link()));
        // What lettre does with the template's long lines, and why `first_link` decodes: the
        // raw data holds the link only in pieces.
        assert!(message.data.contains("Content-Transfer-Encoding: quoted-printable"), "{}", message.data);
        assert!(!message.data.contains(&link()));
    }

    #[tokio::test]
    async fn logs_name_the_message_and_the_domain_but_neither_address_nor_link() {
        let sink = SmtpSink::start().await.unwrap();
        let mailer = SmtpMailer::new(&sink.url(), FROM).unwrap();
        let email = verification(4);

        let (logs, guard) = test_log::capture();
        mailer.send(&email).await.unwrap();
        sink.reject_recipients(Some(550));
        mailer.send(&email).await.unwrap_err();
        drop(guard);

        let logs = logs.text();
        assert!(logs.contains(&email.id().to_string()), "{logs}");
        assert!(logs.contains("verification"), "{logs}");
        assert!(logs.contains("example.com"), "{logs}");
        assert!(!logs.contains("ann@"), "{logs}");
        assert!(!logs.contains(TOKEN), "{logs}");
    }

    #[tokio::test]
    async fn every_send_uses_a_fresh_connection_so_a_restarted_server_is_used_again() {
        let sink = SmtpSink::start().await.unwrap();
        let addr = sink.addr();
        let mailer = SmtpMailer::new(&sink.url(), FROM).unwrap();
        mailer.send(&verification(1)).await.unwrap();

        sink.stop();
        let error = mailer.send(&verification(2)).await.unwrap_err();
        assert!(matches!(error, SendError::Transient(_)), "{error:?}");

        let sink = SmtpSink::start_on(addr).await.unwrap();
        let to = EmailAddress::parse("bob@example.org").unwrap();
        let notice = crate::templates::test_letters(PUBLIC_URL).email(Uuid::from_u128(3), to, &Letter::AccountExists);
        mailer.send(&notice).await.unwrap();
        let messages = sink.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].subject().as_deref(), Some("You already have an account"));
        assert_eq!(messages[0].first_link().as_deref(), Some(PUBLIC_URL));
    }

    #[tokio::test]
    async fn nothing_listening_is_a_transient_failure_within_seconds() {
        let addr = closed_port().await;
        let mailer = SmtpMailer::new(&format!("smtp://{addr}"), FROM).unwrap();
        let started = Instant::now();

        let error = mailer.send(&verification(1)).await.unwrap_err();

        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let SendError::Transient(reason) = error else { panic!("expected a transient failure, got {error:?}") };
        assert!(!reason.contains(TOKEN), "{reason}");
    }

    #[tokio::test]
    async fn a_5xx_reply_is_permanent_and_a_4xx_reply_transient() {
        let sink = SmtpSink::start().await.unwrap();
        let mailer = SmtpMailer::new(&sink.url(), FROM).unwrap();

        sink.reject_recipients(Some(550));
        let error = mailer.send(&verification(1)).await.unwrap_err();
        let SendError::Permanent(reason) = &error else { panic!("expected a permanent failure, got {error:?}") };
        assert!(reason.contains("550"), "{reason}");
        assert!(!reason.contains(TOKEN), "{reason}");

        sink.reject_recipients(Some(450));
        let error = mailer.send(&verification(2)).await.unwrap_err();
        assert!(matches!(error, SendError::Transient(_)), "{error:?}");

        sink.reject_recipients(None);
        mailer.send(&verification(3)).await.unwrap();
        assert_eq!(sink.messages().len(), 1);
    }
}
