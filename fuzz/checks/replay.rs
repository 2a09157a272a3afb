//! Replays a fuzz target's committed inputs through its check (`fuzz/checks/<target>.rs`), for
//! the crates' `tests/fuzz_regressions.rs`: the seeds (`testdata/fuzz/<target>/seeds/`, written
//! by `testdata/fuzz/make_seeds.py`) and every input that once crashed, hung or exhausted memory
//! (`testdata/fuzz/<target>/crashes/`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every committed input of `target`, sorted.
pub fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/fuzz")
        .join(target);
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Whether `path` is a seed (under `seeds/`) rather than a crash input.
pub fn is_seed(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == "seeds")
}

/// Runs `check` on every input of `target` (each must end within seconds, as libFuzzer's
/// `-timeout` demands); returns each input's file name and whether the check accepted it.
/// Fails when there are no seeds.
pub fn replay(target: &str, mut check: impl FnMut(&[u8]) -> bool) -> Vec<(String, bool)> {
    let files = inputs(target);
    assert!(
        files.iter().any(|f| is_seed(f)),
        "{target}: no seeds (run testdata/fuzz/make_seeds.py)"
    );
    let mut out = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("read input");
        eprintln!("{target}: {}", file.display());
        let start = Instant::now();
        let accepted = check(&data);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "{}: took {took:?}",
            file.display()
        );
        let name = file.file_name().expect("file name").to_string_lossy();
        let kind = if is_seed(file) { "seeds" } else { "crashes" };
        out.push((format!("{kind}/{name}"), accepted));
    }
    out
}

/// Asserts that every seed in `results` was accepted except those named in `rejected`
/// (`seeds/<name>`), which must be rejected: the real borg files the fuzzer starts from are
/// valid, so mutations start inside the parsers rather than at their first check.
pub fn assert_seeds(target: &str, results: &[(String, bool)], rejected: &[&str]) {
    for (name, accepted) in results {
        let Some(seed) = name.strip_prefix("seeds/") else {
            continue;
        };
        let want = !rejected.contains(&seed);
        assert_eq!(*accepted, want, "{target}: {name}");
    }
}
