//! Just enough MIME reading to check what lettre wrote: headers (unfolded, RFC 2047 encoded
//! words decoded), multipart bodies, and the quoted-printable and base64 transfer encodings.
//!
//! lettre encodes each body part itself (see `message::build_message`): the verification
//! email's lines are longer than 76 characters, so its parts come out quoted-printable, which
//! breaks the link with soft line breaks (`=\r\n`) and writes each `=` of the query as `=3D`;
//! a body made mostly of non-ASCII text would come out base64. Tests must decode both to see
//! the link as a person would.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// One header line, already unfolded.
struct Header {
    name: String,
    value: String,
}

/// The first header called `name` (case-insensitive), unfolded and with encoded words
/// decoded.
pub(crate) fn header(data: &str, name: &str) -> Option<String> {
    let (headers, _) = split(data);
    headers.into_iter().find(|header| header.name.eq_ignore_ascii_case(name)).map(|header| decode_words(&header.value))
}

/// The first `http://` or `https://` link a reader would see: plain-text parts are searched
/// before the others, because an HTML part writes `&` as `&amp;`.
pub(crate) fn first_link(data: &str) -> Option<String> {
    let mut leaves = Vec::new();
    collect_leaves(data, &mut leaves);
    let (plain, other): (Vec<_>, Vec<_>) =
        leaves.into_iter().partition(|(content_type, _)| content_type.starts_with("text/plain"));
    plain.iter().chain(other.iter()).find_map(|(_, text)| crate::link::first_link(text).map(str::to_owned))
}

/// Splits an entity into its headers and its body. An entity without headers starts with the
/// empty line.
fn split(data: &str) -> (Vec<Header>, &str) {
    let (head, body) = if let Some(body) = data.strip_prefix("\r\n").or_else(|| data.strip_prefix('\n')) {
        ("", body)
    } else if let Some(index) = data.find("\r\n\r\n") {
        (&data[..index], &data[index + 4..])
    } else if let Some(index) = data.find("\n\n") {
        (&data[..index], &data[index + 2..])
    } else {
        (data, "")
    };
    let mut headers: Vec<Header> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            // A folded line continues the previous header; unfolding removes only the line
            // break (RFC 5322, section 2.2.3).
            if let Some(last) = headers.last_mut() {
                last.value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push(Header { name: name.trim().to_owned(), value: value.trim_start().to_owned() });
        }
    }
    for header in &mut headers {
        header.value = header.value.trim().to_owned();
    }
    (headers, body)
}

fn find<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers.iter().find(|header| header.name.eq_ignore_ascii_case(name)).map(|header| header.value.as_str())
}

/// Walks the entity tree and collects each single part as (lower-case content type, decoded
/// text).
fn collect_leaves(data: &str, leaves: &mut Vec<(String, String)>) {
    let (headers, body) = split(data);
    let content_type = find(&headers, "Content-Type").unwrap_or("text/plain").to_ascii_lowercase();
    if content_type.starts_with("multipart/") {
        if let Some(boundary) = find(&headers, "Content-Type").and_then(boundary) {
            for part in parts(body, &boundary) {
                collect_leaves(&part, leaves);
            }
            return;
        }
    }
    let encoding = find(&headers, "Content-Transfer-Encoding").unwrap_or("7bit").to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(body, false),
        "base64" => {
            let compact: String = body.chars().filter(|character| !character.is_ascii_whitespace()).collect();
            STANDARD.decode(compact).unwrap_or_else(|_| body.as_bytes().to_vec())
        }
        _ => body.as_bytes().to_vec(),
    };
    leaves.push((content_type, String::from_utf8_lossy(&bytes).into_owned()));
}

/// The `boundary` parameter of a multipart content type, quoted or not. Parameter names are
/// case-insensitive, the value is not.
fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        name.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// The body parts between the `--boundary` delimiter lines, without the line break that
/// belongs to each delimiter (RFC 2046, section 5.1.1).
fn parts(body: &str, boundary: &str) -> Vec<String> {
    let delimiter = format!("--{boundary}");
    let closing = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let bare = line.trim_end();
        if bare == closing {
            parts.extend(current.take().map(|lines| lines.join("\r\n")));
            break;
        }
        if bare == delimiter {
            parts.extend(current.replace(Vec::new()).map(|lines| lines.join("\r\n")));
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    parts
}

/// Decodes quoted-printable text: `=XX` becomes the byte XX and a soft line break (`=` at a
/// line's end) disappears. With `underscore_is_space`, `_` stands for a space, as in the "Q"
/// encoded words of headers (RFC 2047, section 4.2).
fn decode_quoted_printable(text: &str, underscore_is_space: bool) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'=' {
            let rest = bytes.get(index + 1..).unwrap_or_default();
            if rest.starts_with(b"\r\n") {
                index += 3;
                continue;
            }
            if rest.starts_with(b"\n") {
                index += 2;
                continue;
            }
            if let Some(value) = rest
                .get(..2)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                decoded.push(value);
                index += 3;
                continue;
            }
        }
        decoded.push(if underscore_is_space && byte == b'_' { b' ' } else { byte });
        index += 1;
    }
    decoded
}

/// Decodes the RFC 2047 encoded words (`=?utf-8?b?…?=` or `=?utf-8?q?…?=`) in a header value.
/// White space between two encoded words is dropped, as the RFC says; other runs of white
/// space become one space, which is all the tests need.
fn decode_words(value: &str) -> String {
    let mut decoded = String::with_capacity(value.len());
    let mut previous_was_encoded = false;
    for (position, word) in value.split_whitespace().enumerate() {
        let encoded = decode_word(word);
        if position > 0 && !(previous_was_encoded && encoded.is_some()) {
            decoded.push(' ');
        }
        previous_was_encoded = encoded.is_some();
        decoded.push_str(encoded.as_deref().unwrap_or(word));
    }
    decoded
}

fn decode_word(word: &str) -> Option<String> {
    let inner = word.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut fields = inner.splitn(3, '?');
    let _charset = fields.next()?;
    let encoding = fields.next()?;
    let text = fields.next()?;
    let bytes = match encoding {
        "b" | "B" => STANDARD.decode(text).ok()?,
        "q" | "Q" => decode_quoted_printable(text, true),
        _ => return None,
    };
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_soft_breaks_and_escapes_are_undone() {
        let encoded = "see https://a.example/verify?token=3DabcdefghijklmnopqrstuvwxyzABCDEFGHIJKL=\r\nMNOPQ-_ now\r\n";
        assert_eq!(
            String::from_utf8(decode_quoted_printable(encoded, false)).unwrap(),
            "see https://a.example/verify?token=abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ-_ now\r\n"
        );
    }

    #[test]
    fn encoded_words_are_decoded() {
        assert_eq!(
            decode_words("=?utf-8?b?VsOpcmlmaWV6?= =?utf-8?q?_l=E2=80=99adresse?= now"),
            "Vérifiez l’adresse now"
        );
        assert_eq!(decode_words("Plain   subject"), "Plain subject");
    }

    #[test]
    fn finds_the_link_in_a_base64_part_of_a_multipart_message() {
        let text = STANDARD.encode("Öffnen Sie https://a.example/v?token=xyz bitte");
        let data = format!(
            "Subject: x\r\nContent-Type: multipart/alternative;\r\n boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: \
                text/html\r\n\r\n<a href=\"https://html.example/\">x</a>\r\n--b1\r\nContent-Type: text/plain; \
                    charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{text}\r\n--b1--\r\n"
        );
        assert_eq!(first_link(&data).as_deref(), Some("https://a.example/v?token=xyz"));
        assert_eq!(header(&data, "subject").as_deref(), Some("x"));
        assert_eq!(header(&data, "content-type").as_deref(), Some("multipart/alternative; boundary=\"b1\""));
    }
}
