//! The console's pages and forms. Each reads through the API's handlers or
//! the same scoped lookups they use, with the session's caller.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Datelike as _;
use maud::{Markup, html};
use serde::Deserialize;

use super::session::{Posted, Signed};
use super::{csrf_field, error_page, may_change, page, progress_bar, when, when_opt};
use crate::body::{Json, Path, Query};
use crate::problem::ApiError;
use crate::{ApiState, inventory, people, playbooks, runs};
use steward_store::{
    Device, Finding, FleetFilter, FleetSort, JobStatus, RunFilter, RunId, RunStatus, Severity,
    Tenant, TenantId, Timestamp,
};

/// An error on a page, with who was signed in (for the page around it).
struct PageError(Box<(Signed, ApiError)>);

impl PageError {
    fn new(signed: &Signed, err: ApiError) -> Self {
        Self(Box::new((signed.clone(), err)))
    }
}

/// A page's result: the page, or the error as a page.
type PageResult = Result<Response, PageError>;

fn finish(result: PageResult) -> Response {
    result.unwrap_or_else(|e| error_page(Some(&e.0.0), &e.0.1))
}

/// `?` for a page: an error keeps who was signed in, for the page around it.
trait OrPage<T> {
    fn or_page(self, signed: &Signed) -> Result<T, PageError>;
}

impl<T, E: Into<ApiError>> OrPage<T> for Result<T, E> {
    fn or_page(self, signed: &Signed) -> Result<T, PageError> {
        self.map_err(|e| PageError::new(signed, e.into()))
    }
}

/// A 303 back to a page after a form.
fn see_other(to: &str) -> Response {
    let mut r = Redirect::to(to).into_response();
    *r.status_mut() = StatusCode::SEE_OTHER;
    r
}

/// An empty query field is no filter.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn severity_class(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "sev-critical",
        Severity::Warning => "sev-warning",
        Severity::Info => "sev-info",
    }
}

fn status_class(s: &str) -> String {
    format!("status status-{s}")
}

/// Devices per page on the fleet page.
const FLEET_PAGE: usize = 200;

#[derive(Debug, Default, Deserialize)]
pub(super) struct FleetQuery {
    tenant: Option<String>,
    site: Option<String>,
    tag: Option<String>,
    severity: Option<String>,
    sort: Option<String>,
    page: Option<usize>,
}

/// What a device's open findings say beyond their count per severity
/// (which [`steward_store::FleetRow`] has).
#[derive(Debug, Default, Clone, Copy)]
struct Health {
    /// Pending updates (`patching`), and how many are security updates.
    updates: u32,
    security: u32,
    /// The worst antivirus problem open, if any.
    antivirus: Option<&'static str>,
    /// Locked accounts (`account-unlock`).
    locked: u32,
    /// How old its signatures are, hours, when its check found them
    /// outdated.
    signature_hours: Option<f64>,
}

impl Health {
    /// Counts `n` open findings of `plugin` and `class` (see
    /// [`steward_store::OpenFindings`]).
    fn add(&mut self, plugin: &str, class: &str, n: u32) {
        match (plugin, class) {
            ("patching", "security-update") => {
                self.updates += n;
                self.security += n;
            }
            ("patching", "update") => self.updates += n,
            ("account-unlock", "locked") => self.locked += n,
            ("antivirus", key) => {
                // Worst first; a detection (no position) ranks worst of all.
                const PROBLEMS: [(&str, &str); 4] = [
                    ("engine-missing", "no engine"),
                    ("signatures-missing", "no signatures"),
                    ("service-stopped", "stopped"),
                    ("signatures-outdated", "signatures outdated"),
                ];
                let rank = |text: &str| PROBLEMS.iter().position(|(_, t)| *t == text);
                let found = if key == "detection" {
                    Some("detection")
                } else {
                    PROBLEMS.iter().find(|(k, _)| *k == key).map(|(_, t)| *t)
                };
                if let Some(text) = found
                    && self.antivirus.is_none_or(|old| rank(text) < rank(old))
                {
                    self.antivirus = Some(text);
                }
            }
            _ => {}
        }
    }
}

/// Every tenant's devices with their health at a glance.
pub(super) async fn fleet(
    State(state): State<ApiState>,
    signed: Signed,
    Query(q): Query<FleetQuery>,
) -> Response {
    finish(fleet_page(state, signed, q).await)
}

async fn fleet_page(state: ApiState, signed: Signed, q: FleetQuery) -> PageResult {
    let caller = &signed.caller;
    let tenants = tenants_of(&state, &signed).await?;
    let tenant = given(&q.tenant).map(TenantId::from);
    if let Some(t) = &tenant {
        state.tenant(caller, t).await.or_page(&signed)?;
    }
    let sites = inventory::list_sites(
        State(state.clone()),
        caller.clone(),
        Query(inventory::TenantFilter {
            tenant: tenant.clone(),
        }),
    )
    .await
    .or_page(&signed)?
    .0;
    let site_names: HashMap<_, _> = sites
        .iter()
        .map(|s| (s.id.clone(), s.name.clone()))
        .collect();
    let tenant_names: HashMap<_, _> = tenants
        .iter()
        .map(|t| (t.id.clone(), t.name.clone()))
        .collect();
    let min_severity = given(&q.severity).and_then(|s| s.parse::<Severity>().ok());
    let sort = match given(&q.sort) {
        Some("name") => FleetSort::Name,
        Some("last-seen") => FleetSort::LastSeen,
        _ => FleetSort::Worst,
    };
    // Filtered, sorted and paged in the database, under the caller's scope
    // (as the API's device listing).
    let page_no = q.page.unwrap_or(0).min(100_000);
    let (total, rows) = state
        .store()
        .fleet_page(
            &caller.scope,
            &FleetFilter {
                tenant: tenant.clone(),
                site: given(&q.site).map(str::to_owned),
                tag: given(&q.tag).map(str::to_owned),
                min_severity,
                sort,
            },
            (page_no * FLEET_PAGE) as u32,
            FLEET_PAGE as u32,
        )
        .await
        .or_page(&signed)?;
    let total = total as usize;
    let pages = total.div_ceil(FLEET_PAGE).max(1);
    let ids: Vec<&str> = rows.iter().map(|r| r.device.id.as_str()).collect();
    let mut health: HashMap<String, Health> = HashMap::new();
    for o in state
        .store()
        .open_findings_per_device(&caller.scope, &ids)
        .await
        .or_page(&signed)?
    {
        let n = u32::try_from(o.count).unwrap_or(u32::MAX);
        health
            .entry(o.device_id.to_string())
            .or_default()
            .add(&o.plugin, &o.class, n);
    }
    for (device, age) in state
        .store()
        .signature_ages(None, &ids, Timestamp::now())
        .await
        .or_page(&signed)?
    {
        if let Some(h) = health.get_mut(device.as_str()) {
            h.signature_hours = Some(age);
        }
    }
    let shown = rows.iter().map(|r| {
        let health = health.get(r.device.id.as_str()).copied();
        (r, health.unwrap_or_default())
    });
    let tags = state
        .store()
        .device_tags(&caller.scope, tenant.as_ref())
        .await
        .or_page(&signed)?;
    let link = |p: usize| {
        let mut s = url_query(&[
            ("tenant", q.tenant.as_deref()),
            ("site", q.site.as_deref()),
            ("tag", q.tag.as_deref()),
            ("severity", q.severity.as_deref()),
            ("sort", q.sort.as_deref()),
        ]);
        s.push_str(&format!("&page={p}"));
        format!("/fleet?{s}")
    };
    // One tenant chosen: its month so far, in charts.
    let trends = match &tenant {
        Some(t) => state.month_so_far(t).await.or_page(&signed)?,
        None => None,
    };
    let body = html! {
        @if let Some(r) = &trends {
            section.trends {
                h2 { (r.tenant.name) ", " (r.month) " so far " a.small href=(format!("/reports/{}?month={}", r.tenant.id, r.month)) { "full report →" } }
                @if r.backups.sets > 0 {
                    p.backups { "Backups: " (r.backups.sets - r.backups.outside_rpo_at_end.len() as u32) " of " (r.backups.sets) " sets within their recovery point objective now; "
                        (r.backups.rpo_compliance_percent.map_or_else(|| "—".to_owned(), |p| format!("{p:.1} %"))) " of the month so far; restore tests "
                        (r.backups.restore_tests_passed) " passed, " (r.backups.restore_tests_failed) " failed." }
                }
                div.charts {
                    (crate::report::remediation_chart(r))
                    (crate::report::opened_chart(&r.opened_per_day))
                    @if !r.refresh.is_empty() { (crate::report::forecast_chart(r)) }
                }
            }
        }
        form.filters method="get" action="/fleet" {
            label { "Tenant " select name="tenant" {
                option value="" { "All" }
                @for t in &tenants {
                    option value=(t.id) selected[tenant.as_ref() == Some(&t.id)] { (t.name) }
                }
            } }
            label { "Site " select name="site" {
                option value="" { "All" }
                @for s in &sites {
                    option value=(s.id) selected[given(&q.site) == Some(s.id.as_str())] { (s.name) }
                }
            } }
            label { "Tag " select name="tag" {
                option value="" { "Any" }
                @for t in &tags {
                    option value=(t) selected[given(&q.tag) == Some(t.as_str())] { (t) }
                }
            } }
            label { "Severity " select name="severity" {
                option value="" { "Any" }
                @for s in [Severity::Critical, Severity::Warning, Severity::Info] {
                    option value=(s) selected[min_severity == Some(s)] { (s) " and worse" }
                }
            } }
            label { "Sort " select name="sort" {
                @for (v, l) in [("severity", "Worst first"), ("name", "Name"), ("last-seen", "Last seen")] {
                    option value=(v) selected[given(&q.sort).unwrap_or("severity") == v] { (l) }
                }
            } }
            button type="submit" { "Filter" }
        }
        p.count { (total) " devices" @if pages > 1 { " · page " (page_no + 1) " of " (pages) } }
        table.fleet {
            thead { tr {
                th { "Device" } th { "Tenant" } th { "Site" } th { "Tags" }
                th { "Connection" } th.num { "Critical" } th.num { "Warning" } th.num { "Info" }
                th { "Updates" } th { "Antivirus" } th.num { "Locked accounts" } th { "Last seen" }
            } }
            tbody {
                @for (row, h) in shown {
                    @let d = &row.device;
                    tr {
                        td { a href=(format!("/devices/{}", d.id)) { (d.name) } }
                        td { (tenant_names.get(&d.tenant_id).map_or(d.tenant_id.as_str(), String::as_str)) }
                        td { (d.site_id.as_ref().and_then(|s| site_names.get(s)).map_or("—", String::as_str)) }
                        td { @for t in &d.tags { span.tag { (t) } " " } }
                        td { (connection(d)) }
                        td.num.(if row.critical > 0 { "sev-critical" } else { "" }) { (row.critical) }
                        td.num.(if row.warning > 0 { "sev-warning" } else { "" }) { (row.warning) }
                        td.num { (row.info) }
                        td { @if h.updates > 0 { (h.updates) @if h.security > 0 { ", " span.sev-warning { (h.security) " security" } } } @else { "—" } }
                        td { @match h.antivirus {
                            Some(p) => {
                                span.sev-warning { (p) }
                                @if let Some(age) = h.signature_hours { " " span.muted { "(" (format!("{:.0}", age)) " h old)" } }
                            }
                            None => { "—" }
                        } }
                        td.num.(if h.locked > 0 { "sev-warning" } else { "" }) { (h.locked) }
                        td { (when_opt(d.last_seen_at)) }
                    }
                }
            }
        }
        @if pages > 1 {
            nav.pager {
                @if page_no > 0 { a href=(link(page_no - 1)) { "← Previous" } " " }
                @if page_no + 1 < pages { a href=(link(page_no + 1)) { "Next →" } }
            }
        }
    };
    Ok(page(Some(&signed), "Fleet", false, body))
}

/// How a device is reached, for a person.
fn connection(d: &Device) -> Markup {
    let (class, text) = match d.agent.as_deref() {
        Some("pending-approval") => ("warn", "agent awaiting approval".to_owned()),
        Some("revoked") => ("bad", "agent revoked".to_owned()),
        Some(_) if d.reachable => ("good", "agent connected".to_owned()),
        Some(_) => ("bad", "agent offline".to_owned()),
        None if d.reachable => ("good", "reachable".to_owned()),
        None => ("bad", "unreachable".to_owned()),
    };
    html! { span.(format!("conn conn-{class}")) { (text) } }
}

/// `k=v&…` of the given, non-empty values.
fn url_query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) {
            out.append_pair(k, v);
        }
    }
    out.finish()
}

/// One device: facts, inventory, open findings, the runs that touched it,
/// its changes.
pub(super) async fn device(
    State(state): State<ApiState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    finish(device_page(state, signed, id).await)
}

async fn device_page(state: ApiState, signed: Signed, id: String) -> PageResult {
    let caller = &signed.caller;
    let d = inventory::get_device(State(state.clone()), caller.clone(), Path(id))
        .await
        .or_page(&signed)?
        .0;
    let tenant = state.tenant(caller, &d.tenant_id).await.or_page(&signed)?;
    let findings: Vec<Finding> = state
        .store()
        .findings(&d.tenant_id, true)
        .await
        .or_page(&signed)?
        .into_iter()
        .filter(|f| f.device_id.as_ref() == Some(&d.id))
        .collect();
    let jobs = state
        .store()
        .jobs_of_device(&d.id, 20)
        .await
        .or_page(&signed)?;
    let changes = state
        .store()
        .changes_of_device(&d.id, 50)
        .await
        .or_page(&signed)?;
    let body = html! {
        dl.facts {
            dt { "Tenant" } dd { (tenant.name) " (" (tenant.tier) ")" }
            dt { "Connection" } dd { (connection(&d)) }
            dt { "Last seen" } dd { (when_opt(d.last_seen_at)) }
            dt { "Tags" } dd { @for t in &d.tags { span.tag { (t) } " " } }
        }
        h2 { "Open findings" }
        (findings_table(&findings, None))
        h2 { "Runs that touched it" }
        @if jobs.is_empty() { p.empty { "No jobs yet." } } @else {
            table { thead { tr { th { "Run" } th { "Plugin" } th { "Mode" } th { "Status" } th { "Finished" } } }
                tbody { @for j in &jobs { tr {
                    td { a href=(format!("/runs/{}", j.run_id)) { (short(j.run_id.as_str())) } }
                    td { (j.plugin) } td { (j.mode) }
                    td { span class=(status_class(j.status.as_str())) { (j.status) } }
                    td { (when_opt(j.finished_at)) }
                } } }
            }
        }
        h2 { "Changes" }
        (changes_table(changes.iter().map(|c| &c.change), None))
        h2 { "Facts" }
        pre.json { (pretty(&d.facts)) }
        h2 { "Inventory" }
        pre.json { (pretty(&d.admin)) }
    };
    Ok(page(
        Some(&signed),
        &format!("Device {}", d.name),
        false,
        body,
    ))
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// The last characters of an id (its random part: the first are the time
/// it was made), enough to tell objects apart on a page.
fn short(id: &str) -> &str {
    id.get(id.len().saturating_sub(10)..).unwrap_or(id)
}

/// The names of the devices `ids` that the caller sees, by id.
async fn device_names<'a>(
    state: &ApiState,
    signed: &Signed,
    ids: impl Iterator<Item = &'a steward_store::DeviceId>,
) -> Result<HashMap<String, String>, PageError> {
    let mut ids: Vec<&str> = ids.map(steward_store::DeviceId::as_str).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(state
        .store()
        .devices_by_id(&ids)
        .await
        .or_page(signed)?
        .into_iter()
        .filter(|d| signed.caller.sees(Some(&d.tenant_id)))
        .map(|d| (d.id.to_string(), d.name))
        .collect())
}

/// A link to a device, by name when known.
fn device_link(id: &steward_store::DeviceId, names: &HashMap<String, String>) -> Markup {
    html! { a href=(format!("/devices/{id}")) { (names.get(id.as_str()).map_or(short(id.as_str()), String::as_str)) } }
}

fn findings_table(findings: &[Finding], names: Option<&HashMap<String, String>>) -> Markup {
    html! {
        @if findings.is_empty() { p.empty { "None." } } @else {
            table.findings {
                thead { tr {
                    th { "Severity" } @if names.is_some() { th { "Device" } } th { "Plugin" } th { "Finding" } th { "First seen" }
                } }
                tbody { @for f in findings { tr {
                    td { span class=(severity_class(f.severity)) { (f.severity) } }
                    @if let Some(names) = names { td { @if let Some(d) = &f.device_id { (device_link(d, names)) } } }
                    td { (f.plugin) }
                    td { (f.summary) }
                    td { (when(f.first_seen_at)) }
                } } }
            }
        }
    }
}

fn changes_table<'a>(
    changes: impl Iterator<Item = &'a steward_store::NewChange>,
    heading: Option<&str>,
) -> Markup {
    let changes: Vec<_> = changes.collect();
    html! {
        @if let Some(h) = heading { h3 { (h) } }
        @if changes.is_empty() { p.empty { "None." } } @else {
            table.changes {
                thead { tr { th { "Outcome" } th { "Kind" } th { "Target" } th { "Change" } th { "Before" } th { "After" } } }
                tbody { @for c in &changes { tr {
                    td { span class=(status_class(c.outcome.as_str())) { (c.outcome) } }
                    td { (c.kind) } td { (c.target) } td { (c.description) }
                    td { (c.before.as_deref().unwrap_or("—")) } td { (c.after.as_deref().unwrap_or("—")) }
                } } }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RunsQuery {
    tenant: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
}

/// Runs, newest first, a page at a time.
pub(super) async fn runs(
    State(state): State<ApiState>,
    signed: Signed,
    Query(q): Query<RunsQuery>,
) -> Response {
    finish(runs_page(state, signed, q).await)
}

async fn runs_page(state: ApiState, signed: Signed, q: RunsQuery) -> PageResult {
    const LIMIT: u32 = 50;
    let caller = &signed.caller;
    let tenants = tenants_of(&state, &signed).await?;
    let tenant = given(&q.tenant).map(TenantId::from);
    if let Some(t) = &tenant {
        state.tenant(caller, t).await.or_page(&signed)?;
    }
    let status = match given(&q.status) {
        Some(s) => Some(
            s.parse::<RunStatus>()
                .map_err(|e| PageError::new(&signed, ApiError::invalid("status", e.to_string())))?,
        ),
        None => None,
    };
    let items = state
        .store()
        .list_runs(&RunFilter {
            scope: caller.scope.clone(),
            tenant: tenant.clone(),
            status,
            plugin: None,
            since: None,
            until: None,
            before: given(&q.cursor).map(RunId::from),
            limit: LIMIT,
        })
        .await
        .or_page(&signed)?;
    let mut progress = HashMap::new();
    for r in items.iter().filter(|r| r.status == RunStatus::Running) {
        progress.insert(
            r.id.clone(),
            state
                .store()
                .job_counts_of_run(&r.id)
                .await
                .or_page(&signed)?,
        );
    }
    let playbooks = playbook_names(&state, &signed).await?;
    let tenant_names: HashMap<_, _> = tenants
        .iter()
        .map(|t| (t.id.clone(), t.name.clone()))
        .collect();
    let next = (items.len() == LIMIT as usize)
        .then(|| items.last().map(|r| r.id.to_string()))
        .flatten();
    let live = !progress.is_empty();
    let body = html! {
        form.filters method="get" action="/runs" {
            label { "Tenant " select name="tenant" {
                option value="" { "All" }
                @for t in &tenants { option value=(t.id) selected[tenant.as_ref() == Some(&t.id)] { (t.name) } }
            } }
            label { "Status " select name="status" {
                option value="" { "Any" }
                @for s in RunStatus::ALL { option value=(s) selected[status == Some(*s)] { (s) } }
            } }
            button type="submit" { "Filter" }
        }
        table.runs {
            thead { tr { th { "Run" } th { "Playbook" } th { "Tenant" } th { "Status" } th { "Progress" } th { "Started" } th { "Finished" } } }
            tbody { @for r in &items { tr {
                td { a href=(format!("/runs/{}", r.id)) { (short(r.id.as_str())) } }
                td { (r.playbook_id.as_ref().and_then(|p| playbooks.get(p.as_str())).map_or("—", String::as_str)) }
                td { (r.tenant_id.as_ref().and_then(|t| tenant_names.get(t)).map_or("every tenant", String::as_str)) }
                td { span class=(status_class(r.status.as_str())) { (r.status) } }
                td { @if let Some(c) = progress.get(&r.id) { (counts_bar(c)) } }
                td { (when(r.created_at)) }
                td { (when_opt(r.finished_at)) }
            } } }
        }
        @if items.is_empty() { p.empty { "No runs." } }
        @if let Some(n) = next {
            nav.pager { a href=(format!("/runs?{}", url_query(&[("tenant", q.tenant.as_deref()), ("status", q.status.as_deref()), ("cursor", Some(&n))]))) { "Older →" } }
        }
    };
    Ok(page(Some(&signed), "Runs", live, body))
}

fn counts_bar(counts: &HashMap<JobStatus, u64>) -> Markup {
    let total: u64 = counts.values().sum();
    let done = counts.get(&JobStatus::Succeeded).copied().unwrap_or(0);
    let failed: u64 = [JobStatus::Failed, JobStatus::TimedOut, JobStatus::Expired]
        .iter()
        .filter_map(|s| counts.get(s))
        .sum();
    let ended: u64 = counts
        .iter()
        .filter(|(s, _)| s.is_terminal())
        .map(|(_, n)| n)
        .sum();
    html! { (progress_bar(done, failed, total)) " " span.count { (ended) "/" (total) } }
}

/// The tenants the caller sees, as the API lists them.
async fn tenants_of(state: &ApiState, signed: &Signed) -> Result<Vec<Tenant>, PageError> {
    Ok(
        inventory::list_tenants(State(state.clone()), signed.caller.clone())
            .await
            .or_page(signed)?
            .0,
    )
}

/// Playbook names by id, as the caller sees them.
async fn playbook_names(
    state: &ApiState,
    signed: &Signed,
) -> Result<HashMap<String, String>, PageError> {
    Ok(playbooks::list_playbooks(
        State(state.clone()),
        signed.caller.clone(),
        Query(playbooks::PlaybookFilter { tenant: None }),
    )
    .await
    .or_page(signed)?
    .0
    .into_iter()
    .map(|p| (p.id.to_string(), p.name))
    .collect())
}

/// One run: its jobs, findings, planned and applied changes, logs and pins.
pub(super) async fn run(
    State(state): State<ApiState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    finish(run_page(state, signed, id).await)
}

/// Log lines a run's page shows, the newest.
const LOG_LINES: u32 = 500;

async fn run_page(state: ApiState, signed: Signed, id: String) -> PageResult {
    let caller = &signed.caller;
    let r = state
        .run(caller, &RunId::from(id.clone()))
        .await
        .or_page(&signed)?;
    let counts = state
        .store()
        .job_counts_of_run(&r.id)
        .await
        .or_page(&signed)?;
    let jobs = runs::run_jobs(
        State(state.clone()),
        caller.clone(),
        Path(id.clone()),
        Query(runs::JobQuery {
            cursor: None,
            limit: Some(500),
        }),
    )
    .await
    .or_page(&signed)?
    .0;
    let findings = runs::run_findings(State(state.clone()), caller.clone(), Path(id.clone()))
        .await
        .or_page(&signed)?
        .0;
    let changes = runs::run_changes(State(state.clone()), caller.clone(), Path(id.clone()))
        .await
        .or_page(&signed)?
        .0;
    // The end of the log: a line more than shown says there is more.
    let mut logs = state
        .store()
        .log_tail_of_run(&r.id, LOG_LINES + 1)
        .await
        .or_page(&signed)?;
    let more_logs = logs.len() > LOG_LINES as usize;
    if more_logs {
        logs.remove(0);
    }
    let playbooks = playbook_names(&state, &signed).await?;
    let names = device_names(
        &state,
        &signed,
        jobs.items
            .iter()
            .filter_map(|j| j.device_id.as_ref())
            .chain(findings.iter().filter_map(|f| f.device_id.as_ref())),
    )
    .await?;
    let total: u64 = counts.values().sum();
    let running = r.status == RunStatus::Running;
    let by_outcome = |o: steward_store::ChangeOutcome| {
        changes
            .iter()
            .filter(move |c| c.change.outcome == o)
            .map(|c| &c.change)
    };
    let body = html! {
        dl.facts {
            dt { "Playbook" } dd { (r.playbook_id.as_ref().and_then(|p| playbooks.get(p.as_str())).map_or("—", String::as_str)) }
            dt { "Status" } dd { span id="run-status" class=(status_class(r.status.as_str())) { (r.status) } }
            dt { "Progress" } dd { (counts_bar(&counts)) }
            dt { "Started" } dd { (when(r.created_at)) }
            dt { "Finished" } dd { (when_opt(r.finished_at)) }
            @if let Some(pins) = &r.pins {
                dt { "Pinned versions" } dd { @for p in pins { span.tag { (p.plugin) " " (p.version) " " (short(&p.digest)) } " " } }
            }
        }
        @if running && may_change(&signed) {
            form method="post" action=(format!("/runs/{}/cancel", r.id)) {
                (csrf_field(&signed))
                button.danger type="submit" { "Cancel run" }
            }
        }
        @if counts.get(&JobStatus::AwaitingApproval).copied().unwrap_or(0) > 0 {
            p { a href="/approvals" { (counts[&JobStatus::AwaitingApproval]) " job(s) await approval →" } }
        }
        h2 { "Findings" }
        (findings_table(&findings, Some(&names)))
        h2 { "Changes" }
        (changes_table(by_outcome(steward_store::ChangeOutcome::Planned), Some("Planned")))
        (changes_table(by_outcome(steward_store::ChangeOutcome::Applied), Some("Applied")))
        h2 { "Jobs" @if total as usize > jobs.items.len() { " (first " (jobs.items.len()) " of " (total) ")" } }
        table.jobs {
            thead { tr { th { "Device" } th { "Plugin" } th { "Mode" } th { "Status" } th { "Attempts" } th { "Error" } } }
            tbody { @for j in &jobs.items { tr {
                td { @if let Some(d) = &j.device_id { (device_link(d, &names)) } @else { "—" } }
                td { (j.plugin) } td { (j.mode) }
                td { span class=(status_class(j.status.as_str())) { (j.status) } }
                td.num { (j.attempt) }
                td { (j.last_error.as_deref().unwrap_or("")) }
            } } }
        }
        h2 { "Log" @if more_logs { " (last " (LOG_LINES) " lines)" } }
        @if logs.is_empty() { p.empty { "No log lines." } } @else {
            pre.log { @for l in &logs { (when(l.at)) " " (l.level) " " (l.message) "\n" } }
        }
    };
    Ok(page(
        Some(&signed),
        &format!("Run {}", short(r.id.as_str())),
        running,
        body,
    ))
}

/// Cancels a run (technician), as `POST /api/v1/runs/{id}/cancel`.
pub(super) async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Posted { signed, .. }: Posted,
) -> Response {
    match runs::cancel_run(State(state), signed.caller.clone(), Path(id.clone())).await {
        Ok(_) => see_other(&format!("/runs/{id}")),
        Err(e) => error_page(Some(&signed), &e),
    }
}

/// The approval queue across the user's tenants.
pub(super) async fn approvals(State(state): State<ApiState>, signed: Signed) -> Response {
    finish(approvals_page(state, signed).await)
}

async fn approvals_page(state: ApiState, signed: Signed) -> PageResult {
    let caller = &signed.caller;
    let queue = runs::list_approvals(State(state.clone()), caller.clone())
        .await
        .or_page(&signed)?
        .0;
    let tenants: HashMap<_, _> = tenants_of(&state, &signed)
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    let names = device_names(
        &state,
        &signed,
        queue.iter().filter_map(|a| a.job.device_id.as_ref()),
    )
    .await?;
    let body = html! {
        @if queue.is_empty() { p.empty { "Nothing awaits approval." } }
        @for a in &queue {
            section.approval id=(format!("approval-{}", a.job.id)) {
                h2 {
                    (a.job.plugin) " on "
                    @if let Some(d) = &a.job.device_id { (device_link(d, &names)) } @else { "the tenant" }
                    " · " (tenants.get(&a.job.tenant_id).map_or(a.job.tenant_id.as_str(), String::as_str))
                }
                p { "Run " a href=(format!("/runs/{}", a.job.run_id)) { (short(a.job.run_id.as_str())) } " · waiting since " (when(a.job.created_at)) }
                (changes_table(a.planned.iter(), Some("Planned changes")))
                @if may_change(&signed) {
                    form.decide method="post" action=(format!("/approvals/{}/approve", a.job.id)) {
                        (csrf_field(&signed))
                        label { "Comment " input type="text" name="comment" maxlength="500"; }
                        button.approve type="submit" { "Approve" }
                        button.danger type="submit" formaction=(format!("/approvals/{}/reject", a.job.id)) { "Reject" }
                    }
                }
            }
        }
    };
    Ok(page(Some(&signed), "Approvals", true, body))
}

/// Approves or rejects a job's plan (technician), as the API's approval
/// routes.
pub(super) async fn decide(
    State(state): State<ApiState>,
    Path((job, decision)): Path<(String, String)>,
    Posted { signed, fields }: Posted,
) -> Response {
    let comment = runs::Decision {
        comment: fields.get("comment").cloned().unwrap_or_default(),
    };
    let caller = signed.caller.clone();
    let decided = match decision.as_str() {
        "approve" => runs::approve(State(state), caller, Path(job), Json(comment)).await,
        "reject" => runs::reject(State(state), caller, Path(job), Json(comment)).await,
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no-route",
            "no such decision",
        )),
    };
    match decided {
        Ok(_) => see_other("/approvals"),
        Err(e) => error_page(Some(&signed), &e),
    }
}

/// Playbooks, with a button to run each now.
pub(super) async fn playbooks(State(state): State<ApiState>, signed: Signed) -> Response {
    finish(playbooks_page(state, signed).await)
}

async fn playbooks_page(state: ApiState, signed: Signed) -> PageResult {
    let caller = &signed.caller;
    let list = playbooks::list_playbooks(
        State(state.clone()),
        caller.clone(),
        Query(playbooks::PlaybookFilter { tenant: None }),
    )
    .await
    .or_page(&signed)?
    .0;
    let tenants = tenants_of(&state, &signed).await?;
    let names: HashMap<_, _> = tenants
        .iter()
        .map(|t| (t.id.clone(), t.name.clone()))
        .collect();
    let body = html! {
        @if list.is_empty() { p.empty { "No playbooks." } }
        table.playbooks {
            thead { tr { th { "Playbook" } th { "Tenant" } th { "Steps" } th {} } }
            tbody { @for p in &list { tr {
                td { (p.name) }
                td { (p.tenant_id.as_ref().and_then(|t| names.get(t)).map_or("every tenant", String::as_str)) }
                td { @for s in p.steps.as_array().into_iter().flatten() {
                    span.tag { (s.get("plugin").and_then(|v| v.as_str()).unwrap_or("?")) } " "
                } }
                td { @if may_change(&signed) {
                    form.inline method="post" action=(format!("/playbooks/{}/run", p.id)) {
                        (csrf_field(&signed))
                        @if p.tenant_id.is_none() {
                            select name="tenant" { @for t in &tenants { option value=(t.id) { (t.name) } } }
                        }
                        button type="submit" { "Run now" }
                    }
                } }
            } } }
        }
    };
    Ok(page(Some(&signed), "Playbooks", false, body))
}

/// Starts a run of a playbook (technician), as
/// `POST /api/v1/playbooks/{id}/runs`, and shows it.
pub(super) async fn start(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Posted { signed, fields }: Posted,
) -> Response {
    let start = playbooks::StartRun {
        tenant_id: fields
            .get("tenant")
            .filter(|t| !t.is_empty())
            .map(|t| TenantId::from(t.as_str())),
    };
    match playbooks::start_run(State(state), signed.caller.clone(), Path(id), Json(start)).await {
        Ok((_, run)) => see_other(&format!("/runs/{}", run.0.id)),
        Err(e) => error_page(Some(&signed), &e),
    }
}

/// Schedules with their next firing in their own time zone and window.
pub(super) async fn schedules(State(state): State<ApiState>, signed: Signed) -> Response {
    finish(schedules_page(state, signed).await)
}

async fn schedules_page(state: ApiState, signed: Signed) -> PageResult {
    let list = playbooks::list_schedules(
        State(state.clone()),
        signed.caller.clone(),
        Query(playbooks::ScheduleFilter { playbook: None }),
    )
    .await
    .or_page(&signed)?
    .0;
    let names = playbook_names(&state, &signed).await?;
    let now = Timestamp::now();
    let body = html! {
        @if list.is_empty() { p.empty { "No schedules." } }
        table.schedules {
            thead { tr { th { "Playbook" } th { "When" } th { "Time zone" } th { "Next firings (its time zone)" } th { "Next (UTC)" } th { "Window" } th { "Enabled" } } }
            tbody { @for s in &list {
                @let spec = serde_json::from_value::<steward_control::schedule::ScheduleSpec>(s.spec.clone()).ok();
                // A firing written ahead is the latest handled and still to come.
                @let next = s.last_fired_at.filter(|t| *t > now).or(s.next_fire_at);
                tr {
                    td { (names.get(s.playbook_id.as_str()).map_or(s.playbook_id.as_str(), String::as_str)) }
                    td { code { (spec.as_ref().map_or("?", |x| x.cron.as_str())) } }
                    td { (spec.as_ref().map_or("?", |x| x.timezone.as_str())) }
                    td { (local_time(next, spec.as_ref().map(|x| x.timezone.as_str())))
                        @if s.enabled {
                            @for t in later_firings(spec.as_ref(), next) {
                                br; span.muted { (local_time(Some(t), spec.as_ref().map(|x| x.timezone.as_str()))) }
                            }
                        }
                    }
                    td { (when_opt(next)) }
                    td { @match spec.as_ref().and_then(|x| x.window.as_ref()) {
                        Some(w) => { (window_text(w)) }
                        None => { "any time" }
                    } }
                    td { @if s.enabled { "yes" } @else { span.status-cancelled { "no" } } }
                }
            } }
        }
    };
    Ok(page(Some(&signed), "Schedules", false, body))
}

/// The two firings after `next`, as the schedule computes them.
fn later_firings(
    spec: Option<&steward_control::schedule::ScheduleSpec>,
    next: Option<Timestamp>,
) -> Vec<Timestamp> {
    let (Some(spec), Some(mut at)) = (spec, next) else {
        return Vec::new();
    };
    let Ok(compiled) = spec.compile() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while out.len() < 2 {
        match compiled.next_after(at.to_utc()) {
            Some(t) => {
                at = Timestamp::from(t);
                out.push(at);
            }
            None => break,
        }
    }
    out
}

fn local_time(t: Option<Timestamp>, tz: Option<&str>) -> String {
    let (Some(t), Some(tz)) = (t, tz.and_then(|z| z.parse::<chrono_tz::Tz>().ok())) else {
        return "—".to_owned();
    };
    t.to_utc()
        .with_timezone(&tz)
        .format("%a %Y-%m-%d %H:%M %Z")
        .to_string()
}

fn window_text(w: &steward_control::schedule::WindowSpec) -> String {
    let days = if w.days.is_empty() {
        "every day".to_owned()
    } else {
        w.days
            .iter()
            .filter_map(|d| serde_json::to_value(d).ok())
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("{days}, {}–{}", w.start, w.end)
}

/// Installed plugin versions and their grants.
pub(super) async fn plugins(State(state): State<ApiState>, signed: Signed) -> Response {
    finish(plugins_page(state, signed).await)
}

async fn plugins_page(state: ApiState, signed: Signed) -> PageResult {
    let list = playbooks::list_plugins(State(state.clone()), signed.caller.clone())
        .await
        .or_page(&signed)?
        .0;
    let mut by_name: BTreeMap<&str, Vec<&steward_store::PluginVersion>> = BTreeMap::new();
    for v in &list {
        by_name.entry(v.plugin.as_str()).or_default().push(v);
    }
    // What the registry offers for each plugin installed from it, within
    // its requirement and at its newest (admins, as the API's offer).
    let mut offers = Vec::new();
    if state.inner.registry.is_some()
        && signed.caller.user.role.at_least(steward_store::Role::Admin)
    {
        for versions in by_name.values() {
            let Some(current) = versions.iter().rev().find(|v| v.source.is_some()) else {
                continue;
            };
            let source = current.source.as_ref().expect("found with a source");
            let mut within: Option<String> = None;
            for requirement in [source.requirement.as_str(), "*"] {
                let asked = crate::registry::OfferQuery {
                    module: format!("{}@{requirement}", source.module),
                };
                let offer = crate::registry::offer(
                    State(state.clone()),
                    signed.caller.clone(),
                    Query(asked),
                )
                .await
                .map(|o| o.0)
                .map_err(|e| e.detail().to_owned());
                let version = offer.as_ref().ok().map(|o| o.version.clone());
                // The newest is shown only when it is another version.
                if requirement == "*" && version.is_some() && version == within {
                    continue;
                }
                within = version;
                offers.push((*current, requirement.to_owned(), offer));
            }
        }
    }
    let body = html! {
        @if list.is_empty() { p.empty { "No plugins installed." } }
        table.plugins {
            thead { tr { th { "Plugin" } th { "Version" } th { "Digest" } th { "Granted capabilities" } th { "From" } th { "Installed" } } }
            tbody { @for (name, versions) in &by_name { @for v in versions { tr {
                td { (name) } td { (v.version) } td { code { (short(&v.digest)) } }
                td { @for g in &v.grants { span.tag { (g) } " " } }
                td { @if let Some(src) = &v.source { (src.module) " " (src.requirement) } @else { "upload" } }
                td { (when(v.installed_at)) }
            } } } }
        }
        @if !offers.is_empty() {
            h2 { "Registry offers" }
            table.offers {
                thead { tr { th { "Plugin" } th { "Installed" } th { "Asked" } th { "Offered" } th { "Capabilities it asks for" } th { "Signed" } th {} } }
                tbody { @for (current, requirement, offer) in &offers { tr {
                    td { (current.plugin) } td { (current.version) } td { code { (requirement) } }
                    @match offer {
                        Err(e) => { td colspan="4" { span.error { (e) } } }
                        Ok(o) => {
                            @let granted: Vec<&str> = current.grants.iter().map(|g| g.split('=').next().unwrap_or(g)).collect();
                            @let new: Vec<&String> = o.capabilities.iter().filter(|c| !granted.contains(&c.as_str())).collect();
                            td { (o.version) @if o.version == current.version { " " span.muted { "(installed)" } } }
                            td {
                                @for c in &o.capabilities {
                                    @if new.contains(&c) { span.tag.sev-warning title="not granted now" { (c) " (new)" } } @else { span.tag { (c) } }
                                    " "
                                }
                                @if o.capabilities.is_empty() { "none" }
                            }
                            td { (o.signed_by.as_deref().unwrap_or("unsigned")) " · " (serde_json::to_value(&o.trust).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) }
                            td { @if o.version != current.version {
                                form.inline method="post" action=(format!("/plugins/{}/upgrade", current.plugin)) {
                                    (csrf_field(&signed))
                                    input type="hidden" name="requirement" value=(if requirement == "*" { format!("^{}", o.version.split('.').next().unwrap_or("0")) } else { requirement.clone() });
                                    @for (i, c) in new.iter().enumerate() {
                                        label { "grant " input type="text" name=(format!("grant-{i}")) value=(c) size="14"; }
                                    }
                                    button type="submit" { "Upgrade to " (o.version) }
                                }
                            } }
                        }
                    }
                } } }
            }
            p.hint { "A capability marked new is not granted to the installed version; upgrading grants what its field says (narrow it, for example " code { "tickets=vendor" } ")." }
        }
    };
    Ok(page(Some(&signed), "Plugins", false, body))
}

/// Upgrades a plugin from the registry (admin), as
/// `POST /api/v1/plugins/{name}/upgrade`: the requirement and the grants
/// for new capabilities come from the form, added to the current grants.
pub(super) async fn upgrade(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Posted { signed, fields }: Posted,
) -> Response {
    let mut added: Vec<(usize, String)> = fields
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("grant-")?.parse().ok()?, v.trim().to_owned())))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    added.sort();
    let grants = if added.is_empty() {
        None
    } else {
        let current = match state.store().plugin_versions().await {
            Ok(all) => all
                .into_iter()
                .rfind(|v| v.plugin == name)
                .map(|v| v.grants)
                .unwrap_or_default(),
            Err(e) => return error_page(Some(&signed), &e.into()),
        };
        Some(
            current
                .into_iter()
                .chain(added.into_iter().map(|(_, g)| g))
                .collect(),
        )
    };
    let ask = crate::registry::UpgradePlugin {
        requirement: fields.get("requirement").filter(|r| !r.is_empty()).cloned(),
        grants,
    };
    match crate::registry::upgrade(State(state), signed.caller.clone(), Path(name), Json(ask)).await
    {
        Ok(_) => see_other("/plugins"),
        Err(e) => error_page(Some(&signed), &e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditPageQuery {
    tenant: Option<String>,
    actor: Option<String>,
    /// From this day (UTC), inclusive.
    #[serde(default, deserialize_with = "empty_date")]
    since: Option<chrono::NaiveDate>,
    /// To this day (UTC), inclusive.
    #[serde(default, deserialize_with = "empty_date")]
    until: Option<chrono::NaiveDate>,
    cursor: Option<String>,
}

/// The audit trail, newest first.
pub(super) async fn audit(
    State(state): State<ApiState>,
    signed: Signed,
    Query(q): Query<AuditPageQuery>,
) -> Response {
    finish(audit_page(state, signed, q).await)
}

async fn audit_page(state: ApiState, signed: Signed, q: AuditPageQuery) -> PageResult {
    let caller = &signed.caller;
    let tenant = given(&q.tenant).map(TenantId::from);
    if let Some(t) = &tenant {
        state.tenant(caller, t).await.or_page(&signed)?;
    }
    let page_of = people::list_audit(
        State(state.clone()),
        caller.clone(),
        Query(people::AuditQuery {
            tenant: tenant.clone(),
            actor: given(&q.actor).map(str::to_owned),
            since: q
                .since
                .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc()),
            until: q
                .until
                .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc() + chrono::Duration::days(1)),
            cursor: given(&q.cursor).map(str::to_owned),
            limit: Some(100),
        }),
    )
    .await
    .or_page(&signed)?
    .0;
    let tenants = tenants_of(&state, &signed).await?;
    let body = html! {
        form.filters method="get" action="/audit" {
            label { "Tenant " select name="tenant" {
                option value="" { "All" }
                @for t in &tenants { option value=(t.id) selected[tenant.as_ref() == Some(&t.id)] { (t.name) } }
            } }
            label { "Actor " input type="text" name="actor" value=(q.actor.as_deref().unwrap_or("")) placeholder="user:alice"; }
            label { "From " input type="date" name="since" value=(q.since.map(|d| d.to_string()).unwrap_or_default()); }
            label { "To " input type="date" name="until" value=(q.until.map(|d| d.to_string()).unwrap_or_default()); }
            button type="submit" { "Filter" }
        }
        table.audit {
            thead { tr { th { "When" } th { "Actor" } th { "Action" } th { "Outcome" } th { "Detail" } } }
            tbody { @for e in &page_of.items { tr {
                td { (when(e.at)) } td { (e.actor) } td { (e.action) }
                td { span class=(status_class(&e.outcome)) { (e.outcome) } }
                td { code { (e.detail.to_string()) } }
            } } }
        }
        @if let Some(n) = &page_of.next_cursor {
            nav.pager { a href=(format!("/audit?{}", url_query(&[("tenant", q.tenant.as_deref()), ("actor", q.actor.as_deref()), ("since", q.since.map(|d| d.to_string()).as_deref()), ("until", q.until.map(|d| d.to_string()).as_deref()), ("cursor", Some(n))]))) { "Older →" } }
        }
    };
    Ok(page(Some(&signed), "Audit", false, body))
}

/// A date field a form may leave empty.
fn empty_date<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<chrono::NaiveDate>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => t.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ReportPick {
    month: Option<String>,
}

/// Monthly client reports: a tenant and a month, then the document.
pub(super) async fn reports(State(state): State<ApiState>, signed: Signed) -> Response {
    finish(reports_page(state, signed).await)
}

async fn reports_page(state: ApiState, signed: Signed) -> PageResult {
    let tenants = tenants_of(&state, &signed).await?;
    // The month just ended is the one a client asks for.
    let now = chrono::Utc::now().date_naive();
    let last = now
        .with_day(1)
        .and_then(|d| d.checked_sub_months(chrono::Months::new(1)))
        .unwrap_or(now)
        .format("%Y-%m")
        .to_string();
    let body = html! {
        p { "One self-contained, printable document per tenant and month: time to remediate against the tier's target, patch compliance, antivirus health, accounts unlocked, incidents and the hardware refresh forecast. Print it to PDF from the browser, or run " code { "steward report --tenant NAME --month YYYY-MM --format pdf" } "." }
        table.reports {
            thead { tr { th { "Tenant" } th { "Tier" } th { "Report" } } }
            tbody { @for t in &tenants { tr {
                td { (t.name) } td { (t.tier) }
                td { form.inline method="get" action=(format!("/reports/{}", t.id)) {
                    input type="month" name="month" value=(last) required;
                    button type="submit" { "Open report" }
                } }
            } } }
        }
    };
    Ok(page(Some(&signed), "Reports", false, body))
}

/// A tenant's report for a month, as the API serves it.
pub(super) async fn report(
    State(state): State<ApiState>,
    signed: Signed,
    Path(tenant): Path<String>,
    Query(q): Query<ReportPick>,
) -> Response {
    let month = q.month.unwrap_or_default();
    match crate::report::report_for(&state, &signed.caller, &TenantId::from(tenant), &month).await {
        Ok(r) => crate::report::html_response(&r),
        Err(e) => error_page(Some(&signed), &e),
    }
}
