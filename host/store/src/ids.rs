//! Identifiers and timestamps as the store keeps them.
//!
//! Ids are made by the application, not the database, so one DDL serves
//! both backends and a batch of rows can be inserted without reading ids
//! back. An id is 32 lowercase hex digits: 12 of unix milliseconds (so ids
//! sort by creation time and index inserts stay at the right edge), 4 of a
//! per-process counter (so ids made in the same millisecond still sort in
//! creation order within a process), and 16 drawn fresh for each id from a
//! cryptographically secure generator (`rand::thread_rng`, seeded from the
//! OS). One id therefore says nothing about the next: guessing another
//! object's id means guessing 64 random bits, whatever ids the guesser has
//! seen. The API still checks every id against the caller's tenants; the
//! randomness is defence in depth.

use std::fmt;
use std::ops::Add;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time: milliseconds since the Unix epoch, UTC. Every time the
/// store keeps is one of these (a `BIGINT` column on both backends).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The timestamp `millis` milliseconds after the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// The current wall-clock time.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The same instant as a chrono time (the epoch if out of chrono's
    /// range).
    pub fn to_utc(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }
}

impl From<chrono::DateTime<chrono::Utc>> for Timestamp {
    fn from(t: chrono::DateTime<chrono::Utc>) -> Self {
        Self(t.timestamp_millis())
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    /// Saturates instead of overflowing.
    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_millis(rhs)))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// `d` in whole milliseconds, saturating at `i64::MAX`.
pub(crate) fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A new id (see the module doc).
pub fn new_id() -> String {
    static COUNTER: OnceLock<AtomicU32> = OnceLock::new();
    let counter = COUNTER.get_or_init(|| AtomicU32::new(rand::random::<u32>()));
    let millis = Timestamp::now().as_millis() as u64 & 0xffff_ffff_ffff;
    let seq = counter.fetch_add(1, Ordering::Relaxed) & 0xffff;
    let random: u64 = rand::random();
    format!("{millis:012x}{seq:04x}{random:016x}")
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh, unique, time-ordered id.
            pub fn generate() -> Self {
                Self(new_id())
            }

            /// The id as stored.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// Identifies a tenant (an MSP client).
    TenantId
);
id_type!(
    /// Identifies a site of a tenant.
    SiteId
);
id_type!(
    /// Identifies a managed device.
    DeviceId
);
id_type!(
    /// Identifies a playbook.
    PlaybookId
);
id_type!(
    /// Identifies a schedule.
    ScheduleId
);
id_type!(
    /// Identifies a run (one firing of a playbook).
    RunId
);
id_type!(
    /// Identifies a job (one plugin step against one device or tenant).
    JobId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_sort_in_creation_order() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
        assert!(ids.iter().all(|id| id.len() == 32));
        // The 16-bit counter wraps every 65,536 ids, never within 10,000
        // ids of one millisecond, so creation order is sort order here
        // unless it wrapped during this test.
        let in_order = ids.windows(2).filter(|w| w[0] < w[1]).count();
        assert!(in_order >= ids.len() - 2);
    }

    #[test]
    fn one_id_says_nothing_about_the_next() {
        // Consecutive ids of one process share their time and counter
        // digits at most; their last 16 hex digits are fresh randomness,
        // so no two agree there and they differ in about half their bits.
        let ids: Vec<String> = (0..1_000).map(|_| new_id()).collect();
        let tails: std::collections::HashSet<&str> = ids.iter().map(|id| &id[16..]).collect();
        assert_eq!(tails.len(), ids.len());
        let differing: u32 = ids
            .windows(2)
            .map(|w| {
                let a = u64::from_str_radix(&w[0][16..], 16).unwrap();
                let b = u64::from_str_radix(&w[1][16..], 16).unwrap();
                (a ^ b).count_ones()
            })
            .sum();
        let mean = f64::from(differing) / 999.0;
        assert!((24.0..40.0).contains(&mean), "mean differing bits {mean}");
    }

    #[test]
    fn timestamp_addition_saturates() {
        let t = Timestamp::from_millis(i64::MAX - 1);
        assert_eq!(t + Duration::from_secs(1), Timestamp::from_millis(i64::MAX));
        assert_eq!(
            Timestamp::from_millis(1_000) + Duration::from_millis(250),
            Timestamp::from_millis(1_250)
        );
    }
}
