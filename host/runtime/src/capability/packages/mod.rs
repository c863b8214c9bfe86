//! `packages`: the device's package manager.
//!
//! Providers implement [`PackagesProvider`]; the simulated device has one
//! here, and the dpkg/apt provider (and later Windows Update) plug in the
//! same way without touching plugins.

mod apt;

use async_trait::async_trait;

pub use apt::Apt;

use crate::HostState;
use crate::bindings::packages::{
    AvailableUpdate, Host, InstalledPackage, PackageChange, RebootStatus,
};
use crate::bindings::types::{HostError, Outcome, RunMode};
use crate::capability::{CallSummary, Capability};

/// A package manager.
#[async_trait]
pub trait PackagesProvider: Send + Sync {
    /// Installed packages.
    async fn installed(&self) -> Result<Vec<InstalledPackage>, HostError>;
    /// Upgradable packages with their candidates.
    async fn updates(&self) -> Result<Vec<AvailableUpdate>, HostError>;
    /// Whether the OS wants a reboot.
    async fn reboot_required(&self) -> Result<RebootStatus, HostError>;
    /// Upgrades `names`; in plan mode reports what would change and changes
    /// nothing.
    async fn install_updates(
        &self,
        names: &[String],
        mode: RunMode,
    ) -> Result<Vec<PackageChange>, HostError>;
    /// Requests a reboot in the next maintenance window.
    async fn schedule_reboot(&self, reason: &str, mode: RunMode) -> Result<Outcome, HostError>;
}

impl Host for HostState {
    async fn installed(&mut self) -> wasmtime::Result<Result<Vec<InstalledPackage>, HostError>> {
        Ok(self
            .run_device(Capability::Packages)?
            .packages
            .installed()
            .await)
    }

    async fn updates(&mut self) -> wasmtime::Result<Result<Vec<AvailableUpdate>, HostError>> {
        Ok(self
            .run_device(Capability::Packages)?
            .packages
            .updates()
            .await)
    }

    async fn reboot_required(&mut self) -> wasmtime::Result<Result<RebootStatus, HostError>> {
        Ok(self
            .run_device(Capability::Packages)?
            .packages
            .reboot_required()
            .await)
    }

    async fn install_updates(
        &mut self,
        names: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<PackageChange>, HostError>> {
        let call = CallSummary {
            capability: Capability::Packages,
            function: "install-updates",
            arguments: names.join(" "),
        };
        if let Err(e) = self.authorize(&call, names.iter().map(String::as_str))? {
            return Ok(Err(e));
        }
        let mode = self.run_mode(Capability::Packages)?;
        let device = self.run_device(Capability::Packages)?;
        // In place when none of the packages has an update pending.
        let reconcile = async {
            let pending = device.packages.updates().await?;
            if names.iter().any(|n| pending.iter().any(|u| &u.name == n)) {
                return Ok(None);
            }
            let installed = device.packages.installed().await?;
            Ok(Some(
                names
                    .iter()
                    .map(|n| PackageChange {
                        name: n.clone(),
                        from_version: None,
                        to_version: installed
                            .iter()
                            .find(|p| &p.name == n)
                            .map(|p| p.version.clone())
                            .unwrap_or_default(),
                        outcome: Outcome::Applied,
                    })
                    .collect(),
            ))
        };
        self.mutate(
            &call,
            device.packages.install_updates(&names, mode),
            reconcile,
        )
        .await
    }

    async fn schedule_reboot(
        &mut self,
        reason: String,
    ) -> wasmtime::Result<Result<Outcome, HostError>> {
        let call = CallSummary {
            capability: Capability::Packages,
            function: "schedule-reboot",
            arguments: reason.clone(),
        };
        let mode = self.run_mode(Capability::Packages)?;
        let device = self.run_device(Capability::Packages)?;
        self.mutate(
            &call,
            device.packages.schedule_reboot(&reason, mode),
            crate::store::make_again(),
        )
        .await
    }
}
