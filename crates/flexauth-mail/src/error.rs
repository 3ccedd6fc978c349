use std::path::PathBuf;

/// Why a mail transport could not be built from its configuration.
///
/// Each message is complete on its own, because startup prints it as the reason the server
/// refuses to start; no variant carries a `source`, so a printed cause chain never repeats it.
/// No message contains the SMTP password: the URL is never echoed back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailConfigError {
    /// The SMTP URL does not parse as a URL.
    #[error("the SMTP URL is not a valid URL: {reason}")]
    InvalidUrl {
        /// What the URL parser objected to; it never quotes the input.
        reason: url::ParseError,
    },
    /// The SMTP URL has no host name.
    #[error("the SMTP URL names no host")]
    MissingHost,
    /// The SMTP URL's scheme is neither `smtp` nor `smtps` (or it has none, as in
    /// `mail.example.com:587`, which reads as the scheme `mail.example.com`).
    #[error(
        "the SMTP URL must begin with smtp:// or smtps:// (as in smtp://mail.example.com:587?tls=required), \
        not `{scheme}:`"
    )]
    UnsupportedScheme {
        /// The scheme that was given.
        scheme: String,
    },
    /// The SMTP URL's `tls` query parameter has a value lettre does not know.
    #[error("the SMTP URL parameter tls=`{value}` is not supported; use tls=required or tls=opportunistic")]
    UnsupportedTls {
        /// The value that was given.
        value: String,
    },
    /// The SMTP URL has a user name but no password, which lettre would silently ignore.
    #[error("the SMTP URL gives a user name but no password; write smtp://user:password@host")]
    MissingPassword,
    /// lettre refused the SMTP settings (for example the TLS setup or a password that is not
    /// valid percent-encoded UTF-8).
    #[error("the SMTP settings were refused by the mail library: {reason}")]
    Transport {
        /// lettre's explanation, which does not include the URL.
        reason: String,
    },
    /// The sender mailbox (`FLEXAUTH_MAIL_FROM`) is not of the form `Name <address>` or
    /// `address`.
    #[error(
        "the sender `{from}` is not a mailbox such as `flexauth <no-reply@example.com>` or \
        `no-reply@example.com`: {reason}"
    )]
    InvalidFrom {
        /// The sender as given (an address, never a secret).
        from: String,
        /// What lettre's address parser objected to.
        reason: lettre::address::AddressError,
    },
    /// The directory the file transport writes to cannot be created.
    #[error("the mail directory {} cannot be created: {reason}", path.display())]
    MailDirectory {
        /// The directory.
        path: PathBuf,
        /// The file system's error.
        reason: std::io::Error,
    },
}

/// Parses the configured sender mailbox, shared by both transports.
pub(crate) fn parse_from(from: &str) -> Result<lettre::message::Mailbox, MailConfigError> {
    from.trim().parse().map_err(|reason| MailConfigError::InvalidFrom { from: from.trim().to_owned(), reason })
}
