//! The background loop that delivers queued emails.

use std::time::Duration;

use flexauth_domain::mail::DeliveryService;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::error_chain;

/// Runs delivery passes every `interval` (at once again after a pass that did work, so a
/// backlog drains quickly) until `shutdown` turns true.
pub fn spawn(delivery: DeliveryService, interval: Duration, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut busy = false;
            match delivery.deliver_due().await {
                Ok(report) => {
                    busy = report.sent + report.rescheduled + report.failed > 0;
                    if busy {
                        tracing::info!(sent = report.sent, rescheduled = report.rescheduled, failed = report.failed, "delivery pass");
                    }
                }
                Err(error) => tracing::error!(error.chain = %error_chain(&error), "delivery pass failed"),
            }
            let pause = if busy { Duration::ZERO } else { interval };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        tracing::info!("delivery worker stopped");
    })
}
