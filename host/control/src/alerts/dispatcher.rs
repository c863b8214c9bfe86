//! The dispatcher: a bounded queue in front of a task that delivers each
//! alert to every matching webhook concurrently, so the executor hands an
//! alert over and carries on.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use reqwest::Client;
use reqwest::redirect;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{error, instrument};

use super::delivery::{DeliveryPolicy, DeliveryReport, Target, deliver};
use super::id::delivery_id;
use super::model::Alert;
use super::webhook::{Webhook, WebhookError};

/// How the dispatcher queues and delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherConfig {
    /// Retries, backoff and timeouts of each delivery.
    pub policy: DeliveryPolicy,
    /// Alerts waiting to be taken up; [`Dispatcher::dispatch`] refuses more.
    pub queue_capacity: usize,
    /// Alerts being delivered at once (each to all its webhooks); further
    /// alerts wait in the queue.
    pub max_in_flight: usize,
}

impl Default for DispatcherConfig {
    /// The default policy, 1024 queued alerts, 64 in flight.
    fn default() -> Self {
        Self {
            policy: DeliveryPolicy::default(),
            queue_capacity: 1024,
            max_in_flight: 64,
        }
    }
}

/// Why the dispatcher could not start or take an alert.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// A webhook's configuration is invalid.
    #[error("webhook `{id}`: {source}")]
    Webhook {
        /// The webhook's id, as given.
        id: String,
        /// What is wrong with it.
        #[source]
        source: WebhookError,
    },
    /// The HTTP client could not be built (the TLS backend failed to load).
    #[error("the webhook HTTP client could not be built")]
    Client(#[source] reqwest::Error),
    /// The queue is full; the alert was dropped.
    #[error(
        "the alert queue is full ({capacity} alerts waiting); alert `{alert_id}` ({event}) was dropped"
    )]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
        /// The dropped alert.
        alert_id: String,
        /// Its event.
        event: &'static str,
    },
    /// The dispatcher has stopped; the alert was dropped.
    #[error("the alert dispatcher has stopped; alert `{alert_id}` ({event}) was dropped")]
    Stopped {
        /// The dropped alert.
        alert_id: String,
        /// Its event.
        event: &'static str,
    },
}

/// The reports of one dispatched alert, one per matching webhook, when its
/// deliveries end. Dropping it does not cancel them.
#[derive(Debug)]
pub struct PendingDelivery {
    reports: oneshot::Receiver<Vec<DeliveryReport>>,
}

impl PendingDelivery {
    /// Waits for every delivery of the alert to end (retries included) and
    /// returns their reports, in the order the webhooks were configured;
    /// empty when no webhook matched or the dispatcher stopped first.
    pub async fn reports(self) -> Vec<DeliveryReport> {
        self.outcome().await.unwrap_or_default()
    }

    /// As [`reports`](Self::reports), but `None` when the dispatcher
    /// stopped before the deliveries ended.
    pub async fn outcome(self) -> Option<Vec<DeliveryReport>> {
        self.reports.await.ok()
    }
}

/// An alert waiting in the queue.
struct Queued {
    alert: Alert,
    /// Webhooks to leave out: they have it already.
    skip: Vec<String>,
    reports: oneshot::Sender<Vec<DeliveryReport>>,
}

/// The webhooks, replaced whole by [`Dispatcher::set_webhooks`]; each alert
/// is delivered to the set current when its delivery starts.
type Targets = Arc<RwLock<Arc<[Arc<Target>]>>>;

/// Delivers alerts to webhooks in the background.
///
/// Share it behind an `Arc`; [`shutdown`](Self::shutdown) it from the last
/// owner to finish deliveries in flight.
pub struct Dispatcher {
    queue: mpsc::Sender<Queued>,
    capacity: usize,
    targets: Targets,
    worker: JoinHandle<()>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Validates `webhooks` and starts the delivery task.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start(webhooks: Vec<Webhook>, config: DispatcherConfig) -> Result<Self, DispatchError> {
        let targets = Arc::new(RwLock::new(targets(webhooks)?));
        let client = Client::builder()
            .user_agent(concat!("steward/", env!("CARGO_PKG_VERSION")))
            .timeout(config.policy.request_timeout)
            .connect_timeout(config.policy.connect_timeout)
            // A redirected POST turns into a GET on most status codes; a
            // receiver that moved must be reconfigured, not followed.
            .redirect(redirect::Policy::none())
            .build()
            .map_err(DispatchError::Client)?;
        let capacity = config.queue_capacity.max(1);
        let (queue, receiver) = mpsc::channel(capacity);
        let worker = tokio::spawn(run(
            receiver,
            client,
            config.policy,
            config.max_in_flight.max(1),
            Arc::clone(&targets),
        ));
        Ok(Self {
            queue,
            capacity,
            targets,
            worker,
        })
    }

    /// Replaces the webhooks, after validating them all: on error nothing
    /// changes. Alerts already being delivered keep the webhooks they
    /// started with.
    pub fn set_webhooks(&self, webhooks: Vec<Webhook>) -> Result<(), DispatchError> {
        let new = targets(webhooks)?;
        *self
            .targets
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = new;
        Ok(())
    }

    /// Queues `alert` for delivery and returns at once. When the queue is
    /// full or the dispatcher has stopped, the alert is dropped, logged at
    /// `error`, and the error says so.
    pub fn dispatch(&self, alert: Alert) -> Result<PendingDelivery, DispatchError> {
        self.dispatch_skipping(alert, Vec::new())
    }

    /// [`dispatch`](Self::dispatch), leaving out the webhooks in `skip`
    /// (those a previous delivery of the event reached).
    pub fn dispatch_skipping(
        &self,
        alert: Alert,
        skip: Vec<String>,
    ) -> Result<PendingDelivery, DispatchError> {
        let (reports, receiver) = oneshot::channel();
        match self.queue.try_send(Queued {
            alert,
            skip,
            reports,
        }) {
            Ok(()) => Ok(PendingDelivery { reports: receiver }),
            Err(err) => {
                let (full, queued) = match err {
                    mpsc::error::TrySendError::Full(queued) => (true, queued),
                    mpsc::error::TrySendError::Closed(queued) => (false, queued),
                };
                let alert_id = queued.alert.id;
                let event = queued.alert.event.as_str();
                let err = if full {
                    DispatchError::QueueFull {
                        capacity: self.capacity,
                        alert_id,
                        event,
                    }
                } else {
                    DispatchError::Stopped { alert_id, event }
                };
                error!(err = &err as &dyn std::error::Error, "alert dropped");
                Err(err)
            }
        }
    }

    /// Stops taking alerts and waits until every queued and in-flight
    /// delivery has ended.
    pub async fn shutdown(self) {
        drop(self.queue);
        if let Err(err) = self.worker.await {
            error!(
                err = &err as &dyn std::error::Error,
                "alert dispatcher task failed"
            );
        }
    }
}

/// Validates `webhooks` into delivery targets.
fn targets(webhooks: Vec<Webhook>) -> Result<Arc<[Arc<Target>]>, DispatchError> {
    let mut seen = HashSet::new();
    webhooks
        .into_iter()
        .map(|webhook| {
            let invalid = |source| DispatchError::Webhook {
                id: webhook.id.clone(),
                source,
            };
            let url = webhook.checked_url().map_err(invalid)?;
            if !seen.insert(webhook.id.clone()) {
                return Err(invalid(WebhookError::DuplicateId {
                    id: webhook.id.clone(),
                }));
            }
            Ok(Arc::new(Target { webhook, url }))
        })
        .collect()
}

/// The delivery task: takes alerts off the queue, at most `max_in_flight`
/// at a time, until the queue is closed and drained.
async fn run(
    mut queue: mpsc::Receiver<Queued>,
    client: Client,
    policy: DeliveryPolicy,
    max_in_flight: usize,
    targets: Targets,
) {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let policy = Arc::new(policy);
    let mut in_flight = JoinSet::new();
    while let Some(queued) = queue.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break; // Never closed.
        };
        while let Some(done) = in_flight.try_join_next() {
            log_panic(done);
        }
        let matching: Vec<Arc<Target>> = targets
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .iter()
            .filter(|t| {
                t.webhook.receives(&queued.alert.tenant_id) && !queued.skip.contains(&t.webhook.id)
            })
            .cloned()
            .collect();
        let client = client.clone();
        let policy = Arc::clone(&policy);
        in_flight.spawn(async move {
            let reports = deliver_to_all(&client, &policy, &matching, &queued.alert).await;
            drop(slot);
            // The caller may have dropped its `PendingDelivery`.
            let _ = queued.reports.send(reports);
        });
    }
    while let Some(done) = in_flight.join_next().await {
        log_panic(done);
    }
}

fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(err) = done {
        error!(
            err = &err as &dyn std::error::Error,
            "alert delivery task failed"
        );
    }
}

/// Delivers `alert` to every target concurrently; reports in target order.
#[instrument(skip_all, fields(alert = %alert.id, event = %alert.event, webhooks = targets.len()))]
async fn deliver_to_all(
    client: &Client,
    policy: &Arc<DeliveryPolicy>,
    targets: &[Arc<Target>],
    alert: &Alert,
) -> Vec<DeliveryReport> {
    if targets.is_empty() {
        return Vec::new();
    }
    let body = Arc::new(alert.to_body());
    let mut deliveries = JoinSet::new();
    for (index, target) in targets.iter().enumerate() {
        let (client, policy, target, body) = (
            client.clone(),
            Arc::clone(policy),
            Arc::clone(target),
            Arc::clone(&body),
        );
        let (alert_id, event) = (alert.id.clone(), alert.event);
        deliveries.spawn(async move {
            let delivery_id = delivery_id(&alert_id, event.as_str(), &target.webhook.id);
            let report = deliver(
                &client,
                &policy,
                &target,
                &alert_id,
                event,
                &delivery_id,
                body,
            )
            .await;
            (index, report)
        });
    }
    let mut reports = Vec::with_capacity(targets.len());
    while let Some(done) = deliveries.join_next().await {
        match done {
            Ok(report) => reports.push(report),
            Err(err) => error!(
                err = &err as &dyn std::error::Error,
                "alert delivery task failed"
            ),
        }
    }
    reports.sort_by_key(|(index, _)| *index);
    reports.into_iter().map(|(_, report)| report).collect()
}
