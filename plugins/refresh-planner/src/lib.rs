//! `refresh-planner`: plans hardware refreshes for a whole tenant within a
//! quarterly budget.
//!
//! Check: per device, failing disks (critical), OS past end of life, past
//! the class's lifecycle, warranty expired, worn batteries and below-spec
//! memory or disk (warnings); an unknown purchase date is an info finding.
//!
//! Remediate plans the next `quarters` quarters, the current calendar
//! quarter first. A device is due when its hardware is failing, its OS is
//! past end of life, or its lifecycle ends inside the horizon (in the
//! quarter it ends, or now if it already has). Worn batteries and
//! below-spec memory or disk are reported but do not make a device due on
//! their own: a battery or memory module is cheaper than a device. Due
//! devices, in risk order (failing hardware, OS end of life, oldest
//! purchase, then device id), each take the first quarter from the one
//! they fall due in with budget left for their cost; failing hardware is
//! always replaced in the first quarter, even over budget, and that
//! quarter's forecast says so. Devices that fit nowhere are `deferred`.
//!
//! A freed device that is healthy (nothing check flags today, OS supported
//! past the handover) cascades to the user with the oldest device of the
//! same class among users with nothing scheduled, when that device is
//! strictly older; servers never cascade.
//!
//! Changes, quarter by quarter: `refresh` and its `ticket` per device,
//! `cascade` per handover and one `forecast`; then `deferred` devices.
//! Only tickets make a capability call; every other change reports the
//! run's mode as its outcome. A filed ticket is remembered in plugin state
//! (`ticket:<device>:<quarter>`), so a plan run every week files each work
//! item once. The plan is computed from the inventory, not
//! from the findings passed in, so it is the same for the same facts.

mod dates;
mod plan;

use steward_sdk::host::inventory::{self, DeviceFacts};
use steward_sdk::host::{clock, state, tickets};
use steward_sdk::{
    Change, Descriptor, Finding, Outcome, ParamProblem, ParamSpec, Plugin, PluginError,
    PluginScope, Remediation, Severity, export_plugin, log, params,
};

use crate::dates::{Day, date_of, fmt_day, quarter_label, quarter_last_day};
use crate::plan::{Assessment, Class, Plan, Policy, money};

struct RefreshPlanner;

/// Lifecycle defaults in years, by class.
const LIFECYCLE_YEARS: [(&str, i64); 4] = [
    ("lifecycle-years-laptop", 3),
    ("lifecycle-years-desktop", 5),
    ("lifecycle-years-server", 6),
    ("lifecycle-years-other", 5),
];

/// Replacement costs in cents when a device has none: a business laptop,
/// a business desktop, a two-socket rack server, and a thin client or
/// similar.
const DEFAULT_COSTS: [(&str, i64); 4] = [
    ("default-cost-laptop", 150_000),
    ("default-cost-desktop", 110_000),
    ("default-cost-server", 900_000),
    ("default-cost-other", 60_000),
];

fn invalid(name: &str, message: impl Into<String>) -> PluginError {
    PluginError::InvalidParam(ParamProblem {
        name: name.to_string(),
        message: message.into(),
    })
}

/// An integer parameter in `min..=max`, or its default.
fn integer_in(name: &str, default: i64, min: i64, max: i64) -> Result<i64, PluginError> {
    let value = params::integer(name)?.unwrap_or(default);
    if !(min..=max).contains(&value) {
        return Err(invalid(
            name,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(value)
}

/// Every parameter, checked in `check` too, so a bad value fails before
/// anything is read or filed.
fn load_policy() -> Result<(Policy, String), PluginError> {
    let quarters = integer_in("quarters", 8, 1, 40)? as usize;
    let budget = match params::integer("budget-per-quarter")? {
        None => {
            return Err(invalid(
                "budget-per-quarter",
                "is required: the most to spend per quarter, in cents",
            ));
        }
        Some(b) if b <= 0 => {
            return Err(invalid(
                "budget-per-quarter",
                format!("must be more than 0 cents, got {b}"),
            ));
        }
        Some(b) => b as u64,
    };
    let mut lifecycle_years = [0; 4];
    for (i, (name, default)) in LIFECYCLE_YEARS.iter().enumerate() {
        lifecycle_years[i] = integer_in(name, *default, 1, 30)?;
    }
    let mut default_cost = [0; 4];
    for (i, (name, default)) in DEFAULT_COSTS.iter().enumerate() {
        default_cost[i] = integer_in(name, *default, 1, i64::MAX)? as u64;
    }
    let policy = Policy {
        quarters,
        budget,
        lifecycle_years,
        min_memory_gib: integer_in("min-memory-gib", 8, 0, 1 << 20)? as u64,
        min_disk_gib: integer_in("min-disk-gib", 200, 0, 1 << 30)? as u64,
        battery_wear_percent: integer_in("battery-wear-percent", 40, 0, 100)? as f64,
        default_cost,
    };
    let queue = params::text("ticket-queue")?
        .unwrap_or_else(|| "refresh".into())
        .trim()
        .to_string();
    if queue.is_empty() {
        return Err(invalid("ticket-queue", "must name a ticket queue"));
    }
    Ok((policy, queue))
}

fn today() -> Day {
    clock::now().seconds.div_euclid(86_400)
}

/// The tenant's devices sorted by id, so the plan does not depend on the
/// order the inventory returns them in.
fn tenant_devices() -> Result<Vec<DeviceFacts>, PluginError> {
    let mut devices = inventory::tenant_devices()?;
    devices.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(devices)
}

/// The outcome of a change that makes no capability call.
fn plan_outcome() -> Outcome {
    if steward_sdk::is_plan() {
        Outcome::Planned
    } else {
        Outcome::Applied
    }
}

fn finding(a: &Assessment<'_>, kind: &str, severity: Severity, summary: &str) -> Finding {
    Finding::new(format!("{kind}:{}", a.facts.id), severity, summary)
        .resource(&a.facts.id)
        .field("device-name", &a.facts.name)
        .field("class", a.class.name())
}

fn check_device(a: &Assessment<'_>, policy: &Policy, findings: &mut Vec<Finding>) {
    let name = &a.facts.name;
    if a.failing() {
        findings.push(
            finding(a, "failing-disk", Severity::Critical, "Failing disk")
                .detail(format!(
                    "{name}: disk {} reports failing health",
                    a.failing_disks.join(", ")
                ))
                .field("disks", a.failing_disks.join(",")),
        );
    }
    if a.os_eol_reached
        && let Some(eol) = a.os_eol
    {
        findings.push(
            finding(
                a,
                "os-end-of-life",
                Severity::Warning,
                "Operating system past end of life",
            )
            .detail(format!(
                "{name}: {} reached end of life on {}",
                a.os_name(),
                fmt_day(eol)
            ))
            .field("end-of-life", fmt_day(eol)),
        );
    }
    match (a.purchase, a.lifecycle_end) {
        (Some(bought), Some(end)) if a.past_lifecycle => findings.push(
            finding(a, "past-lifecycle", Severity::Warning, "Past its lifecycle")
                .detail(format!(
                    "{name}: bought {}, its {}-year {} lifecycle ended {}",
                    fmt_day(bought),
                    policy.lifecycle_years[a.class.index()],
                    a.class.name(),
                    fmt_day(end)
                ))
                .field("purchase-date", fmt_day(bought))
                .field("lifecycle-end", fmt_day(end)),
        ),
        (None, _) => findings.push(
            finding(
                a,
                "unknown-purchase-date",
                Severity::Info,
                "Purchase date unknown",
            )
            .detail(format!(
                "{name}: no purchase date on record, so its lifecycle cannot be planned"
            )),
        ),
        _ => {}
    }
    if a.warranty_expired
        && let Some(end) = a.warranty_end
    {
        findings.push(
            finding(a, "warranty-expired", Severity::Warning, "Warranty expired")
                .detail(format!("{name}: warranty ended {}", fmt_day(end)))
                .field("warranty-end", fmt_day(end)),
        );
    }
    if !a.worn_batteries.is_empty() {
        let worst = a
            .worn_batteries
            .iter()
            .map(|(_, w)| *w)
            .fold(0.0f32, f32::max);
        findings.push(
            finding(a, "battery-worn", Severity::Warning, "Battery worn")
                .detail(format!(
                    "{name}: {} (threshold {}%)",
                    a.worn_batteries
                        .iter()
                        .map(|(b, w)| format!("battery {b} wear {w:.0}%"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    policy.battery_wear_percent
                ))
                .field("wear-percent", format!("{worst:.0}")),
        );
    }
    if a.memory_below
        && let Some(m) = a.memory_gib
    {
        findings.push(
            finding(
                a,
                "below-spec-memory",
                Severity::Warning,
                "Memory below spec",
            )
            .detail(format!(
                "{name}: {m:.1} GiB memory, spec is {} GiB",
                policy.min_memory_gib
            ))
            .field("memory-gib", format!("{m:.1}")),
        );
    }
    if a.disk_below
        && let Some(d) = a.disk_gib
    {
        findings.push(
            finding(a, "below-spec-disk", Severity::Warning, "Disk below spec")
                .detail(format!(
                    "{name}: {d:.0} GiB of disk, spec is {} GiB",
                    policy.min_disk_gib
                ))
                .field("disk-gib", format!("{d:.0}")),
        );
    }
}

impl Plugin for RefreshPlanner {
    fn describe() -> Descriptor {
        let mut d = Descriptor::new(
            "refresh-planner",
            env!("CARGO_PKG_VERSION"),
            "Plans hardware refreshes for a tenant within a quarterly budget",
        )
        .scope(PluginScope::Tenant)
        .param(
            ParamSpec::integer("quarters", "Quarters to plan, the current one first (1-40)")
                .default_integer(8),
        )
        .param(
            ParamSpec::integer(
                "budget-per-quarter",
                "Most spent on replacements per quarter, in cents (failing hardware may overrun the first quarter)",
            )
            .required(),
        );
        for (name, years) in LIFECYCLE_YEARS {
            d = d.param(
                ParamSpec::integer(name, "Years before a device of this class is due")
                    .default_integer(years),
            );
        }
        d = d
            .param(
                ParamSpec::integer("min-memory-gib", "Memory below this is below spec")
                    .default_integer(8),
            )
            .param(
                ParamSpec::integer("min-disk-gib", "Total disk below this is below spec")
                    .default_integer(200),
            )
            .param(
                ParamSpec::integer(
                    "battery-wear-percent",
                    "Battery wear at or above this is reported",
                )
                .default_integer(40),
            );
        for (name, cents) in DEFAULT_COSTS {
            d = d.param(
                ParamSpec::integer(
                    name,
                    "Replacement cost in cents for a device of this class with none on record",
                )
                .default_integer(cents),
            );
        }
        d.param(
            ParamSpec::text("ticket-queue", "Queue for refresh work items").default_text("refresh"),
        )
    }

    fn check() -> Result<Vec<Finding>, PluginError> {
        let (policy, _) = load_policy()?;
        let today = today();
        let devices = tenant_devices()?;
        let mut findings = Vec::new();
        let assessed: Vec<_> = devices
            .iter()
            .map(|f| Assessment::new(f, &policy, today))
            .collect();
        for a in &assessed {
            check_device(a, &policy, &mut findings);
        }
        log::info(&format!(
            "checked {} devices ({}): {} findings",
            devices.len(),
            class_counts(&assessed),
            findings.len()
        ));
        Ok(findings)
    }

    fn remediate(_findings: Vec<Finding>) -> Result<Remediation, PluginError> {
        let (policy, queue) = load_policy()?;
        let today = today();
        let facts = tenant_devices()?;
        let devices: Vec<Assessment<'_>> = facts
            .iter()
            .map(|f| Assessment::new(f, &policy, today))
            .collect();
        let plan = plan::plan(&devices, &policy, today);
        let changes = emit(&devices, &policy, &queue, &plan)?;
        log::info(&format!(
            "planned {} refreshes over {} quarters from {}, {} cascades, {} deferred",
            plan.quarters
                .iter()
                .map(|q| q.refreshes.len())
                .sum::<usize>(),
            policy.quarters,
            quarter_label(plan.quarters[0].quarter),
            plan.cascades.len(),
            plan.deferred.len()
        ));
        Ok(changes.into())
    }
}

/// `lt-0042 (laptop, user-042)`.
fn label(a: &Assessment<'_>) -> String {
    format!(
        "{} ({}, {})",
        a.facts.name,
        a.class.name(),
        a.facts
            .admin
            .assigned_user
            .as_deref()
            .unwrap_or("unassigned")
    )
}

fn cost_text(a: &Assessment<'_>) -> String {
    if a.cost_is_default {
        format!("{} (class default)", money(a.cost))
    } else {
        money(a.cost)
    }
}

fn bought(a: &Assessment<'_>) -> String {
    a.purchase
        .map(|p| format!("bought {}", fmt_day(p)))
        .unwrap_or_else(|| "purchase date unknown".into())
}

/// Turns the plan into changes, filing one ticket per refresh.
fn emit(
    devices: &[Assessment<'_>],
    policy: &Policy,
    queue: &str,
    plan: &Plan,
) -> Result<Vec<Change>, PluginError> {
    let outcome = plan_outcome();
    let mut changes = Vec::new();
    let cascade_of = |device: usize| plan.cascades.iter().find(|c| c.freed == device);
    let received_by = |device: usize| plan.cascades.iter().find(|c| c.replaces == device);
    for (q, quarter) in plan.quarters.iter().enumerate() {
        let label_q = quarter_label(quarter.quarter);
        for &i in &quarter.refreshes {
            let a = &devices[i];
            let reasons = a.reasons(policy).join("; ");
            changes.push(
                Change::new("refresh", &a.facts.id, outcome)
                    .description(format!(
                        "Refresh {} in {label_q}: {reasons}; cost {}",
                        label(a),
                        cost_text(a)
                    ))
                    .before(bought(a))
                    .after(&label_q),
            );
            let mut body = format!(
                "Planned refresh of {} [{}] in {label_q}, {}.\nReasons: {reasons}.\nBudgeted replacement cost: {}.",
                label(a),
                a.facts.id,
                bought(a),
                cost_text(a)
            );
            if let Some(c) = cascade_of(i) {
                body.push_str(&format!(
                    "\nCascade: once replaced, hand the freed device to {} (retiring {} [{}], {}).",
                    c.recipient,
                    devices[c.replaces].facts.name,
                    devices[c.replaces].facts.id,
                    bought(&devices[c.replaces])
                ));
            }
            let due = quarter_last_day(quarter.quarter);
            // One ticket per device and quarter, however often the plan runs.
            let key = format!("ticket:{}:{label_q}", a.facts.id);
            if let Some(existing) = state::get(&key) {
                changes.push(
                    Change::new("ticket", &a.facts.id, outcome)
                        .description(format!(
                            "Work item to refresh {} already filed in an earlier run",
                            a.facts.name
                        ))
                        .after(existing),
                );
                continue;
            }
            let filed = tickets::file(&tickets::Ticket {
                kind: tickets::TicketKind::WorkItem,
                queue: queue.to_string(),
                title: format!("Refresh {} ({})", a.facts.name, a.class.name()),
                body,
                due: Some(date_of(due)),
                device_id: Some(a.facts.id.clone()),
            })?;
            if filed.outcome == Outcome::Applied {
                state::set(&key, &filed.id)?;
            }
            changes.push(
                Change::new("ticket", &a.facts.id, filed.outcome)
                    .description(format!(
                        "Work item in `{queue}` to refresh {}, due {}",
                        a.facts.name,
                        fmt_day(due)
                    ))
                    .after(filed.id),
            );
        }
        for c in plan.cascades.iter().filter(|c| c.quarter == q) {
            let (freed, old) = (&devices[c.freed], &devices[c.replaces]);
            changes.push(
                Change::new("cascade", &freed.facts.id, outcome)
                    .description(format!(
                        "In {label_q}, hand {} [{}], {}, to {} once replaced; it retires their {} [{}], {}",
                        label(freed),
                        freed.facts.id,
                        bought(freed),
                        c.recipient,
                        old.facts.name,
                        old.facts.id,
                        bought(old)
                    ))
                    .before(
                        freed
                            .facts
                            .admin
                            .assigned_user
                            .as_deref()
                            .unwrap_or("unassigned"),
                    )
                    .after(&c.recipient),
            );
        }
        changes.push(forecast(devices, policy, quarter, &label_q, outcome));
    }
    for d in &plan.deferred {
        let a = &devices[d.device];
        let mut description = format!(
            "Defer {}: {}; reasons: {}",
            label(a),
            d.why,
            a.reasons(policy).join("; ")
        );
        if let Some(c) = received_by(d.device) {
            description.push_str(&format!(
                "; its user receives {} [{}] by cascade in {}",
                devices[c.freed].facts.name,
                devices[c.freed].facts.id,
                quarter_label(plan.quarters[c.quarter].quarter)
            ));
        }
        changes.push(
            Change::new("deferred", &a.facts.id, outcome)
                .description(description)
                .before(bought(a)),
        );
    }
    Ok(changes)
}

fn forecast(
    devices: &[Assessment<'_>],
    policy: &Policy,
    quarter: &plan::QuarterPlan,
    label_q: &str,
    outcome: Outcome,
) -> Change {
    let over = quarter.overrun(policy.budget);
    let overrun = (over > 0).then(|| {
        format!(
            "failing hardware replaced regardless of budget: {} (over by {})",
            quarter
                .failing
                .iter()
                .map(|&i| devices[i].facts.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            money(over)
        )
    });
    let mut description = format!(
        "{} devices, cost {}, budget {}",
        quarter.refreshes.len(),
        money(quarter.cost),
        money(policy.budget)
    );
    if let Some(o) = &overrun {
        description.push_str(&format!("; over budget: {o}"));
    }
    let json = format!(
        r#"{{"quarter":{},"devices":{},"cost_cents":{},"budget_cents":{},"overrun":{}}}"#,
        json_string(label_q),
        quarter.refreshes.len(),
        quarter.cost,
        policy.budget,
        overrun.as_deref().map_or("null".into(), json_string)
    );
    Change::new("forecast", label_q, outcome)
        .description(description)
        .after(json)
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `600 laptop, 300 desktop, 100 server`, for the log.
fn class_counts(devices: &[Assessment<'_>]) -> String {
    Class::ALL
        .iter()
        .map(|c| (c, devices.iter().filter(|a| a.class == *c).count()))
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| format!("{n} {}", c.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

export_plugin!(RefreshPlanner);

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn escapes_json_strings() {
        assert_eq!(json_string(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(json_string("x\ny\u{1}"), r#""x\ny\u0001""#);
    }
}
