//! The background loop that handles account requests (sign-up, resend, forgot) and delivers
//! queued emails.

use std::sync::Arc;
use std::time::Duration;

use flexauth_domain::account::AccountService;
use flexauth_domain::housekeeping::HousekeepingService;
use flexauth_domain::mail::DeliveryService;
use flexauth_domain::usage::UsageService;
use flexauth_domain::webhook::WebhookDelivery;
use flexauth_store::WorkSignals;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::error::error_chain;

/// How often the worker purges what retention says is due (and once at start).
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// What the background worker runs.
#[derive(Debug, Clone)]
pub struct Jobs {
    pub accounts: AccountService,
    pub delivery: DeliveryService,
    pub housekeeping: HousekeepingService,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// How often a worker looks for work: every `polling` where the database announces nothing
/// (SQLite, a pooler in transaction mode) or while the connection that hears the announcements
/// is down; every `announced` while it is up, woken between by the announcements.
#[derive(Debug, Clone)]
pub struct Pace {
    pub polling: Duration,
    pub announced: Duration,
    pub signals: Option<Arc<WorkSignals>>,
}

impl Pace {
    /// The pause before the next look.
    pub fn interval(&self) -> Duration {
        match &self.signals {
            Some(signals) if signals.listening() => self.announced,
            _ => self.polling,
        }
    }

    /// Waits until `signal` of the announcements is notified, or forever when nothing is
    /// announced.
    pub async fn heard(&self, signal: impl Fn(&WorkSignals) -> &Notify) {
        match &self.signals {
            Some(signals) => signal(signals).notified().await,
            None => std::future::pending().await,
        }
    }
}

/// Runs passes at `pace`, at once again after a pass that did work (so a backlog drains
/// quickly), at once when `wakeup` is notified (a request was just accepted on this
/// instance), and at once when the database announces new mail or account requests (`heard`),
/// until `shutdown` turns true. Every ten minutes a pass also purges what retention
/// says is due, batch after batch until nothing is left.
pub fn spawn(jobs: Jobs, pace: Pace, wakeup: Arc<Notify>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    let Jobs { accounts, delivery, housekeeping, metrics } = jobs;
    tokio::spawn(async move {
        let mut last_purge: Option<tokio::time::Instant> = None;
        loop {
            let mut busy = false;
            if last_purge.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
                match housekeeping.purge().await {
                    Ok(report) if report.total() > 0 => {
                        tracing::info!(
                            audit_events = report.audit_events,
                            sessions = report.sessions,
                            unverified_accounts = report.unverified_accounts,
                            links = report.links,
                            counters = report.counters,
                            ceremonies = report.ceremonies,
                            "purge pass"
                        );
                        // More may be due: the next pass purges again at once.
                        busy = true;
                    }
                    Ok(_) => last_purge = Some(tokio::time::Instant::now()),
                    Err(error) => {
                        tracing::error!(error.chain = %error_chain(&error), "purge pass failed");
                        last_purge = Some(tokio::time::Instant::now());
                    }
                }
            }
            match accounts.handle_due_requests().await {
                Ok(report) => {
                    for (request_id, error) in &report.failed {
                        tracing::error!(%request_id, error.chain = %error_chain(error), "account request failed; it \
                            is tried again after its lease");
                    }
                    busy |= report.handled > 0;
                }
                Err(error) => tracing::error!(error.chain = %error_chain(&error), "account request pass failed"),
            }
            match delivery.deliver_due().await {
                Ok(report) => {
                    metrics.mail_sent(report.sent, report.rescheduled, report.failed);
                    let delivered = report.sent + report.rescheduled + report.failed > 0;
                    if delivered {
                        tracing::info!(
                            sent = report.sent,
                            rescheduled = report.rescheduled,
                            failed = report.failed,
                            "delivery pass"
                        );
                    }
                    busy |= delivered;
                }
                Err(error) => tracing::error!(error.chain = %error_chain(&error), "delivery pass failed"),
            }
            let pause = if busy { Duration::ZERO } else { pace.interval() };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = wakeup.notified() => {}
                () = pace.heard(|signals| &signals.jobs) => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        tracing::info!("background worker stopped");
    })
}

/// Writes the request counts every `interval` (a second in production: what a crash can
/// lose) and once more when `shutdown` turns true, after the HTTP server has stopped taking
/// requests, so a graceful stop loses none.
pub fn spawn_usage_flusher(
    usage: UsageService,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = ticks.tick() => false,
                _ = shutdown.changed() => true,
            };
            if let Err(error) = usage.flush().await {
                tracing::error!(error.chain = %error_chain(&error), "writing the request counts failed; they are \
                    kept for the next try");
            }
            if stopping {
                break;
            }
        }
    })
}

/// Delivers webhook messages until `shutdown` turns true: claims the due messages this
/// instance has room for and posts each on its own task, so a receiver that hangs holds up
/// only its own messages, never this loop, a request, or another endpoint. Claims again as soon
/// as a post ends (room was made) or the database announces new messages (`announced`), else
/// after the interval of `pace`. At shutdown it waits for the posts
/// under way (each ends within the transport's deadline) so their outcomes are recorded.
pub fn spawn_webhooks(
    delivery: WebhookDelivery,
    metrics: Arc<crate::metrics::Metrics>,
    pace: Pace,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut in_flight = tokio::task::JoinSet::new();
        let finished = Arc::new(Notify::new());
        loop {
            match delivery.claim().await {
                Ok(claimed) => {
                    for message in claimed {
                        let (delivery, metrics, finished) = (delivery.clone(), metrics.clone(), finished.clone());
                        in_flight.spawn(async move {
                            let endpoint = message.message.endpoint_id;
                            match delivery.deliver(message).await {
                                Ok((result, disabled)) => {
                                    metrics.webhook_attempt(&endpoint.to_string(), result.as_str());
                                    if disabled {
                                        tracing::error!(
                                            endpoint_id = %endpoint,
                                            "webhook endpoint disabled: every delivery failed for too long; its \
                                                messages wait until `flexauth webhooks enable {endpoint}`"
                                        );
                                    }
                                }
                                Err(error) => tracing::error!(
                                    endpoint_id = %endpoint,
                                    error.chain = %error_chain(&error),
                                    "a webhook attempt could not be recorded; the message is tried again after its \
                                        lease"
                                ),
                            }
                            finished.notify_one();
                        });
                    }
                }
                Err(error) => tracing::error!(error.chain = %error_chain(&error), "webhook claim failed"),
            }
            // Finished posts leave the set, so it holds only those under way.
            while in_flight.try_join_next().is_some() {}
            tokio::select! {
                () = tokio::time::sleep(pace.interval()) => {}
                () = finished.notified() => {}
                () = pace.heard(|signals| &signals.webhooks) => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        while in_flight.join_next().await.is_some() {}
        tracing::info!("webhook worker stopped");
    })
}
