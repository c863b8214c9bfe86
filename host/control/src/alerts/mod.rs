//! Alerts: what the executor observes after each job becomes signed webhook
//! deliveries when a condition starts or stops holding.
//!
//! ```text
//!  executor ──Observation──► Alerter ──Vec<Alert>──► Dispatcher ──POST──► webhooks
//!                              │ per-key state          │ queue + task,   (signed,
//!                              ▼ machine                ▼ concurrent      retried)
//!                           AlertState               DeliveryReport
//!                  (memory or store + outbox)
//! ```
//!
//! - [`Observation`]: what one job showed — the check's critical findings
//!   (or that the check did not run), whether a remediation failed, whether
//!   the job timed out.
//! - [`Alerter::observe`]: one state machine per [`AlertKey`] (tenant,
//!   device, plugin, [`Condition`]). A condition that starts holding opens
//!   its key and yields one `alert.firing`; while open, repeats yield
//!   nothing and are counted; when it is observed not holding (the check
//!   passes, a remediation succeeds, the job ends in time) the key closes
//!   and yields one `alert.resolved`. A condition the job did not observe
//!   (no check ran, no remediation ran) leaves its key as it is.
//! - [`AlertState`]: where open keys live, with compare-and-set `open` and
//!   `close`, so two processes that observe the same failure alert once.
//!   [`MemoryAlertState`] is the in-process implementation.
//! - [`Webhook`]: a configured receiver (URL, secret, tenant filter),
//!   checked by [`Webhook::validate`] with errors naming the field.
//! - [`Dispatcher`]: a queue and a task that POST each alert to every
//!   matching webhook concurrently, with retries, and report a
//!   [`DeliveryReport`] per webhook. [`Dispatcher::dispatch`] never waits.
//! - [`verify_signature`]: what a receiver does to check a delivery.
//!
//! # Delivery
//!
//! Each delivery is a `POST` of the alert's JSON body with these headers:
//!
//! | header | value |
//! |---|---|
//! | `Content-Type` | `application/json` |
//! | `User-Agent` | `steward/<version>` |
//! | `X-Steward-Event` | `alert.firing` or `alert.resolved` (as in the body) |
//! | `X-Steward-Delivery` | an id unique to this alert event and webhook, the same on every retry and on a redelivery after a restart, so a receiver can drop duplicates |
//! | `X-Steward-Signature` | `sha256=` and the lowercase hex HMAC-SHA256 of the exact body bytes, keyed with the webhook's secret |
//!
//! A `2xx` answer is delivered. Transport errors (connect, timeout, reset),
//! `5xx`, `429` and `408` are retried with exponential backoff
//! ([`DeliveryPolicy`]; a `Retry-After` in seconds is honoured up to the
//! cap); any other answer, redirects included, is a permanent refusal and
//! is not retried. The body is the same on every retry, so is the
//! signature.
//!
//! Receivers should verify the signature before parsing, compare in
//! constant time ([`verify_signature`] does), and may reject events whose
//! `at` is too old to limit replays: `(id, event)` is signed and unique
//! per event. Deliveries of different events run concurrently, so a
//! `resolved` may arrive before a slow, retried `firing` of the same `id`;
//! order by `at`.
//!
//! # Body
//!
//! A JSON object with these snake_case fields, all always present (times
//! are RFC 3339 in UTC with milliseconds, `2025-03-01T08:00:00.000Z`):
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `id` | string | the alert's id; its `firing` and `resolved` events share it |
//! | `event` | string | `alert.firing` or `alert.resolved` |
//! | `condition` | string | `critical-findings`, `remediation-failed` or `job-timed-out` |
//! | `severity` | string | `critical` (critical findings, failed remediation) or `warning` (timeout); a resolved alert keeps its firing severity |
//! | `tenant_id`, `device_id`, `plugin` | string | what the alert is about |
//! | `run_id`, `job_id` | string | the run and job whose result produced this event |
//! | `summary` | string | one line for humans |
//! | `details` | object | per condition and event, below |
//! | `first_seen` | string | when the condition was first observed in this alert |
//! | `occurrences` | integer | how many observations the condition held in (1 when firing) |
//! | `at` | string | when this event was observed |
//!
//! `details`:
//!
//! - firing `critical-findings`: `{"finding_count": 2, "findings": [{"id": "…", "summary": "…"}]}`,
//!   at most [`MAX_FINDINGS_IN_ALERT`] findings listed;
//! - firing `remediation-failed`: `{"error": "…"}`, cut to [`MAX_ERROR_CHARS`] characters;
//! - firing `job-timed-out`: `{"limit_ms": 300000}`;
//! - resolved: `{"resolution": "check-passed" | "remediation-succeeded" | "completed-in-time",
//!   "firing_run_id": "…", "firing_job_id": "…", "last_seen": "…"}`.
//!
//! New fields may be added; existing ones keep their name and meaning.
//!
//! # Delivery guarantees
//!
//! With a state that keeps events ([`AlertState::open_firing`] and
//! [`AlertState::close_resolved`]; the store's does, in the transaction
//! that opens or closes the alert), delivery is at least once per event
//! and webhook: an event stays undelivered until every matching webhook
//! took it or refused it for good, and one whose delivery did not end so
//! (a crash, a full queue, a webhook down through every retry) is
//! delivered again once the hold of the delivery that started it has
//! passed ([`AlertState::undelivered`]; the executor's redelivery loop),
//! up to the state's limit on redeliveries (the store's drops an event,
//! logged at `error`, after a day of them). A redelivery leaves out the
//! webhooks whose delivery ended ([`AlertState::reached`]); a crash
//! before that is recorded repeats one.
//! A receiver drops the duplicates by `X-Steward-Delivery`. With
//! [`MemoryAlertState`] nothing outlives the process: at most once.

mod alerter;
mod delivery;
mod dispatcher;
mod id;
mod model;
mod signature;
mod state;
mod webhook;

#[cfg(test)]
mod tests;

pub use alerter::Alerter;
pub use delivery::{DeliveryPolicy, DeliveryReport, DeliveryStatus};
pub use dispatcher::{DispatchError, Dispatcher, DispatcherConfig, PendingDelivery};
pub use model::{
    Alert, AlertEvent, AlertKey, CheckResult, Condition, CriticalFinding, JobEnd, MAX_ERROR_CHARS,
    MAX_FINDINGS_IN_ALERT, Observation, RemediationResult, Severity,
};
pub use signature::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign, verify_signature};
pub use state::{AlertState, AlertStateError, MemoryAlertState, OpenAlert, Undelivered};
pub use webhook::{MIN_SECRET_BYTES, Webhook, WebhookError, check_api_target};
