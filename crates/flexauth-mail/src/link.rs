//! Finding the link a person is meant to click in a message body.

/// Returns the first `http://` or `https://` URL in `text`.
///
/// The URL ends at white space, a quote or an angle bracket; trailing punctuation that prose
/// puts after a link (a full stop, a comma, a closing parenthesis) is not part of it.
pub(crate) fn first_link(text: &str) -> Option<&str> {
    let start = [text.find("http://"), text.find("https://")].into_iter().flatten().min()?;
    let rest = text.get(start..)?;
    let end = rest
        .find(|character: char| character.is_whitespace() || matches!(character, '"' | '\'' | '<' | '>'))
        .unwrap_or(rest.len());
    let link = rest.get(..end)?.trim_end_matches(['.', ',', ';', ':', '!', '?', ')']);
    Some(link)
}

#[cfg(test)]
mod tests {
    use super::first_link;

    #[test]
    fn first_link_takes_the_earliest_url_whole() {
        let text = "Open\n\nhttps://a.example/v1/verify?token=abc-_Z9\n\nor http://b.example";
        assert_eq!(first_link(text), Some("https://a.example/v1/verify?token=abc-_Z9"));
        assert_eq!(first_link("see http://b.example/x. Then https://a.example"), Some("http://b.example/x"));
        assert_eq!(first_link("<a href=\"https://a.example/p\">"), Some("https://a.example/p"));
    }

    #[test]
    fn first_link_is_none_without_a_url() {
        assert_eq!(first_link("no link, only ftp://x.example"), None);
    }
}
