//! Scopes: what an API key may do at the operator's API. The operator declares the vocabulary
//! (`FLEXAUTH_API_KEY_SCOPES`); a key carries some of it; a person's access token carries all
//! of it, since it is its owner acting.

use std::collections::BTreeSet;

/// One scope: an RFC 6749 scope token (printable ASCII but space, `"` and `\`), at most 64
/// characters, such as `invoices:read`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(String);

/// Why a text is not a scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a scope: 1 to 64 printable ASCII characters, without spaces, quotes or backslashes")]
pub struct ScopeError(pub String);

impl Scope {
    /// Validates a scope token.
    ///
    /// # Errors
    /// [`ScopeError`] for an empty, overlong or ill-formed token.
    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        let valid =
            (1..=64).contains(&text.len()) && text.bytes().all(|byte| matches!(byte, 0x21 | 0x23..=0x5B | 0x5D..=0x7E));
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(ScopeError(text.chars().take(80).collect()))
        }
    }

    /// The scope as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The scopes a caller holds: every declared one (an access token: its owner acting), or those
/// its API key carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grants {
    /// Every scope of the vocabulary.
    Every,
    /// These scopes only (none, for a key created without any).
    Only(BTreeSet<Scope>),
}

impl Grants {
    /// Whether `scope` is granted. Only a declared scope can be: a key keeps a scope the
    /// operator has since removed from `vocabulary`, and that scope grants nothing any more.
    pub fn allows(&self, scope: &Scope, vocabulary: &BTreeSet<Scope>) -> bool {
        vocabulary.contains(scope)
            && match self {
                Self::Every => true,
                Self::Only(scopes) => scopes.contains(scope),
            }
    }

    /// The scopes granted, in order: those of `vocabulary` that [`allows`](Self::allows).
    pub fn within<'a>(&'a self, vocabulary: &'a BTreeSet<Scope>) -> impl Iterator<Item = &'a Scope> + 'a {
        vocabulary.iter().filter(move |scope| self.allows(scope, vocabulary))
    }
}

/// Scopes written as one space-separated string, as RFC 6749 and flexauth's headers write
/// them.
pub fn space_separated<'a>(scopes: impl IntoIterator<Item = &'a Scope>) -> String {
    scopes.into_iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_is_a_printable_token_without_spaces_quotes_or_backslashes() {
        assert_eq!(Scope::parse("invoices:read").map(|scope| scope.as_str().to_owned()), Ok("invoices:read".into()));
        for bad in ["", "two words", "quo\"te", "back\\slash", "ünïcode", &"a".repeat(65)] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_person_holds_every_declared_scope_and_a_key_only_its_own() {
        let scope = |text: &str| Scope::parse(text).unwrap();
        let vocabulary: BTreeSet<Scope> = [scope("a"), scope("b")].into();
        let key = Grants::Only([scope("b"), scope("removed")].into());
        assert!(Grants::Every.allows(&scope("a"), &vocabulary));
        assert!(!key.allows(&scope("a"), &vocabulary));
        assert_eq!(space_separated(Grants::Every.within(&vocabulary)), "a b");
        assert_eq!(space_separated(key.within(&vocabulary)), "b");
    }

    #[test]
    fn an_undeclared_scope_is_granted_to_nobody() {
        let scope = |text: &str| Scope::parse(text).unwrap();
        let vocabulary: BTreeSet<Scope> = [scope("a")].into();
        assert!(!Grants::Every.allows(&scope("typo"), &vocabulary));
        assert!(!Grants::Only([scope("removed")].into()).allows(&scope("removed"), &vocabulary));
    }
}
