use std::fmt;
use std::str::FromStr;

/// A syntactically valid email address, normalised to lower case with its domain in ASCII.
///
/// flexauth treats addresses case-insensitively, as every mail provider in practice does, so
/// `Ann@Example.com` and `ann@example.com` are one account. An internationalised domain is
/// stored in its IDNA (punycode) form, so `ann@bücher.example` and `ann@xn--bcher-kva.example`
/// are one account too; the local part is kept as typed, lower-cased.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

/// Why a text is not an email address flexauth accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Nothing but white space was given.
    #[error("the email address is empty")]
    Empty,
    /// Longer than the 254 characters an SMTP path allows.
    #[error("the email address is longer than 254 characters")]
    TooLong,
    /// Not of the form `local@domain` with a valid domain.
    #[error("the email address is not valid")]
    Invalid,
}

/// The longest address SMTP can deliver to (RFC 5321 path limit minus the angle brackets).
const MAX_EMAIL_LEN: usize = 254;

impl EmailAddress {
    /// Validates and normalises `text`.
    ///
    /// # Errors
    /// [`EmailError::Empty`], [`EmailError::TooLong`] or [`EmailError::Invalid`].
    pub fn parse(text: &str) -> Result<Self, EmailError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.len() > MAX_EMAIL_LEN {
            return Err(EmailError::TooLong);
        }
        // Display names ("Ann <ann@example.com>") and addresses without a dot in the domain
        // are legal in RFC 5322 but never what a sign-up form means.
        let parsed = email_address::EmailAddress::from_str(trimmed).map_err(|_| EmailError::Invalid)?;
        if parsed.display_part() != "" || !parsed.domain().contains('.') || parsed.domain().starts_with('[') {
            return Err(EmailError::Invalid);
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or(EmailError::Invalid)?;
        let domain = idna::domain_to_ascii(domain).map_err(|_| EmailError::Invalid)?;
        let normalised = format!("{}@{domain}", local.to_lowercase());
        if normalised.len() > MAX_EMAIL_LEN {
            return Err(EmailError::TooLong);
        }
        Ok(Self(normalised))
    }

    /// Rebuilds an address read back from trusted storage, where it was stored normalised.
    pub fn from_storage(text: String) -> Self {
        Self(text)
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain part, which is what logs may show instead of the full address.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, domain)| domain)
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Full addresses are personal data and stay out of logs; the domain helps diagnose
        // delivery problems.
        write!(f, "EmailAddress(…@{})", self.domain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_lowercases_and_trims() {
        let email = EmailAddress::parse("  Ann.Lee@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "ann.lee@example.com");
        assert_eq!(email.domain(), "example.com");
    }

    #[test]
    fn parse_refuses_what_a_signup_form_never_means() {
        assert_eq!(EmailAddress::parse(""), Err(EmailError::Empty));
        assert_eq!(EmailAddress::parse("no-at-sign"), Err(EmailError::Invalid));
        assert_eq!(EmailAddress::parse("ann@localhost"), Err(EmailError::Invalid));
        assert_eq!(EmailAddress::parse("Ann <ann@example.com>"), Err(EmailError::Invalid));
        assert_eq!(EmailAddress::parse("ann@@example.com"), Err(EmailError::Invalid));
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(EmailAddress::parse(&long), Err(EmailError::TooLong));
    }

    #[test]
    fn an_internationalised_domain_is_one_account_in_either_form() {
        let unicode = EmailAddress::parse("Ann@B\u{00FC}cher.Example").unwrap();
        let ascii = EmailAddress::parse("ann@xn--bcher-kva.example").unwrap();
        assert_eq!(unicode, ascii);
        assert_eq!(unicode.as_str(), "ann@xn--bcher-kva.example");
    }

    #[test]
    fn debug_output_hides_the_local_part() {
        let email = EmailAddress::parse("secret.person@example.com").unwrap();
        assert_eq!(format!("{email:?}"), "EmailAddress(…@example.com)");
    }
}
