//! One alert event to one webhook: a signed `POST`, retried with
//! exponential backoff while the failure may be temporary.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Response, StatusCode, Url};
use serde::Serialize;
use tracing::{debug, error, instrument, warn};

use super::model::AlertEvent;
use super::signature::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign};
use super::webhook::Webhook;

/// How much of a refusing receiver's answer a report keeps.
const MAX_ANSWER_BYTES: usize = 512;

/// How hard to try one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Attempts in all, the first included; 0 counts as 1.
    pub max_attempts: u32,
    /// The wait after the first failed attempt; each further wait doubles.
    pub base_backoff: Duration,
    /// The longest wait between attempts, `Retry-After` included.
    pub max_backoff: Duration,
    /// The limit on one attempt, from connecting to reading the answer.
    pub request_timeout: Duration,
    /// The limit on connecting (and the TLS handshake) within an attempt.
    pub connect_timeout: Duration,
}

impl Default for DeliveryPolicy {
    /// 5 attempts, waiting 1 s, 2 s, 4 s and 8 s between them (at most
    /// 30 s), 10 s per attempt, 5 s to connect.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl DeliveryPolicy {
    /// The wait after failed attempt number `attempt` (1-based):
    /// `base_backoff × 2^(attempt − 1)`, at most `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryStatus {
    /// The receiver answered `2xx`.
    Delivered,
    /// The receiver answered with a status that retrying will not change
    /// (a `4xx` other than `408` and `429`, or a redirect): not retried.
    Refused,
    /// Every attempt failed with a temporary failure (transport error,
    /// timeout, `5xx`, `408`, `429`).
    Failed,
}

/// What became of one alert event at one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryReport {
    /// The webhook.
    pub webhook_id: String,
    /// The `X-Steward-Delivery` id every attempt carried.
    pub delivery_id: String,
    /// How many requests were made.
    pub attempts: u32,
    /// How it ended.
    pub status: DeliveryStatus,
    /// The HTTP status of the last answer, if the last attempt got one.
    pub http_status: Option<u16>,
    /// Why the last attempt failed; `None` when delivered.
    pub last_error: Option<String>,
}

/// A validated webhook, ready to deliver to.
#[derive(Debug)]
pub(super) struct Target {
    pub webhook: Webhook,
    pub url: Url,
}

/// What one attempt came to.
enum Attempt {
    Delivered(StatusCode),
    Refused {
        status: StatusCode,
        error: String,
    },
    Retry {
        status: Option<StatusCode>,
        error: String,
        retry_after: Option<Duration>,
    },
}

/// Delivers `body` (the alert `alert_id`'s `event`) to `target`, retrying
/// by `policy`, as delivery `delivery_id`.
#[instrument(skip_all, fields(
    webhook = %target.webhook.id,
    host = target.url.host_str().unwrap_or(""),
    alert = alert_id,
    %event,
    delivery = delivery_id,
))]
pub(super) async fn deliver(
    client: &Client,
    policy: &DeliveryPolicy,
    target: &Target,
    alert_id: &str,
    event: AlertEvent,
    delivery_id: &str,
    body: Arc<Vec<u8>>,
) -> DeliveryReport {
    let signature = sign(&target.webhook.secret, &body);
    let max_attempts = policy.max_attempts.max(1);
    let report = |attempts, status, http_status: Option<StatusCode>, last_error| DeliveryReport {
        webhook_id: target.webhook.id.clone(),
        delivery_id: delivery_id.to_owned(),
        attempts,
        status,
        http_status: http_status.map(|s| s.as_u16()),
        last_error,
    };
    let mut attempt = 1;
    loop {
        let request = client
            .post(target.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, event.as_str())
            .header(DELIVERY_HEADER, delivery_id)
            .header(SIGNATURE_HEADER, &signature)
            .body(body.as_ref().clone());
        match classify(request.send().await).await {
            Attempt::Delivered(status) => {
                debug!(attempt, status = status.as_u16(), "alert delivered");
                return report(attempt, DeliveryStatus::Delivered, Some(status), None);
            }
            Attempt::Refused { status, error } => {
                error!(
                    attempt,
                    status = status.as_u16(),
                    error,
                    "webhook permanently refused the alert; not retrying"
                );
                return report(attempt, DeliveryStatus::Refused, Some(status), Some(error));
            }
            Attempt::Retry {
                status,
                error,
                retry_after,
            } => {
                if attempt >= max_attempts {
                    error!(attempt, error, "alert not delivered; giving up");
                    return report(attempt, DeliveryStatus::Failed, status, Some(error));
                }
                let wait = retry_after
                    .unwrap_or_else(|| policy.backoff(attempt))
                    .min(policy.max_backoff);
                warn!(
                    attempt,
                    error,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "alert delivery failed; retrying"
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

/// Sorts an attempt's outcome into delivered, refused or worth retrying.
async fn classify(sent: Result<Response, reqwest::Error>) -> Attempt {
    let response = match sent {
        Ok(response) => response,
        // A request that never got an answer (refused connection, TLS
        // failure, timeout, reset) may succeed next time.
        Err(err) => {
            return Attempt::Retry {
                status: None,
                error: describe(err),
                retry_after: None,
            };
        }
    };
    let status = response.status();
    if status.is_success() {
        return Attempt::Delivered(status);
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let answer = read_answer(response).await;
    let error = match answer {
        Some(answer) => format!("HTTP {status}: {answer}"),
        None => format!("HTTP {status}"),
    };
    let temporary = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT;
    if temporary {
        Attempt::Retry {
            status: Some(status),
            error,
            retry_after,
        }
    } else {
        Attempt::Refused { status, error }
    }
}

/// The start of a failed answer's body, for the report: receivers often say
/// why they refused.
async fn read_answer(mut response: Response) -> Option<String> {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ANSWER_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(MAX_ANSWER_BYTES);
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// A transport error and its causes on one line, without the URL (which
/// may carry a token).
fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = if err.is_timeout() {
        "request timed out".to_owned()
    } else {
        err.to_string()
    };
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_holds_an_event_for_a_whole_default_delivery() {
        let policy = DeliveryPolicy::default();
        let waits: Duration = (1..policy.max_attempts).map(|a| policy.backoff(a)).sum();
        let longest = policy.request_timeout * policy.max_attempts + waits;
        assert!(
            crate::providers::REDELIVER_AFTER > longest,
            "a delivery still retrying must not be started again elsewhere"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = DeliveryPolicy {
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            ..DeliveryPolicy::default()
        };
        let waits: Vec<u64> = (1..=5).map(|a| policy.backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(policy.backoff(200), Duration::from_secs(5));
    }

    #[test]
    fn default_policy_waits_1_2_4_8_seconds() {
        let policy = DeliveryPolicy::default();
        let waits: Vec<u64> = (1..policy.max_attempts)
            .map(|a| policy.backoff(a).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8]);
    }
}
