//! `clock`: the device's wall clock.

use crate::HostState;
use crate::bindings::clock::Host;
use crate::bindings::types::Instant;
use crate::capability::Capability;

/// Tells the time on a device.
pub trait ClockProvider: Send + Sync {
    /// Now, on the device.
    fn now(&self) -> Instant;
}

/// The host's own clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl ClockProvider for SystemClock {
    fn now(&self) -> Instant {
        instant_of(std::time::SystemTime::now())
    }
}

/// A `SystemTime` as a WIT instant (times before 1970 become the epoch).
pub fn instant_of(t: std::time::SystemTime) -> Instant {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Instant {
        seconds: d.as_secs() as i64,
        nanoseconds: d.subsec_nanos(),
    }
}

impl Host for HostState {
    async fn now(&mut self) -> wasmtime::Result<Instant> {
        Ok(self.run_device(Capability::Clock)?.clock.now())
    }
}
