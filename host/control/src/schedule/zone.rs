//! Wall-clock time in an IANA zone: where the DST rule of the module docs is
//! implemented, for cron firings and window boundaries alike.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use super::cron::Cron;

/// How far apart [`first_offset_change`] probes the zone's UTC offset.
/// Two offset changes closer together than this, returning to the same
/// offset, would go unseen; no zone in the tz database has such a pair in
/// modern times.
const OFFSET_PROBE_SECONDS: i64 = 6 * 3600;

/// How far past a skipped wall time [`gap_end`] looks for the end of the
/// gap: a whole skipped day (Pacific/Apia, 2011-12-30) plus margin.
const LONGEST_GAP_MINUTES: u32 = 2 * 24 * 60;

/// The wall-clock time of instant `t` in `tz`.
pub(super) fn local(tz: Tz, t: DateTime<Utc>) -> NaiveDateTime {
    t.with_timezone(&tz).naive_local()
}

/// The instant a fixed wall-clock time stands for, by the DST rule:
///
/// - a time that exists once is that instant;
/// - a time that exists twice (fall-back) is the earlier instant;
/// - a time skipped by a gap (spring-forward) is the first instant after
///   the gap, which is the instant of the transition itself.
///
/// `None` only if no instant follows within two days, which the tz database
/// never does.
pub(super) fn resolve(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) => Some(t.to_utc()),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).to_utc()),
        LocalResult::None => gap_end(tz, wall),
    }
}

/// The first instant after the gap that skips wall time `wall`.
fn gap_end(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    // Find the first whole minute after `wall` that exists. The transition
    // lies within the minute before that instant; narrow it to the second:
    // it is the first instant whose wall time is at or past `wall`.
    let mut probe = wall;
    for _ in 0..LONGEST_GAP_MINUTES {
        probe = probe.checked_add_signed(TimeDelta::minutes(1))?;
        let Some(after) = tz.from_local_datetime(&probe).earliest() else {
            continue;
        };
        let (mut before, mut after) = (after.timestamp() - 60, after.timestamp());
        while after - before > 1 {
            let mid = before + (after - before) / 2;
            if local(tz, DateTime::from_timestamp(mid, 0)?) >= wall {
                after = mid;
            } else {
                before = mid;
            }
        }
        return DateTime::from_timestamp(after, 0);
    }
    None
}

/// The zone's offset from UTC, in seconds, at Unix time `ts`.
fn offset_at(tz: Tz, ts: i64) -> Option<i32> {
    let utc = DateTime::from_timestamp(ts, 0)?.naive_utc();
    Some(tz.offset_from_utc_datetime(&utc).fix().local_minus_utc())
}

/// The first Unix second in `(from, to]` whose offset is not `offset`, given
/// that `from + 1` has `offset`; `None` if the offset holds through `to`.
fn first_offset_change(tz: Tz, from: i64, to: i64, offset: i32) -> Option<i64> {
    let mut before = from + 1;
    while before < to {
        let probe = to.min(before.saturating_add(OFFSET_PROBE_SECONDS));
        if offset_at(tz, probe) != Some(offset) {
            let mut after = probe;
            while after - before > 1 {
                let mid = before + (after - before) / 2;
                if offset_at(tz, mid) == Some(offset) {
                    before = mid;
                } else {
                    after = mid;
                }
            }
            return Some(after);
        }
        before = probe;
    }
    None
}

/// The next firing strictly after `after` of a schedule whose hour field
/// is fixed: each matching wall-clock time fires once, at the instant
/// [`resolve`] gives it. Several skipped times that resolve to the same
/// instant are one firing.
pub(super) fn next_fixed(cron: &Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // `resolve` never decreases as the wall time grows, and every wall time
    // up to the local time of `after` resolves to `after` or earlier, so the
    // first later match whose instant is past `after` is the answer. Only
    // inside a repeated hour do matches resolve before `after` (to the first
    // pass); they are stepped over.
    let mut wall = local(tz, after);
    loop {
        wall = cron.next_naive(wall)?;
        if let Some(at) = resolve(tz, wall)
            && at > after
        {
            return Some(at);
        }
    }
}

/// The next firing strictly after `after` of a schedule whose hour field
/// starts with `*`: the first instant whose local wall time matches. Wall
/// times inside a gap never occur and do not fire; wall times repeated
/// after fall-back occur twice and fire twice.
pub(super) fn next_elapsed(cron: &Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // Between offset changes, wall time is UTC plus a constant, so the next
    // match is the next naive match shifted back by that offset, unless the
    // offset changes first; then search again from the change.
    let mut from = after.timestamp();
    loop {
        let offset = offset_at(tz, from.checked_add(1)?)?;
        let wall = DateTime::from_timestamp(from.checked_add(i64::from(offset))?, 0)?.naive_utc();
        let next = cron.next_naive(wall)?.and_utc().timestamp() - i64::from(offset);
        match first_offset_change(tz, from, next, offset) {
            None => return DateTime::from_timestamp(next, 0),
            Some(change) => from = change - 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn wall(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("test wall time")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .to_utc()
    }

    #[test]
    fn skipped_wall_times_resolve_to_the_end_of_the_gap() {
        let ny: Tz = "America/New_York".parse().expect("zone");
        // 2025-03-09: 02:00 EST jumps to 03:00 EDT (07:00Z).
        assert_eq!(
            resolve(ny, wall("2025-03-09 02:00")),
            Some(utc("2025-03-09T07:00:00Z"))
        );
        assert_eq!(
            resolve(ny, wall("2025-03-09 02:30")),
            Some(utc("2025-03-09T07:00:00Z"))
        );
        assert_eq!(
            resolve(ny, wall("2025-03-09 02:59")),
            Some(utc("2025-03-09T07:00:00Z"))
        );
        assert_eq!(
            resolve(ny, wall("2025-03-09 03:00")),
            Some(utc("2025-03-09T07:00:00Z"))
        );
        assert_eq!(
            resolve(ny, wall("2025-03-09 01:59")),
            Some(utc("2025-03-09T06:59:00Z"))
        );
        let lord_howe: Tz = "Australia/Lord_Howe".parse().expect("zone");
        // 2025-10-05: 02:00 (+10:30) jumps to 02:30 (+11:00), at 15:30Z.
        assert_eq!(
            resolve(lord_howe, wall("2025-10-05 02:15")),
            Some(utc("2025-10-04T15:30:00Z"))
        );
    }

    #[test]
    fn a_skipped_day_resolves_to_the_next_midnight() {
        // Samoa skipped 2011-12-30 entirely, moving across the date line.
        let apia: Tz = "Pacific/Apia".parse().expect("zone");
        let next_midnight = NaiveDate::from_ymd_opt(2011, 12, 31)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .and_then(|t| apia.from_local_datetime(&t).single())
            .expect("2011-12-31 exists");
        assert_eq!(
            resolve(apia, wall("2011-12-30 12:00")),
            Some(next_midnight.to_utc())
        );
    }

    #[test]
    fn repeated_wall_times_resolve_to_the_first_pass() {
        let berlin: Tz = "Europe/Berlin".parse().expect("zone");
        // 2025-10-26: 03:00 CEST falls back to 02:00 CET (01:00Z).
        assert_eq!(
            resolve(berlin, wall("2025-10-26 02:30")),
            Some(utc("2025-10-26T00:30:00Z"))
        );
    }

    #[test]
    fn offset_changes_are_found_to_the_second() {
        let berlin: Tz = "Europe/Berlin".parse().expect("zone");
        let from = utc("2025-03-29T00:00:00Z").timestamp();
        let to = utc("2025-04-02T00:00:00Z").timestamp();
        assert_eq!(
            first_offset_change(berlin, from, to, 3600),
            Some(utc("2025-03-30T01:00:00Z").timestamp())
        );
        assert_eq!(first_offset_change(berlin, from, from + 3600, 3600), None);
    }
}
