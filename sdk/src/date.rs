//! Calendar arithmetic on the WIT's [`Date`] and [`Instant`], so a plugin
//! never carries its own: today, days between dates, a date plus days or
//! months, parsing and printing `YYYY-MM-DD`. Dates are proleptic
//! Gregorian and UTC, as the host gives them.

use std::cmp::Ordering;
use std::fmt;

use crate::{Date, Instant};

/// Days from 1970-01-01 to `y-m-d` (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01 (`civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

impl Date {
    /// The date `year-month-day`. Out-of-range months and days are clamped
    /// (`Date::new(2026, 2, 31)` is 2026-02-28).
    pub fn new(year: u16, month: u8, day: u8) -> Self {
        let month = month.clamp(1, 12);
        let day = day.clamp(1, days_in_month(i64::from(year), u32::from(month)) as u8);
        Date { year, month, day }
    }

    /// Today, by the host's clock (UTC).
    ///
    /// # Example
    ///
    /// ```no_run
    /// let today = steward_sdk::Date::today();
    /// let renew_by = today.add_days(30);
    /// ```
    pub fn today() -> Self {
        Instant::now().date()
    }

    /// Days since 1970-01-01 (negative before).
    pub fn days_since_epoch(&self) -> i64 {
        days_from_civil(
            i64::from(self.year),
            u32::from(self.month),
            u32::from(self.day),
        )
    }

    fn from_days(days: i64) -> Self {
        let (y, m, d) = civil_from_days(days);
        Date {
            year: y.clamp(0, i64::from(u16::MAX)) as u16,
            month: m as u8,
            day: d as u8,
        }
    }

    /// The date `days` later (earlier when negative).
    ///
    /// # Example
    ///
    /// ```
    /// use steward_sdk::Date;
    /// assert_eq!(Date::new(2026, 12, 25).add_days(10), Date::new(2027, 1, 4));
    /// assert_eq!(Date::new(2024, 3, 1).add_days(-1), Date::new(2024, 2, 29));
    /// ```
    pub fn add_days(&self, days: i64) -> Self {
        Self::from_days(self.days_since_epoch() + days)
    }

    /// The same day `months` later (earlier when negative), clamped to the
    /// month's end: 2026-01-31 plus one month is 2026-02-28.
    ///
    /// # Example
    ///
    /// ```
    /// use steward_sdk::Date;
    /// assert_eq!(Date::new(2026, 1, 31).add_months(1), Date::new(2026, 2, 28));
    /// assert_eq!(Date::new(2026, 11, 23).add_months(-12 * 4), Date::new(2022, 11, 23));
    /// ```
    pub fn add_months(&self, months: i32) -> Self {
        let total = i64::from(self.year) * 12 + i64::from(self.month) - 1 + i64::from(months);
        let year = total.div_euclid(12).clamp(0, i64::from(u16::MAX));
        let month = (total.rem_euclid(12) + 1) as u32;
        let day = u32::from(self.day).min(days_in_month(year, month));
        Date {
            year: year as u16,
            month: month as u8,
            day: day as u8,
        }
    }

    /// Whole days from `self` to `other` (negative when `other` is
    /// earlier).
    ///
    /// # Example
    ///
    /// ```
    /// use steward_sdk::Date;
    /// let warranty_end = Date::new(2027, 1, 1);
    /// assert_eq!(Date::new(2026, 12, 1).days_until(&warranty_end), 31);
    /// ```
    pub fn days_until(&self, other: &Date) -> i64 {
        other.days_since_epoch() - self.days_since_epoch()
    }

    /// Parses `YYYY-MM-DD`; `None` unless it is a real date.
    ///
    /// # Example
    ///
    /// ```
    /// use steward_sdk::Date;
    /// assert_eq!(Date::parse("2026-02-28"), Some(Date::new(2026, 2, 28)));
    /// assert_eq!(Date::parse("2026-02-30"), None);
    /// assert_eq!(Date::parse("28/02/2026"), None);
    /// ```
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().splitn(3, '-');
        let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        let (year, month, day): (u16, u8, u8) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
        let valid = (1..=12).contains(&month)
            && day >= 1
            && u32::from(day) <= days_in_month(i64::from(year), u32::from(month));
        valid.then_some(Date { year, month, day })
    }
}

impl fmt::Display for Date {
    /// `YYYY-MM-DD`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A date is stored (plugin state) as `"YYYY-MM-DD"`.
impl serde::Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Date::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a YYYY-MM-DD date")))
    }
}

impl Eq for Date {}

impl PartialOrd for Date {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Date {
    /// Earlier dates first.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.year, self.month, self.day).cmp(&(other.year, other.month, other.day))
    }
}

impl Instant {
    /// Now, by the host's clock.
    pub fn now() -> Self {
        crate::host::clock::now()
    }

    /// The UTC date this instant falls on.
    ///
    /// # Example
    ///
    /// ```
    /// use steward_sdk::{Date, Instant};
    /// let t = Instant { seconds: 1_795_392_000, nanoseconds: 0 };
    /// assert_eq!(t.date(), Date::new(2026, 11, 23));
    /// ```
    pub fn date(&self) -> Date {
        Date::from_days(self.seconds.div_euclid(86_400))
    }

    /// Whole seconds from `self` to `later` (negative when earlier).
    pub fn seconds_until(&self, later: &Instant) -> i64 {
        later.seconds - self.seconds
    }

    /// Whole days from `self` to `later` (negative when earlier).
    ///
    /// # Example
    ///
    /// ```
    /// use steward_sdk::Instant;
    /// let locked = Instant { seconds: 1_795_392_000, nanoseconds: 0 };
    /// let now = Instant { seconds: 1_795_392_000 + 3 * 86_400 + 5, nanoseconds: 0 };
    /// assert_eq!(locked.days_until(&now), 3);
    /// ```
    pub fn days_until(&self, later: &Instant) -> i64 {
        self.seconds_until(later).div_euclid(86_400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        let start = Date::new(1900, 1, 1).days_since_epoch();
        let mut previous = Date::new(1899, 12, 31);
        for n in start..start + 146_097 {
            let d = Date::from_days(n);
            assert_eq!(d.days_since_epoch(), n, "{d}");
            assert_eq!(previous.add_days(1), d);
            assert!(previous < d);
            assert_eq!(Date::parse(&d.to_string()), Some(d));
            previous = d;
        }
        assert_eq!(Date::new(1970, 1, 1).days_since_epoch(), 0);
        assert_eq!(
            Date::new(2000, 2, 29).add_months(12),
            Date::new(2001, 2, 28)
        );
    }
}
