//! Per-run limits: memory, CPU, wall clock, log and output sizes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often the engine's epoch advances. The CPU deadline is counted in
/// these ticks, and a running guest yields to the executor once per tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Limits applied to every invocation of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Cap on each linear memory, in bytes.
    pub memory_bytes: usize,
    /// Core instances a component may create (a Rust plugin makes about
    /// three, a componentize-py Python plugin about a dozen; the pool
    /// allows at most `engine::MAX_CORE_INSTANCES_PER_COMPONENT`).
    pub instances: usize,
    /// Time spent executing guest code before the run is ended.
    #[serde(with = "millis")]
    pub cpu_time: Duration,
    /// Time from the start of instantiation to the end of the call,
    /// including time spent waiting inside host calls.
    #[serde(with = "millis")]
    pub wall_time: Duration,
    /// Run-log lines kept; later lines are dropped and counted.
    pub log_lines: usize,
    /// Run-log bytes kept, and the capacity of stdout and stderr each.
    pub log_bytes: usize,
    /// Findings a check may return.
    pub max_findings: usize,
    /// Changes a remediation may return.
    pub max_changes: usize,
    /// Bytes of text across all returned findings or changes.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            instances: 64,
            cpu_time: Duration::from_secs(10),
            wall_time: Duration::from_secs(120),
            log_lines: 10_000,
            log_bytes: 1 << 20,
            max_findings: 10_000,
            max_changes: 10_000,
            max_output_bytes: 4 << 20,
        }
    }
}

impl Limits {
    /// The CPU budget in epoch ticks (at least one).
    pub(crate) fn cpu_ticks(&self) -> u64 {
        (self.cpu_time.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
