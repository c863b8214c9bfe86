//! Scenario tests: the driver on paused tokio time across cron forms, time
//! zones, DST transitions, downtime and long runs, and spec checking.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;

use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test instant")
        .to_utc()
}

fn zone(name: &str) -> Tz {
    name.parse().expect("test zone")
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
}

fn compile(cron: &str, timezone: &str) -> Schedule {
    ScheduleSpec::new(cron, timezone)
        .compile()
        .expect("valid schedule")
}

/// A sink that records what the driver hands it; each run lasts
/// `run_length` after its release.
struct Recorder {
    clock: Clock,
    run_length: TimeDelta,
    fired: Mutex<Vec<Firing>>,
    skipped: Mutex<Vec<Firing>>,
}

impl Recorder {
    fn new(clock: Clock, run_length: TimeDelta) -> Self {
        Self {
            clock,
            run_length,
            fired: Mutex::default(),
            skipped: Mutex::default(),
        }
    }

    fn fired(&self) -> Vec<Firing> {
        self.fired.lock().expect("recorder lock").clone()
    }

    fn skipped(&self) -> Vec<Firing> {
        self.skipped.lock().expect("recorder lock").clone()
    }
}

impl FiringSink for Recorder {
    async fn previous_run_active(&self) -> bool {
        let now = self.clock.now();
        let fired = self.fired.lock().expect("recorder lock");
        fired
            .last()
            .is_some_and(|run| run.released + self.run_length > now)
    }

    async fn fire(&self, firing: Firing) -> FireOutcome {
        self.fired.lock().expect("recorder lock").push(firing);
        FireOutcome::Fired
    }

    async fn skipped(&self, firing: Firing) {
        self.skipped.lock().expect("recorder lock").push(firing);
    }
}

/// Runs the driver for `run_for` of paused tokio time (which passes
/// instantly) and stops it.
async fn run_for(
    schedule: &Schedule,
    clock: &Clock,
    sink: &Recorder,
    since: Option<DateTime<Utc>>,
    run_for: Duration,
) {
    let stopped = tokio::time::timeout(run_for, run_schedule(schedule, clock, sink, since)).await;
    assert!(stopped.is_err(), "the driver ended on its own");
}

/// The scheduled times the driver fires from `start` for `hours` hours
/// (less a second, so a firing exactly at the end is not raced).
async fn drive(schedule: &Schedule, start: &str, hours: u64) -> Vec<DateTime<Utc>> {
    let clock = Clock::starting_at(utc(start));
    let sink = Recorder::new(clock, TimeDelta::zero());
    run_for(
        schedule,
        &clock,
        &sink,
        None,
        Duration::from_secs(hours * 3600 - 1),
    )
    .await;
    let fired = sink.fired();
    for firing in &fired {
        assert_eq!(firing.released, firing.scheduled, "fired late: {firing:?}");
        assert!(!firing.catch_up);
    }
    fired.iter().map(|firing| firing.scheduled).collect()
}

/// The firings whose local date in `tz` is `day`.
fn on_local_day(fired: &[DateTime<Utc>], tz: Tz, day: &str) -> Vec<DateTime<Utc>> {
    let day = date(day);
    fired
        .iter()
        .copied()
        .filter(|t| t.with_timezone(&tz).date_naive() == day)
        .collect()
}

/// The gaps between consecutive firings.
fn gaps(fired: &[DateTime<Utc>]) -> Vec<TimeDelta> {
    fired.windows(2).map(|pair| pair[1] - pair[0]).collect()
}

// Cron forms.

#[tokio::test(start_paused = true)]
async fn driver_fires_every_cron_form_on_time() {
    // From Wednesday 2025-01-01 00:00 UTC through January.
    let january = 31 * 24;
    for (cron, hours, count) in [
        ("*/15 * * * *", january, 31 * 24 * 4),
        ("0,30 9-17 * * 1-5", january, 23 * 9 * 2),
        ("*/20 * * * * *", 1, 180),
        ("30 0 12 * * *", january, 31),
        ("0 6 * * MON,fri", january, 4 + 5),
        ("0 0 13 * FRI", january, 1 + 5),
        ("0 0 * * 7", january, 4),
        ("@hourly", january, 31 * 24),
        ("@daily", january, 31),
        ("@midnight", january, 31),
        ("@weekly", january, 4),
        ("@monthly", january, 1),
        ("@yearly", january, 1),
        ("@annually", january, 1),
    ] {
        let schedule = compile(cron, "UTC");
        let fired = drive(&schedule, "2025-01-01T00:00:00Z", hours).await;
        assert_eq!(fired.len(), count, "`{cron}`");
        // The driver fired exactly the times `next_after` lists.
        let start = utc("2025-01-01T00:00:00Z");
        let end = start + TimeDelta::hours(hours as i64) - TimeDelta::seconds(1);
        let mut expected = Vec::new();
        let mut t = start - TimeDelta::seconds(1);
        while let Some(next) = schedule.next_after(t).filter(|&next| next <= end) {
            expected.push(next);
            t = next;
        }
        assert_eq!(fired, expected, "`{cron}`");
    }
}

#[tokio::test(start_paused = true)]
async fn six_field_schedules_fire_on_their_seconds() {
    let fired = drive(
        &compile("5,35 */30 * * * *", "UTC"),
        "2025-01-01T00:00:00Z",
        1,
    )
    .await;
    assert_eq!(
        fired,
        [
            utc("2025-01-01T00:00:05Z"),
            utc("2025-01-01T00:00:35Z"),
            utc("2025-01-01T00:30:05Z"),
            utc("2025-01-01T00:30:35Z"),
        ]
    );
}

#[test]
fn next_after_is_strictly_after() {
    let schedule = compile("0 * * * *", "UTC");
    let ten = utc("2025-01-01T10:00:00Z");
    assert_eq!(schedule.next_after(ten), Some(utc("2025-01-01T11:00:00Z")));
    assert_eq!(
        schedule.next_after(ten - TimeDelta::nanoseconds(1)),
        Some(ten)
    );
    assert_eq!(
        schedule.next_after(ten + TimeDelta::nanoseconds(1)),
        Some(utc("2025-01-01T11:00:00Z"))
    );
}

// Time zones.

#[tokio::test(start_paused = true)]
async fn daily_jobs_fire_at_local_time_in_each_zone() {
    for (timezone, winter, summer) in [
        ("UTC", "2025-01-07T09:00:00Z", "2025-07-07T09:00:00Z"),
        (
            "America/New_York",
            "2025-01-07T14:00:00Z",
            "2025-07-07T13:00:00Z",
        ),
        (
            "Europe/Berlin",
            "2025-01-07T08:00:00Z",
            "2025-07-07T07:00:00Z",
        ),
        // Southern hemisphere, 30-minute DST: +11:00 in January, +10:30 in July.
        (
            "Australia/Lord_Howe",
            "2025-01-06T22:00:00Z",
            "2025-07-06T22:30:00Z",
        ),
        // No DST, and not a whole hour from UTC.
        (
            "Asia/Kolkata",
            "2025-01-07T03:30:00Z",
            "2025-07-07T03:30:00Z",
        ),
    ] {
        let schedule = compile("0 9 * * *", timezone);
        for expected in [winter, summer] {
            let start = utc(expected) - TimeDelta::hours(12);
            let fired = drive(&schedule, &start.to_rfc3339(), 24).await;
            assert_eq!(fired, [utc(expected)], "{timezone}");
        }
    }
}

// DST, fixed-hour schedules.

#[tokio::test(start_paused = true)]
async fn a_daily_0230_job_runs_once_on_spring_forward_day() {
    // Berlin jumps from 02:00 CET to 03:00 CEST on 2025-03-30 (01:00Z);
    // New York from 02:00 EST to 03:00 EDT on 2025-03-09 (07:00Z).
    for (timezone, start, day, at) in [
        (
            "Europe/Berlin",
            "2025-03-28T12:00:00Z",
            "2025-03-30",
            "2025-03-30T01:00:00Z",
        ),
        (
            "America/New_York",
            "2025-03-07T12:00:00Z",
            "2025-03-09",
            "2025-03-09T07:00:00Z",
        ),
    ] {
        let tz = zone(timezone);
        let fired = drive(&compile("30 2 * * *", timezone), start, 4 * 24).await;
        assert_eq!(on_local_day(&fired, tz, day), [utc(at)], "{timezone}");
        // 03:00 local, right after the jump.
        assert_eq!(
            utc(at).with_timezone(&tz).format("%H:%M").to_string(),
            "03:00"
        );
        // Every other day fires at 02:30 as usual.
        assert_eq!(fired.len(), 4, "{timezone}: {fired:?}");
        for t in fired.iter().filter(|&&t| t != utc(at)) {
            assert_eq!(t.with_timezone(&tz).format("%H:%M").to_string(), "02:30");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_daily_job_in_the_repeated_hour_runs_once_on_fall_back_day() {
    // Berlin falls back from 03:00 CEST to 02:00 CET on 2025-10-26 (01:00Z),
    // repeating 02:00-03:00; New York from 02:00 EDT to 01:00 EST on
    // 2025-11-02 (06:00Z), repeating 01:00-02:00.
    for (cron, timezone, start, day, at) in [
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2025-10-24T12:00:00Z",
            "2025-10-26",
            "2025-10-26T00:30:00Z",
        ),
        (
            "30 1 * * *",
            "America/New_York",
            "2025-10-31T12:00:00Z",
            "2025-11-02",
            "2025-11-02T05:30:00Z",
        ),
    ] {
        let tz = zone(timezone);
        let fired = drive(&compile(cron, timezone), start, 4 * 24).await;
        // Once, at the first (daylight-time) pass.
        assert_eq!(on_local_day(&fired, tz, day), [utc(at)], "{timezone}");
        assert_eq!(fired.len(), 4, "{timezone}: {fired:?}");
    }
    // In New York 02:30 is not repeated: the same job runs once, in EST.
    let fired = drive(
        &compile("30 2 * * *", "America/New_York"),
        "2025-11-01T12:00:00Z",
        24,
    )
    .await;
    assert_eq!(fired, [utc("2025-11-02T07:30:00Z")]);
}

#[tokio::test(start_paused = true)]
async fn lord_howe_half_hour_transitions_follow_the_same_rule() {
    // Lord Howe jumps from 02:00 (+10:30) to 02:30 (+11:00) on 2025-10-05
    // (15:30Z on the 4th) and falls back from 02:00 (+11:00) to 01:30
    // (+10:30) on 2025-04-06 (15:00Z on the 5th).
    let tz = zone("Australia/Lord_Howe");
    let fired = drive(
        &compile("15 2 * * *", "Australia/Lord_Howe"),
        "2025-10-03T12:00:00Z",
        3 * 24,
    )
    .await;
    assert_eq!(
        on_local_day(&fired, tz, "2025-10-05"),
        [utc("2025-10-04T15:30:00Z")]
    );
    let fired = drive(
        &compile("45 1 * * *", "Australia/Lord_Howe"),
        "2025-04-04T12:00:00Z",
        3 * 24,
    )
    .await;
    assert_eq!(
        on_local_day(&fired, tz, "2025-04-06"),
        [utc("2025-04-05T14:45:00Z")]
    );
}

#[tokio::test(start_paused = true)]
async fn fixed_hour_times_in_one_gap_fire_once_and_repeated_ones_once_each() {
    let ny = zone("America/New_York");
    // Spring-forward: 02:00, 02:15, 02:30, 02:45 and 03:00 all become 03:00 EDT.
    for cron in ["0,30 2 * * *", "*/15 2 * * *", "0 2,3 * * *"] {
        let fired = drive(
            &compile(cron, "America/New_York"),
            "2025-03-09T05:00:00Z",
            12,
        )
        .await;
        assert_eq!(fired, [utc("2025-03-09T07:00:00Z")], "`{cron}`");
    }
    // Fall-back: 01:00-01:45 fire on the EDT pass only.
    let fired = drive(
        &compile("*/15 1 * * *", "America/New_York"),
        "2025-11-02T03:00:00Z",
        12,
    )
    .await;
    assert_eq!(
        fired,
        [
            utc("2025-11-02T05:00:00Z"),
            utc("2025-11-02T05:15:00Z"),
            utc("2025-11-02T05:30:00Z"),
            utc("2025-11-02T05:45:00Z"),
        ]
    );
    assert!(
        fired
            .iter()
            .all(|t| t.with_timezone(&ny).format("%Z").to_string() == "EDT")
    );
}

// DST, elapsed-time schedules.

#[tokio::test(start_paused = true)]
async fn every_15_minutes_follows_elapsed_time_through_both_transitions() {
    let schedule = compile("*/15 * * * *", "America/New_York");
    let ny = zone("America/New_York");
    // Spring-forward day: 23 hours long, 92 firings 15 real minutes apart.
    let fired = drive(&schedule, "2025-03-09T05:00:00Z", 24).await;
    let day = on_local_day(&fired, ny, "2025-03-09");
    assert_eq!(day.len(), 23 * 4);
    assert!(gaps(&day).iter().all(|&gap| gap == TimeDelta::minutes(15)));
    assert!(day.contains(&utc("2025-03-09T06:45:00Z"))); // 01:45 EST
    assert!(day.contains(&utc("2025-03-09T07:00:00Z"))); // 03:00 EDT
    // Fall-back day: 25 hours long, 100 firings 15 real minutes apart;
    // 01:00-01:45 run on both passes, no instant twice.
    let fired = drive(&schedule, "2025-11-02T04:00:00Z", 25).await;
    let day = on_local_day(&fired, ny, "2025-11-02");
    assert_eq!(day.len(), 25 * 4);
    assert!(gaps(&day).iter().all(|&gap| gap == TimeDelta::minutes(15)));
    let one_thirty: Vec<String> = day
        .iter()
        .map(|t| t.with_timezone(&ny).format("%H:%M %Z").to_string())
        .filter(|local| local.starts_with("01:30"))
        .collect();
    assert_eq!(one_thirty, ["01:30 EDT", "01:30 EST"]);
}

#[tokio::test(start_paused = true)]
async fn every_15_minutes_follows_elapsed_time_on_lord_howe() {
    let schedule = compile("*/15 * * * *", "Australia/Lord_Howe");
    let tz = zone("Australia/Lord_Howe");
    // 23.5-hour and 24.5-hour days.
    for (start, day, count) in [
        ("2025-10-04T12:00:00Z", "2025-10-05", 94),
        ("2025-04-05T12:00:00Z", "2025-04-06", 98),
    ] {
        let fired = drive(&schedule, start, 26).await;
        let day_firings = on_local_day(&fired, tz, day);
        assert_eq!(day_firings.len(), count, "{day}");
        assert!(
            gaps(&day_firings)
                .iter()
                .all(|&gap| gap == TimeDelta::minutes(15)),
            "{day}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn hourly_and_two_hourly_jobs_count_real_hours_across_dst() {
    let ny = zone("America/New_York");
    let hourly = drive(
        &compile("@hourly", "America/New_York"),
        "2025-11-02T04:00:00Z",
        25,
    )
    .await;
    assert_eq!(on_local_day(&hourly, ny, "2025-11-02").len(), 25);
    assert!(gaps(&hourly).iter().all(|&gap| gap == TimeDelta::hours(1)));
    // `0 */2 * * *` on spring-forward day: 02:00 does not occur, so 00:00
    // EST is followed by 04:00 EDT, three real hours later.
    let two_hourly = drive(
        &compile("0 */2 * * *", "America/New_York"),
        "2025-03-09T05:00:00Z",
        5,
    )
    .await;
    assert_eq!(
        two_hourly,
        [utc("2025-03-09T05:00:00Z"), utc("2025-03-09T08:00:00Z")]
    );
}

// Misfire after downtime.

/// Runs a daily 02:00 UTC schedule for a day from Monday 2025-01-06 00:00,
/// stops for three days of paused time, and restarts it for a day from
/// where the sink says it left off.
async fn daily_with_downtime(misfire: Misfire) -> Vec<Firing> {
    let schedule = ScheduleSpec {
        misfire,
        ..ScheduleSpec::new("0 2 * * *", "UTC")
    }
    .compile()
    .expect("valid schedule");
    let clock = Clock::starting_at(utc("2025-01-06T00:00:00Z"));
    let sink = Recorder::new(clock, TimeDelta::minutes(10));
    run_for(
        &schedule,
        &clock,
        &sink,
        None,
        Duration::from_secs(24 * 3600),
    )
    .await;
    let last = sink.fired().last().map(|firing| firing.scheduled);
    assert_eq!(last, Some(utc("2025-01-06T02:00:00Z")));

    // Downtime: the 7th, 8th and 9th at 02:00 pass with no driver.
    tokio::time::advance(Duration::from_secs(3 * 24 * 3600)).await;
    assert_eq!(clock.now(), utc("2025-01-10T00:00:00Z"));

    run_for(
        &schedule,
        &clock,
        &sink,
        last,
        Duration::from_secs(24 * 3600 - 1),
    )
    .await;
    sink.fired()
}

#[tokio::test(start_paused = true)]
async fn run_once_catches_up_missed_firings_once_after_downtime() {
    let fired = daily_with_downtime(Misfire::RunOnce).await;
    assert_eq!(
        fired,
        [
            Firing {
                scheduled: utc("2025-01-06T02:00:00Z"),
                released: utc("2025-01-06T02:00:00Z"),
                catch_up: false,
            },
            // The three missed firings, once, the moment the driver is back.
            Firing {
                scheduled: utc("2025-01-09T02:00:00Z"),
                released: utc("2025-01-10T00:00:00Z"),
                catch_up: true,
            },
            Firing {
                scheduled: utc("2025-01-10T02:00:00Z"),
                released: utc("2025-01-10T02:00:00Z"),
                catch_up: false,
            },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn skip_drops_missed_firings_after_downtime() {
    let fired = daily_with_downtime(Misfire::Skip).await;
    let scheduled: Vec<_> = fired.iter().map(|firing| firing.scheduled).collect();
    assert_eq!(
        scheduled,
        [utc("2025-01-06T02:00:00Z"), utc("2025-01-10T02:00:00Z")]
    );
    assert!(fired.iter().all(|firing| !firing.catch_up));
}

#[tokio::test(start_paused = true)]
async fn a_first_start_has_nothing_to_catch_up() {
    // Started at 03:00 with no history: the 02:00 firing is not "missed".
    let fired = drive(&compile("0 2 * * *", "UTC"), "2025-01-06T03:00:00Z", 24).await;
    assert_eq!(fired, [utc("2025-01-07T02:00:00Z")]);
}

// Overlap.

/// An hourly schedule whose runs last 90 minutes, driven for six hours.
async fn hourly_with_long_runs(overlap: Overlap) -> (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
    let schedule = ScheduleSpec {
        overlap,
        ..ScheduleSpec::new("@hourly", "UTC")
    }
    .compile()
    .expect("valid schedule");
    let clock = Clock::starting_at(utc("2025-01-06T00:00:00Z"));
    let sink = Recorder::new(clock, TimeDelta::minutes(90));
    run_for(
        &schedule,
        &clock,
        &sink,
        None,
        Duration::from_secs(6 * 3600 - 1),
    )
    .await;
    let scheduled = |firings: Vec<Firing>| firings.iter().map(|firing| firing.scheduled).collect();
    (scheduled(sink.fired()), scheduled(sink.skipped()))
}

#[tokio::test(start_paused = true)]
async fn overlap_skip_skips_firings_while_the_previous_run_is_going() {
    let (fired, skipped) = hourly_with_long_runs(Overlap::Skip).await;
    assert_eq!(
        fired,
        [
            utc("2025-01-06T00:00:00Z"),
            utc("2025-01-06T02:00:00Z"),
            utc("2025-01-06T04:00:00Z"),
        ]
    );
    assert_eq!(
        skipped,
        [
            utc("2025-01-06T01:00:00Z"),
            utc("2025-01-06T03:00:00Z"),
            utc("2025-01-06T05:00:00Z"),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn overlap_allow_fires_beside_the_previous_run() {
    let (fired, skipped) = hourly_with_long_runs(Overlap::Allow).await;
    assert_eq!(fired.len(), 6);
    assert!(skipped.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_sink_losing_the_firing_to_another_replica_changes_nothing() {
    struct Lost(Mutex<usize>);
    impl FiringSink for Lost {
        async fn previous_run_active(&self) -> bool {
            false
        }
        async fn fire(&self, _firing: Firing) -> FireOutcome {
            *self.0.lock().expect("lock") += 1;
            FireOutcome::AlreadyFired
        }
    }
    let sink = Lost(Mutex::new(0));
    let clock = Clock::starting_at(utc("2025-01-06T00:30:00Z"));
    let schedule = compile("@hourly", "UTC");
    let stopped = tokio::time::timeout(
        Duration::from_secs(3 * 3600),
        run_schedule(&schedule, &clock, &sink, None),
    )
    .await;
    assert!(stopped.is_err());
    assert_eq!(*sink.0.lock().expect("lock"), 3);
}

// The spec.

#[test]
fn specs_read_and_write_kebab_case() {
    let spec: ScheduleSpec = serde_json::from_value(serde_json::json!({
        "cron": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "window": { "days": ["sat", "sunday"], "start": "01:00", "end": "05:00" },
        "window-miss": "expire",
        "jitter-seconds": 900,
        "misfire": "skip",
        "overlap": "allow",
    }))
    .expect("valid spec");
    assert_eq!(
        spec,
        ScheduleSpec {
            window: Some(WindowSpec {
                days: vec![Weekday::Sat, Weekday::Sun],
                start: "01:00".to_owned(),
                end: "05:00".to_owned(),
            }),
            window_miss: WindowMiss::Expire,
            jitter_seconds: 900,
            misfire: Misfire::Skip,
            overlap: Overlap::Allow,
            ..ScheduleSpec::new("30 2 * * *", "Europe/Berlin")
        }
    );
    let json = serde_json::to_value(&spec).expect("serializable");
    assert_eq!(json["window-miss"], "expire");
    assert_eq!(json["window"]["days"], serde_json::json!(["sat", "sun"]));
    assert_eq!(
        serde_json::from_value::<ScheduleSpec>(json).expect("round trip"),
        spec
    );
    spec.compile().expect("compiles");
}

#[test]
fn spec_defaults_are_no_window_no_jitter_run_once_and_skip_overlap() {
    let spec: ScheduleSpec =
        serde_json::from_str(r#"{"cron": "@daily", "timezone": "UTC"}"#).expect("valid spec");
    assert_eq!(spec, ScheduleSpec::new("@daily", "UTC"));
    assert_eq!(spec.window_miss, WindowMiss::WaitNext);
    assert_eq!(spec.misfire, Misfire::RunOnce);
    assert_eq!(spec.overlap, Overlap::Skip);
    let err = serde_json::from_str::<ScheduleSpec>(
        r#"{"cron": "@daily", "timezone": "UTC", "jitter": 5}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `jitter`"), "{err}");
}

// Bad input.

#[test]
fn bad_input_is_refused_naming_the_field() {
    let window = |start: &str, end: &str| WindowSpec {
        days: vec![],
        start: start.to_owned(),
        end: end.to_owned(),
    };
    let cases = [
        (
            ScheduleSpec::new("0 25 * * *", "UTC"),
            "cron",
            "cron field `hour` in `0 25 * * *`: `25` is out of range 0-23",
        ),
        (
            ScheduleSpec::new("every day", "UTC"),
            "cron",
            "has 2 fields; expected 5",
        ),
        (
            ScheduleSpec::new("@reboot", "UTC"),
            "cron",
            "`cron` macro `@reboot` is not supported",
        ),
        (ScheduleSpec::new("", "UTC"), "cron", "`cron` is empty"),
        (
            ScheduleSpec::new("@daily", "Mars/Olympus_Mons"),
            "timezone",
            "`timezone` `Mars/Olympus_Mons` is not a known IANA time zone",
        ),
        (
            ScheduleSpec::new("@daily", "europe/berlin"),
            "timezone",
            "`europe/berlin`",
        ),
        (
            ScheduleSpec::new("@daily", "EST5EDT "),
            "timezone",
            "`EST5EDT `",
        ),
        (
            ScheduleSpec {
                window: Some(window("22:00", "04:00")),
                ..ScheduleSpec::new("@daily", "UTC")
            },
            "window.end",
            "`window.end` `04:00` is not after `window.start` `22:00`",
        ),
        (
            ScheduleSpec {
                window: Some(window("7pm", "22:00")),
                ..ScheduleSpec::new("@daily", "UTC")
            },
            "window.start",
            "`window.start` `7pm` is not a time of day; expected HH:MM from 00:00 to 23:59",
        ),
        (
            ScheduleSpec {
                window: Some(window("19:00", "25:00")),
                ..ScheduleSpec::new("@daily", "UTC")
            },
            "window.end",
            "`window.end` `25:00` is not a time of day; expected HH:MM from 00:00 to 24:00",
        ),
        (
            ScheduleSpec {
                jitter_seconds: 86_401,
                ..ScheduleSpec::new("@daily", "UTC")
            },
            "jitter-seconds",
            "`jitter-seconds` `86401` is too large; expected at most 86400 (one day)",
        ),
    ];
    for (spec, field, message) in cases {
        let err = spec.compile().unwrap_err();
        assert_eq!(err.field(), field, "{spec:?}");
        assert!(err.to_string().contains(message), "{spec:?}: {err}");
    }
    let max_jitter = ScheduleSpec {
        jitter_seconds: MAX_JITTER_SECONDS,
        ..ScheduleSpec::new("@daily", "UTC")
    };
    assert!(max_jitter.compile().is_ok());
}
