//! How a login was made, as the `amr` (authentication methods references, RFC 8176) and `acr`
//! claims of its access tokens say it.

use std::fmt;

/// One authentication method of RFC 8176 §2 that flexauth uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuthenticationMethod {
    /// `pwd`: the account's password.
    Password,
    /// `otp`: a one-time code, from an authenticator app (TOTP) or a recovery code.
    OneTimeCode,
    /// `hwk`: a passkey bound to a hardware authenticator.
    HardwareKey,
    /// `swk`: a passkey held in software (a synced passkey).
    SoftwareKey,
}

impl AuthenticationMethod {
    const ALL: [Self; 4] = [Self::Password, Self::OneTimeCode, Self::HardwareKey, Self::SoftwareKey];

    /// The value RFC 8176 gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "pwd",
            Self::OneTimeCode => "otp",
            Self::HardwareKey => "hwk",
            Self::SoftwareKey => "swk",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The methods a session's login used, kept across its refreshes. Two or more methods make a
/// multi-factor login: its tokens say `mfa` too, and `acr` `aal2`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AuthenticationMethods(u8);

impl AuthenticationMethods {
    /// A login with the password alone.
    pub fn password() -> Self {
        Self::default().with(AuthenticationMethod::Password)
    }

    /// These methods and `method`.
    #[must_use]
    pub fn with(self, method: AuthenticationMethod) -> Self {
        Self(self.0 | method.bit())
    }

    /// Whether `method` was used.
    pub fn contains(self, method: AuthenticationMethod) -> bool {
        self.0 & method.bit() != 0
    }

    /// Whether the login used more than one factor: two methods, or a passkey alone (flexauth
    /// asks for user verification, so a passkey proves what the person has and what they know
    /// or are).
    pub fn is_multi_factor(self) -> bool {
        self.0.count_ones() >= 2
            || self.contains(AuthenticationMethod::HardwareKey)
            || self.contains(AuthenticationMethod::SoftwareKey)
    }

    /// The `amr` claim: each method's value, then `mfa` for a multi-factor login.
    pub fn amr(self) -> Vec<&'static str> {
        let mut values: Vec<&'static str> = AuthenticationMethod::ALL
            .into_iter()
            .filter(|method| self.contains(*method))
            .map(AuthenticationMethod::as_str)
            .collect();
        if self.is_multi_factor() {
            values.push("mfa");
        }
        values
    }

    /// The `acr` claim: `aal2` for a multi-factor login, `aal1` otherwise (the authenticator
    /// assurance levels of NIST SP 800-63B).
    pub fn acr(self) -> &'static str {
        if self.is_multi_factor() {
            "aal2"
        } else {
            "aal1"
        }
    }

    /// The stored form: the `amr` values, space-separated.
    pub fn to_stored(self) -> String {
        self.amr().join(" ")
    }

    /// Reads the stored form (or an `amr` claim joined with spaces); values it does not know,
    /// `mfa` among them, are skipped, since they follow from the others.
    pub fn from_stored(stored: &str) -> Self {
        stored.split_whitespace().fold(Self::default(), |methods, value| {
            match AuthenticationMethod::ALL.into_iter().find(|method| method.as_str() == value) {
                Some(method) => methods.with(method),
                None => methods,
            }
        })
    }
}

impl fmt::Debug for AuthenticationMethods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.amr()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_login_is_single_factor_and_a_code_makes_it_multi_factor() {
        let password = AuthenticationMethods::password();
        assert_eq!((password.amr(), password.acr()), (vec!["pwd"], "aal1"));
        let both = password.with(AuthenticationMethod::OneTimeCode);
        assert_eq!((both.amr(), both.acr()), (vec!["pwd", "otp", "mfa"], "aal2"));
        assert_eq!(AuthenticationMethods::from_stored(&both.to_stored()), both);
        assert_eq!(AuthenticationMethods::from_stored("pwd unknown mfa"), password);
        let passkey = AuthenticationMethods::default().with(AuthenticationMethod::SoftwareKey);
        assert_eq!((passkey.amr(), passkey.acr()), (vec!["swk", "mfa"], "aal2"));
    }
}
