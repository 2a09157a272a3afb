//! `rborg benchmark dedup` and `rborg benchmark crud` through the binary.
//!
//! The dedup figures are checked against values computed here independently: the fixed
//! chunker's boundaries are plain arithmetic, the content-defined chunkers' boundaries come from
//! `rborg benchmark chunker --list` (whose buzhash boundaries `crates/chunker` proves equal to
//! borg 1.2.4's), and the unique chunks are counted with SHA-256 as in the command. `benchmark
//! crud` is compared with `rborg borg benchmark crud` and, when installed, real borg 1.2.4.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

use rborg_testkit::{borg_available, borg_command, noise, ok, BORG};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `rborg args` in `dir`, with borg's state (security, cache) under `dir/home`.
fn rborg(dir: &Path, args: &[&str]) -> Command {
    borg_command(
        env!("CARGO_BIN_EXE_rborg"),
        args,
        dir,
        &dir.join("home"),
        "",
    )
}

fn run(dir: &Path, args: &[&str]) -> Output {
    rborg(dir, args).output().unwrap()
}

/// A tree with known duplication: `b` is `a` three times, `a2` a copy of `a`, a hard link to
/// `a` (counted once), a file of zeros, repetitive text, an empty file and a symlink (skipped).
fn make_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let a = noise(7, 150_000);
    let files = vec![
        ("a".to_string(), a.clone()),
        ("a2".to_string(), a.clone()),
        ("empty".to_string(), Vec::new()),
        ("sub/b".to_string(), a.repeat(3)),
        ("sub/deeper/text".to_string(), {
            let mut t = Vec::new();
            for i in 0..20_000 {
                t.extend_from_slice(format!("line {} of a log file\n", i % 977).as_bytes());
            }
            t
        }),
        ("zeros".to_string(), vec![0; 300_000]),
    ];
    for (name, data) in &files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
    }
    std::fs::hard_link(root.join("a"), root.join("hardlink")).unwrap();
    std::os::unix::fs::symlink("a", root.join("symlink")).unwrap();
    files
}

/// What the command must report for a chunker that cut `chunks` (file, offset, length).
struct Expected {
    chunks: u64,
    bytes: u64,
    unique_chunks: u64,
    unique_size: u64,
}

fn expected(files: &[(String, Vec<u8>)], cuts: &[(usize, usize, usize)]) -> Expected {
    let mut seen = HashSet::new();
    let mut e = Expected {
        chunks: 0,
        bytes: 0,
        unique_chunks: 0,
        unique_size: 0,
    };
    for &(file, offset, len) in cuts {
        e.chunks += 1;
        e.bytes += len as u64;
        let id: [u8; 32] = Sha256::digest(&files[file].1[offset..offset + len]).into();
        if seen.insert(id) {
            e.unique_chunks += 1;
            e.unique_size += len as u64;
        }
    }
    e
}

/// The boundaries `rborg benchmark chunker --list` reports for each file, in walk order.
fn listed_cuts(root: &Path, files: &[(String, Vec<u8>)], spec: &str) -> Vec<(usize, usize, usize)> {
    let mut cuts = Vec::new();
    for (i, (name, _)) in files.iter().enumerate() {
        let out = run(
            root,
            &[
                "benchmark",
                "chunker",
                "--list",
                "--chunker-params",
                spec,
                name,
            ],
        );
        for line in ok(&out, "benchmark chunker --list").lines() {
            let (offset, len) = line.split_once(' ').unwrap();
            cuts.push((i, offset.parse().unwrap(), len.parse().unwrap()));
        }
    }
    cuts
}

fn check_row(row: &Value, e: &Expected, total: u64) {
    let what = &row["params"];
    assert_eq!(row["chunks"], e.chunks, "{what}");
    assert_eq!(
        row["bytes"], total,
        "{what}: chunk sizes must add up to the input"
    );
    assert_eq!(e.bytes, total, "{what}: the reference cuts cover the input");
    assert_eq!(row["unique_chunks"], e.unique_chunks, "{what}");
    assert_eq!(row["unique_size"], e.unique_size, "{what}");
    let ratio = total as f64 / e.unique_size as f64;
    assert!(
        (row["dedup_ratio"].as_f64().unwrap() - ratio).abs() < 1e-9,
        "{what}: {} != {ratio}",
        row["dedup_ratio"]
    );
    let mean = total as f64 / e.chunks as f64;
    assert!((row["mean_chunk_size"].as_f64().unwrap() - mean).abs() < 1e-6);
}

#[test]
fn dedup_json_figures_match_independent_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let files = make_tree(root);
    let total: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    // ~4 KiB average chunks, so a's copies inside b are found in a small tree
    let buzhash = "buzhash,10,23,12,4095";
    let fastcdc = "fastcdc,10,12,20";
    let out = run(
        root,
        &[
            "benchmark",
            "dedup",
            "--json",
            "--chunker-params",
            "fixed,4096",
            "--chunker-params",
            buzhash,
            "--chunker-params",
            fastcdc,
            "--compression",
            "lz4,zstd,3",
            "--compression",
            "zlib,6",
            ".",
        ],
    );
    let report: Value = serde_json::from_str(&ok(&out, "benchmark dedup --json")).unwrap();
    assert_eq!(
        report["files"],
        files.len(),
        "hard link and symlink not counted"
    );
    assert_eq!(report["bytes"], total);
    assert_eq!(report["skipped"], 0);
    assert_eq!(report["seed"], 0);
    assert_eq!(report["id_hash"], "sha256");
    let rows = report["chunkers"].as_array().unwrap();
    let params: Vec<&str> = rows.iter().map(|r| r["params"].as_str().unwrap()).collect();
    assert_eq!(params, ["fixed,4096,0", buzhash, fastcdc]);

    // fixed: 4096-byte blocks, the last block of each file shorter
    let fixed_cuts: Vec<(usize, usize, usize)> = files
        .iter()
        .enumerate()
        .flat_map(|(i, (_, d))| {
            (0..d.len())
                .step_by(4096)
                .map(move |o| (i, o, 4096.min(d.len() - o)))
        })
        .collect();
    check_row(&rows[0], &expected(&files, &fixed_cuts), total);

    let len = |name: &str| files.iter().find(|(f, _)| f == name).unwrap().1.len() as u64;
    for (row, spec) in [(&rows[1], buzhash), (&rows[2], fastcdc)] {
        let e = expected(&files, &listed_cuts(root, &files, spec));
        check_row(row, &e, total);
        // content-defined chunking finds a2 and the three copies of a inside b: what is stored
        // for them is a once plus a few chunks around b's copy boundaries
        let rest = total - len("a2") - len("sub/b");
        assert!(e.unique_size < rest, "{spec}: {} !< {rest}", e.unique_size);
    }

    for row in rows {
        let unique = row["unique_size"].as_u64().unwrap();
        let compression = row["compression"].as_array().unwrap();
        let specs: Vec<&str> = compression
            .iter()
            .map(|c| c["spec"].as_str().unwrap())
            .collect();
        assert_eq!(specs, ["lz4", "zstd,3", "zlib,6"]);
        for c in compression {
            let size = c["size"].as_u64().unwrap();
            // zeros and text compress; the noise costs at most its header per chunk
            assert!(size < unique, "{}: {c} !< {unique}", row["params"]);
            assert!(size > unique / 10, "{}: {c}", row["params"]);
            let ratio = unique as f64 / size as f64;
            assert!((c["ratio"].as_f64().unwrap() - ratio).abs() < 1e-9);
        }
    }
}

/// `report` without the timings.
fn without_timings(mut report: Value) -> Value {
    for row in report["chunkers"].as_array_mut().unwrap() {
        let row = row.as_object_mut().unwrap();
        row.remove("seconds");
        row.remove("mb_per_s");
        for c in row["compression"].as_array_mut().unwrap() {
            c.as_object_mut().unwrap().remove("seconds");
        }
    }
    report
}

#[test]
fn dedup_streamed_files_give_the_same_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    make_tree(root);
    // with a 1 MiB limit only this 3 MB file is streamed, with 0 every file (the zeros too,
    // which the streaming chunker yields without their bytes)
    std::fs::write(root.join("big"), noise(11, 1_500_000).repeat(2)).unwrap();
    let report = |extra: &[&str]| -> Value {
        let mut args = vec![
            "benchmark",
            "dedup",
            "--json",
            "--chunker-params",
            "buzhash,10,23,12,4095",
            "--chunker-params",
            "fixed,4096",
        ];
        args.extend_from_slice(extra);
        args.push(".");
        let out = run(root, &args);
        without_timings(serde_json::from_str(&ok(&out, "benchmark dedup")).unwrap())
    };
    let in_memory = report(&[]);
    assert_eq!(report(&["--in-memory-limit", "1"]), in_memory);
    assert_eq!(report(&["--in-memory-limit", "0"]), in_memory);
}

#[test]
fn dedup_fixed_ratio_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let block = 4096;
    let n = noise(3, 10 * block);
    std::fs::write(root.join("n"), &n).unwrap();
    std::fs::write(root.join("n-copy"), &n).unwrap();
    std::fs::write(root.join("n-twice"), n.repeat(2)).unwrap();
    std::fs::write(root.join("zeros"), vec![0; 100 * block]).unwrap();
    std::fs::write(root.join("tail"), &n[..block / 2]).unwrap();
    let out = run(
        root,
        &[
            "benchmark",
            "dedup",
            "--json",
            "--chunker-params",
            "fixed,4096",
            ".",
        ],
    );
    let report: Value = serde_json::from_str(&ok(&out, "benchmark dedup --json")).unwrap();
    let row = &report["chunkers"][0];
    // 10 + 10 + 20 noise blocks (10 distinct), 100 zero blocks (1 distinct), a half block
    let total = 140 * block + block / 2;
    let unique = 11 * block + block / 2;
    assert_eq!(row["bytes"], total);
    assert_eq!(row["chunks"], 141);
    assert_eq!(row["unique_chunks"], 12);
    assert_eq!(row["unique_size"], unique);
    assert_eq!(
        row["dedup_ratio"].as_f64().unwrap(),
        total as f64 / unique as f64
    );
}

#[test]
fn dedup_table_has_one_row_per_chunker() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let files = make_tree(root);
    let out = run(root, &["benchmark", "dedup", "a", "sub", "zeros"]);
    let text = ok(&out, "benchmark dedup");
    let lines: Vec<&str> = text.lines().collect();
    let total: usize = ["a", "sub/b", "sub/deeper/text", "zeros"]
        .iter()
        .map(|n| files.iter().find(|(f, _)| f == n).unwrap().1.len())
        .sum();
    assert!(
        lines[0].starts_with("4 files, ") && lines[0].contains(&format!("({total} bytes)")),
        "{text}"
    );
    let titles: Vec<&str> = lines[1]
        .split("  ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(
        titles,
        [
            "chunker",
            "MB/s",
            "chunks",
            "mean chunk",
            "unique",
            "dedup",
            "lz4",
            "zstd,3"
        ],
        "{text}"
    );
    let chunkers: Vec<&str> = lines[2..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        chunkers,
        [
            "buzhash,19,23,21,4095",
            "buzhash,10,23,16,4095",
            "fastcdc,19,21,23",
            "fastcdc,10,16,23",
            "fixed,4194304,0"
        ],
        "{text}"
    );
    // aligned: every row as wide as the title line, and ends in the same column
    for line in &lines[2..] {
        assert_eq!(line.len(), lines[1].len(), "{text}");
    }
}

#[test]
fn dedup_compress_first_only_and_missing_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    make_tree(root);
    let out = run(
        root,
        &[
            "benchmark",
            "dedup",
            "--json",
            "--compress-first-only",
            "--chunker-params",
            "fixed,65536",
            "--chunker-params",
            "fixed,8192",
            "a",
            "missing",
        ],
    );
    // the missing path is a warning (exit 1, borg's EXIT_WARNING), the rest is measured
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing"), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["skipped"], 1);
    assert_eq!(report["files"], 1);
    let rows = report["chunkers"].as_array().unwrap();
    assert_eq!(rows[0]["compression"].as_array().unwrap().len(), 2);
    assert_eq!(rows[1]["compression"].as_array().unwrap().len(), 0);

    let bad = run(
        root,
        &["benchmark", "dedup", "--compression", "zstd,99", "a"],
    );
    assert_eq!(bad.status.code(), Some(2));
    let bad = run(
        root,
        &["benchmark", "dedup", "--chunker-params", "fixed,1", "a"],
    );
    assert_eq!(bad.status.code(), Some(2));
}

/// The crud lines with the timings taken out: `C-Z-TEST     X MB/s (1 * 1 B all-zero files: Xs)`.
fn crud_shape(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            let (head, rest) = l.split_once(" MB/s (").unwrap();
            let (what, _) = rest.rsplit_once(": ").unwrap();
            let label = head.split_whitespace().next().unwrap();
            // the test name is padded to 10 characters after the operation letter
            assert!(l.starts_with(&format!("{label:<12} ")), "{l}");
            format!("{label} ({what})")
        })
        .collect()
}

#[test]
fn crud_matches_borg_benchmark_crud() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("data")).unwrap();
    ok(
        &rborg(dir, &["borg", "init", "-e", "none", "repo"])
            .output()
            .unwrap(),
        "rborg borg init",
    );
    let crud = |args: &[&str]| {
        let out = rborg(dir, args)
            .env("_BORG_BENCHMARK_CRUD_TEST", "YES")
            .output()
            .unwrap();
        ok(&out, "benchmark crud")
    };
    let top = crud(&["benchmark", "crud", "repo", "data"]);
    let shape = crud_shape(&top);
    let want: Vec<String> = ["Z-TEST", "R-TEST"]
        .iter()
        .flat_map(|t| {
            let content = if *t == "Z-TEST" { "all-zero" } else { "random" };
            ["C", "R", "U", "D"].map(|o| format!("{o}-{t} (1 * 1 B {content} files)"))
        })
        .collect();
    assert_eq!(shape, want, "{top}");
    assert_eq!(
        crud_shape(&crud(&["borg", "benchmark", "crud", "repo", "data"])),
        want
    );
    // the test data is gone and the repository is empty again
    assert_eq!(std::fs::read_dir(dir.join("data")).unwrap().count(), 0);
    assert_eq!(crud(&["borg", "list", "repo"]), "");

    if borg_available("benchmark crud comparison") {
        // real borg on the repository rborg made
        let borg = |args: &[&str]| {
            borg_command(BORG, args, dir, &dir.join("home"), "")
                .env("_BORG_BENCHMARK_CRUD_TEST", "YES")
                .output()
                .unwrap()
        };
        let out = borg(&["benchmark", "crud", "repo", "data"]);
        assert_eq!(crud_shape(&ok(&out, "borg benchmark crud")), want);
    }
}
