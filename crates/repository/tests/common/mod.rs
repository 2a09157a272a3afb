//! Helpers shared by the store tests: calling real borg 1.2.4 (CLI and its Python
//! `Repository` class) and deterministic pseudo-random data.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BORG: &str = "/usr/bin/borg";
pub const PYTHON: &str = "/usr/bin/python3";

/// True if borg can be used. Without borg: print a notice and return false, unless
/// RBORG_REQUIRE_BORG=1 (CI), where this panics.
pub fn borg_available(test: &str) -> bool {
    // RBORG_PRETEND_NO_BORG=1 simulates a machine without borg (tests the skip logic)
    let pretend_missing = std::env::var("RBORG_PRETEND_NO_BORG").as_deref() == Ok("1");
    let ok = !pretend_missing
        && Command::new(BORG)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
        && Command::new(PYTHON)
            .args(["-c", "import borg.repository"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
    if !ok {
        if std::env::var("RBORG_REQUIRE_BORG").as_deref() == Ok("1") {
            panic!("{test}: borg 1.2.4 is required (RBORG_REQUIRE_BORG=1) but not available");
        }
        eprintln!("NOTICE: {test}: borg not available, skipping the live borg part");
    }
    ok
}

/// A borg command with an isolated environment (base dir inside `home`).
pub fn borg(home: &Path) -> Command {
    let mut c = Command::new(BORG);
    c.env("BORG_BASE_DIR", home)
        .env("BORG_PASSPHRASE", "test-passphrase")
        .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
        .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .env("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "YES")
        .env("BORG_DELETE_I_KNOW_WHAT_I_AM_DOING", "YES");
    c
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run a Python snippet with borg's modules importable; `args` become sys.argv[1:].
pub fn python(home: &Path, script: &str, args: &[&str]) -> Output {
    let mut c = Command::new(PYTHON);
    c.arg("-c")
        .arg(script)
        .args(args)
        .env("BORG_BASE_DIR", home);
    run_ok(&mut c)
}

/// All objects of a repository as borg's own `Repository.get` returns them.
pub fn borg_dump_objects(home: &Path, repo: &Path) -> BTreeMap<[u8; 32], Vec<u8>> {
    let out = home.join("dump.bin");
    let script = r#"
import sys, struct
from borg.logger import setup_logging
setup_logging(level="warning")
from borg.repository import Repository
with Repository(sys.argv[1], exclusive=True) as r, open(sys.argv[2], 'wb') as f:
    marker = None
    while True:
        ids = r.list(limit=100, marker=marker)
        if not ids:
            break
        for i in ids:
            d = r.get(i)
            f.write(i + struct.pack('<I', len(d)) + d)
        marker = ids[-1]
"#;
    python(
        home,
        script,
        &[repo.to_str().unwrap(), out.to_str().unwrap()],
    );
    let data = std::fs::read(&out).unwrap();
    let mut map = BTreeMap::new();
    let mut p = 0;
    while p < data.len() {
        let mut id = [0u8; 32];
        id.copy_from_slice(&data[p..p + 32]);
        let n = u32::from_le_bytes(data[p + 32..p + 36].try_into().unwrap()) as usize;
        map.insert(id, data[p + 36..p + 36 + n].to_vec());
        p += 36 + n;
    }
    map
}

/// `borg debug get-obj REPO ID OUTFILE` -> the object bytes.
pub fn borg_get_obj(home: &Path, repo: &Path, id: &[u8; 32]) -> Vec<u8> {
    let out = home.join(format!("obj-{}", hex::encode(id)));
    run_ok(
        borg(home)
            .args(["debug", "get-obj"])
            .arg(repo)
            .arg(hex::encode(id))
            .arg(&out),
    );
    std::fs::read(&out).unwrap()
}

/// `borg check --repository-only REPO` succeeds?
pub fn borg_check(home: &Path, repo: &Path) -> Output {
    let mut c = borg(home);
    c.args(["check", "--repository-only"]).arg(repo);
    c.output().expect("spawn borg")
}

/// Small deterministic PRNG (splitmix64) so Rust and Python can derive the same bytes.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
    pub fn id(&mut self) -> [u8; 32] {
        let mut id = [0u8; 32];
        id.copy_from_slice(&self.bytes(32));
        id
    }
}

/// Object data derived from its id (so a verifier can recompute it).
pub fn data_for(id: &[u8; 32], max_len: u64) -> Vec<u8> {
    let mut r = SplitMix(u64::from_le_bytes(id[..8].try_into().unwrap()));
    let n = 1 + r.below(max_len) as usize;
    r.bytes(n)
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let md = e.metadata().unwrap();
        if md.is_dir() {
            total += dir_size(&e.path());
        } else {
            total += md.len();
        }
    }
    total
}

pub fn segment_files(repo: &Path) -> Vec<(u32, PathBuf)> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(repo.join("data")).unwrap() {
        let d = d.unwrap();
        for f in std::fs::read_dir(d.path()).unwrap() {
            let f = f.unwrap();
            out.push((f.file_name().to_str().unwrap().parse().unwrap(), f.path()));
        }
    }
    out.sort();
    out
}
