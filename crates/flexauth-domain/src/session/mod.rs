//! Sessions: login, refresh-token rotation with reuse detection, logout, and the access
//! tokens that authenticate requests.

mod model;
mod ports;
mod service;
mod tokens;

pub use crate::newtypes::{ClientInfo, RevocationReason, SessionId};
pub use model::{RefreshDecision, RefreshSecret, Rotation, RotationNonce, Session, StoredSession};
pub use ports::{SessionRepository, TokenSigner};
pub use service::{
    AuthenticateError, LiveSessionError, LoginError, LogoutScope, ManageSessionsError, ReauthenticateError, RefreshError, SessionService, SessionSettings,
    SessionSummary,
};
pub use tokens::{AccessClaims, RefreshClaims, TokenPair, TokenRejection};

#[cfg(any(test, feature = "mocks"))]
pub use ports::{MockSessionRepository, MockTokenSigner};
