//! `rborg borg debug ...` and `rborg borg benchmark crud` against borg 1.2.4 on a repository
//! borg made: the JSON dumps (`dump-manifest`, `dump-archive`), the item chunk files of
//! `dump-archive-items`, `id-hash`, `refcount-obj` and `search-repo-objs` print or write the
//! same bytes; profiles written by `--debug-profile` convert (with rborg's and with borg's
//! `convert-profile`) into files Python's `pstats` loads; `benchmark crud` leaves the
//! repository as it found it.
//!
//! These tests need `/usr/bin/borg`. Without it they print a notice and pass, unless
//! `RBORG_REQUIRE_BORG=1` (CI sets it), in which case they fail.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};

use rborg_testkit::{borg_available, borg_command, ok, python, BORG};

const PASSPHRASE: &str = "debug-test-pw";

fn command(dir: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = borg_command(program, args, dir, &dir.join("home"), PASSPHRASE);
    cmd.env("TZ", "Europe/Berlin").env("LC_ALL", "C.UTF-8");
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

/// A repository with one archive `tést` holding text, binary and non-UTF-8 names.
fn setup(dir: &Path) {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello debug\n").unwrap();
    let noise: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(src.join("sub/noise.bin"), noise).unwrap();
    std::fs::write(src.join(OsStr::from_bytes(b"l\xe4tin1")), b"x").unwrap();
    ok(&borg(dir, &["init", "-e", "repokey", "repo"]), "borg init");
    ok(
        &borg(
            dir,
            &["create", "--comment", "ünï \"q\"", "repo::tést", "src"],
        ),
        "borg create",
    );
}

#[track_caller]
fn same_stdout(dir: &Path, args: &[&str]) -> String {
    let (b, r) = (borg(dir, args), rborg(dir, args));
    let bo = ok(&b, &format!("borg {args:?}"));
    let ro = ok(&r, &format!("rborg {args:?}"));
    assert_eq!(bo, ro, "stdout of {args:?}");
    bo
}

#[test]
fn debug_commands_match_borg() {
    if !borg_available("debug interop test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);

    // JSON dumps, to files and to stdout
    for (cmd, target) in [("dump-manifest", "repo"), ("dump-archive", "repo::tést")] {
        ok(&borg(dir, &["debug", cmd, target, "b.json"]), cmd);
        ok(&rborg(dir, &["debug", cmd, target, "r.json"]), cmd);
        assert_eq!(
            std::fs::read(dir.join("b.json")).unwrap(),
            std::fs::read(dir.join("r.json")).unwrap(),
            "{cmd} file"
        );
        same_stdout(dir, &["debug", cmd, target, "-"]);
    }

    // the raw item stream chunks
    let abs = format!("{}::tést", dir.join("repo").display());
    for (program, out) in [(BORG, "ob"), (env!("CARGO_BIN_EXE_rborg"), "or")] {
        let sub = dir.join(out);
        std::fs::create_dir(&sub).unwrap();
        let mut args = vec!["debug", "dump-archive-items", &abs];
        if program != BORG {
            args.insert(0, "borg");
        }
        let o = command(dir, program, &args)
            .current_dir(&sub)
            .output()
            .unwrap();
        assert!(ok(&o, "dump-archive-items").ends_with("Done.\n"));
    }
    let files = |d: &str| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join(d))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let items = files("ob");
    assert!(!items.is_empty() && items[0].0.starts_with("000000_"));
    assert_eq!(items, files("or"));

    // id-hash, and reference counts of the file's chunk, the archive, unknown and bad IDs
    let chunk = same_stdout(dir, &["debug", "id-hash", "repo", "src/hello.txt"]);
    let chunk = chunk.trim();
    assert_eq!(chunk.len(), 64);
    let manifest = ok(&borg(dir, &["debug", "dump-manifest", "repo", "-"]), "dump");
    let archive_id = manifest
        .split("\"id\": \"\\u007f")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let zero = "0".repeat(64);
    let out = same_stdout(
        dir,
        &[
            "debug",
            "refcount-obj",
            "repo",
            chunk,
            &archive_id,
            &zero,
            "12x",
            "124",
        ],
    );
    assert!(out.contains(&format!("object {chunk} has 1 referrers")));

    // searching plaintext, including a miss and a bad term
    same_stdout(
        dir,
        &["debug", "search-repo-objs", "repo", "str:hello debug"],
    );
    same_stdout(
        dir,
        &["debug", "search-repo-objs", "repo", "hex:68656c6c6f"],
    );
    same_stdout(
        dir,
        &["debug", "search-repo-objs", "repo", "str:not in there"],
    );
    let (b, r) = (
        borg(dir, &["debug", "search-repo-objs", "repo", "bad"]),
        rborg(dir, &["debug", "search-repo-objs", "repo", "bad"]),
    );
    assert_eq!(b.status.code(), r.status.code());

    // profiles: rborg's msgpack profile converts with both implementations, and the
    // `.pyprof` form is written directly; pstats loads all three
    ok(
        &rborg(dir, &["--debug-profile", "p.prof", "list", "repo"]),
        "rborg --debug-profile",
    );
    ok(
        &rborg(dir, &["debug", "convert-profile", "p.prof", "r.pyprof"]),
        "rborg convert-profile",
    );
    ok(
        &borg(dir, &["debug", "convert-profile", "p.prof", "b.pyprof"]),
        "borg convert-profile",
    );
    ok(
        &rborg(dir, &["--debug-profile", "d.pyprof", "list", "repo"]),
        "rborg --debug-profile .pyprof",
    );
    let script = r#"
import marshal, pstats, sys
# both conversions of the same profile hold the same data
assert marshal.load(open(sys.argv[1], 'rb')) == marshal.load(open(sys.argv[2], 'rb'))
for p in sys.argv[1:]:
    s = pstats.Stats(p)
    s.strip_dirs()
    s.sort_stats('cumtime')
    assert s.total_calls >= 1, p
"#;
    ok(
        &python(
            script,
            ["r.pyprof", "b.pyprof", "d.pyprof"].map(|p| dir.join(p)),
        ),
        "pstats",
    );
}

#[test]
fn benchmark_crud_leaves_the_repository_as_it_was() {
    if !borg_available("benchmark crud test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("data")).unwrap();
    ok(&borg(dir, &["init", "-e", "none", "repo"]), "borg init");
    let out = command(
        dir,
        env!("CARGO_BIN_EXE_rborg"),
        &["borg", "benchmark", "crud", "repo", "data"],
    )
    .env("_BORG_BENCHMARK_CRUD_TEST", "YES")
    .output()
    .unwrap();
    let text = ok(&out, "benchmark crud");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    for (line, (op, test)) in lines.iter().zip(
        ["Z-TEST", "R-TEST"]
            .iter()
            .flat_map(|t| ["C", "R", "U", "D"].map(|o| (o, *t))),
    ) {
        assert!(line.starts_with(&format!("{op}-{test:<10} ")), "{line}");
        assert!(line.contains(" MB/s (1 * 1 B "), "{line}");
    }
    // the generated data is gone and so are the archives
    assert_eq!(std::fs::read_dir(dir.join("data")).unwrap().count(), 0);
    assert_eq!(ok(&borg(dir, &["list", "repo"]), "borg list"), "");
    ok(&borg(dir, &["check", "repo"]), "borg check");
}
