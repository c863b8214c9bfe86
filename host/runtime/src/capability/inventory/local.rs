//! This machine's facts from `/sys`, `/proc`, `/etc/os-release` and
//! `smartctl`, plus the admin-kept fields of its device record.
//!
//! Every source is optional: a machine without DMI (most VMs), without
//! smartctl or without a battery reports those facts as unknown (`none`,
//! `health::unknown`, no battery), never as an error.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::Deserialize;

use super::InventoryProvider;
use super::eol;
use crate::bindings::inventory::{
    AdminFields, Battery, DeviceClass, DeviceFacts, Disk, Hardware, Health, OsInfo,
};
use crate::bindings::types::HostError;

/// Who this machine is, as an admin records it (a TOML file for the local
/// runner; the device record in the store once a control plane has one).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeviceRecord {
    /// Device id; `local:<hostname>` when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Tenant; `local` when absent.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Site.
    #[serde(default)]
    pub site_id: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Purchase date, warranty end, cost, class, assigned user.
    #[serde(default)]
    pub admin: AdminRecord,
}

/// The admin-kept fields, as written in a device record:
/// `purchase-date = "2021-03-01"`, `class = "laptop"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdminRecord {
    /// When it was bought.
    #[serde(default)]
    pub purchase_date: Option<NaiveDate>,
    /// When its warranty ends.
    #[serde(default)]
    pub warranty_end: Option<NaiveDate>,
    /// Replacement cost in cents.
    #[serde(default)]
    pub cost_cents: Option<u64>,
    /// `laptop`, `desktop`, `server` or `other`.
    #[serde(default)]
    pub class: Option<ClassName>,
    /// Who uses it.
    #[serde(default)]
    pub assigned_user: Option<String>,
}

/// A device class as written in records and CSV imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassName {
    /// Laptop.
    Laptop,
    /// Desktop.
    Desktop,
    /// Server.
    Server,
    /// Anything else.
    Other,
}

impl From<&AdminRecord> for AdminFields {
    fn from(r: &AdminRecord) -> Self {
        AdminFields {
            purchase_date: r.purchase_date.map(eol::date),
            warranty_end: r.warranty_end.map(eol::date),
            cost_cents: r.cost_cents,
            class: r.class.map(|c| match c {
                ClassName::Laptop => DeviceClass::Laptop,
                ClassName::Desktop => DeviceClass::Desktop,
                ClassName::Server => DeviceClass::Server,
                ClassName::Other => DeviceClass::Other,
            }),
            assigned_user: r.assigned_user.clone(),
        }
    }
}

/// Reads this machine's facts.
#[derive(Debug, Clone)]
pub struct LocalInventory {
    /// `/sys` (a copy of its layout in tests).
    pub sys: PathBuf,
    /// `/proc`.
    pub proc: PathBuf,
    /// Directory holding `os-release` (`/etc`).
    pub etc: PathBuf,
    /// `smartctl`, looked up on `PATH` when `None`; disks report unknown
    /// health when it cannot be run.
    pub smartctl: Option<PathBuf>,
    /// Device id.
    pub id: String,
    /// Host name.
    pub name: String,
    /// The admin's record of the device.
    pub record: DeviceRecord,
}

impl LocalInventory {
    /// This machine, with `record`.
    pub fn new(id: String, name: String, record: DeviceRecord) -> Self {
        Self {
            sys: "/sys".into(),
            proc: "/proc".into(),
            etc: "/etc".into(),
            smartctl: None,
            id,
            name,
            record,
        }
    }

    fn hardware(&self) -> Hardware {
        let dmi = self.sys.join("class/dmi/id");
        let cpuinfo = read(&self.proc.join("cpuinfo")).unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| field(l, "model name"))
            .map(str::to_string);
        let cpu_cores = cpuinfo
            .lines()
            .filter(|l| field(l, "processor").is_some())
            .count() as u32;
        let memory_bytes = read(&self.proc.join("meminfo")).and_then(|m| {
            m.lines()
                .find_map(|l| field(l, "MemTotal"))
                .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
        });
        Hardware {
            vendor: read(&dmi.join("sys_vendor")),
            model: read(&dmi.join("product_name")),
            serial: read(&dmi.join("product_serial")),
            bios_date: read(&dmi.join("bios_date"))
                .and_then(|d| NaiveDate::parse_from_str(&d, "%m/%d/%Y").ok())
                .map(eol::date),
            cpu_model,
            cpu_cores: (cpu_cores > 0).then_some(cpu_cores),
            memory_bytes,
        }
    }

    async fn disks(&self) -> Vec<Disk> {
        let Ok(entries) = std::fs::read_dir(self.sys.join("block")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                !["loop", "ram", "zram", "dm-", "sr", "md", "nbd"]
                    .iter()
                    .any(|p| n.starts_with(p))
            })
            .collect();
        names.sort();
        let mut disks = Vec::with_capacity(names.len());
        for name in names {
            let block = self.sys.join("block").join(&name);
            let sectors = read(&block.join("size"))
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            disks.push(Disk {
                model: read(&block.join("device/model")),
                size_bytes: sectors * 512,
                health: self.smart_health(&name).await,
                name,
            });
        }
        disks
    }

    /// `smartctl -H -j /dev/NAME`: ok when the SMART status passed,
    /// failing when it did not, unknown when smartctl is absent, cannot read
    /// the device (virtual disks) or takes too long.
    async fn smart_health(&self, name: &str) -> Health {
        let program = self.smartctl.clone().unwrap_or_else(|| "smartctl".into());
        let run = tokio::process::Command::new(program)
            .args(["-H", "-j"])
            .arg(format!("/dev/{name}"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output();
        let Ok(Ok(output)) = tokio::time::timeout(Duration::from_secs(10), run).await else {
            return Health::Unknown;
        };
        smart_status(&output.stdout)
    }

    fn os(&self) -> Option<OsInfo> {
        let text = read(&self.etc.join("os-release"))?;
        let value = |key: &str| {
            text.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|rest| rest.strip_prefix('='))
                    .map(|v| v.trim().trim_matches('"').to_string())
            })
        };
        let id = value("ID").unwrap_or_default();
        let version = value("VERSION_ID").unwrap_or_default();
        let name = value("NAME").unwrap_or_else(|| id.clone());
        Some(OsInfo {
            end_of_life: eol::end_of_life(&id, &version),
            name,
            version,
        })
    }

    fn batteries(&self) -> Vec<Battery> {
        let supplies = self.sys.join("class/power_supply");
        let Ok(entries) = std::fs::read_dir(&supplies) else {
            return Vec::new();
        };
        let mut batteries: Vec<Battery> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| read(&p.join("type")).as_deref() == Some("Battery"))
            .map(|p| {
                let number = |f: &str| read(&p.join(f)).and_then(|v| v.parse::<f64>().ok());
                let full = number("energy_full").or_else(|| number("charge_full"));
                let design = number("energy_full_design").or_else(|| number("charge_full_design"));
                let wear_percent = match (full, design) {
                    (Some(full), Some(design)) if design > 0.0 => {
                        Some(((1.0 - full / design) * 100.0).clamp(0.0, 100.0) as f32)
                    }
                    _ => None,
                };
                Battery {
                    name: p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    wear_percent,
                }
            })
            .collect();
        batteries.sort_by(|a, b| a.name.cmp(&b.name));
        batteries
    }

    /// Every fact, read now.
    pub async fn facts(&self) -> DeviceFacts {
        let this = self.clone();
        let (hardware, os, batteries) =
            tokio::task::spawn_blocking(move || (this.hardware(), this.os(), this.batteries()))
                .await
                .unwrap_or_else(|_| (Hardware::unknown(), None, Vec::new()));
        DeviceFacts {
            id: self.id.clone(),
            name: self.name.clone(),
            tenant_id: self
                .record
                .tenant_id
                .clone()
                .unwrap_or_else(|| "local".into()),
            site_id: self.record.site_id.clone(),
            tags: self.record.tags.clone(),
            hardware,
            disks: self.disks().await,
            os,
            batteries,
            admin: AdminFields::from(&self.record.admin),
        }
    }
}

impl Hardware {
    /// Nothing known.
    pub fn unknown() -> Self {
        Hardware {
            vendor: None,
            model: None,
            serial: None,
            bios_date: None,
            cpu_model: None,
            cpu_cores: None,
            memory_bytes: None,
        }
    }
}

#[async_trait]
impl InventoryProvider for LocalInventory {
    async fn device(&self) -> Result<DeviceFacts, HostError> {
        Ok(self.facts().await)
    }

    /// This machine is a tenant of one until a control plane registers it.
    async fn tenant_devices(&self) -> Result<Vec<DeviceFacts>, HostError> {
        Ok(vec![self.facts().await])
    }
}

/// A sysfs-style file's trimmed text; `None` when absent, unreadable, empty
/// or a placeholder a vendor left in (`To be filled by O.E.M.`).
fn read(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    let placeholder = [
        "",
        "To be filled by O.E.M.",
        "Default string",
        "System Product Name",
    ];
    (!placeholder.contains(&text)).then(|| text.to_string())
}

/// `key<tabs>: value` lines of `/proc/cpuinfo` and `/proc/meminfo`.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let (k, v) = line.split_once(':')?;
    (k.trim() == key).then(|| v.trim())
}

#[derive(Deserialize)]
struct SmartReport {
    smart_status: Option<SmartStatus>,
}

#[derive(Deserialize)]
struct SmartStatus {
    passed: bool,
}

fn smart_status(json: &[u8]) -> Health {
    match serde_json::from_slice::<SmartReport>(json) {
        Ok(SmartReport {
            smart_status: Some(SmartStatus { passed: true }),
        }) => Health::Ok,
        Ok(SmartReport {
            smart_status: Some(SmartStatus { passed: false }),
        }) => Health::Failing,
        _ => Health::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_status_maps_to_health() {
        assert_eq!(
            smart_status(br#"{"smart_status":{"passed":true}}"#),
            Health::Ok
        );
        assert_eq!(
            smart_status(br#"{"smart_status":{"passed":false}}"#),
            Health::Failing
        );
        assert_eq!(
            smart_status(br#"{"smartctl":{"exit_status":1}}"#),
            Health::Unknown
        );
        assert_eq!(smart_status(b"not json"), Health::Unknown);
    }
}
