//! The data each plugin invocation's `Store` holds, and the helpers every
//! capability's host implementation shares: grant checks, plan mode and the
//! audit trail.

use std::sync::Arc;

use serde::Serialize;
use steward_contract::Digest;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::audit::{AuditEvent, AuditOutcome, AuditSink};
use crate::bindings::types::{HostError, Outcome, RunMode};
use crate::capability::{CallSummary, Capability, Grants};
use crate::device::Device;

use super::limits::Limits;

/// Where a run-log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogSource {
    /// The `log` capability.
    Plugin,
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr (panic messages land here).
    Stderr,
    /// The host, about the run (for example "log truncated").
    Host,
}

/// One line of a run's log.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// The text.
    pub message: String,
    /// Structured fields.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
    /// Who wrote it.
    pub source: LogSource,
}

/// A run's log with its caps.
#[derive(Debug, Default)]
pub(crate) struct RunLog {
    pub lines: Vec<LogLine>,
    pub bytes: usize,
    pub dropped: usize,
}

impl RunLog {
    /// Appends a line unless the run's caps are reached; counts it as
    /// dropped otherwise.
    /// Keeps `line` if the run's line and byte caps allow; returns whether
    /// it was kept.
    pub fn push(&mut self, limits: &Limits, line: LogLine) -> bool {
        let size = line.message.len()
            + line
                .fields
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if self.lines.len() >= limits.log_lines || self.bytes + size > limits.log_bytes {
            self.dropped += 1;
            return false;
        }
        self.bytes += size;
        self.lines.push(line);
        true
    }
}

/// Who is running and against what; absent while the host calls `describe`.
pub(crate) struct RunScope {
    pub run_id: String,
    /// Whether the call is `remediate`. A `check` (and `describe`, which
    /// has no scope at all) can never change the device.
    pub may_mutate: bool,
    pub mode: RunMode,
    pub params: super::Params,
    pub grants: Grants,
    pub device: Arc<Device>,
    pub audit: Arc<dyn AuditSink>,
    pub journal: Option<Arc<dyn super::Journal>>,
}

/// The `T` of every plugin `Store<T>`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) store_limits: PeakLimits,
    pub(crate) limits: Limits,
    pub(crate) plugin: String,
    pub(crate) digest: Digest,
    pub(crate) scope: Option<RunScope>,
    pub(crate) log: RunLog,
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
    /// Epoch ticks spent in guest code; compared with the CPU budget by the
    /// epoch callback.
    pub(crate) cpu_ticks: u64,
    /// Set when the epoch callback ended the run, so the resulting
    /// interrupt trap is reported as the CPU deadline.
    pub(crate) cpu_exhausted: bool,
    /// Mutating calls made so far in this run, by fingerprint, for the
    /// journal's occurrence numbers.
    occurrences: std::collections::HashMap<String, u32>,
    /// Why the journal failed in this attempt, if it did: an intent or a
    /// result it could not record. No further mutating call is made.
    journal_failed: Option<String>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The run's store limits, recording how large the instance's linear
/// memories grew (`RunReport::memory_bytes`).
pub(crate) struct PeakLimits {
    inner: StoreLimits,
    /// Each memory's size, in bytes, as its growths said.
    memories: Vec<usize>,
}

impl PeakLimits {
    /// The linear memory the instance holds, in bytes.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.memories.iter().sum()
    }
}

impl wasmtime::ResourceLimiter for PeakLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            // A memory's first growth is from 0 (its creation); later ones
            // from the size it had.
            match self
                .memories
                .iter_mut()
                .find(|m| current != 0 && **m == current)
            {
                Some(m) => *m = desired,
                None => self.memories.push(desired),
            }
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl HostState {
    pub(crate) fn new(
        limits: Limits,
        plugin: String,
        digest: Digest,
        scope: Option<RunScope>,
    ) -> Self {
        // Guest stdout and stderr are captured for the run log; the pipes'
        // capacity is the log byte cap, past which writes fail in the guest.
        let stdout = MemoryOutputPipe::new(limits.log_bytes);
        let stderr = MemoryOutputPipe::new(limits.log_bytes);
        // No preopened directories, no environment, no arguments, no
        // sockets: WASI is only there because the guests' standard
        // libraries link it. `wasi:sockets` is linked (componentize-py's
        // components import it) but TCP, UDP and name lookup are all off,
        // so every socket operation fails with access denied.
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let store_limits = PeakLimits {
            inner: wasmtime::StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(limits.instances)
                .trap_on_grow_failure(true)
                .build(),
            memories: Vec::new(),
        };
        Self {
            wasi,
            table: ResourceTable::new(),
            store_limits,
            limits,
            plugin,
            digest,
            scope,
            log: RunLog::default(),
            stdout,
            stderr,
            cpu_ticks: 0,
            cpu_exhausted: false,
            occurrences: Default::default(),
            journal_failed: None,
        }
    }

    /// The run's scope, or a trap: `describe` must not call capabilities.
    pub(crate) fn scope(&self, capability: Capability) -> wasmtime::Result<&RunScope> {
        self.scope.as_ref().ok_or_else(|| {
            wasmtime::format_err!(
                "plugin called the `{capability}` capability from `describe`, which must not call capabilities"
            )
        })
    }

    /// The device the run targets.
    pub(crate) fn run_device(&self, capability: Capability) -> wasmtime::Result<Arc<Device>> {
        Ok(self.scope(capability)?.device.clone())
    }

    /// Apply or plan.
    pub(crate) fn run_mode(&self, capability: Capability) -> wasmtime::Result<RunMode> {
        Ok(self.scope(capability)?.mode)
    }

    /// Checks every resource the call touches against the capability's
    /// scope. The first denial is audited here and returned for the guest.
    pub(crate) fn authorize<'a>(
        &self,
        call: &CallSummary,
        resources: impl IntoIterator<Item = &'a str>,
    ) -> wasmtime::Result<Result<(), HostError>> {
        let scope = self.scope(call.capability)?;
        let Some(resource) = resources
            .into_iter()
            .find(|r| !scope.grants.allows(call.capability, r))
        else {
            return Ok(Ok(()));
        };
        let reason = format!(
            "`{resource}` is outside the `{}` grant of plugin `{}`",
            call.capability, self.plugin
        );
        self.record(call, AuditOutcome::Denied(reason.clone()))?;
        Ok(Err(HostError::Denied(reason)))
    }

    /// Whether the run's grant of `capability` names `resource` with an
    /// explicit pattern starting `prefix` (an unrestricted grant does not
    /// count): the override for what the host refuses by default.
    pub(crate) fn grant_names(
        &self,
        capability: crate::capability::Capability,
        prefix: &str,
        resource: &str,
    ) -> wasmtime::Result<bool> {
        let grants = &self.scope(capability)?.grants;
        Ok(grants.iter().any(|g| {
            g.capability == capability
                && g.scope
                    .iter()
                    .flatten()
                    .any(|p| p.starts_with(prefix) && glob_match::glob_match(p, resource))
        }))
    }

    /// Writes one audit event for `call`.
    pub(crate) fn record(&self, call: &CallSummary, outcome: AuditOutcome) -> wasmtime::Result<()> {
        let scope = self.scope(call.capability)?;
        scope.audit.record(AuditEvent {
            run_id: scope.run_id.clone(),
            plugin: self.plugin.clone(),
            digest: self.digest,
            device_id: scope.device.id.clone(),
            capability: call.capability,
            function: call.function,
            arguments: call.arguments.clone(),
            outcome,
            at: std::time::SystemTime::now(),
        });
        Ok(())
    }

    /// Audits the result of a mutating call (applied or planned by the
    /// run's mode, failed with the provider's error) and hands it on to the
    /// guest.
    fn audited<T>(
        &self,
        call: &CallSummary,
        result: Result<T, HostError>,
    ) -> wasmtime::Result<Result<T, HostError>> {
        let outcome = match &result {
            Ok(_) => match self.run_mode(call.capability)? {
                RunMode::Apply => AuditOutcome::Applied,
                RunMode::Plan => AuditOutcome::Planned,
            },
            // A provider that refuses (an endpoint's ceiling) denied it.
            Err(HostError::Denied(reason)) => AuditOutcome::Denied(reason.clone()),
            Err(e) => AuditOutcome::Failed(format!("{e:?}")),
        };
        self.record(call, outcome)?;
        Ok(result)
    }

    /// Runs a mutating provider call (`op`, not started yet) and audits it.
    /// In apply mode with a journal, the call's intent is recorded first and
    /// its result after (see the `journal` module): a call this run already
    /// applied (same fingerprint and occurrence) is replayed from the
    /// journal instead; a journal that cannot be read, or cannot record the
    /// intent, fails the call rather than risk applying it twice. A call in
    /// doubt (intended by an earlier attempt, no result) is reconciled:
    /// `reconcile` (not started yet) looks for its effect on the device and
    /// answers the result it stands for when it is in place (the call is
    /// not made again), `None` when it is not (the call is made).
    pub(crate) async fn mutate<T, F, R>(
        &mut self,
        call: &CallSummary,
        op: F,
        reconcile: R,
    ) -> wasmtime::Result<Result<T, HostError>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: std::future::Future<Output = Result<T, HostError>>,
        R: std::future::Future<Output = Result<Option<T>, HostError>>,
    {
        let scope = self.scope(call.capability)?;
        if !scope.may_mutate {
            let reason = format!(
                "`{}.{}` changes the device, and a check may not; make changes from `remediate`",
                call.capability, call.function
            );
            self.record(call, AuditOutcome::Denied(reason.clone()))?;
            return Ok(Err(HostError::Denied(reason)));
        }
        let run_id = scope.run_id.clone();
        let journal = match (scope.mode, &scope.journal) {
            (RunMode::Apply, Some(journal)) => journal.clone(),
            _ => {
                let result = op.await;
                return self.audited(call, result);
            }
        };
        let fingerprint = format!("{}.{} {}", call.capability, call.function, call.arguments);
        let seen = self.occurrences.entry(fingerprint.clone()).or_insert(0);
        let key = super::JournalKey {
            run_id,
            call: fingerprint,
            occurrence: *seen,
        };
        *seen += 1;
        if let Some(why) = &self.journal_failed {
            let error = HostError::Unavailable(format!(
                "the mutation journal failed earlier in this attempt ({why}), \
                 so no further change is made; the job is retried"
            ));
            return self.audited(call, Err(error));
        }
        match journal.replay(&key).await {
            Ok(super::Prior::Done(json)) => {
                if let Ok(value) = serde_json::from_str::<T>(&json) {
                    self.record(call, AuditOutcome::Replayed)?;
                    return Ok(Ok(value));
                }
                tracing::warn!(%key, "journal entry does not parse; applying the call again");
            }
            Ok(super::Prior::InDoubt) => match reconcile.await {
                Ok(Some(value)) => {
                    tracing::warn!(%key, "an earlier attempt made this call without recording it; its effect is in place, so it is not made again");
                    self.record_result(journal.as_ref(), &key, &value).await;
                    self.record(call, AuditOutcome::Reconciled)?;
                    return Ok(Ok(value));
                }
                Ok(None) => {
                    tracing::warn!(%key, "an earlier attempt may have made this call; its effect is not in place, so it is made");
                }
                Err(e) => {
                    let error = HostError::Unavailable(format!(
                        "an earlier attempt may have made this call, and the device cannot tell now \
                         whether it did ({e:?}), so it was not made"
                    ));
                    return self.audited(call, Err(error));
                }
            },
            Ok(super::Prior::None) => {
                if let Err(e) = journal.intend(&key).await {
                    let why = format!("{e:#}");
                    self.journal_failed = Some(why.clone());
                    let error = HostError::Unavailable(format!(
                        "the mutation journal cannot record this call's intent, so it was not made: {why}"
                    ));
                    return self.audited(call, Err(error));
                }
            }
            Err(e) => {
                let error = HostError::Unavailable(format!(
                    "the mutation journal cannot be read, so the call was not made: {e:#}"
                ));
                return self.audited(call, Err(error));
            }
        }
        let result = op.await;
        if let Ok(value) = &result {
            self.record_result(journal.as_ref(), &key, value).await;
        }
        self.audited(call, result)
    }
}

impl HostState {
    /// Journals `value` as the result of `key`; when that fails the call
    /// stays in doubt and the attempt makes no further mutating call.
    async fn record_result<T: serde::Serialize>(
        &mut self,
        journal: &dyn super::Journal,
        key: &super::JournalKey,
        value: &T,
    ) {
        let recorded = match serde_json::to_string(value) {
            Ok(json) => journal.record(key, json).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = recorded {
            let why = format!("{e:#}");
            tracing::error!(%key, error = %why,
                "applied call not journaled; it stays in doubt and this attempt makes no further change");
            self.journal_failed = Some(why);
        }
    }
}

/// A reconciliation with nothing to look for: the call is made again, as
/// it is safe to repeat (an update of signatures, a reboot schedule, a
/// ticket keyed by the job).
pub(crate) fn make_again<T>() -> std::future::Ready<Result<Option<T>, HostError>> {
    std::future::ready(Ok(None))
}

/// The outcome a mutating call reports in `mode`.
pub(crate) fn outcome_for(mode: RunMode) -> Outcome {
    match mode {
        RunMode::Apply => Outcome::Applied,
        RunMode::Plan => Outcome::Planned,
    }
}
