//! The emails flexauth writes. Links point at the configured public URL.

use uuid::Uuid;

use super::{EmailKind, OutgoingEmail};
use crate::account::EmailAddress;
use crate::secret::LinkToken;

/// The email that carries the verification link.
pub fn verification_email(id: Uuid, to: EmailAddress, public_url: &str, token: &LinkToken, valid_hours: i64) -> OutgoingEmail {
    let link = format!("{}/v1/auth/verify?token={}", public_url.trim_end_matches('/'), token.expose());
    let text = format!(
        "Welcome!\n\nConfirm your email address by opening this link:\n\n{link}\n\nThe link works once and expires in {valid_hours} hours. \
         If you did not sign up, ignore this email.\n"
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><p>Welcome!</p>\
         <p>Confirm your email address:</p><p><a href=\"{href}\">Verify my email address</a></p>\
         <p>The link works once and expires in {valid_hours} hours. If you did not sign up, ignore this email.</p></body></html>",
        href = escape_html(&link)
    );
    OutgoingEmail::new(id, EmailKind::Verification, to, "Verify your email address".to_owned(), text, html)
}

/// The notice sent when someone signs up with an address that already has an account: the
/// owner learns of the attempt, the person signing up learns nothing from the API.
pub fn account_exists_email(id: Uuid, to: EmailAddress, public_url: &str) -> OutgoingEmail {
    let base = public_url.trim_end_matches('/');
    let text = format!(
        "Someone tried to create an account with this email address at {base}, but you already have one.\n\n\
         If it was you, log in with your existing password. If it was not, you can ignore this email: nothing was changed.\n"
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><p>Someone tried to create an account with this email address at {base}, \
         but you already have one.</p><p>If it was you, log in with your existing password. If it was not, you can ignore this email: \
         nothing was changed.</p></body></html>",
        base = escape_html(base)
    );
    OutgoingEmail::new(id, EmailKind::AccountExists, to, "You already have an account".to_owned(), text, html)
}

fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::MockSecureRandom;

    #[test]
    fn verification_email_links_to_the_public_url_in_both_bodies() {
        let mut random = MockSecureRandom::new();
        random.expect_fill().returning(|buffer| buffer.fill(3));
        let token = LinkToken::generate(&random);
        let to = EmailAddress::parse("ann@example.com").unwrap();
        let email = verification_email(Uuid::nil(), to, "https://auth.example.com/", &token, 24);
        let link = format!("https://auth.example.com/v1/auth/verify?token={}", token.expose());
        assert!(email.text_body().contains(&link));
        assert!(email.html_body().contains(&link));
        assert_eq!(email.kind(), EmailKind::Verification);
    }

    #[test]
    fn html_escaping_neutralises_markup() {
        assert_eq!(escape_html("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
    }
}
