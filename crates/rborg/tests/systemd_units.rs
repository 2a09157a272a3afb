//! The systemd units in `dist/systemd/` (docs/scheduling.md): systemd itself must accept them
//! without a single warning (`systemd-analyze verify`), and they must carry the settings the
//! documentation promises.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/systemd")
}

/// The `[section]` → key → values of a unit file (a key may be given several times).
fn parse_unit(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
            sections.entry(current.clone()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a key=value line: {line}"));
        assert!(!current.is_empty(), "{line} outside a section");
        sections
            .entry(current.clone())
            .or_default()
            .entry(key.trim().to_string())
            .or_default()
            .push(value.trim().to_string());
    }
    sections
}

fn unit(name: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    parse_unit(&std::fs::read_to_string(dist().join(name)).unwrap())
}

fn assert_setting(
    unit: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
    section: &str,
    key: &str,
    value: &str,
) {
    let got = unit.get(section).and_then(|s| s.get(key));
    assert_eq!(
        got.map(Vec::as_slice),
        Some(&[value.to_string()][..]),
        "[{section}] {key}"
    );
}

#[test]
fn the_service_has_the_documented_settings() {
    let service = unit("rborg.service");
    for (key, value) in [
        ("Type", "oneshot"),
        (
            "ExecStart",
            "/usr/bin/rborg --verbosity -2 --syslog-verbosity 1",
        ),
        ("Nice", "19"),
        ("CPUSchedulingPolicy", "batch"),
        ("IOSchedulingClass", "best-effort"),
        ("IOSchedulingPriority", "7"),
        ("IOWeight", "100"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectSystem", "full"),
        ("MemoryDenyWriteExecute", "yes"),
        ("Restart", "no"),
    ] {
        assert_setting(&service, "Service", key, value);
    }
    // Every sandboxing setting of borgmatic's sample unit is present (values may differ only
    // where docs/scheduling.md says so).
    for key in [
        "LockPersonality",
        "PrivateDevices",
        "ProtectClock",
        "ProtectControlGroups",
        "ProtectHostname",
        "ProtectKernelLogs",
        "ProtectKernelModules",
        "ProtectKernelTunables",
        "RestrictAddressFamilies",
        "RestrictNamespaces",
        "RestrictRealtime",
        "RestrictSUIDSGID",
        "SystemCallArchitectures",
        "SystemCallFilter",
        "SystemCallErrorNumber",
        "CapabilityBoundingSet",
        "LogRateLimitIntervalSec",
    ] {
        assert!(
            service["Service"].contains_key(key),
            "[Service] {key} missing"
        );
    }
    assert_setting(&service, "Unit", "After", "network-online.target");
    assert_setting(&service, "Unit", "Wants", "network-online.target");
}

#[test]
fn the_timer_runs_daily_with_a_random_delay_and_catches_up() {
    let timer = unit("rborg.timer");
    assert_setting(&timer, "Timer", "OnCalendar", "daily");
    assert_setting(&timer, "Timer", "RandomizedDelaySec", "3h");
    assert_setting(&timer, "Timer", "Persistent", "true");
    assert_setting(&timer, "Install", "WantedBy", "timers.target");
    // The timer starts the service of the same name.
    assert!(!timer["Timer"].contains_key("Unit"));
}

#[test]
fn the_documented_install_command_copies_exactly_the_two_units() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/scheduling.md"),
    )
    .unwrap();
    assert!(doc.contains(
        "install -m 644 dist/systemd/rborg.* /etc/systemd/system/ && systemctl daemon-reload && systemctl enable --now rborg.timer"
    ));
    let mut matched: Vec<String> = std::fs::read_dir(dist())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("rborg."))
        .collect();
    matched.sort();
    assert_eq!(matched, ["rborg.service", "rborg.timer"]);
}

/// `systemd-analyze verify` on copies of the units whose `ExecStart=` names the binary just
/// built (verify fails when the program does not exist, and `/usr/bin/rborg` need not).
#[test]
fn systemd_analyze_verify_accepts_the_units_without_warnings() {
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("systemd-analyze is not installed: skipping the verification of the units");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_rborg");
    let service = std::fs::read_to_string(dist().join("rborg.service")).unwrap();
    assert_eq!(service.matches("/usr/bin/rborg").count(), 1);
    std::fs::write(
        dir.path().join("rborg.service"),
        service.replace("/usr/bin/rborg", binary),
    )
    .unwrap();
    std::fs::copy(dist().join("rborg.timer"), dir.path().join("rborg.timer")).unwrap();

    let verify = |files: &[&str]| {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .args(files.iter().map(|f| dir.path().join(f)))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, output) = verify(&["rborg.service", "rborg.timer"]);
    assert!(
        ok && output.trim().is_empty(),
        "systemd-analyze verify:\n{output}"
    );

    // verify does catch mistakes, so its silence above means something: a misspelt key is a
    // warning, a missing program an error.
    std::fs::write(
        dir.path().join("rborg.service"),
        service
            .replace("Nice=19", "Nicee=19")
            .replace("/usr/bin/rborg", binary),
    )
    .unwrap();
    let (_, output) = verify(&["rborg.service"]);
    assert!(output.contains("Unknown key"), "{output}");
    std::fs::write(
        dir.path().join("rborg.service"),
        service.replace("/usr/bin/rborg", "/nonexistent/rborg"),
    )
    .unwrap();
    let (ok, output) = verify(&["rborg.service"]);
    assert!(!ok && output.contains("/nonexistent/rborg"), "{output}");
}
