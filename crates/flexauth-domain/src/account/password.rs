use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

use secrecy::{ExposeSecret, SecretString};

use crate::InfraError;

/// The fewest characters a new password may have (NIST SP 800-63B §3.1.1.2).
pub const PASSWORD_MIN_CHARS: usize = 8;

/// The most characters a password may have, counted as sent (what a JSON Schema `maxLength`
/// counts). It bounds the work one request can ask of the hasher (hash-DoS): even where NFKC
/// normalisation lengthens every character, the hasher reads a few KiB at most, which argon2
/// digests once before its memory-hard part.
pub const PASSWORD_MAX_CHARS: usize = 256;

/// A password as typed at login. Only the length cap applies, so that an account whose
/// password predates a policy change can still log in.
///
/// The text is NFKC-normalised (NIST SP 800-63B §5.1.1.2), so a password typed with a composed
/// "Å" on one device and "A" plus a combining ring on another is the same password.
pub struct Password(SecretString);

/// A password chosen at sign-up or reset, which passed the whole policy.
pub struct NewPassword(Password);

/// Why a password is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Fewer than [`PASSWORD_MIN_CHARS`] characters.
    #[error("the password must have at least 8 characters")]
    TooShort,
    /// More than [`PASSWORD_MAX_CHARS`] characters.
    #[error("the password must not exceed 256 characters")]
    TooLong,
    /// On the list of passwords attackers try first.
    #[error("the password is too common")]
    TooCommon,
}

impl Password {
    /// Accepts any password within the length cap.
    ///
    /// # Errors
    /// [`PasswordError::TooLong`].
    pub fn parse(text: String) -> Result<Self, PasswordError> {
        Self::parse_counted(text).map(|(password, _)| password)
    }

    /// The password and its length in characters as sent: the rules count what the user
    /// typed, so that a client can check them before it sends (the OpenAPI document states
    /// them as `minLength` and `maxLength`), and normalisation only decides what is hashed.
    fn parse_counted(text: String) -> Result<(Self, usize), PasswordError> {
        let sent_chars = text.chars().count();
        if sent_chars > PASSWORD_MAX_CHARS {
            return Err(PasswordError::TooLong);
        }
        let normalised = icu_normalizer::ComposingNormalizerBorrowed::new_nfkc().normalize(&text).into_owned();
        Ok((Self(SecretString::from(normalised)), sent_chars))
    }

    /// The plaintext, for the hasher only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl NewPassword {
    /// Applies the whole policy: length cap, minimum length (both in characters as sent),
    /// common-password list (on the normalised text). There are no composition rules (NIST SP
    /// 800-63B: they do not make passwords stronger).
    ///
    /// # Errors
    /// [`PasswordError::TooLong`], [`PasswordError::TooShort`], [`PasswordError::TooCommon`].
    pub fn parse(text: String) -> Result<Self, PasswordError> {
        let (password, sent_chars) = Password::parse_counted(text)?;
        if sent_chars < PASSWORD_MIN_CHARS {
            return Err(PasswordError::TooShort);
        }
        if is_common(password.expose()) {
            return Err(PasswordError::TooCommon);
        }
        Ok(Self(password))
    }

    /// The validated password.
    pub fn as_password(&self) -> &Password {
        &self.0
    }
}

fn is_common(password: &str) -> bool {
    static COMMON: OnceLock<HashSet<&'static str>> = OnceLock::new();
    let common = COMMON.get_or_init(|| include_str!("common-passwords.txt").lines().collect());
    common.contains(password.to_lowercase().as_str())
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

/// A password hash in PHC string format (`$argon2id$v=19$…`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string produced by a [`PasswordHasher`](super::PasswordHasher) or read back from trusted storage.
    pub fn from_phc(phc: String) -> Self {
        Self(phc)
    }

    /// The PHC string, for storage and verification.
    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// Why a hash or a verification did not happen.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The hashing pool is full, or the request waited too long for it: nothing was hashed.
    /// Callers answer at once that the server is overloaded, rather than queue without bound.
    #[error("the password hashing pool is overloaded")]
    Overloaded,
    /// The hashing backend failed.
    #[error(transparent)]
    Unexpected(#[from] InfraError),
}

/// Maps a hashing failure into each use case's error: overloaded stays overloaded, anything else
/// is unexpected. Every use case that hashes uses it.
macro_rules! from_hash_error {
    ($($error:ty),*) => {$(
        impl From<$crate::account::HashError> for $error {
            fn from(error: $crate::account::HashError) -> Self {
                match error {
                    $crate::account::HashError::Overloaded => Self::Overloaded,
                    $crate::account::HashError::Unexpected(cause) => Self::Unexpected(cause),
                }
            }
        }
    )*};
}

pub(crate) use from_hash_error;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_password_needs_eight_characters_not_bytes() {
        assert_eq!(NewPassword::parse("short".into()).err(), Some(PasswordError::TooShort));
        assert!(NewPassword::parse("correct horse".into()).is_ok());
        // Eight characters of a non-Latin script are accepted even though they are many bytes.
        assert!(NewPassword::parse("секретик".into()).is_ok());
    }

    #[test]
    fn new_password_allows_at_least_64_characters_of_any_script() {
        assert!(NewPassword::parse("語".repeat(64)).is_ok());
        assert!(NewPassword::parse("😀".repeat(64)).is_ok());
        assert_eq!(NewPassword::parse("a".repeat(257)).err(), Some(PasswordError::TooLong));
    }

    #[test]
    fn new_password_refuses_common_passwords_in_any_case() {
        assert_eq!(NewPassword::parse("password".into()).err(), Some(PasswordError::TooCommon));
        assert_eq!(NewPassword::parse("PassWord1".into()).err(), Some(PasswordError::TooCommon));
        assert_eq!(NewPassword::parse("12345678".into()).err(), Some(PasswordError::TooCommon));
    }

    #[test]
    fn new_password_has_no_composition_rules() {
        assert!(NewPassword::parse("all lower case words here".into()).is_ok());
    }

    #[test]
    fn lengths_count_the_characters_sent_not_bytes_or_the_normalised_form() {
        // 256 four-byte characters are 1 KiB, and within the cap.
        assert!(Password::parse("😀".repeat(256)).is_ok());
        assert_eq!(Password::parse("😀".repeat(257)).err(), Some(PasswordError::TooLong));
        // U+FDFA normalises to 18 characters; 256 of them are still 256 as sent.
        assert!(Password::parse("\u{FDFA}".repeat(256)).is_ok());
        // Four ligatures are four characters as sent, though they normalise to eight letters.
        assert_eq!(NewPassword::parse("\u{FB01}\u{FB01}\u{FB01}\u{FB01}".into()).err(), Some(PasswordError::TooShort));
    }

    #[test]
    fn login_password_only_enforces_the_length_cap() {
        assert!(Password::parse("short".into()).is_ok());
        assert_eq!(Password::parse("a".repeat(257)).err(), Some(PasswordError::TooLong));
    }

    #[test]
    fn passwords_are_nfkc_normalised_so_every_keyboard_types_the_same_one() {
        let composed = Password::parse("\u{00C5}ngstr\u{00F6}m".into()).unwrap();
        let decomposed = Password::parse("A\u{030A}ngstro\u{0308}m".into()).unwrap();
        assert_eq!(composed.expose(), decomposed.expose());
        assert_eq!(Password::parse("\u{FB01}ne".into()).unwrap().expose(), "fine");
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let password = Password::parse("hunter2hunter2".into()).unwrap();
        assert_eq!(format!("{password:?}"), "Password(<redacted>)");
        let hash = PasswordHash::from_phc("$argon2id$v=19$secret".into());
        assert_eq!(format!("{hash:?}"), "PasswordHash(<redacted>)");
    }
}
