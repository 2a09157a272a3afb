//! `rborg borg create` checked by real borg 1.2.4: archives rborg writes must list like borg's
//! own archive of the same tree, extract byte-identically (contents, symlinks, hardlinks,
//! xattrs, mtimes), pass `borg check --verify-data`, and deduplicate against chunks borg stored
//! (same chunk boundaries and IDs), in modes none, repokey and keyfile-blake2.
//!
//! These tests need `/usr/bin/borg`. Without it they print a notice and pass, unless
//! `RBORG_REQUIRE_BORG=1` (CI sets it), in which case they fail.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use rborg_testkit::{borg_command, noise, BORG};

const PASSPHRASE: &str = "create-test-pw";

fn borg_available() -> bool {
    rborg_testkit::borg_available("create interop test")
}

fn command(dir: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = borg_command(program, args, dir, &dir.join("home"), PASSPHRASE);
    cmd.env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .env("TZ", "UTC")
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

#[track_caller]
fn ok(out: &Output, what: &str) {
    rborg_testkit::ok(out, what);
}

fn xattrs_supported(dir: &Path) -> bool {
    let probe = dir.join("xattr-probe");
    std::fs::write(&probe, b"x").unwrap();
    let ok = set_xattr(&probe, "user.probe", "1");
    std::fs::remove_file(&probe).unwrap();
    ok
}

/// A tree with the interesting file kinds; returns whether xattrs were set.
fn make_tree(root: &Path, seed: u64) -> bool {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(root.join("skipme")).unwrap();
    std::fs::create_dir_all(root.join("cachedir")).unwrap();
    std::fs::write(
        root.join("cachedir/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    std::fs::write(root.join("cachedir/data"), b"cached").unwrap();
    std::fs::write(root.join("skipme/x"), b"skipped").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("small.txt"), b"hello world\n").unwrap();
    std::fs::write(root.join("junk.tmp"), b"temporary").unwrap();
    // several chunks with the default buzhash,19,23,21 parameters
    std::fs::write(root.join("big.bin"), noise(seed, 6_000_000)).unwrap();
    std::fs::write(root.join("sub/zeros"), vec![0u8; 1_500_000]).unwrap();
    std::fs::write(
        root.join("sub/deeper/caf\u{e9} \u{1f600}.txt"),
        noise(seed + 1, 70_000),
    )
    .unwrap();
    std::fs::write(root.join("sub/hl1"), noise(seed + 2, 100_000)).unwrap();
    std::fs::hard_link(root.join("sub/hl1"), root.join("hl2")).unwrap();
    std::fs::hard_link(root.join("sub/hl1"), root.join("sub/deeper/hl3")).unwrap();
    std::os::unix::fs::symlink("small.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("sub/dangling")).unwrap();
    let fifo = root.join("sub/fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let xattrs = xattrs_supported(root);
    if xattrs {
        for (name, value) in [("user.alpha", "1"), ("user.beta", "two")] {
            assert!(set_xattr(&root.join("small.txt"), name, value));
        }
    }
    // fixed mtimes (with nanoseconds) so the listing comparison is independent of timing
    let _ = Command::new("touch")
        .args(["-h", "-d", "2021-03-04 05:06:07.123456789"])
        .arg(root.join("link"))
        .status();
    xattrs
}

/// Sets a user xattr through Python's `os.setxattr` (no attr tools needed).
fn set_xattr(path: &Path, name: &str, value: &str) -> bool {
    Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import os,sys; os.setxattr(sys.argv[1], sys.argv[2], sys.argv[3].encode())",
        ])
        .arg(path)
        .args([name, value])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The user xattrs of `path`, sorted, as text.
fn get_xattrs(path: &Path) -> String {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import os,sys; p=sys.argv[1]; print(sorted((n, os.getxattr(p, n, follow_symlinks=False)) for n in os.listxattr(p, follow_symlinks=False) if n.startswith('user.')))",
        ])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if text == "[]" {
        String::new()
    } else {
        text
    }
}

const LIST_FORMAT: &str = "{mode} {user} {group} {size} {mtime} {path} {source}{NL}";

fn list(dir: &Path, archive: &str) -> String {
    let out = borg(dir, &["list", "--format", LIST_FORMAT, archive]);
    ok(&out, &format!("borg list {archive}"));
    String::from_utf8(out.stdout).unwrap()
}

/// Everything `borg extract` must reproduce, keyed by relative path.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let md = std::fs::symlink_metadata(&path).unwrap();
            let ft = md.file_type();
            let mut desc = format!(
                "mode={:o} mtime={}.{}",
                md.mode(),
                md.mtime(),
                md.mtime_nsec()
            );
            if ft.is_dir() {
                stack.push(path.clone());
                desc = format!("mode={:o}", md.mode());
            } else if ft.is_symlink() {
                desc += &format!(
                    " -> {}",
                    std::fs::read_link(&path).unwrap().to_string_lossy()
                );
            } else if ft.is_fifo() {
                desc += " fifo";
            } else {
                let data = std::fs::read(&path).unwrap();
                let h = blake_like(&data);
                desc += &format!(" len={} hash={h:x}", data.len());
                if md.nlink() > 1 {
                    let first = inodes.entry(md.ino()).or_insert_with(|| "group".into());
                    desc += &format!(" nlink={} {first}", md.nlink());
                }
            }
            if !ft.is_symlink() {
                let attrs = get_xattrs(&path);
                if !attrs.is_empty() {
                    desc += &format!(" xattrs={attrs}");
                }
            }
            out.insert(rel, desc);
        }
    }
    out
}

/// FNV-1a 64, enough to compare file contents.
fn blake_like(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn json_stats(out: &Output) -> serde_json::Value {
    ok(out, "rborg create --json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["archive"]["stats"].clone()
}

fn roundtrip(mode: &str) {
    if !borg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let xattrs = make_tree(&dir.join("tree"), 7);
    ok(&borg(dir, &["init", "-e", mode, "repo"]), "borg init");
    ok(
        &borg(dir, &["create", "repo::by-borg", "tree"]),
        "borg create",
    );

    // rborg's archive of the same tree, after borg stored the content: deduplicated
    let out = rborg(dir, &["create", "--json", "repo::by-rborg", "tree"]);
    let stats = json_stats(&out);
    let original = stats["original_size"].as_u64().unwrap();
    let dedup = stats["deduplicated_size"].as_u64().unwrap();
    assert!(original > 7_000_000, "original size {original}");
    assert_eq!(stats["nfiles"].as_u64().unwrap(), 10, "{stats}");
    assert!(
        dedup < 20_000,
        "content borg stored must be deduplicated (same chunk IDs), added {dedup}"
    );

    // borg lists both archives identically
    assert_eq!(list(dir, "repo::by-rborg"), list(dir, "repo::by-borg"));

    // borg extracts rborg's archive to the original tree
    std::fs::create_dir(dir.join("x")).unwrap();
    ok(
        &command(dir, "/usr/bin/borg", &["extract", "../repo::by-rborg"])
            .current_dir(dir.join("x"))
            .output()
            .unwrap(),
        "borg extract",
    );
    let want = snapshot(&dir.join("tree"));
    let got = snapshot(&dir.join("x/tree"));
    assert_eq!(got, want);
    if xattrs {
        assert!(
            want["small.txt"].contains("user.alpha"),
            "{}",
            want["small.txt"]
        );
    }

    // the same tree again adds (almost) nothing
    let again = json_stats(&rborg(dir, &["create", "--json", "repo::again", "tree"]));
    assert!(
        again["deduplicated_size"].as_u64().unwrap() < 20_000,
        "{again}"
    );

    // an existing name is refused as borg refuses it
    let dup = rborg(dir, &["create", "repo::again", "tree"]);
    assert_eq!(dup.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("Archive again already exists"));

    ok(
        &borg(dir, &["check", "--verify-data", "repo"]),
        "borg check",
    );
}

#[test]
fn roundtrip_none() {
    roundtrip("none");
}

#[test]
fn roundtrip_repokey() {
    roundtrip("repokey");
}

#[test]
fn roundtrip_keyfile_blake2() {
    roundtrip("keyfile-blake2");
}

/// rborg first into a fresh repository: borg then deduplicates against rborg's chunks, and the
/// exclude options give the same archive contents as borg's.
#[test]
fn excludes_and_reverse_dedup() {
    if !borg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_tree(&dir.join("tree"), 11);
    ok(&borg(dir, &["init", "-e", "repokey", "repo"]), "borg init");
    let opts = [
        "-e",
        "*.tmp",
        "-e",
        "sh:tree/skip*",
        "--exclude-caches",
        "--exclude-if-present",
        "NOPE",
        "-C",
        "zstd,3",
    ];
    let mut r = vec!["create", "--list"];
    r.extend_from_slice(&opts);
    r.extend_from_slice(&["repo::r", "tree"]);
    let out = rborg(dir, &r);
    ok(&out, "rborg create --list");
    let listed = String::from_utf8_lossy(&out.stderr);
    assert!(listed.contains("x tree/junk.tmp"), "{listed}");
    assert!(listed.contains("A tree/big.bin"), "{listed}");
    assert!(listed.contains("d tree/sub"), "{listed}");
    assert!(
        listed.contains("h tree/hl2") || listed.contains("h tree/sub/hl1"),
        "{listed}"
    );
    let mut b = vec!["create", "--json"];
    b.extend_from_slice(&opts);
    b.extend_from_slice(&["repo::b", "tree"]);
    let out = borg(dir, &b);
    ok(&out, "borg create");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dedup = v["archive"]["stats"]["deduplicated_size"].as_u64().unwrap();
    assert!(dedup < 20_000, "borg found rborg's chunks: added {dedup}");
    let lr = list(dir, "repo::r");
    assert_eq!(lr, list(dir, "repo::b"));
    assert!(!lr.contains("junk.tmp") && !lr.contains("skipme") && !lr.contains("cachedir"));
    ok(
        &borg(dir, &["check", "--verify-data", "repo"]),
        "borg check",
    );
}

/// The `--list` lines of a create run, without the summary.
fn status_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.len() > 2 && l.as_bytes()[1] == b' ')
        .map(str::to_string)
        .collect()
}

/// Directories with more entries than the walker's look-ahead keeps ready (128), more
/// subdirectories than it lists ahead (16), xattrs on files and directories, hardlinks across
/// directories, symlinks and a FIFO among them: rborg walks them in borg's order (the same
/// `--list` lines), archives the same items (`borg list`), an unchanged re-run prints exactly
/// what borg prints, and borg extracts rborg's archive to the original tree.
#[test]
fn wide_trees_archive_like_borg() {
    if !borg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("wide");
    std::fs::create_dir(&root).unwrap();
    let xattrs = xattrs_supported(dir);
    for i in 0..300u64 {
        let f = root.join(format!("f{i:03}"));
        std::fs::write(&f, noise(i, 100 + i as usize * 37)).unwrap();
        if xattrs && i % 7 == 0 {
            assert!(set_xattr(&f, "user.n", &i.to_string()));
        }
    }
    for d in 0..40u64 {
        let sub = root.join(format!("d{d:02}"));
        std::fs::create_dir_all(sub.join("inner")).unwrap();
        for i in 0..5u64 {
            std::fs::write(sub.join(format!("g{i}")), noise(1000 + d * 10 + i, 2000)).unwrap();
        }
        for i in 0..3u64 {
            let inner = sub.join(format!("inner/h{i}"));
            std::fs::write(inner, noise(5000 + d * 10 + i, 300)).unwrap();
        }
        std::os::unix::fs::symlink("../f000", sub.join("l")).unwrap();
        if xattrs && d % 5 == 0 {
            assert!(set_xattr(&sub, "user.dir", &d.to_string()));
        }
    }
    std::fs::hard_link(root.join("f001"), root.join("d03/hl")).unwrap();
    assert!(Command::new("mkfifo")
        .arg(root.join("d07/fifo"))
        .status()
        .unwrap()
        .success());
    ok(&borg(dir, &["init", "-e", "none", "repo"]), "borg init");

    let first = rborg(dir, &["create", "--list", "repo::r", "wide"]);
    ok(&first, "rborg create");
    let by_borg = borg(dir, &["create", "--list", "repo::b", "wide"]);
    ok(&by_borg, "borg create");
    // the same paths in the same order; rborg found every file new, borg (after it, with the
    // same files cache) unchanged
    let (first, by_borg) = (status_lines(&first), status_lines(&by_borg));
    let paths = |lines: &[String]| lines.iter().map(|l| l[2..].to_string()).collect::<Vec<_>>();
    assert_eq!(paths(&first), paths(&by_borg));
    assert_eq!(
        first.len(),
        1 + 300 + 40 * (1 + 5 + 1 + 3 + 1) + 1 + 1,
        "{first:?}"
    );
    assert!(first.contains(&"A wide/f299".to_string()), "{first:?}");
    // whichever of the two links comes first in inode order carries the content
    let linked = |l: &str| first.contains(&l.to_string());
    assert!(
        linked("h wide/d03/hl") || linked("h wide/f001"),
        "{first:?}"
    );
    assert!(first.contains(&"f wide/d07/fifo".to_string()), "{first:?}");
    assert!(by_borg.contains(&"U wide/f000".to_string()), "{by_borg:?}");

    let again = rborg(dir, &["create", "--list", "repo::again", "wide"]);
    ok(&again, "rborg create again");
    assert_eq!(status_lines(&again), by_borg);

    let full = "{type} {mode} {uid} {gid} {size} {mtime} {flags} {path} {source}{NL}";
    let items = |archive: &str| {
        let out = borg(dir, &["list", "--format", full, archive]);
        ok(&out, "borg list");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(items("repo::r"), items("repo::b"));
    assert_eq!(items("repo::again"), items("repo::b"));

    std::fs::create_dir(dir.join("x")).unwrap();
    ok(
        &command(dir, "/usr/bin/borg", &["extract", "../repo::again"])
            .current_dir(dir.join("x"))
            .output()
            .unwrap(),
        "borg extract",
    );
    let want = snapshot(&root);
    assert_eq!(snapshot(&dir.join("x/wide")), want);
    if xattrs {
        assert!(want["d05"].contains("user.dir"), "{}", want["d05"]);
        assert!(want["f007"].contains("user.n"), "{}", want["f007"]);
    }
}

/// Archives made with rborg's FastCDC chunker and from stdin are readable by borg.
#[test]
fn fastcdc_and_stdin() {
    if !borg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_tree(&dir.join("tree"), 13);
    ok(
        &borg(dir, &["init", "-e", "keyfile-blake2", "repo"]),
        "borg init",
    );
    ok(
        &rborg(
            dir,
            &[
                "create",
                "--chunker-params",
                "fastcdc,16,18,20",
                "repo::f",
                "tree",
            ],
        ),
        "rborg create fastcdc",
    );
    std::fs::create_dir(dir.join("x")).unwrap();
    ok(
        &command(dir, "/usr/bin/borg", &["extract", "../repo::f"])
            .current_dir(dir.join("x"))
            .output()
            .unwrap(),
        "borg extract",
    );
    assert_eq!(snapshot(&dir.join("x/tree")), snapshot(&dir.join("tree")));

    let data = noise(99, 300_000);
    let mut child = command(
        dir,
        env!("CARGO_BIN_EXE_rborg"),
        &[
            "borg",
            "create",
            "--stdin-name",
            "piped.bin",
            "repo::s",
            "-",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&data).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    ok(&out, "rborg create from stdin");
    let ex = borg(dir, &["extract", "--stdout", "repo::s"]);
    ok(&ex, "borg extract --stdout");
    assert_eq!(ex.stdout, data);
    let l = list(dir, "repo::s");
    assert!(l.starts_with("-rw-rw---- root root 300000 "), "{l}");
    ok(
        &borg(dir, &["check", "--verify-data", "repo"]),
        "borg check",
    );
    // the path bytes survive as given
    assert!(Path::new(dir)
        .join("tree")
        .as_os_str()
        .as_bytes()
        .ends_with(b"tree"));
}

#[test]
fn read_special_stores_a_fifo_behind_a_symlink_as_a_regular_file() {
    if !borg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    let fifo = input.join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    std::os::unix::fs::symlink(&fifo, input.join("link_fifo")).unwrap();
    ok(
        &rborg(dir, &["init", "-e", "repokey", "repo"]),
        "rborg init",
    );
    let data = b"foobar".repeat(1000);
    let feeder = {
        let (fifo, data) = (fifo.clone(), data.clone());
        std::thread::spawn(move || std::fs::write(fifo, data).unwrap())
    };
    ok(
        &rborg(
            dir,
            &["create", "--read-special", "repo::t", "input/link_fifo"],
        ),
        "rborg create --read-special",
    );
    feeder.join().unwrap();
    // borg lists and extracts it as a regular file with the FIFO's content
    let listing = list(dir, "repo::t");
    assert!(
        listing.contains("-rw") && listing.contains("input/link_fifo"),
        "{listing}"
    );
    let out = borg(dir, &["extract", "--stdout", "repo::t"]);
    ok(&out, "borg extract --stdout");
    assert_eq!(out.stdout, data);
    ok(
        &borg(dir, &["check", "--verify-data", "repo"]),
        "borg check --verify-data",
    );
}

/// All-zero chunks (zero-filled and sparse files): rborg remembers the ID of a zero chunk of
/// each size (borg's `cached_hash` / `zero_chunk_ids`) and passes a known one on without
/// hashing it again. The chunk lists must still be borg's own, for the first archive (IDs
/// computed) and for later ones (IDs remembered, chunks known), and borg must read them.
#[test]
fn zero_chunks_have_borgs_ids_first_and_later() {
    if !borg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    // 20 MiB of zeros: chunks cut at the 8 MiB maximum plus a shorter tail
    std::fs::write(tree.join("zeros"), vec![0u8; 20 << 20]).unwrap();
    // zeros between data: zero chunks of other sizes
    let mut mixed = noise(3, 300_000);
    mixed.extend(vec![0u8; 9 << 20]);
    mixed.extend(noise(4, 300_000));
    std::fs::write(tree.join("mixed"), &mixed).unwrap();
    // a sparse file: a hole of 12 MiB, then data
    let sparse = std::fs::File::create(tree.join("sparse")).unwrap();
    sparse.set_len(12 << 20).unwrap();
    drop(sparse);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(tree.join("sparse"))
        .unwrap();
    std::io::Write::write_all(&mut f, &noise(5, 100_000)).unwrap();
    drop(f);
    let listing = |archive: &str| {
        let out = borg(
            dir,
            &[
                "list",
                "--format",
                "{path} {size} {num_chunks} {unique_chunks}{NL}",
                &format!("repo::{archive}"),
            ],
        );
        ok(&out, "borg list");
        String::from_utf8(out.stdout).unwrap()
    };
    ok(&borg(dir, &["init", "-e", "repokey", "repo"]), "borg init");
    ok(
        &borg(dir, &["create", "repo::by-borg", "tree"]),
        "borg create",
    );
    ok(
        &rborg(dir, &["create", "repo::first", "tree"]),
        "rborg create",
    );
    // the files cache would skip reading the files again: read them
    ok(
        &rborg(
            dir,
            &["create", "--files-cache", "disabled", "repo::again", "tree"],
        ),
        "rborg create again",
    );
    // the same chunk counts, and no chunk only one archive has: the same IDs as borg's
    let by_borg = listing("by-borg");
    assert!(by_borg.contains("tree/zeros 20971520 3 0\n"), "{by_borg}");
    assert!(by_borg.lines().all(|l| l.ends_with(" 0")), "{by_borg}");
    assert_eq!(listing("first"), by_borg);
    assert_eq!(listing("again"), by_borg);
    ok(
        &borg(dir, &["check", "--verify-data", "repo"]),
        "borg check --verify-data",
    );
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    ok(
        &borg(&out_dir, &["extract", "../repo::again"]),
        "borg extract",
    );
    for name in ["zeros", "mixed", "sparse"] {
        assert!(
            std::fs::read(out_dir.join("tree").join(name)).unwrap()
                == std::fs::read(tree.join(name)).unwrap(),
            "{name} differs after extraction"
        );
    }
}
