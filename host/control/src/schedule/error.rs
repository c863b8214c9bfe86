//! Why a schedule was refused, each error naming the field that is wrong.

use super::MAX_JITTER_SECONDS;
use super::cron::CronField;

/// Why a schedule, or a cron expression on its own, was refused.
///
/// [`field`](Self::field) names the [`ScheduleSpec`](super::ScheduleSpec)
/// field at fault, as it is spelled in the API body; the message quotes the
/// bad value and says what is valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression is empty or only whitespace.
    #[error(
        "`cron` is empty; expected 5 fields (minute hour day-of-month month day-of-week), 6 with a seconds field first, or a macro such as `@daily`"
    )]
    EmptyCron,
    /// The cron expression has too few or too many fields.
    #[error(
        "`cron` expression `{expr}` has {count} fields; expected 5 (minute hour day-of-month month day-of-week) or 6 (second minute hour day-of-month month day-of-week)"
    )]
    CronFieldCount {
        /// The expression as given.
        expr: String,
        /// How many whitespace-separated fields it has.
        count: usize,
    },
    /// An `@` macro this scheduler does not know (for example `@reboot`).
    #[error(
        "`cron` macro `{name}` is not supported; expected one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"
    )]
    UnknownCronMacro {
        /// The macro as given.
        name: String,
    },
    /// One field of the cron expression is invalid, or the expression can
    /// never match a real date (then the field is `day-of-month`).
    #[error("cron field `{field}` in `{expr}`: {problem}")]
    CronField {
        /// The whole expression as given.
        expr: String,
        /// Which of the five or six fields is wrong.
        field: CronField,
        /// What is wrong, quoting the bad value and saying what is valid.
        problem: String,
    },
    /// The time zone is not an IANA zone name.
    #[error(
        "`timezone` `{name}` is not a known IANA time zone; expected a name such as `Europe/Berlin`, `America/New_York` or `UTC` (names are case-sensitive)"
    )]
    UnknownTimeZone {
        /// The name as given.
        name: String,
    },
    /// A window boundary is not a time of day.
    #[error("`{field}` `{value}` is not a time of day; expected HH:MM from 00:00 to {latest}")]
    WindowTime {
        /// `window.start` or `window.end`.
        field: &'static str,
        /// The value as given.
        value: String,
        /// The latest value allowed: `23:59` for the start, `24:00` for the end.
        latest: &'static str,
    },
    /// The window ends at or before its start. Windows do not wrap past
    /// midnight; `24:00` is the latest end.
    #[error(
        "`window.end` `{end}` is not after `window.start` `{start}`; a window must end later on the same day (`24:00` is allowed as the end), windows that cross midnight are not supported"
    )]
    WindowEndsBeforeStart {
        /// `window.start` as given.
        start: String,
        /// `window.end` as given.
        end: String,
    },
    /// The jitter is longer than a day.
    #[error(
        "`jitter-seconds` `{value}` is too large; expected at most {MAX_JITTER_SECONDS} (one day)"
    )]
    JitterTooLarge {
        /// The value as given.
        value: u32,
    },
}

impl ScheduleError {
    /// The [`ScheduleSpec`](super::ScheduleSpec) field at fault, spelled as
    /// in the API body: `cron`, `timezone`, `window.start`, `window.end` or
    /// `jitter-seconds`. Errors in one cron field say `cron`; the message
    /// and [`ScheduleError::CronField::field`] name the part of it.
    pub fn field(&self) -> &'static str {
        match self {
            Self::EmptyCron
            | Self::CronFieldCount { .. }
            | Self::UnknownCronMacro { .. }
            | Self::CronField { .. } => "cron",
            Self::UnknownTimeZone { .. } => "timezone",
            Self::WindowTime { field, .. } => field,
            Self::WindowEndsBeforeStart { .. } => "window.end",
            Self::JitterTooLarge { .. } => "jitter-seconds",
        }
    }
}
