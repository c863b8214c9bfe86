//! Cron expressions: parsing the 5- and 6-field forms and the `@` macros, and
//! finding the next matching wall-clock time (time zones live in `zone`).

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta, Timelike};

use super::error::ScheduleError;

/// How far ahead [`Cron::next_naive`] looks before deciding an expression
/// never fires again. `0 0 29 2 *` is the sparsest valid expression: across
/// 2100, which is not a leap year, its firings are eight years apart.
const HORIZON_YEARS: i32 = 10;

/// One field of a cron expression, named as errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CronField {
    /// Seconds, 0-59; only in the 6-field form, where it comes first.
    Second,
    /// Minutes, 0-59.
    Minute,
    /// Hours, 0-23.
    Hour,
    /// Day of the month, 1-31.
    DayOfMonth,
    /// Month, 1-12 or `JAN`-`DEC`.
    Month,
    /// Day of the week, 0-7 (0 and 7 are Sunday) or `SUN`-`SAT`.
    DayOfWeek,
}

impl CronField {
    /// The field's name in error messages: `second`, `minute`, `hour`,
    /// `day-of-month`, `month` or `day-of-week`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Second => "second",
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::DayOfMonth => "day-of-month",
            Self::Month => "month",
            Self::DayOfWeek => "day-of-week",
        }
    }

    /// The smallest and largest number the field accepts.
    fn bounds(self) -> (u32, u32) {
        match self {
            Self::Second | Self::Minute => (0, 59),
            Self::Hour => (0, 23),
            Self::DayOfMonth => (1, 31),
            Self::Month => (1, 12),
            Self::DayOfWeek => (0, 7),
        }
    }

    /// The valid numbers, as error messages state them.
    fn valid(self) -> &'static str {
        match self {
            Self::Second | Self::Minute => "0-59",
            Self::Hour => "0-23",
            Self::DayOfMonth => "1-31",
            Self::Month => "1-12 or JAN-DEC",
            Self::DayOfWeek => "0-7 (0 and 7 are Sunday) or SUN-SAT",
        }
    }

    /// Three-letter names and the number of the first one, if the field has names.
    fn names(self) -> Option<(&'static [&'static str], u32)> {
        const MONTHS: &[&str] = &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ];
        const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
        match self {
            Self::Month => Some((MONTHS, 1)),
            Self::DayOfWeek => Some((DAYS, 0)),
            _ => None,
        }
    }
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed cron expression.
///
/// Accepted forms:
///
/// - 5 fields, `minute hour day-of-month month day-of-week` (fires at second 0);
/// - 6 fields, `second minute hour day-of-month month day-of-week`;
/// - the macros `@yearly`/`@annually` (`0 0 1 1 *`), `@monthly` (`0 0 1 * *`),
///   `@weekly` (`0 0 * * 0`), `@daily`/`@midnight` (`0 0 * * *`) and
///   `@hourly` (`0 * * * *`).
///
/// Each field is a comma-separated list of `*`, `N`, `N-M`, `*/S`, `N-M/S`
/// or `N/S` (from `N` to the field's maximum in steps of `S`). Months and
/// weekdays also take three-letter names in any case (`JAN`, `mon`); day of
/// week 0 and 7 are both Sunday, and a range may end on Sunday (`FRI-SUN`).
///
/// Day of month and day of week combine as in Vixie cron: if either field
/// starts with `*`, a day must match both; if both are restricted, a day
/// matching either fires (`0 0 13 * FRI` fires on every 13th and every
/// Friday).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// The expression as written (trimmed), for display.
    source: String,
    /// Bit `n` set: second `n` matches.
    seconds: u64,
    /// Bit `n` set: minute `n` matches.
    minutes: u64,
    /// Bit `n` set: hour `n` matches.
    hours: u64,
    /// Bit `n` set: day of month `n` (1-31) matches.
    days_of_month: u64,
    /// Bit `n` set: month `n` (1-12) matches.
    months: u64,
    /// Bit `n` set: weekday `n` (0 = Sunday) matches.
    days_of_week: u64,
    /// The day-of-month field starts with `*` (Vixie's `DOM_STAR`).
    dom_star: bool,
    /// The day-of-week field starts with `*` (Vixie's `DOW_STAR`).
    dow_star: bool,
    /// The hour field starts with `*`; such schedules follow elapsed time
    /// across DST transitions (see the module docs).
    hour_star: bool,
}

impl Cron {
    /// Parses a 5- or 6-field expression or an `@` macro.
    ///
    /// # Errors
    ///
    /// A [`ScheduleError`] whose [`field`](ScheduleError::field) is `cron`:
    /// an empty expression, the wrong number of fields, an unknown macro, or
    /// a bad field ([`ScheduleError::CronField`] names which and quotes the
    /// bad value), including days that never occur (`0 0 31 2 *`).
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        let source = expr.trim();
        if source.is_empty() {
            return Err(ScheduleError::EmptyCron);
        }
        let expanded = match source.strip_prefix('@') {
            Some(name) => expand_macro(name).ok_or_else(|| ScheduleError::UnknownCronMacro {
                name: source.to_owned(),
            })?,
            None => source,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (second, [minute, hour, dom, month, dow]) = match *fields.as_slice() {
            [minute, hour, dom, month, dow] => ("0", [minute, hour, dom, month, dow]),
            [second, minute, hour, dom, month, dow] => (second, [minute, hour, dom, month, dow]),
            _ => {
                return Err(ScheduleError::CronFieldCount {
                    expr: source.to_owned(),
                    count: fields.len(),
                });
            }
        };
        let field = |field: CronField, text: &str| {
            parse_field(field, text).map_err(|problem| ScheduleError::CronField {
                expr: source.to_owned(),
                field,
                problem,
            })
        };
        let cron = Self {
            source: source.to_owned(),
            seconds: field(CronField::Second, second)?,
            minutes: field(CronField::Minute, minute)?,
            hours: field(CronField::Hour, hour)?,
            days_of_month: field(CronField::DayOfMonth, dom)?,
            months: field(CronField::Month, month)?,
            days_of_week: field(CronField::DayOfWeek, dow)?,
            dom_star: dom.starts_with('*'),
            dow_star: dow.starts_with('*'),
            hour_star: hour.starts_with('*'),
        };
        if !cron.has_a_day() {
            return Err(ScheduleError::CronField {
                expr: source.to_owned(),
                field: CronField::DayOfMonth,
                problem: format!(
                    "no day in `{dom}` exists in month(s) `{month}`, so the schedule would never fire"
                ),
            });
        }
        Ok(cron)
    }

    /// Whether the hour field starts with `*` (`*/15 * * * *`, `@hourly`):
    /// such schedules fire at every instant whose local time matches, so
    /// they follow elapsed time across DST transitions. Others fire once
    /// per matching wall-clock time. The module docs give the full rule.
    pub fn follows_elapsed_time(&self) -> bool {
        self.hour_star
    }

    /// The first wall-clock time strictly after `after` (to the second)
    /// that matches, ignoring time zones; `None` if there is none within
    /// ten years.
    pub(super) fn next_naive(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let limit = after.year().saturating_add(HORIZON_YEARS);
        let mut t = after
            .with_nanosecond(0)?
            .checked_add_signed(TimeDelta::seconds(1))?;
        loop {
            if t.year() > limit {
                return None;
            }
            let date = t.date();
            if !has(self.months, t.month()) {
                let (year, month) = match t.month() {
                    12 => (t.year() + 1, 1),
                    m => (t.year(), m + 1),
                };
                t = NaiveDate::from_ymd_opt(year, month, 1)?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !self.day_matches(date) {
                t = date.succ_opt()?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            let Some(hour) = next_bit(self.hours, t.hour()) else {
                t = date.succ_opt()?.and_hms_opt(0, 0, 0)?;
                continue;
            };
            if hour != t.hour() {
                t = date.and_hms_opt(hour, 0, 0)?;
            }
            let Some(minute) = next_bit(self.minutes, t.minute()) else {
                t = date
                    .and_hms_opt(t.hour(), 0, 0)?
                    .checked_add_signed(TimeDelta::hours(1))?;
                continue;
            };
            if minute != t.minute() {
                t = date.and_hms_opt(t.hour(), minute, 0)?;
            }
            let Some(second) = next_bit(self.seconds, t.second()) else {
                t = date
                    .and_hms_opt(t.hour(), t.minute(), 0)?
                    .checked_add_signed(TimeDelta::minutes(1))?;
                continue;
            };
            return date.and_hms_opt(t.hour(), t.minute(), second);
        }
    }

    /// Whether `date` passes the day-of-month and day-of-week fields,
    /// combined by Vixie's rule.
    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = has(self.days_of_month, date.day());
        let dow = has(self.days_of_week, date.weekday().num_days_from_sunday());
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// Whether any real date passes the day fields. Only "day of month and
    /// month, both must match" can fail (`0 0 31 2 *`); a weekday matches
    /// some day of any month.
    fn has_a_day(&self) -> bool {
        const LONGEST: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        if !(self.dom_star || self.dow_star) {
            return true;
        }
        (1..=12u32).any(|month| {
            has(self.months, month)
                && (1..=LONGEST[month as usize - 1]).any(|day| has(self.days_of_month, day))
        })
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Cron {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The five fields a macro stands for (`name` without the `@`).
fn expand_macro(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "yearly" | "annually" => "0 0 1 1 *",
        "monthly" => "0 0 1 * *",
        "weekly" => "0 0 * * 0",
        "daily" | "midnight" => "0 0 * * *",
        "hourly" => "0 * * * *",
        _ => return None,
    })
}

/// Whether bit `n` of `mask` is set.
fn has(mask: u64, n: u32) -> bool {
    n < 64 && mask & (1 << n) != 0
}

/// The smallest set bit of `mask` at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    let above = mask.checked_shr(from)?;
    (above != 0).then(|| from + above.trailing_zeros())
}

/// Parses one field into a bit mask; the error is the problem, for the
/// caller to wrap with the field and expression.
fn parse_field(field: CronField, text: &str) -> Result<u64, String> {
    let (min, max) = field.bounds();
    let mut mask = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("empty list item in `{text}`"));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(parse_step(step)?)),
            None => (item, None),
        };
        let (low, high) = if range == "*" {
            // Sunday is 0 for `*`, so `*/2` on weekdays is SUN,TUE,THU,SAT.
            (
                min,
                if field == CronField::DayOfWeek {
                    6
                } else {
                    max
                },
            )
        } else if let Some((low, high)) = range.split_once('-') {
            let low = parse_value(field, low, item)?;
            let mut high = parse_value(field, high, item)?;
            // `FRI-SUN`: Sunday as the end of a weekday range means 7.
            if field == CronField::DayOfWeek && high == 0 && low > 0 {
                high = 7;
            }
            if low > high {
                return Err(format!(
                    "range `{range}` runs backwards; write the smaller value first ({})",
                    field.valid()
                ));
            }
            (low, high)
        } else {
            let value = parse_value(field, range, item)?;
            // `N/S` runs from N to the field's maximum.
            (value, if step.is_some() { max } else { value })
        };
        let step = step.unwrap_or(1);
        let mut value = low;
        while value <= high {
            let bit = if field == CronField::DayOfWeek {
                value % 7
            } else {
                value
            };
            mask |= 1 << bit;
            value = value.saturating_add(step);
        }
    }
    Ok(mask)
}

/// Parses the `S` of `*/S`.
fn parse_step(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(0) => Err("step `0` must be at least 1".to_owned()),
        Ok(step) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(step),
        _ => Err(format!("step `{text}` is not a positive whole number")),
    }
}

/// Parses one number or name of `field`, found in list item `item`.
fn parse_value(field: CronField, text: &str, item: &str) -> Result<u32, String> {
    let (min, max) = field.bounds();
    if text.is_empty() {
        return Err(format!(
            "`{item}` is missing a value; expected {}",
            field.valid()
        ));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(value) if (min..=max).contains(&value) => Ok(value),
            _ => Err(format!("`{text}` is out of range {}", field.valid())),
        };
    }
    if let Some((names, first)) = field.names()
        && let Some((_, value)) = names
            .iter()
            .zip(first..)
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
    {
        return Ok(value);
    }
    Err(format!(
        "`{text}` is not a number; expected {}",
        field.valid()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("test timestamp")
    }

    /// The next `n` matches after `from`, formatted.
    fn next_n(expr: &str, from: &str, n: usize) -> Vec<String> {
        let cron = Cron::parse(expr).expect("valid expression");
        let mut t = at(from);
        (0..n)
            .map(|_| {
                t = cron.next_naive(t).expect("a next match");
                t.format("%Y-%m-%d %H:%M:%S %a").to_string()
            })
            .collect()
    }

    fn problem(expr: &str) -> (CronField, String) {
        match Cron::parse(expr) {
            Err(ScheduleError::CronField { field, .. }) => {
                let message = Cron::parse(expr).unwrap_err().to_string();
                (field, message)
            }
            other => panic!("expected a field error for `{expr}`, got {other:?}"),
        }
    }

    #[test]
    fn five_fields_fire_every_minute_at_second_zero() {
        assert_eq!(
            next_n("* * * * *", "2025-01-01 10:00:30", 3),
            [
                "2025-01-01 10:01:00 Wed",
                "2025-01-01 10:02:00 Wed",
                "2025-01-01 10:03:00 Wed"
            ]
        );
    }

    #[test]
    fn six_fields_put_seconds_first() {
        assert_eq!(
            next_n("*/20 0 12 * * *", "2025-01-01 11:59:59", 4),
            [
                "2025-01-01 12:00:00 Wed",
                "2025-01-01 12:00:20 Wed",
                "2025-01-01 12:00:40 Wed",
                "2025-01-02 12:00:00 Thu"
            ]
        );
    }

    #[test]
    fn lists_ranges_and_steps_combine() {
        // 2025-01-03 is a Friday.
        assert_eq!(
            next_n("0,30 9-13/2 * * 1-5", "2025-01-03 12:45:00", 4),
            [
                "2025-01-03 13:00:00 Fri",
                "2025-01-03 13:30:00 Fri",
                "2025-01-06 09:00:00 Mon",
                "2025-01-06 09:30:00 Mon"
            ]
        );
    }

    #[test]
    fn value_with_step_runs_to_the_maximum() {
        assert_eq!(
            next_n("50/5 * * * *", "2025-01-01 10:00:00", 3),
            [
                "2025-01-01 10:50:00 Wed",
                "2025-01-01 10:55:00 Wed",
                "2025-01-01 11:50:00 Wed"
            ]
        );
    }

    #[test]
    fn month_and_weekday_names_are_case_insensitive() {
        assert_eq!(
            next_n("0 6 * jan,Jul MON", "2025-01-20 07:00:00", 3),
            [
                "2025-01-27 06:00:00 Mon",
                "2025-07-07 06:00:00 Mon",
                "2025-07-14 06:00:00 Mon"
            ]
        );
        assert_eq!(
            Cron::parse("0 6 * JAN,JUL MON").expect("names"),
            Cron {
                source: "0 6 * JAN,JUL MON".to_owned(),
                ..Cron::parse("0 6 * 1,7 1").expect("numbers")
            }
        );
    }

    #[test]
    fn weekday_zero_and_seven_are_both_sunday() {
        let zero = Cron::parse("0 0 * * 0").expect("0");
        let seven = Cron::parse("0 0 * * 7").expect("7");
        let sun = Cron::parse("0 0 * * SUN").expect("SUN");
        assert_eq!(zero.days_of_week, 1);
        assert_eq!(seven.days_of_week, 1);
        assert_eq!(sun.days_of_week, 1);
        assert_eq!(
            next_n("0 0 * * 7", "2025-01-01 00:00:00", 1),
            ["2025-01-05 00:00:00 Sun"]
        );
    }

    #[test]
    fn weekday_ranges_may_end_on_sunday() {
        assert_eq!(
            next_n("0 0 * * FRI-SUN", "2025-01-01 00:00:00", 4),
            [
                "2025-01-03 00:00:00 Fri",
                "2025-01-04 00:00:00 Sat",
                "2025-01-05 00:00:00 Sun",
                "2025-01-10 00:00:00 Fri"
            ]
        );
        assert_eq!(
            Cron::parse("0 0 * * 5-7").expect("5-7").days_of_week,
            0b110_0001
        );
    }

    #[test]
    fn restricted_day_of_month_and_weekday_fire_on_either() {
        // Every 13th and every Friday (Vixie's OR rule). 2025-06-13 is a Friday.
        assert_eq!(
            next_n("0 0 13 * FRI", "2025-05-31 00:00:00", 4),
            [
                "2025-06-06 00:00:00 Fri",
                "2025-06-13 00:00:00 Fri",
                "2025-06-20 00:00:00 Fri",
                "2025-06-27 00:00:00 Fri"
            ]
        );
        assert_eq!(
            next_n("0 0 13 * FRI", "2025-06-28 00:00:00", 2),
            ["2025-07-04 00:00:00 Fri", "2025-07-11 00:00:00 Fri"]
        );
        assert_eq!(
            next_n("0 0 13 * FRI", "2025-07-11 00:00:00", 1),
            ["2025-07-13 00:00:00 Sun"]
        );
    }

    #[test]
    fn a_star_day_field_makes_both_day_fields_required() {
        // `*/2` starts with `*`, so (as in Vixie cron) both must match:
        // odd days of the month that are Mondays.
        assert_eq!(
            next_n("0 0 */2 * MON", "2025-01-01 00:00:00", 3),
            [
                "2025-01-13 00:00:00 Mon",
                "2025-01-27 00:00:00 Mon",
                "2025-02-03 00:00:00 Mon"
            ]
        );
    }

    #[test]
    fn macros_expand_to_their_five_fields() {
        for (name, fields) in [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
        ] {
            let from_macro = Cron::parse(name).expect("macro");
            let expanded = Cron::parse(fields).expect("fields");
            assert_eq!(from_macro.to_string(), name);
            assert_eq!(
                Cron {
                    source: fields.to_owned(),
                    ..from_macro
                },
                expanded,
                "{name}"
            );
        }
        assert_eq!(
            next_n("@weekly", "2025-01-01 00:00:00", 1),
            ["2025-01-05 00:00:00 Sun"]
        );
    }

    #[test]
    fn february_29th_fires_only_in_leap_years() {
        assert_eq!(
            next_n("0 0 29 FEB *", "2025-01-01 00:00:00", 3),
            [
                "2028-02-29 00:00:00 Tue",
                "2032-02-29 00:00:00 Sun",
                "2036-02-29 00:00:00 Fri"
            ]
        );
        // 2100 is not a leap year: eight years between firings.
        assert_eq!(
            next_n("0 0 29 2 *", "2096-03-01 00:00:00", 1),
            ["2104-02-29 00:00:00 Fri"]
        );
    }

    #[test]
    fn only_the_hour_field_decides_elapsed_time_semantics() {
        assert!(
            Cron::parse("*/15 * * * *")
                .expect("cron")
                .follows_elapsed_time()
        );
        assert!(
            Cron::parse("0 */2 * * *")
                .expect("cron")
                .follows_elapsed_time()
        );
        assert!(Cron::parse("@hourly").expect("cron").follows_elapsed_time());
        assert!(
            !Cron::parse("*/15 2 * * *")
                .expect("cron")
                .follows_elapsed_time()
        );
        assert!(
            !Cron::parse("30 2 * * *")
                .expect("cron")
                .follows_elapsed_time()
        );
        assert!(
            !Cron::parse("0 0-23 * * *")
                .expect("cron")
                .follows_elapsed_time()
        );
    }

    #[test]
    fn out_of_range_values_name_the_field_and_the_range() {
        let (field, message) = problem("0 25 * * *");
        assert_eq!(field, CronField::Hour);
        assert_eq!(
            message,
            "cron field `hour` in `0 25 * * *`: `25` is out of range 0-23"
        );
        assert_eq!(problem("60 * * * *").0, CronField::Minute);
        assert_eq!(problem("60 0 * * * *").0, CronField::Second);
        assert_eq!(problem("0 0 0 * *").0, CronField::DayOfMonth);
        assert_eq!(problem("0 0 32 * *").0, CronField::DayOfMonth);
        assert_eq!(problem("0 0 * 13 *").0, CronField::Month);
        let (field, message) = problem("0 0 * * 8");
        assert_eq!(field, CronField::DayOfWeek);
        assert!(
            message.contains("`8` is out of range 0-7 (0 and 7 are Sunday)"),
            "{message}"
        );
        assert!(
            problem("0 99999999999 * * *")
                .1
                .contains("`99999999999` is out of range 0-23")
        );
    }

    #[test]
    fn malformed_items_say_what_is_wrong() {
        let cases = [
            (
                "0 0 * FOO *",
                CronField::Month,
                "`FOO` is not a number; expected 1-12 or JAN-DEC",
            ),
            (
                "0 0 * * MONDAY",
                CronField::DayOfWeek,
                "`MONDAY` is not a number",
            ),
            (
                "*/0 * * * *",
                CronField::Minute,
                "step `0` must be at least 1",
            ),
            (
                "*/x * * * *",
                CronField::Minute,
                "step `x` is not a positive whole number",
            ),
            (
                "*/+5 * * * *",
                CronField::Minute,
                "step `+5` is not a positive whole number",
            ),
            (
                "0 17-9 * * *",
                CronField::Hour,
                "range `17-9` runs backwards",
            ),
            ("0 1,,2 * * *", CronField::Hour, "empty list item in `1,,2`"),
            ("0 -5 * * *", CronField::Hour, "`-5` is missing a value"),
            (
                "0 0 L * *",
                CronField::DayOfMonth,
                "`L` is not a number; expected 1-31",
            ),
            (
                "0 0 * JAN FEB",
                CronField::DayOfWeek,
                "`FEB` is not a number",
            ),
            (
                "0 0 * * SAT-TUE",
                CronField::DayOfWeek,
                "range `SAT-TUE` runs backwards",
            ),
        ];
        for (expr, field, expected) in cases {
            let (actual_field, message) = problem(expr);
            assert_eq!(actual_field, field, "{expr}");
            assert!(message.contains(expected), "{expr}: {message}");
            assert!(
                message.starts_with(&format!("cron field `{field}`")),
                "{message}"
            );
        }
    }

    #[test]
    fn impossible_dates_are_refused_naming_day_of_month() {
        let (field, message) = problem("0 0 31 2,4 *");
        assert_eq!(field, CronField::DayOfMonth);
        assert!(
            message.contains("no day in `31` exists in month(s) `2,4`"),
            "{message}"
        );
        assert!(Cron::parse("0 0 30 FEB *").is_err());
        // With a restricted weekday the OR rule makes it fire on Mondays.
        assert!(Cron::parse("0 0 31 2 MON").is_ok());
        assert!(Cron::parse("0 0 29 2 *").is_ok());
    }

    #[test]
    fn wrong_field_counts_and_macros_are_refused() {
        assert_eq!(
            Cron::parse("* * * *"),
            Err(ScheduleError::CronFieldCount {
                expr: "* * * *".to_owned(),
                count: 4
            })
        );
        assert!(matches!(
            Cron::parse("* * * * * * *"),
            Err(ScheduleError::CronFieldCount { count: 7, .. })
        ));
        assert_eq!(Cron::parse("   "), Err(ScheduleError::EmptyCron));
        let err = Cron::parse("@reboot").unwrap_err();
        assert_eq!(err.field(), "cron");
        assert!(
            err.to_string().contains("`@reboot` is not supported"),
            "{err}"
        );
    }

    #[test]
    fn surrounding_and_repeated_whitespace_is_fine() {
        let cron: Cron = "  0\t12  * *   * ".parse().expect("cron");
        assert_eq!(cron.to_string(), "0\t12  * *   *");
        assert_eq!(
            next_n("  0\t12  * *   * ", "2025-01-01 00:00:00", 1),
            ["2025-01-01 12:00:00 Wed"]
        );
    }
}
