//! `config`: the run's parameters, mode and context.

use crate::HostState;
use crate::bindings::config::{Host, RunContext};
use crate::bindings::types::{ParamValue, RunMode};
use crate::capability::Capability;

impl Host for HostState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Option<ParamValue>> {
        Ok(self.scope(Capability::Config)?.params.get(&name).cloned())
    }

    async fn mode(&mut self) -> wasmtime::Result<RunMode> {
        Ok(self.scope(Capability::Config)?.mode)
    }

    async fn context(&mut self) -> wasmtime::Result<RunContext> {
        let scope = self.scope(Capability::Config)?;
        Ok(RunContext {
            run_id: scope.run_id.clone(),
            device_id: scope.device.id.clone(),
            device_name: scope.device.name.clone(),
            tenant_id: scope.device.tenant_id.clone(),
        })
    }
}
