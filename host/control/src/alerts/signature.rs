//! Signing webhook bodies and checking signatures: HMAC-SHA256 over the
//! exact body bytes, keyed with the webhook's secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying `sha256=<hex HMAC-SHA256(secret, body)>`
/// (`X-Steward-Signature`; header names are case-insensitive).
pub const SIGNATURE_HEADER: &str = "x-steward-signature";

/// The header carrying the event, `alert.firing` or `alert.resolved`
/// (`X-Steward-Event`).
pub const EVENT_HEADER: &str = "x-steward-event";

/// The header carrying the delivery id, the same on every retry
/// (`X-Steward-Delivery`).
pub const DELIVERY_HEADER: &str = "x-steward-delivery";

const PREFIX: &str = "sha256=";

fn mac(secret: &[u8], body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` only fails for MACs
    // with fixed key sizes.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac
}

/// The `X-Steward-Signature` value for `body`: `sha256=` and the lowercase
/// hex HMAC-SHA256 of the body keyed with `secret`.
pub fn sign(secret: impl AsRef<[u8]>, body: &[u8]) -> String {
    let tag = mac(secret.as_ref(), body).finalize().into_bytes();
    format!("{PREFIX}{}", hex::encode(tag))
}

/// Whether `header` (an `X-Steward-Signature` value) is the signature of
/// `body` under `secret`. The comparison takes the same time wherever the
/// first wrong byte is; a header without the `sha256=` prefix, or whose
/// value is not hex, is false.
pub fn verify_signature(secret: impl AsRef<[u8]>, body: &[u8], header: &str) -> bool {
    let Some(hex_tag) = header.trim().strip_prefix(PREFIX) else {
        return false;
    };
    let Ok(tag) = hex::decode(hex_tag) else {
        return false;
    };
    mac(secret.as_ref(), body).verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123";

    #[test]
    fn matches_a_known_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verifies_its_own_signature() {
        let header = sign(SECRET, b"{}");
        assert!(verify_signature(SECRET, b"{}", &header));
        assert!(verify_signature(
            SECRET,
            b"{}",
            &header.to_uppercase().replace("SHA256=", "sha256=")
        ));
    }

    #[test]
    fn rejects_a_changed_body_secret_or_header() {
        let header = sign(SECRET, b"{\"a\":1}");
        assert!(!verify_signature(SECRET, b"{\"a\":2}", &header));
        assert!(!verify_signature(
            "fedcba9876543210fedc",
            b"{\"a\":1}",
            &header
        ));
        assert!(!verify_signature(
            SECRET,
            b"{\"a\":1}",
            &header[..header.len() - 2]
        ));
        assert!(!verify_signature(
            SECRET,
            b"{\"a\":1}",
            header.trim_start_matches("sha256=")
        ));
        assert!(!verify_signature(SECRET, b"{\"a\":1}", "sha256=zz"));
        assert!(!verify_signature(SECRET, b"{\"a\":1}", ""));
    }
}
