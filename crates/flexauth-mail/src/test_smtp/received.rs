use std::fmt;

use crate::mime;

/// One message the sink accepted, as the client sent it.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The envelope sender from `MAIL FROM`, without the angle brackets (empty for `<>`).
    pub mail_from: String,
    /// The envelope recipients from each accepted `RCPT TO`, without the angle brackets.
    pub rcpt_to: Vec<String>,
    /// The message as sent after `DATA`: headers and encoded body, CRLF line ends, dot-stuffing
    /// undone, without the terminating `.` line.
    pub data: String,
}

impl fmt::Debug for ReceivedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The data holds single-use links, so a failing assertion prints only what identifies
        // the message.
        f.debug_struct("ReceivedMessage")
            .field("mail_from", &self.mail_from)
            .field("rcpt_to", &self.rcpt_to)
            .field("message_id", &self.message_id())
            .field("subject", &self.subject())
            .field("data_len", &self.data.len())
            .finish()
    }
}

impl ReceivedMessage {
    /// The first header called `name` (case-insensitive), unfolded, with RFC 2047 encoded
    /// words decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        mime::header(&self.data, name)
    }

    /// The `Message-ID` header, angle brackets included (`<…@flexauth>`).
    pub fn message_id(&self) -> Option<String> {
        self.header("Message-ID")
    }

    /// The decoded `Subject` header.
    pub fn subject(&self) -> Option<String> {
        self.header("Subject")
    }

    /// The plain-text body, decoded from its transfer encoding.
    pub fn text(&self) -> String {
        mime::plain_text(&self.data)
    }

    /// The first `http://` or `https://` link in the message, whole: each body part is
    /// decoded from its transfer encoding first (lettre writes long lines as quoted-printable,
    /// splitting a link with `=` soft line breaks and writing its `=` as `=3D`, and mostly
    /// non-ASCII text as base64), and plain-text parts are searched before HTML ones.
    pub fn first_link(&self) -> Option<String> {
        mime::first_link(&self.data)
    }
}
