//! Sessions: login, refresh-token rotation with reuse detection, logout, and the access
//! tokens that authenticate requests.

mod errors;
mod model;
mod ports;
mod service;
mod tokens;

pub use crate::newtypes::{ClientInfo, RevocationReason, SessionId};
pub use errors::{
    AuthenticateError, LiveSessionError, LoginError, ManageSessionsError, ReauthenticateError, RefreshError,
};
pub use model::{RefreshDecision, RefreshSecret, Rotation, RotationNonce, Session, StoredSession};
pub use ports::{EndedSessions, SessionRepository, TokenSigner};
pub use service::{LogoutScope, SessionService, SessionSettings, SessionSummary};
pub use tokens::{AccessClaims, RefreshClaims, TokenPair, TokenRejection, TokenTimeError};

#[cfg(any(test, feature = "mocks"))]
pub use ports::{MockEndedSessions, MockSessionRepository, MockTokenSigner};
