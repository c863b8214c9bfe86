//! The contract between Steward's parts: what every other crate agrees on.
//!
//! The bottom of the crate graph: it depends on no other Steward crate, and
//! the registry, the runtime, the store and the binaries all speak it.
//!
//! | item | what |
//! |---|---|
//! | [`Digest`] | a module's identity: the sha256 of its bytes |
//! | [`imports`] | the WIT package, its versions, the one capability list and the one import classification, used by registry publish and host load alike |
//! | [`manifest`] | a module's manifest and its validation |
//! | [`signing`] | keys, key files, the signed payload |
//! | [`codes`] | the one table of error codes every API answers with |
//! | [`output`] | the rules for a plugin's finding ids and change kinds |
//! | [`kebab`] | kebab-case JSON for the WIT's types, as users read and write them |
//! | [`failpoint`] | the crash points the fault tests set |
//! | [`MAX_API_UPLOAD`] | the largest body the API takes (a plugin upload) |

pub mod authoring;
pub mod capability;
pub mod codes;
pub mod failpoint;
pub mod imports;
pub mod kebab;
pub mod manifest;
pub mod output;
pub mod signing;

pub use manifest::Manifest;

/// The largest body the web API accepts: a plugin upload (base64 in JSON).
/// The CLI checks an upload against it before sending.
pub const MAX_API_UPLOAD: usize = 64 * 1024 * 1024;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The sha256 of a module's bytes, printed as `sha256:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest([u8; 32]);

/// Why a string is not a digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// The string does not start with `sha256:`.
    #[error("digest `{0}` must start with `sha256:`")]
    MissingAlgorithm(String),
    /// The part after `sha256:` is not 64 lowercase hex digits.
    #[error("digest `{0}` must be `sha256:` followed by 64 lowercase hex digits")]
    BadHex(String),
}

impl Digest {
    /// Digest of the given bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest with these 32 bytes (a finished sha256).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes of the sha256.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 hex digits without the `sha256:` prefix, for file names.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for humans.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s
            .strip_prefix("sha256:")
            .ok_or_else(|| DigestError::MissingAlgorithm(s.to_string()))?;
        let well_formed = hex_part.len() == 64
            && hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(DigestError::BadHex(s.to_string()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| DigestError::BadHex(s.to_string()))?;
        Ok(Self(out))
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> Self {
        d.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_its_text_form() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.to_string(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_digest_without_algorithm_or_with_bad_hex() {
        assert!(matches!(
            "2cf24d".parse::<Digest>(),
            Err(DigestError::MissingAlgorithm(_))
        ));
        assert!(matches!(
            "sha256:XYZ".parse::<Digest>(),
            Err(DigestError::BadHex(_))
        ));
        let upper = format!("sha256:{}", "A".repeat(64));
        assert!(matches!(
            upper.parse::<Digest>(),
            Err(DigestError::BadHex(_))
        ));
    }
}
