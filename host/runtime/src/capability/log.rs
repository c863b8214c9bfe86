//! `log`: guest log lines into the run log and the run's tracing span.
//!
//! A line is capped where it enters the host ([`MAX_LOG_MESSAGE_BYTES`],
//! [`MAX_LOG_FIELDS`] fields of [`MAX_LOG_FIELD_BYTES`]); the host's own
//! log (tracing, stderr) gets only lines the run log kept (so its line and
//! byte caps bound it too), each cut further to [`TRACED_BYTES`].

/// The longest log message kept, in bytes; longer ones are cut and marked.
pub const MAX_LOG_MESSAGE_BYTES: usize = 8 * 1024;
/// The most fields one log line keeps.
pub const MAX_LOG_FIELDS: usize = 32;
/// The longest field key or value kept, in bytes.
pub const MAX_LOG_FIELD_BYTES: usize = 1024;
/// What the host's own log shows of a plugin's message or field, in bytes.
pub const TRACED_BYTES: usize = 1024;

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
        let mut message = message;
        crate::cap_text(&mut message, MAX_LOG_MESSAGE_BYTES);
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .take(MAX_LOG_FIELDS)
            .map(|f| {
                let (mut key, mut value) = (f.key, f.value);
                crate::cap_text(&mut key, MAX_LOG_FIELD_BYTES);
                crate::cap_text(&mut value, MAX_LOG_FIELD_BYTES);
                (key, value)
            })
            .collect();
        // What the host's own log shows: shorter still, and only of lines
        // the run log keeps.
        let shown = |text: &str| {
            let mut text = text.to_owned();
            crate::cap_text(&mut text, TRACED_BYTES);
            text
        };
        let traced_message = shown(&message);
        let traced_fields: Vec<(String, String)> =
            fields.iter().map(|(k, v)| (shown(k), shown(v))).collect();
        let limits = self.limits;
        let kept = self.log.push(
            &limits,
            LogLine {
                level: level_name(level),
                message,
                fields,
                source: LogSource::Plugin,
            },
        );
        if kept {
            let fields = traced_fields;
            let message = traced_message;
            match level {
                Level::Error => tracing::error!(target: "steward::plugin", ?fields, "{message:?}"),
                Level::Warn => tracing::warn!(target: "steward::plugin", ?fields, "{message:?}"),
                Level::Info => tracing::info!(target: "steward::plugin", ?fields, "{message:?}"),
                Level::Debug => tracing::debug!(target: "steward::plugin", ?fields, "{message:?}"),
                Level::Trace => tracing::trace!(target: "steward::plugin", ?fields, "{message:?}"),
            }
        }
        Ok(())
    }
}

impl crate::bindings::types::Host for HostState {}
