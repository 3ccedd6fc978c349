//! Turns the domain's [`OutgoingEmail`] into a lettre [`Message`], the same way for every
//! transport.

use flexauth_domain::mail::{OutgoingEmail, SendError};
use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, Message};

/// The `Message-ID` of `email`: its id, so that a retry of the same outbox entry carries the
/// same identifier and a receiving server can recognise the duplicate.
pub(crate) fn message_id(email: &OutgoingEmail) -> String {
    format!("<{}@flexauth>", email.id())
}

/// Builds the multipart/alternative message (plain text first, then HTML, as RFC 2046 wants
/// the preferred form last).
///
/// lettre picks each part's transfer encoding itself: 7bit for short ASCII lines, otherwise
/// quoted-printable, or base64 when more than a third of the bytes would need escaping.
///
/// Both failures are permanent: the same email would fail the same way on every retry.
pub(crate) fn build_message(from: &Mailbox, email: &OutgoingEmail) -> Result<Message, SendError> {
    // The error names neither the address nor the bodies: the reason ends up in the outbox,
    // which operators read.
    let address: Address =
        email.to().as_str().parse().map_err(|_| {
            SendError::Permanent("the recipient address is not accepted by the mail library".to_owned())
        })?;
    Message::builder()
        .message_id(Some(message_id(email)))
        .from(from.clone())
        .to(Mailbox::new(None, address))
        .subject(email.subject())
        .multipart(MultiPart::alternative_plain_html(email.text_body().to_owned(), email.html_body().to_owned()))
        .map_err(|error| SendError::Permanent(format!("the message cannot be built: {error}")))
}
