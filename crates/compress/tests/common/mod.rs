//! Shared test helpers: the input recipes of `testdata/gen/compress.py`, the
//! committed vectors, and access to a live borg 1.2.4 via `/usr/bin/python3`.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/compress")
}

pub fn load_json(name: &str) -> Value {
    let text = std::fs::read_to_string(testdata().join(name)).expect("read testdata json");
    serde_json::from_str(&text).expect("parse testdata json")
}

/// splitmix64, as in the generator.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

const WORDS: &str = "the of and to in is that for it as was with be by on not he this are or \
    his from at which but have an they you were her she there been one all we \
    their has would when if so no will more can said who up out about them into \
    repository archive chunk segment compression backup borg deduplication key \
    encryption index manifest lz4 zstd zlib lzma obfuscate data file directory";

pub fn gen_random(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(n);
    out
}

pub fn gen_text(seed: u64, n: usize) -> Vec<u8> {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(n + 32);
    while out.len() < n {
        let v = rng.next();
        out.extend_from_slice(words[(v % words.len() as u64) as usize].as_bytes());
        out.push(if (v >> 32) % 12 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(n);
    out
}

pub fn gen_mixed(seed: u64, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 4096);
    let mut i = 0u64;
    while out.len() < n {
        match i % 3 {
            0 => out.extend(gen_text(seed + i, 4096)),
            1 => out.extend(gen_random(seed + i, 4096)),
            _ => out.resize(out.len() + 4096, 0),
        }
        i += 1;
    }
    out.truncate(n);
    out
}

pub fn make_input(recipe: &Value) -> Vec<u8> {
    let kind = recipe["kind"].as_str().unwrap();
    let seed = recipe["seed"].as_u64().unwrap();
    let n = recipe["len"].as_u64().unwrap() as usize;
    match kind {
        "zeros" => vec![0; n],
        "byte" => vec![seed as u8; n],
        "random" => gen_random(seed, n),
        "text" => gen_text(seed, n),
        "mixed" => gen_mixed(seed, n),
        other => panic!("unknown recipe kind {other}"),
    }
}

/// Whether a live borg 1.2.4 is usable. If not: print a notice and return
/// false, unless RBORG_REQUIRE_BORG=1, in which case panic.
pub fn borg_available(test: &str) -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import borg.compress"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("RBORG_REQUIRE_BORG").as_deref() == Ok("1") {
            panic!("{test}: borg (/usr/bin/python3 + borg.compress) is required but not available");
        }
        eprintln!("NOTICE: {test}: borg not available, skipping live comparison");
    }
    ok
}

/// Runs a python snippet (with borg importable) feeding `stdin`; returns stdout.
pub fn run_python(script: &str, stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn /usr/bin/python3");
    {
        let mut si = child.stdin.take().unwrap();
        si.write_all(stdin).expect("write python stdin");
    }
    let out = child.wait_with_output().expect("wait python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Length-prefixed framing for passing many binary records through a pipe.
pub fn frame(records: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for r in records {
        out.extend_from_slice(&(r.len() as u32).to_be_bytes());
        out.extend_from_slice(r);
    }
    out
}

pub fn unframe(mut data: &[u8]) -> Vec<Vec<u8>> {
    let take = |d: &mut &[u8], n: usize| -> Vec<u8> {
        let (a, b) = d.split_at(n);
        *d = b;
        a.to_vec()
    };
    let n = u32::from_be_bytes(take(&mut data, 4).try_into().unwrap()) as usize;
    (0..n)
        .map(|_| {
            let len = u32::from_be_bytes(take(&mut data, 4).try_into().unwrap()) as usize;
            take(&mut data, len)
        })
        .collect()
}

/// Python side of `frame`/`unframe`.
pub const PY_FRAMING: &str = r#"
import sys, struct
def read_frames(f):
    (n,) = struct.unpack('>I', f.read(4))
    out = []
    for _ in range(n):
        (l,) = struct.unpack('>I', f.read(4))
        out.append(f.read(l))
    return out
def write_frames(f, recs):
    f.write(struct.pack('>I', len(recs)))
    for r in recs:
        r = bytes(r)
        f.write(struct.pack('>I', len(r)))
        f.write(r)
    f.flush()
"#;
