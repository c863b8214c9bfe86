//! The queue alone, the baseline of the jobs benchmarks: runs of the
//! trivial playbook started while their jobs are claimed and completed
//! with the finding and result the trivial plugin returns, no plugin run.

use std::time::{Duration, Instant};

use serde_json::json;
use steward_control::plane::ControlPlane;
use steward_store::{Completion, NewFinding, PlaybookId, RunId, Severity, Store, Timestamp};

/// Starts runs of `playbook` (1,000 devices) until `jobs` jobs are queued,
/// completing them as they come; the time from the first enqueue to the
/// last completion.
pub async fn measure(
    store: &Store,
    plane: &ControlPlane,
    playbook: &PlaybookId,
    jobs: usize,
) -> anyhow::Result<Duration> {
    let total = jobs.div_ceil(1000) * 1000;
    let started = Instant::now();
    let enqueuing = tokio::spawn(enqueue(plane.clone(), playbook.clone(), jobs));
    let mut completed = 0;
    while completed < total {
        let claimed = store
            .claim("baseline", 256, Duration::from_secs(60), Timestamp::now())
            .await?;
        if claimed.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let completions: Vec<Completion> = claimed
            .iter()
            .map(|j| {
                let mut c =
                    Completion::succeeded(j, json!({ "findings": 1, "critical": 0, "changes": 0 }));
                c.findings = vec![NewFinding {
                    key: "ok".into(),
                    severity: Severity::Info,
                    summary: "all good".into(),
                    detail: String::new(),
                    resource: String::new(),
                    fields: json!({}),
                }];
                c
            })
            .collect();
        completed += store
            .complete("baseline", &completions, Timestamp::now())
            .await?
            .len();
    }
    let elapsed = started.elapsed();
    enqueuing.await??;
    anyhow::ensure!(completed == total, "the baseline completed every job once");
    Ok(elapsed)
}

/// Runs of the playbook until `jobs` jobs are queued (one per device per
/// run).
pub async fn enqueue(
    plane: ControlPlane,
    playbook: PlaybookId,
    jobs: usize,
) -> anyhow::Result<(Vec<RunId>, usize)> {
    let mut runs = Vec::new();
    for _ in 0..jobs.div_ceil(1000) {
        runs.push(plane.start_run(&playbook, None).await?);
    }
    Ok((runs, jobs.div_ceil(1000) * 1000))
}
