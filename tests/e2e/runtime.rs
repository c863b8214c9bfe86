//! The runtime against hostile, good and misbuilt components.

use std::collections::BTreeMap;
use std::sync::Arc;

use steward_runtime::audit::AuditOutcome;
use steward_runtime::bindings::types::{Outcome, RunMode};
use steward_runtime::capability::{Capability, Grants};
use steward_runtime::{
    Allocator, ArtifactSource, EngineSettings, Journal, JournalKey, Limits, LoadError,
    MemoryJournal, Prior, RunError, Runtime, RuntimeConfig,
};

use crate::support::*;

const HOSTILE_GRANTS: &[&str] = &["packages", "accounts=jdoe"];

async fn hostile(
    behaviour: &str,
) -> (
    Result<Vec<steward_runtime::bindings::types::Finding>, RunError>,
    Run,
    usize,
    Vec<String>,
) {
    hostile_under(behaviour, test_limits()).await
}

async fn hostile_under(
    behaviour: &str,
    limits: Limits,
) -> (
    Result<Vec<steward_runtime::bindings::types::Finding>, RunError>,
    Run,
    usize,
    Vec<String>,
) {
    let module = module("guest-hostile").await;
    let mut fixture = fixture();
    fixture.delays = BTreeMap::from([("packages.updates".to_string(), 60_000)]);
    let run = run_with_limits(
        fixture,
        "guest-hostile",
        grants(HOSTILE_GRANTS),
        &[("behaviour", behaviour)],
        RunMode::Apply,
        limits,
    )
    .await;
    let report = runtime().check(&module, run.spec.clone()).await;
    let log = report.log.iter().map(|l| l.message.clone()).collect();
    (report.result, run, report.log_dropped, log)
}

#[tokio::test]
async fn infinite_loop_ends_at_the_cpu_deadline() {
    let (result, ..) = hostile("spin").await;
    let err = result.unwrap_err();
    assert!(matches!(err, RunError::CpuDeadline(_)), "{err}");
    assert!(
        err.to_string().contains("CPU time limit of 300 ms"),
        "{err}"
    );
    assert_host_still_healthy().await;
}

#[tokio::test]
async fn unbounded_memory_growth_stops_at_the_cap() {
    let (result, ..) = hostile("grow").await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, RunError::MemoryLimit(l) if l == 32 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("memory limit of 32 MiB"), "{err}");
    assert_host_still_healthy().await;
}

#[tokio::test]
async fn deep_recursion_traps_as_a_stack_overflow() {
    let (result, ..) = hostile("recurse").await;
    let err = result.unwrap_err();
    assert!(matches!(err, RunError::StackOverflow), "{err}");
    assert_host_still_healthy().await;
}

#[tokio::test]
async fn a_plugin_blocked_in_a_slow_host_call_is_cut_at_the_wall_deadline() {
    // The fixture makes `packages.updates` take a minute; the epoch deadline
    // cannot interrupt a host call, the wall-clock one must.
    let (result, ..) = hostile("slow-host").await;
    let err = result.unwrap_err();
    assert!(matches!(err, RunError::WallDeadline(_)), "{err}");
    assert!(err.to_string().contains("host calls included"), "{err}");
    assert_host_still_healthy().await;
}

#[tokio::test]
async fn a_guest_panic_gives_a_readable_error() {
    let (result, _, _, log) = hostile("panic").await;
    let err = result.unwrap_err();
    match &err {
        RunError::Panicked(m) => assert!(
            m.starts_with("hostile plugin gave up on purpose (at "),
            "{m}"
        ),
        other => panic!("expected a panic, got {other}"),
    }
    assert!(
        log.iter().any(|l| l.contains("panicked at")),
        "stderr reaches the run log: {log:?}"
    );
    assert_host_still_healthy().await;
}

#[tokio::test]
async fn an_out_of_scope_call_is_denied_and_audited() {
    let (result, run, ..) = hostile("out-of-scope").await;
    let err = result.unwrap_err();
    assert!(
        err.to_string()
            .contains("`administrator` is outside the `accounts` grant"),
        "{err}"
    );
    let events = run.audit.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].capability, Capability::Accounts);
    assert_eq!(events[0].function, "unlock");
    assert_eq!(events[0].arguments, "administrator (directory): hostile");
    assert!(matches!(events[0].outcome, AuditOutcome::Denied(_)));
    let admin = run
        .sim
        .snapshot()
        .accounts
        .into_iter()
        .find(|a| a.name == "administrator")
        .unwrap();
    assert!(
        !admin.locked && admin.failed_attempts == 0,
        "provider was never called"
    );
    assert_host_still_healthy().await;
}

#[tokio::test]
async fn log_floods_are_capped_and_counted() {
    let (result, _, dropped, log) = hostile_under("log-flood", roomy_limits()).await;
    result.expect("a noisy plugin still succeeds");
    assert_eq!(log.len(), Limits::default().log_lines);
    assert_eq!(dropped, 100_000 - Limits::default().log_lines);
    assert_host_still_healthy().await;
}

#[tokio::test]
async fn plugin_state_is_capped_in_bytes_per_device() {
    let (result, ..) = hostile_under("state-hoard", roomy_limits()).await;
    let findings = result.expect("the hoarder still succeeds");
    // 60 KiB values: the per-device byte quota stops it long before the
    // 10,000 keys it asks for.
    let kept = steward_runtime::capability::state::MAX_STATE_BYTES / (60 << 10);
    assert_eq!(findings[0].id, format!("kept-{kept}"));
    assert_host_still_healthy().await;
}

#[tokio::test]
async fn giant_log_lines_are_capped_where_they_enter_the_host() {
    let module = module("guest-hostile").await;
    let run = run_with_limits(
        fixture(),
        "guest-hostile",
        grants(HOSTILE_GRANTS),
        &[("behaviour", "log-giant")],
        RunMode::Apply,
        roomy_limits(),
    )
    .await;
    let report = runtime().check(&module, run.spec.clone()).await;
    report
        .result
        .expect("a plugin with giant log lines still succeeds");
    let log: Vec<_> = report
        .log
        .iter()
        .filter(|l| l.level == "warn" && l.message.starts_with('G'))
        .collect();
    assert!(!log.is_empty());
    assert_eq!(log.len() + report.log_dropped, 64);
    for line in &log {
        assert!(
            line.message.len() <= steward_runtime::capability::log::MAX_LOG_MESSAGE_BYTES + 64,
            "{} bytes kept",
            line.message.len()
        );
        assert!(line.message.ends_with("more bytes cut)"));
        assert_eq!(
            line.fields.len(),
            steward_runtime::capability::log::MAX_LOG_FIELDS
        );
        assert!(
            line.fields
                .iter()
                .all(|(k, v)| k.len() <= 1100 && v.len() <= 1100)
        );
    }
    assert_host_still_healthy().await;
}

#[tokio::test]
async fn oversized_output_is_refused() {
    let (result, ..) = hostile_under("huge-output", roomy_limits()).await;
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            RunError::OutputLimit {
                what: "findings",
                actual: 100_000,
                ..
            }
        ),
        "{err}"
    );
    assert_host_still_healthy().await;
}

#[tokio::test]
async fn an_ungranted_capability_is_refused_before_instantiation() {
    let module = module("guest-hostile").await;
    assert_eq!(
        module.requested,
        vec![
            Capability::Log,
            Capability::Config,
            Capability::State,
            Capability::Packages,
            Capability::Accounts
        ]
    );
    let err = module.authorize(&grants(&["packages"])).unwrap_err();
    assert!(
        matches!(&err, LoadError::NotGranted(m) if m == &vec![Capability::Accounts]),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("`accounts` capability, which was not granted"),
        "{err}"
    );

    // A run with missing grants fails the same way, and its fixture's
    // `delays` would have made any provider call observable: none happened.
    let run = run_with(
        fixture(),
        "guest-hostile",
        Grants::none(),
        &[("behaviour", "out-of-scope")],
        RunMode::Apply,
    )
    .await;
    let report = runtime().check(&module, run.spec).await;
    assert!(matches!(
        report.result,
        Err(RunError::Load(LoadError::NotGranted(_)))
    ));
    assert!(report.log.is_empty() && run.audit.events().is_empty());
    assert_host_still_healthy().await;
}

#[tokio::test]
async fn plan_mode_changes_nothing_and_plans_exactly_what_apply_then_does() {
    let module = module("guest-fixer").await;
    let fixer_grants = &[
        "packages",
        "accounts=jdoe",
        "antivirus=/srv/**",
        "tickets=changes",
    ];

    let plan = run_with(
        fixture(),
        "guest-fixer",
        grants(fixer_grants),
        &[],
        RunMode::Plan,
    )
    .await;
    let before = plan.sim.snapshot();
    let findings = runtime()
        .check(&module, plan.spec.clone())
        .await
        .result
        .expect("check");
    assert_eq!(findings.len(), 4, "{findings:?}");
    let planned = runtime()
        .remediate(&module, plan.spec.clone(), findings.clone())
        .await
        .result
        .map(|r| r.changes)
        .expect("plan");
    let after_plan = plan.sim.snapshot();
    assert_eq!(before, after_plan, "plan mode changed the device");
    assert!(plan.sim.tickets.all().is_empty());
    assert!(planned.iter().all(|c| c.outcome == Outcome::Planned));

    let apply = run_with(
        fixture(),
        "guest-fixer",
        grants(fixer_grants),
        &[],
        RunMode::Apply,
    )
    .await;
    let applied = runtime()
        .remediate(&module, apply.spec.clone(), findings)
        .await
        .result
        .map(|r| r.changes)
        .expect("apply");
    assert!(applied.iter().all(|c| c.outcome == Outcome::Applied));
    let strip = |cs: &[steward_runtime::bindings::types::Change]| {
        cs.iter()
            .map(|c| {
                (
                    c.kind.clone(),
                    c.target.clone(),
                    c.before.clone(),
                    c.after.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&planned), strip(&applied));

    let after = apply.sim.snapshot();
    assert!(after.updates.is_empty());
    assert_eq!(
        after
            .installed
            .iter()
            .find(|p| p.name == "openssl")
            .unwrap()
            .version,
        "3.0.15"
    );
    assert!(
        !after
            .accounts
            .iter()
            .find(|a| a.name == "jdoe")
            .unwrap()
            .locked
    );
    assert_eq!(after.quarantine.len(), 1);
    assert_eq!(apply.sim.tickets.all().len(), 1);
    let outcomes: Vec<_> = plan.audit.events().into_iter().map(|e| e.outcome).collect();
    assert!(
        outcomes.iter().all(|o| *o == AuditOutcome::Planned),
        "{outcomes:?}"
    );
    assert_eq!(apply.audit.events().len(), plan.audit.events().len());
}

#[tokio::test]
async fn a_second_load_uses_the_precompiled_artifact_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: cache.path().to_path_buf(),
        engine: EngineSettings {
            max_instances: 4,
            ..EngineSettings::default()
        },
        limits: Limits::default(),
    };
    let bytes = bytes("guest-trivial");
    let first = Runtime::new(config.clone()).unwrap();
    assert_eq!(
        first.load(&bytes).await.unwrap().source,
        ArtifactSource::Compiled
    );
    drop(first);

    let second = Runtime::new(config.clone()).unwrap();
    let module = second.load(&bytes).await.unwrap();
    assert_eq!(module.source, ArtifactSource::Cache);
    assert_eq!(
        second.describe(&module).await.result.unwrap().name,
        "trivial"
    );

    // A corrupted artifact is never deserialised: it is compiled again.
    let artifact = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .unwrap();
    std::fs::write(&artifact, b"not an artifact").unwrap();
    let third = Runtime::new(config).unwrap();
    assert_eq!(
        third.load(&bytes).await.unwrap().source,
        ArtifactSource::Compiled
    );
}

#[tokio::test]
async fn falls_back_to_on_demand_allocation_when_the_pool_does_not_fit() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: cache.path().to_path_buf(),
        // Tens of millions of 4 GiB memory slots cannot be reserved.
        engine: EngineSettings {
            max_instances: 50_000_000,
            ..EngineSettings::default()
        },
        limits: Limits::default(),
    })
    .unwrap();
    assert_eq!(runtime.allocator(), Allocator::OnDemand);
    let module = runtime.load(&bytes("guest-trivial")).await.unwrap();
    assert_eq!(
        runtime.describe(&module).await.result.unwrap().name,
        "trivial"
    );
}

#[tokio::test]
async fn bad_module_bytes_get_clear_errors() {
    let rt = runtime();
    let err = rt
        .load(b"MZ\x90\x00 definitely not wasm")
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::NotWasm), "{err}");

    let core = wat::parse_str("(module (func (export \"check\")))").unwrap();
    let err = rt.load(&core).await.unwrap_err();
    assert!(matches!(err, LoadError::CoreModule), "{err}");
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");

    let unknown =
        wat::parse_str(r#"(component (import "acme:evil/exfiltrate@1.0.0" (instance)))"#).unwrap();
    let err = rt.load(&unknown).await.unwrap_err();
    assert!(
        err.to_string().contains("`acme:evil/exfiltrate@1.0.0`"),
        "{err}"
    );

    let future =
        wat::parse_str(r#"(component (import "steward:plugin/log@0.9.0" (instance)))"#).unwrap();
    let err = rt.load(&future).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("this host runs `steward:plugin` 0.1.0 and 0.2.0"),
        "{err}"
    );

    let not_plugin = wat::parse_str("(component)").unwrap();
    let compiled = rt.compilations();
    let err = rt.load(&not_plugin).await.unwrap_err();
    assert!(matches!(err, LoadError::NotAPlugin { .. }), "{err}");
    assert_eq!(rt.compilations(), compiled, "refused before compiling");

    let mut truncated = bytes("guest-trivial");
    truncated.truncate(truncated.len() / 2);
    let err = rt.load(&truncated).await.unwrap_err();
    assert!(matches!(err, LoadError::Invalid(_)), "{err}");
}

#[tokio::test]
async fn a_rerun_after_a_crash_replays_applied_calls_from_the_journal() {
    let module = module("guest-fixer").await;
    let fixer_grants = grants(&[
        "packages",
        "accounts=jdoe",
        "antivirus=/srv/**",
        "tickets=changes",
    ]);
    let journal = Arc::new(MemoryJournal::default());
    let mut run = run_with(fixture(), "guest-fixer", fixer_grants, &[], RunMode::Apply).await;
    run.spec.journal = Some(journal.clone());
    let findings = runtime()
        .check(&module, run.spec.clone())
        .await
        .result
        .expect("check");
    let first = runtime()
        .remediate(&module, run.spec.clone(), findings.clone())
        .await
        .result
        .map(|r| r.changes)
        .expect("first attempt applies");
    assert_eq!(journal.len(), 4, "install, unlock, quarantine, ticket");
    let after_first = run.sim.snapshot();

    // The worker died before recording the result; the job runs again with
    // the findings it was given, against the device as the first attempt
    // left it. Nothing is applied twice: the file is already quarantined
    // (a second quarantine would fail) and the ticket is not filed again.
    let second = runtime()
        .remediate(&module, run.spec.clone(), findings.clone())
        .await
        .result
        .map(|r| r.changes)
        .expect("the re-run replays");
    assert_eq!(first, second);
    assert_eq!(
        run.sim.snapshot(),
        after_first,
        "the device was not touched again"
    );
    assert_eq!(run.sim.tickets.all().len(), 1);
    let replayed = run
        .audit
        .events()
        .into_iter()
        .filter(|e| e.outcome == AuditOutcome::Replayed)
        .count();
    assert_eq!(replayed, 4);

    // Without the journal the same re-run would quarantine a file that is
    // gone: the journal is what makes the re-run safe.
    run.spec.journal = None;
    let unjournaled = runtime()
        .remediate(&module, run.spec.clone(), findings)
        .await
        .result
        .map(|r| r.changes);
    assert!(unjournaled.is_err() || run.sim.tickets.all().len() == 2);
}

/// A journal over a [`MemoryJournal`] whose next `fail_intents` intents
/// and `fail_records` results are refused, as a store that lost its disk
/// or its server would.
#[derive(Default)]
struct FailingJournal {
    inner: MemoryJournal,
    fail_intents: std::sync::atomic::AtomicU32,
    fail_records: std::sync::atomic::AtomicU32,
}

impl FailingJournal {
    fn take(counter: &std::sync::atomic::AtomicU32) -> bool {
        counter
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok()
    }
}

#[async_trait::async_trait]
impl Journal for FailingJournal {
    async fn replay(&self, key: &JournalKey) -> anyhow::Result<Prior> {
        self.inner.replay(key).await
    }

    async fn intend(&self, key: &JournalKey) -> anyhow::Result<()> {
        if Self::take(&self.fail_intents) {
            anyhow::bail!("database or disk is full");
        }
        self.inner.intend(key).await
    }

    async fn record(&self, key: &JournalKey, result: String) -> anyhow::Result<()> {
        if Self::take(&self.fail_records) {
            anyhow::bail!("database or disk is full");
        }
        self.inner.record(key, result).await
    }
}

fn outcomes(run: &Run) -> Vec<(String, AuditOutcome)> {
    run.audit
        .events()
        .into_iter()
        .map(|e| (format!("{}.{}", e.capability, e.function), e.outcome))
        .collect()
}

const FIXER: &[&str] = &[
    "packages",
    "accounts=jdoe",
    "antivirus=/srv/**",
    "tickets=changes",
];

/// The fixer in apply mode over a [`FailingJournal`] (failing nothing
/// yet), with its check's findings.
async fn checked_fixer_run() -> (
    Arc<steward_runtime::Module>,
    Arc<FailingJournal>,
    Run,
    Vec<steward_runtime::bindings::types::Finding>,
) {
    let module = module("guest-fixer").await;
    let journal = Arc::new(FailingJournal::default());
    let mut run = run_with(fixture(), "guest-fixer", grants(FIXER), &[], RunMode::Apply).await;
    run.spec.journal = Some(journal.clone());
    let findings = runtime()
        .check(&module, run.spec.clone())
        .await
        .result
        .expect("check");
    (module, journal, run, findings)
}

#[tokio::test]
async fn an_attempt_whose_journal_fails_makes_no_further_change_and_a_retry_reconciles() {
    let (module, journal, first, findings) = checked_fixer_run().await;
    let untouched = first.sim.snapshot();

    // The first change is made, but its result cannot be recorded: the
    // attempt makes no further change (each later call is refused before
    // the provider sees it) and fails, to be retried.
    journal
        .fail_records
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let report = runtime()
        .remediate(&module, first.spec.clone(), findings.clone())
        .await;
    let after_first = first.sim.snapshot();
    let seen = outcomes(&first);
    let applied: Vec<_> = seen
        .iter()
        .filter(|(_, o)| *o == AuditOutcome::Applied)
        .collect();
    assert_eq!(applied.len(), 1, "only the first change was made: {seen:?}");
    let refused: Vec<_> = seen
        .iter()
        .filter(
            |(_, o)| matches!(o, AuditOutcome::Failed(r) if r.contains("journal failed earlier")),
        )
        .collect();
    assert!(!refused.is_empty(), "later changes were refused: {seen:?}");
    assert_ne!(after_first, untouched, "the first change was made");
    assert!(first.sim.tickets.all().is_empty(), "no ticket was filed");
    assert!(
        report.result.is_err() || seen.len() > applied.len(),
        "the attempt did not pass off its refusals: {:?}",
        report.result
    );
    assert_eq!(journal.inner.len(), 0, "nothing was recorded as applied");

    // The retry finds the first call intended without a result: it is in
    // doubt, its effect is found in place on the device (no update pending
    // any more), so it is not made again and is audited as reconciled; the
    // others are made once. One ticket in all.
    let mut second = run_with(fixture(), "guest-fixer", grants(FIXER), &[], RunMode::Apply).await;
    second.sim = first.sim.clone();
    second.spec.device = first.spec.device.clone();
    second.spec.journal = Some(journal.clone());
    runtime()
        .remediate(&module, second.spec.clone(), findings)
        .await
        .result
        .map(|r| r.changes)
        .expect("the retry completes");
    let seen = outcomes(&second);
    assert_eq!(
        seen.iter()
            .filter(|(_, o)| *o == AuditOutcome::Reconciled)
            .count(),
        1,
        "{seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|(_, o)| *o == AuditOutcome::Applied)
            .count(),
        3,
        "{seen:?}"
    );
    assert_eq!(first.sim.tickets.all().len(), 1);
    assert_eq!(journal.inner.len(), 4);
}

#[tokio::test]
async fn a_call_whose_intent_cannot_be_recorded_is_not_made() {
    let (module, journal, run, findings) = checked_fixer_run().await;
    let untouched = run.sim.snapshot();
    journal
        .fail_intents
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let _ = runtime()
        .remediate(&module, run.spec.clone(), findings)
        .await;
    assert_eq!(run.sim.snapshot(), untouched, "the device was not touched");
    assert!(run.sim.tickets.all().is_empty());
    let seen = outcomes(&run);
    assert!(
        seen.iter()
            .all(|(_, o)| matches!(o, AuditOutcome::Failed(_))),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(
            |(_, o)| matches!(o, AuditOutcome::Failed(r) if r.contains("cannot record this call's intent"))
        ),
        "{seen:?}"
    );
}

#[tokio::test]
async fn findings_that_break_the_id_rules_fail_the_run_as_invalid_output() {
    for (behaviour, says) in [
        ("empty-finding-id", "finding 1: its id is empty"),
        (
            "duplicate-finding-ids",
            "its id `twice` was returned already",
        ),
        ("oversized-finding-id", "its id is 100000 bytes long"),
    ] {
        let (result, ..) = hostile(behaviour).await;
        let err = result.unwrap_err();
        assert!(
            matches!(&err, RunError::InvalidOutput(m) if m.contains(says)),
            "{behaviour}: {err}"
        );
        assert_eq!(err.code(), "invalid-output");
    }
    assert_host_still_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_loads_of_one_module_compile_it_once_off_the_async_workers() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            cache_dir: cache.path().to_path_buf(),
            engine: EngineSettings {
                max_instances: 4,
                ..EngineSettings::default()
            },
            limits: Limits::default(),
        })
        .unwrap(),
    );
    let bytes = Arc::new(bytes("guest-trivial"));
    // While the loads compile, the async workers stay free: a timer task
    // keeps ticking.
    let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let loads: Vec<_> = (0..8)
        .map(|_| {
            let runtime = runtime.clone();
            let bytes = bytes.clone();
            tokio::spawn(async move { runtime.load(&bytes).await.map(|m| m.digest) })
        })
        .collect();
    let mut digests = Vec::new();
    for load in loads {
        digests.push(load.await.unwrap().unwrap());
    }
    ticker.abort();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    assert_eq!(
        runtime.compilations(),
        1,
        "eight concurrent loads, one compile"
    );
    assert!(
        ticks.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the timer never ran while the module compiled"
    );
    // A later load is answered from memory, compiling nothing.
    runtime.load(&bytes).await.unwrap();
    assert_eq!(runtime.compilations(), 1);
}

#[tokio::test]
async fn a_check_can_never_change_the_device_even_in_apply_mode() {
    // `jdoe` is locked and inside the grant: from `remediate` the unlock
    // would be applied. From `check` it is refused and audited as denied.
    let (result, run, ..) = hostile("mutate-in-check").await;
    let err = result.unwrap_err();
    assert!(err.to_string().contains("a check may not"), "{err}");
    let events = run.audit.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].capability, events[0].function),
        (Capability::Accounts, "unlock")
    );
    assert!(matches!(events[0].outcome, AuditOutcome::Denied(_)));
    let jdoe = run
        .sim
        .snapshot()
        .accounts
        .into_iter()
        .find(|a| a.name == "jdoe")
        .unwrap();
    assert!(jdoe.locked, "the provider was never called");
    assert_host_still_healthy().await;
}

#[tokio::test]
async fn in_plan_mode_every_returned_change_is_planned_whatever_the_plugin_says() {
    let module = module("guest-hostile").await;
    for (mode, expected) in [
        (RunMode::Plan, Outcome::Planned),
        (RunMode::Apply, Outcome::Applied),
    ] {
        let run = run_with(
            fixture(),
            "guest-hostile",
            grants(HOSTILE_GRANTS),
            &[("behaviour", "lie-in-plan")],
            mode,
        )
        .await;
        let changes = runtime()
            .remediate(&module, run.spec.clone(), Vec::new())
            .await
            .result
            .map(|r| r.changes)
            .unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, "disk-wipe");
        assert_eq!(changes[0].outcome, expected, "{mode:?}");
    }
}

#[tokio::test]
async fn a_huge_plugin_error_is_cut_before_anything_stores_or_prints_it() {
    let (result, ..) = hostile("huge-error").await;
    let err = result.unwrap_err();
    let RunError::Plugin(steward_runtime::bindings::types::PluginError::Failed(message)) = &err
    else {
        panic!("{err}")
    };
    assert!(message.len() < 4200, "{} bytes", message.len());
    assert!(
        message.ends_with("more bytes cut)"),
        "{}",
        &message[message.len() - 40..]
    );
    assert_host_still_healthy().await;
}

#[tokio::test]
async fn a_descriptor_that_breaks_the_rules_is_refused_at_describe() {
    let module = module("guest-bad-descriptor").await;
    let err = runtime().describe(&module).await.result.unwrap_err();
    assert_eq!(err.code(), "invalid-output", "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("the plugin returned invalid output: describe: "),
        "{text}"
    );
    assert!(
        text.len() < 1024,
        "the refusal does not echo the descriptor: {text}"
    );
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert_host_still_healthy().await;
}

#[tokio::test]
async fn the_host_never_unlocks_a_privileged_account_unless_the_grant_names_it() {
    let module = module("guest-hostile").await;
    let locked_admin = || {
        let mut f = fixture();
        let admin = f
            .accounts
            .iter_mut()
            .find(|a| a.name == "administrator")
            .unwrap();
        admin.locked = true;
        f
    };
    // A plain `accounts` grant (as docs/steward.toml gives) is not enough.
    let run = run_with(
        locked_admin(),
        "guest-hostile",
        grants(&["packages", "accounts"]),
        &[("behaviour", "unlock-admin")],
        RunMode::Apply,
    )
    .await;
    let err = runtime()
        .remediate(&module, run.spec.clone(), Vec::new())
        .await
        .result
        .map(|r| r.changes)
        .unwrap_err();
    assert!(
        err.to_string().contains("privileged group `Domain Admins`"),
        "{err}"
    );
    let events = run.audit.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(events[0].outcome, AuditOutcome::Denied(_)));
    let admin = |run: &Run| {
        run.sim
            .snapshot()
            .accounts
            .into_iter()
            .find(|a| a.name == "administrator")
            .unwrap()
    };
    assert!(admin(&run).locked, "the provider was never called");

    // Named as `privileged:administrator`, the override is applied and audited.
    let run = run_with(
        locked_admin(),
        "guest-hostile",
        grants(&["packages", "accounts=*,privileged:administrator"]),
        &[("behaviour", "unlock-admin")],
        RunMode::Apply,
    )
    .await;
    runtime()
        .remediate(&module, run.spec.clone(), Vec::new())
        .await
        .result
        .map(|r| r.changes)
        .unwrap();
    assert!(!admin(&run).locked);
    let events = run.audit.events();
    assert!(
        matches!(events[0].outcome, AuditOutcome::Applied),
        "{events:?}"
    );
}

#[tokio::test]
async fn each_text_of_a_finding_or_change_is_cut_to_its_cap() {
    use steward_runtime::{MAX_FINDING_FIELDS, MAX_LINE_TEXT_BYTES, MAX_LONG_TEXT_BYTES};
    // A cut text keeps its cap plus the mark naming what was cut.
    let capped = |text: &str, cap: usize| {
        assert!(
            text.len() <= cap + 40 && text.ends_with("more bytes cut)"),
            "{} bytes",
            text.len()
        );
    };
    let (result, ..) = hostile_under("giant-texts", roomy_limits()).await;
    let findings = result.expect("texts over their caps are cut, not refused");
    let f = &findings[0];
    capped(&f.summary, MAX_LINE_TEXT_BYTES);
    capped(&f.resource, MAX_LINE_TEXT_BYTES);
    capped(&f.detail, MAX_LONG_TEXT_BYTES);
    assert_eq!(f.fields.len(), MAX_FINDING_FIELDS);

    let module = module("guest-hostile").await;
    let run = run_with_limits(
        fixture(),
        "guest-hostile",
        grants(HOSTILE_GRANTS),
        &[("behaviour", "giant-texts")],
        RunMode::Apply,
        roomy_limits(),
    )
    .await;
    let changes = runtime()
        .remediate(&module, run.spec.clone(), Vec::new())
        .await
        .result
        .map(|r| r.changes)
        .expect("texts over their caps are cut, not refused");
    let c = &changes[0];
    capped(&c.target, MAX_LINE_TEXT_BYTES);
    capped(&c.description, MAX_LONG_TEXT_BYTES);
    capped(c.before.as_deref().unwrap(), MAX_LONG_TEXT_BYTES);
    capped(c.after.as_deref().unwrap(), MAX_LONG_TEXT_BYTES);
    assert_host_still_healthy().await;
}

#[tokio::test]
async fn a_compile_that_takes_too_long_is_refused_in_bounded_time() {
    let cache = tempfile::tempdir().unwrap();
    let slow = Runtime::new(RuntimeConfig {
        cache_dir: cache.path().to_path_buf(),
        engine: EngineSettings::default(),
        limits: Limits::default(),
    })
    .unwrap()
    .with_compile_timeout(std::time::Duration::from_millis(1));
    let err = slow.load(&bytes("guest-fixer")).await.unwrap_err();
    assert!(
        matches!(&err, LoadError::Invalid(m) if m.contains("took longer than")),
        "{err}"
    );
    assert_host_still_healthy().await;
}
