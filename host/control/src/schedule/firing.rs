//! Deciding what fires now: the misfire policy after downtime and the
//! overlap policy while a run is still going. Pure functions of time.

use chrono::{DateTime, TimeDelta, Utc};

use super::{Misfire, Overlap, Schedule};

/// How late a firing may be released and still count as on time rather
/// than missed: enough for a slow wake-up, far less than real downtime.
pub const ON_TIME_GRACE: TimeDelta = TimeDelta::seconds(60);

/// How far back [`Schedule::due`] looks first for the latest missed firing,
/// widening until it finds one, so a long downtime with a frequent schedule
/// does not walk every missed firing.
const LOOKBACKS: [TimeDelta; 5] = [
    TimeDelta::minutes(1),
    TimeDelta::hours(1),
    TimeDelta::days(1),
    TimeDelta::days(32),
    TimeDelta::days(400),
];

/// One firing of a schedule, released to start a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Firing {
    /// The cron time this firing stands for (for a catch-up, the latest
    /// missed one). A store keys on it so that one firing starts one run,
    /// however many replicas release it.
    pub scheduled: DateTime<Utc>,
    /// When it was released: at its scheduled time when on time, at the
    /// end of the downtime for a catch-up.
    pub released: DateTime<Utc>,
    /// Whether it stands for firings missed while nothing was running
    /// (due more than [`ON_TIME_GRACE`] before `released`), folded into
    /// this one by the `run-once` misfire policy.
    pub catch_up: bool,
}

impl Schedule {
    /// The firing to release at `now`, given that every firing up to and
    /// including `since` has been handled (fired or skipped); `None` means
    /// nothing is due.
    ///
    /// Firings in `(since, now]` are due; those more than [`ON_TIME_GRACE`]
    /// old were missed while the scheduler was down. Without missed
    /// firings the latest due one fires. With them, the misfire policy
    /// decides: `run-once` folds every due firing into one catch-up firing
    /// released now (its `scheduled` is the latest of them); `skip` drops
    /// the missed ones and fires only a latest one that is still on time,
    /// else nothing until the next regular firing. Without `since` (a
    /// schedule never run before) nothing counts as missed.
    pub fn due(&self, since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Firing> {
        let floor = since.unwrap_or(now - ON_TIME_GRACE);
        let scheduled = self.latest_firing(floor, now)?;
        let on_time = |t: DateTime<Utc>| now - t <= ON_TIME_GRACE;
        let catch_up = match self.misfire {
            Misfire::Skip if !on_time(scheduled) => return None,
            Misfire::Skip => false,
            Misfire::RunOnce => !self.next_after(floor).is_some_and(on_time),
        };
        Some(Firing {
            scheduled,
            released: now,
            catch_up,
        })
    }

    /// Whether a due firing starts a run, given whether the previous run of
    /// this schedule is still going: with overlap `skip` it does not, with
    /// `allow` it always does.
    pub fn should_fire(&self, previous_run_active: bool) -> bool {
        !(previous_run_active && self.overlap == Overlap::Skip)
    }

    /// The latest firing in `(floor, now]`.
    fn latest_firing(&self, floor: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let starts = LOOKBACKS
            .iter()
            .map(|&lookback| floor.max(now - lookback))
            .chain([floor]);
        for start in starts {
            let mut latest = self.next_after(start).filter(|&t| t <= now);
            while let Some(t) = latest {
                match self.next_after(t) {
                    Some(next) if next <= now => latest = Some(next),
                    _ => return Some(t),
                }
            }
            if start <= floor {
                return None;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::ScheduleSpec;
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .to_utc()
    }

    fn schedule(cron: &str, misfire: Misfire, overlap: Overlap) -> Schedule {
        ScheduleSpec {
            misfire,
            overlap,
            ..ScheduleSpec::new(cron, "UTC")
        }
        .compile()
        .expect("valid schedule")
    }

    #[test]
    fn an_on_time_firing_is_due_under_either_policy() {
        for misfire in [Misfire::RunOnce, Misfire::Skip] {
            let s = schedule("0 * * * *", misfire, Overlap::Skip);
            let now = utc("2025-01-01T10:00:00Z");
            assert_eq!(
                s.due(Some(utc("2025-01-01T09:00:00Z")), now),
                Some(Firing {
                    scheduled: now,
                    released: now,
                    catch_up: false
                })
            );
            // A slightly late wake-up is still on time.
            let late = utc("2025-01-01T10:00:59Z");
            assert_eq!(
                s.due(Some(utc("2025-01-01T09:00:00Z")), late)
                    .map(|f| (f.scheduled, f.catch_up)),
                Some((now, false))
            );
        }
    }

    #[test]
    fn nothing_is_due_between_firings_or_twice() {
        let s = schedule("0 * * * *", Misfire::RunOnce, Overlap::Skip);
        assert_eq!(
            s.due(
                Some(utc("2025-01-01T10:00:00Z")),
                utc("2025-01-01T10:30:00Z")
            ),
            None
        );
        assert_eq!(
            s.due(
                Some(utc("2025-01-01T10:00:00Z")),
                utc("2025-01-01T10:00:00Z")
            ),
            None
        );
        assert_eq!(s.due(None, utc("2025-01-01T10:30:00Z")), None);
    }

    #[test]
    fn run_once_folds_missed_firings_into_one_catch_up() {
        let s = schedule("*/5 * * * * *", Misfire::RunOnce, Overlap::Skip);
        // Three days of firings every five seconds were missed.
        let now = utc("2025-01-04T12:00:02Z");
        assert_eq!(
            s.due(Some(utc("2025-01-01T00:00:00Z")), now),
            Some(Firing {
                scheduled: utc("2025-01-04T12:00:00Z"),
                released: now,
                catch_up: true
            })
        );
        // A sparse schedule missed long ago.
        let s = schedule("0 0 1 1 *", Misfire::RunOnce, Overlap::Skip);
        let now = utc("2031-06-01T00:00:00Z");
        let firing = s
            .due(Some(utc("2025-01-01T00:00:00Z")), now)
            .expect("a catch-up");
        assert_eq!(firing.scheduled, utc("2031-01-01T00:00:00Z"));
        assert!(firing.catch_up);
    }

    #[test]
    fn skip_drops_missed_firings() {
        let s = schedule("*/5 * * * * *", Misfire::Skip, Overlap::Skip);
        // The latest is on time and fires for itself alone.
        let now = utc("2025-01-04T12:00:02Z");
        assert_eq!(
            s.due(Some(utc("2025-01-01T00:00:00Z")), now),
            Some(Firing {
                scheduled: utc("2025-01-04T12:00:00Z"),
                released: now,
                catch_up: false
            })
        );
        let s = schedule("0 * * * *", Misfire::Skip, Overlap::Skip);
        assert_eq!(
            s.due(
                Some(utc("2025-01-01T00:00:00Z")),
                utc("2025-01-03T10:30:00Z")
            ),
            None
        );
        // Down until exactly a firing: that one is on time.
        let now = utc("2025-01-03T11:00:00Z");
        assert_eq!(
            s.due(Some(utc("2025-01-01T00:00:00Z")), now)
                .map(|f| (f.scheduled, f.catch_up)),
            Some((now, false))
        );
    }

    #[test]
    fn overlap_skip_holds_a_firing_while_the_previous_run_is_active() {
        let skip = schedule("0 * * * *", Misfire::RunOnce, Overlap::Skip);
        assert!(!skip.should_fire(true));
        assert!(skip.should_fire(false));
        let allow = schedule("0 * * * *", Misfire::RunOnce, Overlap::Allow);
        assert!(allow.should_fire(true));
        assert!(allow.should_fire(false));
    }
}
