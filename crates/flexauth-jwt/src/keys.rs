//! Ed25519 signing keys: generation, PEM loading, key ids and their JWK form.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Why a signing key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The PEM is not a PKCS#8 Ed25519 private key.
    #[error("the signing key is not a PKCS#8 Ed25519 private key in PEM form")]
    NotEd25519Pem,
    /// The operating system's random source failed.
    #[error("the random source failed: {0}")]
    Random(getrandom::Error),
    /// Encoding the generated key failed.
    #[error("could not encode the generated key")]
    Encoding,
}

/// An Ed25519 key pair with its RFC 7638 thumbprint as key id.
#[derive(Clone)]
pub struct SigningKeyPair {
    kid: String,
    private_pkcs8_der: Vec<u8>,
    public_key: [u8; 32],
}

impl std::fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyPair").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// One public key in JWK form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub x: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub usage: &'static str,
    pub alg: &'static str,
}

/// A JWK set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl SigningKeyPair {
    /// Generates a new key from the operating system's random source and returns it as PKCS#8
    /// PEM, the form in which it is persisted.
    ///
    /// # Errors
    /// [`KeyError::Random`] or [`KeyError::Encoding`].
    pub fn generate_pem() -> Result<String, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(KeyError::Random)?;
        let key = SigningKey::from_bytes(&seed);
        let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|_| KeyError::Encoding)?;
        Ok(pem.to_string())
    }

    /// Loads a PKCS#8 PEM Ed25519 private key (as written by `openssl genpkey -algorithm
    /// ed25519`).
    ///
    /// # Errors
    /// [`KeyError::NotEd25519Pem`].
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let key = SigningKey::from_pkcs8_pem(pem.trim()).map_err(|_| KeyError::NotEd25519Pem)?;
        let der = key.to_pkcs8_der().map_err(|_| KeyError::Encoding)?;
        let public_key = key.verifying_key().to_bytes();
        Ok(Self { kid: thumbprint(&public_key), private_pkcs8_der: der.as_bytes().to_vec(), public_key })
    }

    /// The key id: the RFC 7638 JWK thumbprint, so the same key always gets the same id on
    /// every instance.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    pub(crate) fn private_pkcs8_der(&self) -> &[u8] {
        &self.private_pkcs8_der
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP",
            crv: "Ed25519",
            x: URL_SAFE_NO_PAD.encode(self.public_key),
            kid: self.kid.clone(),
            usage: "sig",
            alg: "EdDSA",
        }
    }
}

fn thumbprint(public_key: &[u8; 32]) -> String {
    // RFC 7638: the required members in lexicographic order, no white space.
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, URL_SAFE_NO_PAD.encode(public_key));
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}
