//! Python plugins (componentize-py, the steward_sdk package) under the same
//! runtime, limits and grants as Rust ones: a hostile one's loop, memory
//! growth, mutating call from a check, socket and exception each end its
//! own run, and the host runs the next plugin.

use std::sync::Arc;
use std::time::Duration;

use steward_runtime::audit::{AuditOutcome, MemoryAudit};
use steward_runtime::bindings::types::RunMode;
use steward_runtime::device::simulated::Simulated;
use steward_runtime::{Limits, RunError, RunSpec, resolve_text_params};

use crate::support::*;

fn limits() -> Limits {
    Limits {
        cpu_time: Duration::from_millis(1_500),
        wall_time: Duration::from_secs(20),
        memory_bytes: 96 << 20,
        ..Limits::default()
    }
}

#[tokio::test]
async fn a_hostile_python_plugin_is_contained_like_a_rust_one() {
    let bytes = std::fs::read(steward_tests::python_component("tests/guests-py/hostile")).unwrap();
    let module = runtime()
        .load(&bytes)
        .await
        .expect("the Python component loads");
    assert_eq!(module.wit_version, "0.2.0");
    assert!(
        module
            .denied_imports
            .iter()
            .any(|i| i.starts_with("wasi:sockets/")),
        "{:?}",
        module.denied_imports
    );
    let descriptor = runtime().describe(&module).await.result.expect("describe");
    assert_eq!(descriptor.name, "hostile-py");
    // An ungranted capability: the component imports `accounts`.
    let refused = module.authorize(&grants(&[])).unwrap_err();
    assert!(refused.to_string().contains("`accounts`"), "{refused}");

    for (behaviour, expect) in [
        ("loop", "cpu"),
        ("grow", "memory"),
        ("unlock-in-check", "a check may not"),
        ("socket", "plugin"),
        ("raise", "ValueError: the plugin gave up"),
    ] {
        let audit = Arc::new(MemoryAudit::default());
        let params = resolve_text_params(
            &descriptor,
            &[("behaviour".to_string(), behaviour.to_string())],
        )
        .unwrap();
        let spec = RunSpec {
            run_id: format!("py-{behaviour}"),
            plugin: "hostile-py".into(),
            mode: RunMode::Apply,
            params,
            grants: grants(&["accounts"]),
            device: Arc::new(Simulated::new(fixture()).device()),
            audit: audit.clone(),
            limits: Some(limits()),
            journal: None,
        };
        let err = runtime()
            .check(&module, spec)
            .await
            .result
            .expect_err(behaviour);
        match expect {
            "cpu" => assert!(
                matches!(err, RunError::CpuDeadline(_)),
                "{behaviour}: {err}"
            ),
            "memory" => assert!(
                matches!(err, RunError::MemoryLimit(_)),
                "{behaviour}: {err}"
            ),
            "plugin" => assert!(matches!(err, RunError::Plugin(_)), "{behaviour}: {err}"),
            text => assert!(err.to_string().contains(text), "{behaviour}: {err}"),
        }
        if behaviour == "unlock-in-check" {
            assert!(
                audit
                    .events()
                    .iter()
                    .any(|e| e.function == "unlock" && matches!(e.outcome, AuditOutcome::Denied(_)))
            );
        }
        assert_host_still_healthy().await;
    }
}
