//! A dpkg/apt sandbox for tests: a root with packages installed by
//! `dpkg --root`, and a local repository (built with `dpkg-deb` and
//! `dpkg-scanpackages`, one archive labelled as a security origin) that apt
//! in the root points at. Nothing touches this machine's own packages.

use std::path::{Path, PathBuf};
use std::process::Command;

use steward_contract::Digest;

/// Runs `cmd`; its stdout, or a panic naming the command and its stderr.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn build_deb(work: &Path, name: &str, version: &str, out_dir: &Path) -> PathBuf {
    let tree = work.join(format!("build/{name}-{version}"));
    std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(tree.join(format!("usr/share/{name}"))).unwrap();
    std::fs::write(tree.join(format!("usr/share/{name}/VERSION")), version).unwrap();
    std::fs::write(
        tree.join("DEBIAN/control"),
        format!("Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: Steward tests <tests@example.invalid>\nDescription: test package {name}\n"),
    )
    .unwrap();
    std::fs::create_dir_all(out_dir).unwrap();
    let deb = out_dir.join(format!("{name}_{version}_all.deb"));
    sh(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&tree)
        .arg(&deb));
    deb
}

fn flat_repo(dir: &Path, origin: &str, suite: &str) {
    let packages = sh(Command::new("dpkg-scanpackages")
        .args(["--multiversion", ".", "/dev/null"])
        .current_dir(dir));
    std::fs::write(dir.join("Packages"), &packages).unwrap();
    let hash = Digest::of(packages.as_bytes()).hex();
    std::fs::write(
        dir.join("Release"),
        format!("Origin: {origin}\nLabel: {origin}\nSuite: {suite}\nCodename: {suite}\nSHA256:\n {hash} {} Packages\n", packages.len()),
    )
    .unwrap();
}

/// A sandbox root (in a temporary directory) with `libfoo` and `tool` 1.0
/// installed, and 1.1 of each available: `libfoo` from a security archive,
/// `tool` from the main one.
pub fn sandbox() -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    sandbox_at(work.path(), &root);
    (work, root)
}

/// [`sandbox`] in `root`, building in `work`: `libfoo` and `tool` 1.0
/// installed, 1.1 of each available.
pub fn sandbox_at(work: &Path, root: &Path) {
    for d in [
        "var/lib/dpkg/updates",
        "var/lib/dpkg/info",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "etc/apt/sources.list.d",
        "etc/apt/preferences.d",
        "etc/apt/apt.conf.d",
        "var/log",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let old = work.join("old");
    let debs = [
        build_deb(work, "libfoo", "1.0", &old),
        build_deb(work, "tool", "1.0", &old),
    ];
    sh(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-script-chrootless", "-i"])
        .args(&debs));
    let main = work.join("repo/main");
    let security = work.join("repo/security");
    build_deb(work, "tool", "1.1", &main);
    build_deb(work, "libfoo", "1.1", &security);
    flat_repo(&main, "Debian", "stable");
    flat_repo(&security, "Debian-Security", "stable-security");
    std::fs::write(
        root.join("etc/apt/sources.list"),
        format!(
            "deb [trusted=yes] file:{} ./\ndeb [trusted=yes] file:{} ./\n",
            main.display(),
            security.display()
        ),
    )
    .unwrap();
}

/// The version of `name` installed in `root` (the file its package ships).
pub fn version_on_disk(root: &Path, name: &str) -> String {
    std::fs::read_to_string(root.join(format!("usr/share/{name}/VERSION"))).unwrap()
}
