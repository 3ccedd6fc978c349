use std::collections::BTreeSet;

/// Who made a request, as flexauth vouches for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The account id (an access token's `sub`).
    pub account_id: String,
    /// The credential it came with.
    pub credential: Credential,
    /// What it may do.
    pub scopes: Scopes,
}

/// The credential of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A person's access token, of this session (`sid`).
    AccessToken { session_id: String },
    /// A server's API key, of this id.
    ApiKey { key_id: String },
}

/// The scopes a caller holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scopes {
    /// An access token verified offline: its owner acting, who holds every scope the operator
    /// declared in `FLEXAUTH_API_KEY_SCOPES` (the token does not list them).
    Every,
    /// These, as flexauth's introspection listed them.
    Only(BTreeSet<String>),
}

impl Caller {
    /// Whether the caller holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        match &self.scopes {
            Scopes::Every => true,
            Scopes::Only(scopes) => scopes.contains(scope),
        }
    }

    /// The caller, if it holds every scope of `scopes`.
    ///
    /// # Errors
    /// [`crate::Refusal::InsufficientScope`] naming every scope asked for.
    pub fn require<'a>(&self, scopes: impl IntoIterator<Item = &'a str>) -> Result<&Self, crate::Refusal> {
        let scopes: Vec<&str> = scopes.into_iter().collect();
        if scopes.iter().all(|scope| self.has_scope(scope)) {
            Ok(self)
        } else {
            Err(crate::Refusal::InsufficientScope(scopes.join(" ")))
        }
    }
}
