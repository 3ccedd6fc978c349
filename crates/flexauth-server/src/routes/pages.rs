//! The small HTML pages behind the links in emails.

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
pub use flexauth_domain::mail::escape_html as escape;

/// A page with a title and a body of trusted markup. The links that lead here carry tokens in
/// their query, so the page forbids referrers, caching, scripts and foreign form targets.
pub fn page(status: StatusCode, title: &str, body_html: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(ContentType::html())
        .insert_header(("cache-control", "no-store"))
        .insert_header(("referrer-policy", "no-referrer"))
        .insert_header(("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"))
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
             <title>{title}</title></head><body style=\"font-family:sans-serif;max-width:32rem;margin:4rem auto\"><h1>{title}</h1>{body_html}</body></html>",
            title = escape(title)
        ))
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
                "Someone signed up with this email address on {}. If it was you, press the button to confirm the address; \
                 if it was not, close this page: nothing happens without the button.",
                signed_up_at.format(SIGNED_UP_AT).unwrap_or_else(|_| "an earlier date".to_owned())
            ),
            String::new(),
            StatusCode::OK,
        ),
        Confirmation::ChoosePassword { error } => (
            "Choose the password for your account to confirm this address. It may be the one you chose when you signed up; \
             if several sign-ups were made with this address, only the password you enter here will work."
                .to_owned(),
            format!(
                "<p><label for=\"password\">Password (at least 8 characters)</label><br>\
                 <input id=\"password\" type=\"password\" name=\"password\" minlength=\"8\" maxlength=\"256\" required autocomplete=\"new-password\"></p>{}",
                error.map(|error| format!("<p role=\"alert\">{}</p>", escape(error))).unwrap_or_default()
            ),
            if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK },
        ),
    };
    page(
        status,
        "Confirm your email address",
        &format!(
            "<p>{}</p><form method=\"post\" action=\"verify\"><input type=\"hidden\" name=\"token\" value=\"{}\">{password_field}\
             <p><button type=\"submit\">Confirm my email address</button></p></form>",
            escape(&explanation),
            escape(&token.expose())
        ),
    )
}

/// "1 December 2026 at 19:28 UTC".
const SIGNED_UP_AT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[day padding:none] [month repr:long] [year] at [hour]:[minute] UTC");

/// A page behind an emailed link that does something only when its one button is pressed: a
/// form that POSTs the token to `action` (relative, so it works under a path prefix of the
/// public URL). Opening the link, as a mail scanner does, changes nothing.
pub fn button_form(title: &str, explanation: &str, action: &str, token: &flexauth_domain::secret::LinkToken, button: &str) -> HttpResponse {
    page(
        StatusCode::OK,
        title,
        &format!(
            "<p>{}</p><form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"token\" value=\"{}\">\
             <p><button type=\"submit\">{}</button></p></form>",
            escape(explanation),
            escape(action),
            escape(&token.expose()),
            escape(button)
        ),
    )
}
