//! The planner's logic, free of host calls so it is deterministic and
//! testable natively: how each device stands (`Assessment`), which devices
//! are due, which quarter each one gets (`plan`), and which freed devices
//! cascade to whom.

use std::collections::BTreeMap;

use steward_sdk::host::inventory::{DeviceClass, DeviceFacts, Health};

use crate::dates::{Day, Quarter, add_years, day_of, fmt_day, quarter_last_day, quarter_of};

const GIB: f64 = (1u64 << 30) as f64;

/// A device class; `other` when the admin fields do not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Laptop,
    Desktop,
    Server,
    Other,
}

impl Class {
    pub const ALL: [Class; 4] = [Class::Laptop, Class::Desktop, Class::Server, Class::Other];

    fn of(class: Option<DeviceClass>) -> Self {
        match class {
            Some(DeviceClass::Laptop) => Class::Laptop,
            Some(DeviceClass::Desktop) => Class::Desktop,
            Some(DeviceClass::Server) => Class::Server,
            Some(DeviceClass::Other) | None => Class::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Laptop => "laptop",
            Class::Desktop => "desktop",
            Class::Server => "server",
            Class::Other => "other",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The planning parameters, already checked.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Quarters planned, the current one first.
    pub quarters: usize,
    /// Most spent per quarter, in cents, except on failing hardware.
    pub budget: u64,
    /// Lifecycle in years, by [`Class::index`].
    pub lifecycle_years: [i64; 4],
    pub min_memory_gib: u64,
    pub min_disk_gib: u64,
    pub battery_wear_percent: f64,
    /// Replacement cost in cents when a device has none, by [`Class::index`].
    pub default_cost: [u64; 4],
}

/// How one device stands today.
#[derive(Debug)]
pub struct Assessment<'a> {
    pub facts: &'a DeviceFacts,
    pub class: Class,
    pub purchase: Option<Day>,
    /// Purchase date plus the class's lifecycle.
    pub lifecycle_end: Option<Day>,
    pub past_lifecycle: bool,
    pub warranty_end: Option<Day>,
    pub warranty_expired: bool,
    /// Replacement cost in cents and whether it is the class default.
    pub cost: u64,
    pub cost_is_default: bool,
    pub failing_disks: Vec<String>,
    /// The OS's end of life, when known, and whether it has passed.
    pub os_eol: Option<Day>,
    pub os_eol_reached: bool,
    /// Batteries at or past the wear threshold, with their wear.
    pub worn_batteries: Vec<(String, f32)>,
    pub memory_gib: Option<f64>,
    pub memory_below: bool,
    /// Total disk capacity; `None` when the inventory lists no disks.
    pub disk_gib: Option<f64>,
    pub disk_below: bool,
}

impl<'a> Assessment<'a> {
    pub fn new(facts: &'a DeviceFacts, policy: &Policy, today: Day) -> Self {
        let class = Class::of(facts.admin.class);
        let purchase = facts.admin.purchase_date.as_ref().and_then(day_of);
        let lifecycle_end = purchase.map(|p| add_years(p, policy.lifecycle_years[class.index()]));
        let warranty_end = facts.admin.warranty_end.as_ref().and_then(day_of);
        let os_eol = facts
            .os
            .as_ref()
            .and_then(|os| os.end_of_life.as_ref())
            .and_then(day_of);
        let memory_gib = facts.hardware.memory_bytes.map(|b| b as f64 / GIB);
        let disk_gib = (!facts.disks.is_empty())
            .then(|| facts.disks.iter().map(|d| d.size_bytes as f64).sum::<f64>() / GIB);
        Assessment {
            facts,
            class,
            purchase,
            lifecycle_end,
            past_lifecycle: lifecycle_end.is_some_and(|end| end <= today),
            warranty_end,
            warranty_expired: warranty_end.is_some_and(|end| end < today),
            cost: facts
                .admin
                .cost_cents
                .unwrap_or(policy.default_cost[class.index()]),
            cost_is_default: facts.admin.cost_cents.is_none(),
            failing_disks: facts
                .disks
                .iter()
                .filter(|d| d.health == Health::Failing)
                .map(|d| d.name.clone())
                .collect(),
            os_eol,
            os_eol_reached: os_eol.is_some_and(|eol| eol <= today),
            worn_batteries: facts
                .batteries
                .iter()
                .filter_map(|b| b.wear_percent.map(|w| (b.name.clone(), w)))
                .filter(|(_, w)| f64::from(*w) >= policy.battery_wear_percent)
                .collect(),
            memory_gib,
            memory_below: memory_gib.is_some_and(|m| m < policy.min_memory_gib as f64),
            disk_gib,
            disk_below: disk_gib.is_some_and(|d| d < policy.min_disk_gib as f64),
        }
    }

    pub fn failing(&self) -> bool {
        !self.failing_disks.is_empty()
    }

    /// `Windows 10 Enterprise 22H2`, or `unknown OS`.
    pub fn os_name(&self) -> String {
        self.facts
            .os
            .as_ref()
            .map(|os| format!("{} {}", os.name, os.version))
            .unwrap_or_else(|| "unknown OS".into())
    }

    /// Fit to hand to another user when freed at the end of `quarter`:
    /// nothing check would flag today (failing disk, OS end of life, past
    /// lifecycle, below spec), an OS still supported after the handover,
    /// and known facts to compare with (purchase date, memory, disks).
    fn healthy_at(&self, quarter: Quarter) -> bool {
        !self.failing()
            && !self.past_lifecycle
            && self
                .os_eol
                .is_none_or(|eol| eol > quarter_last_day(quarter))
            && self.purchase.is_some()
            && self.memory_gib.is_some()
            && !self.memory_below
            && self.disk_gib.is_some()
            && !self.disk_below
    }

    /// Why the device needs a refresh (or what is wrong with it), most
    /// urgent first.
    pub fn reasons(&self, policy: &Policy) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.failing() {
            reasons.push(format!(
                "failing hardware (disk {})",
                self.failing_disks.join(", ")
            ));
        }
        if self.os_eol_reached
            && let Some(eol) = self.os_eol
        {
            reasons.push(format!("{} end of life {}", self.os_name(), fmt_day(eol)));
        }
        if let Some(end) = self.lifecycle_end {
            let years = policy.lifecycle_years[self.class.index()];
            reasons.push(if self.past_lifecycle {
                format!("{years}-year lifecycle ended {}", fmt_day(end))
            } else {
                format!("{years}-year lifecycle ends {}", fmt_day(end))
            });
        }
        if self.memory_below
            && let Some(m) = self.memory_gib
        {
            reasons.push(format!("{m:.0} GiB memory below spec"));
        }
        if self.disk_below
            && let Some(d) = self.disk_gib
        {
            reasons.push(format!("{d:.0} GiB disk below spec"));
        }
        for (name, wear) in &self.worn_batteries {
            reasons.push(format!("battery {name} worn {wear:.0}%"));
        }
        reasons
    }
}

/// Why a device is due, which also orders the queue for the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    FailingHardware,
    OsEndOfLife,
    Lifecycle,
}

/// A device the plan could not fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Deferred {
    pub device: usize,
    pub why: String,
}

/// A freed, healthy device handed to a user whose device is older.
#[derive(Debug, Clone, PartialEq)]
pub struct Cascade {
    /// The refreshed device that is handed on.
    pub freed: usize,
    /// Its new user.
    pub recipient: String,
    /// The recipient's newest device of that class, retired on handover.
    pub replaces: usize,
    /// Index into [`Plan::quarters`] of the handover.
    pub quarter: usize,
}

/// One quarter of the plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuarterPlan {
    pub quarter: Quarter,
    /// Devices refreshed, in the order they were placed (risk order).
    pub refreshes: Vec<usize>,
    pub cost: u64,
    /// Devices with failing hardware, placed here whatever the budget.
    pub failing: Vec<usize>,
}

impl QuarterPlan {
    pub fn overrun(&self, budget: u64) -> u64 {
        self.cost.saturating_sub(budget)
    }
}

/// The whole plan; device numbers index the assessments given to [`plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub quarters: Vec<QuarterPlan>,
    /// Due devices that did not fit, in risk order.
    pub deferred: Vec<Deferred>,
    /// In handover order.
    pub cascades: Vec<Cascade>,
}

/// Whether the device is due within the horizon, why, and the first
/// quarter (index) it may be refreshed in.
fn due(a: &Assessment<'_>, first: Quarter, quarters: usize) -> Option<(Tier, usize)> {
    if a.failing() {
        return Some((Tier::FailingHardware, 0));
    }
    if a.os_eol_reached {
        return Some((Tier::OsEndOfLife, 0));
    }
    let index = (quarter_of(a.lifecycle_end?) - first).max(0);
    (index < quarters as i64).then_some((Tier::Lifecycle, index as usize))
}

/// Plans refreshes: due devices in risk order (failing hardware, OS end of
/// life, then oldest purchase, unknown purchase dates counting as oldest,
/// ties by device id) each take the first quarter, from the one they fall
/// due in, that still has budget for them. Failing hardware always goes in
/// the first quarter. Assessments are expected sorted by device id.
pub fn plan(devices: &[Assessment<'_>], policy: &Policy, today: Day) -> Plan {
    let first = quarter_of(today);
    let mut quarters: Vec<QuarterPlan> = (0..policy.quarters)
        .map(|i| QuarterPlan {
            quarter: first + i as i64,
            ..QuarterPlan::default()
        })
        .collect();
    let mut queue: Vec<(Tier, usize, usize)> = devices
        .iter()
        .enumerate()
        .filter_map(|(i, a)| due(a, first, policy.quarters).map(|(tier, from)| (tier, from, i)))
        .collect();
    queue.sort_by_key(|&(tier, _, i)| (tier, devices[i].purchase, &devices[i].facts.id));

    let mut scheduled = vec![None; devices.len()];
    let mut deferred = Vec::new();
    for (tier, from, i) in queue {
        let cost = devices[i].cost;
        let slot = if tier == Tier::FailingHardware {
            Some(0)
        } else {
            (from..policy.quarters).find(|&q| quarters[q].cost + cost <= policy.budget)
        };
        match slot {
            Some(q) => {
                quarters[q].refreshes.push(i);
                quarters[q].cost += cost;
                if tier == Tier::FailingHardware {
                    quarters[q].failing.push(i);
                }
                scheduled[i] = Some(q);
            }
            None => deferred.push(Deferred {
                device: i,
                why: if cost > policy.budget {
                    format!(
                        "its cost {} is more than the quarterly budget {}",
                        money(cost),
                        money(policy.budget)
                    )
                } else {
                    format!(
                        "no quarter from {} to {} has {} of budget left",
                        crate::dates::quarter_label(quarters[from].quarter),
                        crate::dates::quarter_label(quarters[policy.quarters - 1].quarter),
                        money(cost)
                    )
                },
            }),
        }
    }
    let cascades = cascades(devices, &quarters, &scheduled);
    Plan {
        quarters,
        deferred,
        cascades,
    }
}

/// Hands each freed healthy device (in handover order) to the user with
/// the oldest device of the same class among users with nothing scheduled,
/// when that device is strictly older than the freed one. Servers are
/// never handed to users; a user receives at most one device; a user with
/// a device of unknown age in the class is skipped, since "newer than what
/// they have" cannot be shown.
fn cascades(
    devices: &[Assessment<'_>],
    quarters: &[QuarterPlan],
    scheduled: &[Option<usize>],
) -> Vec<Cascade> {
    #[derive(Default)]
    struct User {
        scheduled: bool,
        /// Newest device per class (purchase day, device), `None` inside
        /// when one of the user's devices of that class has no date.
        newest: [Option<Option<(Day, usize)>>; 4],
    }
    let mut users: BTreeMap<&str, User> = BTreeMap::new();
    for (i, a) in devices.iter().enumerate() {
        let Some(user) = a.facts.admin.assigned_user.as_deref() else {
            continue;
        };
        let u = users.entry(user).or_default();
        u.scheduled |= scheduled[i].is_some();
        let slot = &mut u.newest[a.class.index()];
        *slot = match (*slot, a.purchase) {
            (Some(None), _) | (_, None) => Some(None),
            (None, Some(p)) => Some(Some((p, i))),
            (Some(Some(best)), Some(p)) => Some(Some(best.max((p, i)))),
        };
    }
    // Candidate recipients per class, oldest device first.
    let mut waiting: [Vec<(Day, &str, usize)>; 4] = Default::default();
    for (name, u) in &users {
        if u.scheduled {
            continue;
        }
        for class in Class::ALL {
            if class == Class::Server {
                continue;
            }
            if let Some(Some((day, device))) = u.newest[class.index()] {
                waiting[class.index()].push((day, name, device));
            }
        }
    }
    for list in &mut waiting {
        list.sort();
    }
    let mut next = [0usize; 4];
    let mut served: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for (q, plan) in quarters.iter().enumerate() {
        for &freed in &plan.refreshes {
            let a = &devices[freed];
            if a.class == Class::Server || !a.healthy_at(plan.quarter) {
                continue;
            }
            let Some(freed_day) = a.purchase else {
                continue;
            };
            let c = a.class.index();
            while next[c] < waiting[c].len() && served.contains(&waiting[c][next[c]].1) {
                next[c] += 1;
            }
            if let Some(&(day, user, replaces)) = waiting[c].get(next[c])
                && day < freed_day
            {
                next[c] += 1;
                served.push(user);
                out.push(Cascade {
                    freed,
                    recipient: user.to_string(),
                    replaces,
                    quarter: q,
                });
            }
        }
    }
    out
}

/// Cents as `1234.56`.
pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dates::days_from_civil;
    use steward_sdk::Date;
    use steward_sdk::host::inventory::{AdminFields, Disk, Hardware, OsInfo};

    fn policy() -> Policy {
        Policy {
            quarters: 4,
            budget: 300_000,
            lifecycle_years: [3, 5, 6, 5],
            min_memory_gib: 8,
            min_disk_gib: 240,
            battery_wear_percent: 40.0,
            default_cost: [150_000, 100_000, 800_000, 50_000],
        }
    }

    fn laptop(id: &str, user: &str, bought: (u16, u8, u8), failing: bool) -> DeviceFacts {
        DeviceFacts {
            id: id.into(),
            name: id.into(),
            tenant_id: "t".into(),
            site_id: None,
            tags: vec![],
            hardware: Hardware {
                vendor: None,
                model: None,
                serial: None,
                bios_date: None,
                cpu_model: None,
                cpu_cores: None,
                memory_bytes: Some(16 << 30),
            },
            disks: vec![Disk {
                name: "nvme0n1".into(),
                model: None,
                size_bytes: 512_000_000_000,
                health: if failing { Health::Failing } else { Health::Ok },
            }],
            os: Some(OsInfo {
                name: "Ubuntu".into(),
                version: "24.04".into(),
                end_of_life: Some(Date {
                    year: 2029,
                    month: 5,
                    day: 31,
                }),
            }),
            batteries: vec![],
            admin: AdminFields {
                purchase_date: Some(Date {
                    year: bought.0,
                    month: bought.1,
                    day: bought.2,
                }),
                warranty_end: None,
                cost_cents: Some(100_000),
                class: Some(DeviceClass::Laptop),
                assigned_user: Some(user.into()),
            },
        }
    }

    #[test]
    fn failing_hardware_overruns_only_the_first_quarter_and_the_rest_waits_for_budget() {
        let today = days_from_civil(2026, 11, 23);
        let facts = vec![
            // Past lifecycle, oldest: first in line after failing hardware.
            laptop("a-old", "u1", (2019, 1, 1), false),
            laptop("b-old", "u2", (2019, 6, 1), false),
            laptop("c-old", "u3", (2020, 1, 1), false),
            laptop("d-failing", "u4", (2025, 1, 1), true),
            laptop("e-failing", "u5", (2025, 2, 1), true),
            laptop("f-failing", "u6", (2025, 3, 1), true),
            laptop("g-failing", "u7", (2025, 4, 1), true),
            // Lifecycle ends inside the horizon: healthy when freed.
            laptop("h-due", "u8", (2024, 8, 1), false),
            laptop("i-new", "u9", (2026, 1, 1), false),
        ];
        let mut policy = policy();
        policy.budget = 200_000;
        let devices: Vec<_> = facts
            .iter()
            .map(|f| Assessment::new(f, &policy, today))
            .collect();
        let p = plan(&devices, &policy, today);
        let ids = |v: &[usize]| v.iter().map(|&i| facts[i].id.as_str()).collect::<Vec<_>>();
        assert_eq!(
            ids(&p.quarters[0].refreshes),
            ["d-failing", "e-failing", "f-failing", "g-failing"]
        );
        assert_eq!(p.quarters[0].overrun(policy.budget), 200_000);
        assert_eq!(ids(&p.quarters[1].refreshes), ["a-old", "b-old"]);
        assert_eq!(ids(&p.quarters[2].refreshes), ["c-old"]);
        assert_eq!(ids(&p.quarters[3].refreshes), ["h-due"]);
        assert!(p.deferred.is_empty());
        // h-due (bought 2024) is freed in 2027-Q3; nobody unscheduled is older.
        assert!(p.cascades.is_empty());

        // With half the budget, c-old is deferred and receives h-due.
        policy.budget = 100_000;
        let p = plan(&devices, &policy, today);
        assert_eq!(ids(&p.quarters[1].refreshes), ["a-old"]);
        assert_eq!(ids(&p.quarters[2].refreshes), ["b-old"]);
        assert_eq!(ids(&p.quarters[3].refreshes), ["c-old"]);
        assert_eq!(
            ids(&p.deferred.iter().map(|d| d.device).collect::<Vec<_>>()),
            ["h-due"]
        );
        assert!(p.cascades.is_empty(), "a deferred device is not freed");
    }

    #[test]
    fn a_cheaper_newer_device_fills_slack_and_cascades_to_a_deferred_older_one() {
        let today = days_from_civil(2026, 11, 23);
        let mut old = laptop("a-old", "u1", (2019, 1, 1), false);
        old.admin.cost_cents = Some(250_000);
        let mut due = laptop("b-due", "u2", (2024, 2, 1), false);
        due.admin.cost_cents = Some(90_000);
        let mut older = laptop("c-older", "u3", (2018, 1, 1), false);
        older.admin.cost_cents = Some(250_000);
        let mut oldest = laptop("d-oldest", "u4", (2018, 6, 1), false);
        oldest.admin.cost_cents = Some(250_000);
        let facts = [old, due, older, oldest];
        let mut policy = policy();
        policy.quarters = 2;
        policy.budget = 350_000;
        let devices: Vec<_> = facts
            .iter()
            .map(|f| Assessment::new(f, &policy, today))
            .collect();
        let p = plan(&devices, &policy, today);
        // c-older then d-oldest fill both quarters and a-old is deferred;
        // b-due (lifecycle ends 2027-02, cheaper) fits the slack of 2027-Q1.
        assert_eq!(p.quarters[0].refreshes, [2]);
        assert_eq!(p.quarters[1].refreshes, [3, 1]);
        assert_eq!(p.deferred.iter().map(|d| d.device).collect::<Vec<_>>(), [0]);
        assert_eq!(
            p.cascades,
            [Cascade {
                freed: 1,
                recipient: "u1".into(),
                replaces: 0,
                quarter: 1
            }]
        );
    }
}
