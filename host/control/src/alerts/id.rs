//! Ids for alerts and deliveries.
//!
//! The same shape as the store's ids: 32 lowercase hex digits, 12 of unix
//! milliseconds (so ids sort by creation time), 8 of a per-process counter
//! (so ids made in one millisecond differ and sort), 12 of a per-process
//! random value (so two processes never make the same id).

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A new id (see the module doc).
pub(super) fn new_id() -> String {
    static SEED: OnceLock<(u64, AtomicU32)> = OnceLock::new();
    let (random, counter) = SEED.get_or_init(|| {
        // `RandomState` is seeded from the OS's randomness; the pid and the
        // time on top only guard against a platform where it is not.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.write_u128(unix_millis());
        let random = hasher.finish();
        (random, AtomicU32::new((random >> 32) as u32))
    });
    let millis = unix_millis() as u64 & 0xffff_ffff_ffff;
    let seq = counter.fetch_add(1, Ordering::Relaxed);
    format!("{millis:012x}{seq:08x}{:012x}", random & 0xffff_ffff_ffff)
}

/// The `X-Steward-Delivery` id of `event` of alert `alert_id` at webhook
/// `webhook_id`: 32 hex digits of a SHA-256 over the three, so every
/// delivery of that event to that webhook carries it, retries and
/// redeliveries after a restart included, and a receiver can drop
/// duplicates.
pub(super) fn delivery_id(alert_id: &str, event: &str, webhook_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in [alert_id, event, webhook_id] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_id_is_the_same_for_the_same_event_and_webhook_only() {
        let id = delivery_id("a1", "alert.firing", "ops");
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, delivery_id("a1", "alert.firing", "ops"));
        assert_ne!(id, delivery_id("a1", "alert.resolved", "ops"));
        assert_ne!(id, delivery_id("a1", "alert.firing", "ops2"));
        assert_ne!(id, delivery_id("a2", "alert.firing", "ops"));
        // Parts are length-prefixed: moving a boundary changes the id.
        assert_ne!(delivery_id("ab", "c", "d"), delivery_id("a", "bc", "d"));
    }

    #[test]
    fn ids_are_32_hex_digits_and_unique() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| {
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }));
    }
}
