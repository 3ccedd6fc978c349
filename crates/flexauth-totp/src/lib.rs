//! flexauth's TOTP adapter: the codes of an authenticator app (RFC 6238 with the parameters
//! every app reads: HMAC-SHA-1, 6 digits, 30-second steps) computed by `totp-rs`, and the
//! `otpauth://` URI of an enrolment drawn as an SVG QR code by `qrcodegen`. It implements the
//! domain's [`OneTimeCodes`] port; which step a code may be for, and that a step is accepted
//! once, are the domain's rules.
//!
//! [`OneTimeCodes`]: flexauth_domain::mfa::OneTimeCodes

use flexauth_domain::mfa::{OneTimeCodes, TotpSecret};
use qrcodegen::{QrCode, QrCodeEcc};
use totp_rs::{Algorithm, TOTP};

/// The TOTP parameters of RFC 6238's defaults.
const DIGITS: usize = 6;
const STEP_SECONDS: u64 = 30;

/// RFC 6238 codes, as every authenticator app computes them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totp;

fn totp(secret: &TotpSecret, issuer: Option<String>, account: String) -> TOTP {
    // The skew is the domain's to decide (it tries the steps around now itself).
    TOTP::new_unchecked(Algorithm::SHA1, DIGITS, 0, STEP_SECONDS, secret.expose().to_vec(), issuer, account)
}

impl OneTimeCodes for Totp {
    fn code_at(&self, secret: &TotpSecret, step: u64) -> String {
        totp(secret, None, String::new()).generate(step.saturating_mul(STEP_SECONDS))
    }

    fn describe(&self, secret: &TotpSecret, issuer: &str, account: &str) -> (String, String, String) {
        // A colon separates issuer and account in the URI's label: neither may hold one.
        let issuer = issuer.replace(':', "-");
        let account = account.replace(':', "-");
        let totp = totp(secret, Some(issuer), account);
        let uri = totp.get_url();
        (totp.get_secret_base32(), uri.clone(), qr_svg(&uri))
    }
}

/// `text` as a QR code, an SVG document: one path of unit squares, with the quiet zone of
/// four modules the standard asks for, black on white whatever the page's colours.
pub fn qr_svg(text: &str) -> String {
    let Ok(code) = QrCode::encode_text(text, QrCodeEcc::Medium) else {
        // Longer than a QR code holds: an otpauth URI never is, but nothing is drawn then.
        return String::new();
    };
    let border = 4;
    let size = code.size() + 2 * border;
    let mut path = String::new();
    for y in 0..code.size() {
        for x in 0..code.size() {
            if code.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\">\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The secret of RFC 6238's test vectors for SHA-1.
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890").unwrap()
    }

    #[test]
    fn codes_are_those_of_rfc_6238_and_of_another_implementation() {
        // RFC 6238 appendix B, SHA-1, the last 6 of its 8 digits.
        for (time, expected) in
            [(59u64, "287082"), (1_111_111_109, "081804"), (1_234_567_890, "005924"), (2_000_000_000, "279037")]
        {
            assert_eq!(Totp.code_at(&rfc_secret(), time / 30), expected, "at {time}");
            assert_eq!(totp_lite::totp_custom::<totp_lite::Sha1>(30, 6, b"12345678901234567890", time), expected);
        }
    }

    #[test]
    fn an_enrolment_names_the_issuer_and_account_and_its_qr_code_is_svg() {
        let (secret, uri, svg) = Totp.describe(&rfc_secret(), "auth.example.com:8443", "ann@example.com");
        assert_eq!(secret, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            uri,
            "otpauth://totp/auth.example.com-8443:ann%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=auth.example.com-8443"
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"") && svg.ends_with("</svg>"));
        assert!(svg.contains("<path d=\"M"));
    }
}
