//! Email: the messages flexauth sends, the outbox they wait in, and the delivery rules.

mod delivery;
mod letters;
mod model;
mod ports;

pub use delivery::{retry_delay, DeliveryReport, DeliveryService, DeliverySettings};
pub use letters::{EmailWriter, Letter, Letters, LinkPage, WrittenEmail};
pub use model::{EmailKind, LeaseId, OutboxEntry, OutgoingEmail};
pub use ports::{MailTransport, Outbox, SendError};

#[cfg(any(test, feature = "mocks"))]
pub use letters::{FactSheetWriter, MockEmailWriter};
#[cfg(any(test, feature = "mocks"))]
pub use ports::{MockMailTransport, MockOutbox};
