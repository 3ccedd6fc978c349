//! The development transport: every message becomes an `.eml` file.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use flexauth_domain::mail::{EmailKind, MailTransport, OutgoingEmail, SendError};
use lettre::message::Mailbox;

use crate::error::{parse_from, MailConfigError};
use crate::link::first_link;
use crate::message::build_message;

/// Writes each message as an RFC 5322 `.eml` file instead of sending it, for development
/// without a mail server. Any mail client opens the files.
///
/// A message is written to `{id}.eml`, so a retry of the same outbox entry replaces the file
/// instead of adding a second copy.
#[derive(Debug, Clone)]
pub struct FileMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl FileMailer {
    /// Builds a transport writing to `dir` as `from`, creating `dir` if it is missing.
    ///
    /// # Errors
    /// [`MailConfigError::InvalidFrom`] when `from` is not a mailbox, and
    /// [`MailConfigError::MailDirectory`] when `dir` cannot be created.
    pub fn new(dir: PathBuf, from: &str) -> Result<Self, MailConfigError> {
        let from = parse_from(from)?;
        // Creating the directory now makes a wrong path stop the server at startup rather than
        // fail every delivery later.
        private_dir(&dir).map_err(|reason| MailConfigError::MailDirectory { path: dir.clone(), reason })?;
        Ok(Self { dir, from })
    }

    /// The directory the files are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Creates `dir` (and missing parents) readable by the owner only, and narrows an existing
/// one to that: the files in it hold live verification and reset links.
/// What the link of an email of `kind` is for, when the developer needs it to go on (the
/// verification, reset and address-change links); `None` for notices, whose links are never
/// logged.
fn link_purpose(kind: EmailKind) -> Option<&'static str> {
    match kind {
        EmailKind::Verification => Some("to verify the address"),
        EmailKind::PasswordReset => Some("to choose a new password"),
        EmailKind::EmailChangeConfirmation => Some("to confirm the new address"),
        EmailKind::EmailChangeRequested => Some("to undo the address change"),
        _ => None,
    }
}

fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Writes `bytes` to a new file readable by the owner only, whatever the umask.
async fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).await?;
    // A file left over from a crash keeps its old mode through `open`.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).await?;
    }
    file.write_all(bytes).await?;
    file.flush().await
}

#[async_trait]
impl MailTransport for FileMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
        let message = build_message(&self.from, email)?;
        let path = self.dir.join(format!("{}.eml", email.id()));
        // The file is written under a temporary name and renamed, so that a mail client or a
        // test never reads half a message, and a retry replaces the file in one step.
        let partial = self.dir.join(format!("{}.eml.partial", email.id()));
        let failed = |action: &str, error: std::io::Error| {
            SendError::Transient(format!("cannot {action} {}: {error}", path.display()))
        };
        // Created again in case someone cleaned up the directory while the server ran.
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || private_dir(&dir))
            .await
            .map_err(|error| SendError::Transient(format!("the file writer stopped: {error}")))?
            .map_err(|error| failed("create the directory of", error))?;
        write_private(&partial, &message.formatted()).await.map_err(|error| failed("write", error))?;
        tokio::fs::rename(&partial, &path).await.map_err(|error| failed("write", error))?;

        let message_id = email.id();
        let kind = email.kind().as_str();
        let recipient_domain = email.to().domain();
        match (link_purpose(email.kind()), first_link(email.text_body())) {
            // The link is a secret, and logging it is the one deliberate exception to the rule
            // that secrets stay out of logs: this transport only runs in development, where
            // the developer who ran `cargo run` needs the link to finish signing up and has no
            // mail client watching the directory. The SMTP transport never does this.
            (Some(purpose), Some(link)) => {
                tracing::info!(%message_id, kind, recipient_domain, path = %path.display(), link, "email written to file; open the link {purpose}");
            }
            _ => {
                tracing::info!(%message_id, kind, recipient_domain, path = %path.display(), "email written to file")
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{mime, test_log};
    use flexauth_domain::account::EmailAddress;
    use flexauth_domain::mail::{Letter, LinkPage};
    use flexauth_domain::secret::LinkToken;
    use uuid::Uuid;

    const TOKEN: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE";

    fn email(id: u128) -> (OutgoingEmail, String) {
        let token = LinkToken::parse(TOKEN).unwrap();
        let to = EmailAddress::parse("ann@example.com").unwrap();
        let letters = crate::templates::test_letters("http://localhost:8080");
        let letter =
            Letter::Verification { link: letters.link(LinkPage::Verify, &token), valid_for: time::Duration::hours(24) };
        let email = letters.email(Uuid::from_u128(id), to, &letter);
        (email, format!("http://localhost:8080/v1/auth/verify?token={TOKEN}"))
    }

    #[tokio::test]
    async fn writes_one_eml_file_named_after_the_id_with_subject_and_link() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mail").join("outbox");
        let mailer = FileMailer::new(dir.clone(), "flexauth <no-reply@localhost>").unwrap();
        let (email, link) = email(42);

        mailer.send(&email).await.unwrap();
        // A retry replaces the file instead of adding one.
        mailer.send(&email).await.unwrap();

        let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(entries, vec![std::ffi::OsString::from(format!("{}.eml", email.id()))]);
        let data = std::fs::read_to_string(dir.join(format!("{}.eml", email.id()))).unwrap();
        assert_eq!(mime::header(&data, "Subject").as_deref(), Some("Verify your email address"));
        assert_eq!(mime::header(&data, "Message-ID"), Some(format!("<{}@flexauth>", email.id())));
        assert_eq!(mime::header(&data, "To").as_deref(), Some("ann@example.com"));
        assert_eq!(mime::first_link(&data), Some(link));
        assert!(data.contains("\r\n"), "RFC 5322 wants CRLF line ends");
    }

    #[tokio::test]
    async fn logs_the_path_and_only_an_action_link_but_never_the_address() {
        let root = tempfile::tempdir().unwrap();
        let mailer = FileMailer::new(root.path().to_path_buf(), "no-reply@localhost").unwrap();
        let (verification, link) = email(9);
        let to = EmailAddress::parse("ann@example.com").unwrap();
        let notice = crate::templates::test_letters("http://localhost:8080").email(
            Uuid::from_u128(10),
            to,
            &Letter::AccountExists,
        );

        let (logs, guard) = test_log::capture();
        mailer.send(&verification).await.unwrap();
        let verification_logs = logs.text();
        mailer.send(&notice).await.unwrap();
        drop(guard);
        let all_logs = logs.text();
        let notice_logs = all_logs.strip_prefix(verification_logs.as_str()).unwrap();

        assert_eq!(verification_logs.lines().count(), 1, "{verification_logs}");
        assert!(verification_logs.contains(" INFO "), "{verification_logs}");
        assert!(verification_logs.contains(&format!("{}.eml", verification.id())), "{verification_logs}");
        assert!(verification_logs.contains(&link), "{verification_logs}");
        assert!(notice_logs.contains(&format!("{}.eml", notice.id())), "{notice_logs}");
        assert!(!notice_logs.contains("link"), "{notice_logs}");
        assert!(all_logs.contains("example.com"), "{all_logs}");
        assert!(!all_logs.contains("ann@"), "{all_logs}");
    }

    #[tokio::test]
    async fn logs_the_link_of_a_password_reset_as_that_of_a_verification() {
        let root = tempfile::tempdir().unwrap();
        let mailer = FileMailer::new(root.path().to_path_buf(), "no-reply@localhost").unwrap();
        let to = EmailAddress::parse("ann@example.com").unwrap();
        let token = LinkToken::parse(TOKEN).unwrap();
        let letters = crate::templates::test_letters("http://localhost:8080");
        let letter = Letter::PasswordReset {
            link: letters.link(LinkPage::PasswordReset, &token),
            valid_for: time::Duration::hours(1),
        };
        let reset = letters.email(Uuid::from_u128(11), to, &letter);
        let (logs, guard) = test_log::capture();
        mailer.send(&reset).await.unwrap();
        drop(guard);
        let text = logs.text();
        assert!(
            text.contains(&format!("link=\"http://localhost:8080/v1/auth/password/reset?token={TOKEN}\"")),
            "{text}"
        );
        assert!(text.contains("open the link to choose a new password"), "{text}");
    }

    #[tokio::test]
    async fn recreates_a_directory_removed_while_running() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mail");
        let mailer = FileMailer::new(dir.clone(), "no-reply@localhost").unwrap();
        std::fs::remove_dir(&dir).unwrap();
        let (email, _) = email(7);
        mailer.send(&email).await.unwrap();
        assert!(dir.join(format!("{}.eml", email.id())).is_file());
    }

    #[tokio::test]
    async fn a_write_failure_is_transient() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mail");
        let mailer = FileMailer::new(dir.clone(), "no-reply@localhost").unwrap();
        // A file where the directory should be makes every write fail.
        std::fs::remove_dir(&dir).unwrap();
        std::fs::write(&dir, b"").unwrap();
        let (email, _) = email(8);
        let error = mailer.send(&email).await.unwrap_err();
        assert!(matches!(error, SendError::Transient(_)), "{error:?}");
        assert!(!error.to_string().contains(TOKEN), "{error}");
    }

    #[test]
    fn a_directory_that_cannot_be_created_is_a_config_error() {
        let root = tempfile::tempdir().unwrap();
        let blocker = root.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let error = FileMailer::new(blocker.join("mail"), "no-reply@localhost").unwrap_err();
        assert!(matches!(error, MailConfigError::MailDirectory { .. }), "{error:?}");
    }
}
