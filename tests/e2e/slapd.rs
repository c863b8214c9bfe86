//! A private OpenLDAP `slapd` for the directory (accounts) provider tests.
//!
//! [`Slapd::start`] writes a `slapd.conf` into a temporary directory, starts
//! `slapd -h ldap://127.0.0.1:PORT/ -f CONF -d 32768` as a foreground child on
//! a free loopback port (debug level 32768, "none", keeps slapd in the
//! foreground and prints only its unconditional messages, so a failed start
//! comes with a reason), waits until the admin can bind, and loads the
//! directory below with `ldapadd`. Every operation runs the `ldap-utils`
//! command-line tools (`ldapwhoami`, `ldapsearch`, `ldapmodify`, `ldapadd`)
//! with `LDAPNOINIT=1`, so no `ldap.conf` or `.ldaprc` of the machine
//! interferes. The system slapd the Debian package may start is neither used
//! nor needed. `.ci/setup` installs `slapd` and `ldap-utils`; when they are
//! missing, [`Slapd::start`] fails and says so.
//!
//! # OpenLDAP flavour: `dc=steward,dc=test`
//!
//! Root DN [`ADMIN_DN`] `cn=admin,dc=steward,dc=test`, password
//! [`ADMIN_PASSWORD`] `admin-secret`.
//!
//! ```text
//! dc=steward,dc=test
//! ├── ou=people
//! │   ├── ou=sales
//! │   │   ├── uid=alice   inetOrgPerson, password alice-pass
//! │   │   └── uid=carol   inetOrgPerson, password carol-pass
//! │   └── ou=it
//! │       ├── uid=bob     inetOrgPerson, password bob-pass
//! │       └── uid=dave    inetOrgPerson, password dave-pass
//! ├── ou=groups           groupOfNames, members by full DN
//! │   ├── cn=Domain Admins   member uid=bob,ou=it,ou=people,dc=steward,dc=test
//! │   ├── cn=sales           members alice and carol
//! │   └── cn=helpdesk        member dave
//! └── ou=policies
//!     └── cn=default      device + pwdPolicy: pwdAttribute userPassword,
//!                         pwdMaxFailure 3, pwdLockout TRUE,
//!                         pwdLockoutDuration 0, pwdFailureCountInterval 0
//! ```
//!
//! The `ppolicy` overlay (OpenLDAP 2.5: its schema is built into the module,
//! there is no `ppolicy.schema` to include) uses `cn=default` as
//! `ppolicy_default` with `ppolicy_use_lockout`. Behaviour, checked against
//! slapd 2.5.13 (Debian 12):
//!
//! - Each failed simple bind adds a value to the operational, multi-valued
//!   `pwdFailureTime` (generalized time with microseconds, for example
//!   `20261123125051.151344Z`). The third sets the operational, single-valued
//!   `pwdAccountLockedTime` to the lock time (`20261123125051Z`); with
//!   `pwdLockoutDuration: 0` the account stays locked until an administrator
//!   unlocks it. A locked account fails even the right password with
//!   `invalidCredentials` (49); only the ppolicy response control (for example
//!   `ldapwhoami -e ppolicy`) says "Account locked".
//! - Operational attributes are returned only when asked for by name (or with
//!   `+`); [`Slapd::attribute`] asks by name.
//! - Unlocking: the root DN deletes `pwdAccountLockedTime`; the overlay then
//!   deletes `pwdFailureTime` itself. `pwdFailureTime` is
//!   `NO-USER-MODIFICATION`: deleting it in an ordinary modify, even as the
//!   root DN, fails with `constraintViolation` (19, "pwdFailureTime: no user
//!   modification allowed"); it can be deleted only with the Relax Rules
//!   control ([`Slapd::modify_relax`], `ldapmodify -e relax`). Deleting a
//!   `pwdAccountLockedTime` that is not there fails with `noSuchAttribute`
//!   (16).
//! - An administrator can lock an account by adding `pwdAccountLockedTime`
//!   (`000001010000Z` means locked for good).
//!
//! # Active Directory–like flavour: `dc=ad,dc=test`
//!
//! A second database in the same slapd, root DN [`AD_ADMIN_DN`]
//! `cn=admin,dc=ad,dc=test`, password [`ADMIN_PASSWORD`], without ppolicy.
//! A private, test-only schema ([`AD_SCHEMA`], OIDs under the unregistered
//! arc `1.3.6.1.4.1.99999.1`) stands in for three Active Directory
//! attributes, all single-valued: `sAMAccountName` (directory string),
//! `lockoutTime` (INTEGER, a FILETIME: 100-ns intervals since 1601-01-01,
//! 0 = not locked) and `badPwdCount` (INTEGER), which the auxiliary class
//! `stewardAdUser` allows.
//!
//! ```text
//! dc=ad,dc=test
//! └── cn=Users            organizationalRole (AD: container)
//!     ├── cn=Erin Example    inetOrgPerson + stewardAdUser, sAMAccountName erin, password erin-pass
//!     ├── cn=Frank Example   inetOrgPerson + stewardAdUser, sAMAccountName frank, password frank-pass
//!     ├── cn=Domain Admins   groupOfNames, member cn=Frank Example,cn=Users,dc=ad,dc=test
//!     └── cn=Staff           groupOfNames, member cn=Erin Example,cn=Users,dc=ad,dc=test
//! ```
//!
//! OpenLDAP does not enforce AD lockout: [`Slapd::ad_lock`] writes what a
//! domain controller would (`lockoutTime` = now as a FILETIME,
//! `badPwdCount: 5`); binds keep working.
//!
//! # Access
//!
//! Anyone may authenticate against `userPassword`, users may read their own
//! entry, the root DNs may do everything; nothing else is readable.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

/// Suffix of the OpenLDAP-flavoured directory.
pub const SUFFIX: &str = "dc=steward,dc=test";
/// Root DN of the OpenLDAP-flavoured directory.
pub const ADMIN_DN: &str = "cn=admin,dc=steward,dc=test";
/// Password of both root DNs.
pub const ADMIN_PASSWORD: &str = "admin-secret";
/// Suffix of the Active Directory–like directory.
pub const AD_SUFFIX: &str = "dc=ad,dc=test";
/// Root DN of the Active Directory–like directory.
pub const AD_ADMIN_DN: &str = "cn=admin,dc=ad,dc=test";
/// `pwdMaxFailure` of the default password policy.
pub const MAX_FAILURES: usize = 3;

/// Seconds between 1601-01-01 (the FILETIME epoch) and 1970-01-01.
const FILETIME_UNIX_OFFSET_SECS: u64 = 11_644_473_600;

/// Test-only stand-in for a few Active Directory attributes. The OIDs sit
/// under an unregistered private-enterprise arc and mean nothing outside
/// these tests; the schema is written next to `slapd.conf`.
pub const AD_SCHEMA: &str = "\
# Test-only stand-in for a few Active Directory attributes; the OIDs under
# 1.3.6.1.4.1.99999.1 are private to Steward's tests.
attributetype ( 1.3.6.1.4.1.99999.1.1.1 NAME 'sAMAccountName'
\tDESC 'Test stand-in: AD logon name'
\tEQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
\tSYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.1.2 NAME 'lockoutTime'
\tDESC 'Test stand-in: FILETIME of the lockout, 0 when not locked'
\tEQUALITY integerMatch ORDERING integerOrderingMatch
\tSYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.1.3 NAME 'badPwdCount'
\tDESC 'Test stand-in: failed logons since the last success'
\tEQUALITY integerMatch ORDERING integerOrderingMatch
\tSYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.1.2.1 NAME 'stewardAdUser'
\tDESC 'Test stand-in: AD user attributes'
\tSUP top AUXILIARY
\tMAY ( sAMAccountName $ lockoutTime $ badPwdCount ) )
";

const STEWARD_LDIF: &str = "\
dn: dc=steward,dc=test
objectClass: dcObject
objectClass: organization
dc: steward
o: Steward test

dn: ou=people,dc=steward,dc=test
objectClass: organizationalUnit
ou: people

dn: ou=sales,ou=people,dc=steward,dc=test
objectClass: organizationalUnit
ou: sales

dn: ou=it,ou=people,dc=steward,dc=test
objectClass: organizationalUnit
ou: it

dn: ou=groups,dc=steward,dc=test
objectClass: organizationalUnit
ou: groups

dn: ou=policies,dc=steward,dc=test
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,dc=steward,dc=test
objectClass: device
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdMaxFailure: 3
pwdLockout: TRUE
pwdLockoutDuration: 0
pwdFailureCountInterval: 0

dn: uid=alice,ou=sales,ou=people,dc=steward,dc=test
objectClass: inetOrgPerson
uid: alice
cn: Alice Sales
givenName: Alice
sn: Sales
userPassword: alice-pass

dn: uid=carol,ou=sales,ou=people,dc=steward,dc=test
objectClass: inetOrgPerson
uid: carol
cn: Carol Sales
givenName: Carol
sn: Sales
userPassword: carol-pass

dn: uid=bob,ou=it,ou=people,dc=steward,dc=test
objectClass: inetOrgPerson
uid: bob
cn: Bob Admin
givenName: Bob
sn: Admin
userPassword: bob-pass

dn: uid=dave,ou=it,ou=people,dc=steward,dc=test
objectClass: inetOrgPerson
uid: dave
cn: Dave Helpdesk
givenName: Dave
sn: Helpdesk
userPassword: dave-pass

dn: cn=Domain Admins,ou=groups,dc=steward,dc=test
objectClass: groupOfNames
cn: Domain Admins
member: uid=bob,ou=it,ou=people,dc=steward,dc=test

dn: cn=sales,ou=groups,dc=steward,dc=test
objectClass: groupOfNames
cn: sales
member: uid=alice,ou=sales,ou=people,dc=steward,dc=test
member: uid=carol,ou=sales,ou=people,dc=steward,dc=test

dn: cn=helpdesk,ou=groups,dc=steward,dc=test
objectClass: groupOfNames
cn: helpdesk
member: uid=dave,ou=it,ou=people,dc=steward,dc=test
";

const AD_LDIF: &str = "\
dn: dc=ad,dc=test
objectClass: dcObject
objectClass: organization
dc: ad
o: Steward AD stand-in

dn: cn=Users,dc=ad,dc=test
objectClass: organizationalRole
cn: Users
description: Stand-in for the AD Users container

dn: cn=Erin Example,cn=Users,dc=ad,dc=test
objectClass: inetOrgPerson
objectClass: stewardAdUser
cn: Erin Example
givenName: Erin
sn: Example
sAMAccountName: erin
userPassword: erin-pass

dn: cn=Frank Example,cn=Users,dc=ad,dc=test
objectClass: inetOrgPerson
objectClass: stewardAdUser
cn: Frank Example
givenName: Frank
sn: Example
sAMAccountName: frank
userPassword: frank-pass

dn: cn=Domain Admins,cn=Users,dc=ad,dc=test
objectClass: groupOfNames
cn: Domain Admins
member: cn=Frank Example,cn=Users,dc=ad,dc=test

dn: cn=Staff,cn=Users,dc=ad,dc=test
objectClass: groupOfNames
cn: Staff
member: cn=Erin Example,cn=Users,dc=ad,dc=test
";

/// A running private slapd with both directories loaded. Killed on drop.
pub struct Slapd {
    /// `ldap://127.0.0.1:PORT`
    pub url: String,
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Slapd {
    /// Starts slapd on a free loopback port and loads both directories.
    pub fn start() -> Result<Slapd> {
        let slapd = find_program("slapd", &["/usr/sbin", "/usr/local/sbin", "/usr/libexec"])
            .context(
                "slapd is not installed (Debian: apt-get install slapd ldap-utils; .ci/setup does it)",
            )?;
        for tool in ["ldapwhoami", "ldapsearch", "ldapadd", "ldapmodify"] {
            find_program(tool, &[]).with_context(|| {
                format!("{tool} is not installed (Debian: apt-get install ldap-utils)")
            })?;
        }
        let modules = first_dir_with(
            &[
                "/usr/lib/ldap",
                "/usr/lib64/openldap",
                "/usr/lib/openldap",
                "/usr/libexec/openldap",
            ],
            "back_mdb.so",
        )
        .context("no OpenLDAP module directory with back_mdb.so (looked in /usr/lib/ldap)")?;
        let schema = first_dir_with(
            &["/etc/ldap/schema", "/etc/openldap/schema"],
            "inetorgperson.schema",
        )
        .context("no OpenLDAP schema directory (looked in /etc/ldap/schema)")?;

        // The port is free when we look; slapd may still lose a race for it,
        // so a start that dies early is retried on a fresh port.
        let mut attempt = 1;
        loop {
            match Self::start_once(&slapd, &modules, &schema) {
                Err(e) if attempt < 3 && e.downcast_ref::<ExitedEarly>().is_some() => {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn start_once(slapd: &Path, modules: &Path, schema: &Path) -> Result<Slapd> {
        let dir = tempfile::Builder::new()
            .prefix("steward-slapd-")
            .tempdir()
            .context("temp dir for slapd")?;
        let port = free_port()?;
        let url = format!("ldap://127.0.0.1:{port}");
        let conf = write_config(dir.path(), modules, schema)?;
        let log = File::create(dir.path().join("slapd.log")).context("slapd log")?;
        let child = Command::new(slapd)
            .arg("-h")
            .arg(format!("{url}/"))
            .arg("-f")
            .arg(&conf)
            .args(["-d", "32768"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("slapd log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("running {}", slapd.display()))?;
        let mut me = Slapd {
            url,
            port,
            child: Some(child),
            dir,
        };
        me.wait_ready(Duration::from_secs(10))?;
        me.add(ADMIN_DN, STEWARD_LDIF)?;
        me.add(AD_ADMIN_DN, AD_LDIF)?;
        Ok(me)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .expect("child until dropped")
                .try_wait()?
            {
                self.child = None;
                return Err(ExitedEarly(format!(
                    "slapd exited during start-up ({status}); its output:\n{}",
                    self.log()
                ))
                .into());
            }
            let out = self.whoami(ADMIN_DN, ADMIN_PASSWORD)?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "slapd on {} did not answer an admin bind within {timeout:?}; last ldapwhoami: {}; slapd output:\n{}",
                    self.url,
                    String::from_utf8_lossy(&out.stderr).trim(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn add(&self, admin: &str, ldif: &str) -> Result<()> {
        let out = self.admin_tool("ldapadd", admin, &[], ldif)?;
        if !out.status.success() {
            bail!(
                "loading the test directory under {admin} failed: {}\nslapd output:\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                self.log()
            );
        }
        Ok(())
    }

    /// What slapd printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// Whether a simple bind as `dn` with `password` succeeds.
    pub fn bind_ok(&self, dn: &str, password: &str) -> bool {
        self.whoami(dn, password)
            .expect("ldapwhoami runs")
            .status
            .success()
    }

    /// Fails simple binds as `dn` until the password policy locks the account
    /// (`pwdMaxFailure` = 3), then asserts `pwdAccountLockedTime` is set.
    /// OpenLDAP flavour only.
    pub fn lock(&self, dn: &str) {
        for _ in 0..MAX_FAILURES {
            if !self.attribute(dn, "pwdAccountLockedTime").is_empty() {
                break;
            }
            assert!(
                !self.bind_ok(dn, "definitely-not-the-password"),
                "{dn} bound with a wrong password"
            );
        }
        let locked = self.attribute(dn, "pwdAccountLockedTime");
        assert_eq!(
            locked.len(),
            1,
            "{dn} is not locked after {MAX_FAILURES} failed binds; pwdFailureTime = {:?}",
            self.attribute(dn, "pwdFailureTime")
        );
    }

    /// Simulates the lockout an AD domain controller records: `lockoutTime`
    /// set to now as a FILETIME and `badPwdCount: 5`. AD flavour only.
    pub fn ad_lock(&self, dn: &str) {
        self.modify(&format!(
            "dn: {dn}\nchangetype: modify\nreplace: lockoutTime\nlockoutTime: {}\n-\nreplace: badPwdCount\nbadPwdCount: 5\n",
            filetime_now()
        ));
    }

    /// The values of `attr` on `dn` read by the root DN of its directory
    /// (operational attributes such as `pwdAccountLockedTime` included);
    /// empty when the entry has no such attribute. Panics when the search
    /// fails, for example when the entry does not exist.
    pub fn attribute(&self, dn: &str, attr: &str) -> Vec<String> {
        let out = self
            .admin_tool(
                "ldapsearch",
                admin_for(dn),
                &[
                    "-LLL",
                    "-o",
                    "ldif-wrap=no",
                    "-s",
                    "base",
                    "-b",
                    dn,
                    "(objectClass=*)",
                    attr,
                ],
                "",
            )
            .expect("ldapsearch runs");
        assert!(
            out.status.success(),
            "ldapsearch of {attr} on {dn} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        parse_values(&String::from_utf8_lossy(&out.stdout), attr)
    }

    /// Applies `ldif` (with `changetype:` lines) as the root DN of the
    /// directory its first `dn:` names; panics with ldapmodify's error.
    pub fn modify(&self, ldif: &str) {
        if let Err(e) = self.try_modify(ldif) {
            panic!("{e:#}");
        }
    }

    /// [`Slapd::modify`] with the Relax Rules control, which lets the root DN
    /// change `NO-USER-MODIFICATION` attributes such as `pwdFailureTime`.
    pub fn modify_relax(&self, ldif: &str) {
        if let Err(e) = self.run_modify(ldif, &["-e", "relax"]) {
            panic!("{e:#}");
        }
    }

    /// [`Slapd::modify`] returning ldapmodify's error instead of panicking.
    pub fn try_modify(&self, ldif: &str) -> Result<()> {
        self.run_modify(ldif, &[])
    }

    fn run_modify(&self, ldif: &str, extra: &[&str]) -> Result<()> {
        let dn = ldif
            .lines()
            .find_map(|l| l.strip_prefix("dn:"))
            .context("the LDIF names no dn")?
            .trim();
        let out = self.admin_tool("ldapmodify", admin_for(dn), extra, ldif)?;
        if !out.status.success() {
            bail!(
                "ldapmodify failed ({}): {}\nLDIF:\n{ldif}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Stops slapd (as dropping does).
    pub fn stop(self) {}

    fn whoami(&self, dn: &str, password: &str) -> Result<Output> {
        ldap_tool("ldapwhoami")
            .args([
                "-x",
                "-o",
                "nettimeout=5",
                "-H",
                &self.url,
                "-D",
                dn,
                "-w",
                password,
            ])
            .stdin(Stdio::null())
            .output()
            .context("running ldapwhoami")
    }

    /// Runs `tool` bound as `admin`, feeding `input` on stdin.
    fn admin_tool(&self, tool: &str, admin: &str, args: &[&str], input: &str) -> Result<Output> {
        use std::io::Write;
        let mut child = ldap_tool(tool)
            .args([
                "-x",
                "-o",
                "nettimeout=5",
                "-H",
                &self.url,
                "-D",
                admin,
                "-w",
            ])
            .arg(ADMIN_PASSWORD)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {tool}"))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = input.to_owned();
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for {tool}"))?;
        writer
            .join()
            .expect("stdin writer")
            .with_context(|| format!("writing to {tool}"))?;
        Ok(out)
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// slapd exited before it answered (a lost port race, a bad configuration).
#[derive(Debug)]
struct ExitedEarly(String);

impl std::fmt::Display for ExitedEarly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExitedEarly {}

/// The root DN that owns `dn`.
fn admin_for(dn: &str) -> &'static str {
    let dn = dn.to_ascii_lowercase().replace(' ', "");
    if dn == AD_SUFFIX || dn.ends_with(&format!(",{AD_SUFFIX}")) {
        AD_ADMIN_DN
    } else {
        ADMIN_DN
    }
}

/// An ldap-utils command that reads no ldap.conf or .ldaprc.
fn ldap_tool(tool: &str) -> Command {
    let mut cmd = Command::new(tool);
    cmd.env("LDAPNOINIT", "1");
    cmd
}

fn write_config(dir: &Path, modules: &Path, schema: &Path) -> Result<PathBuf> {
    let steward_db = dir.join("steward-db");
    let ad_db = dir.join("ad-db");
    std::fs::create_dir(&steward_db)?;
    std::fs::create_dir(&ad_db)?;
    let ad_schema = dir.join("steward-ad.schema");
    std::fs::write(&ad_schema, AD_SCHEMA)?;
    let d = |p: &Path| p.display().to_string();
    let conf = format!(
        r#"# Private slapd for Steward's tests.
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {ad_schema}

modulepath {modules}
moduleload back_mdb
moduleload ppolicy

pidfile {pid}
argsfile {args}

# OpenLDAP flavour, with the password policy.
database mdb
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {steward_db}
maxsize 16777216
index objectClass eq
overlay ppolicy
ppolicy_default "cn=default,ou=policies,{SUFFIX}"
ppolicy_use_lockout
access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by self read
    by * none

# Active Directory-like flavour, no password policy.
database mdb
suffix "{AD_SUFFIX}"
rootdn "{AD_ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {ad_db}
maxsize 16777216
index objectClass eq
access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by self read
    by * none
"#,
        schema = d(schema),
        ad_schema = d(&ad_schema),
        modules = d(modules),
        pid = d(&dir.join("slapd.pid")),
        args = d(&dir.join("slapd.args")),
        steward_db = d(&steward_db),
        ad_db = d(&ad_db),
    );
    let path = dir.join("slapd.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// `name` on `PATH` or in one of `extra` (slapd lives in /usr/sbin, which a
/// non-root `PATH` often lacks).
fn find_program(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn first_dir_with(dirs: &[&str], file: &str) -> Option<PathBuf> {
    dirs.iter()
        .map(PathBuf::from)
        .find(|d| d.join(file).exists())
}

/// Now as an AD FILETIME: 100-ns intervals since 1601-01-01 UTC.
pub fn filetime_now() -> u64 {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    (since_unix.as_secs() + FILETIME_UNIX_OFFSET_SECS) * 10_000_000
        + u64::from(since_unix.subsec_nanos()) / 100
}

/// The values of `attr` in unwrapped (`ldif-wrap=no`) LDIF of one entry;
/// `attr::` values are base64 (ldapsearch always encodes `userPassword`).
fn parse_values(ldif: &str, attr: &str) -> Vec<String> {
    ldif.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            // Attribute options (`;binary`) do not change the attribute.
            let base = name.split(';').next().unwrap_or(name);
            if !base.eq_ignore_ascii_case(attr) {
                return None;
            }
            Some(match rest.strip_prefix(':') {
                Some(b64) => String::from_utf8_lossy(&base64_decode(b64.trim())).into_owned(),
                None => rest.strip_prefix(' ').unwrap_or(rest).to_string(),
            })
        })
        .collect()
}

fn base64_decode(s: &str) -> Vec<u8> {
    let sextet = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in s.bytes().filter_map(sextet) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_plain_and_base64_values() {
        let ldif = "dn: uid=a,dc=x\nuserPassword:: YWxpY2UtcGFzcw==\npwdFailureTime: 1Z\npwdFailureTime: 2Z\n";
        assert_eq!(super::parse_values(ldif, "userpassword"), ["alice-pass"]);
        assert_eq!(super::parse_values(ldif, "pwdFailureTime"), ["1Z", "2Z"]);
        assert!(super::parse_values(ldif, "pwdAccountLockedTime").is_empty());
    }
}
