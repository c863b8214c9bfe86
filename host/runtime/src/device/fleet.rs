//! A generated fleet of simulated devices for one tenant: deterministic for
//! a seed, realistic in mix (about 60% laptops, 30% desktops, 10% servers,
//! bought over the last eight years, a few failing disks, operating
//! systems with real end-of-life dates). For tenant-scoped plugins, load
//! tests and demos; like every simulated device, never a stand-in for
//! testing a real provider.

use crate::bindings::inventory::{
    AdminFields, Battery, DeviceClass, DeviceFacts, Disk, Hardware, Health, OsInfo,
};
use crate::bindings::packages::RebootStatus;
use chrono::{Datelike as _, NaiveDate};

use crate::bindings::types::{Date, Instant};
use crate::capability::inventory::eol;
use crate::device::simulated::Fixture;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSpec {
    /// Tenant every device belongs to.
    pub tenant_id: String,
    /// Number of devices.
    pub devices: usize,
    /// Seed; the same spec always gives the same fleet.
    pub seed: u64,
    /// The day the fleet is seen on: purchase dates lie before it, and a
    /// [`fixture`]'s clock is fixed at its midnight (UTC).
    pub today: Date,
    /// Chance in percent (0 to 100) that a device has a failing disk.
    pub failing_percent: u8,
}

/// SplitMix64: tiny, fast and good enough to spread test data; the fleet
/// is not a security boundary.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0); the modulo bias is irrelevant here.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// True with `percent` chance.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Operating systems the generator installs, with their end of vendor
/// support (enterprise editions; Debian's date is the end of its LTS).
const WINDOWS_10: (&str, &str, (u16, u8, u8)) = ("Windows 10 Enterprise", "22H2", (2025, 10, 14));
const WINDOWS_11_23H2: (&str, &str, (u16, u8, u8)) =
    ("Windows 11 Enterprise", "23H2", (2026, 11, 10));
const WINDOWS_11_24H2: (&str, &str, (u16, u8, u8)) =
    ("Windows 11 Enterprise", "24H2", (2027, 10, 12));
const WINDOWS_11_25H2: (&str, &str, (u16, u8, u8)) =
    ("Windows 11 Enterprise", "25H2", (2028, 10, 10));
const UBUNTU_20_04: (&str, &str, (u16, u8, u8)) = ("Ubuntu", "20.04", (2025, 5, 31));
const UBUNTU_22_04: (&str, &str, (u16, u8, u8)) = ("Ubuntu", "22.04", (2027, 6, 30));
const UBUNTU_24_04: (&str, &str, (u16, u8, u8)) = ("Ubuntu", "24.04", (2029, 6, 30));
const DEBIAN_12: (&str, &str, (u16, u8, u8)) = ("Debian", "12", (2028, 6, 30));
const SERVER_2019: (&str, &str, (u16, u8, u8)) = ("Windows Server 2019", "1809", (2029, 1, 9));
const SERVER_2022: (&str, &str, (u16, u8, u8)) = ("Windows Server 2022", "21H2", (2031, 10, 14));

/// Workstations bought before Windows 11 shipped mostly still run 10.
const OLD_CLIENT_OS: &[(&str, &str, (u16, u8, u8))] = &[
    WINDOWS_10,
    WINDOWS_10,
    WINDOWS_10,
    WINDOWS_11_23H2,
    UBUNTU_20_04,
    UBUNTU_22_04,
];
/// Newer ones mostly follow Windows 11 feature updates, with stragglers.
const NEW_CLIENT_OS: &[(&str, &str, (u16, u8, u8))] = &[
    WINDOWS_11_24H2,
    WINDOWS_11_24H2,
    WINDOWS_11_25H2,
    WINDOWS_11_25H2,
    WINDOWS_11_25H2,
    WINDOWS_11_23H2,
    WINDOWS_10,
    UBUNTU_22_04,
    UBUNTU_24_04,
];
const SERVER_OS: &[(&str, &str, (u16, u8, u8))] = &[
    SERVER_2019,
    SERVER_2022,
    UBUNTU_20_04,
    UBUNTU_22_04,
    UBUNTU_24_04,
    DEBIAN_12,
];

/// Disk sizes as drives report them, in bytes (128 GB to 2 TB).
const DISK_SIZES: &[u64] = &[
    128_035_676_160,
    256_060_514_304,
    512_110_190_592,
    1_000_204_886_016,
    2_000_398_934_016,
];

/// Generates the fleet: device `dev-0001` to `dev-NNNN`, named `lt-`,
/// `ws-` or `srv-` by class with the same number, users `user-001` and up
/// (one per laptop or desktop; servers are unassigned). About 6% of laptops
/// and desktops are workstations costing several times a standard machine;
/// about 2% of devices have no purchase date and 5% no cost on record, as
/// real inventories do.
///
/// # Example
///
/// ```
/// use steward_runtime::bindings::types::Date;
/// use steward_runtime::device::fleet::{FleetSpec, generate};
///
/// let spec = FleetSpec {
///     tenant_id: "acme".into(),
///     devices: 100,
///     seed: 7,
///     today: Date { year: 2026, month: 11, day: 23 },
///     failing_percent: 3,
/// };
/// let fleet = generate(&spec);
/// assert_eq!(fleet.len(), 100);
/// assert_eq!(fleet, generate(&spec));
/// ```
pub fn generate(spec: &FleetSpec) -> Vec<DeviceFacts> {
    let mut rng = Rng(spec.seed);
    let today = days_from_civil(spec.today);
    let width = spec.devices.to_string().len().max(4);
    let failing = u64::from(spec.failing_percent.min(100));
    let mut users = 0;
    (1..=spec.devices)
        .map(|n| {
            let roll = rng.below(100);
            let class = match roll {
                0..60 => DeviceClass::Laptop,
                60..90 => DeviceClass::Desktop,
                _ => DeviceClass::Server,
            };
            let bought = today - rng.range(0, 8 * 365);
            let age_years = (today - bought) / 365;
            let known_purchase = !rng.chance(2);
            let known_cost = !rng.chance(5);
            // A few users (engineering, design) have workstations that cost
            // several times a standard machine.
            let workstation = class != DeviceClass::Server && rng.chance(6);
            let (prefix, makes, dollars, cpus, site) = match (class, workstation) {
                (DeviceClass::Laptop, false) => (
                    "lt",
                    &LAPTOPS[..],
                    rng.range(900, 2_200),
                    &LAPTOP_CPUS[..],
                    *rng.pick(&SITES),
                ),
                (DeviceClass::Laptop, true) => (
                    "lt",
                    &MOBILE_WORKSTATIONS[..],
                    rng.range(3_500, 6_000),
                    &LAPTOP_CPUS[..],
                    *rng.pick(&SITES),
                ),
                (DeviceClass::Desktop, false) => (
                    "ws",
                    &DESKTOPS[..],
                    rng.range(700, 1_600),
                    &DESKTOP_CPUS[..],
                    *rng.pick(&SITES),
                ),
                (DeviceClass::Desktop, true) => (
                    "ws",
                    &DESKTOP_WORKSTATIONS[..],
                    rng.range(3_000, 7_000),
                    &DESKTOP_CPUS[..],
                    *rng.pick(&SITES),
                ),
                _ => (
                    "srv",
                    &SERVERS[..],
                    rng.range(4_000, 12_000),
                    &SERVER_CPUS[..],
                    SITES[0],
                ),
            };
            let (vendor, model) = *rng.pick(makes);
            let (cpu, cores) = *rng.pick(cpus);
            let memory_gib: u64 = match (class, age_years) {
                (DeviceClass::Server, _) => *rng.pick(&[16, 32, 32, 64, 64]),
                _ if workstation => *rng.pick(&[32, 64]),
                (_, 5..) => *rng.pick(&[4, 4, 8, 8, 16]),
                _ => *rng.pick(&[8, 8, 16, 16, 16, 32, 64]),
            };
            let disk_count = if class == DeviceClass::Server { 2 } else { 1 };
            // Older machines came with smaller disks.
            let smallest = if age_years >= 5 { 0 } else { 1 };
            let failing_disk = rng.chance(failing);
            let disks = (0..disk_count)
                .map(|d| Disk {
                    name: match class {
                        DeviceClass::Laptop => "nvme0n1".to_string(),
                        _ => format!("sd{}", (b'a' + d as u8) as char),
                    },
                    model: Some(rng.pick(&DISK_MODELS).to_string()),
                    size_bytes: DISK_SIZES
                        [rng.range(smallest, DISK_SIZES.len() as i64 - 1) as usize],
                    health: if failing_disk && d == 0 {
                        Health::Failing
                    } else {
                        Health::Ok
                    },
                })
                .collect();
            let os_table = match (class, civil_from_days(bought).year) {
                (DeviceClass::Server, _) => SERVER_OS,
                (_, ..2022) => OLD_CLIENT_OS,
                _ => NEW_CLIENT_OS,
            };
            let (os_name, os_version, eol) = *rng.pick(os_table);
            let batteries = if class == DeviceClass::Laptop {
                let wear = (age_years * 7 + rng.range(-5, 15)).clamp(0, 95);
                vec![Battery {
                    name: "BAT0".into(),
                    wear_percent: (!rng.chance(5)).then_some(wear as f32),
                }]
            } else {
                Vec::new()
            };
            let assigned_user = (class != DeviceClass::Server).then(|| {
                users += 1;
                format!("user-{users:03}")
            });
            let serial: String = (0..10)
                .map(|_| *rng.pick(b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") as char)
                .collect();
            DeviceFacts {
                id: format!("dev-{n:0width$}"),
                name: format!("{prefix}-{n:0width$}"),
                tenant_id: spec.tenant_id.clone(),
                site_id: Some(site.to_string()),
                tags: Vec::new(),
                hardware: Hardware {
                    vendor: Some(vendor.to_string()),
                    model: Some(model.to_string()),
                    serial: Some(serial),
                    bios_date: Some(civil_from_days(bought - rng.range(30, 240))),
                    cpu_model: Some(cpu.to_string()),
                    cpu_cores: Some(cores),
                    memory_bytes: Some(memory_gib << 30),
                },
                disks,
                os: Some(OsInfo {
                    name: os_name.to_string(),
                    version: os_version.to_string(),
                    end_of_life: Some(Date {
                        year: eol.0,
                        month: eol.1,
                        day: eol.2,
                    }),
                }),
                batteries,
                admin: AdminFields {
                    purchase_date: known_purchase.then(|| civil_from_days(bought)),
                    warranty_end: known_purchase.then(|| add_years(bought, 3)),
                    cost_cents: known_cost.then_some(dollars as u64 * 100),
                    class: Some(class),
                    assigned_user,
                },
            }
        })
        .collect()
}

/// A simulated device fixture over a generated fleet: the first device is
/// the one the run is for, the rest are the tenant's other devices, and the
/// clock is fixed at midnight (UTC) of `spec.today`. A spec of zero devices
/// still gives the one device a fixture needs.
///
/// # Example
///
/// ```
/// use steward_runtime::bindings::types::Date;
/// use steward_runtime::device::fleet::{FleetSpec, fixture};
///
/// let f = fixture(&FleetSpec {
///     tenant_id: "acme".into(),
///     devices: 200,
///     seed: 1,
///     today: Date { year: 2026, month: 11, day: 23 },
///     failing_percent: 3,
/// });
/// assert_eq!(f.fleet.len(), 199);
/// assert_eq!(f.now.unwrap().seconds, 1_795_392_000);
/// ```
pub fn fixture(spec: &FleetSpec) -> Fixture {
    let mut devices = generate(&FleetSpec {
        devices: spec.devices.max(1),
        ..spec.clone()
    });
    let facts = devices.remove(0);
    Fixture {
        facts,
        fleet: devices,
        now: Some(Instant {
            seconds: days_from_civil(spec.today) * 86_400,
            nanoseconds: 0,
        }),
        installed: Vec::new(),
        updates: Vec::new(),
        reboot: RebootStatus {
            required: false,
            packages: Vec::new(),
        },
        reboots_scheduled: Vec::new(),
        antivirus: None,
        files: Vec::new(),
        quarantine: Vec::new(),
        accounts: Vec::new(),
        backups: Vec::new(),
        delays: Default::default(),
    }
}

const SITES: [&str; 3] = ["hq", "branch-north", "branch-south"];
const LAPTOPS: [(&str, &str); 3] = [
    ("Dell Inc.", "Latitude 5440"),
    ("LENOVO", "ThinkPad T14 Gen 4"),
    ("HP", "EliteBook 840 G10"),
];
const DESKTOPS: [(&str, &str); 3] = [
    ("Dell Inc.", "OptiPlex 7010"),
    ("LENOVO", "ThinkCentre M70q"),
    ("HP", "EliteDesk 800 G6"),
];
const MOBILE_WORKSTATIONS: [(&str, &str); 2] = [
    ("Dell Inc.", "Precision 7680"),
    ("LENOVO", "ThinkPad P16 Gen 2"),
];
const DESKTOP_WORKSTATIONS: [(&str, &str); 2] = [("HP", "Z4 G5"), ("Dell Inc.", "Precision 3660")];
const SERVERS: [(&str, &str); 3] = [
    ("Dell Inc.", "PowerEdge R650"),
    ("HPE", "ProLiant DL380 Gen10"),
    ("LENOVO", "ThinkSystem SR650"),
];
const LAPTOP_CPUS: [(&str, u32); 3] = [
    ("Intel(R) Core(TM) i5-1345U", 10),
    ("Intel(R) Core(TM) i7-1165G7", 4),
    ("AMD Ryzen 7 PRO 7840U", 8),
];
const DESKTOP_CPUS: [(&str, u32); 3] = [
    ("Intel(R) Core(TM) i5-13500", 14),
    ("Intel(R) Core(TM) i5-9500", 6),
    ("AMD Ryzen 5 PRO 5650G", 6),
];
const SERVER_CPUS: [(&str, u32); 2] = [("Intel(R) Xeon(R) Silver 4314", 16), ("AMD EPYC 7313", 16)];
const DISK_MODELS: [&str; 4] = [
    "Samsung PM9A1",
    "SK hynix PC801",
    "WDC WD10EZEX",
    "Micron 5400 PRO",
];

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("1970-01-01 is a date");

/// Days since 1970-01-01 of a calendar date (1970-01-01 if it is not one).
fn days_from_civil(date: Date) -> i64 {
    NaiveDate::from_ymd_opt(
        i32::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    )
    .map_or(0, |d| (d - EPOCH).num_days())
}

fn naive(day: i64) -> NaiveDate {
    EPOCH + chrono::Days::new(day.max(0) as u64)
}

/// The calendar date of a day count since 1970-01-01.
fn civil_from_days(day: i64) -> Date {
    eol::date(naive(day))
}

/// The same day `years` later; 29 February becomes 28 February.
fn add_years(day: i64, years: u16) -> Date {
    let d = naive(day);
    let year = d.year() + i32::from(years);
    let later = d
        .with_year(year)
        .or_else(|| d.with_day(28).and_then(|d| d.with_year(year)));
    eol::date(later.unwrap_or(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(devices: usize, seed: u64) -> FleetSpec {
        FleetSpec {
            tenant_id: "acme".into(),
            devices,
            seed,
            today: Date {
                year: 2026,
                month: 11,
                day: 23,
            },
            failing_percent: 3,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_fleet() {
        assert_eq!(generate(&spec(300, 42)), generate(&spec(300, 42)));
        assert_ne!(generate(&spec(300, 42)), generate(&spec(300, 43)));
    }

    #[test]
    fn the_mix_looks_like_a_real_tenant() {
        let fleet = generate(&spec(2_000, 9));
        let share = |class| {
            fleet
                .iter()
                .filter(|d| d.admin.class == Some(class))
                .count()
                * 100
                / fleet.len()
        };
        assert!((55..=65).contains(&share(DeviceClass::Laptop)));
        assert!((25..=35).contains(&share(DeviceClass::Desktop)));
        assert!((7..=13).contains(&share(DeviceClass::Server)));

        let today = days_from_civil(spec(0, 0).today);
        let mut users = std::collections::BTreeSet::new();
        for d in &fleet {
            let server = d.admin.class == Some(DeviceClass::Server);
            assert_eq!(d.admin.assigned_user.is_none(), server, "{}", d.id);
            if let Some(u) = &d.admin.assigned_user {
                assert!(users.insert(u.clone()), "{u} assigned twice");
            }
            assert_eq!(
                d.batteries.is_empty(),
                d.admin.class != Some(DeviceClass::Laptop)
            );
            if let Some(bought) = d.admin.purchase_date {
                let age = today - days_from_civil(bought);
                assert!((0..=8 * 365).contains(&age), "{}", d.id);
                let warranty = d.admin.warranty_end.unwrap();
                assert_eq!(warranty.year, bought.year + 3);
            }
            let memory = d.hardware.memory_bytes.unwrap() >> 30;
            assert!((4..=64).contains(&memory));
            for disk in &d.disks {
                assert!((128e9 as u64..=2_001e9 as u64).contains(&disk.size_bytes));
            }
            assert!(d.os.as_ref().unwrap().end_of_life.is_some());
        }
        let failing = fleet
            .iter()
            .filter(|d| d.disks.iter().any(|k| k.health == Health::Failing))
            .count();
        assert!((20..=100).contains(&failing), "{failing} failing");
        assert!(fleet.iter().any(|d| d.admin.purchase_date.is_none()));
        assert!(fleet.iter().any(|d| d.admin.cost_cents.is_none()));
    }

    #[test]
    fn dates_round_trip() {
        for day in [0, 11_016, 20_780] {
            assert_eq!(days_from_civil(civil_from_days(day)), day);
        }
        let leap = days_from_civil(Date {
            year: 2024,
            month: 2,
            day: 29,
        });
        assert_eq!(
            add_years(leap, 3),
            Date {
                year: 2027,
                month: 2,
                day: 28
            }
        );
    }
}
