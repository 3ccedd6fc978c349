use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::secret::TokenHash;
use crate::system::SecureRandom;

/// Every flexauth API key starts with this, so secret scanners can find leaked keys.
pub const API_KEY_PREFIX: &str = "fo_live_";

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 32 base62 characters carry 190 bits of randomness.
const RANDOM_CHARS: usize = 32;
/// A CRC32 in base62 takes at most 6 characters.
const CHECKSUM_CHARS: usize = 6;
const KEY_LEN: usize = API_KEY_PREFIX.len() + RANDOM_CHARS + CHECKSUM_CHARS;
/// How much of a key is kept and shown to tell keys apart.
const DISPLAY_PREFIX_LEN: usize = API_KEY_PREFIX.len() + 4;

/// The plaintext of an API key: `fo_live_` + 32 random base62 characters + a 6-character
/// base62 CRC32 of those characters. The checksum lets a scanner tell a real key from noise
/// offline, and lets flexauth refuse a mistyped key without a database lookup. It is shown to
/// its owner once; only its SHA-256 is stored.
#[derive(Clone)]
pub struct ApiKeySecret(SecretString);

impl PartialEq for ApiKeySecret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for ApiKeySecret {}

/// The text is not an API key flexauth could have issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the API key is malformed")]
pub struct MalformedApiKey;

fn crc32(bytes: &[u8]) -> u32 {
    // IEEE 802.3 polynomial, bit by bit: keys are short, a table is not worth it.
    let mut crc = 0xFFFF_FFFFu32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn base62_fixed(mut value: u32) -> String {
    let mut digits = [b'0'; CHECKSUM_CHARS];
    for digit in digits.iter_mut().rev() {
        *digit = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    digits.iter().map(|&b| char::from(b)).collect()
}

impl ApiKeySecret {
    /// Draws a new key.
    pub fn generate(random: &dyn SecureRandom) -> Self {
        let mut body = String::with_capacity(RANDOM_CHARS);
        let mut buffer = [0u8; 64];
        while body.len() < RANDOM_CHARS {
            random.fill(&mut buffer);
            // Rejection sampling: 248 is the largest multiple of 62 below 256, so every
            // character is equally likely.
            for byte in buffer.iter().filter(|&&b| b < 248) {
                if body.len() == RANDOM_CHARS {
                    break;
                }
                body.push(char::from(ALPHABET[usize::from(byte % 62)]));
            }
        }
        let checksum = base62_fixed(crc32(body.as_bytes()));
        Self(SecretString::from(format!("{API_KEY_PREFIX}{body}{checksum}")))
    }

    /// Checks the form and checksum of a presented key.
    ///
    /// # Errors
    /// [`MalformedApiKey`] when the prefix, length, alphabet or checksum is wrong.
    pub fn parse(text: &str) -> Result<Self, MalformedApiKey> {
        let rest = text.strip_prefix(API_KEY_PREFIX).ok_or(MalformedApiKey)?;
        if text.len() != KEY_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(MalformedApiKey);
        }
        let (body, checksum) = rest.split_at(RANDOM_CHARS);
        if base62_fixed(crc32(body.as_bytes())) != checksum {
            return Err(MalformedApiKey);
        }
        Ok(Self(SecretString::from(text)))
    }

    /// Whether `text` looks like an API key rather than a JWT, to route a bearer token.
    pub fn looks_like_api_key(text: &str) -> bool {
        text.starts_with(API_KEY_PREFIX)
    }

    /// The digest stored in place of the key.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.expose().as_bytes())
    }

    /// The first characters, stored and listed so owners can tell their keys apart.
    pub fn display_prefix(&self) -> &str {
        &self.expose()[..DISPLAY_PREFIX_LEN]
    }

    /// The key itself, to show its owner once.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::MockSecureRandom;
    use std::sync::atomic::{AtomicU8, Ordering};

    fn random() -> MockSecureRandom {
        let counter = AtomicU8::new(0);
        let mut random = MockSecureRandom::new();
        random.expect_fill().returning(move |buffer| {
            for byte in buffer.iter_mut() {
                *byte = counter.fetch_add(37, Ordering::Relaxed);
            }
        });
        random
    }

    #[test]
    fn a_key_has_the_pinned_prefix_length_and_alphabet() {
        let key = ApiKeySecret::generate(&random());
        assert!(key.expose().starts_with("fo_live_"));
        assert_eq!(key.expose().len(), 46);
        assert!(key.expose()["fo_live_".len()..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(key.display_prefix(), &key.expose()[..12]);
    }

    #[test]
    fn a_generated_key_parses_back() {
        let key = ApiKeySecret::generate(&random());
        assert_eq!(ApiKeySecret::parse(key.expose()), Ok(key));
    }

    #[test]
    fn any_single_changed_character_is_caught_offline() {
        let key = ApiKeySecret::generate(&random()).expose().to_owned();
        for index in API_KEY_PREFIX.len()..key.len() {
            let mut bytes = key.clone().into_bytes();
            bytes[index] = if bytes[index] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(bytes).unwrap();
            assert_eq!(ApiKeySecret::parse(&changed), Err(MalformedApiKey), "position {index}");
        }
    }

    #[test]
    fn other_shapes_are_refused() {
        assert_eq!(ApiKeySecret::parse(""), Err(MalformedApiKey));
        assert_eq!(ApiKeySecret::parse("fo_test_abc"), Err(MalformedApiKey));
        assert_eq!(ApiKeySecret::parse(&format!("fo_live_{}", "!".repeat(38))), Err(MalformedApiKey));
        assert_eq!(ApiKeySecret::parse("eyJhbGciOiJFZERTQSJ9.e30.x"), Err(MalformedApiKey));
    }

    #[test]
    fn the_checksum_is_the_ieee_crc32() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        assert_eq!(format!("{:?}", ApiKeySecret::generate(&random())), "ApiKeySecret(<redacted>)");
    }
}
