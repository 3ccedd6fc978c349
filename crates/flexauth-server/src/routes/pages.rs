//! The small HTML pages behind the links in emails.

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;

/// The one stylesheet of every page, inline (no third-party resource, nothing to fetch):
/// readable on a phone, contrast of at least 4.5:1 in light and dark mode, a visible focus
/// ring for keyboard users.
const STYLE: &str = ":root{color-scheme:light dark}\
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#f4f5f7;color:#1b1f24}\
main{max-width:28rem;margin:10vh auto;padding:2rem 1.5rem;overflow-wrap:anywhere;background:#fff;border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.15)}\
h1{font-size:1.5rem;line-height:1.25;margin:0 0 1rem}\
label{display:block;font-weight:600;margin:1rem 0 .25rem}\
input[type=password]{box-sizing:border-box;width:100%;padding:.75rem;font:inherit;border:1px solid #6b7280;border-radius:8px;background:#fff;color:inherit}\
input[aria-invalid=true]{border:2px solid #b42318}\
.hint{color:#4b5563;font-size:.875rem;margin:.25rem 0 0}\
.error{color:#b42318;font-weight:600;margin:.25rem 0 0}\
button{width:100%;margin-top:1.25rem;padding:.8rem;font:inherit;font-weight:600;color:#fff;background:#1d4ed8;border:0;border-radius:8px;cursor:pointer}\
button:hover{background:#1e40af}\
:focus-visible{outline:3px solid #b45309;outline-offset:2px}\
@media (prefers-color-scheme:dark){body{background:#111318;color:#e6e8eb}main{background:#1b1e24}.hint{color:#b4bcc8}\
input[type=password]{background:#111318;border-color:#8b93a1}.error{color:#ff9b91}input[aria-invalid=true]{border-color:#ff9b91}}\
@media (max-width:32rem){main{margin:0;border-radius:0;box-shadow:none;min-height:100vh;box-sizing:border-box}}";

/// A page with a title and a body of trusted markup, in the `main` landmark. The links that
/// lead here carry tokens in their query, so the page forbids referrers, caching, scripts,
/// foreign resources and form targets, framing and content sniffing.
pub fn page(status: StatusCode, title: &str, body_html: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(ContentType::html())
        .insert_header(("cache-control", "no-store"))
        .insert_header(("referrer-policy", "no-referrer"))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header((
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri \
                'none'",
        ))
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
                content=\"width=device-width, initial-scale=1\">\
             <meta name=\"referrer\" content=\"no-referrer\"><title>{title}</title><style>{STYLE}</style></head>\
             <body><main><h1>{title}</h1>{body_html}</main></body></html>",
            title = escape(title)
        ))
}

/// The rules a new password must meet, as the pages state them (the same as the API's).
pub const PASSWORD_RULES: &str = "At least 8 characters and at most 256. A very common password is refused.";

/// `text` with a capital first letter: the domain's reasons are written to follow a colon.
fn sentence(text: &str) -> String {
    let mut characters = text.chars();
    characters.next().map(|first| first.to_uppercase().chain(characters).collect()).unwrap_or_default()
}

/// A labelled new-password field with its rules and, after a refused choice, the error right
/// beside it (announced to screen readers, and named by the field).
pub fn new_password_field(error: Option<&str>) -> String {
    let (invalid, described_by, error_html) = match error {
        Some(error) => (
            " aria-invalid=\"true\"",
            "password-rules password-error",
            format!("<p id=\"password-error\" class=\"error\" role=\"alert\">{}</p>", escape(&sentence(error))),
        ),
        None => ("", "password-rules", String::new()),
    };
    format!(
        "<label for=\"password\">New password</label>\
         <input id=\"password\" type=\"password\" name=\"password\" minlength=\"8\" maxlength=\"256\" required \
             autocomplete=\"new-password\" \
         aria-describedby=\"{described_by}\"{invalid}{autofocus}>{error_html}<p id=\"password-rules\" \
             class=\"hint\">{rules}</p>",
        autofocus = if error.is_some() { " autofocus" } else { "" },
        rules = escape(PASSWORD_RULES),
    )
}

/// A page with one paragraph of plain text.
pub fn message(status: StatusCode, title: &str, text: &str) -> HttpResponse {
    page(status, title, &format!("<p>{}</p>", escape(text)))
}

/// What the confirmation page asks of the person.
#[derive(Debug, Clone, Copy)]
pub enum Confirmation<'a> {
    /// Only the button; the sign-up it confirms was made at `signed_up_at`.
    Button { signed_up_at: time::OffsetDateTime },
    /// A password field and the button, with `error` beside the field after a refused choice.
    ChoosePassword { error: Option<&'a str> },
}

/// The page behind a verification link: a form that POSTs the token, with one button and,
/// where the confirmation must choose the password, a password field. It works without
/// JavaScript. The form's action is relative, so it also works under a path prefix of the
/// public URL.
pub fn confirmation_form(token: &flexauth_domain::secret::LinkToken, confirmation: Confirmation<'_>) -> HttpResponse {
    let (explanation, password_field, status) = match confirmation {
        Confirmation::Button { signed_up_at } => (
            format!(
                "Someone signed up with this email address on {}. If it was you, press the button to confirm the \
                    address; \
                 if it was not, close this page: nothing happens without the button.",
                signed_up_at.format(SIGNED_UP_AT).unwrap_or_else(|_| "an earlier date".to_owned())
            ),
            String::new(),
            StatusCode::OK,
        ),
        Confirmation::ChoosePassword { error } => (
            "Choose the password for your account to confirm this address. It may be the one you chose when you \
                signed up; \
             if several sign-ups were made with this address, only the password you enter here will work."
                .to_owned(),
            new_password_field(error),
            if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK },
        ),
    };
    page(
        status,
        "Confirm your email address",
        &format!(
            "<p>{}</p><form method=\"post\" action=\"verify\"><input type=\"hidden\" name=\"token\" \
                value=\"{}\">{password_field}\
             <p><button type=\"submit\">Confirm my email address</button></p></form>",
            escape(&explanation),
            escape(&token.expose())
        ),
    )
}

/// "1 December 2026 at 19:28 UTC".
const SIGNED_UP_AT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[day padding:none] [month repr:long] [year] at [hour]:[minute] UTC");

/// A labelled field for the account's current password and, after a refusal, the error
/// beside it (announced to screen readers, and named by the field).
pub fn current_password_field(error: Option<&str>) -> String {
    let (invalid, error_html) = match error {
        Some(error) => (
            " aria-invalid=\"true\" aria-describedby=\"password-error\" autofocus",
            format!("<p id=\"password-error\" class=\"error\" role=\"alert\">{}</p>", escape(error)),
        ),
        None => ("", String::new()),
    };
    format!(
        "<label for=\"password\">Password of the account</label>\
         <input id=\"password\" type=\"password\" name=\"password\" maxlength=\"256\" required \
             autocomplete=\"current-password\"{invalid}>{error_html}"
    )
}

/// What a [`button_form`] shows and does.
#[derive(Debug, Clone, Copy)]
pub struct ButtonForm<'a> {
    pub title: &'a str,
    pub explanation: &'a str,
    /// Where the form posts, relative, so it works under a path prefix of the public URL.
    pub action: &'a str,
    pub button: &'a str,
}

/// A page behind an emailed link that does something only when its one button is pressed: a
/// form that POSTs the token to `form.action`, with `fields` (trusted markup, such as
/// [`current_password_field`]) before the button. Opening the link, as a mail scanner does,
/// changes nothing.
pub fn button_form(
    status: StatusCode,
    form: ButtonForm<'_>,
    token: &flexauth_domain::secret::LinkToken,
    fields: &str,
) -> HttpResponse {
    page(
        status,
        form.title,
        &format!(
            "<p>{}</p><form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"token\" value=\"{}\">\
             {fields}<p><button type=\"submit\">{}</button></p></form>",
            escape(form.explanation),
            escape(form.action),
            escape(&token.expose()),
            escape(form.button)
        ),
    )
}

/// Escapes text for HTML, for every page that shows text it did not write itself.
pub fn escape(text: &str) -> String {
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
    #[test]
    fn escaping_neutralises_markup() {
        assert_eq!(super::escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
    }
}
