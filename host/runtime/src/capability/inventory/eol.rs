//! The operating-system end-of-life table kept in `host/runtime/data/os-eol.toml`.

use std::sync::OnceLock;

use chrono::{Datelike as _, NaiveDate};
use serde::Deserialize;

use crate::bindings::types::Date;

/// One release's end of vendor security support.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Release {
    /// os-release `ID` (`debian`, `ubuntu`) or `windows`, `windows-server`.
    pub id: String,
    /// os-release `VERSION_ID` or the Windows release (`11 24H2`).
    pub version: String,
    /// Human name.
    pub name: String,
    /// Last day of standard security support.
    pub end_of_life: NaiveDate,
}

#[derive(Deserialize)]
struct Table {
    release: Vec<Release>,
}

/// Every release in the table.
pub fn releases() -> &'static [Release] {
    static TABLE: OnceLock<Vec<Release>> = OnceLock::new();
    TABLE.get_or_init(|| {
        toml::from_str::<Table>(include_str!("../../../data/os-eol.toml"))
            .expect("host/runtime/data/os-eol.toml is valid (checked by a unit test)")
            .release
    })
}

/// End of life of `id` `version`, if the table knows it. Matches the
/// version exactly, then by its major part (`12.4` → `12`).
pub fn end_of_life(id: &str, version: &str) -> Option<Date> {
    let id = id.trim().to_ascii_lowercase();
    let version = version.trim();
    let major = version.split('.').next().unwrap_or(version);
    let table = releases();
    table
        .iter()
        .find(|r| r.id == id && r.version.eq_ignore_ascii_case(version))
        .or_else(|| table.iter().find(|r| r.id == id && r.version == major))
        .map(|r| date(r.end_of_life))
}

/// A chrono date as the WIT `date`.
pub fn date(d: NaiveDate) -> Date {
    Date {
        year: d.year().clamp(0, u16::MAX as i32) as u16,
        month: d.month() as u8,
        day: d.day() as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_parses_and_answers_by_exact_or_major_version() {
        assert!(releases().len() >= 10);
        let bookworm = end_of_life("debian", "12").expect("debian 12 is known");
        assert_eq!((bookworm.year, bookworm.month, bookworm.day), (2026, 6, 10));
        assert_eq!(end_of_life("Debian", "12.4").map(|d| d.year), Some(2026));
        assert_eq!(end_of_life("ubuntu", "22.04").map(|d| d.year), Some(2027));
        assert!(end_of_life("ubuntu", "22.10").is_none());
        assert!(end_of_life("plan9", "4").is_none());
    }
}
