//! The refresh-planner plugin through the runtime against generated fleets
//! (`fleet::fixture`): budgets, failing hardware, cascades, tickets, and
//! speed on a thousand devices.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use steward_runtime::bindings::inventory::{DeviceClass, DeviceFacts, Health};
use steward_runtime::bindings::tickets::TicketKind;
use steward_runtime::bindings::types::{
    Change, Date, Finding, Outcome, PluginError, RunMode, Severity,
};
use steward_runtime::device::fleet::{self, FleetSpec};
use steward_runtime::device::simulated::Fixture;
use steward_runtime::{Limits, RunError};

use crate::support::*;

const PLUGIN: &str = "steward-plugin-refresh-planner";
const GRANTS: &[&str] = &["inventory=tenant", "tickets=refresh"];
/// 25,000.00 a quarter: a lean budget for 240 devices.
const BUDGET: u64 = 2_500_000;
const QUARTERS: [&str; 8] = [
    "2026-Q4", "2027-Q1", "2027-Q2", "2027-Q3", "2027-Q4", "2028-Q1", "2028-Q2", "2028-Q3",
];
const QUARTER_ENDS: [(u16, u8, u8); 8] = [
    (2026, 12, 31),
    (2027, 3, 31),
    (2027, 6, 30),
    (2027, 9, 30),
    (2027, 12, 31),
    (2028, 3, 31),
    (2028, 6, 30),
    (2028, 9, 30),
];
/// Costs for devices with none on record, given explicitly so the tests
/// can price every device themselves.
const DEFAULT_COSTS: [(&str, u64); 4] = [
    ("default-cost-laptop", 150_000),
    ("default-cost-desktop", 110_000),
    ("default-cost-server", 900_000),
    ("default-cost-other", 60_000),
];

/// A tenant on 2026-11-23 (2026-Q4). Eight percent failing makes a bad
/// quarter: their replacement alone overruns [`BUDGET`].
fn tenant(devices: usize) -> Fixture {
    fleet::fixture(&FleetSpec {
        tenant_id: "acme".into(),
        devices,
        seed: 2026,
        today: Date {
            year: 2026,
            month: 11,
            day: 23,
        },
        failing_percent: 8,
    })
}

/// Room for a thousand devices and hundreds of ticket calls; guest CPU is
/// capped at a second, so a plan that is slow on a big tenant fails.
fn planner_limits() -> Limits {
    Limits {
        cpu_time: Duration::from_secs(1),
        wall_time: Duration::from_secs(60),
        memory_bytes: 64 << 20,
        ..Limits::default()
    }
}

async fn planner(fixture: Fixture, budget: u64, mode: RunMode) -> Run {
    let budget = budget.to_string();
    let mut params = vec![("budget-per-quarter", budget.as_str())];
    let costs: Vec<(&str, String)> = DEFAULT_COSTS
        .iter()
        .map(|(k, v)| (*k, v.to_string()))
        .collect();
    params.extend(costs.iter().map(|(k, v)| (*k, v.as_str())));
    run_with_limits(
        fixture,
        PLUGIN,
        grants(GRANTS),
        &params,
        mode,
        planner_limits(),
    )
    .await
}

async fn check(run: &Run) -> Vec<Finding> {
    runtime()
        .check(&*module(PLUGIN).await, run.spec.clone())
        .await
        .result
        .expect("check")
}

async fn remediate(run: &Run) -> Vec<Change> {
    runtime()
        .remediate(&*module(PLUGIN).await, run.spec.clone(), Vec::new())
        .await
        .result
        .map(|r| r.changes)
        .expect("remediate")
}

/// Every device of the fixture's tenant, by id.
fn by_id(fixture: &Fixture) -> BTreeMap<String, DeviceFacts> {
    std::iter::once(&fixture.facts)
        .chain(&fixture.fleet)
        .map(|d| (d.id.clone(), d.clone()))
        .collect()
}

fn failing(d: &DeviceFacts) -> bool {
    d.disks.iter().any(|k| k.health == Health::Failing)
}

fn cost(d: &DeviceFacts) -> u64 {
    d.admin.cost_cents.unwrap_or(match d.admin.class {
        Some(DeviceClass::Laptop) => DEFAULT_COSTS[0].1,
        Some(DeviceClass::Desktop) => DEFAULT_COSTS[1].1,
        Some(DeviceClass::Server) => DEFAULT_COSTS[2].1,
        _ => DEFAULT_COSTS[3].1,
    })
}

fn bought(d: &DeviceFacts) -> Option<(u16, u8, u8)> {
    d.admin.purchase_date.map(|p| (p.year, p.month, p.day))
}

fn of_kind<'a>(changes: &'a [Change], kind: &str) -> Vec<&'a Change> {
    changes.iter().filter(|c| c.kind == kind).collect()
}

/// What every plan must satisfy, checked against the generated facts
/// rather than the plugin's own arithmetic. Returns the cascades checked.
fn assert_plan_holds(fixture: &Fixture, changes: &[Change], budget: u64) -> usize {
    let facts = by_id(fixture);
    let refreshes = of_kind(changes, "refresh");
    let mut cost_by_quarter: BTreeMap<&str, u64> = BTreeMap::new();
    let mut devices_by_quarter: BTreeMap<&str, Vec<&DeviceFacts>> = BTreeMap::new();
    for r in &refreshes {
        let d = &facts[&r.target];
        let quarter = r.after.as_deref().expect("a refresh names its quarter");
        assert!(QUARTERS.contains(&quarter), "{r:?}");
        *cost_by_quarter.entry(quarter).or_default() += cost(d);
        devices_by_quarter.entry(quarter).or_default().push(d);
    }
    let refreshed: BTreeSet<&str> = refreshes.iter().map(|c| c.target.as_str()).collect();
    assert_eq!(refreshed.len(), refreshes.len(), "a device refreshed twice");

    // Failing hardware goes first, whatever the budget.
    for d in facts.values().filter(|d| failing(d)) {
        let r = refreshes
            .iter()
            .find(|r| r.target == d.id)
            .unwrap_or_else(|| panic!("failing {} not refreshed", d.id));
        assert_eq!(r.after.as_deref(), Some(QUARTERS[0]), "{r:?}");
        assert!(r.description.contains("failing hardware"), "{r:?}");
    }

    // One forecast per quarter, agreeing with the refreshes; a quarter over
    // budget holds failing hardware only and says which.
    let forecasts = of_kind(changes, "forecast");
    assert_eq!(
        forecasts
            .iter()
            .map(|f| f.target.as_str())
            .collect::<Vec<_>>(),
        QUARTERS
    );
    for f in forecasts {
        let json: serde_json::Value =
            serde_json::from_str(f.after.as_deref().expect("forecast json")).expect("json");
        let q = f.target.as_str();
        let cost = cost_by_quarter.get(q).copied().unwrap_or(0);
        let in_quarter = devices_by_quarter.get(q).cloned().unwrap_or_default();
        assert_eq!(json["quarter"], q);
        assert_eq!(json["devices"], in_quarter.len() as u64, "{f:?}");
        assert_eq!(json["cost_cents"], cost, "{f:?}");
        assert_eq!(json["budget_cents"], budget);
        if cost <= budget {
            assert!(json["overrun"].is_null(), "{f:?}");
            continue;
        }
        assert!(
            in_quarter.iter().all(|d| failing(d)),
            "{q} is over budget with healthy devices in it"
        );
        let overrun = json["overrun"].as_str().expect("an overrun is explained");
        assert!(overrun.contains("failing hardware"), "{overrun}");
        assert!(f.description.contains("failing hardware"), "{f:?}");
        for d in in_quarter {
            assert!(overrun.contains(&d.id), "{overrun} misses {}", d.id);
        }
    }

    // Cascades: a healthy refreshed device to another user with nothing
    // scheduled, whose every device is strictly older.
    let mut recipients = BTreeSet::new();
    let refreshed_users: BTreeSet<&str> = refreshes
        .iter()
        .filter_map(|r| facts[&r.target].admin.assigned_user.as_deref())
        .collect();
    let cascades = of_kind(changes, "cascade");
    for c in &cascades {
        let freed = &facts[&c.target];
        assert!(refreshed.contains(freed.id.as_str()), "{c:?}");
        assert!(!failing(freed), "{c:?}");
        assert_ne!(freed.admin.class, Some(DeviceClass::Server));
        let user = c.after.as_deref().expect("a cascade names its recipient");
        assert_ne!(freed.admin.assigned_user.as_deref(), Some(user));
        assert!(!refreshed_users.contains(user), "{user} already scheduled");
        assert!(recipients.insert(user), "{user} receives twice");
        let freed_bought = bought(freed).expect("a cascaded device has a purchase date");
        let theirs: Vec<_> = facts
            .values()
            .filter(|d| d.admin.assigned_user.as_deref() == Some(user))
            .collect();
        assert!(!theirs.is_empty());
        for d in theirs {
            let their_bought = bought(d).expect("recipient's device has a date");
            assert!(
                their_bought < freed_bought,
                "{user} gets {} ({freed_bought:?}) for {} ({their_bought:?})",
                freed.id,
                d.id
            );
        }
    }
    cascades.len()
}

#[tokio::test]
async fn check_reports_failing_disks_as_critical_and_unknown_purchase_dates_as_info() {
    let fixture = tenant(240);
    let facts = by_id(&fixture);
    let run = planner(fixture, BUDGET, RunMode::Plan).await;
    let findings = check(&run).await;
    let ids_of = |kind: &str| -> BTreeSet<String> {
        findings
            .iter()
            .filter(|f| f.id.starts_with(&format!("{kind}:")))
            .map(|f| f.resource.clone())
            .collect()
    };
    let failing_ids: BTreeSet<String> = facts
        .values()
        .filter(|d| failing(d))
        .map(|d| d.id.clone())
        .collect();
    assert!(!failing_ids.is_empty(), "the fleet has failing disks");
    assert_eq!(ids_of("failing-disk"), failing_ids);
    for f in &findings {
        let expected = if f.id.starts_with("failing-disk:") {
            Severity::Critical
        } else if f.id.starts_with("unknown-purchase-date:") {
            Severity::Info
        } else {
            Severity::Warning
        };
        assert_eq!(f.severity, expected, "{f:?}");
        assert!(f.id.ends_with(&format!(":{}", f.resource)), "{f:?}");
    }
    let undated: BTreeSet<String> = facts
        .values()
        .filter(|d| d.admin.purchase_date.is_none())
        .map(|d| d.id.clone())
        .collect();
    assert!(!undated.is_empty(), "the fleet has undated devices");
    assert_eq!(ids_of("unknown-purchase-date"), undated);
    for kind in [
        "past-lifecycle",
        "warranty-expired",
        "os-end-of-life",
        "battery-worn",
        "below-spec-memory",
        "below-spec-disk",
    ] {
        assert!(!ids_of(kind).is_empty(), "no {kind} finding");
    }
    for id in ids_of("os-end-of-life") {
        let eol = facts[&id].os.as_ref().unwrap().end_of_life.unwrap();
        assert!((eol.year, eol.month, eol.day) <= (2026, 11, 23), "{id}");
    }
}

#[tokio::test]
async fn a_plan_stays_within_budget_except_for_failing_hardware_and_files_nothing() {
    let fixture = tenant(240);
    let run = planner(fixture.clone(), BUDGET, RunMode::Plan).await;
    let changes = remediate(&run).await;
    assert!(run.sim.tickets.all().is_empty(), "plan mode filed a ticket");
    assert!(changes.iter().all(|c| c.outcome == Outcome::Planned));
    assert_plan_holds(&fixture, &changes, BUDGET);
    let first = of_kind(&changes, "forecast")[0];
    assert!(
        first.description.contains("over budget"),
        "failing hardware overruns the first quarter at this budget: {first:?}"
    );
    let deferred = of_kind(&changes, "deferred");
    assert!(
        !deferred.is_empty(),
        "the budget cannot cover every due device"
    );
    assert!(
        deferred[0].description.contains("budget"),
        "{:?}",
        deferred[0]
    );
    assert_eq!(
        of_kind(&changes, "ticket").len(),
        of_kind(&changes, "refresh").len()
    );
    assert!(
        of_kind(&changes, "ticket")
            .iter()
            .all(|t| t.after.as_deref() == Some("planned"))
    );
}

#[tokio::test]
async fn the_same_fleet_gives_the_same_plan() {
    let first = remediate(&planner(tenant(240), BUDGET, RunMode::Plan).await).await;
    let mut shuffled = tenant(240);
    // The inventory's order does not matter either.
    shuffled.fleet.reverse();
    let second = remediate(&planner(shuffled, BUDGET, RunMode::Plan).await).await;
    assert!(!first.is_empty());
    assert_eq!(first, second);
}

#[tokio::test]
async fn cascades_hand_users_of_deferred_devices_a_strictly_newer_one() {
    // A budget that covers every standard device due in the horizon. Cascades
    // only exist when something older than a freed healthy device is left
    // out, so the test prices the five oldest working laptops (specialist
    // workstations, say) above a quarter's budget: they are deferred, and
    // their users are the ones cascades can serve.
    let budget = 6_000_000;
    let mut fixture = tenant(240);
    let mut laptops: Vec<&mut DeviceFacts> = std::iter::once(&mut fixture.facts)
        .chain(fixture.fleet.iter_mut())
        .filter(|d| {
            d.admin.class == Some(DeviceClass::Laptop)
                && d.admin.purchase_date.is_some()
                && !failing(d)
        })
        .collect();
    laptops.sort_by_key(|d| bought(d));
    let mut priced_out = BTreeSet::new();
    for d in laptops.into_iter().take(5) {
        d.admin.cost_cents = Some(budget + 1);
        priced_out.insert(d.admin.assigned_user.clone().unwrap());
    }

    let run = planner(fixture.clone(), budget, RunMode::Plan).await;
    let changes = remediate(&run).await;
    let cascades = assert_plan_holds(&fixture, &changes, budget);
    assert_eq!(cascades, priced_out.len(), "{changes:#?}");
    let facts = by_id(&fixture);
    let deferred_users: BTreeSet<String> = of_kind(&changes, "deferred")
        .iter()
        .filter_map(|c| facts[&c.target].admin.assigned_user.clone())
        .collect();
    let recipients: BTreeSet<String> = of_kind(&changes, "cascade")
        .iter()
        .map(|c| c.after.clone().unwrap())
        .collect();
    assert_eq!(recipients, priced_out);
    assert!(recipients.is_subset(&deferred_users));
    for d in of_kind(&changes, "deferred")
        .iter()
        .filter(|d| priced_out.contains(facts[&d.target].admin.assigned_user.as_deref().unwrap()))
    {
        assert!(
            d.description.contains("more than the quarterly budget"),
            "{d:?}"
        );
        assert!(d.description.contains("by cascade"), "{d:?}");
    }
}

#[tokio::test]
async fn applying_files_one_work_item_per_refresh() {
    let fixture = tenant(240);
    let facts = by_id(&fixture);
    let run = planner(fixture.clone(), BUDGET, RunMode::Apply).await;
    let changes = remediate(&run).await;
    assert_plan_holds(&fixture, &changes, BUDGET);
    let tickets = run.sim.tickets.all();
    let refreshes = of_kind(&changes, "refresh");
    let ticket_changes = of_kind(&changes, "ticket");
    assert!(!refreshes.is_empty());
    assert_eq!(tickets.len(), refreshes.len());
    assert_eq!(ticket_changes.len(), refreshes.len());
    for (r, t) in refreshes.iter().zip(&tickets) {
        let d = &facts[&r.target];
        assert_eq!(t.ticket.device_id.as_deref(), Some(d.id.as_str()));
        assert_eq!(t.origin.device_id, d.id);
        assert_eq!(t.ticket.kind, TicketKind::WorkItem);
        assert_eq!(t.ticket.queue, "refresh");
        let class = match d.admin.class {
            Some(DeviceClass::Laptop) => "laptop",
            Some(DeviceClass::Desktop) => "desktop",
            Some(DeviceClass::Server) => "server",
            _ => "other",
        };
        assert_eq!(t.ticket.title, format!("Refresh {} ({class})", d.name));
        let quarter = QUARTERS
            .iter()
            .position(|q| Some(*q) == r.after.as_deref())
            .unwrap();
        let (year, month, day) = QUARTER_ENDS[quarter];
        assert_eq!(t.ticket.due, Some(Date { year, month, day }));
        let filed = ticket_changes
            .iter()
            .find(|c| c.target == d.id)
            .expect("a ticket change per refresh");
        assert_eq!(filed.after.as_deref(), Some(t.id.as_str()));
        assert_eq!(filed.outcome, Outcome::Applied);
    }
    let others = changes.iter().filter(|c| c.kind != "ticket");
    assert!(others.into_iter().all(|c| c.outcome == Outcome::Applied));

    // The next scheduled run plans the same refreshes and files nothing new:
    // each ticket change points at the ticket already filed.
    let again = remediate(&run).await;
    assert_eq!(
        run.sim.tickets.all().len(),
        tickets.len(),
        "no duplicate tickets"
    );
    let refiled = of_kind(&again, "ticket");
    assert_eq!(refiled.len(), ticket_changes.len());
    for (first, second) in ticket_changes.iter().zip(&refiled) {
        assert_eq!(
            (&first.target, &first.after),
            (&second.target, &second.after)
        );
    }
}

#[tokio::test]
async fn plans_a_thousand_devices_within_a_second_of_guest_cpu() {
    // `planner_limits` stops any call that spends a second in guest code.
    let fixture = tenant(1_000);
    let budget = 4 * BUDGET;
    let run = planner(fixture.clone(), budget, RunMode::Apply).await;
    let findings = check(&run).await;
    assert!(findings.len() > 1_000, "{}", findings.len());
    let changes = remediate(&run).await;
    assert_plan_holds(&fixture, &changes, budget);
    let refreshes = of_kind(&changes, "refresh").len();
    assert!(refreshes > 200, "{refreshes}");
    assert_eq!(run.sim.tickets.all().len(), refreshes);
}

#[tokio::test]
async fn bad_parameters_are_refused_before_anything_is_filed() {
    for (param, value, message) in [
        (
            "budget-per-quarter",
            "0",
            "must be more than 0 cents, got 0",
        ),
        ("quarters", "41", "must be between 1 and 40, got 41"),
        ("lifecycle-years-laptop", "0", "must be between 1 and 30"),
        ("battery-wear-percent", "101", "must be between 0 and 100"),
        ("ticket-queue", " ", "must name a ticket queue"),
    ] {
        let params: Vec<(&str, &str)> = if param == "budget-per-quarter" {
            vec![(param, value)]
        } else {
            vec![("budget-per-quarter", "100000"), (param, value)]
        };
        let run = run_with_limits(
            tenant(20),
            PLUGIN,
            grants(GRANTS),
            &params,
            RunMode::Apply,
            planner_limits(),
        )
        .await;
        for result in [
            runtime()
                .check(&*module(PLUGIN).await, run.spec.clone())
                .await
                .result
                .map(|_| ()),
            runtime()
                .remediate(&*module(PLUGIN).await, run.spec.clone(), Vec::new())
                .await
                .result
                .map(|r| r.changes)
                .map(|_| ()),
        ] {
            match result.unwrap_err() {
                RunError::Plugin(PluginError::InvalidParam(p)) => {
                    assert_eq!(p.name, param);
                    assert!(p.message.contains(message), "{}", p.message);
                }
                other => panic!("expected invalid-param `{param}`, got {other}"),
            }
        }
        assert!(run.sim.tickets.all().is_empty());
    }
}
