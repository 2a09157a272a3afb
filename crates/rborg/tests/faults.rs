//! Faults (issue 10): a failing disk, a full or read-only file system, source files that are
//! unreadable, vanish or change while read. rborg and the real borg 1.2.4 meet the same fault
//! and must agree on the exit code (0 ok, 1 warning, 2 error); rborg's message names the file
//! and the OS error; and nothing already stored is damaged: afterwards real `borg check` passes,
//! the archives committed before the fault extract identical, and the next create works.
//!
//! Most faults come from an `LD_PRELOAD` shim (`tests/faults/fault_shim.c`, compiled here with
//! `cc`) that fails chosen `open`/`read`/`write` calls with EACCES, ENOENT, EIO or ENOSPC, for
//! rborg and Python's borg alike. A really full file system (a 16 MiB tmpfs) and read-only
//! mounts need root; without it those two tests print a notice and pass.
//!
//! Needs `/usr/bin/borg` (skips with a notice unless `RBORG_REQUIRE_BORG=1`) and `cc`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::{assert_code, stderr, Tool, TOOLS};
use rborg_testkit::{borg_available, noise, ok};

const PASSPHRASE: &str = "faults-test-pw";
/// The file the source faults hit (a name no repository file contains).
const VICTIM: &str = "victim.bin";

/// The compiled shim, built once per test process.
fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rborg-fault-shim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let so = dir.join("fault_shim.so");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/fault_shim.c");
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&so)
            .arg(&source)
            .arg("-ldl")
            .output()
            .expect("cc (the C compiler) is needed to build the fault shim");
        ok(&out, "compiling the fault shim");
        so
    })
}

/// One working directory: `home` (BORG_BASE_DIR) and the source tree `in`.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("home")).unwrap();
        let input = dir.join("in");
        std::fs::create_dir_all(input.join("sub")).unwrap();
        std::fs::write(input.join("ok.txt"), b"hello\n").unwrap();
        std::fs::write(input.join("sub/other.bin"), noise(7, 200_000)).unwrap();
        let setup = Setup { _tmp: tmp, dir };
        setup.reset_victim();
        setup
    }

    /// (Re)writes the file the source faults hit (a fault may have removed or grown it).
    fn reset_victim(&self) {
        std::fs::write(self.dir.join("in").join(VICTIM), noise(3, 300_000)).unwrap();
    }

    /// Runs `tool` with `args` in the working directory, with `fault` (`KIND=SUBSTRING`) armed.
    fn run(&self, tool: Tool, args: &[&str], fault: Option<&str>) -> Output {
        self.run_in(&self.dir, tool, args, fault)
    }

    fn run_in(&self, cwd: &Path, tool: Tool, args: &[&str], fault: Option<&str>) -> Output {
        let mut cmd = tool.command(args, cwd, &self.dir.join("home"), PASSPHRASE);
        cmd.env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null());
        if let Some(fault) = fault {
            cmd.env("LD_PRELOAD", shim()).env("RBORG_FAULT", fault);
        }
        cmd.output().unwrap()
    }

    /// A repository `name` made by `tool` holding archive `a0` of the source tree.
    fn repo_with_archive(&self, tool: Tool, name: &str) -> String {
        self.repo_with_archive_at(tool, &self.dir.join(name))
    }

    /// The same at `path` (on a mount of its own).
    fn repo_with_archive_at(&self, tool: Tool, path: &Path) -> String {
        let repo = path.display().to_string();
        ok(
            &self.run(tool, &["init", "-e", "none", &repo], None),
            "init",
        );
        ok(
            &self.run(tool, &["create", &format!("{repo}::a0"), "in"], None),
            "create a0",
        );
        repo
    }
}

/// `path size` of every item of `archive`, as real borg lists them.
fn items(setup: &Setup, archive: &str) -> Vec<String> {
    let out = setup.run(
        Tool::Borg,
        &["list", "--format", "{path} {size}{NL}", archive],
        None,
    );
    let mut lines: Vec<String> = ok(&out, "borg list").lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Every file under `dir` with its size and content hash: what a failed command must not change.
fn files_state(dir: &Path) -> BTreeMap<PathBuf, (u64, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u64, u64)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if path.is_dir() {
                walk(root, &path, out);
            } else if !rel.starts_with("lock.roster") && !rel.starts_with("lock.exclusive") {
                let data = std::fs::read(&path).unwrap();
                let hash = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
                out.insert(rel, (data.len() as u64, hash));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What must hold after any fault: real borg checks the repository (with data), lists exactly
/// `archives`, and `a0` extracts to the source tree; then rborg can back up again.
#[track_caller]
fn assert_intact(setup: &Setup, repo: &str, archives: &[&str], what: &str) {
    ok(
        &setup.run(Tool::Borg, &["check", "--verify-data", repo], None),
        &format!("{what}: borg check --verify-data"),
    );
    let listed = ok(
        &setup.run(Tool::Borg, &["list", "--short", repo], None),
        &format!("{what}: borg list"),
    );
    let mut listed: Vec<&str> = listed.lines().collect();
    listed.sort();
    assert_eq!(listed, archives, "{what}: archives after the fault");
    let out_dir = setup.dir.join(format!("extract-{}", rand_suffix()));
    std::fs::create_dir_all(&out_dir).unwrap();
    ok(
        &setup.run_in(
            &out_dir,
            Tool::Rborg,
            &["extract", &format!("{repo}::a0")],
            None,
        ),
        &format!("{what}: extract a0"),
    );
    for file in ["in/ok.txt", "in/sub/other.bin"] {
        assert_eq!(
            std::fs::read(out_dir.join(file)).unwrap(),
            std::fs::read(setup.dir.join(file)).unwrap(),
            "{what}: {file} of a0"
        );
    }
    std::fs::remove_dir_all(&out_dir).unwrap();
    ok(
        &setup.run(
            Tool::Rborg,
            &[
                "create",
                &format!("{repo}::after-{}", rand_suffix()),
                "in/sub",
            ],
            None,
        ),
        &format!("{what}: the next create"),
    );
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Unreadable, vanishing, failing and changing source files: a warning naming the file (exit
/// code 1, like borg), the rest of the tree is backed up, and the archive holds the same items
/// as borg's archive of the same fault.
#[test]
fn source_file_faults_warn_like_borg() {
    if !borg_available("faults test") {
        return;
    }
    let setup = Setup::new();
    let repos = [
        (Tool::Borg, setup.repo_with_archive(Tool::Borg, "repo-borg")),
        (
            Tool::Rborg,
            setup.repo_with_archive(Tool::Rborg, "repo-rborg"),
        ),
    ];
    for (kind, message) in [
        ("eacces_open", "Permission denied"),
        ("vanish_open", "No such file or directory"),
        ("eio_read", "Input/output error"),
        ("change_read", "file changed while we backed it up"),
    ] {
        let fault = format!("{kind}={VICTIM}");
        let mut listings = Vec::new();
        for (tool, repo) in &repos {
            setup.reset_victim();
            let archive = format!("{repo}::{kind}");
            let out = setup.run(*tool, &["create", &archive, "in"], Some(&fault));
            assert_code(&out, 1, &format!("{tool:?} create with {kind}"));
            let err = stderr(&out);
            assert!(
                err.contains(&format!("in/{VICTIM}")) && err.contains(message),
                "{tool:?} {kind}: the warning names the file and the cause: {err}"
            );
            listings.push(items(&setup, &archive));
        }
        assert_eq!(
            listings[0], listings[1],
            "{kind}: borg's and rborg's archives"
        );
        assert!(
            listings[1].contains(&"in/ok.txt 6".to_string()),
            "{kind}: the other files are in the archive: {:?}",
            listings[1]
        );
    }
    setup.reset_victim();
    let rborg_repo = &repos[1].1;
    assert_intact(
        &setup,
        rborg_repo,
        &[
            "a0",
            "change_read",
            "eacces_open",
            "eio_read",
            "vanish_open",
        ],
        "source faults",
    );
}

/// The disk fails (EIO) or fills up (ENOSPC) while segments are written: exit code 2 with the
/// segment file and the OS error, the archive is not committed, the earlier one is intact. After
/// ENOSPC the partial transaction's segments are deleted at once (borg does the same), so the
/// data directory holds exactly the files it held before.
#[test]
fn repository_write_faults_fail_cleanly() {
    if !borg_available("faults test") {
        return;
    }
    let setup = Setup::new();
    for (kind, message) in [
        ("enospc_write", "No space left on device"),
        ("eio_write", "Input/output error"),
    ] {
        for tool in TOOLS {
            let repo = setup.repo_with_archive(tool, &format!("repo-{kind}-{tool:?}"));
            let before = files_state(Path::new(&repo));
            let fault = format!("{kind}={repo}/data/");
            let out = setup.run(tool, &["create", &format!("{repo}::b"), "in"], Some(&fault));
            assert_code(&out, 2, &format!("{tool:?} create with {kind}"));
            if tool == Tool::Borg {
                continue;
            }
            let err = stderr(&out);
            assert!(
                err.contains(&format!("{repo}/data/0/")) && err.contains(message),
                "{kind}: the error names the segment and the cause: {err}"
            );
            if kind == "enospc_write" {
                assert!(err.contains("cleaning up partial transaction"), "{err}");
                assert_eq!(
                    files_state(Path::new(&repo)),
                    before,
                    "{kind}: the partial transaction's files are gone, nothing else changed"
                );
            }
            assert_intact(&setup, &repo, &["a0"], kind);
        }
    }
}

/// The disk fails (EIO) while segments are read: list, extract, check and create stop with exit
/// code 2 naming the segment file, like borg, and change nothing in the repository.
#[test]
fn repository_read_faults_fail_cleanly() {
    if !borg_available("faults test") {
        return;
    }
    let setup = Setup::new();
    let repos = [
        (Tool::Borg, setup.repo_with_archive(Tool::Borg, "repo-borg")),
        (
            Tool::Rborg,
            setup.repo_with_archive(Tool::Rborg, "repo-rborg"),
        ),
    ];
    let out_dir = setup.dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    for (tool, repo) in &repos {
        let before = files_state(Path::new(repo));
        let fault = format!("eio_read={repo}/data/");
        let a0 = format!("{repo}::a0");
        let b = format!("{repo}::b");
        let commands: [&[&str]; 5] = [
            &["list", repo],
            &["extract", "--dry-run", &a0],
            &["check", repo],
            &["check", "--verify-data", repo],
            &["create", &b, "in"],
        ];
        for args in commands {
            let out = setup.run_in(&out_dir, *tool, args, Some(&fault));
            assert_code(&out, 2, &format!("{tool:?} {args:?} with EIO on segments"));
            if *tool == Tool::Rborg {
                let err = stderr(&out);
                assert!(
                    err.contains(&format!("{repo}/data/0/")) && err.contains("Input/output error"),
                    "{args:?}: the error names the segment and the cause: {err}"
                );
            }
            assert_eq!(
                files_state(Path::new(repo)),
                before,
                "{tool:?} {args:?}: the repository changed"
            );
        }
        if *tool == Tool::Rborg {
            assert_intact(&setup, repo, &["a0"], "EIO on reads");
        }
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A tmpfs mounted for one test and unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `dir`, or says why it cannot (not root, no mount rights).
    fn mount(dir: &Path, options: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("faults test: not root, a real tmpfs cannot be mounted; skipped");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        if !status.success() {
            eprintln!("faults test: mounting a tmpfs failed; skipped");
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount {options}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A really full file system (16 MiB tmpfs, 40 MiB of incompressible data to back up): exit code
/// 2 for both tools, the partial transaction is deleted so the repository takes no more space
/// than before, borg can check it (which needs space to write its config) and the next smaller
/// backup works.
#[test]
fn a_full_file_system_is_cleaned_up_like_borg() {
    if !borg_available("faults test") {
        return;
    }
    let setup = Setup::new();
    let big = setup.dir.join("big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(big.join("data.bin"), noise(11, 40 << 20)).unwrap();
    for tool in TOOLS {
        let Some(mount) = Tmpfs::mount(&setup.dir.join(format!("full-{tool:?}")), "size=16m")
        else {
            return;
        };
        let repo = setup.repo_with_archive_at(tool, &mount.0.join("repo"));
        let before = files_state(Path::new(&repo));
        let out = setup.run(tool, &["create", &format!("{repo}::big"), "big"], None);
        assert_code(&out, 2, &format!("{tool:?} create on a full file system"));
        let err = stderr(&out);
        assert!(err.contains("No space left on device"), "{tool:?}: {err}");
        if tool == Tool::Rborg {
            assert!(err.contains("cleaning up partial transaction"), "{err}");
            assert_eq!(
                files_state(Path::new(&repo)),
                before,
                "the partial transaction is gone"
            );
            assert_intact(&setup, &repo, &["a0"], "full file system");
        }
    }
}

/// A read-only repository: commands that need the lock fail with borg's lock error naming the
/// read-only file system (exit code 2, like borg), `--bypass-lock` readers work and list what
/// borg lists. A read-only extraction target: a warning per item, exit code 1, like borg.
#[test]
fn read_only_repository_and_target_like_borg() {
    if !borg_available("faults test") {
        return;
    }
    let setup = Setup::new();
    let mut listings = Vec::new();
    for tool in TOOLS {
        let Some(mount) = Tmpfs::mount(&setup.dir.join(format!("ro-{tool:?}")), "size=16m") else {
            return;
        };
        let repo = setup.repo_with_archive_at(tool, &mount.0.join("repo"));
        mount.remount("ro");
        let b = format!("{repo}::b");
        let locked: [&[&str]; 3] = [&["create", &b, "in"], &["list", &repo], &["check", &repo]];
        for args in locked {
            let out = setup.run(tool, args, None);
            assert_code(
                &out,
                2,
                &format!("{tool:?} {args:?} on a read-only repository"),
            );
            let err = stderr(&out);
            assert!(
                err.contains("Failed to create/acquire the lock")
                    && err.contains("Read-only file system"),
                "{tool:?} {args:?}: {err}"
            );
        }
        let out = setup.run(tool, &["list", "--short", "--bypass-lock", &repo], None);
        listings.push(ok(&out, "list --bypass-lock"));
        let a0 = format!("{repo}::a0");
        let out = setup.run(tool, &["extract", "--dry-run", "--bypass-lock", &a0], None);
        ok(&out, "extract --dry-run --bypass-lock");

        let target = Tmpfs::mount(&setup.dir.join(format!("target-{tool:?}")), "size=1m,ro")
            .expect("mounted before");
        mount.remount("rw");
        let out = setup.run_in(&target.0, tool, &["extract", &a0], None);
        assert_code(
            &out,
            1,
            &format!("{tool:?} extract into a read-only directory"),
        );
        let err = stderr(&out);
        assert!(
            err.contains("in/ok.txt") && err.contains("Read-only file system"),
            "{tool:?}: {err}"
        );
    }
    assert_eq!(listings[0], listings[1], "--bypass-lock listings");
}
