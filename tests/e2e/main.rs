//! End-to-end tests of the plugin runtime with real components built from
//! the guests in `tests/guests` and the template plugin.

mod apt;
mod clamav;
mod runtime;
mod support;
