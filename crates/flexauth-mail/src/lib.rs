//! flexauth's mail adapter: the implementations of the domain's [`MailTransport`] and
//! [`EmailWriter`] ports.
//!
//! [`EmailTemplates`] writes the emails from Jinja templates, built in or the operator's own.
//! [`SmtpMailer`] hands messages to an SMTP relay through lettre; [`FileMailer`] writes them
//! as `.eml` files for development. Both build the same multipart/alternative message from an
//! [`OutgoingEmail`], whose id becomes the `Message-ID`, and both map every failure to the
//! port's [`SendError`] in exactly one place. Behind the `test-smtp` feature, `test_smtp`
//! offers a small in-process SMTP server for black-box tests. This crate depends on the domain
//! and never the other way round; it must not depend on the web server, the store or any other
//! adapter, and it never logs a full recipient address or a message body (the file transport's
//! development link is the one documented exception).
//!
//! [`MailTransport`]: flexauth_domain::mail::MailTransport
//! [`EmailWriter`]: flexauth_domain::mail::EmailWriter
//! [`OutgoingEmail`]: flexauth_domain::mail::OutgoingEmail
//! [`SendError`]: flexauth_domain::mail::SendError

mod error;
mod file;
mod link;
mod message;
mod smtp;
mod templates;

#[cfg(any(test, feature = "test-smtp"))]
mod mime;

#[cfg(test)]
mod test_log;

#[cfg(feature = "test-smtp")]
pub mod test_smtp;

pub use error::MailConfigError;
pub use file::FileMailer;
pub use smtp::{SmtpMailer, SEND_DEADLINE, SMTP_TIMEOUT};
pub use templates::{EmailTemplates, TemplateError};
