//! Directory (accounts) tests against a private OpenLDAP slapd; see
//! `slapd.rs` for the directory layout.

use crate::slapd::{AD_ADMIN_DN, ADMIN_DN, ADMIN_PASSWORD, Slapd, filetime_now};

#[test]
fn slapd_harness_locks_and_unlocks_with_ppolicy() {
    let ldap = Slapd::start().expect("private slapd starts (.ci/setup installs slapd ldap-utils)");
    assert!(ldap.url.ends_with(&format!(":{}", ldap.port)));
    assert!(ldap.bind_ok(ADMIN_DN, ADMIN_PASSWORD));
    assert!(ldap.bind_ok(AD_ADMIN_DN, ADMIN_PASSWORD));

    let alice = "uid=alice,ou=sales,ou=people,dc=steward,dc=test";
    assert!(ldap.bind_ok(alice, "alice-pass"));
    assert!(!ldap.bind_ok(alice, "bob-pass"));
    assert_eq!(ldap.attribute(alice, "pwdFailureTime").len(), 1);
    assert!(
        ldap.bind_ok(alice, "alice-pass"),
        "one failure does not lock"
    );
    assert!(
        ldap.attribute(alice, "pwdFailureTime").is_empty(),
        "a good bind clears the failures"
    );
    assert_eq!(ldap.attribute(alice, "uid"), ["alice"]);
    assert_eq!(ldap.attribute(alice, "userPassword"), ["alice-pass"]);

    ldap.lock(alice);
    assert!(
        !ldap.bind_ok(alice, "alice-pass"),
        "locked: right password fails"
    );
    let locked = ldap.attribute(alice, "pwdAccountLockedTime");
    assert_eq!(locked.len(), 1);
    assert!(
        locked[0].len() == 15 && locked[0].ends_with('Z'),
        "generalized time: {locked:?}"
    );
    assert!(ldap.attribute(alice, "pwdFailureTime").len() >= 3);
    // Other accounts are unaffected.
    assert!(ldap.bind_ok(
        "uid=carol,ou=sales,ou=people,dc=steward,dc=test",
        "carol-pass"
    ));

    // pwdFailureTime is NO-USER-MODIFICATION: even the root DN needs the
    // Relax Rules control to delete it.
    let unlock_both = format!(
        "dn: {alice}\nchangetype: modify\ndelete: pwdAccountLockedTime\n-\ndelete: pwdFailureTime\n"
    );
    let refused = ldap.try_modify(&unlock_both).unwrap_err();
    assert!(
        format!("{refused:#}").contains("no user modification"),
        "{refused:#}"
    );
    assert!(!ldap.bind_ok(alice, "alice-pass"), "still locked");

    ldap.modify_relax(&unlock_both);
    assert!(ldap.attribute(alice, "pwdAccountLockedTime").is_empty());
    assert!(ldap.attribute(alice, "pwdFailureTime").is_empty());
    assert!(ldap.bind_ok(alice, "alice-pass"), "unlocked");

    // Deleting pwdAccountLockedTime alone unlocks too: the overlay drops
    // pwdFailureTime itself.
    ldap.lock(alice);
    assert!(!ldap.bind_ok(alice, "alice-pass"));
    ldap.modify(&format!(
        "dn: {alice}\nchangetype: modify\ndelete: pwdAccountLockedTime\n"
    ));
    assert!(ldap.attribute(alice, "pwdFailureTime").is_empty());
    assert!(ldap.bind_ok(alice, "alice-pass"), "unlocked");

    // The AD-like directory: no ppolicy, the lock is what a DC would write.
    let erin = "cn=Erin Example,cn=Users,dc=ad,dc=test";
    assert!(ldap.bind_ok(erin, "erin-pass"));
    assert_eq!(ldap.attribute(erin, "sAMAccountName"), ["erin"]);
    assert!(ldap.attribute(erin, "lockoutTime").is_empty());
    let before = filetime_now();
    ldap.ad_lock(erin);
    let at: u64 = ldap.attribute(erin, "lockoutTime")[0].parse().unwrap();
    assert!(
        at >= before && at <= filetime_now(),
        "{at} is now as a FILETIME"
    );
    assert_eq!(ldap.attribute(erin, "badPwdCount"), ["5"]);
    assert_eq!(
        ldap.attribute("cn=Domain Admins,cn=Users,dc=ad,dc=test", "member"),
        ["cn=Frank Example,cn=Users,dc=ad,dc=test"]
    );

    ldap.stop();
}

// ---------------------------------------------------------------------------
// The directory provider and the `account-unlock` plugin against slapd.

mod provider {
    use std::sync::Arc;

    use steward_runtime::RunError;
    use steward_runtime::bindings::accounts::AccountSource;
    use steward_runtime::bindings::types::{Change, Finding, HostError, Outcome, RunMode};
    use steward_runtime::capability::accounts::{
        AccountsProvider, Directory, DirectoryConfig, Flavour,
    };

    use crate::slapd::{AD_ADMIN_DN, AD_SUFFIX, ADMIN_DN, ADMIN_PASSWORD, SUFFIX, Slapd};
    use crate::support::*;

    const ALICE: &str = "uid=alice,ou=sales,ou=people,dc=steward,dc=test";
    const BOB: &str = "uid=bob,ou=it,ou=people,dc=steward,dc=test";
    const CAROL: &str = "uid=carol,ou=sales,ou=people,dc=steward,dc=test";
    const DAVE: &str = "uid=dave,ou=it,ou=people,dc=steward,dc=test";
    const ERIN: &str = "cn=Erin Example,cn=Users,dc=ad,dc=test";
    const FRANK: &str = "cn=Frank Example,cn=Users,dc=ad,dc=test";

    fn openldap(ldap: &Slapd) -> DirectoryConfig {
        DirectoryConfig {
            url: ldap.url.clone(),
            bind_dn: ADMIN_DN.into(),
            bind_password: ADMIN_PASSWORD.into(),
            base_dn: SUFFIX.into(),
            flavour: Flavour::Openldap,
            user_filter: None,
            name_attribute: None,
            starttls: false,
            timeout_seconds: Some(5),
        }
    }

    /// Real AD's default filter uses `objectCategory`, which OpenLDAP lacks;
    /// the stand-in schema's auxiliary class selects users instead.
    fn active_directory(ldap: &Slapd) -> DirectoryConfig {
        DirectoryConfig {
            bind_dn: AD_ADMIN_DN.into(),
            base_dn: AD_SUFFIX.into(),
            flavour: Flavour::ActiveDirectory,
            user_filter: Some("(objectClass=stewardAdUser)".into()),
            ..openldap(ldap)
        }
    }

    fn unlocked(ldap: &Slapd, dn: &str) -> bool {
        ldap.attribute(dn, "pwdAccountLockedTime").is_empty()
    }

    /// check + remediate of `account-unlock` against `directory`.
    async fn unlock_run(
        directory: DirectoryConfig,
        params: &[(&str, &str)],
        mode: RunMode,
    ) -> (Vec<Finding>, Result<Vec<Change>, RunError>) {
        let module = module("steward-plugin-account-unlock").await;
        let run = run_with(
            fixture(),
            "steward-plugin-account-unlock",
            grants(&["accounts"]),
            params,
            mode,
        )
        .await
        .with_device(|d| d.accounts = Arc::new(Directory::new(directory)));
        let findings = runtime()
            .check(&module, run.spec.clone())
            .await
            .result
            .expect("check");
        let changes = runtime()
            .remediate(&module, run.spec, findings.clone())
            .await
            .result
            .map(|r| r.changes);
        (findings, changes)
    }

    fn kinds(changes: &[Change]) -> Vec<(String, String, Outcome)> {
        changes
            .iter()
            .map(|c| (c.kind.clone(), c.target.clone(), c.outcome))
            .collect()
    }

    #[tokio::test]
    async fn a_user_locked_by_bad_binds_is_found_unlocked_and_binds_again() {
        let ldap = Slapd::start().expect("slapd starts");
        ldap.lock(ALICE);
        assert!(!ldap.bind_ok(ALICE, "alice-pass"));

        let directory = Directory::new(openldap(&ldap));
        let locked = directory.locked().await.expect("lists locked accounts");
        assert_eq!(locked.len(), 1);
        let alice = &locked[0];
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.path.as_deref(), Some(ALICE));
        assert_eq!(alice.source, AccountSource::Directory);
        assert_eq!(alice.groups, ["sales"]);
        assert!(alice.failed_attempts >= 3, "{}", alice.failed_attempts);
        let since = alice.locked_since.as_ref().expect("lock time");
        let now = unix_now();
        assert!((now - since.seconds).abs() < 120, "locked just now");
        assert!(!directory.lookup("carol").await.expect("carol").locked);

        // Plan mode unlocks nothing.
        let (findings, planned) = unlock_run(
            openldap(&ldap),
            &[("auto-unlock-after-minutes", "0")],
            RunMode::Plan,
        )
        .await;
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].id, "locked:alice");
        assert_eq!(
            kinds(&planned.expect("plans")),
            [("unlock".to_string(), "alice".to_string(), Outcome::Planned)]
        );
        assert!(!unlocked(&ldap, ALICE) && !ldap.bind_ok(ALICE, "alice-pass"));

        let (_, applied) = unlock_run(
            openldap(&ldap),
            &[("auto-unlock-after-minutes", "0")],
            RunMode::Apply,
        )
        .await;
        assert_eq!(
            kinds(&applied.expect("applies")),
            [("unlock".to_string(), "alice".to_string(), Outcome::Applied)]
        );
        assert!(unlocked(&ldap, ALICE));
        assert!(ldap.attribute(ALICE, "pwdFailureTime").is_empty());
        assert!(ldap.bind_ok(ALICE, "alice-pass"), "alice logs in again");
    }

    #[tokio::test]
    async fn privileged_and_out_of_scope_users_stay_locked_and_the_plan_says_why() {
        let ldap = Slapd::start().expect("slapd starts");
        for dn in [ALICE, BOB, CAROL, DAVE] {
            ldap.lock(dn);
        }
        let params = [
            ("auto-unlock-after-minutes", "0"),
            // List parameters split on commas, so DNs use `;` between RDNs.
            ("allowed-ous", "ou=people;dc=steward;dc=test"),
            ("allowed-groups", "sales,Domain Admins"),
        ];
        let (_, planned) = unlock_run(openldap(&ldap), &params, RunMode::Plan).await;
        let planned = planned.expect("plans");
        let bob = planned
            .iter()
            .find(|c| c.target == "bob")
            .expect("bob is in the plan");
        assert_eq!(bob.kind, "kept-locked");
        assert!(
            bob.description.contains("Domain Admins"),
            "{}",
            bob.description
        );
        let dave = planned
            .iter()
            .find(|c| c.target == "dave")
            .expect("dave is in the plan");
        assert_eq!(dave.kind, "kept-locked", "helpdesk is not an allowed group");
        for dn in [ALICE, BOB, CAROL, DAVE] {
            assert!(!unlocked(&ldap, dn), "plan mode unlocked {dn}");
        }

        let (_, applied) = unlock_run(openldap(&ldap), &params, RunMode::Apply).await;
        let applied = applied.expect("applies");
        let unlocked_names: Vec<&str> = applied
            .iter()
            .filter(|c| c.kind == "unlock")
            .map(|c| c.target.as_str())
            .collect();
        assert_eq!(unlocked_names, ["alice", "carol"]);
        assert!(ldap.bind_ok(ALICE, "alice-pass") && ldap.bind_ok(CAROL, "carol-pass"));
        assert!(!ldap.bind_ok(BOB, "bob-pass"), "Domain Admins stay locked");
        assert!(!ldap.bind_ok(DAVE, "dave-pass"));
    }

    #[tokio::test]
    async fn on_demand_unlock_records_the_ticket_and_refuses_unknown_users() {
        let ldap = Slapd::start().expect("slapd starts");
        ldap.lock(CAROL);
        let (_, applied) = unlock_run(
            openldap(&ldap),
            &[("user", "carol"), ("ticket", "HD-1234")],
            RunMode::Apply,
        )
        .await;
        let applied = applied.expect("applies");
        assert_eq!(applied.len(), 1);
        assert_eq!(applied[0].kind, "unlock");
        assert!(applied[0].description.contains("HD-1234"));
        assert!(ldap.bind_ok(CAROL, "carol-pass"));

        ldap.lock(ALICE);
        let (_, missing) = unlock_run(
            openldap(&ldap),
            &[("user", "zelda"), ("ticket", "HD-1235")],
            RunMode::Apply,
        )
        .await;
        let err = missing.expect_err("no such user");
        assert!(err.to_string().contains("zelda"), "{err}");
        assert!(!unlocked(&ldap, ALICE), "nothing else was touched");
    }

    #[tokio::test]
    async fn active_directory_flavour_reads_lockout_time_and_resets_it() {
        let ldap = Slapd::start().expect("slapd starts");
        ldap.ad_lock(ERIN);
        ldap.ad_lock(FRANK);
        let directory = Directory::new(active_directory(&ldap));
        let locked = directory.locked().await.expect("lists");
        let names: Vec<(&str, u32, &[String])> = locked
            .iter()
            .map(|a| (a.name.as_str(), a.failed_attempts, a.groups.as_slice()))
            .collect();
        assert_eq!(
            names,
            [
                ("erin", 5, &["Staff".to_string()][..]),
                ("frank", 5, &["Domain Admins".to_string()][..])
            ]
        );
        let since = locked[0].locked_since.as_ref().expect("FILETIME converted");
        let now = unix_now();
        assert!((now - since.seconds).abs() < 120);

        let (_, applied) = unlock_run(
            active_directory(&ldap),
            &[("auto-unlock-after-minutes", "0")],
            RunMode::Apply,
        )
        .await;
        let applied = applied.expect("applies");
        assert_eq!(
            kinds(&applied),
            [
                ("unlock".to_string(), "erin".to_string(), Outcome::Applied),
                (
                    "kept-locked".to_string(),
                    "frank".to_string(),
                    Outcome::Applied
                )
            ]
        );
        assert_eq!(ldap.attribute(ERIN, "lockoutTime"), ["0"]);
        assert_ne!(ldap.attribute(FRANK, "lockoutTime"), ["0"]);
    }

    #[tokio::test]
    async fn unreachable_directories_and_wrong_credentials_are_clear_errors() {
        let ldap = Slapd::start().expect("slapd starts");
        ldap.lock(ALICE);

        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
            listener.local_addr().expect("addr").port()
        };
        let unreachable = DirectoryConfig {
            url: format!("ldap://127.0.0.1:{closed}"),
            ..openldap(&ldap)
        };
        match Directory::new(unreachable.clone()).locked().await {
            Err(HostError::Unavailable(m)) => assert!(m.contains("unreachable"), "{m}"),
            other => panic!("expected unavailable, got {other:?}"),
        }
        let wrong = DirectoryConfig {
            bind_password: "not-the-password".into(),
            ..openldap(&ldap)
        };
        match Directory::new(wrong.clone())
            .unlock("alice", RunMode::Apply)
            .await
        {
            Err(HostError::Failed(m)) => {
                assert!(m.contains("invalid credentials"), "{m}");
                assert!(!m.contains("not-the-password"), "no password in errors");
            }
            other => panic!("expected a refused bind, got {other:?}"),
        }
        match Directory::new(openldap(&ldap))
            .unlock("zelda", RunMode::Apply)
            .await
        {
            Err(HostError::NotFound(m)) => assert!(m.contains("zelda"), "{m}"),
            other => panic!("expected not-found, got {other:?}"),
        }

        // Through the plugin: the check fails with the provider's reason.
        for config in [unreachable, wrong] {
            let module = module("steward-plugin-account-unlock").await;
            let run = run_with(
                fixture(),
                "steward-plugin-account-unlock",
                grants(&["accounts"]),
                &[("auto-unlock-after-minutes", "0")],
                RunMode::Apply,
            )
            .await
            .with_device(|d| d.accounts = Arc::new(Directory::new(config)));
            let err = runtime()
                .check(&module, run.spec)
                .await
                .result
                .expect_err("directory errors fail the check");
            let text = err.to_string();
            assert!(
                text.contains("unreachable") || text.contains("invalid credentials"),
                "{text}"
            );
        }
        assert!(!unlocked(&ldap, ALICE), "nothing changed");
    }
}
