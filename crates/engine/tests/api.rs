//! The facade's API against repositories made by real borg 1.2.4: items as `borg list` shows
//! them, hard link content, prune decisions as `borg prune --dry-run --list` makes them,
//! check, and the typed errors.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use rborg_engine::{CheckOptions, EntryKind, Error, PassphraseSource, PrunePolicy, Repository};
use rborg_testkit::{borg_available, borg_command, ok};

const BORG: &str = "/usr/bin/borg";
const PASS: &str = "api-secret";

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    home: PathBuf,
    repo: String,
}

impl Fixture {
    fn borg(&self, args: &[&str]) -> String {
        let out = borg_command(BORG, args, &self.dir, &self.home, PASS)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        ok(&out, &format!("borg {args:?}"))
    }
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let home = dir.join("home");
    std::fs::create_dir(&home).unwrap();
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(src.join("d/b.bin"), vec![7u8; 70_000]).unwrap();
    std::fs::hard_link(src.join("d/b.bin"), src.join("hard")).unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("sym")).unwrap();
    let fx = Fixture {
        _tmp: tmp,
        home,
        repo: dir.join("repo").display().to_string(),
        dir,
    };
    fx.borg(&["init", "-e", "repokey", &fx.repo]);
    for (name, ts) in [
        ("a1", "2026-01-01T10:00:00"),
        ("a2", "2026-01-01T20:00:00"),
        ("a3", "2026-01-02T10:00:00"),
        ("a4", "2026-01-03T10:00:00"),
    ] {
        fx.borg(&[
            "create",
            "--timestamp",
            ts,
            &format!("{}::{name}", fx.repo),
            "src",
        ]);
    }
    fx
}

/// Opens with the fixture's environment (`BORG_BASE_DIR` for keys and security files).
fn open(fx: &Fixture, pass: PassphraseSource) -> Result<Repository, Error> {
    std::env::set_var("BORG_BASE_DIR", &fx.home);
    Repository::open(&fx.repo, pass)
}

// one test: the process environment (BORG_BASE_DIR) is shared by the steps
#[test]
fn facade_against_borg() {
    if !borg_available("rborg-engine API") {
        return;
    }
    let fx = fixture();

    // what borg shows (before the facade takes the repository's lock)
    let borg_items: Vec<serde_json::Value> = fx
        .borg(&["list", "--json-lines", &format!("{}::a4", fx.repo)])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // typed errors: bad location, missing repository, wrong passphrase
    assert!(matches!(
        Repository::open("", PassphraseSource::Env),
        Err(Error::InvalidLocation(_))
    ));
    let missing = fx.dir.join("nope").display().to_string();
    assert!(matches!(
        Repository::open(&missing, PassphraseSource::Env),
        Err(Error::Repository(_))
    ));
    let wrong = open(&fx, PassphraseSource::Value("wrong".into()));
    assert!(wrong.is_err(), "a wrong passphrase opened the repository");
    drop(wrong);

    // the passphrase from a command, like BORG_PASSCOMMAND
    let mut repo = open(&fx, PassphraseSource::Command(format!("echo {PASS}"))).unwrap();
    let names: Vec<String> = repo.list_archives().into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["a1", "a2", "a3", "a4"]);

    // items: path, type and size as `borg list --json-lines`, mtime as the file system's
    let entries: Vec<_> = repo
        .archive("a4")
        .unwrap()
        .items()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(entries.len(), borg_items.len());
    for (e, b) in entries.iter().zip(&borg_items) {
        assert_eq!(e.path, b["path"].as_str().unwrap());
        let kind = match b["type"].as_str().unwrap() {
            "-" => EntryKind::File,
            "d" => EntryKind::Directory,
            "l" => EntryKind::Symlink,
            other => panic!("unexpected type {other}"),
        };
        assert_eq!(e.kind, kind, "{}", e.path);
        assert_eq!(e.size, b["size"].as_u64().unwrap(), "{}", e.path);
        assert_eq!(e.uid, b["uid"].as_u64(), "{}", e.path);
        let fs = std::fs::symlink_metadata(fx.dir.join(&e.path)).unwrap();
        let fs_ns = fs.modified().unwrap().duration_since(UNIX_EPOCH).unwrap();
        let ours = e.mtime.unwrap().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(ours, fs_ns, "{}", e.path);
    }
    let sym = entries.iter().find(|e| e.path == "src/sym").unwrap();
    assert_eq!(sym.link_target.as_deref(), Some("a.txt"));

    // content: both names of a hard link read the bytes of the source file
    for path in ["src/d/b.bin", "src/hard", "/src/a.txt"] {
        let mut ours = Vec::new();
        repo.read_file("a4", path)
            .unwrap()
            .read_to_end(&mut ours)
            .unwrap();
        // borg 1.2 extracts nothing for a lone hard link slave, so compare with the source
        let source = std::fs::read(fx.dir.join(path.trim_start_matches('/'))).unwrap();
        assert_eq!(ours.len(), source.len(), "{path}");
        assert!(ours == source, "{path}: content differs");
    }
    assert!(matches!(
        repo.read_file("a4", "src/d"),
        Err(Error::NotAFile(_))
    ));
    assert!(matches!(
        repo.read_file("a4", "src/none"),
        Err(Error::PathNotFound { .. })
    ));
    assert!(matches!(repo.archive("zz"), Err(Error::ArchiveNotFound(_))));

    // check: a healthy borg repository is healthy
    let report = repo.check(&CheckOptions::default()).unwrap();
    assert!(report.ok, "{:?}", report.messages);
    repo.close().unwrap();

    // prune: the dry run decides like `borg prune --dry-run --list --keep-daily 2`
    let mut repo = open(&fx, PassphraseSource::Value(PASS.into())).unwrap();
    let policy = PrunePolicy {
        daily: 2,
        ..PrunePolicy::default()
    };
    let planned = repo.prune(&policy, true).unwrap();
    repo.close().unwrap();
    let borg_plan = fx.borg(&[
        "prune",
        "--dry-run",
        "--list",
        "--keep-daily",
        "2",
        &fx.repo,
    ]);
    let out = borg_command(
        BORG,
        &[
            "prune",
            "--dry-run",
            "--list",
            "--keep-daily",
            "2",
            &fx.repo,
        ],
        &fx.dir,
        &fx.home,
        PASS,
    )
    .env("TZ", "UTC")
    .output()
    .unwrap();
    let borg_plan = borg_plan + &String::from_utf8_lossy(&out.stderr);
    let borg_name = |line: &str| {
        line.split(':')
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let borg_kept: Vec<String> = borg_plan
        .lines()
        .filter(|l| l.starts_with("Keeping archive"))
        .map(|l| {
            l.split("):")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let borg_pruned: Vec<String> = borg_plan
        .lines()
        .filter(|l| l.starts_with("Would prune"))
        .map(borg_name)
        .collect();
    let kept: Vec<String> = planned.kept.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(kept, borg_kept, "{borg_plan}");
    assert_eq!(planned.pruned, borg_pruned, "{borg_plan}");
    assert_eq!(kept, ["a4", "a3"]);
    assert_eq!(planned.pruned, ["a2", "a1"]);

    // the real prune: borg sees the kept archives only, and the repository checks clean
    let mut repo = open(&fx, PassphraseSource::Value(PASS.into())).unwrap();
    let done = repo.prune(&policy, false).unwrap();
    assert_eq!(done, planned);
    repo.close().unwrap();
    assert_eq!(fx.borg(&["list", "--short", &fx.repo]), "a3\na4\n");
    fx.borg(&["check", &fx.repo]);
    assert!(Path::new(&fx.repo).exists());
}
