//! `log`: guest log lines into the run log and the run's tracing span.

use crate::bindings::log::{Host, Level};
use crate::bindings::types::Field;
use crate::{HostState, LogLine, LogSource};

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

impl Host for HostState {
    async fn emit(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<Field>,
    ) -> wasmtime::Result<()> {
        let fields: Vec<(String, String)> = fields.into_iter().map(|f| (f.key, f.value)).collect();
        match level {
            Level::Error => tracing::error!(target: "steward::plugin", ?fields, "{message}"),
            Level::Warn => tracing::warn!(target: "steward::plugin", ?fields, "{message}"),
            Level::Info => tracing::info!(target: "steward::plugin", ?fields, "{message}"),
            Level::Debug => tracing::debug!(target: "steward::plugin", ?fields, "{message}"),
            Level::Trace => tracing::trace!(target: "steward::plugin", ?fields, "{message}"),
        }
        let limits = self.limits;
        self.log.push(
            &limits,
            LogLine {
                level: level_name(level),
                message,
                fields,
                source: LogSource::Plugin,
            },
        );
        Ok(())
    }
}

impl crate::bindings::types::Host for HostState {}
