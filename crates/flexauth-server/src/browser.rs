//! What single-page applications need: CORS for the origins on the allow-list
//! (`FLEXAUTH_CORS_ORIGINS`), and the refresh token in an httpOnly cookie for clients that ask
//! for it with `Refresh-Token-Transport: cookie`.
//!
//! An origin not on the list gets no CORS header at all, so a browser keeps every answer from
//! its scripts. The cookie is `Secure`, `HttpOnly` and `SameSite=Strict`, a `__Host-` cookie
//! (no `Domain`, `Path=/`), and honoured only on requests that carry the opt-in header, which a
//! cross-site form cannot send, and whose `Origin`, when there is one, is flexauth's own or
//! allowed.

use actix_web::http::header::{self, HeaderMap};
use actix_web::HttpRequest;

/// The request header by which a client opts in to the cookie transport, with the value
/// [`COOKIE_TRANSPORT`].
pub const TRANSPORT_HEADER: &str = "refresh-token-transport";
/// The value of [`TRANSPORT_HEADER`] that selects the cookie.
pub const COOKIE_TRANSPORT: &str = "cookie";
/// The refresh cookie's name. The `__Host-` prefix makes browsers refuse it unless it is
/// `Secure`, set over a secure connection (or `localhost`) by flexauth's own host, with no
/// `Domain` and `Path=/`: a sibling subdomain cannot plant one that the application would then
/// refresh into (a login CSRF), as it could a `__Secure-` cookie with a longer path.
pub const REFRESH_COOKIE: &str = "__Host-flexauth_refresh";

pub(crate) const ALLOWED_METHODS: &str = "GET, HEAD, POST, DELETE";
pub(crate) const ALLOWED_HEADERS: &str = "Authorization, Content-Type, Refresh-Token-Transport, X-Request-Id";
pub(crate) const EXPOSED_HEADERS: &str = "WWW-Authenticate, Retry-After, RateLimit, RateLimit-Policy, X-Request-Id";
/// How long a browser may reuse a preflight answer.
pub(crate) const PREFLIGHT_MAX_AGE: &str = "600";

/// The origins flexauth serves browsers on, and how the refresh cookie is set.
#[derive(Debug, Clone)]
pub struct BrowserPolicy {
    /// `FLEXAUTH_CORS_ORIGINS`, each as `scheme://host[:port]`.
    pub cors_origins: Vec<String>,
    /// The origin of `FLEXAUTH_PUBLIC_URL`: flexauth's own pages.
    pub own_origin: String,
    /// `Max-Age` of the refresh cookie: the refresh-token lifetime, in seconds.
    pub cookie_max_age: i64,
}

impl BrowserPolicy {
    pub(crate) fn allows_cors(&self, origin: &str) -> bool {
        self.cors_origins.iter().any(|allowed| allowed == origin)
    }

    /// Whether a request with this `Origin` may use the refresh cookie: none (a same-origin
    /// request of an older browser, or not a browser), flexauth's own, or an allowed one.
    fn allows_cookie_from(&self, origin: Option<&str>) -> bool {
        origin.is_none_or(|origin| origin == self.own_origin || self.allows_cors(origin))
    }

    /// The `Set-Cookie` value that hands `refresh_token` to the browser.
    pub fn set_cookie(&self, refresh_token: &str) -> String {
        format!(
            "{REFRESH_COOKIE}={refresh_token}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Strict",
            self.cookie_max_age
        )
    }

    /// The `Set-Cookie` value that removes the refresh cookie.
    pub fn clear_cookie(&self) -> String {
        format!("{REFRESH_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict")
    }
}

/// Whether the client asked for the refresh token in a cookie.
pub fn wants_cookie(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(TRANSPORT_HEADER)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case(COOKIE_TRANSPORT))
}

/// Why a request may not use the refresh cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieRefusal {
    /// The request comes from a page of an origin that is neither flexauth's nor allowed.
    ForeignOrigin,
    /// The request carries more than one refresh cookie: one of them was planted, and nothing
    /// tells which.
    Ambiguous,
}

/// The refresh token of the cookie, for a request that opted in to the cookie transport
/// from an acceptable origin; `Ok(None)` when it carries no such cookie.
///
/// # Errors
/// [`CookieRefusal::ForeignOrigin`].
pub fn refresh_cookie(request: &HttpRequest, policy: &BrowserPolicy) -> Result<Option<String>, CookieRefusal> {
    let origin = request.headers().get(header::ORIGIN).and_then(|value| value.to_str().ok());
    if !policy.allows_cookie_from(origin) {
        return Err(CookieRefusal::ForeignOrigin);
    }
    let mut cookies = cookie_values(request.headers(), REFRESH_COOKIE).filter(|value| !value.is_empty());
    match (cookies.next(), cookies.next()) {
        (Some(_), Some(_)) => Err(CookieRefusal::Ambiguous),
        (first, _) => Ok(first.map(str::to_owned)),
    }
}

/// Every value of the cookie `name` in the request's `Cookie` headers.
fn cookie_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(move |pair| pair.trim().strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

/// The value of the cookie `name` in the request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    cookie_values(headers, name).next().map(str::to_owned)
}

/// Parses `FLEXAUTH_CORS_ORIGINS`: comma-separated origins, each `scheme://host[:port]`.
///
/// # Errors
/// The first entry that is not such an origin, with the reason.
pub fn parse_origins(text: &str) -> Result<Vec<String>, String> {
    text.split(',').map(str::trim).filter(|entry| !entry.is_empty()).map(parse_origin).collect()
}

/// Parses one origin, `scheme://host[:port]`, into the form browsers send in `Origin`.
///
/// # Errors
/// Why `entry` is not such an origin.
pub fn parse_origin(entry: &str) -> Result<String, String> {
    let url = url::Url::parse(entry).map_err(|error| format!("`{entry}`: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{entry}` is not an http:// or https:// origin"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!("`{entry}` is not an origin: give only scheme, host and port"));
    }
    if entry.ends_with('/') {
        return Err(format!("`{entry}` has a trailing slash, which no browser sends in Origin"));
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn origins_are_exact_and_normalised() {
        assert_eq!(
            parse_origins("https://app.example.com, http://localhost:5173").unwrap(),
            ["https://app.example.com", "http://localhost:5173"]
        );
        assert_eq!(parse_origins("HTTPS://App.Example.com:443").unwrap(), ["https://app.example.com"]);
        assert_eq!(parse_origins("").unwrap(), Vec::<String>::new());
        for wrong in [
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/spa",
            "ftp://files.example.com",
            "*",
        ] {
            assert!(parse_origins(wrong).is_err(), "{wrong}");
        }
    }
}
