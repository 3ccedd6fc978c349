//! Token introspection (RFC 7662) for resource servers: the operator registers each service
//! that may ask (`flexauth clients create`), and a service asks, with its client credentials,
//! whether an access token or an API key is active, whose it is and what it may do.

mod model;
mod ports;
mod secret;
mod service;

pub use model::{ClientName, ClientNameError, IntrospectionClient, IntrospectionClientId};
pub use ports::IntrospectionClientRepository;
pub use secret::{ClientSecret, MalformedClientSecret, CLIENT_SECRET_PREFIX};
pub use service::{ClientRegistry, IntrospectError, IntrospectionService, CLIENTS_FRESH_FOR};

#[cfg(any(test, feature = "mocks"))]
pub use ports::MockIntrospectionClientRepository;
