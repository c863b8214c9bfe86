//! Publisher signatures over modules (ed25519).
//!
//! # What is signed
//!
//! A publisher signs one version of a module: its bytes (by digest) and its
//! manifest together. The signed payload is, byte for byte:
//!
//! ```text
//! b"steward-module-v1\n" ‖ digest ‖ b"\n" ‖ canonical manifest JSON
//! ```
//!
//! where `digest` is the [`Digest`] in its text form (`sha256:<64 hex>`)
//! and the canonical manifest JSON is [`Manifest::canonical_json`]:
//! `serde_json::to_vec` of the manifest, fields in declaration order,
//! capabilities sorted, no whitespace, `homepage` omitted when absent. The
//! prefix names the scheme and its version, so a signature can never be
//! replayed as a signature over some other kind of message. Anyone holding
//! the manifest and the digest rebuilds the payload with
//! [`signing_payload`]; nothing else (upload headers, the server's JSON) is
//! trusted.
//!
//! # Encodings
//!
//! Public keys (32 bytes), secret keys (the 32-byte seed) and signatures
//! (64 bytes) travel as standard base64 with padding. A key's id is
//! `ed25519:` and the first 16 hex digits of the sha256 of its public key
//! bytes ([`key_id`]).
//!
//! # Key files
//!
//! A secret key is kept in a JSON file of its own, written with mode 0600:
//!
//! ```json
//! {"key-id": "ed25519:…", "public-key": "<base64>", "secret-key": "<base64>"}
//! ```
//!
//! [`SecretKey::load`] checks that the public key and id match the secret
//! key, so a file edited by hand cannot claim someone else's key id.
//!
//! Verification uses ed25519-dalek's `verify_strict`, which refuses weak
//! public keys and non-canonical signatures.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Digest;
use crate::manifest::Manifest;

/// The first line of every signed payload: the scheme and its version.
pub const PAYLOAD_PREFIX: &[u8] = b"steward-module-v1\n";

/// The prefix of every key id.
pub const KEY_ID_PREFIX: &str = "ed25519:";

/// Why a key or signature cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The public key is not base64 of 32 bytes, or not a valid point.
    #[error("invalid public key: {0}")]
    BadPublicKey(String),
    /// The signature is not base64 of 64 bytes.
    #[error("invalid signature encoding: {0}")]
    BadSignatureEncoding(String),
    /// The signature does not verify under the key.
    #[error("the signature does not match the module and manifest under this key")]
    BadSignature,
    /// A key file cannot be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// A key file is not a valid key file.
    #[error("key file {path}: {message}")]
    BadKeyFile {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The bytes a publisher signs for `manifest` with module bytes `digest`
/// (see the module documentation).
pub fn signing_payload(digest: &Digest, manifest: &Manifest) -> Vec<u8> {
    let digest = digest.to_string();
    let json = manifest.canonical_json();
    let mut payload = Vec::with_capacity(PAYLOAD_PREFIX.len() + digest.len() + 1 + json.len());
    payload.extend_from_slice(PAYLOAD_PREFIX);
    payload.extend_from_slice(digest.as_bytes());
    payload.push(b'\n');
    payload.extend_from_slice(&json);
    payload
}

/// The id of a public key: `ed25519:` and the first 16 hex digits of the
/// sha256 of its 32 bytes.
pub fn key_id(public_key: &[u8; 32]) -> String {
    let hash = hex::encode(Sha256::digest(public_key));
    format!("{KEY_ID_PREFIX}{}", &hash[..16])
}

/// Decodes a base64 public key and checks it is a usable ed25519 key.
///
/// # Errors
///
/// [`SigningError::BadPublicKey`] when it is not base64 of 32 bytes, not a
/// point on the curve, or a weak (small-order) key.
pub fn decode_public_key(public_key_b64: &str) -> Result<VerifyingKey, SigningError> {
    let bytes = BASE64
        .decode(public_key_b64.trim())
        .map_err(|e| SigningError::BadPublicKey(format!("not base64: {e}")))?;
    let bytes: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| SigningError::BadPublicKey(format!("{} bytes, expected 32", bytes.len())))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| SigningError::BadPublicKey("not an ed25519 public key".into()))?;
    if key.is_weak() {
        return Err(SigningError::BadPublicKey(
            "a weak (small-order) key cannot sign anything meaningful".into(),
        ));
    }
    Ok(key)
}

/// The [`key_id`] of a base64 public key.
///
/// # Errors
///
/// As [`decode_public_key`].
pub fn key_id_of(public_key_b64: &str) -> Result<String, SigningError> {
    Ok(key_id(decode_public_key(public_key_b64)?.as_bytes()))
}

/// Checks `signature_b64` over `payload` under `public_key_b64`.
///
/// # Errors
///
/// [`SigningError::BadPublicKey`] or [`SigningError::BadSignatureEncoding`]
/// for malformed input, [`SigningError::BadSignature`] when the signature
/// does not verify.
pub fn verify(
    public_key_b64: &str,
    payload: &[u8],
    signature_b64: &str,
) -> Result<(), SigningError> {
    let key = decode_public_key(public_key_b64)?;
    let bytes = BASE64
        .decode(signature_b64.trim())
        .map_err(|e| SigningError::BadSignatureEncoding(format!("not base64: {e}")))?;
    let signature = Signature::from_slice(&bytes).map_err(|_| {
        SigningError::BadSignatureEncoding(format!("{} bytes, expected 64", bytes.len()))
    })?;
    key.verify_strict(payload, &signature)
        .map_err(|_| SigningError::BadSignature)
}

/// A publisher's ed25519 signing key.
#[derive(Clone)]
pub struct SecretKey {
    key: SigningKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

/// The key file's JSON.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct KeyFile {
    key_id: String,
    public_key: String,
    secret_key: String,
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Self {
        Self {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// The key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// Reads a key file (see the module documentation).
    ///
    /// # Errors
    ///
    /// The file cannot be read, is not a key file, or its public key or id
    /// do not belong to its secret key.
    pub fn load(path: &Path) -> Result<Self, SigningError> {
        let shown = path.display().to_string();
        let bad = |message: String| SigningError::BadKeyFile {
            path: shown.clone(),
            message,
        };
        let text = std::fs::read(path).map_err(|source| SigningError::Io {
            path: shown.clone(),
            source,
        })?;
        let file: KeyFile = serde_json::from_slice(&text)
            .map_err(|e| bad(format!("not a Steward key file: {e}")))?;
        let seed = BASE64
            .decode(file.secret_key.trim())
            .map_err(|e| bad(format!("`secret-key` is not base64: {e}")))?;
        let seed: [u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| bad(format!("`secret-key` is {} bytes, expected 32", seed.len())))?;
        let key = Self::from_seed(&seed);
        if key.public_key() != file.public_key.trim() {
            return Err(bad("`public-key` does not belong to `secret-key`".into()));
        }
        if key.key_id() != file.key_id {
            return Err(bad(format!(
                "`key-id` is `{}` but the key's id is `{}`",
                file.key_id,
                key.key_id()
            )));
        }
        Ok(key)
    }

    /// Writes the key file, readable and writable by its owner only (mode
    /// 0600), replacing any file at `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), SigningError> {
        use std::io::Write as _;
        #[cfg(unix)]
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

        let io = |source| SigningError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = KeyFile {
            key_id: self.key_id(),
            public_key: self.public_key(),
            secret_key: BASE64.encode(self.key.to_bytes()),
        };
        let mut json = serde_json::to_vec_pretty(&file).expect("a key file serialises");
        json.push(b'\n');
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut out = options.open(path).map_err(io)?;
        // An existing file keeps its mode on open; tighten it first.
        #[cfg(unix)]
        out.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        out.write_all(&json).map_err(io)?;
        out.sync_all().map_err(io)?;
        Ok(())
    }

    /// The key's id (see [`key_id`]).
    pub fn key_id(&self) -> String {
        key_id(self.key.verifying_key().as_bytes())
    }

    /// The public key, base64.
    pub fn public_key(&self) -> String {
        BASE64.encode(self.key.verifying_key().as_bytes())
    }

    /// Signs `payload`; the signature is base64.
    pub fn sign(&self, payload: &[u8]) -> String {
        BASE64.encode(self.key.sign(payload).to_bytes())
    }

    /// Signs a module version: [`sign`](SecretKey::sign) of
    /// [`signing_payload`].
    pub fn sign_module(&self, digest: &Digest, manifest: &Manifest) -> String {
        self.sign(&signing_payload(digest, manifest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            name: "acme/patching".into(),
            version: "1.0.0".parse().unwrap(),
            description: "Patches".into(),
            license: "MIT".into(),
            homepage: None,
            wit: "steward:plugin@0.1.0".into(),
            capabilities: ["packages".to_string()].into(),
        }
    }

    #[test]
    fn the_payload_is_prefix_digest_and_canonical_manifest() {
        let digest = Digest::of(b"module");
        let payload = signing_payload(&digest, &manifest());
        let expected = format!(
            "steward-module-v1\n{digest}\n{}",
            String::from_utf8(manifest().canonical_json()).unwrap()
        );
        assert_eq!(String::from_utf8(payload).unwrap(), expected);
    }

    #[test]
    fn key_ids_are_a_prefix_of_the_public_keys_hash() {
        // RFC 8032 test vector 1's public key.
        let public =
            hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .unwrap();
        let public: [u8; 32] = public.try_into().unwrap();
        let expected = &hex::encode(Sha256::digest(public))[..16];
        assert_eq!(key_id(&public), format!("ed25519:{expected}"));
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let key = SecretKey::from_seed(&seed.try_into().unwrap());
        assert_eq!(key.public_key(), BASE64.encode(public));
        assert_eq!(key.key_id(), key_id(&public));
    }

    #[test]
    fn a_signature_verifies_only_over_the_same_payload_and_key() {
        let key = SecretKey::generate();
        let digest = Digest::of(b"module");
        let signature = key.sign_module(&digest, &manifest());
        let payload = signing_payload(&digest, &manifest());
        verify(&key.public_key(), &payload, &signature).unwrap();

        let other_digest = signing_payload(&Digest::of(b"tampered"), &manifest());
        assert!(matches!(
            verify(&key.public_key(), &other_digest, &signature),
            Err(SigningError::BadSignature)
        ));
        let mut changed = manifest();
        changed.capabilities.insert("tickets".into());
        assert!(matches!(
            verify(
                &key.public_key(),
                &signing_payload(&digest, &changed),
                &signature
            ),
            Err(SigningError::BadSignature)
        ));
        let other = SecretKey::generate();
        assert!(matches!(
            verify(&other.public_key(), &payload, &signature),
            Err(SigningError::BadSignature)
        ));
        assert!(matches!(
            verify("not base64!", &payload, &signature),
            Err(SigningError::BadPublicKey(_))
        ));
        assert!(matches!(
            verify(&key.public_key(), &payload, "AAAA"),
            Err(SigningError::BadSignatureEncoding(_))
        ));
    }

    #[test]
    fn key_files_round_trip_with_mode_0600_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        let key = SecretKey::generate();
        key.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["key-id"], key.key_id().as_str());
        assert_eq!(json["public-key"], key.public_key().as_str());
        let loaded = SecretKey::load(&path).unwrap();
        assert_eq!(loaded.key_id(), key.key_id());
        assert_eq!(loaded.sign(b"x"), key.sign(b"x"));

        // A file claiming another key's public half is refused.
        let other = SecretKey::generate();
        let mut forged = json.clone();
        forged["public-key"] = other.public_key().into();
        std::fs::write(&path, serde_json::to_vec(&forged).unwrap()).unwrap();
        assert!(matches!(
            SecretKey::load(&path),
            Err(SigningError::BadKeyFile { .. })
        ));
        let mut forged = json;
        forged["key-id"] = other.key_id().into();
        std::fs::write(&path, serde_json::to_vec(&forged).unwrap()).unwrap();
        assert!(matches!(
            SecretKey::load(&path),
            Err(SigningError::BadKeyFile { .. })
        ));
        assert!(matches!(
            SecretKey::load(&dir.path().join("missing.json")),
            Err(SigningError::Io { .. })
        ));
    }

    #[test]
    fn weak_public_keys_are_refused() {
        // The identity point: a small-order key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            decode_public_key(&BASE64.encode(identity)),
            Err(SigningError::BadPublicKey(_))
        ));
    }
}
