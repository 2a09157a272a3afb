//! The client cache (`~/.cache/borg/<repo id>/`) shared by rborg and borg 1.2.4: each must
//! use the files and chunks caches the other wrote (unchanged files get status `U` without
//! being read), the chunks cache rborg maintains must equal what borg builds from scratch,
//! a repository changed by another client is synchronised, and corrupted cache files give
//! borg's errors and warnings.
//!
//! These tests need `/usr/bin/borg`. Without it they print a notice and pass, unless
//! `RBORG_REQUIRE_BORG=1`, in which case they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rborg_testkit::{borg_command, BORG};

const PASSPHRASE: &str = "cache-test-pw";

fn borg_available() -> bool {
    rborg_testkit::borg_available("cache interop test")
}

/// A command run as the client whose home (and so cache and security dirs) is `home`.
fn command(dir: &Path, home: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = borg_command(program, args, dir, home, PASSPHRASE);
    cmd.env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .env_remove("BORG_CACHE_DIR")
        .env_remove("BORG_SECURITY_DIR")
        .env_remove("BORG_FILES_CACHE_TTL")
        .env_remove("BORG_FILES_CACHE_SUFFIX")
        .env_remove("XDG_CACHE_HOME");
    cmd
}

fn borg(dir: &Path, home: &Path, args: &[&str]) -> Output {
    command(dir, home, BORG, args).output().unwrap()
}

fn rborg(dir: &Path, home: &Path, args: &[&str]) -> Output {
    let mut full = vec!["borg"];
    full.extend_from_slice(args);
    command(dir, home, env!("CARGO_BIN_EXE_rborg"), &full)
        .output()
        .unwrap()
}

#[track_caller]
fn ok(out: &Output, what: &str) -> String {
    rborg_testkit::ok(out, what)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `--list` status letter of every regular file under `input/`.
fn statuses(out: &Output) -> Vec<(char, String)> {
    let mut v: Vec<(char, String)> = stderr(out)
        .lines()
        .filter_map(|l| {
            let (s, p) = l.split_once(' ')?;
            let s = s.chars().next().filter(|_| s.len() == 1)?;
            (s != 'd' && p.starts_with("input/")).then(|| (s, p.to_string()))
        })
        .collect();
    v.sort_by(|a, b| a.1.cmp(&b.1));
    v
}

fn status_of(list: &[(char, String)], path: &str) -> Option<char> {
    list.iter().find(|(_, p)| p == path).map(|(s, _)| *s)
}

/// The "All archives" and "Chunk index" lines of `borg info` (sizes and chunk counts).
fn chunk_index_line(out: &Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out));
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("Chunk index:") || l.starts_with("All archives:"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    lines.join("\n")
}

fn write(path: &Path, seed: u8, len: usize) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[0] ^ seed)
        .collect();
    std::fs::write(path, data).unwrap();
}

/// Files whose ctime is older than the newest ctime of the backup (borg keeps only those in
/// the files cache), then a marker that is the newest file.
fn make_input(dir: &Path) -> PathBuf {
    let input = dir.join("input");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    for i in 0..5u8 {
        write(
            &input.join(format!("f{i}")),
            i,
            40_000 + usize::from(i) * 1000,
        );
    }
    write(&input.join("sub/big"), 9, 1_200_000);
    touch_newest(&input);
    input
}

/// (Re)writes `input/zz-newest` after a pause, so every other file is strictly older.
fn touch_newest(input: &Path) {
    std::thread::sleep(std::time::Duration::from_millis(30));
    std::fs::write(input.join("zz-newest"), b"newest").unwrap();
}

fn cache_dir(home: &Path) -> PathBuf {
    let base = home.join(".cache/borg");
    std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap()
}

#[test]
fn files_and_chunks_cache_shared_both_ways() {
    if !borg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let input = make_input(dir);
    ok(
        &rborg(dir, &home, &["init", "-e", "repokey", "repo"]),
        "rborg init",
    );
    // rborg init created the cache, as borg init does
    assert!(cache_dir(&home).join("config").exists());

    let a = borg(dir, &home, &["create", "--list", "repo::a", "input"]);
    ok(&a, "borg create a");
    assert_eq!(status_of(&statuses(&a), "input/f0"), Some('A'));

    // rborg uses borg's files cache and chunks cache: old files are unchanged
    touch_newest(&input);
    let b = rborg(dir, &home, &["create", "--list", "repo::b", "input"]);
    ok(&b, "rborg create b");
    let st = statuses(&b);
    for f in ["input/f0", "input/f4", "input/sub/big"] {
        assert_eq!(status_of(&st, f), Some('U'), "{f} in {st:?}");
    }

    // a modified file is 'M'; a new one 'A', and rborg memorizes it for borg
    std::fs::write(input.join("f1"), b"changed").unwrap();
    write(&input.join("late"), 7, 50_000);
    touch_newest(&input);
    let c = rborg(dir, &home, &["create", "--list", "repo::c", "input"]);
    ok(&c, "rborg create c");
    let st = statuses(&c);
    assert_eq!(status_of(&st, "input/f1"), Some('M'), "{st:?}");
    assert_eq!(status_of(&st, "input/late"), Some('A'), "{st:?}");
    assert_eq!(status_of(&st, "input/f0"), Some('U'), "{st:?}");

    touch_newest(&input);
    let d = borg(dir, &home, &["create", "--list", "repo::d", "input"]);
    ok(&d, "borg create d");
    let st = statuses(&d);
    for f in ["input/f0", "input/f1", "input/late", "input/sub/big"] {
        assert_eq!(
            status_of(&st, f),
            Some('U'),
            "borg sees rborg's entry for {f}: {st:?}"
        );
    }

    // the contents of unchanged files archived by rborg are right
    ok(
        &borg(dir, &home, &["check", "--verify-data", "repo"]),
        "borg check",
    );
    let listing = ok(
        &borg(
            dir,
            &home,
            &["list", "repo::c", "--format={size} {path}{NL}"],
        ),
        "borg list c",
    );
    assert!(listing.contains("1200000 input/sub/big"), "{listing}");
    assert!(listing.contains("7 input/f1"), "{listing}");

    // the chunks cache rborg kept equals the one borg builds from the archives
    let kept = borg(dir, &home, &["info", "repo"]);
    ok(&kept, "borg info (kept cache)");
    ok(
        &borg(dir, &home, &["delete", "--cache-only", "repo"]),
        "borg delete --cache-only",
    );
    let fresh = borg(dir, &home, &["info", "repo"]);
    ok(&fresh, "borg info (fresh cache)");
    assert_eq!(chunk_index_line(&kept), chunk_index_line(&fresh));

    // borg deletes through the refcounts rborg stored, leaving a consistent repository
    ok(
        &borg(dir, &home, &["delete", "repo::a", "b", "c"]),
        "borg delete",
    );
    ok(
        &borg(dir, &home, &["check", "--verify-data", "repo"]),
        "borg check after delete",
    );
    let e = rborg(dir, &home, &["create", "--list", "repo::e", "input"]);
    ok(&e, "rborg create e");
    ok(&borg(dir, &home, &["check", "repo"]), "borg check after e");
}

#[test]
fn other_client_changes_are_synced() {
    if !borg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (home1, home2, home3) = (dir.join("h1"), dir.join("h2"), dir.join("h3"));
    let input = make_input(dir);
    ok(
        &borg(dir, &home1, &["init", "-e", "repokey", "repo"]),
        "borg init",
    );
    ok(
        &rborg(dir, &home1, &["create", "repo::one", "input"]),
        "rborg create one",
    );
    // another client (own cache) adds an archive with new chunks
    write(&input.join("other"), 3, 200_000);
    ok(
        &borg(dir, &home2, &["create", "repo::two", "input"]),
        "client 2 create",
    );
    // rborg notices the manifest change and rebuilds its chunks cache
    write(&input.join("third"), 4, 100_000);
    let three = rborg(dir, &home1, &["create", "-v", "repo::three", "input"]);
    ok(&three, "rborg create three");
    let err = stderr(&three);
    // borg writes per-archive indexes only while syncing, so both are fetched now
    assert!(
        err.contains("Fetching and building archive index for one"),
        "{err}"
    );
    assert!(
        err.contains("Fetching and building archive index for two"),
        "{err}"
    );
    // the next foreign change reuses them
    ok(
        &borg(dir, &home2, &["create", "repo::four", "input"]),
        "client 2 create four",
    );
    let five = rborg(dir, &home1, &["create", "-v", "repo::five", "input"]);
    ok(&five, "rborg create five");
    let err = stderr(&five);
    assert!(
        err.contains("Reading cached archive chunk index for two"),
        "{err}"
    );
    assert!(
        err.contains("Fetching and building archive index for four"),
        "{err}"
    );
    let archive_d = cache_dir(&home1).join("chunks.archive.d");
    // one, two, three, four: a compact index and its .integrity file each
    assert_eq!(std::fs::read_dir(&archive_d).unwrap().count(), 8);
    // client 1's cache (kept by rborg) matches a third client's fresh sync
    let kept = borg(dir, &home1, &["info", "repo"]);
    let fresh = borg(dir, &home3, &["info", "repo"]);
    assert_eq!(
        chunk_index_line(&ok_out(kept)),
        chunk_index_line(&ok_out(fresh))
    );
}

fn ok_out(out: Output) -> Output {
    ok(&out, "command");
    out
}

fn corrupt(path: &Path) {
    let mut data = std::fs::read(path).unwrap();
    let last = data.len() - 1;
    data[last] = 255 - data[last];
    std::fs::write(path, data).unwrap();
}

#[test]
fn corrupted_cache_files() {
    if !borg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    make_input(dir);
    ok(
        &rborg(dir, &home, &["init", "-e", "repokey", "repo"]),
        "rborg init",
    );
    ok(
        &rborg(dir, &home, &["create", "repo::a", "input"]),
        "rborg create",
    );
    let cache = cache_dir(&home);

    // a corrupted files cache: warned about, then ignored (both implementations)
    corrupt(&cache.join("files"));
    let b = rborg(dir, &home, &["create", "repo::b", "input"]);
    ok(&b, "rborg create with corrupt files cache");
    assert!(
        stderr(&b).contains("files cache is corrupted"),
        "{}",
        stderr(&b)
    );

    // a corrupted chunks cache is fatal, with borg's message, for both
    corrupt(&cache.join("chunks"));
    for (name, out) in [
        ("rborg", rborg(dir, &home, &["info", "repo"])),
        ("borg", borg(dir, &home, &["info", "repo"])),
    ] {
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("failed integrity check"),
            "{name}: {}",
            stderr(&out)
        );
    }

    // an old borg version rewrote the config: integrity data is not trusted
    ok(
        &rborg(dir, &home, &["delete", "--cache-only", "repo"]),
        "delete --cache-only",
    );
    ok(
        &rborg(dir, &home, &["info", "repo"]),
        "rborg info rebuilds the cache",
    );
    let config = cache.join("config");
    let text = std::fs::read_to_string(&config).unwrap();
    let manifest_line = text.lines().find(|l| l.starts_with("manifest = ")).unwrap();
    let text = text.replacen(manifest_line, &format!("manifest = {}", "00".repeat(32)), 1);
    std::fs::write(&config, text).unwrap();
    let out = rborg(dir, &home, &["info", "repo"]);
    ok(&out, "rborg info");
    assert!(
        stderr(&out)
            .contains("Cache integrity data not available: old Borg version modified the cache."),
        "{}",
        stderr(&out)
    );
}
