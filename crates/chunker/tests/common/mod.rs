//! Shared test helpers: input recipes (identical to testdata/gen/chunker.py), the compact chunk
//! list format, and the borg oracle.
#![allow(dead_code)]

use rborg_chunker::{ChunkInfo, ChunkKind};
use std::path::PathBuf;
use std::process::Command;

pub const WORDS: [&[u8]; 16] = [
    b"the",
    b"borg",
    b"chunk",
    b"backup",
    b"of",
    b"data",
    b"and",
    b"repository",
    b"archive",
    b"to",
    b"is",
    b"deduplication",
    b"in",
    b"a",
    b"file",
    b"xattr",
];

/// prng(SEED): SplitMix64 output words, little-endian, truncated to `n` bytes
/// (same as `prng` in testdata/gen/chunker.py).
pub fn prng(seed: u64, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 8);
    let mut x = seed;
    while out.len() < n {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Rebuild an input from its recipe (see the generator's docstring).
pub fn make_input(recipe: &str) -> Vec<u8> {
    let mut parts = recipe.split(':');
    let kind = parts.next().unwrap();
    let a: Vec<u64> = parts.map(|x| x.parse().unwrap()).collect();
    match kind {
        "zeros" => vec![0; a[0] as usize],
        "random" => prng(a[0], a[1] as usize),
        "text" => {
            let n = a[1] as usize;
            let r = prng(a[0], n + 1);
            let mut out = Vec::with_capacity(n + 16);
            let mut j = 0;
            while out.len() < n {
                out.extend_from_slice(WORDS[usize::from(r[j] % 16)]);
                out.push(if r[j + 1] % 8 == 0 { b'\n' } else { b' ' });
                j += 2;
            }
            out.truncate(n);
            out
        }
        "repeat" => {
            let (block, n) = (a[1] as usize, a[2] as usize);
            let b = prng(a[0], block);
            b.iter().copied().cycle().take(n).collect()
        }
        "holes" => {
            let (run, n) = (a[1] as usize, a[2] as usize);
            let mut d = prng(a[0], n);
            let mut start = run;
            while start < n {
                let end = (start + run).min(n);
                d[start..end].fill(0);
                start += 2 * run;
            }
            d
        }
        other => panic!("unknown recipe kind {other}"),
    }
}

/// Parse the compact chunk list ("123 456a 789h") into (len, kind) pairs.
pub fn parse_compact(s: &str) -> Vec<(usize, ChunkKind)> {
    s.split_whitespace()
        .map(|t| {
            if let Some(n) = t.strip_suffix('a') {
                (n.parse().unwrap(), ChunkKind::Alloc)
            } else if let Some(n) = t.strip_suffix('h') {
                (n.parse().unwrap(), ChunkKind::Hole)
            } else {
                (t.parse().unwrap(), ChunkKind::Data)
            }
        })
        .collect()
}

/// (len, kind) pairs of chunk infos, checking that offsets are contiguous from `first_offset`.
pub fn lens_kinds(infos: &[ChunkInfo]) -> Vec<(usize, ChunkKind)> {
    infos.iter().map(|c| (c.len, c.kind)).collect()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn generator() -> PathBuf {
    repo_root().join("testdata/gen/chunker.py")
}

pub const BORG_PYTHON: &str = "/usr/bin/python3";

/// Is borg's Python package importable? If not: skip (return false), unless
/// RBORG_REQUIRE_BORG=1, in which case fail.
pub fn borg_available() -> bool {
    let ok = Command::new(BORG_PYTHON)
        .args(["-c", "import borg.chunker"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("RBORG_REQUIRE_BORG").as_deref() == Ok("1") {
            panic!(
                "borg (python3 -c 'import borg.chunker') is not available but RBORG_REQUIRE_BORG=1"
            );
        }
        eprintln!("NOTICE: borg is not available; skipping live comparison against borg");
    }
    ok
}

/// Chunk `path` with borg via the generator's `chunk` subcommand.
pub fn borg_chunk_file(spec: &str, seed: i32, path: &std::path::Path, sparse: bool) -> String {
    let mut cmd = Command::new(BORG_PYTHON);
    cmd.arg(generator())
        .args(["chunk", spec, &seed.to_string()])
        .arg(path);
    if sparse {
        cmd.arg("--sparse");
    }
    let out = cmd.output().expect("run borg chunker");
    assert!(
        out.status.success(),
        "borg chunker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
