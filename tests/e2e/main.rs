//! End-to-end tests of the plugin runtime with real components built from
//! the guests in `tests/guests` and the template plugin.

mod account_unlock;
mod apt;
mod backups;
mod clamav;
mod inventory;
mod ldap;
mod local_accounts;
mod python;
mod refresh;
mod runtime;
mod slapd;
mod support;
