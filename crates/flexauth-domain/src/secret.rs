//! High-entropy secrets handed to users (verification links, refresh tokens) and the digests
//! stored in their place.
//!
//! These secrets carry at least 256 bits of randomness, so a single SHA-256 is enough to make
//! the stored value useless to someone who reads the database: there is nothing to brute-force.
//! SHA-256 here is a pure function like parsing, not a crypto backend behind a port.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::system::{random_array, SecureRandom};

/// The SHA-256 digest under which a secret is stored and looked up.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The digest of `secret`.
    pub fn of(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }

    /// Rebuilds a digest read back from trusted storage.
    pub fn from_storage(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes, for storage.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A digest is not secret, but printing it in full invites grepping logs for it; the
        // first bytes are enough to tell two apart while debugging.
        write!(f, "TokenHash({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

/// A random single-use secret that travels in a link (email verification, later password
/// reset): 256 bits, written as 43 URL-safe characters.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkToken([u8; 32]);

impl LinkToken {
    /// Draws a fresh token.
    pub fn generate(random: &dyn SecureRandom) -> Self {
        Self(random_array(random))
    }

    /// Parses the text a user sent back.
    ///
    /// # Errors
    /// [`MalformedToken`] when `text` is not 43 URL-safe base64 characters.
    pub fn parse(text: &str) -> Result<Self, MalformedToken> {
        // Exactly the 43 characters of the link: no white space around them, no padding, no
        // non-zero trailing bits, so one token has one spelling (the OpenAPI pattern).
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| MalformedToken)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| MalformedToken)?;
        Ok(Self(bytes))
    }

    /// The text form, for building the link. Handle with care: this is the secret itself.
    pub fn expose(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The digest stored in place of the token.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkToken(<redacted>)")
    }
}

/// A random secret that a browser keeps in an httpOnly cookie after a successful login, so
/// that the account recognises the device later (the OWASP "device cookie"): a client holding
/// one is exempt from the account's failed-login limit. 256 bits; only its digest is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceToken(LinkToken);

impl DeviceToken {
    /// Draws a fresh token.
    pub fn generate(random: &dyn SecureRandom) -> Self {
        Self(LinkToken::generate(random))
    }

    /// Parses the cookie value a client sent back.
    ///
    /// # Errors
    /// [`MalformedToken`] when it is not one flexauth could have issued.
    pub fn parse(text: &str) -> Result<Self, MalformedToken> {
        LinkToken::parse(text).map(Self)
    }

    /// The text form, for the cookie. This is the secret itself.
    pub fn expose(&self) -> String {
        self.0.expose()
    }

    /// The digest stored in place of the token.
    pub fn hash(&self) -> TokenHash {
        self.0.hash()
    }
}

impl fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceToken(<redacted>)")
    }
}

/// The text offered as a token is not one flexauth could have issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the token is malformed")]
pub struct MalformedToken;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::MockSecureRandom;

    fn random_filled_with(byte: u8) -> MockSecureRandom {
        let mut random = MockSecureRandom::new();
        random.expect_fill().returning(move |buffer| buffer.fill(byte));
        random
    }

    #[test]
    fn link_token_round_trips_through_its_text_form() {
        let token = LinkToken::generate(&random_filled_with(7));
        let text = token.expose();
        assert_eq!(text.len(), 43);
        assert_eq!(LinkToken::parse(&text), Ok(token));
    }

    #[test]
    fn link_token_refuses_text_of_the_wrong_length_or_alphabet() {
        assert_eq!(LinkToken::parse("abc"), Err(MalformedToken));
        assert_eq!(LinkToken::parse(&"!".repeat(43)), Err(MalformedToken));
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let token = LinkToken::generate(&random_filled_with(1));
        assert_eq!(format!("{token:?}"), "LinkToken(<redacted>)");
    }
}
