//! Steward's module registry: module identity, manifests, signatures, the
//! registry server and its client.
//!
//! Module bytes are addressed by their sha256 digest everywhere: the host's
//! compile cache, the registry's blob store and every run record name a
//! module by [`Digest`].
//!
//! # How publishing and installing fit together
//!
//! A publisher (a token owning one or more namespaces, created with
//! `steward-registry publisher add`) registers an ed25519 public key, then
//! uploads each version of a module with its [`Manifest`] and a
//! [signature](signing) over the module's digest and the manifest. The
//! server ([`server`]) refuses anything it cannot vouch for: a namespace
//! the caller does not own, a version that exists (versions are
//! immutable), a missing or bad signature, a manifest whose capabilities
//! differ from what the component really [imports]. Accepted
//! bytes go to a content-addressed [blob store](blobs) and the version to
//! the [index] (SQLite or PostgreSQL).
//!
//! A host resolves a requirement such as `^1.2` ([`resolve`], Cargo's
//! rules), downloads the bytes by digest and checks digest and signature
//! against the keys it trusts before loading anything
//! ([`client::verify_resolved`]).
//!
//! | module | what |
//! |---|---|
//! | [`manifest`] | the manifest and its validation |
//! | [`imports`] | a component's real capabilities, read with wasmparser |
//! | [`signing`] | keys, key files, the signed payload |
//! | [`resolve`] | semver requirement resolution |
//! | [`index`] | the SQL index |
//! | [`database`] | embedded migrations and SQLite files, shared with the host's store |
//! | [`blobs`] | the blob store |
//! | [`api`] | HTTP wire types and problem codes |
//! | [`server`] | the axum server |
//! | [`client`] | the client library |

pub mod api;
pub mod blobs;
pub mod client;
pub mod database;
pub mod imports;
pub mod index;
pub mod manifest;
pub mod resolve;
pub mod server;
pub mod signing;

pub use manifest::Manifest;

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
