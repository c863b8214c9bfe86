//! `inventory`: device facts, this device or the whole tenant.

pub mod eol;
mod local;

pub use local::{AdminRecord, ClassName, DeviceRecord, LocalInventory};

use async_trait::async_trait;

use crate::HostState;
use crate::bindings::inventory::{DeviceFacts, Host};
use crate::bindings::types::HostError;
use crate::capability::{CallSummary, Capability};

/// Reads device facts.
#[async_trait]
pub trait InventoryProvider: Send + Sync {
    /// Facts of the device the provider serves.
    async fn device(&self) -> Result<DeviceFacts, HostError>;
    /// Facts of every device of that device's tenant.
    async fn tenant_devices(&self) -> Result<Vec<DeviceFacts>, HostError>;
}

impl Host for HostState {
    async fn device(&mut self) -> wasmtime::Result<Result<DeviceFacts, HostError>> {
        let device = self.run_device(Capability::Inventory)?;
        Ok(device.inventory.device().await)
    }

    async fn tenant_devices(&mut self) -> wasmtime::Result<Result<Vec<DeviceFacts>, HostError>> {
        let call = CallSummary {
            capability: Capability::Inventory,
            function: "tenant-devices",
            arguments: String::new(),
        };
        if let Err(e) = self.authorize(&call, ["tenant"])? {
            return Ok(Err(e));
        }
        let device = self.run_device(Capability::Inventory)?;
        Ok(device.inventory.tenant_devices().await)
    }
}
