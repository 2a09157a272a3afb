//! R1 live interop tests against real borg 1.2.4 (skipped with a notice when borg is
//! missing, unless RBORG_REQUIRE_BORG=1). Inputs are freshly randomized per run.

mod formats_common;
use formats_common::*;
use rand::{Rng, RngCore};
use rborg_repository::hashindex::{ChunkEntry, HashIndex, NsEntry, NsIndex, ObjectId};
use rborg_repository::index_files::{self, IndexFileError};
use rborg_repository::lock::{self, host_id, Lock, LockError, ProcessId};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn live_py() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/gen/repository_live.py")
}

fn live(args: &[&str]) -> Value {
    let out = Command::new("/usr/bin/python3")
        .arg(live_py())
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn random_ops(
    rng: &mut impl Rng,
    n: usize,
    keyspace: usize,
    words: usize,
) -> (Vec<ObjectId>, Vec<Value>) {
    let keys: Vec<ObjectId> = (0..keyspace)
        .map(|_| {
            let mut k = [0u8; 32];
            rng.fill_bytes(&mut k);
            k
        })
        .collect();
    let ops = (0..n)
        .map(|_| {
            let k = hex::encode(keys[rng.gen_range(0..keyspace)]);
            match rng.gen_range(0..100) {
                0..=29 => json!(["del", k]),
                30..=39 => json!(["get", k]),
                _ => {
                    let mut op = vec![
                        json!("set"),
                        json!(k),
                        json!(rng.gen_range(0..=0xffff_fbffu32)),
                    ];
                    for _ in 1..words {
                        op.push(json!(rng.gen::<u32>()));
                    }
                    Value::Array(op)
                }
            }
        })
        .collect();
    (keys, ops)
}

fn replay<V: FromWords>(ops: &[Value]) -> HashIndex<V> {
    let mut idx = HashIndex::<V>::new();
    for op in ops {
        let k: ObjectId = hex::decode(op[1].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        match op[0].as_str().unwrap() {
            "set" => {
                let w: Vec<u32> = op.as_array().unwrap()[2..]
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect();
                idx.insert(k, V::from_words(&w));
            }
            "del" => {
                idx.remove(&k);
            }
            _ => {
                idx.get_borg(&k);
            }
        }
    }
    idx
}

fn interop_random<V: FromWords>(kind: &str, words: usize, n: usize, keyspace: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::thread_rng();
    let (_, ops) = random_ops(&mut rng, n, keyspace, words);
    let ops_path = dir.path().join("ops.json");
    fs::write(&ops_path, serde_json::to_vec(&ops).unwrap()).unwrap();
    let ours = replay::<V>(&ops);
    let ours_path = dir.path().join("ours.idx");
    fs::write(&ours_path, ours.to_bytes()).unwrap();
    // borg replays the same ops: byte-identical file
    let borg_path = dir.path().join("borg.idx");
    let r = live(&[
        "replay",
        kind,
        ops_path.to_str().unwrap(),
        borg_path.to_str().unwrap(),
    ]);
    assert_eq!(r["len"].as_u64().unwrap() as usize, ours.len());
    assert!(
        fs::read(&borg_path).unwrap() == ours.to_bytes(),
        "{kind}: not byte-identical to borg"
    );
    // borg reads our file and sees exactly our entries, in the same order
    let d = live(&["dump", kind, ours_path.to_str().unwrap()]);
    let entries = d["entries"].as_array().unwrap();
    assert_eq!(entries.len(), ours.len());
    for ((k, v), e) in ours.iter().zip(entries) {
        assert_eq!(hex::encode(k), e[0].as_str().unwrap());
        let w: Vec<u32> = e[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(v, V::from_words(&w));
    }
}

#[test]
fn hashindex_random_ops_match_borg() {
    if !borg_available() {
        return;
    }
    interop_random::<NsEntry>("NSIndex", 2, 20_000, 3_000); // grows to 8209 buckets, churn
    interop_random::<NsEntry>("NSIndex", 2, 8_000, 400); // heavy tombstones, rebuilds
    interop_random::<ChunkEntry>("ChunkIndex", 3, 10_000, 2_000);
    // the empty table
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("e.idx");
    fs::write(&p, NsIndex::new().to_bytes()).unwrap();
    assert_eq!(live(&["dump", "NSIndex", p.to_str().unwrap()])["len"], 0);
}

fn make_borg_repo(base: &Path, encryption: &str) -> PathBuf {
    let repo = base.join("repo");
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    let mut rng = rand::thread_rng();
    for i in 0..4 {
        let mut data = vec![0u8; rng.gen_range(1000..200_000)];
        rng.fill_bytes(&mut data);
        fs::write(src.join(format!("f{i}")), data).unwrap();
    }
    let st = borg(base)
        .args(["init", "-e", encryption])
        .arg(&repo)
        .status()
        .unwrap();
    assert!(st.success());
    let st = borg(base)
        .arg("create")
        .arg(format!("{}::a1", repo.display()))
        .arg("src")
        .status()
        .unwrap();
    assert!(st.success());
    repo
}

#[test]
fn borg_accepts_index_files_written_by_us() {
    if !borg_available() {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let repo = make_borg_repo(base.path(), "none");
    // a second archive, deleted again without compaction: non-empty compact map and
    // shadow index in the hints
    let a0 = format!("{}::a0", repo.display());
    assert!(borg(base.path())
        .arg("create")
        .arg(&a0)
        .arg("src")
        .status()
        .unwrap()
        .success());
    assert!(borg(base.path())
        .arg("delete")
        .arg(&a0)
        .status()
        .unwrap()
        .success());
    let txn = index_files::latest_transaction_id(&repo).unwrap().unwrap();
    let borg_index = fs::read(repo.join(format!("index.{txn}"))).unwrap();
    let index = index_files::load_index(&repo, txn).unwrap();
    let hints = index_files::load_hints(&repo, txn).unwrap();
    assert!(index.len() >= 3);
    assert!(!hints.compact.is_empty() && !hints.shadow_index.is_empty());
    fs::remove_file(repo.join(format!("index.{txn}"))).unwrap();
    fs::remove_file(repo.join(format!("hints.{txn}"))).unwrap();
    fs::remove_file(repo.join(format!("integrity.{txn}"))).unwrap();
    index_files::save(&repo, txn, &index, &hints).unwrap();
    // byte-identical index file
    assert_eq!(
        fs::read(repo.join(format!("index.{txn}"))).unwrap(),
        borg_index
    );
    // borg verifies our digests (IntegrityCheckedFile) and reads our files
    let v = live(&["verify", repo.to_str().unwrap(), &txn.to_string()]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["index_len"].as_u64().unwrap() as usize, index.len());
    assert_eq!(v["hints_version"], 2);
    assert_eq!(
        v["segments"].as_object().unwrap().len(),
        hints.segments.len()
    );
    for (seg, n) in &hints.segments {
        assert_eq!(v["segments"][seg.to_string()].as_u64(), Some(u64::from(*n)));
    }
    for (seg, n) in &hints.compact {
        assert_eq!(v["compact"][seg.to_string()].as_u64(), Some(u64::from(*n)));
    }
    assert_eq!(v["compact"].as_object().unwrap().len(), hints.compact.len());
    assert_eq!(
        v["storage_quota_use"].as_u64(),
        Some(hints.storage_quota_use)
    );
    assert_eq!(
        v["shadow_index"].as_object().unwrap().len(),
        hints.shadow_index.len()
    );
    for (id, segs) in &hints.shadow_index {
        assert_eq!(v["shadow_index"][hex::encode(id)], json!(segs));
    }
    // borg check is happy, and borg list works without rebuilding our index
    let out = borg(base.path())
        .args(["check", "--repository-only", "-v"])
        .arg(&repo)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "borg check failed: {stderr}");
    assert!(!stderr.contains("corrupted"), "{stderr}");
    let out = borg(base.path())
        .args(["list", "--short"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "a1");
    // and a borg write transaction starting from our files works
    let st = borg(base.path())
        .arg("create")
        .arg(format!("{}::a2", repo.display()))
        .arg("src")
        .status()
        .unwrap();
    assert!(st.success());
    let txn2 = index_files::latest_transaction_id(&repo).unwrap().unwrap();
    assert!(txn2 > txn);
    let idx2 = index_files::load_index(&repo, txn2).unwrap();
    assert!(idx2.len() > index.len());

    // corrupt a byte of our index: borg reports a FileIntegrityError, so do we
    let p = repo.join(format!("index.{txn2}"));
    let mut b = fs::read(&p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x10;
    fs::write(&p, &b).unwrap();
    let v = live(&["verify", repo.to_str().unwrap(), &txn2.to_string()]);
    assert_eq!(v["ok"], false);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with("FileIntegrityError"));
    assert!(matches!(
        index_files::load_index(&repo, txn2),
        Err(IndexFileError::IntegrityMismatch { .. })
    ));
}

#[test]
fn host_id_matches_borg() {
    if !borg_available() {
        return;
    }
    let v = live(&["hostid"]);
    assert_eq!(v["hostid"].as_str().unwrap(), host_id());
    assert_eq!(
        ProcessId::current().unique_name(),
        format!("{}.{}-0", host_id(), std::process::id())
    );
}

fn wait_for(p: &Path, secs: u64) {
    let t = Instant::now();
    while !p.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "{} did not appear",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn lock_interop_with_borg() {
    if !borg_available() {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let repo = make_borg_repo(base.path(), "none");
    let abs = std::path::absolute(&repo).unwrap();

    // 1. borg holds the exclusive lock: we time out with borg's message
    let mut child = borg(base.path())
        .arg("with-lock")
        .arg(&repo)
        .args(["sleep", "6"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&repo.join("lock.exclusive"), 20);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let e = Lock::acquire(&repo, true, Some(Duration::from_secs(1))).unwrap_err();
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert_eq!(
        e.to_string(),
        format!(
            "Failed to create/acquire the lock {}/lock.exclusive (timeout).",
            abs.display()
        )
    );
    let e = Lock::acquire(&repo, false, Some(Duration::from_millis(500))).unwrap_err();
    assert!(matches!(e, LockError::Timeout(_)));
    assert!(child.wait().unwrap().success());
    assert!(!repo.join("lock.exclusive").exists());

    // 2. we hold the exclusive lock: borg list / check fail with --lock-wait 1
    let l = Lock::acquire(&repo, true, Some(Duration::from_secs(1))).unwrap();
    assert!(l.got_exclusive_lock());
    let roster: Value =
        serde_json::from_slice(&fs::read(repo.join("lock.roster")).unwrap()).unwrap();
    assert_eq!(
        roster["exclusive"],
        json!([[host_id(), std::process::id(), 0]])
    );
    for args in [
        &["list", "--lock-wait", "1"][..],
        &["check", "--repository-only", "--lock-wait", "1"][..],
    ] {
        let out = borg(base.path()).args(args).arg(&repo).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Failed to create/acquire the lock") && stderr.contains("(timeout)"),
            "{stderr}"
        );
    }
    l.release().unwrap();
    assert!(!repo.join("lock.exclusive").exists() && !repo.join("lock.roster").exists());

    // 3. we hold a shared lock: borg list works (shared), borg with-lock (exclusive) times out
    let l = Lock::acquire(&repo, false, Some(Duration::from_secs(1))).unwrap();
    let out = borg(base.path())
        .args(["list", "--short", "--lock-wait", "1"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = borg(base.path())
        .args(["with-lock", "--lock-wait", "1"])
        .arg(&repo)
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "Failed to create/acquire the lock {}/lock (timeout).",
            abs.display()
        )),
        "{stderr}"
    );
    drop(l); // released on drop
    assert!(!repo.join("lock.roster").exists());

    // 4. stale locks of dead local processes are broken, both ways
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let stale = ProcessId {
        host: host_id().to_string(),
        pid: dead_pid,
        thread: 0,
    };
    // a lock left by a "crashed" rborg process: borg breaks it
    std::mem::forget(Lock::acquire_as(&repo, true, None, stale.clone()).unwrap());
    assert!(repo
        .join("lock.exclusive")
        .join(stale.unique_name())
        .exists());
    let out = borg(base.path())
        .args(["list", "--short", "--lock-wait", "1"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "borg did not break our stale lock: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // a lock left by a killed borg process: we break it
    let mut child = borg(base.path())
        .arg("with-lock")
        .arg(&repo)
        .args(["sleep", "8"])
        .spawn()
        .unwrap();
    wait_for(&repo.join("lock.exclusive"), 20);
    std::thread::sleep(Duration::from_millis(300));
    let borg_pid = child.id();
    // SIGKILL borg (the child "sleep" keeps running but is not the lock owner)
    child.kill().unwrap();
    child.wait().unwrap();
    let owner: Vec<String> = fs::read_dir(repo.join("lock.exclusive"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(owner, [format!("{}.{}-0", host_id(), borg_pid)]);
    let l = Lock::acquire(&repo, true, Some(Duration::from_secs(3))).unwrap();
    assert!(l.got_exclusive_lock());
    l.release().unwrap();
    // a live foreign-host lock is never broken; break_lock removes it
    let foreign = ProcessId {
        host: "otherhost@1".into(),
        pid: dead_pid,
        thread: 0,
    };
    std::mem::forget(Lock::acquire_as(&repo, true, None, foreign).unwrap());
    assert!(matches!(
        Lock::acquire(&repo, false, Some(Duration::from_millis(300))),
        Err(LockError::Timeout(_))
    ));
    lock::break_lock(&repo).unwrap();
    assert!(!repo.join("lock.exclusive").exists() && !repo.join("lock.roster").exists());
    let out = borg(base.path())
        .args(["list", "--short", "--lock-wait", "1"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(out.status.success());
}
