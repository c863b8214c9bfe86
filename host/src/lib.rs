//! The `steward` binary's library half: what the CLI and the integration
//! tests share. The binary is the composition root, the only crate that
//! sees every layer (runtime, store, control, api) at once.
//!
//! - [`serve`]: `steward serve`, wiring the scheduler, sweeper, executor
//!   and web API over one store.

#[cfg(feature = "server")]
pub mod serve;
