//! What flexauth's emails say, as facts. The words are not here: an [`EmailWriter`] turns a
//! [`Letter`] into a subject and two bodies (flexauth-mail's writer uses template files that an
//! operator can replace), so the rules decide what is sent and to whom, never its wording.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use time::Duration;
use uuid::Uuid;

use super::{EmailKind, OutgoingEmail};
use crate::newtypes::EmailAddress;
use crate::secret::LinkToken;

/// One email before it is written: which message, and the facts its words may use.
#[derive(Clone, PartialEq, Eq)]
pub enum Letter {
    /// The link that proves control of the address, after sign-up or on request.
    Verification {
        /// The verification link.
        link: String,
        /// How long the link works.
        valid_for: Duration,
    },
    /// Sent instead of a verification link when someone signs up with a registered address.
    AccountExists,
    /// The link that lets the owner choose a new password.
    PasswordReset {
        /// The reset link.
        link: String,
        /// How long the link works.
        valid_for: Duration,
    },
    /// The password was changed by someone who knew it.
    PasswordChanged,
    /// The password was reset through a link sent to this address.
    PasswordWasReset,
    /// An API key was created for the account.
    ApiKeyCreated {
        /// The name its creator gave it.
        key_name: String,
        /// Its visible prefix, which the owner can find in the key list.
        key_prefix: String,
    },
    /// A spent refresh token was presented and its session ended.
    RefreshTokenReuse,
    /// The link, sent to a new address, that moves the account there.
    EmailChangeConfirmation {
        /// The confirmation link.
        link: String,
        /// How long the link works.
        valid_for: Duration,
    },
    /// Sent to a new address that already has an account, instead of a confirmation link.
    EmailChangeAddressTaken,
    /// Sent to the old address when a move is asked for, with the link that undoes it.
    EmailChangeRequested {
        /// The undo link.
        link: String,
        /// How long the undo link works.
        undo_for: Duration,
    },
    /// The goodbye after the account was deleted.
    AccountDeleted,
    /// A session was ended because wrong passwords were tried through it.
    SessionEndedForPasswordFailures {
        /// The client address the passwords came from, when it was a real IP address: the
        /// text is the owner's to trust, and a forwarded header that is not an address is not.
        client_ip: Option<IpAddr>,
    },
    /// A second factor was added to the account.
    SecondFactorAdded {
        /// The name its owner gave it.
        factor_name: String,
        /// `totp` or `passkey`.
        factor_kind: &'static str,
    },
    /// A second factor was removed from the account.
    SecondFactorRemoved {
        /// The name its owner gave it.
        factor_name: String,
    },
    /// A recovery code was used to log in or to prove a second factor.
    RecoveryCodeUsed {
        /// How many unused codes are left.
        codes_left: u32,
    },
    /// A new set of recovery codes replaced the old one.
    RecoveryCodesRegenerated,
    /// An operator removed every second factor of the account.
    SecondFactorsReset,
}

impl Letter {
    /// The kind of message this is, stored in the outbox with it.
    pub fn kind(&self) -> EmailKind {
        match self {
            Self::Verification { .. } => EmailKind::Verification,
            Self::AccountExists => EmailKind::AccountExists,
            Self::PasswordReset { .. } => EmailKind::PasswordReset,
            Self::PasswordChanged => EmailKind::PasswordChanged,
            Self::PasswordWasReset => EmailKind::PasswordWasReset,
            Self::ApiKeyCreated { .. } => EmailKind::ApiKeyCreated,
            Self::RefreshTokenReuse => EmailKind::RefreshTokenReuse,
            Self::EmailChangeConfirmation { .. } => EmailKind::EmailChangeConfirmation,
            Self::EmailChangeAddressTaken => EmailKind::EmailChangeAddressTaken,
            Self::EmailChangeRequested { .. } => EmailKind::EmailChangeRequested,
            Self::AccountDeleted => EmailKind::AccountDeleted,
            Self::SessionEndedForPasswordFailures { .. } => EmailKind::SessionEndedForPasswordFailures,
            Self::SecondFactorAdded { .. } => EmailKind::SecondFactorAdded,
            Self::SecondFactorRemoved { .. } => EmailKind::SecondFactorRemoved,
            Self::RecoveryCodeUsed { .. } => EmailKind::RecoveryCodeUsed,
            Self::RecoveryCodesRegenerated => EmailKind::RecoveryCodesRegenerated,
            Self::SecondFactorsReset => EmailKind::SecondFactorsReset,
        }
    }

    /// The facts a template of this kind may use, by name. Every fact of a kind is always
    /// present (an absent client address is an empty string), so that a template checked
    /// once renders for every letter of its kind. A lifetime comes in words (`valid_for`,
    /// "24 hours") and in minutes (`valid_for_minutes`), for templates in other languages.
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Verification { link, valid_for }
            | Self::PasswordReset { link, valid_for }
            | Self::EmailChangeConfirmation { link, valid_for } => vec![
                ("link", link.clone()),
                ("valid_for", human_duration(*valid_for)),
                ("valid_for_minutes", valid_for.whole_minutes().to_string()),
            ],
            Self::EmailChangeRequested { link, undo_for } => vec![
                ("link", link.clone()),
                ("undo_for", human_duration(*undo_for)),
                ("undo_for_minutes", undo_for.whole_minutes().to_string()),
            ],
            Self::ApiKeyCreated { key_name, key_prefix } => {
                vec![("key_name", key_name.clone()), ("key_prefix", key_prefix.clone())]
            }
            Self::SessionEndedForPasswordFailures { client_ip } => {
                vec![("client_ip", client_ip.map(|ip| ip.to_string()).unwrap_or_default())]
            }
            Self::SecondFactorAdded { factor_name, factor_kind } => {
                vec![("factor_name", factor_name.clone()), ("factor_kind", (*factor_kind).to_owned())]
            }
            Self::SecondFactorRemoved { factor_name } => vec![("factor_name", factor_name.clone())],
            Self::RecoveryCodeUsed { codes_left } => vec![("codes_left", codes_left.to_string())],
            Self::RecoveryCodesRegenerated
            | Self::SecondFactorsReset
            | Self::AccountExists
            | Self::PasswordChanged
            | Self::PasswordWasReset
            | Self::RefreshTokenReuse
            | Self::EmailChangeAddressTaken
            | Self::AccountDeleted => Vec::new(),
        }
    }

    /// A letter of `kind` with made-up facts and links to `site`, for checking and previewing
    /// templates: every kind has one, so a template set checked with these covers every
    /// message flexauth sends.
    pub fn example(kind: EmailKind, site: &str) -> Self {
        let site = site.trim_end_matches('/');
        let link = |path: &str| format!("{site}{path}?token=EXAMPLE-TOKEN");
        match kind {
            EmailKind::Verification => Self::Verification { link: link(VERIFY_PATH), valid_for: Duration::hours(24) },
            EmailKind::AccountExists => Self::AccountExists,
            EmailKind::PasswordReset => {
                Self::PasswordReset { link: link(PASSWORD_RESET_PATH), valid_for: Duration::hours(1) }
            }
            EmailKind::PasswordChanged => Self::PasswordChanged,
            EmailKind::PasswordWasReset => Self::PasswordWasReset,
            EmailKind::ApiKeyCreated => {
                Self::ApiKeyCreated { key_name: "deploy bot".to_owned(), key_prefix: "fo_live_ab12cd".to_owned() }
            }
            EmailKind::RefreshTokenReuse => Self::RefreshTokenReuse,
            EmailKind::EmailChangeConfirmation => {
                Self::EmailChangeConfirmation { link: link(EMAIL_CONFIRM_PATH), valid_for: Duration::hours(24) }
            }
            EmailKind::EmailChangeAddressTaken => Self::EmailChangeAddressTaken,
            EmailKind::EmailChangeRequested => {
                Self::EmailChangeRequested { link: link(EMAIL_UNDO_PATH), undo_for: Duration::days(7) }
            }
            EmailKind::AccountDeleted => Self::AccountDeleted,
            EmailKind::SessionEndedForPasswordFailures => {
                Self::SessionEndedForPasswordFailures { client_ip: Some(IpAddr::from([203, 0, 113, 9])) }
            }
            EmailKind::SecondFactorAdded => {
                Self::SecondFactorAdded { factor_name: "phone".to_owned(), factor_kind: "totp" }
            }
            EmailKind::SecondFactorRemoved => Self::SecondFactorRemoved { factor_name: "phone".to_owned() },
            EmailKind::RecoveryCodeUsed => Self::RecoveryCodeUsed { codes_left: 9 },
            EmailKind::RecoveryCodesRegenerated => Self::RecoveryCodesRegenerated,
            EmailKind::SecondFactorsReset => Self::SecondFactorsReset,
        }
    }
}

impl fmt::Debug for Letter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Links carry single-use tokens, which are secrets until used.
        f.debug_struct("Letter").field("kind", &self.kind()).finish_non_exhaustive()
    }
}

/// The words of one email, as an [`EmailWriter`] wrote them.
#[derive(Clone, PartialEq, Eq)]
pub struct WrittenEmail {
    /// The subject line: one line, no line breaks.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body.
    pub html: String,
}

impl fmt::Debug for WrittenEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bodies hold the links.
        f.debug_struct("WrittenEmail").field("subject", &self.subject).finish_non_exhaustive()
    }
}

/// Writes the words of the emails flexauth sends.
///
/// Writing cannot fail: a writer checks its templates when it is built (with
/// [`Letter::example`] of every kind), and one that still fails on a letter falls back to
/// words of its own, since an email that was due must be sent.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait EmailWriter: Send + Sync {
    /// The subject and bodies of `letter`, for the site at `site` (the public URL, without a
    /// trailing slash).
    fn write(&self, site: &str, letter: &Letter) -> WrittenEmail;
}

/// Where the links in emails point, below the public URL.
const VERIFY_PATH: &str = "/v1/auth/verify";
const PASSWORD_RESET_PATH: &str = "/v1/auth/password/reset";
const EMAIL_CONFIRM_PATH: &str = "/v1/auth/email/confirm";
const EMAIL_UNDO_PATH: &str = "/v1/auth/email/undo";

/// The page a link of an email opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPage {
    /// The page that confirms an address after sign-up.
    Verify,
    /// The page that sets a new password.
    PasswordReset,
    /// The page that moves the account to a new address.
    EmailConfirm,
    /// The page that undoes an address change.
    EmailUndo,
}

impl LinkPage {
    fn path(self) -> &'static str {
        match self {
            Self::Verify => VERIFY_PATH,
            Self::PasswordReset => PASSWORD_RESET_PATH,
            Self::EmailConfirm => EMAIL_CONFIRM_PATH,
            Self::EmailUndo => EMAIL_UNDO_PATH,
        }
    }
}

/// The emails of one site: its public URL, which links and notices name, and the writer of
/// their words. Services hold one and ask it for each message they queue.
#[derive(Clone)]
pub struct Letters {
    site: String,
    writer: Arc<dyn EmailWriter>,
}

impl Letters {
    /// The emails of the site at `public_url` (e.g. `https://auth.example.com`), in the words
    /// of `writer`.
    pub fn new(public_url: &str, writer: Arc<dyn EmailWriter>) -> Self {
        Self { site: public_url.trim_end_matches('/').to_owned(), writer }
    }

    /// The public URL, without a trailing slash.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The link to `page` that carries `token`.
    pub fn link(&self, page: LinkPage, token: &LinkToken) -> String {
        format!("{}{}?token={}", self.site, page.path(), token.expose())
    }

    /// `letter`, written and addressed to `to`; `id` becomes its `Message-ID`.
    pub fn email(&self, id: Uuid, to: EmailAddress, letter: &Letter) -> OutgoingEmail {
        let written = self.writer.write(&self.site, letter);
        // A line break in a subject would start a header of the writer's making.
        let subject = written.subject.replace(['\r', '\n'], " ");
        OutgoingEmail::new(id, letter.kind(), to, subject, written.text, written.html)
    }
}

impl fmt::Debug for Letters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Letters").field("site", &self.site).finish_non_exhaustive()
    }
}

/// A writer that lists a letter's facts as lines of `name: value`, for tests of the rules:
/// what they assert is which facts went to whom, not the wording.
#[cfg(any(test, feature = "mocks"))]
#[derive(Debug, Clone, Copy, Default)]
pub struct FactSheetWriter;

#[cfg(any(test, feature = "mocks"))]
impl EmailWriter for FactSheetWriter {
    fn write(&self, site: &str, letter: &Letter) -> WrittenEmail {
        let mut text = format!("site: {site}\n");
        for (name, value) in letter.facts() {
            text.push_str(&format!("{name}: {value}\n"));
        }
        WrittenEmail { subject: letter.kind().as_str().to_owned(), html: text.clone(), text }
    }
}

/// "24 hours", "1 hour", "30 minutes": a lifetime in its largest whole unit.
fn human_duration(duration: Duration) -> String {
    let (amount, unit) = if duration.whole_hours() >= 1 && duration.whole_minutes() % 60 == 0 {
        (duration.whole_hours(), "hour")
    } else {
        (duration.whole_minutes().max(1), "minute")
    };
    format!("{amount} {unit}{}", if amount == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::MockSecureRandom;

    #[test]
    fn a_link_points_at_the_public_url_once_whatever_its_trailing_slash() {
        let mut random = MockSecureRandom::new();
        random.expect_fill().returning(|buffer| buffer.fill(3));
        let token = LinkToken::generate(&random);
        let letters = Letters::new("https://auth.example.com/", Arc::new(FactSheetWriter));
        assert_eq!(
            letters.link(LinkPage::Verify, &token),
            format!("https://auth.example.com/v1/auth/verify?token={}", token.expose())
        );
    }

    #[test]
    fn a_subject_never_carries_a_line_break_from_the_writer() {
        let mut writer = MockEmailWriter::new();
        writer.expect_write().returning(|_, _| WrittenEmail {
            subject: "Hello\r\nBcc: everyone@example.com".to_owned(),
            text: String::new(),
            html: String::new(),
        });
        let letters = Letters::new("https://auth.example.com", Arc::new(writer));
        let to = EmailAddress::parse("ann@example.com").unwrap();
        let email = letters.email(Uuid::nil(), to, &Letter::AccountExists);
        assert_eq!(email.subject(), "Hello  Bcc: everyone@example.com");
    }

    #[test]
    fn every_kind_has_an_example_of_that_kind() {
        for kind in EmailKind::ALL {
            assert_eq!(Letter::example(*kind, "https://auth.example.com").kind(), *kind);
        }
    }

    #[test]
    fn an_absent_client_address_is_still_a_fact() {
        let letter = Letter::SessionEndedForPasswordFailures { client_ip: None };
        assert_eq!(letter.facts(), vec![("client_ip", String::new())]);
    }

    #[test]
    fn lifetimes_read_naturally() {
        assert_eq!(human_duration(Duration::hours(24)), "24 hours");
        assert_eq!(human_duration(Duration::hours(1)), "1 hour");
        assert_eq!(human_duration(Duration::minutes(30)), "30 minutes");
        assert_eq!(human_duration(Duration::minutes(90)), "90 minutes");
        assert_eq!(human_duration(Duration::seconds(20)), "1 minute");
    }
}
