//! `accounts`: locked-out accounts in a directory or on the device.

mod ldap;
mod local;

use std::sync::Arc;

use async_trait::async_trait;

pub use ldap::{Directory, DirectoryConfig, Flavour};
pub use local::LocalAccounts;

use crate::HostState;
use crate::bindings::accounts::{Account, AccountSource, Host};
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

    /// The account `name` of `source`; `not-found` if that source has none.
    async fn lookup_in(&self, name: &str, source: AccountSource) -> Result<Account, HostError> {
        let account = self.lookup(name).await?;
        if account.source == source {
            Ok(account)
        } else {
            Err(not_in(name, source))
        }
    }

    /// Unlocks the account `name` of `source`.
    async fn unlock_in(
        &self,
        name: &str,
        source: AccountSource,
        mode: RunMode,
    ) -> Result<Outcome, HostError> {
        self.lookup_in(name, source).await?;
        self.unlock(name, mode).await
    }
}

fn not_in(name: &str, source: AccountSource) -> HostError {
    let source = match source {
        AccountSource::Directory => "the directory",
        AccountSource::Local => "the local accounts",
    };
    HostError::NotFound(format!("{source} hold no account '{name}'"))
}

/// The source as the audit trail names it.
fn source_word(source: AccountSource) -> &'static str {
    match source {
        AccountSource::Directory => "directory",
        AccountSource::Local => "local",
    }
}

/// The longest reason an unlock may record, in bytes.
pub const MAX_REASON_BYTES: usize = 256;

/// Several account sources seen as one (a directory and the device's local
/// accounts): `locked` lists all of them, `lookup` and `unlock` use the
/// first source that knows the name.
pub struct Sources(pub Vec<Arc<dyn AccountsProvider>>);

impl Sources {
    /// The provider holding `source`'s account called `name`.
    async fn owner_in(
        &self,
        name: &str,
        source: AccountSource,
    ) -> Result<(&dyn AccountsProvider, Account), HostError> {
        for provider in &self.0 {
            match provider.lookup_in(name, source).await {
                Ok(account) => return Ok((provider.as_ref(), account)),
                Err(HostError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Err(not_in(name, source))
    }

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

    async fn lookup_in(&self, name: &str, source: AccountSource) -> Result<Account, HostError> {
        Ok(self.owner_in(name, source).await?.1)
    }

    async fn unlock_in(
        &self,
        name: &str,
        source: AccountSource,
        mode: RunMode,
    ) -> Result<Outcome, HostError> {
        self.owner_in(name, source)
            .await?
            .0
            .unlock(name, mode)
            .await
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

    async fn unlock(
        &mut self,
        name: String,
        source: AccountSource,
        reason: String,
    ) -> wasmtime::Result<Result<Outcome, HostError>> {
        // The reason goes to the audit trail: one line, bounded.
        let reason: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .trim()
            .to_string();
        let call = CallSummary {
            capability: Capability::Accounts,
            function: "unlock",
            arguments: format!("{name} ({}): {reason}", source_word(source)),
        };
        if let Err(e) = self.authorize(&call, [name.as_str()])? {
            return Ok(Err(e));
        }
        if reason.is_empty() || reason.len() > MAX_REASON_BYTES {
            return Ok(Err(HostError::InvalidArgument(format!(
                "an unlock needs a reason of 1 to {MAX_REASON_BYTES} bytes (the help-desk ticket, or the policy that decided it)"
            ))));
        }
        let device = self.run_device(Capability::Accounts)?;
        // The host's own rule, whatever the plugin's policy says: a member
        // of a privileged group is never unlocked unless the grant names
        // it as `privileged:<account>` (audited as denied otherwise).
        if let Ok(account) = device.accounts.lookup_in(&name, source).await
            && let Some(group) = privileged_group(&account.groups)
            && !self.grant_names(
                Capability::Accounts,
                PRIVILEGED_PREFIX,
                &format!("{PRIVILEGED_PREFIX}{name}"),
            )?
        {
            let reason = format!(
                "`{name}` is a member of the privileged group `{group}`; the host unlocks privileged \
                 accounts only when the grant names them (`accounts={PRIVILEGED_PREFIX}{name}`)"
            );
            self.record(&call, crate::audit::AuditOutcome::Denied(reason.clone()))?;
            return Ok(Err(HostError::Denied(reason)));
        }
        let mode = self.run_mode(Capability::Accounts)?;
        // In place when the account is not locked.
        let reconcile = async {
            let account = device.accounts.lookup_in(&name, source).await?;
            Ok((!account.locked).then_some(Outcome::Applied))
        };
        self.mutate(
            &call,
            device.accounts.unlock_in(&name, source, mode),
            reconcile,
        )
        .await
    }
}

/// The prefix of a grant pattern that allows unlocking a privileged
/// account: `accounts=privileged:jadmin` (or `privileged:*`).
pub const PRIVILEGED_PREFIX: &str = "privileged:";

/// Groups that make an account privileged: Active Directory's built-in
/// admin groups and the usual Unix ones. Matched case-insensitively on the
/// group's short name (the first RDN's value of a DN).
pub const PRIVILEGED_GROUPS: &[&str] = &[
    "Domain Admins",
    "Enterprise Admins",
    "Schema Admins",
    "Administrators",
    "Account Operators",
    "Backup Operators",
    "wheel",
    "sudo",
    "admin",
    "root",
];

/// The first privileged group among `groups`, if any.
pub fn privileged_group(groups: &[String]) -> Option<&str> {
    groups.iter().map(String::as_str).find(|g| {
        let short = g
            .split(',')
            .next()
            .map(|rdn| rdn.split_once('=').map_or(rdn, |(_, v)| v))
            .unwrap_or(g)
            .trim();
        PRIVILEGED_GROUPS
            .iter()
            .any(|p| p.eq_ignore_ascii_case(short))
    })
}
