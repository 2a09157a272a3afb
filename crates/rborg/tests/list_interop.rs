//! `rborg borg list` against `borg list` (borg 1.2.4) on repositories borg made: the same
//! stdout bytes and exit code for the default formats, `--short`, `--format` with the common
//! placeholders, `--json`, `--json-lines`, archive filters and path arguments, in a non-UTC
//! time zone.
//!
//! These tests need `/usr/bin/borg`. Without it they print a notice and pass, unless
//! `RBORG_REQUIRE_BORG=1` (CI sets it), in which case they fail.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};

use rborg_testkit::{borg_available, borg_command, ok, python, BORG};

const PASSPHRASE: &str = "list-test-pw";
/// A zone with a non-whole-hour offset and DST, to catch local-time conversion errors.
const TZ: &str = "Australia/Adelaide";

fn command(dir: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = borg_command(program, args, dir, &dir.join("home"), PASSPHRASE);
    cmd.env("TZ", TZ)
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8");
    cmd
}

fn borg(dir: &Path, args: &[&str]) -> Output {
    command(dir, BORG, args).output().unwrap()
}

fn rborg(dir: &Path, args: &[&str]) -> Output {
    let mut full = vec!["borg"];
    full.extend_from_slice(args);
    command(dir, env!("CARGO_BIN_EXE_rborg"), &full)
        .output()
        .unwrap()
}

fn make_tree(dir: &Path) {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("dir/sub")).unwrap();
    std::fs::write(src.join("small.txt"), b"hello borg\n").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::write(
        src.join("dir/sub/ünïcødé 名前 ✓ 'quoted' \"x\".txt"),
        "unicode\n",
    )
    .unwrap();
    let big: Vec<u8> = (0..2_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("big.bin"), big).unwrap();
    std::fs::write(src.join("hardlink-a"), b"linked content").unwrap();
    std::fs::hard_link(src.join("hardlink-a"), src.join("dir/hardlink-b")).unwrap();
    std::os::unix::fs::symlink("small.txt", src.join("link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/ü", src.join("dangling")).unwrap();
    // A name that is not UTF-8: borg shows each undecodable byte as '?'.
    std::fs::write(
        src.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9")),
        b"x",
    )
    .unwrap();
    let script = r#"
import os, sys, stat
src = sys.argv[1]
os.mkfifo(os.path.join(src, 'fifo'))
os.chmod(os.path.join(src, 'small.txt'), 0o4755)
os.chmod(os.path.join(src, 'dir'), 0o1777)
os.setxattr(os.path.join(src, 'small.txt'), 'user.k', b'v')
os.utime(os.path.join(src, 'empty'), ns=(1_000_000_000_123_456_789, 1_500_000_000_999_999_999))
if os.geteuid() == 0:
    os.mknod(os.path.join(src, 'chardev'), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.chown(os.path.join(src, 'hardlink-a'), 54321, 54322)
"#;
    python(script, [&src]);
}

/// Runs `args` with borg and rborg and asserts identical stdout and exit code.
#[track_caller]
fn same(dir: &Path, args: &[&str]) -> usize {
    let b = borg(dir, args);
    let r = rborg(dir, args);
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&b.stdout),
        "stdout differs for {args:?}\nborg stderr: {}\nrborg stderr: {}",
        String::from_utf8_lossy(&b.stderr),
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(r.stdout, b.stdout);
    assert_eq!(r.status.code(), b.status.code(), "exit code for {args:?}");
    b.stdout.len()
}

/// `--json-lines` objects: borg orders the computed keys by Python set order (random per
/// process), so compare the parsed objects, and the fixed leading keys byte for byte.
#[track_caller]
fn same_json_lines(dir: &Path, args: &[&str]) {
    let b = borg(dir, args);
    let r = rborg(dir, args);
    ok(&b, "borg list --json-lines");
    ok(&r, "rborg list --json-lines");
    let parse = |o: &[u8]| -> Vec<serde_json::Value> {
        String::from_utf8(o.to_vec())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (bl, rl) = (parse(&b.stdout), parse(&r.stdout));
    assert!(!bl.is_empty());
    assert_eq!(rl, bl, "{args:?}");
}

fn run_mode(mode: &str) {
    if !borg_available("list interop test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_tree(dir);
    ok(&borg(dir, &["init", "-e", mode, "repo"]), "borg init");
    ok(
        &borg(
            dir,
            &[
                "create",
                "--chunker-params",
                "10,14,12,4095",
                "repo::first",
                "src",
            ],
        ),
        "create first",
    );
    ok(
        &borg(
            dir,
            &[
                "create",
                "--comment",
                "a 'comment' ✓",
                "repo::second ✓",
                "src/dir",
            ],
        ),
        "create second",
    );
    ok(
        &borg(
            dir,
            &["create", "repo::other-2", "src/small.txt", "src/link"],
        ),
        "create other-2",
    );
    ok(
        &borg(dir, &["create", "repo::x.checkpoint", "src/empty"]),
        "create x.checkpoint",
    );

    let mut bytes = 0;
    let repo_cases: &[&[&str]] = &[
        &["list", "repo"],
        &["list", "--short", "repo"],
        &["list", "--json", "repo"],
        &["list", "--consider-checkpoints", "repo"],
        &["list", "--sort-by", "name", "repo"],
        &[
            "list",
            "--sort-by",
            "name,timestamp",
            "--first",
            "2",
            "repo",
        ],
        &["list", "--last", "1", "repo"],
        &["list", "-P", "oth", "repo"],
        &["list", "-a", "*t*", "repo"],
        &["list", "-a", "s?cond*", "--short", "repo"],
        &[
            "list",
            "--format",
            "{archive}|{name}|{barchive}|{id}|{time}|{start}|{end}{NL}",
            "repo",
        ],
        &[
            "list",
            "--format",
            "{hostname} {username} {comment:>20} {bcomment} {command_line}{LF}",
            "repo",
        ],
        &[
            "list",
            "--format",
            "{time:%Y-%m-%d %H:%M:%S %j %f}{TAB}{id:.8}{NUL}",
            "repo",
        ],
        &[
            "list",
            "--json",
            "--format",
            "{command_line}{hostname}{end}{comment}",
            "repo",
        ],
        &["list", "--json-lines", "repo"],
    ];
    for args in repo_cases {
        bytes += same(dir, args);
    }
    let item_cases: &[&[&str]] = &[
        &["list", "repo::first"],
        &["list", "--short", "repo::first"],
        &["list", "repo::second ✓"],
        &["list", "repo::first", "src/dir"],
        &["list", "repo::first", "src/small.txt", "src/dir/sub/"],
        &[
            "list",
            "--format",
            "{type} {mode} {uid} {gid} {user:>8} {group:<8}|{size:>10,}|{csize}|{num_chunks}|{path}{extra}{NL}",
            "repo::first",
        ],
        &["list", "--format", "{mtime} {ctime} {atime} {isomtime} {isoctime} {isoatime}{NL}", "repo::first"],
        &["list", "--format", "{mtime:%a %d.%m.%Y %H:%M:%S.%f}{NL}", "repo::first"],
        &[
            "list",
            "--format",
            "{source}|{linktarget}|{flags}|{health}|{archivename}|{archiveid}|{SPACE}{CR}{NEWLINE}",
            "repo::first",
        ],
        &["list", "--format", "{path:^30.10}{NL}", "repo::first"],
        &["list", "--format", "{sha256} {xxh64} {blake2b} {sha512} {path}{NL}", "repo::first"],
        &["list", "--format", "{blake2s} {sha224} {sha384} {path}{NL}", "repo::first", "src/big.bin"],
        &["list", "--json-lines", "--format", "{path}", "repo::first"],
        &["list", "--json", "repo::first"],
        &["list", "repo::does-not-exist"],
    ];
    for args in item_cases {
        bytes += same(dir, args);
    }
    same_json_lines(dir, &["list", "--json-lines", "repo::first"]);
    same_json_lines(
        dir,
        &[
            "list",
            "--json-lines",
            "--format",
            "{size}{csize}{isomtime}{num_chunks}",
            "repo::first",
        ],
    );
    eprintln!(
        "{mode}: {} list invocations matched borg byte for byte ({bytes} bytes of output)",
        repo_cases.len() + item_cases.len()
    );
}

#[test]
fn list_matches_borg_mode_none() {
    run_mode("none");
}

#[test]
fn list_matches_borg_mode_repokey() {
    run_mode("repokey");
}

#[test]
fn list_matches_borg_mode_keyfile_blake2() {
    run_mode("keyfile-blake2");
}
