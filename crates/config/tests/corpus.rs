//! The sample configurations under `testdata/config/` against borgmatic itself.
//!
//! Each file's name says the expected verdict (`valid-*` / `invalid-*`). rborg must agree
//! with it, and, when borgmatic 2.x is installed in `/var/tmp/bm` (see docs/config.md), so
//! must `borgmatic config validate -c FILE`; for valid files the normalised configuration
//! must equal what `borgmatic config validate --show` prints. Without the venv the borgmatic
//! half is skipped with a notice, unless `RBORG_REQUIRE_BORG=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use rborg_config::{node, validate};

const BORGMATIC: &str = "/var/tmp/bm/bin/borgmatic";

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/config")
}

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn expected_valid(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(
        name.starts_with("valid-") || name.starts_with("invalid-"),
        "{name}: corpus files are named valid-* or invalid-*"
    );
    name.starts_with("valid-")
}

fn borgmatic_available() -> bool {
    let present = Path::new(BORGMATIC).exists();
    if !present {
        assert!(
            std::env::var("RBORG_REQUIRE_BORG").as_deref() != Ok("1"),
            "RBORG_REQUIRE_BORG=1 but {BORGMATIC} is missing"
        );
        eprintln!("borgmatic 2.x is not installed in /var/tmp/bm: skipping the comparison with it");
    }
    present
}

fn borgmatic(args: &[&str], file: &Path) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(BORGMATIC)
        .args(args)
        .arg("-c")
        .arg(file)
        .current_dir(corpus_dir())
        .env("HOME", home.path())
        .env("RBORG_TEST_HOST", "web1")
        .env_remove("RBORG_TEST_UNSET")
        .output()
        .unwrap()
}

#[test]
fn corpus_has_enough_configs() {
    let files = corpus();
    let valid = files.iter().filter(|f| expected_valid(f)).count();
    assert!(files.len() >= 20, "{}", files.len());
    assert!(valid >= 8 && files.len() - valid >= 8);
}

#[test]
fn verdicts_match_the_file_names() {
    for file in corpus() {
        let results = validate(std::slice::from_ref(&file));
        assert_eq!(results.len(), 1);
        let result = &results[0].1;
        match result {
            Ok(_) => assert!(
                expected_valid(&file),
                "{} should be invalid",
                file.display()
            ),
            Err(e) => {
                assert!(
                    !expected_valid(&file),
                    "{} should be valid: {e}",
                    file.display()
                );
                for d in e.diagnostics() {
                    let mark = d.mark.as_ref().expect("errors carry a position");
                    assert!(mark.line >= 1 && mark.column >= 1, "{d}");
                }
            }
        }
    }
}

#[test]
fn verdicts_and_normalised_values_match_borgmatic() {
    if !borgmatic_available() {
        return;
    }
    // borgmatic's start-up dominates: run two at a time.
    let files = corpus();
    let outputs: Vec<std::process::Output> = std::thread::scope(|scope| {
        let half = files.len().div_ceil(2);
        let workers: Vec<_> = files
            .chunks(half)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|f| borgmatic(&["config", "validate", "--show"], f))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    for (file, out) in files.into_iter().zip(outputs) {
        let ours = validate(std::slice::from_ref(&file)).remove(0).1;
        let theirs_valid = out.status.success();
        assert_eq!(
            ours.is_ok(),
            theirs_valid,
            "{}: rborg {:?}, borgmatic stderr: {}",
            file.display(),
            ours.as_ref().err().map(ToString::to_string),
            String::from_utf8_lossy(&out.stderr)
        );
        let Ok(loaded) = ours else { continue };
        let stdout = String::from_utf8(out.stdout).unwrap();
        let shown = stdout
            .trim_end()
            .strip_suffix("All configuration files are valid")
            .unwrap_or(&stdout);
        let mut theirs = node::parse(shown, Path::new("borgmatic --show"))
            .unwrap()
            .to_json();
        // borgmatic ends its log with a "summary:" line on stdout.
        if let Some(map) = theirs.as_object_mut() {
            map.remove("summary");
        }
        assert_eq!(
            loaded.tree.to_json(),
            theirs,
            "{}: normalised configuration differs from borgmatic's",
            file.display()
        );
        // The deprecation warnings are borgmatic's too (same text, same file prefix); the
        // readable-passphrase warning is rborg's own (tests/secrets.rs).
        let stderr = String::from_utf8_lossy(&out.stderr);
        let borgmatics = loaded
            .warnings
            .iter()
            .filter(|w| !w.contains("holds an encryption passphrase and other users can read it"));
        for warning in borgmatics {
            let message = warning.split_once(": ").unwrap().1;
            assert!(
                stderr.contains(message),
                "{}: warning {warning:?} not in {stderr}",
                file.display()
            );
        }
    }
}

#[test]
fn typed_model_of_the_sectioned_webserver() {
    let file = corpus_dir().join("valid-sectioned-webserver.yaml");
    let loaded = validate(&[file]).remove(0).1.unwrap();
    let c = &loaded.config;
    assert_eq!(c.source_directories, ["/etc", "/var/www", "/var/log/nginx"]);
    let paths: Vec<&str> = c.repositories.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/mnt/backup/webserver.borg",
            "/srv/second/webserver.borg",
            "ssh://backup@backup.example.org/./webserver.borg"
        ]
    );
    assert_eq!(c.compression.as_deref(), Some("zstd,3"));
    assert_eq!(
        c.archive_name_format.as_deref(),
        Some("{hostname}-{now:%Y-%m-%dT%H:%M:%S}")
    );
    assert_eq!(c.checkpoint_interval, Some(1800));
    assert_eq!(c.keep_within.as_deref(), Some("3H"));
    assert_eq!(
        (c.keep_hourly, c.keep_daily, c.keep_yearly),
        (Some(24), Some(7), Some(1))
    );
    assert_eq!(c.checks.len(), 2);
    assert_eq!(c.checks[1].name, "archives");
    assert_eq!(c.checks[1].frequency.as_deref(), Some("2 weeks"));
    assert_eq!(c.check_last, Some(3));
    assert_eq!(c.lock_wait, Some(60));
    assert_eq!(c.relocated_repo_access_is_ok, Some(false));
    // before_backup, after_backup, on_error became 2.x commands.
    let hooks: Vec<(Option<&str>, Option<&str>, Vec<&str>)> = c
        .commands
        .iter()
        .map(|h| {
            (
                h.before.as_deref(),
                h.after.as_deref(),
                h.when.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        hooks,
        [
            (Some("action"), None, vec!["create"]),
            (None, Some("action"), vec!["create"]),
            (
                None,
                Some("error"),
                vec!["create", "prune", "compact", "check"]
            ),
        ]
    );
    assert_eq!(c.commands[2].run, ["echo \"Error during backup: {error}\""]);
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.contains("Configuration sections")));
}

#[test]
fn typed_model_of_the_flat_form() {
    let file = corpus_dir().join("valid-flat-full.yaml");
    let loaded = validate(&[file]).remove(0).1.unwrap();
    let c = &loaded.config;
    let r = &c.repositories[0];
    assert_eq!(r.label.as_deref(), Some("backupserver"));
    assert_eq!(r.encryption.as_deref(), Some("repokey-blake2"));
    assert_eq!(r.append_only, Some(true));
    assert_eq!(r.storage_quota.as_deref(), Some("5G"));
    assert_eq!(r.overrides["remote_path"], "/usr/local/bin/borg1");
    assert_eq!(c.repositories[1].make_parent_directories, Some(true));
    assert_eq!(c.umask, Some(77));
    assert_eq!(c.checks[2].only_run_on, ["Saturday"]);
    assert_eq!(c.postgresql_databases[0].port, Some(5433));
    assert_eq!(
        c.sqlite_databases[0].path.as_deref(),
        Some("/var/lib/sqlite3/mydb.sqlite")
    );
    assert_eq!(
        c.mongodb_databases[0].other["authentication_database"],
        "admin"
    );
    let hc = c.healthchecks.as_ref().unwrap();
    assert_eq!(hc.states, ["finish", "fail"]);
    assert_eq!(c.ntfy.as_ref().unwrap().topic, "my-unique-topic");
    assert_eq!(c.uptime_kuma.as_ref().unwrap().states.len(), 3);
    assert_eq!(
        c.cronitor.as_ref().unwrap().ping_url,
        "https://cronitor.link/d3x0c1"
    );
    assert_eq!(c.loki.as_ref().unwrap().labels["hostname"], "__hostname");
    assert_eq!(c.other["verbosity"], 1);
    assert_eq!(c.extra_borg_options["create"], "--no-files-cache");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

/// The sectioned samples also get the same verdict from Debian's borgmatic 1.7.7 (the
/// version that defined the sectioned form), when installed.
#[test]
fn sectioned_verdicts_match_borgmatic_1_7() {
    let validator = Path::new("/usr/bin/validate-borgmatic-config");
    if !validator.exists() {
        assert!(
            std::env::var("RBORG_REQUIRE_BORG").as_deref() != Ok("1"),
            "RBORG_REQUIRE_BORG=1 but {} (apt-get install borgmatic) is missing",
            validator.display()
        );
        eprintln!("borgmatic 1.7 is not installed: skipping the sectioned comparison");
        return;
    }
    let sectioned: Vec<PathBuf> = corpus()
        .into_iter()
        .filter(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .contains("sectioned")
        })
        .collect();
    assert!(sectioned.len() >= 4);
    for file in sectioned {
        let home = tempfile::tempdir().unwrap();
        let out = Command::new(validator)
            .arg("-c")
            .arg(&file)
            .current_dir(corpus_dir())
            .env("HOME", home.path())
            .output()
            .unwrap();
        let ours = validate(std::slice::from_ref(&file)).remove(0).1.is_ok();
        assert_eq!(
            ours,
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
