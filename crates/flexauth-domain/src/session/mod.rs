//! Sessions: login, refresh-token rotation with reuse detection, logout, and the access
//! tokens that authenticate requests.

mod model;
mod ports;
mod service;
mod tokens;

pub use model::{ClientInfo, RefreshDecision, RefreshSecret, RevocationReason, Rotation, RotationNonce, Session, SessionId, StoredSession};
pub use ports::SessionRepository;
pub use service::{
    AuthenticateError, LiveSessionError, LoginError, LogoutScope, ManageSessionsError, ReauthenticateError, RefreshError, SessionService, SessionSettings,
    SessionSummary,
};
pub use tokens::{AccessClaims, RefreshClaims, TokenPair, TokenRejection, TokenSigner};

#[cfg(any(test, feature = "mocks"))]
pub use ports::MockSessionRepository;
#[cfg(any(test, feature = "mocks"))]
pub use tokens::MockTokenSigner;
