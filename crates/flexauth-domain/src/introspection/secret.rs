use std::fmt;

use crate::secret::{LinkToken, TokenHash};
use crate::system::SecureRandom;

/// Every client secret starts with this, so secret scanners can find a leaked one.
pub const CLIENT_SECRET_PREFIX: &str = "fo_client_";

/// The `client_secret` of a resource server: `fo_client_` and 256 random bits as 43 URL-safe
/// characters, which need no escaping in HTTP Basic credentials. Printed to the operator once;
/// only its SHA-256 is stored, as for API keys: a secret this random needs no slow hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(LinkToken);

/// The text is not a client secret flexauth could have issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client secret is malformed")]
pub struct MalformedClientSecret;

impl ClientSecret {
    /// Draws a new secret.
    pub fn generate(random: &dyn SecureRandom) -> Self {
        Self(LinkToken::generate(random))
    }

    /// Checks the form of a presented secret.
    ///
    /// # Errors
    /// [`MalformedClientSecret`] for a wrong prefix, length or alphabet.
    pub fn parse(text: &str) -> Result<Self, MalformedClientSecret> {
        let token = text.strip_prefix(CLIENT_SECRET_PREFIX).ok_or(MalformedClientSecret)?;
        LinkToken::parse(token).map(Self).map_err(|_| MalformedClientSecret)
    }

    /// The digest stored in place of the secret.
    pub fn hash(&self) -> TokenHash {
        self.0.hash()
    }

    /// The secret itself, to print to the operator once.
    pub fn expose(&self) -> String {
        format!("{CLIENT_SECRET_PREFIX}{}", self.0.expose())
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::MockSecureRandom;

    fn random() -> MockSecureRandom {
        let mut random = MockSecureRandom::new();
        random.expect_fill().returning(|buffer| buffer.iter_mut().enumerate().for_each(|(at, byte)| *byte = at as u8));
        random
    }

    #[test]
    fn a_secret_round_trips_through_its_text_and_nothing_else_parses() {
        let secret = ClientSecret::generate(&random());
        let text = secret.expose();
        assert!(text.starts_with("fo_client_") && text.len() == 53, "{text}");
        assert_eq!(ClientSecret::parse(&text), Ok(secret));
        for bad in ["", "fo_client_", &text[1..], &format!("{text}x"), &text.replace("fo_client_", "fo_live_")] {
            assert_eq!(ClientSecret::parse(bad), Err(MalformedClientSecret), "{bad}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        assert_eq!(format!("{:?}", ClientSecret::generate(&random())), "ClientSecret(<redacted>)");
    }
}
