//! `accounts`: locked-out accounts in a directory or on the device.

use async_trait::async_trait;

use crate::bindings::accounts::{Account, Host};
use crate::bindings::types::{HostError, Outcome, RunMode};
use crate::capability::{CallSummary, Capability};
use crate::runtime::HostState;

/// An account source: a directory or the device's local accounts.
#[async_trait]
pub trait AccountsProvider: Send + Sync {
    /// Accounts currently locked out.
    async fn locked(&self) -> Result<Vec<Account>, HostError>;
    /// One account by name; `not-found` if there is none.
    async fn lookup(&self, name: &str) -> Result<Account, HostError>;
    /// Unlocks an account.
    async fn unlock(&self, name: &str, mode: RunMode) -> Result<Outcome, HostError>;
}

impl Host for HostState {
    async fn locked(&mut self) -> wasmtime::Result<Result<Vec<Account>, HostError>> {
        Ok(self
            .run_device(Capability::Accounts)?
            .accounts
            .locked()
            .await)
    }

    async fn lookup(&mut self, name: String) -> wasmtime::Result<Result<Account, HostError>> {
        Ok(self
            .run_device(Capability::Accounts)?
            .accounts
            .lookup(&name)
            .await)
    }

    async fn unlock(&mut self, name: String) -> wasmtime::Result<Result<Outcome, HostError>> {
        let call = CallSummary {
            capability: Capability::Accounts,
            function: "unlock",
            arguments: name.clone(),
        };
        if let Err(e) = self.authorize(&call, [name.as_str()])? {
            return Ok(Err(e));
        }
        let mode = self.run_mode(Capability::Accounts)?;
        let result = self
            .run_device(Capability::Accounts)?
            .accounts
            .unlock(&name, mode)
            .await;
        self.audited(&call, result)
    }
}
