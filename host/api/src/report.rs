//! A tenant's monthly report: `GET /api/v1/reports/{tenant}?month=YYYY-MM`
//! as JSON or as one self-contained HTML document (inline style, inline SVG
//! charts, print CSS), the same the console links and `steward report`
//! saves. The figures are computed by [`steward_control::report`].

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::auth::Caller;
use super::body::{Path, Query};
use super::problem::{ApiError, ApiResult, Problem};
use steward_control::report::{Month, MonthReport, month_report};
use steward_store::{TenantId, Timestamp};

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(get_report))
}

/// Which report.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// The calendar month (UTC), `YYYY-MM`.
    #[param(pattern = "^2[0-9]{3}-(0[1-9]|1[0-2])$")]
    pub month: String,
    /// `html` (default): one printable document; `json`: the figures.
    pub format: Option<ReportFormat>,
}

/// A report's form.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ReportFormat {
    /// One self-contained, printable HTML document.
    Html,
    /// The figures as JSON.
    Json,
}

/// A tenant's monthly service report (viewers and up): time to remediate
/// against the tier's target with every miss, patch compliance, backups
/// (RPO compliance, restore tests), antivirus
/// health, accounts unlocked with their tickets, incidents and the
/// hardware refresh forecast, all computed from the store.
#[utoipa::path(get, path = "/api/v1/reports/{tenant}", tag = "reports",
    params(("tenant" = String, Path, description = "Tenant id"), ReportQuery),
    responses(
        (status = 200, content(
            (MonthReport = "application/json"),
            (String = "text/html"))),
        (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn get_report(
    State(state): State<ApiState>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(q): Query<ReportQuery>,
) -> ApiResult<Response> {
    let report = report_for(&state, &caller, &TenantId::from(tenant), &q.month).await?;
    Ok(match q.format.unwrap_or(ReportFormat::Html) {
        ReportFormat::Json => axum::Json(report).into_response(),
        ReportFormat::Html => html_response(&report),
    })
}

/// How long a tenant's month so far (the fleet page's charts) is served
/// from memory.
pub const TRENDS_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// A tenant's month, and when it was computed.
type Trend = (std::time::Instant, std::sync::Arc<MonthReport>);

/// Tenants' months so far, recently computed.
#[derive(Debug, Default)]
pub struct TrendCache {
    entries: std::sync::Mutex<std::collections::HashMap<(TenantId, String), Trend>>,
}

impl ApiState {
    /// `tenant`'s report of the month so far (the caller has been checked
    /// to see the tenant), computed at most once per [`TRENDS_TTL`].
    pub(crate) async fn month_so_far(
        &self,
        tenant: &TenantId,
    ) -> ApiResult<Option<std::sync::Arc<MonthReport>>> {
        let month = chrono::Utc::now().format("%Y-%m").to_string();
        let key = (tenant.clone(), month.clone());
        if let Some((at, r)) = self
            .inner
            .trends
            .entries
            .lock()
            .expect("trends lock")
            .get(&key)
            && at.elapsed() < TRENDS_TTL
        {
            return Ok(Some(r.clone()));
        }
        let month = Month::parse(&month).expect("this month parses");
        let Some(report) = month_report(self.store(), tenant, month).await? else {
            return Ok(None);
        };
        let report = std::sync::Arc::new(report);
        let mut entries = self.inner.trends.entries.lock().expect("trends lock");
        if entries.len() >= 1024 {
            entries.retain(|_, (at, _)| at.elapsed() < TRENDS_TTL);
        }
        entries.insert(key, (std::time::Instant::now(), report.clone()));
        Ok(Some(report))
    }
}

/// The report, if the caller sees the tenant.
pub(crate) async fn report_for(
    state: &ApiState,
    caller: &Caller,
    tenant: &TenantId,
    month: &str,
) -> ApiResult<MonthReport> {
    let month = Month::parse(month).map_err(|e| {
        ApiError::new(axum::http::StatusCode::BAD_REQUEST, "invalid-query", e).with_field("month")
    })?;
    let tenant = state.tenant(caller, tenant).await?;
    month_report(state.store(), &tenant.id, month)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant", tenant.id.as_str()))
}

/// The document as a response (its own style; nothing else loaded).
pub(crate) fn html_response(report: &MonthReport) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        render(report).into_string(),
    )
        .into_response()
}

const STYLE: &str = "
body { font: 11pt/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #111827; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 1.8rem; border-bottom: 2px solid #1d4ed8; padding-bottom: .2rem; }
.sub { color: #6b7280; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #e5e7eb; vertical-align: top; }
th { color: #6b7280; font-weight: 600; font-size: .9em; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.kpis { display: flex; gap: 1rem; flex-wrap: wrap; } .kpi { border: 1px solid #e5e7eb; border-radius: 6px; padding: .5rem .8rem; min-width: 10rem; }
.kpi b { display: block; font-size: 1.5rem; } .met { color: #15803d; } .missed { color: #b91c1c; } .muted { color: #6b7280; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } table, svg { break-inside: avoid; } }
";

fn day(t: Timestamp) -> String {
    t.to_utc().format("%Y-%m-%d %H:%M").to_string()
}

fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    let whole = (c / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{sign}{grouped}.{:02}", c % 100)
}

fn hours(h: Option<f64>) -> String {
    h.map_or_else(|| "—".to_owned(), |h| format!("{h:.1} h"))
}

fn percent(p: Option<f64>) -> String {
    p.map_or_else(|| "—".to_owned(), |p| format!("{p:.1} %"))
}

/// The document.
pub(crate) fn render(r: &MonthReport) -> Markup {
    let pct = |n: u32, of: u32| {
        if of == 0 {
            "—".to_owned()
        } else {
            format!("{:.0} %", f64::from(n) * 100.0 / f64::from(of))
        }
    };
    let met: u32 = r.remediation.iter().map(|s| s.met).sum();
    let missed: u32 = r.remediation.iter().map(|s| s.missed).sum();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (r.tenant.name) " · service report " (r.month) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { (r.tenant.name) ": service report, " (r.month) }
                p.sub { "Tier " b { (r.tenant.tier) } " · remediation target " b { (r.target_hours) " h" } " · " (r.devices) " devices · period " (day(r.from)) " to " (day(r.to)) " UTC" }
                div.kpis {
                    div.kpi { b.met { (met) } "findings remediated within target" }
                    div.kpi { b.(if missed > 0 { "missed" } else { "met" }) { (missed) } "missed the target" }
                    div.kpi { b { (pct(r.patching.fully_patched, r.devices)) } "devices fully patched" }
                    div.kpi { b { (r.unlocks.len()) } "accounts unlocked" }
                    div.kpi { b { (r.incidents.opened) } "incidents opened" }
                }
                h2 { "Time to remediate" }
                table {
                    thead { tr { th { "Severity" } th.num { "Resolved" } th.num { "Met" } th.num { "Missed" } th.num { "Median" } th.num { "Target" } } }
                    tbody { @for s in &r.remediation { tr {
                        td { (s.severity) } td.num { (s.resolved) } td.num.met { (s.met) } td.num.missed { (s.missed) }
                        td.num { (hours(s.median_hours)) } td.num { (r.target_hours) " h" }
                    } } }
                }
                (remediation_chart(r))
                (opened_chart(&r.opened_per_day))
                @let misses: Vec<_> = r.remediation.iter().flat_map(|s| s.misses.iter().map(move |m| (s.severity, m))).collect();
                @if misses.is_empty() { p.met { "Every finding was remediated within the target." } } @else {
                    h3 { "Misses" }
                    table {
                        thead { tr { th { "Severity" } th { "Device" } th { "Finding" } th { "First seen" } th { "Resolved" } th.num { "Took" } } }
                        tbody { @for (sev, m) in &misses { tr {
                            td { (sev) } td { (m.device) } td { (m.summary) " " span.muted { "(" (m.plugin) ": " (m.key) ")" } }
                            td { (day(m.first_seen_at)) } td { (m.resolved_at.map_or_else(|| "still open".to_owned(), day)) }
                            td.num.missed { (format!("{:.1} h", m.hours)) }
                        } } }
                    }
                }
                h2 { "Patch compliance" }
                table { tbody {
                    tr { td { "Devices fully patched at month end" } td.num { (r.patching.fully_patched) " of " (r.devices) } }
                    tr { td { "Security updates applied" } td.num { (r.patching.security_updates_applied) } }
                    tr { td { "Median age of a security update when applied" } td.num { (hours(r.patching.median_security_age_hours)) } }
                    tr { td { "Oldest when applied" } td.num { (hours(r.patching.max_security_age_hours)) } }
                    tr { td { "Security updates pending at month end" } td.num { (r.patching.security_updates_pending) } }
                } }
                h2 { "Backups" }
                @if r.backups.sets == 0 { p.muted { "No backup set was watched this month." } } @else {
                    table { tbody {
                        tr { td { "Backup sets watched" } td.num { (r.backups.sets) } }
                        tr { td { "Time within the recovery point objective" } td.num { (percent(r.backups.rpo_compliance_percent)) } }
                        tr { td { "Hours outside the RPO, all sets" } td.num { (format!("{:.1}", r.backups.hours_outside_rpo)) } }
                        tr { td { "Restore tests passed" } td.num { (r.backups.restore_tests_passed) } }
                        tr { td { "Restore tests failed" } td.num { (r.backups.restore_tests_failed) } }
                        tr { td { "Integrity checks failed" } td.num { (r.backups.integrity_checks_failed) } }
                    } }
                    @if !r.backups.outside_rpo_at_end.is_empty() {
                        p { "Outside the RPO at month end:" }
                        table {
                            thead { tr { th { "Device" } th { "Backup set" } th { "For" } } }
                            tbody { @for s in &r.backups.outside_rpo_at_end { tr {
                                td { (s.device) } td { (s.set) } td.num { (hours(Some(s.hours))) }
                            } } }
                        }
                    }
                }
                h2 { "Antivirus" }
                table { tbody {
                    tr { td { "Devices with outdated or missing signatures at month end" } td.num { (r.antivirus.signatures_outdated) } }
                    tr { td { "Devices without an antivirus engine" } td.num { (r.antivirus.engine_missing) } }
                    tr { td { "Oldest signatures at month end" } td.num { (hours(r.antivirus.oldest_signatures_hours)) } }
                    tr { td { "Detections" } td.num { (r.antivirus.detections) } }
                    tr { td { "Files quarantined" } td.num { (r.antivirus.quarantines) } }
                } }
                h2 { "Accounts unlocked" }
                @if r.unlocks.is_empty() { p.muted { "None this month." } } @else {
                    table {
                        thead { tr { th { "When" } th { "Account" } th { "Where" } th { "Record" } th { "Tickets" } } }
                        tbody { @for u in &r.unlocks { tr {
                            td { (day(u.at)) } td { (u.account) } td { (u.device) } td { (u.description) }
                            td { (u.tickets.join(", ")) }
                        } } }
                    }
                }
                h2 { "Incidents" }
                table { tbody {
                    tr { td { "Critical findings opened" } td.num { (r.incidents.opened) } }
                    tr { td { "Resolved" } td.num { (r.incidents.resolved) } }
                    tr { td { "Open at month end" } td.num { (r.incidents.open_at_end) } }
                } }
                h2 { "Hardware refresh forecast" }
                @if r.refresh.is_empty() { p.muted { "No forecast yet: run the refresh-planner plugin's plan." } } @else {
                    (forecast_chart(r))
                    table {
                        thead { tr { th { "Quarter" } th.num { "Devices" } th.num { "Cost" } th.num { "Budget" } th { "Over budget" } } }
                        tbody { @for q in &r.refresh { tr {
                            td { (q.quarter) } td.num { (q.devices) } td.num { (money(q.cost_cents)) } td.num { (money(q.budget_cents)) }
                            td { (q.overrun.as_deref().unwrap_or("")) }
                        } } }
                    }
                }
                p.muted { "Figures are computed by Steward from its records of findings, changes and tickets; " "see the appendix of the service agreement for how each is counted." }
            }
        }
    }
}

/// Findings first seen per day, stacked by severity.
pub(crate) fn opened_chart(days: &[[u32; 3]]) -> Markup {
    let max = days
        .iter()
        .map(|d| d.iter().sum::<u32>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h, bar) = (620.0, 120.0, 620.0 / days.len().max(1) as f64);
    let colors = ["#b91c1c", "#d97706", "#9ca3af"];
    html! {
        figure {
            svg width=(w) height=(h + 16.0) viewBox=(format!("0 0 {w} {}", h + 16.0)) role="img" aria-label="Findings first seen per day" {
                @for (i, d) in days.iter().enumerate() {
                    @let mut y = h;
                    @for (k, n) in d.iter().enumerate() {
                        @if *n > 0 {
                            @let bh = f64::from(*n) / f64::from(max) * (h - 4.0);
                            @let top = { y -= bh; y };
                            rect x=(format!("{:.1}", i as f64 * bar + 1.0)) y=(format!("{top:.1}")) width=(format!("{:.1}", bar - 2.0)) height=(format!("{bh:.1}")) fill=(colors[k]) {}
                        }
                    }
                }
                line x1="0" y1=(h) x2=(w) y2=(h) stroke="#9ca3af" {}
                text x="0" y=(h + 13.0) font-size="10" fill="#6b7280" { "day 1" }
                text x=(w - 40.0) y=(h + 13.0) font-size="10" fill="#6b7280" { "day " (days.len()) }
            }
            figcaption.muted { "Findings first seen per day (critical, warning, info); the tallest day had " (max) "." }
        }
    }
}

/// Median time to remediate per severity against the tier's target.
pub(crate) fn remediation_chart(r: &MonthReport) -> Markup {
    let target = f64::from(r.target_hours);
    let max = r
        .remediation
        .iter()
        .filter_map(|s| s.median_hours)
        .fold(target * 1.25, f64::max);
    let (w, row) = (620.0, 26.0);
    let h = row * r.remediation.len() as f64 + 18.0;
    let x = |hours: f64| 90.0 + hours / max * (w - 100.0);
    html! {
        figure {
            svg width=(w) height=(h) viewBox=(format!("0 0 {w} {h}")) role="img" aria-label="Median time to remediate against the target" {
                @for (i, s) in r.remediation.iter().enumerate() {
                    @let y = i as f64 * row + 4.0;
                    text x="0" y=(format!("{:.1}", y + 14.0)) font-size="11" fill="#111827" { (s.severity) }
                    @if let Some(m) = s.median_hours {
                        rect x="90" y=(format!("{y:.1}")) width=(format!("{:.1}", x(m) - 90.0)) height="18"
                            fill=(if m > target { "#b91c1c" } else { "#15803d" }) {}
                        text x=(format!("{:.1}", x(m) + 4.0)) y=(format!("{:.1}", y + 14.0)) font-size="11" fill="#111827" { (format!("{m:.1} h")) }
                    } @else {
                        text x="94" y=(format!("{:.1}", y + 14.0)) font-size="11" fill="#6b7280" { "none resolved" }
                    }
                }
                line x1=(format!("{:.1}", x(target))) x2=(format!("{:.1}", x(target))) y1="0" y2=(format!("{:.1}", h - 14.0)) stroke="#111827" stroke-dasharray="4 3" {}
                text x=(format!("{:.1}", x(target) + 3.0)) y=(format!("{:.1}", h - 2.0)) font-size="10" fill="#6b7280" { "target " (r.target_hours) " h" }
            }
            figcaption.muted { "Median time to remediate per severity (bars; red when over) against the target (dashed)." }
        }
    }
}

/// Cost against budget per quarter.
pub(crate) fn forecast_chart(r: &MonthReport) -> Markup {
    let max = r
        .refresh
        .iter()
        .map(|q| q.cost_cents.max(q.budget_cents))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let (w, h) = (620.0, 140.0);
    let slot = w / r.refresh.len().max(1) as f64;
    html! {
        figure {
            svg width=(w) height=(h + 16.0) viewBox=(format!("0 0 {w} {}", h + 16.0)) role="img" aria-label="Refresh cost against budget per quarter" {
                @for (i, q) in r.refresh.iter().enumerate() {
                    @let x = i as f64 * slot;
                    @let ch = q.cost_cents.max(0) as f64 / max * (h - 4.0);
                    @let bh = q.budget_cents.max(0) as f64 / max * (h - 4.0);
                    rect x=(format!("{:.1}", x + slot * 0.2)) y=(format!("{:.1}", h - ch)) width=(format!("{:.1}", slot * 0.6)) height=(format!("{ch:.1}"))
                        fill=(if q.cost_cents > q.budget_cents { "#b91c1c" } else { "#1d4ed8" }) {}
                    line x1=(format!("{:.1}", x + slot * 0.1)) x2=(format!("{:.1}", x + slot * 0.9)) y1=(format!("{:.1}", h - bh)) y2=(format!("{:.1}", h - bh)) stroke="#111827" stroke-dasharray="4 3" {}
                    text x=(format!("{:.1}", x + slot * 0.2)) y=(h + 13.0) font-size="10" fill="#6b7280" { (q.quarter) }
                }
            }
            figcaption.muted { "Refresh cost per quarter (bars; red when over) against the budget (dashed)." }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_grouped() {
        assert_eq!(money(123_456_789), "1,234,567.89");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(-100_000), "-1,000.00");
    }
}
