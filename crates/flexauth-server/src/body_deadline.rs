//! A deadline on reading a request's body. The HTTP server's own timeout covers the request
//! head only: a client that sends its body a byte at a time would otherwise hold its
//! connection, and a handler waiting on it, for as long as it likes. The body must have arrived
//! within the deadline of the head's arrival; after it, reading the body fails with a timeout,
//! the request is answered `408 request_timeout`, and the connection closes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::HttpMessage as _;
use futures_util::Stream;
use tokio::time::Sleep;

/// How long after its head a request's body may take to arrive (`FLEXAUTH_REQUEST_BODY_TIMEOUT`).
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Duration);

/// Whether a body read failed because its deadline passed.
pub fn is_body_timeout(error: &PayloadError) -> bool {
    matches!(error, PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

/// The middleware: every request with a body reads it through the deadline.
///
/// # Errors
/// Those of the inner service.
pub async fn middleware(
    mut request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(BodyDeadline(within)) = request.app_data::<BodyDeadline>().copied() {
        let payload = request.take_payload();
        if matches!(payload, Payload::None) {
            request.set_payload(payload);
        } else {
            let bounded = Bounded { inner: payload, deadline: Box::pin(tokio::time::sleep(within)), expired: false };
            request.set_payload(Payload::Stream { payload: Box::pin(bounded) });
        }
    }
    next.call(request).await
}

/// A body that fails once its deadline passes.
struct Bounded {
    inner: Payload,
    deadline: Pin<Box<Sleep>>,
    expired: bool,
}

impl Stream for Bounded {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        // What has arrived is read first: a body that is complete in time never times out.
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired = true;
            let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "the request body did not arrive in time");
            return Poll::Ready(Some(Err(PayloadError::Io(timeout))));
        }
        Poll::Pending
    }
}
