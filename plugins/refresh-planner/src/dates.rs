//! Calendar arithmetic on day numbers (days since 1970-01-01, UTC) and
//! calendar quarters, without a date crate: the planner only needs civil
//! dates, years added to them, and quarters.

use steward_sdk::Date;

/// Days since 1970-01-01.
pub type Day = i64;

/// A calendar quarter as `year * 4 + (quarter - 1)`, so consecutive quarters
/// are consecutive numbers.
pub type Quarter = i64;

/// Day number of a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> Day {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
pub fn civil_from_days(z: Day) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The day number of a WIT date; `None` for an impossible date (a fact
/// that is wrong is treated as unknown).
pub fn day_of(date: &Date) -> Option<Day> {
    let (y, m, d) = (
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    ((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)).then(|| days_from_civil(y, m, d))
}

/// The WIT date of a day number.
pub fn date_of(day: Day) -> Date {
    let (y, m, d) = civil_from_days(day);
    Date {
        year: y.clamp(0, i64::from(u16::MAX)) as u16,
        month: m as u8,
        day: d as u8,
    }
}

/// The same calendar day `years` later; 29 February becomes 28 February in
/// a common year.
pub fn add_years(day: Day, years: i64) -> Day {
    let (y, m, d) = civil_from_days(day);
    let y = y + years;
    days_from_civil(y, m, d.min(days_in_month(y, m)))
}

/// `2026-11-23`.
pub fn fmt_day(day: Day) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The quarter a day falls in.
pub fn quarter_of(day: Day) -> Quarter {
    let (y, m, _) = civil_from_days(day);
    y * 4 + (m - 1) / 3
}

/// `2027-Q1`.
pub fn quarter_label(q: Quarter) -> String {
    format!("{}-Q{}", q.div_euclid(4), q.rem_euclid(4) + 1)
}

/// The last day of a quarter.
pub fn quarter_last_day(q: Quarter) -> Day {
    let y = q.div_euclid(4);
    let m = q.rem_euclid(4) * 3 + 3;
    days_from_civil(y, m, days_in_month(y, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_civil_dates() {
        for day in [-1, 0, 10_956, 11_016, 20_780, 50_000] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(fmt_day(20_780), "2026-11-23");
        assert_eq!(fmt_day(days_from_civil(2000, 2, 29)), "2000-02-29");
    }

    #[test]
    fn adds_years_and_clamps_leap_days() {
        let leap = days_from_civil(2024, 2, 29);
        assert_eq!(fmt_day(add_years(leap, 3)), "2027-02-28");
        assert_eq!(fmt_day(add_years(leap, 4)), "2028-02-29");
    }

    #[test]
    fn names_quarters_and_their_last_days() {
        let q = quarter_of(days_from_civil(2026, 11, 23));
        assert_eq!(quarter_label(q), "2026-Q4");
        assert_eq!(quarter_label(q + 1), "2027-Q1");
        assert_eq!(fmt_day(quarter_last_day(q)), "2026-12-31");
        assert_eq!(fmt_day(quarter_last_day(q + 1)), "2027-03-31");
        assert_eq!(fmt_day(quarter_last_day(q + 2)), "2027-06-30");
        assert_eq!(fmt_day(quarter_last_day(q + 3)), "2027-09-30");
    }

    #[test]
    fn refuses_impossible_dates() {
        let date = |year, month, day| Date { year, month, day };
        assert_eq!(day_of(&date(2026, 2, 29)), None);
        assert_eq!(day_of(&date(2026, 13, 1)), None);
        assert_eq!(
            day_of(&date(2024, 2, 29)),
            Some(days_from_civil(2024, 2, 29))
        );
        assert_eq!(date_of(20_780), date(2026, 11, 23));
    }
}
