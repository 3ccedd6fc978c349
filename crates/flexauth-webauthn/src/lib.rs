//! flexauth's passkey adapter: WebAuthn ceremonies by `webauthn-rs`. It implements the
//! domain's [`Passkeys`] port: creation and request options as the JSON a browser's
//! `PublicKeyCredential.parse…OptionsFromJSON` reads, and the verification of what
//! `credential.toJSON()` sends back. The state between the two steps is returned as text for
//! the domain to store, so that any instance finishes a ceremony another began.
//!
//! No attestation is asked for. User verification is required (the passkey's PIN or
//! biometric), so a passkey alone is a multi-factor login. A signature counter of 0, which
//! synced passkeys report, is accepted; a non-zero counter that does not go up is refused.
//!
//! [`Passkeys`]: flexauth_domain::mfa::Passkeys

use flexauth_domain::mfa::{NewPasskey, PasskeyRefusal, PasskeyUse, Passkeys, PresentedPasskey};
use flexauth_domain::InfraError;
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;
use webauthn_rs::prelude::{
    Base64UrlSafeData, DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

/// Why the relying party could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("the WebAuthn relying party is not valid (FLEXAUTH_WEBAUTHN_RP_ID, FLEXAUTH_WEBAUTHN_ORIGINS): {0}")]
pub struct WebauthnConfigError(String);

/// The passkey ceremonies of one relying party.
pub struct WebauthnPasskeys {
    webauthn: Webauthn,
}

impl std::fmt::Debug for WebauthnPasskeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebauthnPasskeys").finish_non_exhaustive()
    }
}

impl WebauthnPasskeys {
    /// The relying party `rp_id` (a domain, e.g. `example.com`), named `rp_name` to people,
    /// whose pages may run the ceremonies from `origins`. Each origin's host must be `rp_id`
    /// or below it.
    ///
    /// # Errors
    /// [`WebauthnConfigError`] without an origin, or with an origin outside `rp_id`.
    pub fn new(rp_id: &str, rp_name: &str, origins: &[Url]) -> Result<Self, WebauthnConfigError> {
        let (first, others) = origins.split_first().ok_or_else(|| WebauthnConfigError("no origin".to_owned()))?;
        let mut builder = WebauthnBuilder::new(rp_id, first)
            .map_err(|error| WebauthnConfigError(format!("{first}: {error}")))?
            .rp_name(rp_name);
        for origin in others {
            builder = builder.append_allowed_origin(origin);
        }
        let webauthn = builder.build().map_err(|error| WebauthnConfigError(error.to_string()))?;
        Ok(Self { webauthn })
    }
}

/// The state kept between the two steps of an authentication: of a login's second step (the
/// account's passkeys allowed) or of a passwordless one (any discoverable passkey).
#[derive(Serialize, Deserialize)]
enum AuthenticationState {
    Allowed(PasskeyAuthentication),
    Discoverable(DiscoverableAuthentication),
}

fn json<T: Serialize>(value: &T) -> Result<String, InfraError> {
    serde_json::to_string(value).map_err(InfraError::new)
}

fn invalid(what: impl std::fmt::Display) -> PasskeyRefusal {
    PasskeyRefusal::Invalid(what.to_string())
}

fn refusal(error: WebauthnError) -> PasskeyRefusal {
    match error {
        WebauthnError::CredentialPossibleCompromise => PasskeyRefusal::CounterWentBackwards,
        other => invalid(other),
    }
}

/// The `publicKey` member of options, which is what the browser's JSON parsers read.
fn public_key_of(options: serde_json::Value) -> Result<String, InfraError> {
    match options {
        serde_json::Value::Object(mut object) => {
            json(&object.remove("publicKey").ok_or_else(|| InfraError::new("options without publicKey"))?)
        }
        _ => Err(InfraError::new("options are not an object")),
    }
}

impl Passkeys for WebauthnPasskeys {
    fn start_registration(
        &self,
        user: Uuid,
        user_name: &str,
        exclude: &[String],
    ) -> Result<(String, String), InfraError> {
        let exclude = exclude
            .iter()
            .filter_map(|id| serde_json::from_value::<Base64UrlSafeData>(serde_json::Value::String(id.clone())).ok())
            .map(|id| id.to_vec().into())
            .collect::<Vec<_>>();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(user, user_name, user_name, Some(exclude))
            .map_err(InfraError::new)?;
        let mut options = serde_json::to_value(&options).map_err(InfraError::new)?;
        // A discoverable credential when the authenticator can make one, so that the passkey
        // also logs in with nothing typed.
        options["publicKey"]["authenticatorSelection"]["residentKey"] = serde_json::json!("preferred");
        Ok((public_key_of(options)?, json(&state)?))
    }

    fn finish_registration(&self, credential: &str, state: &str) -> Result<NewPasskey, PasskeyRefusal> {
        let credential: RegisterPublicKeyCredential = serde_json::from_str(credential).map_err(invalid)?;
        let state: PasskeyRegistration = serde_json::from_str(state).map_err(invalid)?;
        let passkey = self.webauthn.finish_passkey_registration(&credential, &state).map_err(refusal)?;
        let credential_id = serde_json::to_value(passkey.cred_id())
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .ok_or_else(|| invalid("the credential id"))?;
        Ok(NewPasskey { credential_id, stored: serde_json::to_string(&passkey).map_err(invalid)? })
    }

    fn start_authentication(&self, passkeys: &[String]) -> Result<(String, String), InfraError> {
        if passkeys.is_empty() {
            let (options, state) = self.webauthn.start_discoverable_authentication().map_err(InfraError::new)?;
            let mut options = serde_json::to_value(&options).map_err(InfraError::new)?;
            // A button that logs in, not the autofill of a username field: no conditional
            // mediation.
            if let Some(object) = options.as_object_mut() {
                object.remove("mediation");
            }
            return Ok((public_key_of(options)?, json(&AuthenticationState::Discoverable(state))?));
        }
        let passkeys: Vec<Passkey> = passkeys
            .iter()
            .map(|stored| serde_json::from_str(stored))
            .collect::<Result<_, _>>()
            .map_err(InfraError::new)?;
        let (options, state) = self.webauthn.start_passkey_authentication(&passkeys).map_err(InfraError::new)?;
        let options = serde_json::to_value(&options).map_err(InfraError::new)?;
        Ok((public_key_of(options)?, json(&AuthenticationState::Allowed(state))?))
    }

    fn presented(&self, credential: &str) -> Result<PresentedPasskey, PasskeyRefusal> {
        let credential: PublicKeyCredential = serde_json::from_str(credential).map_err(invalid)?;
        let credential_id = serde_json::to_value(&credential.raw_id)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .ok_or_else(|| invalid("the credential id"))?;
        let user = credential.get_user_unique_id().and_then(|handle| Uuid::from_slice(handle).ok());
        Ok(PresentedPasskey { credential_id, user })
    }

    fn finish_authentication(
        &self,
        credential: &str,
        state: &str,
        passkey: &str,
    ) -> Result<PasskeyUse, PasskeyRefusal> {
        let credential: PublicKeyCredential = serde_json::from_str(credential).map_err(invalid)?;
        let state: AuthenticationState = serde_json::from_str(state).map_err(invalid)?;
        let mut passkey: Passkey = serde_json::from_str(passkey).map_err(invalid)?;
        let result = match state {
            AuthenticationState::Allowed(state) => self.webauthn.finish_passkey_authentication(&credential, &state),
            AuthenticationState::Discoverable(state) => {
                self.webauthn.finish_discoverable_authentication(&credential, state, &[DiscoverableKey::from(&passkey)])
            }
        }
        .map_err(refusal)?;
        let stored = match passkey.update_credential(&result) {
            Some(true) => Some(serde_json::to_string(&passkey).map_err(invalid)?),
            _ => None,
        };
        Ok(PasskeyUse { stored, synced: result.backup_eligible() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relying_party() -> WebauthnPasskeys {
        let origin = Url::parse("http://localhost:8080").unwrap();
        WebauthnPasskeys::new("localhost", "flexauth", &[origin]).unwrap()
    }

    #[test]
    fn registration_options_ask_for_a_discoverable_passkey_with_user_verification_and_no_attestation() {
        let user = Uuid::from_u128(7);
        let (options, state) = relying_party().start_registration(user, "ann@example.com", &[]).unwrap();
        let options: serde_json::Value = serde_json::from_str(&options).unwrap();
        assert_eq!(options["rp"]["id"], "localhost");
        assert_eq!(options["user"]["name"], "ann@example.com");
        assert_eq!(options["attestation"], "none");
        assert_eq!(options["authenticatorSelection"]["residentKey"], "preferred");
        assert_eq!(options["authenticatorSelection"]["userVerification"], "required");
        assert!(options["challenge"].as_str().is_some_and(|challenge| challenge.len() >= 43));
        assert!(serde_json::from_str::<PasskeyRegistration>(&state).is_ok());
    }

    #[test]
    fn a_passwordless_request_allows_any_passkey_and_is_no_autofill() {
        let (options, _) = relying_party().start_authentication(&[]).unwrap();
        let options: serde_json::Value = serde_json::from_str(&options).unwrap();
        assert_eq!(options["rpId"], "localhost");
        assert!(options.get("allowCredentials").is_none_or(|allowed| allowed.as_array().is_some_and(Vec::is_empty)));
        assert!(options.get("mediation").is_none());
    }

    #[test]
    fn an_answer_that_is_no_credential_is_refused() {
        let (_, state) = relying_party().start_registration(Uuid::nil(), "ann@example.com", &[]).unwrap();
        assert!(matches!(relying_party().finish_registration("{}", &state), Err(PasskeyRefusal::Invalid(_))));
        assert!(matches!(relying_party().presented("not json"), Err(PasskeyRefusal::Invalid(_))));
    }

    #[test]
    fn an_origin_outside_the_relying_party_is_refused_at_start() {
        let elsewhere = Url::parse("https://evil.example").unwrap();
        assert!(WebauthnPasskeys::new("example.com", "flexauth", &[elsewhere]).is_err());
        assert!(WebauthnPasskeys::new("example.com", "flexauth", &[]).is_err());
    }
}
