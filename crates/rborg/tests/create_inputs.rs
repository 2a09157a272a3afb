//! `rborg borg create`'s inputs against real borg 1.2.4: for the same tree and the same
//! `--pattern` / `--patterns-from` (`+`, `-`, `!`, `P`, `R` lines) / `-e` / `--exclude-from`
//! arguments, `--paths-from-stdin`, `--paths-from-command`, `--content-from-command` and
//! duplicate roots, the archive rborg writes holds exactly the items borg's own archive holds,
//! in the same order (both listed by real borg), `--list` reports the same excluded paths, and
//! failing commands fail the same way without leaving an archive.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use rborg_testkit::{borg_command, BORG};

fn command(dir: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = borg_command(program, args, dir, &dir.join("home"), "");
    cmd.env("TZ", "UTC")
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8");
    cmd
}

fn run(dir: &Path, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut full: Vec<&str> = Vec::new();
    if program != BORG {
        full.push("borg");
    }
    full.extend_from_slice(args);
    let mut child = command(dir, program, &full)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

const RBORG: &str = env!("CARGO_BIN_EXE_rborg");

/// input/{x/{a/foo_a,b/foo_b},y/foo_y,file1,file2,file_important,junk.tmp,keep/junk.tmp}
fn make_tree(dir: &Path) {
    for (path, data) in [
        ("input/x/a/foo_a", "a"),
        ("input/x/b/foo_b", "b"),
        ("input/y/foo_y", "y"),
        ("input/file1", "1"),
        ("input/file2", "2"),
        ("input/file_important", "important"),
        ("input/junk.tmp", "tmp"),
        ("input/keep/junk.tmp", "kept tmp"),
    ] {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    std::fs::write(
        dir.join("patterns"),
        "# a pattern file\n+ input/x/b\n- input/x*\nP fm\n! *.tmp\nR input\n",
    )
    .unwrap();
    std::fs::write(dir.join("excludes"), "*/file2\n\n# comment\n").unwrap();
}

/// The archived paths as real borg lists them, in archive order.
fn archived(dir: &Path, archive: &str) -> Vec<String> {
    let out = run(
        dir,
        BORG,
        &["list", "--format", "{type} {path}{NL}", archive],
        None,
    );
    rborg_testkit::ok(&out, "borg list")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs `create` with `args` (`ARCHIVE` stands for a new archive) with borg and with rborg,
/// each into its own repository (created by borg on first use), and returns both outputs
/// with the archive names.
fn both(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> [(Output, String); 2] {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    [("borg", BORG), ("rborg", RBORG)].map(|(name, program)| {
        let repo = dir.join(format!("repo-{name}"));
        let repo_text = repo.display().to_string();
        if !repo.exists() {
            let out = run(dir, BORG, &["init", "-e", "none", &repo_text], None);
            rborg_testkit::ok(&out, "borg init");
        }
        let archive = format!("{repo_text}::a{n}");
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "ARCHIVE" { archive.as_str() } else { a })
            .collect();
        (run(dir, program, &args, stdin), archive)
    })
}

/// The `--list` lines in order, with every status but `x` (excluded) shown as `*` (whether
/// a file is new or unchanged depends on the files cache, which this test does not compare).
fn listed(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(status, path)| {
            let status = if status == "x" { "x" } else { "*" };
            format!("{status} {path}")
        })
        .collect()
}

/// Creates with both and compares; returns the items and rborg's archive.
#[track_caller]
fn compare(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> (Vec<String>, String) {
    let [(b, ba), (r, ra)] = both(dir, args, stdin);
    rborg_testkit::ok(&b, "borg create");
    rborg_testkit::ok(&r, "rborg create");
    let want = archived(dir, &ba);
    assert_eq!(archived(dir, &ra), want, "archived items for {args:?}");
    assert_eq!(listed(&r), listed(&b), "--list output for {args:?}");
    (want, ra)
}

#[track_caller]
fn same_archives(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<String> {
    compare(dir, args, stdin).0
}

#[test]
fn patterns_and_excludes_select_what_borg_selects() {
    if !rborg_testkit::borg_available("create inputs test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_tree(dir);
    // `-` rules still descend into excluded folders, `+` rescues a child; `!` does not descend
    let items = same_archives(
        dir,
        &["create", "--list", "--patterns-from", "patterns", "ARCHIVE"],
        None,
    );
    assert!(
        items.contains(&"- input/x/b/foo_b".to_string()),
        "{items:?}"
    );
    assert!(!items.iter().any(|i| i.contains("foo_a")), "{items:?}");
    // command line order across -e, --exclude-from and --pattern decides
    same_archives(
        dir,
        &[
            "create",
            "--list",
            "--pattern=+input/file_important",
            "--exclude-from",
            "excludes",
            "-e",
            "input/file*",
            "--pattern=! input/keep",
            "--pattern=-sh:**/*.tmp",
            "ARCHIVE",
            "input",
        ],
        None,
    );
    // a root given twice is archived once (a root below another one is archived again, as
    // borg does)
    let items = same_archives(
        dir,
        &["create", "ARCHIVE", "input/y", "input", "input/y"],
        None,
    );
    let mut unique = items.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), items.len(), "{items:?}");
}

#[test]
fn paths_and_content_from_stdin_and_commands() {
    if !rborg_testkit::borg_available("create inputs test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_tree(dir);
    let items = same_archives(
        dir,
        &[
            "create",
            "--paths-from-stdin",
            "--paths-delimiter",
            "\\0",
            "ARCHIVE",
        ],
        Some(b"input/file1\0input/x\0input/./y/foo_y\0"),
    );
    assert_eq!(items, ["- input/file1", "d input/x", "- input/y/foo_y"]);
    same_archives(
        dir,
        &[
            "create",
            "--paths-from-command",
            "ARCHIVE",
            "--",
            "printf",
            "input/file2\\ninput/y\\n",
        ],
        None,
    );
    let (items, archive) = compare(
        dir,
        &[
            "create",
            "--content-from-command",
            "--stdin-name",
            "dump/out.txt",
            "ARCHIVE",
            "--",
            "echo",
            "some content",
        ],
        None,
    );
    assert_eq!(items, ["- dump/out.txt"]);
    let out = run(dir, BORG, &["extract", "--stdout", &archive], None);
    assert_eq!(
        rborg_testkit::ok(&out, "borg extract --stdout"),
        "some content\n"
    );
}

#[test]
fn failing_commands_fail_like_borg() {
    if !rborg_testkit::borg_available("create inputs test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for mode in ["--paths-from-command", "--content-from-command"] {
        for (args, message) in [
            (
                vec!["create", mode, "ARCHIVE", "--", "sh", "-c", "exit 73"],
                "Command 'sh' exited with status 73",
            ),
            (vec!["create", mode, "ARCHIVE"], "No command given."),
        ] {
            let [(b, ba), (r, ra)] = both(dir, &args, None);
            for (out, archive, who) in [(&b, &ba, "borg"), (&r, &ra, "rborg")] {
                assert_eq!(out.status.code(), Some(2), "{who} {args:?}");
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(err.trim_end().ends_with(message), "{who} {args:?}: {err}");
                let repo = archive.split("::").next().unwrap_or_default();
                let list = run(dir, BORG, &["list", "--short", repo], None);
                assert_eq!(rborg_testkit::ok(&list, "borg list"), "", "{who} {args:?}");
            }
        }
    }
}

/// A tree 700 directories deep under the usual limit of 1024 open files: borg keeps one
/// descriptor per level and stores it all; so must rborg, which walks the upper levels
/// relative to their open directories (two descriptors each) and the rest by path.
#[test]
fn deep_trees_walk_like_borg() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if !rborg_testkit::borg_available("deep tree test") {
        return;
    }
    // this test binary's other tests open few files; the children inherit the limit
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 1024.min(hard), hard).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("home")).unwrap();
    let mut deep = dir.join("input");
    for _ in 0..700 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("bottom"), "the end").unwrap();
    std::fs::write(dir.join("input/top"), "the start").unwrap();
    let items = same_archives(dir, &["create", "--list", "ARCHIVE", "input"], None);
    // input, 700 directories, two files
    assert_eq!(items.len(), 703, "{items:?}");
    assert!(items.iter().any(|i| i.ends_with("/d/bottom")));
}
