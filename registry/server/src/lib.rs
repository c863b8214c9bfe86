//! Steward's module registry server: publishers own namespaces, publish
//! signed, versioned modules, and hosts resolve and download them by digest.
//!
//! A publisher (a token owning one or more namespaces, created with
//! `steward-registry publisher add`) registers an ed25519 public key, then
//! uploads each version of a module with its manifest and a signature over
//! the module's digest and the manifest. The server ([`server`]) refuses
//! anything it cannot vouch for: a namespace the caller does not own, a
//! version that exists (versions are immutable), a missing or bad
//! signature, a manifest whose capabilities differ from what the component
//! really imports (checked by [`steward_contract::imports`], the same
//! classification a host applies when it loads the module). Accepted bytes
//! go to a content-addressed [blob store](blobs) and the version to the
//! [index] (SQLite or PostgreSQL).
//!
//! | module | what |
//! |---|---|
//! | [`index`] | the SQL index |
//! | [`blobs`] | the blob store (filesystem or S3) |
//! | [`server`] | the axum server |

pub mod blobs;
pub mod index;
pub mod server;
