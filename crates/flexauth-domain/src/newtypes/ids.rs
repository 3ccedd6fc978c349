//! The identifiers of accounts, sessions and API keys: UUIDs that the domain draws and storage
//! hands back, each its own type so that one is never passed where another is meant.

use std::fmt;

use uuid::Uuid;

/// Defines an identifier type around a UUID.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an identifier drawn by the domain or read back from trusted storage.
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// The stable identifier of an account, the `sub` of its access tokens.
    AccountId
);

uuid_id!(
    /// The identifier of a session, the `sid` of its tokens.
    SessionId
);

uuid_id!(
    /// The identifier of an API key; public, used to list and revoke it.
    ApiKeyId
);

uuid_id!(
    /// The identifier of a second factor (an authenticator app or a passkey).
    FactorId
);

impl FactorId {
    /// Reads the identifier of a path, `None` if it is not a UUID.
    pub fn parse(text: &str) -> Option<Self> {
        Uuid::parse_str(text).ok().map(Self)
    }
}
