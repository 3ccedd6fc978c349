//! The words of flexauth's emails: Jinja templates (rendered by minijinja), built in, and
//! replaceable file by file from a directory the operator names (`FLEXAUTH_EMAIL_TEMPLATES`).
//!
//! Each kind of email has two templates, `<kind>.txt` and `<kind>.html`; the text one starts
//! with a `Subject:` line and a blank line. The HTML ones extend `layout.html` and escape
//! every fact they print. A template sees `site` (the public URL) and the facts of its kind
//! ([`Letter::facts`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use flexauth_domain::mail::{EmailKind, EmailWriter, Letter, WrittenEmail};
use minijinja::{Environment, UndefinedBehavior, Value};

/// The built-in templates, by file name.
const BUILTIN: &[(&str, &str)] = &[
    ("layout.html", include_str!("../templates/layout.html")),
    ("verification.txt", include_str!("../templates/verification.txt")),
    ("verification.html", include_str!("../templates/verification.html")),
    ("account_exists.txt", include_str!("../templates/account_exists.txt")),
    ("account_exists.html", include_str!("../templates/account_exists.html")),
    ("password_reset.txt", include_str!("../templates/password_reset.txt")),
    ("password_reset.html", include_str!("../templates/password_reset.html")),
    ("password_changed.txt", include_str!("../templates/password_changed.txt")),
    ("password_changed.html", include_str!("../templates/password_changed.html")),
    ("password_was_reset.txt", include_str!("../templates/password_was_reset.txt")),
    ("password_was_reset.html", include_str!("../templates/password_was_reset.html")),
    ("api_key_created.txt", include_str!("../templates/api_key_created.txt")),
    ("api_key_created.html", include_str!("../templates/api_key_created.html")),
    ("refresh_token_reuse.txt", include_str!("../templates/refresh_token_reuse.txt")),
    ("refresh_token_reuse.html", include_str!("../templates/refresh_token_reuse.html")),
    ("email_change_confirmation.txt", include_str!("../templates/email_change_confirmation.txt")),
    ("email_change_confirmation.html", include_str!("../templates/email_change_confirmation.html")),
    ("email_change_address_taken.txt", include_str!("../templates/email_change_address_taken.txt")),
    ("email_change_address_taken.html", include_str!("../templates/email_change_address_taken.html")),
    ("email_change_requested.txt", include_str!("../templates/email_change_requested.txt")),
    ("email_change_requested.html", include_str!("../templates/email_change_requested.html")),
    ("account_deleted.txt", include_str!("../templates/account_deleted.txt")),
    ("account_deleted.html", include_str!("../templates/account_deleted.html")),
    ("session_ended_for_password_failures.txt", include_str!("../templates/session_ended_for_password_failures.txt")),
    ("session_ended_for_password_failures.html", include_str!("../templates/session_ended_for_password_failures.html")),
    ("second_factor_added.txt", include_str!("../templates/second_factor_added.txt")),
    ("second_factor_added.html", include_str!("../templates/second_factor_added.html")),
    ("second_factor_removed.txt", include_str!("../templates/second_factor_removed.txt")),
    ("second_factor_removed.html", include_str!("../templates/second_factor_removed.html")),
    ("recovery_code_used.txt", include_str!("../templates/recovery_code_used.txt")),
    ("recovery_code_used.html", include_str!("../templates/recovery_code_used.html")),
    ("recovery_codes_regenerated.txt", include_str!("../templates/recovery_codes_regenerated.txt")),
    ("recovery_codes_regenerated.html", include_str!("../templates/recovery_codes_regenerated.html")),
    ("second_factors_reset.txt", include_str!("../templates/second_factors_reset.txt")),
    ("second_factors_reset.html", include_str!("../templates/second_factors_reset.html")),
];

/// The site the templates are checked with.
const EXAMPLE_SITE: &str = "https://auth.example.com";

/// Why a set of templates cannot be used. Each names the file, and minijinja's own message
/// says the line.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The directory or one of its files could not be read.
    #[error("cannot read email templates at {path}: {source}")]
    Read {
        /// The directory or file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file of the directory is not one of the templates flexauth has; a misspelt name
    /// would otherwise be ignored in silence.
    #[error(
        "{path} is not an email template flexauth knows; the names are those `flexauth email-templates export` writes"
    )]
    UnknownFile {
        /// The file.
        path: PathBuf,
    },
    /// A template does not parse, or fails on the example letter of its kind.
    #[error("email template {name}: {detail}")]
    Invalid {
        /// The template's file name.
        name: String,
        /// minijinja's message, with the line.
        detail: String,
    },
    /// A text template does not start with a `Subject:` line.
    #[error("email template {name} must start with a `Subject: …` line and a blank line")]
    NoSubject {
        /// The template's file name.
        name: String,
    },
}

/// The email writer of a flexauth server: the built-in templates, with those the operator
/// put in a directory in their place.
pub struct EmailTemplates {
    templates: Environment<'static>,
    /// The built-in set, kept when some templates are the operator's: a letter that one of
    /// those fails on at run time is written with the built-in words rather than lost.
    builtin: Option<Environment<'static>>,
    overridden: Vec<String>,
}

impl fmt::Debug for EmailTemplates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailTemplates").field("overridden", &self.overridden).finish_non_exhaustive()
    }
}

impl EmailTemplates {
    /// The built-in templates.
    ///
    /// # Errors
    /// [`TemplateError::Invalid`] or [`TemplateError::NoSubject`] if a built-in template is
    /// broken, which the tests of this crate rule out.
    pub fn builtin() -> Result<Self, TemplateError> {
        let templates = environment(BUILTIN.iter().map(|(name, source)| ((*name).to_owned(), (*source).to_owned())))?;
        Ok(Self { templates, builtin: None, overridden: Vec::new() })
    }

    /// The built-in templates, with each file of `directory` in place of the built-in one of
    /// the same name. Every template is then checked on an example letter of each kind, so
    /// that a mistake stops the server at start rather than an email at run time.
    ///
    /// # Errors
    /// [`TemplateError::Read`] if the directory cannot be read, [`TemplateError::UnknownFile`]
    /// for a file that is not a template name (files whose names start with `.` are skipped),
    /// [`TemplateError::Invalid`] or [`TemplateError::NoSubject`] for a broken template.
    pub fn with_overrides(directory: &Path) -> Result<Self, TemplateError> {
        let read_error = |path: &Path, source| TemplateError::Read { path: path.to_owned(), source };
        let mut sources: BTreeMap<String, String> =
            BUILTIN.iter().map(|(name, source)| ((*name).to_owned(), (*source).to_owned())).collect();
        let mut overridden = Vec::new();
        for entry in std::fs::read_dir(directory).map_err(|error| read_error(directory, error))? {
            let path = entry.map_err(|error| read_error(directory, error))?.path();
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_owned();
            if name.starts_with('.') {
                continue;
            }
            let Some(slot) = sources.get_mut(&name) else {
                return Err(TemplateError::UnknownFile { path });
            };
            *slot = std::fs::read_to_string(&path).map_err(|error| read_error(&path, error))?;
            overridden.push(name);
        }
        overridden.sort_unstable();
        let templates = environment(sources.into_iter())?;
        let builtin = if overridden.is_empty() { None } else { Some(Self::builtin()?.templates) };
        Ok(Self { templates, builtin, overridden })
    }

    /// The file names of the templates the operator replaced, in order.
    pub fn overridden(&self) -> &[String] {
        &self.overridden
    }

    /// The built-in templates as `(file name, contents)`, for an operator to start from.
    pub fn builtin_files() -> impl Iterator<Item = (&'static str, &'static str)> {
        BUILTIN.iter().copied()
    }
}

impl EmailWriter for EmailTemplates {
    fn write(&self, site: &str, letter: &Letter) -> WrittenEmail {
        match render(&self.templates, site, letter) {
            Ok(written) => written,
            Err(error) => {
                tracing::error!(
                    kind = letter.kind().as_str(),
                    error = %error,
                    "an email template failed; the message is written with the built-in one"
                );
                self.builtin
                    .as_ref()
                    .and_then(|builtin| render(builtin, site, letter).ok())
                    .unwrap_or_else(|| fact_sheet(site, letter))
            }
        }
    }
}

/// An environment holding `sources`, each checked on the example letter of every kind.
fn environment(sources: impl Iterator<Item = (String, String)>) -> Result<Environment<'static>, TemplateError> {
    let mut templates = Environment::new();
    // A misspelt fact is an error at start, not an empty space in a sent email.
    templates.set_undefined_behavior(UndefinedBehavior::Strict);
    // Text bodies end with a line break, as mail readers expect.
    templates.set_keep_trailing_newline(true);
    for (name, source) in sources {
        templates
            .add_template_owned(name.clone(), source)
            .map_err(|error| TemplateError::Invalid { name, detail: error.to_string() })?;
    }
    for kind in EmailKind::ALL {
        render(&templates, EXAMPLE_SITE, &Letter::example(*kind, EXAMPLE_SITE))?;
    }
    Ok(templates)
}

/// The subject and bodies of `letter` from `templates`.
fn render(templates: &Environment<'static>, site: &str, letter: &Letter) -> Result<WrittenEmail, TemplateError> {
    let kind = letter.kind().as_str();
    let facts = Value::from_iter(
        letter.facts().into_iter().map(|(name, value)| (name, Value::from(value))).chain([("site", Value::from(site))]),
    );
    let render_one = |name: String| {
        templates
            .get_template(&name)
            .and_then(|template| template.render(&facts))
            .map_err(|error| TemplateError::Invalid { name: name.clone(), detail: error.to_string() })
    };
    let text_name = format!("{kind}.txt");
    let text = render_one(text_name.clone())?;
    let html = render_one(format!("{kind}.html"))?;
    let (subject, text) = split_subject(&text).ok_or(TemplateError::NoSubject { name: text_name })?;
    Ok(WrittenEmail { subject, text, html })
}

/// The `Subject:` line of a rendered text template, and the body after the blank line.
fn split_subject(rendered: &str) -> Option<(String, String)> {
    let rest = rendered.strip_prefix("Subject:")?;
    let (subject, body) = rest.split_once('\n')?;
    let subject = subject.trim();
    if subject.is_empty() {
        return None;
    }
    Some((subject.to_owned(), body.strip_prefix('\n').unwrap_or(body).to_owned()))
}

/// Words of last resort, should every template fail on a letter: the facts as lines, so that
/// the link still reaches its owner.
fn fact_sheet(site: &str, letter: &Letter) -> WrittenEmail {
    let mut text = format!("A message from {site}.\n\n");
    for (name, value) in letter.facts() {
        text.push_str(&format!("{name}: {value}\n"));
    }
    let html = format!("<!doctype html><html><body><pre>{}</pre></body></html>", escape_html(&text));
    WrittenEmail { subject: format!("A message from {site}"), text, html }
}

fn escape_html(text: &str) -> String {
    // minijinja escapes the templates' output; this is the one body it does not write.
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

/// The built-in emails of the site at `site`, for the tests of the transports.
#[cfg(test)]
pub(crate) fn test_letters(site: &str) -> flexauth_domain::mail::Letters {
    #[allow(clippy::expect_used)]
    let templates = EmailTemplates::builtin().expect("the built-in templates");
    flexauth_domain::mail::Letters::new(site, std::sync::Arc::new(templates))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn written(letter: &Letter) -> WrittenEmail {
        EmailTemplates::builtin().unwrap().write("https://auth.example.com", letter)
    }

    #[test]
    fn every_built_in_template_renders_every_kind_with_a_subject() {
        let templates = EmailTemplates::builtin().unwrap();
        for kind in EmailKind::ALL {
            let email = templates.write(EXAMPLE_SITE, &Letter::example(*kind, EXAMPLE_SITE));
            assert!(!email.subject.is_empty() && !email.subject.contains('\n'), "{kind:?}");
            assert!(email.text.ends_with('\n') && !email.text.starts_with('\n'), "{kind:?}: {:?}", email.text);
            assert!(email.html.starts_with("<!doctype html>"), "{kind:?}");
        }
    }

    #[test]
    fn the_verification_email_carries_the_link_in_both_bodies() {
        let link = "https://auth.example.com/v1/auth/verify?token=abc".to_owned();
        let email = written(&Letter::Verification { link: link.clone(), valid_for: time::Duration::hours(24) });
        assert_eq!(email.subject, "Verify your email address");
        assert!(email.text.starts_with("Welcome!\n\n"), "{}", email.text);
        assert!(email.text.contains(&format!("\n{link}\n")));
        assert!(email.text.contains("expires in 24 hours"));
        // minijinja escapes `/` too (`&#x2f;`), which a mail reader decodes like any entity.
        assert!(email.html.replace("&#x2f;", "/").contains(&format!("href=\"{link}\"")), "{}", email.html);
    }

    #[test]
    fn html_bodies_escape_what_a_user_chose() {
        let email = written(&Letter::ApiKeyCreated {
            key_name: "<script>alert(1)</script>".to_owned(),
            key_prefix: "fo_live_ab".to_owned(),
        });
        assert!(email.html.contains("&lt;script&gt;"), "{}", email.html);
        assert!(!email.html.contains("<script>"));
        assert!(email.text.contains("named \"<script>alert(1)</script>\""), "text bodies are not HTML");
    }

    #[test]
    fn a_client_address_is_named_only_when_there_is_one() {
        let with =
            written(&Letter::SessionEndedForPasswordFailures { client_ip: Some(IpAddr::from([203, 0, 113, 9])) });
        assert!(with.text.contains("entered from 203.0.113.9 through"), "{}", with.text);
        let without = written(&Letter::SessionEndedForPasswordFailures { client_ip: None });
        assert!(without.text.contains("entered through"), "{}", without.text);
    }

    #[test]
    fn an_operators_file_replaces_the_built_in_one_and_the_rest_stay() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(
            directory.path().join("account_exists.txt"),
            "Subject: Vous avez déjà un compte\n\nQuelqu'un a essayé de créer un compte sur {{ site }}.\n",
        )
        .unwrap();
        std::fs::write(directory.path().join(".account_exists.txt.swp"), "an editor's file").unwrap();
        let templates = EmailTemplates::with_overrides(directory.path()).unwrap();
        assert_eq!(templates.overridden(), ["account_exists.txt"]);
        let email = templates.write("https://auth.example.com", &Letter::AccountExists);
        assert_eq!(email.subject, "Vous avez déjà un compte");
        assert_eq!(email.text, "Quelqu'un a essayé de créer un compte sur https://auth.example.com.\n");
        assert!(email.html.contains("you already have one"), "the HTML body is still the built-in one");
    }

    #[test]
    fn a_letter_an_operators_template_fails_on_is_written_with_the_built_in_one() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(
            directory.path().join("api_key_created.txt"),
            "Subject: New key\n\n{% if key_name == \"boom\" %}{{ no_such_fact }}{% endif %}Key {{ key_name }}\n",
        )
        .unwrap();
        let templates = EmailTemplates::with_overrides(directory.path()).unwrap();
        let letter =
            |name: &str| Letter::ApiKeyCreated { key_name: name.to_owned(), key_prefix: "fo_live_ab".to_owned() };
        assert_eq!(templates.write("https://auth.example.com", &letter("deploy")).subject, "New key");
        let fallen_back = templates.write("https://auth.example.com", &letter("boom"));
        assert_eq!(fallen_back.subject, "A new API key was created");
        assert!(fallen_back.text.contains("named \"boom\""));
    }

    #[test]
    fn a_misspelt_file_name_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("verificaton.txt"), "Subject: hi\n\nhello\n").unwrap();
        let error = EmailTemplates::with_overrides(directory.path()).unwrap_err();
        assert!(matches!(error, TemplateError::UnknownFile { .. }), "{error}");
        assert!(error.to_string().contains("verificaton.txt"));
    }

    #[test]
    fn a_misspelt_fact_is_refused_with_its_file_and_line() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("verification.txt"), "Subject: Verify\n\nOpen {{ lnk }}\n").unwrap();
        let error = EmailTemplates::with_overrides(directory.path()).unwrap_err().to_string();
        assert!(error.contains("verification.txt:3"), "{error}");
    }

    #[test]
    fn a_text_template_without_a_subject_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("password_changed.txt"), "Your password was changed.\n").unwrap();
        let error = EmailTemplates::with_overrides(directory.path()).unwrap_err();
        assert!(matches!(&error, TemplateError::NoSubject { name } if name == "password_changed.txt"), "{error}");
    }

    #[test]
    fn a_syntax_error_is_refused_with_its_file() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("layout.html"), "<html>{% block body %}</html>").unwrap();
        let error = EmailTemplates::with_overrides(directory.path()).unwrap_err().to_string();
        assert!(error.contains("layout.html"), "{error}");
    }

    #[test]
    fn every_kind_has_both_built_in_templates_and_nothing_else_is_built_in() {
        let mut names: Vec<&str> = EmailTemplates::builtin_files().map(|(name, _)| name).collect();
        names.sort_unstable();
        let mut expected: Vec<String> = EmailKind::ALL
            .iter()
            .flat_map(|kind| [format!("{}.txt", kind.as_str()), format!("{}.html", kind.as_str())])
            .collect();
        expected.push("layout.html".to_owned());
        expected.sort_unstable();
        assert_eq!(names, expected);
    }
}
