//! The ground floor of the domain: the value types that several concepts name (the ids of
//! accounts, sessions and API keys, email addresses, where a request came from, why a session
//! ended). They depend on nothing above them, so every concept can use them and still depend
//! only downward.

mod amr;
mod client;
mod email;
mod ids;
mod scope;

pub use amr::{AuthenticationMethod, AuthenticationMethods};
pub use client::{ClientInfo, RevocationReason};
pub use email::{EmailAddress, EmailError};
pub use ids::{AccountId, ApiKeyId, FactorId, SessionId};
pub use scope::{space_separated, Grants, Scope, ScopeError};
