//! Steward's module registry protocol: the wire types, semver resolution and
//! the client library hosts and vendors use. The server lives in
//! `steward-registry-server`, so a host never compiles it.
//!
//! Module identity, manifests, signing and import checks are the
//! contract's ([`steward_contract`]); they are re-exported here for the
//! registry's users.
//!
//! A host resolves a requirement such as `^1.2` ([`resolve`], Cargo's
//! rules), downloads the bytes by digest and checks digest and signature
//! against the keys it trusts before loading anything
//! ([`client::verify_resolved`]).
//!
//! | module | what |
//! |---|---|
//! | [`resolve`] | semver requirement resolution |
//! | [`api`] | HTTP wire types and problem codes |
//! | [`client`] | the client library |

pub mod api;
pub mod client;
pub mod resolve;
