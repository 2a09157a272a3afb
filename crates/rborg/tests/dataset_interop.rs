//! Two-way interop on the benchmark dataset (`testdata/gen/gen-dataset.py`, a copy of the
//! workplace's `bench/gen-dataset.py`, small size), in every encryption mode, each with a
//! different compressor:
//!
//! * borg 1.2.4 writes, rborg reads: `rborg borg list` prints what `borg list` prints and
//!   `rborg borg extract --sparse` writes the same tree as `borg extract --sparse` (content,
//!   mode, uid/gid, ns times, symlinks, hard links, xattrs, sparse holes);
//! * rborg writes, borg reads: `borg check --verify-data` passes and `borg extract` gives the
//!   same tree again; borg 1.4.x (when installed, see [`rborg_testkit::borg14`]) checks
//!   `--verify-data` clean, extracts the same tree and lists the archive with `tam:verified`;
//! * dedup carries over: rborg archiving the tree into borg's repository, and borg archiving it
//!   into rborg's, adds less than 1% of the tree's size (`borg info --json` deduplicated size).
//!
//! The tree gets xattrs, other owners (as root) and a fifo on top of what the generator makes.
//! These tests need `/usr/bin/borg`; without it they print a notice and pass, unless
//! `RBORG_REQUIRE_BORG=1` (CI sets it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rborg_testkit::{
    assert_same_tree, borg14, borg_available, borg_command, ok, python_command, SnapshotOptions,
    BORG, PYTHON,
};

/// Every extraction here uses `--sparse`; atimes are not archived by default in borg 1.2.
const SPARSE: SnapshotOptions = SnapshotOptions {
    sparse: true,
    atime: false,
};

const PASSPHRASE: &str = "dataset-interop-pw";

/// The dataset's size: small enough for CI, large enough for several chunks per big file.
const DATASET_SIZE: &str = "6M";

fn command(cwd: &Path, home: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = borg_command(program, args, cwd, home, PASSPHRASE);
    cmd.env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .env("TZ", "UTC")
        .stdin(Stdio::null());
    cmd
}

fn run(cwd: &Path, home: &Path, program: &str, args: &[&str]) -> Output {
    command(cwd, home, program, args).output().unwrap()
}

fn rborg(cwd: &Path, home: &Path, args: &[&str]) -> Output {
    let mut full = vec!["borg"];
    full.extend_from_slice(args);
    run(cwd, home, env!("CARGO_BIN_EXE_rborg"), &full)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Generates the dataset under `dir/data` and decorates it with what the generator does not
/// make: xattrs, other owners and groups (only root may chown), a fifo, an empty directory.
fn make_dataset(dir: &Path, seed: u64) -> PathBuf {
    let data = dir.join("data");
    let generator = workspace_root().join("testdata/gen/gen-dataset.py");
    let out = Command::new(PYTHON)
        .arg(&generator)
        .arg(&data)
        .args(["--size", DATASET_SIZE, "--seed", &seed.to_string()])
        .output()
        .unwrap();
    ok(&out, "gen-dataset.py");
    let decorate = r#"
import os, sys
root = sys.argv[1]
os.setxattr(os.path.join(root, 'home/alice/report.dat'), 'user.owner', b'alice')
os.setxattr(os.path.join(root, 'data/blob0.bin'), 'user.empty', b'')
os.setxattr(os.path.join(root, 'etc'), 'user.dir', b'\x00binary\xff')
os.mkfifo(os.path.join(root, 'var', 'pipe'))
os.makedirs(os.path.join(root, 'var', 'empty'))
if os.geteuid() == 0:
    os.chown(os.path.join(root, 'home/bob/report.dat'), 1234, 5678)
    os.chown(os.path.join(root, 'srv'), 4321, 8765)
    os.lchown(os.path.join(root, 'www/dangling'), 1000, 1000)
os.utime(os.path.join(root, 'srv/old/report.dat'), ns=(1_000_000_123, 1_600_000_000_987_654_321))
"#;
    ok(
        &python_command(decorate).arg(&data).output().unwrap(),
        "decorating the dataset",
    );
    data
}

fn fresh(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// `borg info --json REPO::ARCHIVE`: (original size, deduplicated size) of the archive.
fn dedup_sizes(cwd: &Path, home: &Path, archive: &str) -> (u64, u64) {
    let out = ok(
        &run(cwd, home, BORG, &["info", "--json", archive]),
        "borg info --json",
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let stats = &v["archives"][0]["stats"];
    (
        stats["original_size"].as_u64().unwrap(),
        stats["deduplicated_size"].as_u64().unwrap(),
    )
}

#[track_caller]
fn assert_carries_over(cwd: &Path, home: &Path, archive: &str, what: &str) {
    let (original, dedup) = dedup_sizes(cwd, home, archive);
    assert!(original > 6_000_000, "{what}: original size {original}");
    assert!(
        dedup * 100 < original,
        "{what}: {dedup} of {original} bytes were new (dedup did not carry over)"
    );
}

fn run_mode(mode: &str, compression: &str, seed: u64) {
    if !borg_available(&format!("dataset interop test ({mode})")) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = fresh(dir, "home");
    make_dataset(dir, seed);
    let borg_repo = dir.join("borg-repo").display().to_string();
    let rborg_repo = dir.join("rborg-repo").display().to_string();
    let b1 = format!("{borg_repo}::b1");
    let r1 = format!("{rborg_repo}::r1");

    // borg writes, rborg reads
    ok(
        &run(dir, &home, BORG, &["init", "-e", mode, &borg_repo]),
        "borg init",
    );
    ok(
        &run(
            dir,
            &home,
            BORG,
            &["create", "-C", compression, &b1, "data"],
        ),
        "borg create",
    );
    let borg_list = ok(&run(dir, &home, BORG, &["list", &b1]), "borg list");
    let rborg_list = ok(&rborg(dir, &home, &["list", &b1]), "rborg list");
    assert_eq!(rborg_list, borg_list, "{mode}: list of borg's archive");
    assert!(borg_list.lines().count() > 50, "{mode}: {borg_list}");
    let by_borg = fresh(dir, "x-borg");
    ok(
        &run(&by_borg, &home, BORG, &["extract", "--sparse", &b1]),
        "borg extract",
    );
    let by_rborg = fresh(dir, "x-rborg");
    ok(
        &rborg(&by_rborg, &home, &["extract", "--sparse", &b1]),
        "rborg extract",
    );
    assert_same_tree(
        &by_borg,
        &by_rborg,
        SPARSE,
        &format!("{mode}/{compression}: extract of borg's archive"),
    );

    // rborg writes, borg reads
    ok(
        &rborg(dir, &home, &["init", "-e", mode, &rborg_repo]),
        "rborg init",
    );
    ok(
        &rborg(dir, &home, &["create", "-C", compression, &r1, "data"]),
        "rborg create",
    );
    ok(
        &run(dir, &home, BORG, &["check", "--verify-data", &rborg_repo]),
        "borg check --verify-data of rborg's repository",
    );
    let of_rborg = fresh(dir, "x-of-rborg");
    ok(
        &run(&of_rborg, &home, BORG, &["extract", "--sparse", &r1]),
        "borg extract of rborg's archive",
    );
    assert_same_tree(
        &by_borg,
        &of_rborg,
        SPARSE,
        &format!("{mode}/{compression}: borg's extract of rborg's archive"),
    );

    if let Some(borg14) = borg14(&format!("dataset interop test ({mode})")) {
        let borg14 = borg14.to_str().unwrap();
        // borg 1.4 gets its own cache and security dirs, and the key files rborg wrote
        let home14 = fresh(dir, "home14");
        let keys = home.join(".config/borg/keys");
        let run = |cwd: &Path, home: &Path, program: &str, args: &[&str]| {
            command(cwd, home, program, args)
                .env("BORG_KEYS_DIR", &keys)
                .output()
                .unwrap()
        };
        ok(
            &run(
                dir,
                &home14,
                borg14,
                &["check", "--verify-data", &rborg_repo],
            ),
            "borg 1.4 check --verify-data of rborg's repository",
        );
        let listed = ok(
            &run(
                dir,
                &home14,
                borg14,
                &["list", "--format", "{archive} {tam}{NL}", &rborg_repo],
            ),
            "borg 1.4 list",
        );
        assert_eq!(listed, "r1 verified\n", "{mode}: borg 1.4 list");
        let of_rborg14 = fresh(dir, "x-of-rborg-14");
        ok(
            &run(&of_rborg14, &home14, borg14, &["extract", "--sparse", &r1]),
            "borg 1.4 extract of rborg's archive",
        );
        assert_same_tree(
            &by_borg,
            &of_rborg14,
            SPARSE,
            &format!("{mode}/{compression}: borg 1.4's extract of rborg's archive"),
        );
    }

    // dedup carries over both ways
    let r_in_borg = format!("{borg_repo}::r-dedup");
    ok(
        &rborg(
            dir,
            &home,
            &["create", "-C", compression, &r_in_borg, "data"],
        ),
        "rborg create into borg's repository",
    );
    assert_carries_over(dir, &home, &r_in_borg, "rborg after borg");
    let b_in_rborg = format!("{rborg_repo}::b-dedup");
    ok(
        &run(
            dir,
            &home,
            BORG,
            &["create", "-C", compression, &b_in_rborg, "data"],
        ),
        "borg create into rborg's repository",
    );
    assert_carries_over(dir, &home, &b_in_rborg, "borg after rborg");
    ok(
        &run(dir, &home, BORG, &["check", "--verify-data", &borg_repo]),
        "borg check --verify-data after rborg added an archive",
    );
}

#[test]
fn dataset_none_lz4() {
    run_mode("none", "lz4", 11);
}

#[test]
fn dataset_authenticated_zstd() {
    run_mode("authenticated", "zstd,3", 12);
}

#[test]
fn dataset_authenticated_blake2_zlib() {
    run_mode("authenticated-blake2", "zlib,6", 13);
}

#[test]
fn dataset_repokey_lzma() {
    run_mode("repokey", "lzma,1", 14);
}

#[test]
fn dataset_keyfile_auto_zstd() {
    run_mode("keyfile", "auto,zstd,5", 15);
}

#[test]
fn dataset_repokey_blake2_none() {
    run_mode("repokey-blake2", "none", 16);
}

#[test]
fn dataset_keyfile_blake2_zstd_high() {
    run_mode("keyfile-blake2", "zstd,19", 17);
}
