//! `borg recreate` and `borg import-tar` against real borg 1.2.4: a repository borg made is
//! copied; rborg recreates archives in one copy and borg in the other with the same options;
//! borg then lists both identically (items, sizes, contents, chunk counts) and
//! `borg check --verify-data` finds rborg's copy clean. The same tar file imported by borg
//! and by rborg lists identically.
//!
//! These tests need `/usr/bin/borg`. Without it they print a notice and pass, unless
//! `RBORG_REQUIRE_BORG=1` (CI sets it), in which case they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rborg_testkit::{borg_available, borg_command, noise, ok, BORG};

const LIST_FORMAT: &str =
    "{mode} {user} {group} {uid} {gid} {path} {source} {size} {mtime} {sha256} {num_chunks}{NL}";

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `program args` with its own home (`home-<twin>`), accepting the copied repository.
    fn run(&self, program: &str, twin: &str, args: &[&str]) -> Output {
        let mut cmd: Command = borg_command(
            program,
            args,
            self.dir.path(),
            &self.path(&format!("home-{twin}")),
            "secret",
        );
        cmd.env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "YES")
            .env("TZ", "UTC");
        cmd.output().unwrap()
    }

    fn borg(&self, twin: &str, args: &[&str]) -> String {
        ok(&self.run(BORG, twin, args), &format!("borg {args:?}"))
    }

    fn rborg(&self, twin: &str, args: &[&str]) -> String {
        let mut full = vec!["borg"];
        full.extend_from_slice(args);
        ok(
            &self.run(env!("CARGO_BIN_EXE_rborg"), twin, &full),
            &format!("rborg {args:?}"),
        )
    }

    fn list(&self, twin: &str, archive: &str) -> String {
        self.borg(twin, &["list", "--format", LIST_FORMAT, archive])
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a {from:?} {to:?}");
}

fn make_source(root: &Path) {
    let src = root.join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(src.join("cache")).unwrap();
    std::fs::create_dir_all(src.join("tagged")).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello world\n").unwrap();
    std::fs::write(src.join("sub/noise.bin"), noise(1, 600_000)).unwrap();
    std::fs::write(src.join("sub/deeper/more.bin"), noise(2, 90_000)).unwrap();
    std::fs::write(src.join("sub/app.log"), b"log line\n".repeat(500)).unwrap();
    std::fs::write(
        src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    std::fs::write(src.join("cache/blob"), noise(3, 50_000)).unwrap();
    std::fs::write(src.join("tagged/.keep-out"), b"").unwrap();
    std::fs::write(src.join("tagged/data"), b"tagged data").unwrap();
    // a hardlink whose master (first in walk order) lives in an excluded directory
    std::fs::write(src.join("cache/linked"), noise(4, 20_000)).unwrap();
    std::fs::hard_link(src.join("cache/linked"), src.join("sub/linked")).unwrap();
    std::os::unix::fs::symlink("hello.txt", src.join("link")).unwrap();
}

#[test]
fn rborg_recreate_matches_borg_recreate_on_a_twin_repository() {
    if !borg_available("recreate interop test") {
        return;
    }
    let sb = Sandbox::new();
    make_source(sb.dir.path());
    sb.borg("b", &["init", "--encryption=repokey", "repo-b"]);
    sb.borg(
        "b",
        &[
            "create",
            "--chunker-params",
            "10,16,12,4095",
            "repo-b::a",
            "src",
        ],
    );
    sb.borg("b", &["create", "repo-b::b", "src/sub"]);
    copy_dir(&sb.path("repo-b"), &sb.path("repo-r"));
    copy_dir(&sb.path("home-b"), &sb.path("home-r"));

    // exclusion (patterns, cache tags, tag files) replacing the archive in place
    let exclude: &[&str] = &[
        "-e",
        "sh:**/*.log",
        "--exclude-caches",
        "--exclude-if-present",
        ".keep-out",
        "--keep-exclude-tags",
    ];
    let mut args = vec!["recreate", "repo-b::a"];
    args.extend_from_slice(exclude);
    sb.borg("b", &args);
    args[1] = "repo-r::a";
    sb.rborg("r", &args);
    let listed = sb.list("b", "repo-b::a");
    assert!(!listed.contains("app.log") && !listed.contains("cache/blob"));
    assert!(listed.contains("tagged/.keep-out") && !listed.contains("tagged/data"));
    assert_eq!(listed, sb.list("r", "repo-r::a"), "after exclusion");

    // recompression into a new archive, keeping the original
    let args = |repo: &str| {
        vec![
            "recreate".to_string(),
            format!("{repo}::b"),
            "--target".into(),
            "b2".into(),
            "-C".into(),
            "zlib,6".into(),
            "--recompress".into(),
            "always".into(),
        ]
    };
    let a: Vec<String> = args("repo-b");
    sb.borg("b", &a.iter().map(String::as_str).collect::<Vec<_>>());
    let a: Vec<String> = args("repo-r");
    sb.rborg("r", &a.iter().map(String::as_str).collect::<Vec<_>>());
    for name in ["b", "b2"] {
        assert_eq!(
            sb.list("b", &format!("repo-b::{name}")),
            sb.list("r", &format!("repo-r::{name}")),
            "archive {name} after --target --recompress"
        );
    }

    // re-chunking (and recompressing) every archive
    let rechunk = [
        "--chunker-params",
        "default",
        "-C",
        "zstd,3",
        "--recompress",
    ];
    sb.borg("b", &[&["recreate", "repo-b"][..], &rechunk].concat());
    sb.rborg("r", &[&["recreate", "repo-r"][..], &rechunk].concat());
    for name in ["a", "b", "b2"] {
        assert_eq!(
            sb.list("b", &format!("repo-b::{name}")),
            sb.list("r", &format!("repo-r::{name}")),
            "archive {name} after re-chunking"
        );
    }
    // archive names and comments the same, and rborg's repository is sound for borg
    let names = |twin: &str, repo: &str| {
        sb.borg(twin, &["list", "--format", "{archive} {comment}{NL}", repo])
    };
    assert_eq!(names("b", "repo-b"), names("r", "repo-r"));
    sb.borg("r", &["check", "--verify-data", "repo-r"]);

    // borg extracts the same tree from both
    for twin in ["b", "r"] {
        let out = sb.path(&format!("out-{twin}"));
        std::fs::create_dir_all(&out).unwrap();
        let repo = sb.path(&format!("repo-{twin}"));
        let archive = format!("{}::a", repo.display());
        let mut cmd = borg_command(
            BORG,
            &["extract", &archive],
            &out,
            &sb.path(&format!("home-{twin}")),
            "secret",
        );
        cmd.env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes");
        ok(&cmd.output().unwrap(), "borg extract");
    }
    rborg_testkit::assert_same_tree(
        &sb.path("out-b"),
        &sb.path("out-r"),
        Default::default(),
        "extracted trees",
    );
}

#[test]
fn rborg_import_tar_matches_borg_import_tar() {
    if !borg_available("import-tar interop test") {
        return;
    }
    let sb = Sandbox::new();
    make_source(sb.dir.path());
    nix::unistd::mkfifo(
        &sb.path("src/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let tar = |args: &[&str]| {
        let status = Command::new("tar")
            .args(args)
            .current_dir(sb.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "tar {args:?}");
    };
    tar(&["cf", "plain.tar", "src"]);
    tar(&["--format=pax", "-czf", "pax.tar.gz", "src/sub", "src/link"]);
    // two tar files back to back: only --ignore-zeros reads past the first
    let mut cat = std::fs::read(sb.path("plain.tar")).unwrap();
    tar(&["cf", "second.tar", "src/hello.txt"]);
    cat.extend(std::fs::read(sb.path("second.tar")).unwrap());
    std::fs::write(sb.path("cat.tar"), cat).unwrap();

    // one key for both twins: the chunk count of a file depends on the chunker seed
    sb.borg("b", &["init", "--encryption=repokey", "repo-b"]);
    copy_dir(&sb.path("repo-b"), &sb.path("repo-r"));
    copy_dir(&sb.path("home-b"), &sb.path("home-r"));
    for (twin, program) in [("b", "borg"), ("r", "rborg")] {
        let repo = format!("repo-{twin}");
        let run = |args: &[&str]| {
            if program == "borg" {
                sb.borg(twin, args)
            } else {
                sb.rborg(twin, args)
            }
        };
        run(&["import-tar", &format!("{repo}::plain"), "plain.tar"]);
        run(&["import-tar", &format!("{repo}::pax"), "pax.tar.gz"]);
        run(&[
            "import-tar",
            "--ignore-zeros",
            &format!("{repo}::cat"),
            "cat.tar",
        ]);
    }
    for name in ["plain", "pax", "cat"] {
        let b = sb.list("b", &format!("repo-b::{name}"));
        assert!(!b.is_empty());
        assert_eq!(
            b,
            sb.list("r", &format!("repo-r::{name}")),
            "archive {name}"
        );
        let files = |twin: &str| {
            sb.borg(twin, &["info", &format!("repo-{twin}::{name}")])
                .lines()
                .find(|l| l.starts_with("Number of files"))
                .map(str::to_string)
        };
        assert_eq!(files("b"), files("r"), "file count of {name}");
    }
    assert!(sb.list("r", "repo-r::cat").contains("src/hello.txt"));
    sb.borg("r", &["check", "--verify-data", "repo-r"]);
}
