//! The background loop that handles account requests (sign-up, resend, forgot) and delivers
//! queued emails.

use std::sync::Arc;
use std::time::Duration;

use flexauth_domain::account::AccountService;
use flexauth_domain::mail::DeliveryService;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::error::error_chain;

/// Runs passes every `interval`, at once again after a pass that did work (so a backlog drains
/// quickly), and at once when `wakeup` is notified (a request was just accepted on this
/// instance), until `shutdown` turns true.
pub fn spawn(
    accounts: AccountService,
    delivery: DeliveryService,
    interval: Duration,
    wakeup: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut busy = false;
            match accounts.handle_due_requests().await {
                Ok(report) => {
                    for (request_id, error) in &report.failed {
                        tracing::error!(%request_id, error.chain = %error_chain(error), "account request failed; it is tried again after its lease");
                    }
                    busy |= report.handled > 0;
                }
                Err(error) => tracing::error!(error.chain = %error_chain(&error), "account request pass failed"),
            }
            match delivery.deliver_due().await {
                Ok(report) => {
                    let delivered = report.sent + report.rescheduled + report.failed > 0;
                    if delivered {
                        tracing::info!(sent = report.sent, rescheduled = report.rescheduled, failed = report.failed, "delivery pass");
                    }
                    busy |= delivered;
                }
                Err(error) => tracing::error!(error.chain = %error_chain(&error), "delivery pass failed"),
            }
            let pause = if busy { Duration::ZERO } else { interval };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = wakeup.notified() => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        tracing::info!("background worker stopped");
    })
}
