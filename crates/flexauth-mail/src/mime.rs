//! Reading what lettre wrote, as a mail client would, with `mail-parser`: headers unfolded and
//! their encoded words decoded, and each body part decoded from its transfer encoding.
//!
//! lettre encodes each body part itself (see `message::build_message`): the verification
//! email's lines are longer than 76 characters, so its parts come out quoted-printable, which
//! breaks the link with soft line breaks (`=\r\n`) and writes each `=` of the query as `=3D`;
//! a body made mostly of non-ASCII text would come out base64. Tests must decode both to see
//! the link as a person would.

use mail_parser::{Addr, Address, HeaderValue, MessageParser};

/// The first header called `name` (case-insensitive), unfolded and with encoded words
/// decoded, written the way it reads: `Ann <ann@example.com>` for an address, `<id@host>` for
/// a message id, `type/subtype; name="value"` for a content type.
pub(crate) fn header(data: &str, name: &str) -> Option<String> {
    let message = MessageParser::default().parse(data.as_bytes())?;
    let value = message.header(name)?;
    let is_id = ["message-id", "in-reply-to", "references"].iter().any(|id| id.eq_ignore_ascii_case(name));
    Some(match value {
        HeaderValue::Text(text) if is_id => format!("<{text}>"),
        HeaderValue::TextList(ids) if is_id => ids.iter().map(|id| format!("<{id}>")).collect::<Vec<_>>().join(" "),
        HeaderValue::Text(text) => text.to_string(),
        HeaderValue::TextList(texts) => texts.join(", "),
        HeaderValue::Address(address) => addresses(address),
        HeaderValue::ContentType(content_type) => {
            let mut text = content_type.ctype().to_owned();
            if let Some(subtype) = content_type.subtype() {
                text = format!("{text}/{subtype}");
            }
            for attribute in content_type.attributes().unwrap_or_default() {
                text.push_str(&format!("; {}=\"{}\"", attribute.name, attribute.value));
            }
            text
        }
        HeaderValue::DateTime(instant) => instant.to_rfc822(),
        HeaderValue::Received(_) | HeaderValue::Empty => message.header_raw(name)?.trim().to_owned(),
    })
}

fn addresses(address: &Address<'_>) -> String {
    let one = |addr: &Addr<'_>| match (addr.name(), addr.address()) {
        (Some(name), Some(email)) => format!("{name} <{email}>"),
        (None, Some(email)) => email.to_owned(),
        (Some(name), None) => name.to_owned(),
        (None, None) => String::new(),
    };
    address.iter().map(one).collect::<Vec<_>>().join(", ")
}

/// The first `http://` or `https://` link a reader would see: plain-text parts are searched
/// before the others, because an HTML part writes `&` as `&amp;`.
pub(crate) fn first_link(data: &str) -> Option<String> {
    let message = MessageParser::default().parse(data.as_bytes())?;
    let plain = message.parts.iter().filter(|part| part.is_text() && !part.is_text_html());
    let other = message.parts.iter().filter(|part| part.is_text_html());
    plain.chain(other).find_map(|part| part.text_contents().and_then(crate::link::first_link).map(str::to_owned))
}

/// The plain-text parts of the message, decoded and joined, as a reader of plain text sees it.
pub(crate) fn plain_text(data: &str) -> String {
    MessageParser::default()
        .parse(data.as_bytes())
        .map(|message| {
            let parts = message.parts.iter().filter(|part| part.is_text() && !part.is_text_html());
            parts.filter_map(|part| part.text_contents()).collect::<Vec<_>>().join("\n")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

    #[test]
    fn quoted_printable_soft_breaks_and_escapes_are_undone() {
        let data = "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
            see https://a.example/verify?token=3DabcdefghijklmnopqrstuvwxyzABCDEFGHIJKL=\r\nMNOPQ-_ now\r\n";
        assert_eq!(
            first_link(data).as_deref(),
            Some("https://a.example/verify?token=abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ-_")
        );
    }

    #[test]
    fn encoded_words_are_decoded() {
        let data = "Subject: =?utf-8?b?VsOpcmlmaWV6?= =?utf-8?q?_l=E2=80=99adresse?= now\r\n\r\nbody\r\n";
        assert_eq!(header(data, "Subject").as_deref(), Some("Vérifiez l’adresse now"));
    }

    #[test]
    fn finds_the_link_in_a_base64_part_of_a_multipart_message() {
        let text = STANDARD.encode("Öffnen Sie https://a.example/v?token=xyz bitte");
        let data = format!(
            "Subject: x\r\nMessage-ID: <m1@flexauth>\r\nFrom: flexauth <no-reply@localhost>\r\n\
                Content-Type: multipart/alternative;\r\n boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: \
                text/html\r\n\r\n<a href=\"https://html.example/\">x</a>\r\n--b1\r\nContent-Type: text/plain; \
                charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{text}\r\n--b1--\r\n"
        );
        assert_eq!(first_link(&data).as_deref(), Some("https://a.example/v?token=xyz"));
        assert_eq!(header(&data, "subject").as_deref(), Some("x"));
        assert_eq!(header(&data, "Message-ID").as_deref(), Some("<m1@flexauth>"));
        assert_eq!(header(&data, "From").as_deref(), Some("flexauth <no-reply@localhost>"));
        assert_eq!(header(&data, "content-type").as_deref(), Some("multipart/alternative; boundary=\"b1\""));
    }
}
