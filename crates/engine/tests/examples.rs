//! Runs each example program of this crate against a repository made by real borg 1.2.4 and
//! compares its output with borg's own (`borg list`, `borg extract --stdout`, `borg info
//! --json`, `borg check`).

use std::path::{Path, PathBuf};
use std::process::Command;

use rborg_testkit::{borg_available, borg_command, ok};

const BORG: &str = "/usr/bin/borg";
const PASS: &str = "engine-secret";

/// The compiled example `name`. `cargo test` builds examples into `target/<profile>/examples`
/// next to the `deps/` this test runs from, but not for `cargo test --test examples`, so the
/// test runs `cargo build --examples` once (a no-op when they are up to date).
fn example(name: &str) -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let path = profile_dir.join("examples").join(name);
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "rborg-engine", "--examples"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "building the examples failed");
    });
    assert!(path.exists(), "{} missing", path.display());
    path
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    home: PathBuf,
    repo: String,
}

impl Fixture {
    fn run(&self, program: &str, args: &[&str]) -> String {
        let out = borg_command(program, args, &self.dir, &self.home, PASS)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        ok(&out, &format!("{program} {args:?}"))
    }

    fn run_bytes(&self, program: &str, args: &[&str]) -> Vec<u8> {
        let out = borg_command(program, args, &self.dir, &self.home, PASS)
            .output()
            .unwrap();
        ok(&out, &format!("{program} {args:?}"));
        out.stdout
    }

    fn info(&self, target: &str) -> serde_json::Value {
        serde_json::from_str(&self.run(BORG, &["info", "--json", target])).unwrap()
    }
}

/// Pseudo-random bytes (xorshift), so content neither compresses away nor repeats.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// A borg 1.2.4 repository (repokey-blake2) with two archives of a small tree whose big
/// file is shared between them.
fn borg_repository() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let home = dir.join("home");
    std::fs::create_dir(&home).unwrap();
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("big.bin"), noise(3 << 20, 7)).unwrap();
    std::fs::write(src.join("sub/hello.txt"), b"hello from borg\n").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("sub/hello.txt", src.join("link")).unwrap();
    let fx = Fixture {
        _tmp: tmp,
        home,
        repo: dir.join("repo").display().to_string(),
        dir,
    };
    fx.run(BORG, &["init", "-e", "repokey-blake2", &fx.repo]);
    fx.run(BORG, &["create", &format!("{}::monday", fx.repo), "src"]);
    std::fs::write(src.join("sub/tuesday.txt"), noise(100_000, 9)).unwrap();
    fx.run(BORG, &["create", &format!("{}::tuesday", fx.repo), "src"]);
    fx
}

#[test]
fn examples_against_a_borg_repository() {
    if !borg_available("rborg-engine examples") {
        return;
    }
    let fx = borg_repository();
    let repo = fx.repo.as_str();

    // list_archives: the same names in the same order as `borg list --short`
    let listed = fx.run(example("list_archives").to_str().unwrap(), &[repo]);
    assert_eq!(listed, fx.run(BORG, &["list", "--short", repo]));
    assert_eq!(listed, "monday\ntuesday\n");

    // restore_file: byte-identical to `borg extract --stdout`, for a multi-chunk file
    for path in ["src/big.bin", "src/sub/tuesday.txt", "src/empty"] {
        let ours = fx.run_bytes(
            example("restore_file").to_str().unwrap(),
            &[repo, "tuesday", path],
        );
        let theirs = fx.run_bytes(
            BORG,
            &["extract", "--stdout", &format!("{repo}::tuesday"), path],
        );
        assert_eq!(ours.len(), theirs.len(), "{path}");
        assert!(ours == theirs, "{path} differs");
    }
    let missing = borg_command(
        example("restore_file").to_str().unwrap(),
        &[repo, "monday", "src/sub/tuesday.txt"],
        &fx.dir,
        &fx.home,
        PASS,
    )
    .output()
    .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found in archive monday"));

    // backup_dir: borg lists, extracts and checks what the example stored
    std::fs::write(fx.dir.join("src/wednesday.txt"), b"new on wednesday\n").unwrap();
    let out = fx.run(
        example("backup_dir").to_str().unwrap(),
        &[repo, "wednesday", "src"],
    );
    let stat = |k: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .unwrap_or_else(|| panic!("no {k} in {out}"))
            .parse()
            .unwrap()
    };
    let info = fx.info(&format!("{repo}::wednesday"));
    let borg_stats = &info["archives"][0]["stats"];
    assert_eq!(stat("nfiles"), 5);
    assert_eq!(stat("nfiles"), borg_stats["nfiles"].as_u64().unwrap());
    // the run's statistics also count the item metadata stream written at the end (as
    // `borg create --stats` does), the stored ones that `borg info` shows do not: compare with
    // the file contents (3 MiB + 100000 + 16 + 17 bytes) and check the stored ones below
    let contents = (3 << 20) + 100_000 + 16 + 17;
    let stored = borg_stats["original_size"].as_u64().unwrap();
    assert!(
        stored >= contents && stat("original_size") >= stored,
        "{out}"
    );
    // only the new small file and the metadata were new: the big file deduplicated
    assert!(stat("deduplicated_size") < 10_000, "{out}");
    let mut borg_paths: Vec<String> = fx
        .run(
            BORG,
            &[
                "list",
                "--format",
                "{path}{NL}",
                &format!("{repo}::wednesday"),
            ],
        )
        .lines()
        .map(str::to_string)
        .collect();
    borg_paths.sort();
    assert_eq!(
        borg_paths,
        [
            "src",
            "src/big.bin",
            "src/empty",
            "src/link",
            "src/sub",
            "src/sub/hello.txt",
            "src/sub/tuesday.txt",
            "src/wednesday.txt"
        ]
    );
    assert_eq!(
        fx.run_bytes(
            BORG,
            &[
                "extract",
                "--stdout",
                &format!("{repo}::wednesday"),
                "src/wednesday.txt"
            ]
        ),
        b"new on wednesday\n"
    );
    fx.run(BORG, &["check", "--verify-data", repo]);

    // dedup_stats: each archive's sizes and the totals as `borg info --json` has them
    let out = fx.run(example("dedup_stats").to_str().unwrap(), &[repo]);
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 5, "{out}");
    for (line, name) in lines.iter().zip(["monday", "tuesday", "wednesday"]) {
        let info = fx.info(&format!("{repo}::{name}"));
        let s = &info["archives"][0]["stats"];
        assert_eq!(line[0], name);
        for (i, k) in ["original_size", "compressed_size", "deduplicated_size"]
            .iter()
            .enumerate()
        {
            assert_eq!(
                line[i + 1],
                s[k].as_u64().unwrap().to_string(),
                "{name} {k}"
            );
        }
    }
    let info = fx.info(repo);
    let c = &info["cache"]["stats"];
    assert_eq!(lines[3][0], "*");
    for (i, k) in ["total_size", "total_csize", "unique_csize"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            lines[3][i + 1],
            c[k].as_u64().unwrap().to_string(),
            "total {k}"
        );
    }
    assert_eq!(lines[4][0], "ratio");
}
