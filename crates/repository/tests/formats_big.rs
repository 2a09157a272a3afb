//! A big (1 million entries) repository index: save/load through index_files, timing
//! and peak RSS printed (run with `--release -- --nocapture` for the figures in the
//! docs); borg (live, when available) reads our file and sees the same values.

mod formats_common;
use formats_common::*;
use rborg_repository::hashindex::{NsEntry, NsIndex};
use rborg_repository::hints::Hints;
use rborg_repository::index_files;
use std::time::Instant;

fn vm_hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn one_million_entries() {
    const N: u64 = 1_000_000;
    let seed: u64 = rand::random();
    let dir = tempfile::tempdir().unwrap();
    let rss0 = vm_hwm_kib();
    let t = Instant::now();
    let mut idx = NsIndex::new();
    for i in 0..N {
        idx.insert(
            key(seed, i),
            NsEntry {
                segment: (i / 1000) as u32,
                offset: (i % 1000) as u32 * 64,
            },
        );
    }
    let t_insert = t.elapsed();
    assert_eq!(idx.len(), N as usize);
    let buckets = idx.num_buckets();
    let t = Instant::now();
    index_files::save(dir.path(), 1, &idx, &Hints::default()).unwrap();
    let t_save = t.elapsed();
    let size = std::fs::metadata(dir.path().join("index.1")).unwrap().len();
    drop(idx);
    let rss1 = vm_hwm_kib();
    let t = Instant::now();
    let back = index_files::load_index(dir.path(), 1).unwrap();
    let t_load = t.elapsed();
    assert_eq!(back.len(), N as usize);
    for i in (0..N).step_by(997) {
        assert_eq!(
            back.get(&key(seed, i)),
            Some(NsEntry {
                segment: (i / 1000) as u32,
                offset: (i % 1000) as u32 * 64
            })
        );
    }
    assert_eq!(back.get(&key(seed, N)), None);
    // baselines: raw file read, and parsing without the integrity hashing
    let t = Instant::now();
    let raw = std::fs::read(dir.path().join("index.1")).unwrap();
    let t_raw = t.elapsed();
    let t = Instant::now();
    let parsed = NsIndex::from_bytes(&raw).unwrap();
    let t_parse = t.elapsed();
    assert_eq!(parsed.len(), N as usize);
    drop((raw, parsed));
    let t = Instant::now();
    let h = xxhash_rust::xxh64::xxh64(&std::fs::read(dir.path().join("index.1")).unwrap(), 0);
    println!("baseline: fs::read {t_raw:?}; from_bytes (copy+validate) {t_parse:?}; read+xxh64 {:?} ({h:x})", t.elapsed());
    println!(
        "1M entries: {buckets} buckets, file {size} bytes; insert {t_insert:?}, save (hash+write+fsync) {t_save:?}, \
         load (read+verify+validate) {t_load:?}; peak RSS before load {rss1} KiB (start {rss0} KiB), after load {} KiB",
        vm_hwm_kib()
    );
    if !borg_available() {
        return;
    }
    let keys: Vec<String> = (0..N)
        .step_by(99_991)
        .map(|i| hex::encode(key(seed, i)))
        .collect();
    let kp = dir.path().join("keys.json");
    std::fs::write(&kp, serde_json::to_vec(&keys).unwrap()).unwrap();
    let code = format!(
        "import sys; sys.argv=['x','sample','NSIndex',{:?},{:?}]; exec(open({:?}).read())",
        dir.path().join("index.1").to_str().unwrap(),
        kp.to_str().unwrap(),
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/gen/repository_live.py"
        )
    );
    let v: serde_json::Value = serde_json::from_str(&python(&code)).unwrap();
    assert_eq!(v["len"].as_u64(), Some(N));
    for (j, i) in (0..N).step_by(99_991).enumerate() {
        let e = back.get(&key(seed, i)).unwrap();
        assert_eq!(v["values"][j], serde_json::json!([e.segment, e.offset]));
    }
    let verify = format!(
        "import sys; sys.argv=['x','verify',{:?},'1']; exec(open({:?}).read())",
        dir.path().to_str().unwrap(),
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/gen/repository_live.py"
        )
    );
    let v2: serde_json::Value = serde_json::from_str(&python(&verify)).unwrap();
    assert_eq!(v2["ok"], true);
    assert_eq!(v2["index_len"].as_u64(), Some(N));
    println!(
        "borg open_index-style load (IntegrityCheckedFile + NSIndex.read) of our file: {:.3}s",
        v2["index_load_seconds"].as_f64().unwrap()
    );
    println!(
        "borg NSIndex.read of the same file: {:.3}s",
        v["load_seconds"].as_f64().unwrap()
    );
}
