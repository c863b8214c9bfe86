//! Schedules: when a playbook fires, and when each target device may start.
//!
//! A [`ScheduleSpec`] is what an admin writes: a cron expression, an IANA
//! time zone, an optional maintenance window with a policy for jobs that
//! miss it, jitter, a misfire policy and an overlap policy.
//! [`ScheduleSpec::compile`] checks it, with errors that name the field
//! ([`ScheduleError::field`]), and gives a [`Schedule`]:
//!
//! - [`Schedule::next_after`]: the next firing, in UTC;
//! - [`Schedule::due`] and [`Schedule::should_fire`]: what fires now, after
//!   downtime (misfire) and while a run is still going (overlap);
//! - [`Schedule::start_at`] and [`Schedule::replan`]: when one target's job
//!   starts, inside the window and spread by jitter;
//! - [`run_schedule`]: the async driver that sleeps on tokio time between
//!   firings and hands them to a [`FiringSink`].
//!
//! Everything but the driver is a pure function of its arguments.
//!
//! # Daylight saving time
//!
//! Cron fields match the local wall-clock time in the schedule's zone.
//! When DST moves that clock, the rule depends on the hour field, as in
//! Vixie cron and cronie:
//!
//! - **Fixed-hour schedules** (the hour field does not start with `*`, as
//!   in `30 2 * * *`) fire once for each matching wall-clock time of each
//!   day:
//!   - a time skipped by spring-forward fires once, at the first instant
//!     after the gap, the moment of the transition: a 02:30 daily job runs
//!     at 03:00 local on the day New York or Berlin jumps from 02:00 to
//!     03:00 (and a 02:15 job runs at 02:30 on the day Lord Howe, with its
//!     30-minute shift, jumps from 02:00 to 02:30).
//!     Several skipped times become that one firing (`0,30 2 * * *` fires
//!     once at 03:00 that day, and `0 2,3 * * *` too);
//!   - a time repeated by fall-back fires once, at its first (earlier,
//!     daylight-time) occurrence: a 02:30 daily job in Berlin runs at 02:30
//!     CEST on the last Sunday of October and not again at 02:30 CET.
//! - **Elapsed-time schedules** (the hour field starts with `*`, as in
//!   `*/15 * * * *`, `0 */2 * * *` or `@hourly`) fire at every instant
//!   whose local time matches, so they follow real elapsed time: times in
//!   the gap never occur and do not fire (every 15 minutes runs at 01:45
//!   EST and then 03:00 EDT, 15 real minutes apart), and the repeated hour
//!   fires again (01:45 EDT, 01:00 EST, 01:15 EST, …, 15 real minutes
//!   apart). No instant ever fires twice.
//!
//! Window boundaries resolve like fixed-hour firings: a window opens and
//! closes at the first instant its local times occur (after the gap, if
//! skipped); a window whose both ends fall into one gap does not open that
//! day.
//!
//! # Maintenance windows
//!
//! A window is a daily span of local time (`start` to `end`, on some
//! weekdays or all) within which jobs start. It may not cross midnight:
//! `end` must be after `start`, and `24:00` is the latest end; a window such
//! as 22:00-04:00 is refused naming `window.end`. A firing outside a window
//! starts its jobs when the next window opens; a job not started by the
//! time its window closes waits for the next window (`wait-next`) or
//! expires (`expire`).

mod cron;
mod driver;
mod error;
mod firing;
mod window;
mod zone;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub use cron::{Cron, CronField};
pub use driver::{Clock, FireOutcome, FiringSink, run_schedule};
pub use error::ScheduleError;
pub use firing::{Firing, ON_TIME_GRACE};
pub use window::{StartDecision, Weekday, WindowSpec};

use window::Window;

/// The largest `jitter-seconds` a schedule accepts: one day.
pub const MAX_JITTER_SECONDS: u32 = 24 * 3600;

/// A schedule as an admin writes it, in the API and in files (kebab-case
/// keys). Compile it with [`ScheduleSpec::compile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScheduleSpec {
    /// A 5-field (`minute hour day-of-month month day-of-week`) or 6-field
    /// (seconds first) cron expression, or `@hourly`, `@daily`, `@weekly`,
    /// `@monthly`, `@yearly`; see [`Cron`].
    pub cron: String,
    /// The IANA time zone the cron fields and the window are read in, such
    /// as `Europe/Berlin`; `UTC` for none.
    pub timezone: String,
    /// When jobs may start; any time if absent.
    #[serde(default)]
    pub window: Option<WindowSpec>,
    /// What happens to a job that has not started when its window closes.
    #[serde(default)]
    pub window_miss: WindowMiss,
    /// Jobs of one firing start spread over this many seconds (within the
    /// window), so thousands of devices do not start in the same second.
    #[serde(default)]
    #[schema(maximum = 86_400)]
    pub jitter_seconds: u32,
    /// What happens to firings missed while the scheduler was down.
    #[serde(default)]
    pub misfire: Misfire,
    /// What happens to a firing while the previous run is still going.
    #[serde(default)]
    pub overlap: Overlap,
}

/// What happens to a job that has not started when its window closes.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum WindowMiss {
    /// It starts in the next window.
    #[default]
    WaitNext,
    /// It does not run.
    Expire,
}

/// What happens to firings missed while the scheduler was down.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Misfire {
    /// All of them together fire once, as soon as the scheduler is back.
    #[default]
    RunOnce,
    /// None of them fire; the next regular firing does.
    Skip,
}

/// What happens to a firing while the previous run of the schedule is
/// still going.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Overlap {
    /// The firing is skipped.
    #[default]
    Skip,
    /// A second run starts beside the first.
    Allow,
}

impl ScheduleSpec {
    /// A spec with `cron` in `timezone` and every other field at its
    /// default: no window, no jitter, misfire `run-once`, overlap `skip`.
    pub fn new(cron: impl Into<String>, timezone: impl Into<String>) -> Self {
        Self {
            cron: cron.into(),
            timezone: timezone.into(),
            window: None,
            window_miss: WindowMiss::default(),
            jitter_seconds: 0,
            misfire: Misfire::default(),
            overlap: Overlap::default(),
        }
    }

    /// Checks every field and compiles the schedule.
    ///
    /// # Errors
    ///
    /// The first field found wrong, in the order of the struct, as a
    /// [`ScheduleError`] whose [`field`](ScheduleError::field) names it:
    /// `cron`, `timezone`, `window.start`, `window.end` (also for a window
    /// that ends at or before its start) or `jitter-seconds`.
    pub fn compile(&self) -> Result<Schedule, ScheduleError> {
        let cron = Cron::parse(&self.cron)?;
        let tz = self
            .timezone
            .parse::<Tz>()
            .map_err(|_| ScheduleError::UnknownTimeZone {
                name: self.timezone.clone(),
            })?;
        let window = self.window.as_ref().map(Window::compile).transpose()?;
        if self.jitter_seconds > MAX_JITTER_SECONDS {
            return Err(ScheduleError::JitterTooLarge {
                value: self.jitter_seconds,
            });
        }
        Ok(Schedule {
            cron,
            tz,
            window,
            window_miss: self.window_miss,
            jitter_seconds: self.jitter_seconds,
            misfire: self.misfire,
            overlap: self.overlap,
        })
    }
}

/// A checked schedule, ready to compute firings and start times.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// When it fires, in local wall-clock time.
    cron: Cron,
    /// The zone `cron` and `window` are read in.
    tz: Tz,
    /// When jobs may start, if restricted.
    window: Option<Window>,
    /// What happens to a job that misses its window.
    window_miss: WindowMiss,
    /// The spread of job starts, in seconds.
    jitter_seconds: u32,
    /// What happens to firings missed during downtime.
    misfire: Misfire,
    /// What happens to a firing while the previous run is going.
    overlap: Overlap,
}

impl Schedule {
    /// The cron expression.
    pub fn cron(&self) -> &Cron {
        &self.cron
    }

    /// The time zone.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first firing strictly after `after`, by the DST rule of the
    /// module docs; `None` if the schedule never fires again (only possible
    /// at the far end of chrono's calendar).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.cron.follows_elapsed_time() {
            zone::next_elapsed(&self.cron, self.tz, after)
        } else {
            zone::next_fixed(&self.cron, self.tz, after)
        }
    }
}
