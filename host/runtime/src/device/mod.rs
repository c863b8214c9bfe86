//! A device as the runtime sees it: who it is and the provider behind each
//! capability. Providers are chosen per device, so the same plugin runs
//! against this machine, a remote endpoint or a simulated device.

pub mod fleet;
pub mod local;
pub mod remote;
pub mod simulated;

use std::sync::Arc;

use crate::capability::{
    accounts::AccountsProvider, antivirus::AntivirusProvider, backups::BackupsProvider,
    clock::ClockProvider, inventory::InventoryProvider, packages::PackagesProvider,
    state::StateStore, tickets::TicketsProvider,
};

/// A managed device and its capability providers.
#[derive(Clone)]
pub struct Device {
    /// Stable device id.
    pub id: String,
    /// Human name (host name).
    pub name: String,
    /// The tenant (MSP client) the device belongs to.
    pub tenant_id: String,
    /// Device facts.
    pub inventory: Arc<dyn InventoryProvider>,
    /// Package manager.
    pub packages: Arc<dyn PackagesProvider>,
    /// Antivirus engine.
    pub antivirus: Arc<dyn AntivirusProvider>,
    /// Accounts (directory or local).
    pub accounts: Arc<dyn AccountsProvider>,
    /// Ticket queue.
    pub tickets: Arc<dyn TicketsProvider>,
    /// Backup sets.
    pub backups: Arc<dyn BackupsProvider>,
    /// Wall clock.
    pub clock: Arc<dyn ClockProvider>,
    /// Per-plugin state.
    pub state: Arc<dyn StateStore>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("tenant_id", &self.tenant_id)
            .finish_non_exhaustive()
    }
}
