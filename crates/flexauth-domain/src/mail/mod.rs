//! Email: the messages flexauth sends, the outbox they wait in, and the delivery rules.

mod delivery;
mod model;
mod ports;
mod templates;

pub use delivery::{retry_delay, DeliveryReport, DeliveryService, DeliverySettings};
pub use model::{EmailKind, LeaseId, OutboxEntry, OutgoingEmail};
pub use ports::{MailTransport, Outbox, SendError};
pub use templates::{
    account_deleted_email, account_exists_email, api_key_created_email, email_change_address_taken_email,
    email_change_confirmation_email, email_change_requested_email, escape_html, password_changed_email,
    password_reset_email, password_was_reset_email, refresh_token_reuse_email,
    session_ended_for_password_failures_email, verification_email,
};

#[cfg(any(test, feature = "mocks"))]
pub use ports::{MockMailTransport, MockOutbox};
