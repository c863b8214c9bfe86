//! The async driver: sleeps on tokio time until the next firing, applies the
//! misfire and overlap policies, and hands the firing to a sink.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::time::Instant;

use super::Schedule;
use super::firing::Firing;

/// How far ahead the driver sleeps at most when a firing is further away
/// than tokio can represent; it then looks again.
const LONGEST_SLEEP: Duration = Duration::from_hours(365 * 24);

/// Wall-clock time read off tokio's clock: `base_utc` plus the tokio time
/// elapsed since the clock was made.
///
/// Reading UTC through tokio's `Instant` lets tests drive the scheduler
/// with `tokio::time::pause()` and `advance()`. In production it follows
/// the monotonic clock from when it was made, so it does not jump when the
/// system clock is stepped.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// The UTC time at `base_instant`.
    base_utc: DateTime<Utc>,
    /// The tokio instant the clock was made at.
    base_instant: Instant,
}

impl Clock {
    /// A clock that reads `base_utc` now and advances with tokio time.
    pub fn starting_at(base_utc: DateTime<Utc>) -> Self {
        Self {
            base_utc,
            base_instant: Instant::now(),
        }
    }

    /// A clock that reads the system's time now and advances with tokio
    /// time.
    pub fn system() -> Self {
        Self::starting_at(Utc::now())
    }

    /// The current UTC time.
    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now().saturating_duration_since(self.base_instant);
        TimeDelta::from_std(elapsed)
            .ok()
            .and_then(|elapsed| self.base_utc.checked_add_signed(elapsed))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The tokio instant at which this clock reads `t`; an instant in the
    /// past for a `t` before the clock was made, and at most a year from
    /// now for one further ahead.
    pub fn instant_at(&self, t: DateTime<Utc>) -> Instant {
        match (t - self.base_utc).to_std() {
            Ok(ahead) => self
                .base_instant
                .checked_add(ahead)
                .unwrap_or_else(|| Instant::now() + LONGEST_SLEEP)
                .min(Instant::now() + LONGEST_SLEEP),
            Err(_) => self.base_instant,
        }
    }
}

/// What became of a firing handed to a [`FiringSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum FireOutcome {
    /// This process started the run.
    Fired,
    /// Another process had already started a run for this firing (same
    /// schedule, same [`Firing::scheduled`]); nothing was started.
    AlreadyFired,
}

/// Where the driver hands firings: in Steward, the store, which starts a
/// run and its jobs.
pub trait FiringSink: Send + Sync {
    /// Whether the previous run of this schedule is still going; decides a
    /// firing under the overlap policy.
    fn previous_run_active(&self) -> impl Future<Output = bool> + Send;

    /// Starts a run for `firing`.
    ///
    /// Several replicas may release the same firing; an implementation must
    /// start at most one run per (schedule, [`Firing::scheduled`]), for
    /// example with a compare-and-swap on the schedule's last firing, and
    /// report [`FireOutcome::AlreadyFired`] to the others. Recording
    /// `firing.scheduled` is what a restarted driver takes as `since`.
    fn fire(&self, firing: Firing) -> impl Future<Output = FireOutcome> + Send;

    /// Notes that `firing` was skipped because the previous run was still
    /// going. It counts as handled: a sink that persists `since` records
    /// `firing.scheduled` here too. Does nothing by default.
    fn skipped(&self, firing: Firing) -> impl Future<Output = ()> + Send {
        let _ = firing;
        std::future::ready(())
    }
}

/// Runs `schedule` on `clock` until it has no further firings, handing
/// each due firing to `sink`.
///
/// `since` is the latest [`Firing::scheduled`] handled before (fired or
/// skipped), as the store recorded it; firings after it that were missed
/// while nothing ran are caught up or dropped by the misfire policy the
/// moment the driver starts. `None` means the schedule never ran: nothing
/// counts as missed.
///
/// Cancel-safe: drop the future (or abort its task) to stop it. The sink
/// holds all state that outlives it.
pub async fn run_schedule<S: FiringSink>(
    schedule: &Schedule,
    clock: &Clock,
    sink: &S,
    since: Option<DateTime<Utc>>,
) {
    let mut since = since;
    loop {
        let now = clock.now();
        if let Some(firing) = schedule.due(since, now) {
            if schedule.should_fire(sink.previous_run_active().await) {
                // Losing the firing to another replica is the normal way
                // for replicas to agree; either way it is handled.
                let _ = sink.fire(firing).await;
            } else {
                sink.skipped(firing).await;
            }
        }
        since = Some(since.map_or(now, |since| since.max(now)));
        let Some(next) = schedule.next_after(now) else {
            return;
        };
        tokio::time::sleep_until(clock.instant_at(next)).await;
    }
}
