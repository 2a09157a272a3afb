//! Secrets (issue 10): the passphrase never shows up where others can see it, and key files are
//! private.
//!
//! * While `rborg borg create --debug` and the orchestrator (`rborg --verbosity 2 --log-file`,
//!   a hook, a wrong passphrase) run, every process's command line (`/proc/*/cmdline`) is
//!   sampled: the passphrase never appears in one; nor in stdout, stderr, the log file or the
//!   environment the orchestrator gives its hooks.
//! * `init -e keyfile` writes the key file with mode 0600 (as borg does).
//!
//! The world-readable-configuration warning is tested in `crates/config/tests/secrets.rs`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rborg_testkit::noise;

/// A passphrase no other process would have on its command line.
const SECRET: &str = "Zq8-secret-passphrase-4711";

fn rborg(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rborg"));
    cmd.current_dir(dir)
        .env("BORG_BASE_DIR", dir.join("home"))
        .env("BORG_PASSPHRASE", SECRET)
        .env_remove("BORG_REPO")
        .env_remove("BORG_KEYS_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Samples every process's command line until `child` exits; returns its output and how many
/// samples were taken. Panics if a command line holds the secret.
fn watch(child: Child) -> (std::process::Output, usize) {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let sampler = std::thread::spawn(move || {
        let mut samples = 0;
        while !flag.load(Ordering::Relaxed) {
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                    let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                    assert!(
                        !text.contains(SECRET),
                        "a command line holds the passphrase: {text}"
                    );
                }
            }
            samples += 1;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        samples
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, Ordering::Relaxed);
    (out, sampler.join().unwrap())
}

#[track_caller]
fn assert_secret_absent(what: &str, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    assert!(
        !text.contains(SECRET),
        "{what} holds the passphrase:\n{text}"
    );
}

#[test]
fn the_passphrase_stays_out_of_command_lines_and_output() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for i in 0..8 {
        std::fs::write(dir.join(format!("data/f{i}")), noise(i, 2_000_000)).unwrap();
    }
    let init = rborg(dir)
        .args(["borg", "init", "-e", "repokey", "repo"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    let child = rborg(dir)
        .args(["borg", "create", "--debug", "--stats", "repo::a", "data"])
        .spawn()
        .unwrap();
    let (out, samples) = watch(child);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(samples > 0);
    assert_secret_absent("create's stdout", &out.stdout);
    assert_secret_absent("create's stderr", &out.stderr);

    // a wrong passphrase: the error does not repeat it
    let out = rborg(dir)
        .env("BORG_PASSPHRASE", format!("{SECRET}-wrong"))
        .args(["borg", "list", "repo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_secret_absent("the wrong-passphrase error", &out.stderr);

    // the orchestrator, with the passphrase in its configuration, a hook and a debug log
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "source_directories: [{data}]\nrepositories:\n    - path: {repo}\n\
             encryption_passphrase: {SECRET}\nkeep_daily: 1\n\
             before_backup:\n    - env > {hook_env}\n",
            data = dir.join("data").display(),
            repo = dir.join("repo").display(),
            hook_env = dir.join("hook-env.txt").display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let log = dir.join("rborg.log");
    let child = rborg(dir)
        .env_remove("BORG_PASSPHRASE")
        .args(["--config"])
        .arg(&config)
        .args(["--verbosity", "2", "--log-file"])
        .arg(&log)
        .args(["--log-file-verbosity", "2", "create", "--stats", "list"])
        .spawn()
        .unwrap();
    let (out, _) = watch(child);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_secret_absent("the orchestrator's stdout", &out.stdout);
    assert_secret_absent("the orchestrator's stderr", &out.stderr);
    let log_text = std::fs::read(&log).unwrap();
    assert!(!log_text.is_empty());
    assert_secret_absent("the log file", &log_text);
    let hook_env = std::fs::read(dir.join("hook-env.txt")).unwrap();
    assert!(!hook_env.is_empty(), "the hook ran");
    assert_secret_absent("the hook's environment", &hook_env);
}

#[test]
fn key_files_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = rborg(dir)
        .args(["borg", "init", "-e", "keyfile-blake2", "repo"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = dir.join("home/.config/borg/keys");
    let files: Vec<_> = std::fs::read_dir(&keys).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    let mode = files[0].metadata().unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key file mode {mode:o}");
    let text = std::fs::read(files[0].path()).unwrap();
    assert_secret_absent("the key file", &text);
}
