//! Ids for alerts and deliveries: alerts take the store's ids
//! ([`steward_store::new_id`]: time-ordered, with 64 fresh random bits).

/// A new alert id.
pub(super) fn new_id() -> String {
    steward_store::new_id()
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
