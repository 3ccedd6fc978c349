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

/// The page behind a verification link: a form that POSTs the token, with one button and,
/// where the confirmation must choose the password, a password field (and `error` beside it
/// after a refused choice). It works without JavaScript.
pub fn confirmation_form(token: &flexauth_domain::secret::LinkToken, choose_password: bool, error: Option<&str>) -> HttpResponse {
    let explanation = if choose_password {
        "Choose the password for your account to confirm this address. It may be the one you chose when you signed up; \
         if several sign-ups were made with this address, only the password you enter here will work."
    } else {
        "Press the button to confirm that this email address is yours. If you did not sign up, close this page: nothing happens without the button."
    };
    let password_field = if choose_password {
        format!(
            "<p><label for=\"password\">Password (at least 8 characters)</label><br>\
             <input id=\"password\" type=\"password\" name=\"password\" minlength=\"8\" maxlength=\"256\" required autocomplete=\"new-password\"></p>{}",
            error.map(|error| format!("<p role=\"alert\">{}</p>", escape(error))).unwrap_or_default()
        )
    } else {
        String::new()
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    page(
        status,
        "Confirm your email address",
        &format!(
            "<p>{}</p><form method=\"post\" action=\"/v1/auth/verify\"><input type=\"hidden\" name=\"token\" value=\"{}\">{password_field}\
             <p><button type=\"submit\">Confirm my email address</button></p></form>",
            escape(explanation),
            escape(&token.expose())
        ),
    )
}
