//! Local Linux accounts on a sandbox root: locks made by the real `usermod`
//! and by the real pam_faillock (through `pamtester`), found and unlocked by
//! the provider and by the `account-unlock` plugin.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use steward_runtime::bindings::accounts::AccountSource;
use steward_runtime::bindings::types::{HostError, Outcome, RunMode};
use steward_runtime::capability::accounts::{AccountsProvider, LocalAccounts};

use crate::support::*;

const ALICE_HASH: &str = "$6$rounds=5000$saltsalt$0123456789abcdefghij";

struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    /// `daemon` exists on every Debian machine, so the real pam_faillock
    /// (which looks users up on the host) records failures for it.
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(&etc).expect("mkdir etc");
        std::fs::create_dir_all(dir.path().join("var/run/faillock")).expect("mkdir faillock");
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/bash\n\
             daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
             alice:x:1001:1001::/home/alice:/bin/bash\n\
             bob:x:1002:1002::/home/bob:/bin/bash\n\
             nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n\
             svc:x:1003:1003::/home/svc:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(
            etc.join("shadow"),
            format!(
                "root:*:19000:0:99999:7:::\n\
                 daemon:*:19000:0:99999:7:::\n\
                 alice:{ALICE_HASH}:19000:0:99999:7:::\n\
                 bob:$6$x$y:19000:0:99999:7:::\n\
                 nobody:*:19000:0:99999:7:::\n\
                 svc:!:19000:0:99999:7:::\n"
            ),
        )
        .expect("shadow");
        std::fs::set_permissions(etc.join("shadow"), std::fs::Permissions::from_mode(0o640))
            .expect("chmod shadow");
        std::fs::write(
            etc.join("group"),
            "root:x:0:\ndaemon:x:1:\nsudo:x:27:bob\nstaff:x:50:alice,bob\n\
             alice:x:1001:\nbob:x:1002:\n",
        )
        .expect("group");
        Root { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn accounts(&self) -> LocalAccounts {
        LocalAccounts::new(self.path())
    }

    fn shadow(&self) -> String {
        std::fs::read_to_string(self.path().join("etc/shadow")).expect("read shadow")
    }

    fn faillock_dir(&self) -> PathBuf {
        self.path().join("var/run/faillock")
    }

    /// `usermod --prefix ROOT -L user`, the real tool.
    fn usermod_lock(&self, user: &str) {
        let status = Command::new("usermod")
            .arg("--prefix")
            .arg(self.path())
            .args(["-L", user])
            .status()
            .expect("usermod runs");
        assert!(status.success(), "usermod -L {user}");
    }

    /// Wrong passwords through the real PAM stack with pam_faillock keeping
    /// its tallies under this root.
    fn fail_logins(&self, user: &str, times: usize) {
        let service = format!("steward-test-faillock-{}", std::process::id());
        let conf = PathBuf::from("/etc/pam.d").join(&service);
        let dir = self.faillock_dir();
        std::fs::write(
            &conf,
            format!(
                "auth required pam_faillock.so preauth dir={d} deny=3 unlock_time=600\n\
                 auth [default=die] pam_faillock.so authfail dir={d} deny=3 unlock_time=600\n\
                 account required pam_faillock.so dir={d}\n",
                d = dir.display()
            ),
        )
        .expect("PAM service file (the tests run as root)");
        for _ in 0..times {
            let out = Command::new("pamtester")
                .args([service.as_str(), user, "authenticate"])
                .stdin(Stdio::null())
                .output()
                .expect("pamtester is installed by .ci/setup");
            assert!(!out.status.success(), "pam_faillock's authfail denies");
        }
        std::fs::remove_file(&conf).expect("remove PAM service file");
    }

    /// The real `faillock` tool's view of a user's tally.
    fn faillock_entries(&self, user: &str) -> usize {
        let out = Command::new("faillock")
            .arg("--dir")
            .arg(self.faillock_dir())
            .args(["--user", user])
            .output()
            .expect("faillock runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.trim_end().ends_with(" V") || l.trim_end().ends_with(" I"))
            .count()
    }
}

#[tokio::test]
async fn usermod_locks_are_found_and_unlocked_exactly() {
    let root = Root::new();
    let accounts = root.accounts();
    // `svc` never had a password (`!` alone): not a lockout.
    assert!(accounts.locked().await.expect("reads").is_empty());
    assert!(!accounts.lookup("svc").await.expect("svc exists").locked);

    root.usermod_lock("alice");
    let locked = accounts.locked().await.expect("reads");
    assert_eq!(locked.len(), 1);
    let alice = &locked[0];
    assert_eq!(alice.name, "alice");
    assert_eq!(alice.source, AccountSource::Local);
    assert_eq!(alice.groups, ["alice", "staff"]);
    assert!(alice.locked && alice.locked_since.is_none());

    let bob = accounts.lookup("bob").await.expect("bob exists");
    assert!(!bob.locked);
    assert_eq!(bob.groups, ["bob", "staff", "sudo"]);

    // Plan mode changes nothing.
    let before = root.shadow();
    assert_eq!(
        accounts
            .unlock("alice", RunMode::Plan)
            .await
            .expect("plans"),
        Outcome::Planned
    );
    assert_eq!(root.shadow(), before);

    assert_eq!(
        accounts
            .unlock("alice", RunMode::Apply)
            .await
            .expect("unlocks"),
        Outcome::Applied
    );
    assert!(root.shadow().contains(&format!("alice:{ALICE_HASH}:")));
    let meta = std::fs::metadata(root.path().join("etc/shadow")).expect("shadow");
    assert_eq!(meta.mode() & 0o777, 0o640, "mode kept");
    assert!(!accounts.lookup("alice").await.expect("alice").locked);
    // The real tool still reads the file we wrote.
    root.usermod_lock("alice");
    assert!(accounts.lookup("alice").await.expect("alice").locked);
}

#[tokio::test]
async fn pam_faillock_tallies_are_counted_and_reset() {
    let root = Root::new();
    let accounts = root.accounts();
    root.fail_logins("daemon", 2);
    let daemon = accounts
        .lookup("daemon")
        .await
        .expect("tracked by faillock");
    assert_eq!((daemon.locked, daemon.failed_attempts), (false, 2));

    root.fail_logins("daemon", 1);
    let locked = accounts.locked().await.expect("reads");
    assert_eq!(locked.len(), 1);
    assert_eq!(locked[0].name, "daemon");
    assert_eq!(locked[0].failed_attempts, 3);
    let since = locked[0]
        .locked_since
        .as_ref()
        .expect("lock time from the tally");
    let now = unix_now();
    assert!((now - since.seconds).abs() < 120, "locked just now");
    assert_eq!(root.faillock_entries("daemon"), 3);

    accounts
        .unlock("daemon", RunMode::Apply)
        .await
        .expect("unlocks");
    assert_eq!(
        root.faillock_entries("daemon"),
        0,
        "faillock sees the reset"
    );
    assert!(!accounts.lookup("daemon").await.expect("daemon").locked);
}

#[tokio::test]
async fn a_missing_user_or_root_is_a_clear_error() {
    let root = Root::new();
    let before = root.shadow();
    match root.accounts().unlock("mallory", RunMode::Apply).await {
        Err(HostError::NotFound(m)) => assert!(m.contains("mallory"), "{m}"),
        other => panic!("expected not-found, got {other:?}"),
    }
    assert_eq!(root.shadow(), before);
    match LocalAccounts::new("/nonexistent-root").locked().await {
        Err(HostError::Unavailable(m)) => assert!(m.contains("etc/passwd"), "{m}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn the_plugin_unlocks_on_demand_and_keeps_sudoers_locked() {
    let root = Root::new();
    root.usermod_lock("alice");
    root.usermod_lock("bob");
    let module = module("steward-plugin-account-unlock").await;
    let run = |params: &'static [(&'static str, &'static str)], mode| {
        let accounts = root.accounts();
        async move {
            run_with(
                fixture(),
                "steward-plugin-account-unlock",
                grants(&["accounts"]),
                params,
                mode,
            )
            .await
            .with_device(|d| d.accounts = Arc::new(accounts))
        }
    };

    let check = run(&[], RunMode::Apply).await;
    let findings = runtime()
        .check(&module, check.spec.clone())
        .await
        .result
        .expect("check");
    let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["locked:alice", "locked:bob"]);

    // bob is in sudo: never unlocked, even on demand, and the change says why.
    let on_demand = run(&[("user", "bob"), ("ticket", "HD-7")], RunMode::Apply).await;
    let changes = runtime()
        .remediate(&module, on_demand.spec.clone(), findings.clone())
        .await
        .result
        .map(|r| r.changes)
        .expect("remediate");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].kind, "kept-locked");
    assert!(
        changes[0].description.contains("sudo"),
        "{}",
        changes[0].description
    );
    assert!(root.accounts().lookup("bob").await.expect("bob").locked);

    let on_demand = run(&[("user", "alice"), ("ticket", "HD-8")], RunMode::Apply).await;
    let changes = runtime()
        .remediate(&module, on_demand.spec.clone(), findings)
        .await
        .result
        .map(|r| r.changes)
        .expect("remediate");
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].kind.as_str(), changes[0].outcome),
        ("unlock", Outcome::Applied)
    );
    assert!(changes[0].description.contains("HD-8"));
    assert!(!root.accounts().lookup("alice").await.expect("alice").locked);
    assert!(root.shadow().contains(&format!("alice:{ALICE_HASH}:")));
}
