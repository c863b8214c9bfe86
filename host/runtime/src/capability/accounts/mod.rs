//! `accounts`: locked-out accounts in a directory or on the device.

mod ldap;
mod local;

use std::sync::Arc;

use async_trait::async_trait;

pub use ldap::{Directory, DirectoryConfig, Flavour};
pub use local::LocalAccounts;

use crate::HostState;
use crate::bindings::accounts::{Account, Host};
use crate::bindings::types::{HostError, Outcome, RunMode};
use crate::capability::{CallSummary, Capability};

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

/// Several account sources seen as one (a directory and the device's local
/// accounts): `locked` lists all of them, `lookup` and `unlock` use the
/// first source that knows the name.
pub struct Sources(pub Vec<Arc<dyn AccountsProvider>>);

impl Sources {
    /// The first source with an account called `name`.
    async fn owner(&self, name: &str) -> Result<(&dyn AccountsProvider, Account), HostError> {
        let mut not_found = None;
        for source in &self.0 {
            match source.lookup(name).await {
                Ok(account) => return Ok((source.as_ref(), account)),
                Err(HostError::NotFound(e)) => not_found = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(HostError::NotFound(not_found.unwrap_or_else(|| {
            format!("no account source knows '{name}'")
        })))
    }
}

#[async_trait]
impl AccountsProvider for Sources {
    async fn locked(&self) -> Result<Vec<Account>, HostError> {
        let mut all = Vec::new();
        for source in &self.0 {
            all.extend(source.locked().await?);
        }
        Ok(all)
    }

    async fn lookup(&self, name: &str) -> Result<Account, HostError> {
        Ok(self.owner(name).await?.1)
    }

    async fn unlock(&self, name: &str, mode: RunMode) -> Result<Outcome, HostError> {
        self.owner(name).await?.0.unlock(name, mode).await
    }
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
        let device = self.run_device(Capability::Accounts)?;
        self.mutate(&call, device.accounts.unlock(&name, mode))
            .await
    }
}
