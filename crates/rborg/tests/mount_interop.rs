//! `rborg borg mount` on archives borg 1.2.4 made: the mounted tree of the generated dataset
//! (testdata/gen/gen-dataset.py, decorated with xattrs, owners and a fifo) equals the tree
//! `borg extract` writes (type, mode, owner, size, mtime, link targets, hard link groups,
//! xattrs, content), random offsets of a large file read back correctly, the versions view
//! and a single-archive mount work, and `rborg borg umount` unmounts cleanly (the background
//! process exits and releases the repository lock).
//!
//! Needs `/usr/bin/borg`, `/dev/fuse` and root (or `fusermount3`); without FUSE the test prints
//! a notice and passes, without borg likewise unless `RBORG_REQUIRE_BORG=1`.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rborg_testkit::{
    borg_available, borg_command, ok, python_command, tree_snapshot, SnapshotOptions, BORG, PYTHON,
};

const PASSPHRASE: &str = "mount-test-pw";

fn command(cwd: &Path, program: &str, args: &[&str]) -> Command {
    // the scratch directory's `home` holds keys, security and cache dirs of every command
    let home = cwd
        .ancestors()
        .find(|d| d.join("home").is_dir())
        .unwrap_or(cwd)
        .join("home");
    let mut cmd = borg_command(program, args, cwd, &home, PASSPHRASE);
    cmd.env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null());
    cmd
}

fn borg(cwd: &Path, args: &[&str]) -> Output {
    command(cwd, BORG, args).output().unwrap()
}

fn rborg(cwd: &Path, args: &[&str]) -> Output {
    let mut full = vec!["borg"];
    full.extend_from_slice(args);
    command(cwd, env!("CARGO_BIN_EXE_rborg"), &full)
        .output()
        .unwrap()
}

fn fuse_available() -> bool {
    let ok = Path::new("/dev/fuse").exists()
        && (nix::unistd::geteuid().is_root()
            || Path::new("/usr/bin/fusermount3").exists()
            || Path::new("/bin/fusermount3").exists());
    if !ok {
        eprintln!("FUSE is not available here: skipping the mount test");
    }
    ok
}

fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let wanted = canonical.to_string_lossy().into_owned();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(wanted.as_str()))
}

fn wait_mounted(path: &Path, mounted: bool) {
    let start = Instant::now();
    while is_mounted(path) != mounted {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} did not become {}",
            path.display(),
            if mounted { "mounted" } else { "unmounted" }
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Unmounts on drop, so a failing assertion does not leave a mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("fusermount3").arg("-u").arg(&self.0).status();
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn mount(dir: &Path, args: &[&str], mountpoint: &Path) -> Mounted {
    std::fs::create_dir_all(mountpoint).unwrap();
    let mut full = vec!["mount"];
    full.extend_from_slice(args);
    let mp = mountpoint.to_str().unwrap();
    full.push(mp);
    // the foreground process returns once the background process has mounted
    ok(&rborg(dir, &full), "rborg borg mount");
    wait_mounted(mountpoint, true);
    Mounted(mountpoint.to_path_buf())
}

fn umount(dir: &Path, m: Mounted) {
    ok(
        &rborg(dir, &["umount", m.0.to_str().unwrap()]),
        "rborg borg umount",
    );
    wait_mounted(&m.0, false);
}

/// The trees' snapshots, except directories' size and link count (a mount reports 0 and 1,
/// as borg's does).
fn assert_same_listing(extracted: &Path, mounted: &Path, opts: SnapshotOptions) {
    let normalize = |root: &Path| -> Vec<String> {
        tree_snapshot(root, opts)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                if f.get(1).is_some_and(|m| m.starts_with("0o40")) {
                    format!("{} {} {} {} dir {}", f[0], f[1], f[2], f[3], f[5])
                } else {
                    l.to_string()
                }
            })
            .collect()
    };
    let (a, b) = (normalize(extracted), normalize(mounted));
    let only_a: Vec<&String> = a.iter().filter(|l| !b.contains(l)).take(8).collect();
    let only_b: Vec<&String> = b.iter().filter(|l| !a.contains(l)).take(8).collect();
    assert!(
        a.len() > 100 && only_a.is_empty() && only_b.is_empty(),
        "mounted tree differs ({} vs {} entries)\nextracted only: {only_a:#?}\nmounted only: {only_b:#?}",
        a.len(),
        b.len()
    );
}

#[test]
fn mounted_dataset_equals_borgs_extract() {
    if !borg_available("mount test") || !fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let generator = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/gen/gen-dataset.py");
    ok(
        &Command::new(PYTHON)
            .arg(&generator)
            .arg(dir.join("data"))
            .args(["--size", "4M", "--seed", "7"])
            .output()
            .unwrap(),
        "gen-dataset.py",
    );
    let decorate = r#"
import os, sys
root = sys.argv[1]
os.setxattr(os.path.join(root, 'home/alice/report.dat'), 'user.owner', b'alice')
os.setxattr(os.path.join(root, 'data/blob0.bin'), 'user.empty', b'')
os.mkfifo(os.path.join(root, 'var', 'pipe'))
if os.geteuid() == 0:
    os.chown(os.path.join(root, 'home/bob/report.dat'), 1234, 5678)
"#;
    ok(
        &python_command(decorate)
            .arg(dir.join("data"))
            .output()
            .unwrap(),
        "decorating",
    );
    let repo = dir.join("repo").display().to_string();
    std::fs::create_dir(dir.join("home")).unwrap();
    ok(&borg(dir, &["init", "-e", "repokey", &repo]), "borg init");
    ok(
        &borg(dir, &["create", &format!("{repo}::one"), "data"]),
        "borg create one",
    );
    std::fs::write(dir.join("data/www/changed.txt"), b"second version\n").unwrap();
    ok(
        &borg(dir, &["create", &format!("{repo}::two"), "data"]),
        "borg create two",
    );
    let extracted = dir.join("x");
    std::fs::create_dir(&extracted).unwrap();
    ok(
        &command(&extracted, BORG, &["extract", &format!("{repo}::one")])
            .output()
            .unwrap(),
        "borg extract",
    );

    // the whole repository: one directory per archive
    let mp = dir.join("mnt");
    let m = mount(dir, &[&repo], &mp);
    let mut names: Vec<String> = std::fs::read_dir(&mp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["one", "two"]);
    let opts = SnapshotOptions {
        sparse: false,
        atime: false,
    };
    assert_same_listing(&extracted, &mp.join("one"), opts);
    // random offsets of the largest file
    let big = "data/data/blob0.bin";
    let want = std::fs::read(extracted.join(big)).unwrap();
    let mut f = std::fs::File::open(mp.join("one").join(big)).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = (x % want.len() as u64) as usize;
        let len = ((x >> 32) % 200_000) as usize;
        f.seek(SeekFrom::Start(off as u64)).unwrap();
        let mut got = vec![0u8; len];
        let n = f.read(&mut got).unwrap();
        let end = (off + n).min(want.len());
        assert!(
            n > 0 || len == 0 || off == want.len(),
            "nothing read at {off}"
        );
        assert_eq!(
            &got[..n],
            &want[off..end],
            "read at offset {off}, {len} bytes"
        );
    }
    drop(f);
    umount(dir, m);

    // one archive at the mount point; the lock is free again afterwards
    let m = mount(dir, &[&format!("{repo}::two")], &mp);
    assert_eq!(
        std::fs::read(mp.join("data/www/changed.txt")).unwrap(),
        b"second version\n"
    );
    umount(dir, m);

    // versions view: a file becomes a directory of its versions
    let m = mount(dir, &["-o", "versions", &repo], &mp);
    let versions: Vec<String> = std::fs::read_dir(mp.join("data/www/changed.txt"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(versions, ["changed.00001.txt"]);
    umount(dir, m);
    ok(
        &borg(dir, &["check", &repo]),
        "borg check after the mounts (lock released)",
    );
}

/// The orchestrator's actions (issue 8): `rborg mount --archive latest --mount-point DIR
/// [--path ...]` mounts the newest archive of the configured repository, `rborg umount
/// --mount-point DIR` unmounts it.
#[test]
fn orchestrator_mount_latest_and_umount() {
    if !fuse_available() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    std::fs::create_dir_all(dir.join("home")).unwrap();
    std::fs::create_dir_all(dir.join("src/sub")).unwrap();
    std::fs::write(dir.join("src/sub/old.txt"), "first backup\n").unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "source_directories: [src]\nworking_directory: {d}\nrepositories:\n  - path: {d}/repo\n    label: here\n    encryption: repokey\nencryption_passphrase: {PASSPHRASE}\narchive_name_format: 'm-{{now:%Y-%m-%dT%H:%M:%S.%f}}'\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let orchestrator = |args: &[&str]| {
        let mut full = vec!["-c", config.to_str().unwrap()];
        full.extend_from_slice(args);
        command(dir, env!("CARGO_BIN_EXE_rborg"), &full)
            .env("HOME", dir.join("home"))
            .env_remove("BORG_PASSPHRASE")
            .output()
            .unwrap()
    };
    ok(&orchestrator(&["repo-create"]), "repo-create");
    ok(&orchestrator(&["create"]), "first create");
    std::fs::write(dir.join("src/sub/new.txt"), "second backup\n").unwrap();
    ok(&orchestrator(&["create"]), "second create");

    let mountpoint = dir.join("mnt");
    std::fs::create_dir_all(&mountpoint).unwrap();
    let mp = mountpoint.to_str().unwrap();
    ok(
        &orchestrator(&[
            "mount",
            "--archive",
            "latest",
            "--mount-point",
            mp,
            "--path",
            "src/sub",
        ]),
        "rborg mount --archive latest",
    );
    wait_mounted(&mountpoint, true);
    let guard = Mounted(mountpoint.clone());
    // the latest archive has both files
    assert_eq!(
        std::fs::read_to_string(mountpoint.join("src/sub/new.txt")).unwrap(),
        "second backup\n"
    );
    assert_eq!(
        std::fs::read_to_string(mountpoint.join("src/sub/old.txt")).unwrap(),
        "first backup\n"
    );
    ok(
        &orchestrator(&["umount", "--mount-point", mp]),
        "rborg umount",
    );
    wait_mounted(&mountpoint, false);
    drop(guard);
}
