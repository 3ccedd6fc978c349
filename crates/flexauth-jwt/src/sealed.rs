//! Private signing keys encrypted at rest. A database role, a replica or a backup that can
//! read the stored keys could otherwise forge tokens; sealed, they are useless without the
//! key-encryption key, which lives only in the instances' configuration.
//!
//! A sealed key is `flexauth-sealed-v1.<kek id>.<base64url(nonce ‖ ciphertext)>`:
//! XChaCha20-Poly1305 with a random 192-bit nonce, the key's storage slot as associated data
//! (a sealed key copied into another row does not open), and the key-encryption key's id (the
//! first bytes of its SHA-256) so that a wrong key is told apart from a damaged value.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

const PREFIX: &str = "flexauth-sealed-v1.";

/// Why a stored key could not be opened, or a key-encryption key not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The key-encryption key is not 32 bytes of standard or URL-safe base64.
    #[error("the key-encryption key must be 32 random bytes in base64 (`openssl rand -base64 32`)")]
    InvalidKey,
    /// The stored key was sealed under another key-encryption key.
    #[error("the signing keys in the database were encrypted with another key-encryption key")]
    WrongKey,
    /// The stored key is sealed but no key-encryption key is configured.
    #[error("the signing keys in the database are encrypted, and no key-encryption key is set")]
    KeyMissing,
    /// The sealed value is damaged or was moved to another row.
    #[error("a stored signing key is damaged (its seal does not open)")]
    Damaged,
    /// The random source failed.
    #[error("the random source failed")]
    Random,
}

/// The key that seals private signing keys.
#[derive(Clone)]
pub struct KeyEncryptionKey {
    cipher: XChaCha20Poly1305,
    id: String,
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEncryptionKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl KeyEncryptionKey {
    /// Reads a key from its base64 text (standard or URL-safe, padded or not).
    ///
    /// # Errors
    /// [`SealError::InvalidKey`] unless the text decodes to exactly 32 bytes.
    pub fn parse(text: &str) -> Result<Self, SealError> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| SealError::InvalidKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| SealError::InvalidKey)?;
        let id = Sha256::digest(bytes)[..6].iter().map(|byte| format!("{byte:02x}")).collect();
        Ok(Self { cipher: XChaCha20Poly1305::new(&bytes.into()), id })
    }

    /// Seals `pem`, stored in `slot`.
    ///
    /// # Errors
    /// [`SealError::Random`] when the random source fails.
    pub fn seal(&self, slot: &str, pem: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; 24];
        getrandom::getrandom(&mut nonce).map_err(|_| SealError::Random)?;
        let ciphertext = self
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: pem.as_bytes(), aad: slot.as_bytes() })
            .map_err(|_| SealError::Damaged)?;
        let mut sealed = nonce.to_vec();
        sealed.extend(ciphertext);
        Ok(format!("{PREFIX}{}.{}", self.id, URL_SAFE_NO_PAD.encode(sealed)))
    }

    fn open_sealed(&self, slot: &str, rest: &str) -> Result<String, SealError> {
        let (id, body) = rest.split_once('.').ok_or(SealError::Damaged)?;
        if id != self.id {
            return Err(SealError::WrongKey);
        }
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| SealError::Damaged)?;
        if bytes.len() < 24 {
            return Err(SealError::Damaged);
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| SealError::Damaged)?;
        let plain = self
            .cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: slot.as_bytes() })
            .map_err(|_| SealError::Damaged)?;
        String::from_utf8(plain).map_err(|_| SealError::Damaged)
    }
}

/// Whether a stored value is sealed (rather than a PEM in the clear).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// The PEM of the value stored in `slot`: opened with `kek` when sealed, as stored otherwise.
///
/// # Errors
/// [`SealError::KeyMissing`], [`SealError::WrongKey`] or [`SealError::Damaged`].
pub fn open(kek: Option<&KeyEncryptionKey>, slot: &str, stored: &str) -> Result<String, SealError> {
    match (stored.strip_prefix(PREFIX), kek) {
        (None, _) => Ok(stored.to_owned()),
        (Some(_), None) => Err(SealError::KeyMissing),
        (Some(rest), Some(kek)) => kek.open_sealed(slot, rest),
    }
}

/// Seals the secrets of second factors with the key-encryption key, as the signing keys are;
/// without one, they are stored as they are (and the server warns at start, as for the keys).
#[derive(Debug, Clone, Default)]
pub struct SecretSealing {
    kek: Option<KeyEncryptionKey>,
}

impl SecretSealing {
    /// Sealing with `kek`, or none.
    pub fn new(kek: Option<KeyEncryptionKey>) -> Self {
        Self { kek }
    }
}

impl flexauth_domain::mfa::SecretSealer for SecretSealing {
    fn seal(
        &self,
        slot: &str,
        secret: &str,
    ) -> Result<flexauth_domain::mfa::SealedSecret, flexauth_domain::InfraError> {
        let sealed = match &self.kek {
            Some(kek) => kek.seal(slot, secret).map_err(|error| secret_error(&error))?,
            None => secret.to_owned(),
        };
        Ok(flexauth_domain::mfa::SealedSecret(sealed))
    }

    fn open(
        &self,
        slot: &str,
        sealed: &flexauth_domain::mfa::SealedSecret,
    ) -> Result<String, flexauth_domain::InfraError> {
        open(self.kek.as_ref(), slot, &sealed.0).map_err(|error| secret_error(&error))
    }
}

/// The failure of a second factor's secret, in words about that secret rather than a key.
fn secret_error(error: &SealError) -> flexauth_domain::InfraError {
    flexauth_domain::InfraError::new(match error {
        SealError::WrongKey => "a second factor's secret was sealed with another key-encryption key",
        SealError::KeyMissing => "a second factor's secret is sealed, and no key-encryption key is set",
        SealError::Damaged => "a second factor's secret is damaged (its seal does not open)",
        SealError::Random => "the random source failed",
        SealError::InvalidKey => "the key-encryption key is not valid",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(byte: u8) -> KeyEncryptionKey {
        KeyEncryptionKey::parse(&STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn a_sealed_key_opens_with_its_key_in_its_slot_only() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI...\n-----END PRIVATE KEY-----\n";
        let sealed = kek(1).seal("kid-1", pem).unwrap();
        assert!(is_sealed(&sealed) && !sealed.contains("PRIVATE KEY"));
        assert_ne!(sealed, kek(1).seal("kid-1", pem).unwrap(), "a fresh nonce each time");
        assert_eq!(open(Some(&kek(1)), "kid-1", &sealed).unwrap(), pem);
        assert_eq!(open(Some(&kek(2)), "kid-1", &sealed), Err(SealError::WrongKey));
        assert_eq!(open(None, "kid-1", &sealed), Err(SealError::KeyMissing));
        assert_eq!(open(Some(&kek(1)), "kid-2", &sealed), Err(SealError::Damaged), "moved to another row");
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(open(Some(&kek(1)), "kid-1", &tampered), Err(SealError::Damaged));
        assert_eq!(open(Some(&kek(1)), "kid-1", pem).unwrap(), pem, "a key in the clear is read as it is");
    }

    #[test]
    fn only_32_byte_keys_are_accepted_in_either_base64_alphabet() {
        assert!(KeyEncryptionKey::parse(&STANDARD.encode([7u8; 32])).is_ok());
        assert!(KeyEncryptionKey::parse(&URL_SAFE_NO_PAD.encode([7u8; 32])).is_ok());
        assert_eq!(KeyEncryptionKey::parse(&STANDARD.encode([7u8; 16])).unwrap_err(), SealError::InvalidKey);
        assert_eq!(KeyEncryptionKey::parse("not base64!").unwrap_err(), SealError::InvalidKey);
        assert!(!format!("{:?}", kek(3)).contains("cipher"), "no key material in Debug");
    }

    #[test]
    fn a_second_factors_secret_is_sealed_in_its_slot_with_the_key_and_as_it_is_without() {
        use flexauth_domain::mfa::SecretSealer as _;
        let sealing = SecretSealing::new(Some(kek(3)));
        let sealed = sealing.seal("totp:1", "c2VjcmV0").unwrap();
        assert!(is_sealed(&sealed.0) && !sealed.0.contains("c2VjcmV0"));
        assert_eq!(sealing.open("totp:1", &sealed).unwrap(), "c2VjcmV0");
        assert!(sealing.open("totp:2", &sealed).is_err(), "moved to another factor");
        assert!(SecretSealing::new(None).open("totp:1", &sealed).is_err());
        let clear = SecretSealing::new(None).seal("totp:1", "c2VjcmV0").unwrap();
        assert_eq!(clear.0, "c2VjcmV0");
        assert_eq!(sealing.open("totp:1", &clear).unwrap(), "c2VjcmV0", "a secret stored before the key opens");
    }
}
