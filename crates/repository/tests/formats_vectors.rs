//! R1 format tests against committed vectors made by borg 1.2.4
//! (testdata/gen/repository.py); these run without borg.

mod formats_common;
use formats_common::*;
use rborg_repository::hashindex::{ChunkEntry, ChunkIndex, HashIndex, NsEntry, NsIndex};
use rborg_repository::hints::Hints;
use rborg_repository::index_files::{self, IndexFileError};
use serde_json::Value;
use std::fs;

fn load_json(name: &str) -> Value {
    serde_json::from_slice(&fs::read(testdata().join(name)).unwrap()).unwrap()
}

fn check_scenario<V: FromWords>(sc: &Value) -> usize {
    let name = sc["name"].as_str().unwrap();
    let seed = sc["seed"].as_u64().unwrap();
    let borg_bytes = fs::read(testdata().join(sc["file"].as_str().unwrap())).unwrap();
    // (a) read borg's file, compare content with what borg reported.
    let compact = sc["compact"].as_bool().unwrap_or(false);
    let idx = if compact {
        // regular loading rejects nothing here either, but compact files need permit_compact
        HashIndex::<V>::from_bytes_compact(&borg_bytes).unwrap()
    } else {
        HashIndex::<V>::from_bytes(&borg_bytes).unwrap()
    };
    let entries = sc["entries"].as_array().unwrap();
    assert_eq!(idx.len(), entries.len(), "{name}");
    assert_eq!(idx.len() as u64, sc["num_entries"].as_u64().unwrap());
    for e in entries {
        let k: [u8; 32] = hex::decode(e[0].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let w: Vec<u32> = e[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(idx.get(&k), Some(V::from_words(&w)), "{name}");
    }
    // re-serializing what we read gives borg's bytes back
    assert_eq!(
        idx.to_bytes(),
        borg_bytes,
        "{name}: load+save not byte-identical"
    );
    // (b) replay the same operations: byte-identical to borg's file
    let mut ours = HashIndex::<V>::new();
    apply_ops(&mut ours, seed, sc["ops"].as_array().unwrap());
    if compact {
        let before = ours.size();
        let saved = ours.compact();
        assert_eq!(ours.size() as u64 + saved, before as u64);
    }
    assert_eq!(ours.len(), idx.len());
    assert_eq!(
        ours.size() as u64,
        sc["file_size"].as_u64().unwrap(),
        "{name}: bucket count"
    );
    if compact {
        // a compacted table can be iterated and, after an automatic rebuild, extended
        let mut grown = idx.clone();
        let k = key(99, 1);
        grown.insert(k, V::from_words(&[1, 2, 3]));
        assert_eq!(grown.len(), idx.len() + 1);
        assert_eq!(grown.get(&k), Some(V::from_words(&[1, 2, 3])));
        assert!(idx.iter().all(|(k, v)| grown.get(&k) == Some(v)));
    }
    assert!(
        ours.to_bytes() == borg_bytes,
        "{name}: same ops, different bytes"
    );
    entries.len()
}

#[test]
fn hashindex_vectors_read_and_byte_identical() {
    let v = load_json("hashindex.json");
    let mut n = 0;
    for sc in v["scenarios"].as_array().unwrap() {
        match sc["kind"].as_str().unwrap() {
            "NSIndex" => check_scenario::<NsEntry>(sc),
            "ChunkIndex" => check_scenario::<ChunkEntry>(sc),
            k => panic!("{k}"),
        };
        n += 1;
    }
    assert_eq!(n, 8);
}

#[test]
fn hints_vectors() {
    for case in load_json("hints.json").as_array().unwrap() {
        let bytes = fs::read(testdata().join(case["file"].as_str().unwrap())).unwrap();
        let parsed = Hints::parse(&bytes).unwrap();
        let c = &case["content"];
        assert_eq!(parsed.version as u64, c["version"].as_u64().unwrap());
        let segs = c["segments"].as_object().unwrap();
        assert_eq!(parsed.hints.segments.len(), segs.len());
        for (k, v) in segs {
            assert_eq!(
                parsed.hints.segments[&k.parse::<u32>().unwrap()] as u64,
                v.as_u64().unwrap()
            );
        }
        if parsed.version == 1 {
            let mut want: Vec<u32> = c["compact"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            want.sort();
            assert_eq!(parsed.v1_compact_segments, want);
            continue;
        }
        let compact = c["compact"].as_object().unwrap();
        assert_eq!(parsed.hints.compact.len(), compact.len());
        for (k, v) in compact {
            assert_eq!(
                parsed.hints.compact[&k.parse::<u32>().unwrap()] as u64,
                v.as_u64().unwrap()
            );
        }
        assert_eq!(
            parsed.hints.storage_quota_use,
            c["storage_quota_use"].as_u64().unwrap_or(0)
        );
        let shadow = c
            .get("shadow_index")
            .and_then(|s| s.as_object())
            .cloned()
            .unwrap_or_default();
        assert_eq!(parsed.hints.shadow_index.len(), shadow.len());
        for (k, v) in &shadow {
            let id: [u8; 32] = hex::decode(k).unwrap().try_into().unwrap();
            let want: Vec<u32> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(parsed.hints.shadow_index[&id], want);
        }
        // our encoding decodes to the same content
        assert_eq!(
            Hints::from_bytes(&parsed.hints.to_bytes()).unwrap(),
            parsed.hints
        );
    }
}

/// Copy the real repository's transaction files into a temp dir named like borg's.
fn real_repo_dir() -> (tempfile::TempDir, u32, Value) {
    let v = load_json("real_repo.json");
    let txn = v["transaction_id"].as_u64().unwrap() as u32;
    let dir = tempfile::tempdir().unwrap();
    for base in ["index", "hints", "integrity"] {
        fs::copy(
            testdata().join(format!("real_{base}.{txn}")),
            dir.path().join(format!("{base}.{txn}")),
        )
        .unwrap();
    }
    (dir, txn, v)
}

#[test]
fn real_repository_files_verify_and_load() {
    let (dir, txn, v) = real_repo_dir();
    assert_eq!(
        index_files::latest_transaction_id(dir.path()).unwrap(),
        Some(txn)
    );
    // integrity.N digests are verified (they exist: the digests map is non-empty)
    assert!(index_files::read_integrity(dir.path(), txn, "index")
        .unwrap()
        .is_some());
    let idx = index_files::load_index(dir.path(), txn).unwrap();
    let entries = v["index_entries"].as_array().unwrap();
    assert!(entries.len() > 5);
    assert_eq!(idx.len(), entries.len());
    for e in entries {
        let k: [u8; 32] = hex::decode(e[0].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let w = e[1].as_array().unwrap();
        let want = NsEntry {
            segment: w[0].as_u64().unwrap() as u32,
            offset: w[1].as_u64().unwrap() as u32,
        };
        assert_eq!(idx.get(&k), Some(want));
    }
    let hints = index_files::load_hints(dir.path(), txn).unwrap();
    let h = &v["hints"];
    assert_eq!(
        hints.segments.len(),
        h["segments"].as_object().unwrap().len()
    );
    for (k, n) in h["segments"].as_object().unwrap() {
        assert_eq!(
            hints.segments[&k.parse::<u32>().unwrap()] as u64,
            n.as_u64().unwrap()
        );
    }
    for (k, n) in h["compact"].as_object().unwrap() {
        assert_eq!(
            hints.compact[&k.parse::<u32>().unwrap()] as u64,
            n.as_u64().unwrap()
        );
    }
    assert_eq!(
        hints.storage_quota_use,
        h["storage_quota_use"].as_u64().unwrap()
    );
    assert_eq!(
        hints.shadow_index.len(),
        h["shadow_index"].as_object().unwrap().len()
    );

    // Saving the same content with ours reproduces borg's index.N and integrity digest
    // for the index byte-for-byte.
    let out = tempfile::tempdir().unwrap();
    index_files::save(out.path(), txn, &idx, &hints).unwrap();
    assert_eq!(
        fs::read(out.path().join(format!("index.{txn}"))).unwrap(),
        fs::read(dir.path().join(format!("index.{txn}"))).unwrap()
    );
    let ours = index_files::read_integrity(out.path(), txn, "index")
        .unwrap()
        .unwrap();
    let theirs = index_files::read_integrity(dir.path(), txn, "index")
        .unwrap()
        .unwrap();
    assert_eq!(ours, theirs);
    // the whole integrity JSON for the index equals borg's string
    let integ = &v["integrity"];
    let ours_file = fs::read(out.path().join(format!("integrity.{txn}"))).unwrap();
    let s = String::from_utf8_lossy(&ours_file);
    assert!(
        s.contains(integ["index"].as_str().unwrap()),
        "index integrity json differs"
    );
    // hints: if our msgpack equals borg's bytes (same key order), the integrity json matches too
    let borg_hints = fs::read(dir.path().join(format!("hints.{txn}"))).unwrap();
    if fs::read(out.path().join(format!("hints.{txn}"))).unwrap() == borg_hints {
        assert_eq!(
            ours_file,
            fs::read(dir.path().join(format!("integrity.{txn}"))).unwrap()
        );
    }
}

#[test]
fn corrupted_files_are_integrity_errors() {
    let (dir, txn, _) = real_repo_dir();
    let p = dir.path().join(format!("index.{txn}"));
    let orig = fs::read(&p).unwrap();
    // flip one bit in the buckets
    let mut bad = orig.clone();
    bad[5000] ^= 1;
    fs::write(&p, &bad).unwrap();
    assert!(matches!(
        index_files::load_index(dir.path(), txn),
        Err(IndexFileError::IntegrityMismatch { .. })
    ));
    // flip one bit in the header (caught by the HashHeader digest before parsing)
    let mut bad = orig.clone();
    bad[13] ^= 0x40;
    fs::write(&p, &bad).unwrap();
    assert!(matches!(
        index_files::load_index(dir.path(), txn),
        Err(IndexFileError::IntegrityMismatch { .. })
    ));
    // truncated
    fs::write(&p, &orig[..orig.len() - 40]).unwrap();
    assert!(matches!(
        index_files::load_index(dir.path(), txn),
        Err(IndexFileError::Corrupt { .. })
    ));
    fs::write(&p, &orig).unwrap();
    index_files::load_index(dir.path(), txn).unwrap();
    // renamed file: the digest binds the file name
    fs::copy(&p, dir.path().join("index.99")).unwrap();
    fs::copy(
        dir.path().join(format!("integrity.{txn}")),
        dir.path().join("integrity.99"),
    )
    .unwrap();
    assert!(matches!(
        index_files::load_index(dir.path(), 99),
        Err(IndexFileError::IntegrityMismatch { .. })
    ));
    // hints
    let hp = dir.path().join(format!("hints.{txn}"));
    let mut h = fs::read(&hp).unwrap();
    let last = h.len() - 1;
    h[last] ^= 1;
    fs::write(&hp, &h).unwrap();
    assert!(matches!(
        index_files::load_hints(dir.path(), txn),
        Err(IndexFileError::IntegrityMismatch { .. })
    ));
    // without integrity.N nothing is verified (as borg), the corrupt-but-decodable file loads
    fs::remove_file(dir.path().join(format!("integrity.{txn}"))).unwrap();
    fs::write(&p, &orig).unwrap();
    index_files::load_index(dir.path(), txn).unwrap();
    assert!(matches!(
        index_files::load_index(dir.path(), 12345),
        Err(IndexFileError::Missing(_))
    ));
}

#[test]
fn save_replaces_older_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let mut idx = NsIndex::new();
    let mut hints = Hints::default();
    for t in 1..=3u32 {
        idx.insert(
            key(1, t as u64),
            NsEntry {
                segment: t,
                offset: 8,
            },
        );
        hints.segments.insert(t, 1);
        index_files::save(dir.path(), t, &idx, &hints).unwrap();
    }
    fs::write(dir.path().join("index.77.tmp"), b"junk").unwrap();
    fs::write(dir.path().join("index.100"), b"").unwrap(); // empty index files are ignored
    assert_eq!(
        index_files::latest_transaction_id(dir.path()).unwrap(),
        Some(3)
    );
    index_files::save(dir.path(), 4, &idx, &hints).unwrap();
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["hints.4", "index.4", "integrity.4"]);
    assert_eq!(index_files::load_index(dir.path(), 4).unwrap(), idx);
    assert_eq!(index_files::load_hints(dir.path(), 4).unwrap(), hints);
}

#[test]
fn chunk_index_roundtrip() {
    let mut c = ChunkIndex::new();
    for i in 0..3000u64 {
        c.insert(
            key(3, i),
            ChunkEntry {
                refcount: (i % 5) as u32 + 1,
                size: i as u32 * 7,
                csize: i as u32,
            },
        );
    }
    for i in 0..1000u64 {
        c.remove(&key(3, i * 3));
    }
    let back = ChunkIndex::from_bytes(&c.to_bytes()).unwrap();
    assert_eq!(back.len(), 2000);
    assert_eq!(
        back.get(&key(3, 1)),
        Some(ChunkEntry {
            refcount: 2,
            size: 7,
            csize: 1
        })
    );
    assert_eq!(back.get(&key(3, 3)), None);
    assert_eq!(back, c);
}

#[test]
fn config_vectors_roundtrip_byte_identical() {
    use rborg_repository::config::{parse_file_size, RepoConfig};
    for case in load_json("config.json").as_array().unwrap() {
        let path = testdata().join(case["file"].as_str().unwrap());
        let text = fs::read_to_string(&path).unwrap();
        let c = RepoConfig::load(&path).unwrap();
        for item in case["items"].as_array().unwrap() {
            let (k, v) = (item[0].as_str().unwrap(), item[1].as_str().unwrap());
            assert_eq!(c.get(k).as_deref(), Some(v), "{k}");
        }
        assert_eq!(
            c.storage_quota,
            parse_file_size(&c.get("storage_quota").unwrap()).unwrap()
        );
        assert_eq!(c.to_ini(), text, "{}", case["name"]);
        // build the same config from scratch through the typed API / set()
        let items = case["items"].as_array().unwrap();
        let id: [u8; 32] = hex::decode(c.get("id").unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let mut fresh = RepoConfig::new(id);
        for item in items {
            let (k, v) = (item[0].as_str().unwrap(), item[1].as_str().unwrap());
            match k {
                "version" | "id" => {}
                "key" => fresh.key = Some(v.to_string()),
                "custom_thing" => {}
                // like `borg config`, storage_quota must be >= 10M when set
                "storage_quota" if v == "0" => assert!(fresh.set(k, v).is_err()),
                _ => fresh.set(k, v).unwrap(),
            }
        }
        if case["name"] == "plain" {
            assert_eq!(fresh.to_ini(), text);
        }
    }
    // the real repository config (repokey: multi-line key value)
    let v = load_json("real_repo.json");
    let path = testdata().join("real_config");
    let c = RepoConfig::load(&path).unwrap();
    let want = v["config"].as_object().unwrap();
    assert_eq!(c.items().len(), want.len());
    for (k, val) in want {
        assert_eq!(c.get(k).as_deref(), val.as_str(), "{k}");
    }
    assert!(c.key.as_ref().unwrap().contains('\n'));
    assert_eq!(hex::encode(c.id), want["id"].as_str().unwrap());
    assert_eq!(c.to_ini(), fs::read_to_string(&path).unwrap());
    let dir = tempfile::tempdir().unwrap();
    c.save(&dir.path().join("config")).unwrap();
    assert_eq!(
        fs::read(dir.path().join("config")).unwrap(),
        fs::read(&path).unwrap()
    );
}

/// Decoders never panic on damaged input (random bit flips, truncation, garbage).
#[test]
fn decoders_survive_damaged_input() {
    use rand::{Rng, SeedableRng};
    use rborg_repository::config::RepoConfig;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let idx = fs::read(testdata().join("ns_churn.idx")).unwrap();
    let chunks = fs::read(testdata().join("chunks_churn.idx")).unwrap();
    let hints = fs::read(testdata().join("hints_v2.bin")).unwrap();
    let config = fs::read(testdata().join("real_config")).unwrap();
    let (mut ok, mut err) = (0, 0);
    for round in 0..3000 {
        let base = match round % 4 {
            0 => &idx,
            1 => &chunks,
            2 => &hints,
            _ => &config,
        };
        let mut b = base.clone();
        match rng.gen_range(0..3) {
            0 => {
                for _ in 0..rng.gen_range(1..8) {
                    let i = if rng.gen_bool(0.5) {
                        rng.gen_range(0..b.len().min(64))
                    } else {
                        rng.gen_range(0..b.len())
                    };
                    b[i] = rng.gen();
                }
            }
            1 => b.truncate(rng.gen_range(0..b.len())),
            _ => b = (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect(),
        }
        let r = match round % 4 {
            0 => NsIndex::from_bytes(&b)
                .map(|i| i.len())
                .map_err(|e| e.to_string()),
            1 => ChunkIndex::from_bytes(&b)
                .map(|i| i.len())
                .map_err(|e| e.to_string()),
            2 => Hints::from_bytes(&b)
                .map(|h| h.segments.len())
                .map_err(|e| e.to_string()),
            _ => RepoConfig::parse(&String::from_utf8_lossy(&b))
                .map(|c| c.items().len())
                .map_err(|e| e.to_string()),
        };
        match r {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
    }
    assert!(ok > 100 && err > 100, "ok {ok} err {err}");
    // a damaged table that still decodes stays usable (lookups terminate, inserts work)
    let mut b = idx.clone();
    for i in (18..b.len()).step_by(40 * 7) {
        b[i + 32..i + 36].copy_from_slice(&0xffff_fffeu32.to_le_bytes()); // many tombstones
    }
    let n = b[18..]
        .chunks_exact(40)
        .filter(|c| c[32..36] != [0xff; 4] && c[32..36] != [0xfe, 0xff, 0xff, 0xff])
        .count();
    b[8..12].copy_from_slice(&(n as i32).to_le_bytes());
    let mut t = NsIndex::from_bytes(&b).unwrap();
    t.insert(
        [1; 32],
        NsEntry {
            segment: 1,
            offset: 2,
        },
    );
    assert_eq!(
        t.get(&[1; 32]),
        Some(NsEntry {
            segment: 1,
            offset: 2
        })
    );
}
