//! The local inventory provider on this machine's real `/sys` and `/proc`,
//! checked against independent tools (`lsblk`, `nproc`), and on trees with
//! sources missing or present.

use std::path::Path;
use std::process::Command;

use steward_runtime::bindings::inventory::{DeviceClass, Health};
use steward_runtime::capability::inventory::{DeviceRecord, InventoryProvider, LocalInventory};

fn inventory() -> LocalInventory {
    let record: DeviceRecord = toml::from_str(
        r#"
        tenant-id = "acme"
        tags = ["office"]
        [admin]
        purchase-date = "2021-03-01"
        cost-cents = 120000
        class = "desktop"
        assigned-user = "alice"
        "#,
    )
    .expect("device record parses");
    LocalInventory::new("dev-1".into(), "this-machine".into(), record)
}

fn tool(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test]
async fn this_machine_is_read_from_real_sys_and_proc() {
    let facts = inventory()
        .device()
        .await
        .expect("local inventory never errors");
    assert_eq!(facts.tenant_id, "acme");
    assert_eq!(facts.admin.cost_cents, Some(120_000));
    assert_eq!(facts.admin.class, Some(DeviceClass::Desktop));
    let bought = facts.admin.purchase_date.expect("purchase date");
    assert_eq!((bought.year, bought.month, bought.day), (2021, 3, 1));

    let hw = &facts.hardware;
    assert!(hw.cpu_model.as_deref().is_some_and(|m| !m.is_empty()));
    let online = tool("nproc", &["--all"]).and_then(|n| n.parse::<u32>().ok());
    assert_eq!(hw.cpu_cores, online, "cores agree with nproc --all");
    let mem = hw
        .memory_bytes
        .expect("MemTotal is always in /proc/meminfo");
    assert!(mem > 256 << 20, "{mem} bytes of memory");

    // Every disk lsblk lists (whole disks, not loop/zram) with its size.
    let listed = tool("lsblk", &["-b", "-d", "-n", "-o", "NAME,SIZE,TYPE"]).expect("lsblk runs");
    let mut expected: Vec<(String, u64)> = listed
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"disk") && !f[0].starts_with("zram"))
                .then(|| (f[0].to_string(), f[1].parse().expect("size is a number")))
        })
        .collect();
    expected.sort();
    let got: Vec<(String, u64)> = facts
        .disks
        .iter()
        .map(|d| (d.name.clone(), d.size_bytes))
        .collect();
    assert_eq!(got, expected);

    // The OS and its end of life come from os-release and the table.
    let os = facts.os.expect("os-release exists");
    let id = std::fs::read_to_string("/etc/os-release").expect("os-release");
    if id.lines().any(|l| l == "ID=debian") && id.contains("VERSION_ID=\"12\"") {
        assert_eq!(os.version, "12");
        let eol = os.end_of_life.expect("Debian 12 is in the table");
        assert_eq!((eol.year, eol.month, eol.day), (2026, 6, 10));
    }

    // Sources this machine lacks are unknown, not errors.
    if !Path::new("/sys/class/dmi/id").exists() {
        assert!(hw.vendor.is_none() && hw.model.is_none() && hw.bios_date.is_none());
    }
    let batteries: Vec<String> = std::fs::read_dir("/sys/class/power_supply")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("type"))
                        .is_ok_and(|t| t.trim() == "Battery")
                })
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        facts
            .batteries
            .iter()
            .map(|b| b.name.clone())
            .collect::<Vec<_>>(),
        batteries
    );
}

#[test]
fn device_records_refuse_unknown_fields_and_bad_values() {
    let typo = toml::from_str::<DeviceRecord>("[admin]\ncost = 5\n").unwrap_err();
    assert!(typo.to_string().contains("unknown field `cost`"), "{typo}");
    let class = toml::from_str::<DeviceRecord>("[admin]\nclass = \"tablet\"\n").unwrap_err();
    assert!(class.to_string().contains("tablet"), "{class}");
}

#[tokio::test]
async fn missing_sources_are_unknown_never_errors() {
    let empty = tempfile::tempdir().expect("temp dir");
    let mut inv = inventory();
    inv.sys = empty.path().join("sys");
    inv.proc = empty.path().join("proc");
    inv.etc = empty.path().join("etc");
    inv.smartctl = Some(empty.path().join("no-smartctl"));
    let facts = inv.device().await.expect("a bare machine is not an error");
    assert!(facts.hardware.cpu_model.is_none() && facts.hardware.memory_bytes.is_none());
    assert!(facts.disks.is_empty() && facts.batteries.is_empty() && facts.os.is_none());
    assert_eq!(facts.admin.assigned_user.as_deref(), Some("alice"));
}

#[tokio::test]
async fn dmi_disks_batteries_and_smart_health_are_parsed() {
    let root = tempfile::tempdir().expect("temp dir");
    let put = |rel: &str, text: &str| {
        let path = root.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    put("sys/class/dmi/id/sys_vendor", "LENOVO\n");
    put("sys/class/dmi/id/product_name", "20XW0055GE\n");
    put(
        "sys/class/dmi/id/product_serial",
        "To be filled by O.E.M.\n",
    );
    put("sys/class/dmi/id/bios_date", "07/14/2021\n");
    put("sys/block/nvme0n1/size", "1000215216\n");
    put("sys/block/nvme0n1/device/model", "Samsung SSD 980\n");
    put("sys/block/loop0/size", "8\n");
    put("sys/class/power_supply/BAT0/type", "Battery\n");
    put("sys/class/power_supply/BAT0/energy_full", "42000000\n");
    put(
        "sys/class/power_supply/BAT0/energy_full_design",
        "56000000\n",
    );
    put("sys/class/power_supply/AC/type", "Mains\n");
    put(
        "etc/os-release",
        "NAME=\"Ubuntu\"\nID=ubuntu\nVERSION_ID=\"20.04\"\n",
    );
    // A stand-in smartctl that reports a failing disk, as smartctl -j does.
    put(
        "bin/smartctl",
        "#!/bin/sh\necho '{\"smart_status\":{\"passed\":false}}'\nexit 8\n",
    );
    let smartctl = root.path().join("bin/smartctl");
    Command::new("chmod")
        .arg("+x")
        .arg(&smartctl)
        .status()
        .expect("chmod");

    let mut inv = inventory();
    inv.sys = root.path().join("sys");
    inv.proc = root.path().join("proc");
    inv.etc = root.path().join("etc");
    inv.smartctl = Some(smartctl);
    let facts = inv.device().await.expect("facts");
    assert_eq!(facts.hardware.vendor.as_deref(), Some("LENOVO"));
    assert_eq!(
        facts.hardware.serial, None,
        "vendor placeholders are unknown"
    );
    let bios = facts.hardware.bios_date.expect("bios date parsed");
    assert_eq!((bios.year, bios.month, bios.day), (2021, 7, 14));
    assert_eq!(facts.disks.len(), 1, "loop devices are not disks");
    assert_eq!(facts.disks[0].size_bytes, 1_000_215_216 * 512);
    assert_eq!(facts.disks[0].health, Health::Failing);
    assert_eq!(facts.batteries.len(), 1);
    let wear = facts.batteries[0].wear_percent.expect("wear computed");
    assert!((wear - 25.0).abs() < 0.01, "{wear}");
    let eol = facts
        .os
        .and_then(|o| o.end_of_life)
        .expect("ubuntu 20.04 known");
    assert_eq!((eol.year, eol.month), (2025, 5));
}
