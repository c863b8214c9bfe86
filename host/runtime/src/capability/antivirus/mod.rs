//! `antivirus`: the device's antivirus engine.

mod clamav;

use async_trait::async_trait;

pub use clamav::ClamAv;

use crate::HostState;
use crate::bindings::antivirus::{EngineStatus, Host, QuarantineRecord, ScanReport};
use crate::bindings::types::{HostError, Outcome, RunMode};
use crate::capability::{CallSummary, Capability};

/// An antivirus engine.
#[async_trait]
pub trait AntivirusProvider: Send + Sync {
    /// Engine presence, version, service and signature databases.
    async fn status(&self) -> Result<EngineStatus, HostError>;
    /// Scans `paths` (already checked against the grant).
    async fn scan(&self, paths: &[String]) -> Result<ScanReport, HostError>;
    /// Fetches new signatures.
    async fn update_signatures(&self, mode: RunMode) -> Result<Outcome, HostError>;
    /// Moves a detected file into quarantine.
    async fn quarantine(
        &self,
        path: &str,
        signature: &str,
        mode: RunMode,
    ) -> Result<QuarantineRecord, HostError>;
}

impl Host for HostState {
    async fn status(&mut self) -> wasmtime::Result<Result<EngineStatus, HostError>> {
        Ok(self
            .run_device(Capability::Antivirus)?
            .antivirus
            .status()
            .await)
    }

    async fn scan(
        &mut self,
        paths: Vec<String>,
    ) -> wasmtime::Result<Result<ScanReport, HostError>> {
        let call = CallSummary {
            capability: Capability::Antivirus,
            function: "scan",
            arguments: paths.join(" "),
        };
        if let Err(e) = self.authorize(&call, paths.iter().map(String::as_str))? {
            return Ok(Err(e));
        }
        Ok(self
            .run_device(Capability::Antivirus)?
            .antivirus
            .scan(&paths)
            .await)
    }

    async fn update_signatures(&mut self) -> wasmtime::Result<Result<Outcome, HostError>> {
        let call = CallSummary {
            capability: Capability::Antivirus,
            function: "update-signatures",
            arguments: String::new(),
        };
        let mode = self.run_mode(Capability::Antivirus)?;
        let device = self.run_device(Capability::Antivirus)?;
        self.mutate(
            &call,
            device.antivirus.update_signatures(mode),
            crate::store::make_again(),
        )
        .await
    }

    async fn quarantine(
        &mut self,
        path: String,
        signature: String,
    ) -> wasmtime::Result<Result<QuarantineRecord, HostError>> {
        let call = CallSummary {
            capability: Capability::Antivirus,
            function: "quarantine",
            arguments: format!("{path} ({signature})"),
        };
        if let Err(e) = self.authorize(&call, [path.as_str()])? {
            return Ok(Err(e));
        }
        let mode = self.run_mode(Capability::Antivirus)?;
        let device = self.run_device(Capability::Antivirus)?;
        // In place when the file is no longer there to detect.
        let reconcile = async {
            let gone = match device.antivirus.scan(std::slice::from_ref(&path)).await {
                Ok(report) => !report.detections.iter().any(|d| d.path == path),
                Err(HostError::NotFound(_)) => true,
                Err(e) => return Err(e),
            };
            Ok(gone.then(|| QuarantineRecord {
                id: "reconciled".into(),
                original_path: path.clone(),
                signature: signature.clone(),
                outcome: Outcome::Applied,
            }))
        };
        self.mutate(
            &call,
            device.antivirus.quarantine(&path, &signature, mode),
            reconcile,
        )
        .await
    }
}
