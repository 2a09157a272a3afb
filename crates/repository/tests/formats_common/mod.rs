//! Helpers shared by the `formats_*` integration tests (R1).
#![allow(dead_code)]

use rborg_repository::hashindex::{BucketValue, ChunkEntry, HashIndex, NsEntry, ObjectId};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

pub fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/repository")
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Same key recipe as testdata/gen/repository.py.
pub fn key(seed: u64, i: u64) -> ObjectId {
    let mut s = seed.wrapping_mul(1_000_003).wrapping_add(i);
    let mut k = [0u8; 32];
    for c in k.chunks_exact_mut(8) {
        c.copy_from_slice(&splitmix64(&mut s).to_le_bytes());
    }
    k
}

pub trait FromWords: BucketValue + PartialEq + std::fmt::Debug {
    fn from_words(w: &[u32]) -> Self;
    fn words(&self) -> Vec<u32>;
}
impl FromWords for NsEntry {
    fn from_words(w: &[u32]) -> Self {
        NsEntry {
            segment: w[0],
            offset: w[1],
        }
    }
    fn words(&self) -> Vec<u32> {
        vec![self.segment, self.offset]
    }
}
impl FromWords for ChunkEntry {
    fn from_words(w: &[u32]) -> Self {
        ChunkEntry {
            refcount: w[0],
            size: w[1],
            csize: w[2],
        }
    }
    fn words(&self) -> Vec<u32> {
        vec![self.refcount, self.size, self.csize]
    }
}

/// Replay a JSON op list (['set', k, v..] / ['del', k] / ['get', k]) exactly as borg's
/// Python side does (lookups use the mutating `get_borg`).
pub fn apply_ops<V: FromWords>(idx: &mut HashIndex<V>, seed: u64, ops: &[Value]) {
    for op in ops {
        let op = op.as_array().unwrap();
        let k = key(seed, op[1].as_u64().unwrap());
        match op[0].as_str().unwrap() {
            "set" => {
                let w: Vec<u32> = op[2..].iter().map(|x| x.as_u64().unwrap() as u32).collect();
                idx.insert(k, V::from_words(&w));
            }
            "del" => {
                idx.remove(&k);
            }
            "get" => {
                idx.get_borg(&k);
            }
            other => panic!("unknown op {other}"),
        }
    }
}

/// Is borg 1.2 usable? If not: returns false (test should return), unless
/// RBORG_REQUIRE_BORG=1, then panics.
pub fn borg_available() -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import borg.hashindex, borg; assert borg.__version__.startswith('1.2')",
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
        && Command::new("borg")
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
    if !ok {
        if std::env::var("RBORG_REQUIRE_BORG").as_deref() == Ok("1") {
            panic!(
                "borg 1.2 (/usr/bin/python3 + borg modules, borg CLI) required but not available"
            );
        }
        eprintln!("NOTICE: borg 1.2 not available, skipping live interop test");
    }
    ok
}

/// Run a python snippet with borg importable; returns stdout (panics on failure).
pub fn python(code: &str) -> String {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", code])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `borg` command with an isolated BORG_BASE_DIR.
pub fn borg(base: &std::path::Path) -> Command {
    let mut c = Command::new("borg");
    c.env("BORG_BASE_DIR", base.join("borgbase"))
        .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
        .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .env("BORG_PASSPHRASE", "x")
        .current_dir(base);
    c
}
