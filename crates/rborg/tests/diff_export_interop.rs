//! `rborg borg diff` and `rborg borg export-tar` against borg 1.2.4 on the same repository.
//!
//! * diff: two archives borg made (with many kinds of changes: content, size, mode, owner,
//!   times, added/removed files, directories, symlinks, hard links, fifos, a directory replaced
//!   by a file) plus one made by rborg; the stdout bytes and exit codes of `borg diff` and
//!   `rborg borg diff` must be identical for text and `--json-lines` output, `--sort`,
//!   `--content-only`, different chunker parameters (content compared by reading it),
//!   `--same-chunker-params`, `PATH` arguments and excludes.
//! * export-tar: the tar stream rborg writes must be byte-identical to borg's (so member list,
//!   order, content and every header field agree), for a whole archive, `--strip-components`,
//!   a `PATH` selection that leaves hard link masters out, and `.tar.gz` through the gzip filter
//!   (compared after decompression), and to stdout through an explicit `--tar-filter`; the
//!   `--list` output must match too.
//!
//! These tests need `/usr/bin/borg`. Without it they print a notice and pass, unless
//! `RBORG_REQUIRE_BORG=1` (CI sets it), in which case they fail.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};

use rborg_testkit::{borg_available, borg_command, ok, python, BORG};

const PASSPHRASE: &str = "diff-test-pw";
/// A zone with a non-whole-hour offset, to catch local-time conversion errors in `[mtime: ...]`.
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

/// Runs `args` with borg and rborg; asserts identical stdout and exit code and returns stdout.
#[track_caller]
fn same(dir: &Path, args: &[&str]) -> String {
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
    assert_eq!(
        r.status.code(),
        b.status.code(),
        "exit code for {args:?}\nrborg stderr: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8_lossy(&b.stdout).into_owned()
}

/// The first tree: one of each kind of item, plus hard link groups.
fn make_first(src: &Path) {
    std::fs::create_dir_all(src.join("dir/sub")).unwrap();
    std::fs::create_dir_all(src.join("dir_becomes_file")).unwrap();
    std::fs::create_dir_all(src.join("dir_removed")).unwrap();
    std::fs::write(src.join("unchanged"), b"same content\n").unwrap();
    std::fs::write(src.join("grows"), vec![7u8; 300_000]).unwrap();
    std::fs::write(src.join("rewritten"), rborg_testkit::noise(1, 200_000)).unwrap();
    std::fs::write(src.join("removed"), b"gone soon").unwrap();
    std::fs::write(src.join("chmodded"), b"mode").unwrap();
    std::fs::write(src.join("touched"), b"time").unwrap();
    std::fs::write(src.join("dir/sub/deep.txt"), b"deep").unwrap();
    std::fs::write(src.join("link-master"), b"hard linked").unwrap();
    std::fs::hard_link(src.join("link-master"), src.join("dir/link-slave")).unwrap();
    std::fs::write(src.join("group-removed"), b"both links go").unwrap();
    std::fs::hard_link(src.join("group-removed"), src.join("dir/group-removed-2")).unwrap();
    std::os::unix::fs::symlink("unchanged", src.join("symlink")).unwrap();
    std::os::unix::fs::symlink("removed", src.join("symlink-removed")).unwrap();
    std::os::unix::fs::symlink("x", src.join("symlink-becomes-file")).unwrap();
    std::fs::write(src.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9")), b"l1").unwrap();
    let script = r#"
import os, sys
src = sys.argv[1]
os.mkfifo(os.path.join(src, 'fifo'))
os.utime(os.path.join(src, 'touched'), ns=(1_000_000_000_123_456_789, 1_500_000_000_999_999_999))
if os.geteuid() == 0:
    os.chown(os.path.join(src, 'chmodded'), 4321, 4322)
"#;
    python(script, [src]);
}

/// The changes between the first and the second archive.
fn change_tree(src: &Path) {
    std::fs::write(src.join("grows"), vec![7u8; 400_000]).unwrap();
    std::fs::write(src.join("rewritten"), rborg_testkit::noise(2, 200_000)).unwrap();
    std::fs::remove_file(src.join("removed")).unwrap();
    std::fs::write(src.join("added"), b"new file\n").unwrap();
    std::fs::write(src.join("added-empty"), b"").unwrap();
    std::fs::write(
        src.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9")),
        b"l1 changed",
    )
    .unwrap();
    std::fs::remove_dir(src.join("dir_becomes_file")).unwrap();
    std::fs::write(src.join("dir_becomes_file"), b"was a dir").unwrap();
    std::fs::remove_dir(src.join("dir_removed")).unwrap();
    std::fs::create_dir(src.join("dir_added")).unwrap();
    std::fs::write(src.join("link-master"), b"hard linked, changed").unwrap();
    std::fs::remove_file(src.join("group-removed")).unwrap();
    std::fs::remove_file(src.join("dir/group-removed-2")).unwrap();
    std::fs::write(src.join("new-group"), b"new group").unwrap();
    std::fs::hard_link(src.join("new-group"), src.join("dir/new-group-2")).unwrap();
    std::fs::remove_file(src.join("symlink")).unwrap();
    std::os::unix::fs::symlink("added", src.join("symlink")).unwrap();
    std::fs::remove_file(src.join("symlink-removed")).unwrap();
    std::os::unix::fs::symlink("dir", src.join("symlink-added")).unwrap();
    std::fs::remove_file(src.join("symlink-becomes-file")).unwrap();
    std::fs::write(src.join("symlink-becomes-file"), b"file now").unwrap();
    let script = r#"
import os, sys
src = sys.argv[1]
os.chmod(os.path.join(src, 'chmodded'), 0o600)
os.utime(os.path.join(src, 'touched'), ns=(1_000_000_000_123_456_789, 1_600_000_000_000_000_001))
os.unlink(os.path.join(src, 'fifo'))
os.mkdir(os.path.join(src, 'fifo'))
if os.geteuid() == 0:
    os.chown(os.path.join(src, 'chmodded'), 0, 0)
"#;
    python(script, [src]);
}

#[test]
fn diff_output_matches_borg() {
    if !borg_available("diff interop test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    make_first(&src);
    // unencrypted: no key derivation in each of the many runs (export-tar uses repokey)
    ok(&borg(dir, &["init", "-e", "none", "repo"]), "borg init");
    ok(&borg(dir, &["create", "repo::a", "src"]), "create a");
    change_tree(&src);
    ok(&borg(dir, &["create", "repo::b", "src"]), "create b");
    ok(
        &borg(
            dir,
            &[
                "create",
                "--chunker-params",
                "10,14,12,4095",
                "repo::c",
                "src",
            ],
        ),
        "create c",
    );
    ok(&rborg(dir, &["create", "repo::r", "src"]), "rborg create r");

    let text = same(dir, &["diff", "repo::a", "b"]);
    // the comparison found the kinds of changes the tree has
    for needle in [
        "added directory     src/dir_added",
        "removed directory   src/dir_removed",
        "changed link",
        "added link",
        "removed link",
        "[-rw-r--r-- -> -rw-------]",
        "[mtime: ",
        "added           9 B src/added",
        "removed         9 B src/removed",
        "src/latin1-?\n",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }
    assert!(!text.contains("src/unchanged\n"));
    same(dir, &["diff", "--json-lines", "repo::a", "b"]);
    same(dir, &["diff", "--sort", "repo::a", "b"]);
    same(dir, &["diff", "--content-only", "repo::a", "b"]);
    same(
        dir,
        &["diff", "--json-lines", "--content-only", "repo::a", "b"],
    );
    // different chunker parameters: contents are read and compared, with a warning (rc 1)
    let slow = same(dir, &["diff", "repo::a", "c"]);
    assert!(slow.contains("modified"), "{slow}");
    same(dir, &["diff", "--sort", "--json-lines", "repo::b", "c"]);
    same(dir, &["diff", "--same-chunker-params", "repo::b", "c"]);
    // selections and a PATH that matches nothing (warning, rc 1)
    // (a selection that separates a hard link from its master makes borg 1.2.4 fail an
    // assertion, and which link is the master depends on inode order)
    same(
        dir,
        &[
            "diff",
            "repo::a",
            "b",
            "src/grows",
            "src/symlink",
            "src/dir_removed",
        ],
    );
    same(dir, &["diff", "repo::a", "b", "-e", "src/grows", "--sort"]);
    same(dir, &["diff", "repo::a", "b", "src/no-such-path"]);
    // an archive rborg wrote, read by both
    same(dir, &["diff", "--sort", "repo::a", "r"]);
    same(dir, &["diff", "--json-lines", "repo::r", "b"]);
}

/// A tree exercising tar headers: long names and link targets, hard link groups across
/// directories, symlinks, a fifo, a device (as root), big ids, non-UTF-8 names, empty files.
fn make_tar_tree(src: &Path) {
    let long_dir = "d".repeat(70);
    let long_name = "n".repeat(120);
    std::fs::create_dir_all(src.join("dir1/subdir")).unwrap();
    std::fs::create_dir_all(src.join(&long_dir)).unwrap();
    std::fs::write(src.join("source"), b"123456").unwrap();
    std::fs::hard_link(src.join("source"), src.join("abba")).unwrap();
    std::fs::hard_link(src.join("source"), src.join("dir1/hardlink")).unwrap();
    std::fs::hard_link(src.join("source"), src.join("dir1/subdir/hardlink")).unwrap();
    std::fs::write(src.join("dir1/source2"), rborg_testkit::noise(3, 70_000)).unwrap();
    std::fs::hard_link(src.join("dir1/source2"), src.join("dir1/aaaa")).unwrap();
    std::fs::write(src.join(&long_dir).join(&long_name), b"long").unwrap();
    std::os::unix::fs::symlink(format!("{long_dir}/{long_name}"), src.join("longlink")).unwrap();
    std::os::unix::fs::symlink("source", src.join("symlink")).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::write(src.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9")), b"l1").unwrap();
    let script = r#"
import os, sys, stat
src = sys.argv[1]
os.mkfifo(os.path.join(src, 'fifo'))
os.chmod(os.path.join(src, 'source'), 0o4751)
os.utime(os.path.join(src, 'empty'), ns=(1_000_000_000_123_456_789, 1_500_000_000_999_999_999))
if os.geteuid() == 0:
    os.mknod(os.path.join(src, 'chardev'), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(os.path.join(src, 'blockdev'), 0o640 | stat.S_IFBLK, os.makedev(259, 70000))
    os.chown(os.path.join(src, 'empty'), 3000000, 54322)
"#;
    python(script, [src]);
}

/// Exports with borg to `b_<file>` and rborg to `r_<file>`; asserts the same `--list` output,
/// exit code and bytes (after `decompress`), and returns borg's bytes.
#[track_caller]
fn same_tar(dir: &Path, file: &str, extra: &[&str], decompress: bool) -> Vec<u8> {
    let run = |tool: &str| {
        let out_name = format!("{tool}_{file}");
        let mut args = vec!["export-tar", "--list", "repo::t", out_name.as_str()];
        args.extend_from_slice(extra);
        let out = if tool == "b" {
            borg(dir, &args)
        } else {
            rborg(dir, &args)
        };
        ok(&out, &format!("{tool} export-tar {extra:?}"));
        let bytes = std::fs::read(dir.join(&out_name)).unwrap();
        let bytes = if decompress {
            let out = python(
                "import gzip, sys; sys.stdout.buffer.write(gzip.decompress(open(sys.argv[1], 'rb').read()))",
                [dir.join(&out_name)],
            );
            out.stdout
        } else {
            bytes
        };
        (out.stderr, bytes)
    };
    let (b_list, b_tar) = run("b");
    let (r_list, r_tar) = run("r");
    assert_eq!(
        String::from_utf8_lossy(&r_list),
        String::from_utf8_lossy(&b_list),
        "--list output for {extra:?}"
    );
    assert!(!b_tar.is_empty());
    if r_tar != b_tar {
        // name the first differing member for the failure message
        let listing = |name: &str| {
            let script = "import tarfile, sys\nfor m in tarfile.open(sys.argv[1]):\n    print(m.name, m.type, m.mode, m.uid, m.gid, m.size, m.mtime, m.linkname, m.uname, m.gname, m.devmajor, m.devminor)";
            String::from_utf8_lossy(&python(script, [dir.join(name)]).stdout).into_owned()
        };
        assert_eq!(
            listing(&format!("r_{file}")),
            listing(&format!("b_{file}")),
            "tar members differ for {extra:?}"
        );
        panic!("tar streams differ for {extra:?} (same members: content or padding)");
    }
    b_tar
}

#[test]
fn export_tar_matches_borg() {
    if !borg_available("export-tar interop test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = dir.join("input");
    std::fs::create_dir(&src).unwrap();
    make_tar_tree(&src);
    ok(&borg(dir, &["init", "-e", "repokey", "repo"]), "borg init");
    ok(&borg(dir, &["create", "repo::t", "input"]), "create t");

    let whole = same_tar(dir, "all.tar", &[], false);
    assert_eq!(whole.len() % 10240, 0);
    // the member list as Python's tarfile reads it: every item, hard links as links
    let script = "import tarfile, sys\nfor m in tarfile.open(sys.argv[1]):\n    print(m.name, m.type.decode(), m.linkname)";
    let members =
        String::from_utf8_lossy(&python(script, [dir.join("r_all.tar")]).stdout).into_owned();
    // the first member of the 4-link group carries the content, the others link to it
    let group = [
        "input/source",
        "input/abba",
        "input/dir1/hardlink",
        "input/dir1/subdir/hardlink",
    ];
    let entries: Vec<Vec<&str>> = members
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| group.contains(&f[0]))
        .collect();
    assert_eq!(entries.len(), 4, "{members}");
    assert_eq!(entries[0][1], "0", "{members}");
    assert!(
        entries[1..]
            .iter()
            .all(|e| e[1] == "1" && e[2] == entries[0][0]),
        "{members}"
    );
    assert!(members.contains("input/dir1 5 \n"), "{members}");
    assert!(
        members.contains(&format!("{} 0", "n".repeat(120))),
        "{members}"
    );
    same_tar(dir, "strip.tar", &["--strip-components=2"], false);
    // masters outside the selection: the first selected link carries the content
    same_tar(dir, "sel.tar", &["input/dir1"], false);
    same_tar(dir, "excl.tar", &["-e", "input/source"], false);
    same_tar(dir, "gz.tar.gz", &["--strip-components=1"], true);
    // to stdout, through an explicit filter program
    let args = [
        "export-tar",
        "--tar-filter",
        "cat -",
        "repo::t",
        "-",
        "input/dir1",
    ];
    let (b, r) = (borg(dir, &args), rborg(dir, &args));
    ok(&b, "borg export-tar -");
    ok(&r, "rborg export-tar -");
    assert!(
        r.stdout == b.stdout && !b.stdout.is_empty(),
        "stdout tar differs"
    );
}
