//! The emails flexauth writes. Links point at the configured public URL.

use time::Duration;
use uuid::Uuid;

use super::{EmailKind, OutgoingEmail};
use crate::newtypes::EmailAddress;
use crate::secret::LinkToken;

/// The email that carries the verification link.
pub fn verification_email(
    id: Uuid,
    to: EmailAddress,
    public_url: &str,
    token: &LinkToken,
    valid_for: Duration,
) -> OutgoingEmail {
    let valid_for = human_duration(valid_for);
    let link = format!("{}/v1/auth/verify?token={}", public_url.trim_end_matches('/'), token.expose());
    let text = format!(
        "Welcome!\n\nConfirm your email address by opening this link and pressing the button on the page:\n\n{link}\n\n\
         The link works once and expires in {valid_for}. If you did not sign up, ignore this email: without the button, nothing happens.\n"
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><p>Welcome!</p>\
         <p>Confirm your email address: open the link and press the button on the page.</p><p><a href=\"{href}\">Verify my email address</a></p>\
         <p>The link works once and expires in {valid_for}. If you did not sign up, ignore this email: without the button, nothing happens.</p></body></html>",
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
        "<!doctype html><html><body style=\"font-family:sans-serif\"><p>Someone tried to create an account with \
            this email address at {base}, \
         but you already have one.</p><p>If it was you, log in with your existing password. If it was not, you can ignore this email: \
         nothing was changed.</p></body></html>",
        base = escape_html(base)
    );
    OutgoingEmail::new(id, EmailKind::AccountExists, to, "You already have an account".to_owned(), text, html)
}

/// The email that carries the password reset link.
pub fn password_reset_email(
    id: Uuid,
    to: EmailAddress,
    public_url: &str,
    token: &LinkToken,
    valid_for: Duration,
) -> OutgoingEmail {
    let valid_for = human_duration(valid_for);
    let link = format!("{}/v1/auth/password/reset?token={}", public_url.trim_end_matches('/'), token.expose());
    let text = format!(
        "Someone asked to reset the password of your account.\n\nChoose a new password here:\n\n{link}\n\nThe link \
            works once and expires in \
         {valid_for}. If you did not ask for it, ignore this email: your password stays as it is.\n"
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><p>Someone asked to reset the password of your \
            account.</p>\
         <p><a href=\"{href}\">Choose a new password</a></p><p>The link works once and expires in {valid_for}. \
         If you did not ask for it, ignore this email: your password stays as it is.</p></body></html>",
        href = escape_html(&link)
    );
    OutgoingEmail::new(id, EmailKind::PasswordReset, to, "Reset your password".to_owned(), text, html)
}

/// Confirms a password reset or change, so an owner who did not make it learns of it.
pub fn password_changed_email(id: Uuid, to: EmailAddress, public_url: &str) -> OutgoingEmail {
    let base = public_url.trim_end_matches('/');
    let text = format!(
        "The password of your account at {base} was just changed, and your other sessions were logged out.\n\n\
         If you did not do this, reset your password at once and check your account.\n"
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><p>The password of your account at {base} was \
            just changed, \
         and your other sessions were logged out.</p><p>If you did not do this, reset your password at once and check your account.</p></body></html>",
        base = escape_html(base)
    );
    OutgoingEmail::new(id, EmailKind::PasswordChanged, to, "Your password was changed".to_owned(), text, html)
}

/// Tells the owner that the password was reset through a link sent to this address.
pub fn password_was_reset_email(id: Uuid, to: EmailAddress, public_url: &str) -> OutgoingEmail {
    notice(
        id,
        EmailKind::PasswordWasReset,
        to,
        "Your password was reset",
        &format!(
            "The password of your account at {} was just reset with a link sent to this address, and every session \
                was logged out.",
            public_url.trim_end_matches('/')
        ),
        "If you did not do this, someone can read your email: secure your mailbox, then reset your password again.",
    )
}

/// Tells the owner that an API key was created, with its name and visible prefix.
pub fn api_key_created_email(
    id: Uuid,
    to: EmailAddress,
    public_url: &str,
    key_name: &str,
    key_prefix: &str,
) -> OutgoingEmail {
    notice(
        id,
        EmailKind::ApiKeyCreated,
        to,
        "A new API key was created",
        &format!(
            "An API key named \"{key_name}\" (starting with {key_prefix}) was just created for your account at {}. \
                API keys do not expire.",
            public_url.trim_end_matches('/')
        ),
        "If you did not create it, revoke it in your account, change your password and log out your other sessions.",
    )
}

/// Tells the owner that a spent refresh token was presented and its session ended.
pub fn refresh_token_reuse_email(id: Uuid, to: EmailAddress, public_url: &str) -> OutgoingEmail {
    notice(
        id,
        EmailKind::RefreshTokenReuse,
        to,
        "Someone may have a copy of your session",
        &format!(
            "A refresh token of one of your sessions at {} was used after it had been replaced. Someone may have a \
                copy of your token, so that session was logged out.",
            public_url.trim_end_matches('/')
        ),
        "If you use several devices, log in again where you were logged out. If this keeps happening, change your \
            password and check your devices.",
    )
}

/// Tells the owner that a session was ended because wrong passwords were tried through it, and
/// from which client address, when it was one.
pub fn session_ended_for_password_failures_email(
    id: Uuid,
    to: EmailAddress,
    public_url: &str,
    client_address: Option<&str>,
) -> OutgoingEmail {
    // Only a real IP address is named: the text is the owner's to trust, and a forwarded header
    // is not.
    let from = client_address
        .and_then(|address| address.parse::<std::net::IpAddr>().ok())
        .map(|ip| format!(" from {ip}"))
        .unwrap_or_default();
    notice(
        id,
        EmailKind::SessionEndedForPasswordFailures,
        to,
        "A session was ended after wrong passwords",
        &format!(
            "Wrong passwords were entered{from} through one of your sessions at {}, to confirm it or to change the \
                password. That session was logged out; your password did not change.",
            public_url.trim_end_matches('/')
        ),
        "If it was not you, someone may have a copy of that session: change your password and log out your other \
            sessions.",
    )
}

/// The link, sent to the new address, that moves the account there once its button is pressed.
pub fn email_change_confirmation_email(
    id: Uuid,
    to: EmailAddress,
    public_url: &str,
    token: &LinkToken,
    valid_for: Duration,
) -> OutgoingEmail {
    let valid_for = human_duration(valid_for);
    let link = format!("{}/v1/auth/email/confirm?token={}", public_url.trim_end_matches('/'), token.expose());
    let text = format!(
        "Someone asked to use this email address for their account.\n\nIf it was you, open this link and press the \
            button on the page:\n\n{link}\n\n\
         The link works once and expires in {valid_for}. If it was not you, ignore this email: without the button, nothing happens.\n"
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><p>Someone asked to use this email address for \
            their account.</p>\
         <p>If it was you, open the link and press the button on the page.</p><p><a href=\"{href}\">Use this email \
             address</a></p>\
         <p>The link works once and expires in {valid_for}. If it was not you, ignore this email: without the button, nothing happens.</p></body></html>",
        href = escape_html(&link)
    );
    OutgoingEmail::new(
        id,
        EmailKind::EmailChangeConfirmation,
        to,
        "Confirm your new email address".to_owned(),
        text,
        html,
    )
}

/// Sent to a new address that already has an account, in place of the confirmation link: the
/// person asking learns nothing from the API, the owner of the address learns of the attempt.
pub fn email_change_address_taken_email(id: Uuid, to: EmailAddress, public_url: &str) -> OutgoingEmail {
    notice(
        id,
        EmailKind::EmailChangeAddressTaken,
        to,
        "Someone tried to use your email address",
        &format!(
            "Someone asked to move another account at {} to this email address, but this address already has an \
                account, so nothing was changed.",
            public_url.trim_end_matches('/')
        ),
        "If it was you, use your existing account. If it was not, you can ignore this email.",
    )
}

/// Tells the old address that the account is to move, with the link that undoes it.
pub fn email_change_requested_email(
    id: Uuid,
    to: EmailAddress,
    public_url: &str,
    token: &LinkToken,
    undo_for: Duration,
) -> OutgoingEmail {
    let undo_for = human_duration(undo_for);
    let link = format!("{}/v1/auth/email/undo?token={}", public_url.trim_end_matches('/'), token.expose());
    let text = format!(
        "Someone asked to move your account to another email address. It moves once the new address is confirmed.\n\n\
         If it was not you, open this link and press the button on the page: the change is undone, every session is logged out, every API key \
         revoked and the password cleared.\n\n{link}\n\nThe link works for {undo_for}. Then choose a new password with \"forgot password\".\n"
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><p>Someone asked to move your account to \
            another email address. \
         It moves once the new address is confirmed.</p><p>If it was not you, open the link and press the button on the page: the change is undone, \
         every session is logged out, every API key revoked and the password cleared.</p><p><a href=\"{href}\">Undo the change</a></p>\
         <p>The link works for {undo_for}. Then choose a new password with \"forgot password\".</p></body></html>",
        href = escape_html(&link)
    );
    OutgoingEmail::new(
        id,
        EmailKind::EmailChangeRequested,
        to,
        "Your account's email address is changing".to_owned(),
        text,
        html,
    )
}

/// The goodbye after an account was deleted.
pub fn account_deleted_email(id: Uuid, to: EmailAddress, public_url: &str) -> OutgoingEmail {
    notice(
        id,
        EmailKind::AccountDeleted,
        to,
        "Your account was deleted",
        &format!(
            "Your account at {} was deleted, with its sessions, API keys and everything else that named it. This is \
                the last email you get from us.",
            public_url.trim_end_matches('/')
        ),
        "If you did not delete it, someone had your password: the account cannot be restored, but you can sign up \
            again with this address.",
    )
}

/// A notice of two paragraphs, in both bodies.
fn notice(id: Uuid, kind: EmailKind, to: EmailAddress, subject: &str, what: &str, advice: &str) -> OutgoingEmail {
    let text = format!("{what}\n\n{advice}\n");
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><p>{}</p><p>{}</p></body></html>",
        escape_html(what),
        escape_html(advice)
    );
    OutgoingEmail::new(id, kind, to, subject.to_owned(), text, html)
}

/// "24 hours", "1 hour", "30 minutes": how long a link works, in the largest whole unit.
fn human_duration(duration: Duration) -> String {
    let (amount, unit) = if duration.whole_hours() >= 1 && duration.whole_minutes() % 60 == 0 {
        (duration.whole_hours(), "hour")
    } else {
        (duration.whole_minutes().max(1), "minute")
    };
    format!("{amount} {unit}{}", if amount == 1 { "" } else { "s" })
}

/// Escapes text for HTML, for the emails here and for any page that shows user-facing text.
pub fn escape_html(text: &str) -> String {
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
    use crate::system::MockSecureRandom;

    #[test]
    fn verification_email_links_to_the_public_url_in_both_bodies() {
        let mut random = MockSecureRandom::new();
        random.expect_fill().returning(|buffer| buffer.fill(3));
        let token = LinkToken::generate(&random);
        let to = EmailAddress::parse("ann@example.com").unwrap();
        let email = verification_email(Uuid::nil(), to, "https://auth.example.com/", &token, Duration::hours(24));
        assert!(email.text_body().contains("expires in 24 hours"));
        let link = format!("https://auth.example.com/v1/auth/verify?token={}", token.expose());
        assert!(email.text_body().contains(&link));
        assert!(email.html_body().contains(&link));
        assert_eq!(email.kind(), EmailKind::Verification);
    }

    #[test]
    fn link_lifetimes_read_naturally() {
        assert_eq!(human_duration(Duration::hours(24)), "24 hours");
        assert_eq!(human_duration(Duration::hours(1)), "1 hour");
        assert_eq!(human_duration(Duration::minutes(30)), "30 minutes");
        assert_eq!(human_duration(Duration::minutes(90)), "90 minutes");
        assert_eq!(human_duration(Duration::seconds(20)), "1 minute");
    }

    #[test]
    fn html_escaping_neutralises_markup() {
        assert_eq!(escape_html("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
    }
}
