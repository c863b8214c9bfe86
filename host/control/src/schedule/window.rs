//! Maintenance windows and jitter: when each target of a firing may start.

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::error::ScheduleError;
use super::firing::Firing;
use super::{Schedule, WindowMiss, zone};

/// How many days ahead a window is looked for. A window opens at least
/// weekly; a year covers the rare day on which DST empties it.
const WINDOW_SEARCH_DAYS: u64 = 400;

/// Seconds in a day; a window may end at `24:00`, which is this.
const DAY_SECONDS: u32 = 24 * 3600;

/// A day of the week, as window days are written: `mon` … `sun` (the full
/// lowercase names are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Weekday {
    /// Monday, `mon`.
    #[serde(alias = "monday")]
    Mon,
    /// Tuesday, `tue`.
    #[serde(alias = "tuesday")]
    Tue,
    /// Wednesday, `wed`.
    #[serde(alias = "wednesday")]
    Wed,
    /// Thursday, `thu`.
    #[serde(alias = "thursday")]
    Thu,
    /// Friday, `fri`.
    #[serde(alias = "friday")]
    Fri,
    /// Saturday, `sat`.
    #[serde(alias = "saturday")]
    Sat,
    /// Sunday, `sun`.
    #[serde(alias = "sunday")]
    Sun,
}

impl From<Weekday> for chrono::Weekday {
    fn from(day: Weekday) -> Self {
        match day {
            Weekday::Mon => Self::Mon,
            Weekday::Tue => Self::Tue,
            Weekday::Wed => Self::Wed,
            Weekday::Thu => Self::Thu,
            Weekday::Fri => Self::Fri,
            Weekday::Sat => Self::Sat,
            Weekday::Sun => Self::Sun,
        }
    }
}

/// A maintenance window as written in a schedule: on which days, and from
/// when to when in the schedule's time zone. Jobs only start inside it.
///
/// The window lies within one day: `end` must be after `start`, and `24:00`
/// is the latest end. Windows across midnight are not supported yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WindowSpec {
    /// The days the window opens (by the local date it opens on); empty
    /// means every day.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub days: Vec<Weekday>,
    /// When it opens, `HH:MM` local time, `00:00` to `23:59`.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub start: String,
    /// When it closes, `HH:MM` local time, after `start`, up to `24:00`.
    #[schema(pattern = "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
    pub end: String,
}

/// A compiled window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window {
    /// Bit `n` set: the window opens on days `n` days from Monday.
    days: u8,
    /// Opening, in seconds after local midnight.
    start: u32,
    /// Closing, in seconds after local midnight; up to a whole day.
    end: u32,
}

impl Window {
    /// Checks and compiles `spec`; errors name `window.start` or `window.end`.
    pub(super) fn compile(spec: &WindowSpec) -> Result<Self, ScheduleError> {
        let start = parse_time_of_day(&spec.start, "window.start", false)?;
        let end = parse_time_of_day(&spec.end, "window.end", true)?;
        if end <= start {
            return Err(ScheduleError::WindowEndsBeforeStart {
                start: spec.start.clone(),
                end: spec.end.clone(),
            });
        }
        let days = match spec.days.as_slice() {
            [] => 0x7f,
            days => days.iter().fold(0, |mask, &day| {
                mask | 1 << chrono::Weekday::from(day).num_days_from_monday()
            }),
        };
        Ok(Self { days, start, end })
    }

    /// The window that opens on local date `date`, as instants; `None` if
    /// it does not open that day, or if a DST gap swallows it whole (both
    /// ends resolve to the end of the gap).
    fn on(&self, tz: Tz, date: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if self.days & (1 << date.weekday().num_days_from_monday()) == 0 {
            return None;
        }
        let at = |seconds: u32| {
            let midnight = date.and_hms_opt(0, 0, 0)?;
            zone::resolve(
                tz,
                midnight.checked_add_signed(TimeDelta::seconds(i64::from(seconds)))?,
            )
        };
        let (open, close) = (at(self.start)?, at(self.end)?);
        (open < close).then_some((open, close))
    }

    /// The first window that has not closed at `t`: the one `t` is in, or
    /// else the next to open.
    fn at_or_after(&self, tz: Tz, t: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let mut date = zone::local(tz, t).date().pred_opt()?;
        for _ in 0..WINDOW_SEARCH_DAYS {
            if let Some((open, close)) = self.on(tz, date)
                && close > t
            {
                return Some((open, close));
            }
            date = date.succ_opt()?;
        }
        None
    }
}

/// Parses `HH:MM` into seconds after midnight; `24:00` only if `end`.
fn parse_time_of_day(value: &str, field: &'static str, end: bool) -> Result<u32, ScheduleError> {
    let error = || ScheduleError::WindowTime {
        field,
        value: value.to_owned(),
        latest: if end { "24:00" } else { "23:59" },
    };
    let (hours, minutes) = value.split_once(':').ok_or_else(error)?;
    let digits = |s: &str, len: std::ops::RangeInclusive<usize>| {
        len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(hours, 1..=2) || !digits(minutes, 2..=2) {
        return Err(error());
    }
    let (hours, minutes) = (
        hours.parse::<u32>().map_err(|_| error())?,
        minutes.parse::<u32>().map_err(|_| error())?,
    );
    let seconds = hours * 3600 + minutes * 60;
    let latest = if end { DAY_SECONDS } else { DAY_SECONDS - 60 };
    if minutes > 59 || seconds > latest {
        return Err(error());
    }
    Ok(seconds)
}

/// When one target of a firing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartDecision {
    /// Start the target's job at `at`.
    Start {
        /// The planned start: inside the window if there is one, jittered.
        at: DateTime<Utc>,
        /// When the window closes, if there is one. A job not started by
        /// then goes back to [`Schedule::replan`].
        deadline: Option<DateTime<Utc>>,
    },
    /// The firing's window closed before the job could start and the
    /// schedule's `window-miss` policy is `expire` (or, never in practice,
    /// no window opens within a year).
    Expired,
}

impl Schedule {
    /// Plans when the job for target `key` (a device id) starts for
    /// `firing`.
    ///
    /// Without a window the job starts at the firing's release plus its
    /// jitter. With one, the firing belongs to the first window that had
    /// not closed at its scheduled time: the job starts at the later of the
    /// release and the window's opening, plus jitter, and always before the
    /// window closes. A catch-up firing released after its window closed
    /// follows the `window-miss` policy: the next window (`wait-next`) or
    /// [`StartDecision::Expired`] (`expire`).
    ///
    /// Jitter is an offset in `[0, jitter-seconds)`, at millisecond
    /// resolution, derived from a hash of the firing's scheduled time and
    /// `key`: the same on every call and every replica, and spread evenly
    /// over keys. When less of the window remains than the jitter, the
    /// offset is taken over what remains, so starts stay inside the window
    /// and stay spread.
    pub fn start_at(&self, firing: &Firing, key: &str) -> StartDecision {
        self.plan(firing, key, firing.released)
    }

    /// Decides again for a job that had not started by `now` (its worker
    /// reached it late, after its [`deadline`](StartDecision::Start)).
    ///
    /// If the job's window is still open it starts in what remains of it;
    /// once the window has closed, `wait-next` plans it in the next window
    /// and `expire` gives [`StartDecision::Expired`]. Without a window it
    /// starts at its planned time or now, whichever is later.
    pub fn replan(&self, firing: &Firing, key: &str, now: DateTime<Utc>) -> StartDecision {
        self.plan(firing, key, firing.released.max(now))
    }

    /// Plans the job for `key`, not starting before `earliest`.
    fn plan(&self, firing: &Firing, key: &str, earliest: DateTime<Utc>) -> StartDecision {
        let jitter = TimeDelta::seconds(i64::from(self.jitter_seconds));
        let Some(window) = self.window else {
            let planned = firing.released + spread(firing, key, jitter);
            return StartDecision::Start {
                at: planned.max(earliest),
                deadline: None,
            };
        };
        let mut bounds = window.at_or_after(self.tz, firing.scheduled);
        if bounds.is_some_and(|(_, close)| close <= earliest) {
            bounds = match self.window_miss {
                WindowMiss::WaitNext => window.at_or_after(self.tz, earliest),
                WindowMiss::Expire => None,
            };
        }
        let Some((open, close)) = bounds else {
            return StartDecision::Expired;
        };
        let from = earliest.max(open);
        StartDecision::Start {
            at: from + spread(firing, key, jitter.min(close - from)),
            deadline: Some(close),
        }
    }
}

/// The offset in `[0, span)`, at millisecond resolution, of target `key`
/// for `firing`; zero for an empty span.
fn spread(firing: &Firing, key: &str, span: TimeDelta) -> TimeDelta {
    match u64::try_from(span.num_milliseconds()) {
        Ok(span) if span > 0 => {
            // Below `span`, which came from an `i64`, so it fits.
            let offset = i64::try_from(hash(firing.scheduled, key) % span).unwrap_or_default();
            TimeDelta::milliseconds(offset)
        }
        _ => TimeDelta::zero(),
    }
}

/// A hash of a firing and a key that is the same on every platform, build
/// and replica (unlike `std`'s `DefaultHasher`): FNV-1a over the firing's
/// millisecond timestamp and the key, then `SplitMix64`'s finaliser so that
/// neighbouring inputs (`device-0001`, `device-0002`) land far apart.
fn hash(scheduled: DateTime<Utc>, key: &str) -> u64 {
    let bytes = scheduled.timestamp_millis().to_le_bytes();
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    for &b in bytes.iter().chain(key.as_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::{NaiveDateTime, NaiveTime};

    use super::super::{Misfire, Overlap, ScheduleSpec};
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .to_utc()
    }

    fn schedule(
        window: Option<(&[Weekday], &str, &str)>,
        miss: WindowMiss,
        jitter: u32,
    ) -> Schedule {
        ScheduleSpec {
            cron: "0 1 * * *".to_owned(),
            timezone: "Europe/Berlin".to_owned(),
            window: window.map(|(days, start, end)| WindowSpec {
                days: days.to_vec(),
                start: start.to_owned(),
                end: end.to_owned(),
            }),
            window_miss: miss,
            jitter_seconds: jitter,
            misfire: Misfire::RunOnce,
            overlap: Overlap::Skip,
        }
        .compile()
        .expect("valid schedule")
    }

    fn on_time(scheduled: DateTime<Utc>) -> Firing {
        Firing {
            scheduled,
            released: scheduled,
            catch_up: false,
        }
    }

    fn start(decision: StartDecision) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
        match decision {
            StartDecision::Start { at, deadline } => (at, deadline),
            StartDecision::Expired => panic!("expected a start, got Expired"),
        }
    }

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("device-{i:04}")).collect()
    }

    #[test]
    fn without_a_window_jobs_start_at_the_firing_plus_jitter() {
        let s = schedule(None, WindowMiss::WaitNext, 0);
        let firing = on_time(utc("2025-01-06T00:00:00Z"));
        assert_eq!(start(s.start_at(&firing, "a")), (firing.scheduled, None));
    }

    #[test]
    fn a_firing_before_the_window_waits_for_it_to_open() {
        // Firing at 01:00 Berlin (00:00Z); window 02:00-04:00 Berlin (01:00Z-03:00Z).
        let s = schedule(Some((&[], "02:00", "04:00")), WindowMiss::WaitNext, 0);
        let firing = on_time(utc("2025-01-06T00:00:00Z"));
        assert_eq!(
            start(s.start_at(&firing, "a")),
            (
                utc("2025-01-06T01:00:00Z"),
                Some(utc("2025-01-06T03:00:00Z"))
            )
        );
    }

    #[test]
    fn a_firing_inside_the_window_starts_at_once() {
        let s = schedule(Some((&[], "00:30", "04:00")), WindowMiss::WaitNext, 0);
        let firing = on_time(utc("2025-01-06T00:00:00Z"));
        assert_eq!(
            start(s.start_at(&firing, "a")),
            (
                utc("2025-01-06T00:00:00Z"),
                Some(utc("2025-01-06T03:00:00Z"))
            )
        );
    }

    #[test]
    fn window_days_hold_a_firing_until_an_allowed_day() {
        // Monday 2025-01-06; the window opens Saturdays and Sundays only.
        let s = schedule(
            Some((&[Weekday::Sat, Weekday::Sun], "22:00", "24:00")),
            WindowMiss::WaitNext,
            0,
        );
        let firing = on_time(utc("2025-01-06T00:00:00Z"));
        assert_eq!(
            start(s.start_at(&firing, "a")),
            (
                utc("2025-01-11T21:00:00Z"),
                Some(utc("2025-01-11T23:00:00Z"))
            )
        );
    }

    #[test]
    fn a_job_missing_its_window_waits_for_the_next_with_wait_next() {
        let s = schedule(Some((&[], "02:00", "04:00")), WindowMiss::WaitNext, 0);
        let firing = on_time(utc("2025-01-06T00:00:00Z"));
        // The worker reaches the job at 05:00 local, after the window closed.
        assert_eq!(
            start(s.replan(&firing, "a", utc("2025-01-06T04:00:00Z"))),
            (
                utc("2025-01-07T01:00:00Z"),
                Some(utc("2025-01-07T03:00:00Z"))
            )
        );
        // Still inside the window: start now.
        assert_eq!(
            start(s.replan(&firing, "a", utc("2025-01-06T02:00:00Z"))),
            (
                utc("2025-01-06T02:00:00Z"),
                Some(utc("2025-01-06T03:00:00Z"))
            )
        );
    }

    #[test]
    fn a_job_missing_its_window_expires_with_expire() {
        let s = schedule(Some((&[], "02:00", "04:00")), WindowMiss::Expire, 0);
        let firing = on_time(utc("2025-01-06T00:00:00Z"));
        assert_eq!(
            s.replan(&firing, "a", utc("2025-01-06T03:00:00Z")),
            StartDecision::Expired
        );
        assert!(matches!(
            s.replan(&firing, "a", utc("2025-01-06T02:59:59Z")),
            StartDecision::Start { .. }
        ));
    }

    #[test]
    fn a_catch_up_firing_after_its_window_follows_the_miss_policy() {
        // Scheduled 01:00 local with a 02:00-04:00 window, but released at
        // 06:00 local after downtime.
        let firing = Firing {
            scheduled: utc("2025-01-06T00:00:00Z"),
            released: utc("2025-01-06T05:00:00Z"),
            catch_up: true,
        };
        let expire = schedule(Some((&[], "02:00", "04:00")), WindowMiss::Expire, 0);
        assert_eq!(expire.start_at(&firing, "a"), StartDecision::Expired);
        let wait = schedule(Some((&[], "02:00", "04:00")), WindowMiss::WaitNext, 0);
        assert_eq!(
            start(wait.start_at(&firing, "a")).0,
            utc("2025-01-07T01:00:00Z")
        );
        // Released before its window closed: it still starts in it.
        let early = Firing {
            released: utc("2025-01-06T02:00:00Z"),
            ..firing
        };
        assert_eq!(
            start(expire.start_at(&early, "a")).0,
            utc("2025-01-06T02:00:00Z")
        );
    }

    #[test]
    fn a_window_swallowed_by_a_dst_gap_does_not_open_that_day() {
        // 2025-03-30 in Berlin: 02:00-03:00 does not exist.
        let s = schedule(Some((&[], "02:00", "02:45")), WindowMiss::WaitNext, 0);
        let firing = on_time(utc("2025-03-30T00:00:00Z"));
        assert_eq!(
            start(s.start_at(&firing, "a")),
            (
                utc("2025-03-31T00:00:00Z"),
                Some(utc("2025-03-31T00:45:00Z"))
            )
        );
        // A window that straddles the gap opens at its end.
        let s = schedule(Some((&[], "02:30", "04:00")), WindowMiss::WaitNext, 0);
        assert_eq!(
            start(s.start_at(&firing, "a")),
            (
                utc("2025-03-30T01:00:00Z"),
                Some(utc("2025-03-30T02:00:00Z"))
            )
        );
    }

    #[test]
    fn jitter_spreads_five_thousand_devices_within_bounds() {
        let s = schedule(None, WindowMiss::WaitNext, 600);
        let firing = on_time(utc("2025-01-06T00:00:00Z"));
        let mut per_second: HashMap<i64, usize> = HashMap::new();
        for key in keys(5000) {
            let (at, deadline) = start(s.start_at(&firing, &key));
            assert_eq!(deadline, None);
            let offset = at - firing.released;
            assert!(
                offset >= TimeDelta::zero() && offset < TimeDelta::seconds(600),
                "{key}: {offset}"
            );
            assert_eq!(
                s.start_at(&firing, &key),
                StartDecision::Start { at, deadline },
                "deterministic"
            );
            *per_second.entry(offset.num_seconds()).or_default() += 1;
        }
        // 5000 over 600 s averages 8.3 a second; no second may hold 1%.
        let busiest = per_second.values().copied().max().unwrap_or_default();
        assert!(busiest <= 50, "busiest second holds {busiest} starts");
        assert!(
            per_second.len() > 590,
            "only {} distinct seconds used",
            per_second.len()
        );
        // Each tenth of the span holds roughly a tenth of the devices.
        for tenth in 0..10 {
            let n: usize = (tenth * 60..(tenth + 1) * 60)
                .map(|second| per_second.get(&second).copied().unwrap_or_default())
                .sum();
            assert!((400..=600).contains(&n), "tenth {tenth} holds {n}");
        }
    }

    #[test]
    fn jitter_differs_between_firings() {
        let s = schedule(None, WindowMiss::WaitNext, 600);
        let monday = on_time(utc("2025-01-06T00:00:00Z"));
        let tuesday = on_time(utc("2025-01-07T00:00:00Z"));
        let same = keys(100)
            .iter()
            .filter(|key| {
                start(s.start_at(&monday, key)).0 - monday.released
                    == start(s.start_at(&tuesday, key)).0 - tuesday.released
            })
            .count();
        assert!(same < 5, "{same} of 100 devices kept their offset");
    }

    #[test]
    fn jitter_is_squeezed_into_the_rest_of_the_window() {
        // A ten-minute window and an hour of jitter: every start stays inside
        // the window and the starts still spread over it.
        let s = schedule(Some((&[], "02:00", "02:10")), WindowMiss::WaitNext, 3600);
        let firing = on_time(utc("2025-01-06T00:00:00Z"));
        let (open, close) = (utc("2025-01-06T01:00:00Z"), utc("2025-01-06T01:10:00Z"));
        let mut per_minute = [0usize; 10];
        for key in keys(5000) {
            let (at, deadline) = start(s.start_at(&firing, &key));
            assert_eq!(deadline, Some(close));
            assert!(open <= at && at < close, "{key} starts at {at}");
            per_minute[(at - open).num_minutes() as usize] += 1;
        }
        assert!(
            per_minute.iter().all(|&n| (400..=600).contains(&n)),
            "{per_minute:?}"
        );
    }

    #[test]
    fn jobs_only_start_inside_the_window_over_a_month_of_firings() {
        // Every 7 minutes, weekday windows 02:00-04:30 Berlin, 30 min jitter,
        // across the spring-forward night.
        let s = ScheduleSpec {
            cron: "*/7 * * * *".to_owned(),
            window: Some(WindowSpec {
                days: vec![
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                ],
                start: "02:00".to_owned(),
                end: "04:30".to_owned(),
            }),
            jitter_seconds: 1800,
            ..ScheduleSpec::new("*/7 * * * *", "Europe/Berlin")
        }
        .compile()
        .expect("valid schedule");
        let berlin: Tz = "Europe/Berlin".parse().expect("zone");
        let (open, close) = (
            NaiveTime::from_hms_opt(2, 0, 0).expect("time"),
            NaiveTime::from_hms_opt(4, 30, 0).expect("time"),
        );
        let mut t = utc("2025-03-15T00:00:00Z");
        let mut starts = 0;
        while t < utc("2025-04-15T00:00:00Z") {
            t = s.next_after(t).expect("next firing");
            let (at, _) = start(s.start_at(&on_time(t), &format!("device-{}", t.timestamp())));
            let local: NaiveDateTime = zone::local(berlin, at);
            assert!(local.weekday().num_days_from_monday() < 5, "{local}");
            assert!(open <= local.time() && local.time() < close, "{local}");
            assert!(at >= t);
            starts += 1;
        }
        assert!(starts > 6000);
    }

    #[test]
    fn window_times_are_checked_naming_the_field() {
        let spec = |start: &str, end: &str| WindowSpec {
            days: vec![],
            start: start.to_owned(),
            end: end.to_owned(),
        };
        for (start, end, field, value) in [
            ("25:00", "26:00", "window.start", "25:00"),
            ("24:00", "24:00", "window.start", "24:00"),
            ("2am", "04:00", "window.start", "2am"),
            ("02:0", "04:00", "window.start", "02:0"),
            ("02:60", "04:00", "window.start", "02:60"),
            ("-1:00", "04:00", "window.start", "-1:00"),
            ("02:00", "24:30", "window.end", "24:30"),
            ("02:00", "", "window.end", ""),
            ("02:00", "4", "window.end", "4"),
        ] {
            let err = Window::compile(&spec(start, end)).unwrap_err();
            assert_eq!(err.field(), field, "{start}-{end}");
            assert!(
                err.to_string()
                    .contains(&format!("`{field}` `{value}` is not a time of day")),
                "{err}"
            );
        }
        assert_eq!(
            Window::compile(&spec("9:00", "24:00")),
            Ok(Window {
                days: 0x7f,
                start: 9 * 3600,
                end: DAY_SECONDS
            })
        );
    }

    #[test]
    fn a_window_ending_before_it_starts_names_window_end() {
        for (start, end) in [("22:00", "04:00"), ("02:00", "02:00")] {
            let err = Window::compile(&WindowSpec {
                days: vec![],
                start: start.to_owned(),
                end: end.to_owned(),
            })
            .unwrap_err();
            assert_eq!(err.field(), "window.end");
            assert_eq!(
                err.to_string(),
                format!(
                    "`window.end` `{end}` is not after `window.start` `{start}`; a window must end later on the same day (`24:00` is allowed as the end), windows that cross midnight are not supported"
                )
            );
        }
    }
}
