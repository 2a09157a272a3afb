//! Crash safety: a writer process (this test binary re-executed as `crash_child`) puts, deletes
//! and commits in a loop and is SIGKILLed at random moments, over 200 times. After every kill
//! the repository must open, every committed object must be there with its data, nothing of
//! the interrupted transaction may be visible unless it committed as a whole, and periodically
//! (and at the end) real `borg check --repository-only` must pass.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rborg_repository::{Error, LocalRepository, OpenOptions, Repository};

const CHILD_ENV: &str = "RBORG_CRASH_CHILD_REPO";
const MAX_DATA: u64 = 4000;

fn marker_id(txn: u64) -> [u8; 32] {
    let mut id = [0xAAu8; 32];
    id[..8].copy_from_slice(&txn.to_le_bytes());
    id[8] = 0x4d;
    id
}

/// One logged transaction: number and its (kind, id) operations.
type Txn = (u64, Vec<(u8, [u8; 32])>);

/// State recorded in the log: transactions (ops) with their outcome.
struct Log {
    live: BTreeSet<[u8; 32]>,
    next_txn: u64,
    pending: Option<Txn>,
}

fn parse_log(path: &Path) -> Log {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut live = BTreeSet::new();
    let mut next_txn = 0;
    let mut cur: Option<Txn> = None;
    for line in text.split_inclusive('\n') {
        if !line.ends_with('\n') {
            break; // torn last line
        }
        let line = line.trim_end();
        if line.len() < 2 || !line.is_char_boundary(1) {
            continue; // empty, or the remainder of a torn line
        }
        let (kind, arg) = line.split_at(1);
        let arg = arg.trim();
        match kind {
            "B" => {
                let Ok(n) = arg.parse::<u64>() else { continue };
                cur = Some((n, Vec::new()));
                next_txn = n + 1;
            }
            "P" | "D" => {
                let mut id = [0u8; 32];
                if hex::decode_to_slice(arg, &mut id).is_err() {
                    continue; // torn intent line: its transaction never started writing
                }
                if let Some((_, ops)) = cur.as_mut() {
                    ops.push((kind.as_bytes()[0], id));
                }
            }
            "C" => {
                if let Some((_, ops)) = cur.take() {
                    for (k, id) in ops {
                        if k == b'P' {
                            live.insert(id);
                        } else {
                            live.remove(&id);
                        }
                    }
                }
            }
            "A" => cur = None,
            _ => {}
        }
    }
    Log {
        live,
        next_txn,
        pending: cur,
    }
}

fn open_breaking_lock(path: &Path) -> LocalRepository {
    match LocalRepository::open(path, &OpenOptions::exclusive()) {
        Ok(r) => r,
        Err(Error::Lock(_)) => {
            rborg_repository::lock::break_lock(path).unwrap();
            LocalRepository::open(path, &OpenOptions::exclusive()).unwrap()
        }
        Err(e) => panic!("open after crash: {e}"),
    }
}

/// The writer. Only active when re-executed by `crash_safety_under_sigkill`.
#[test]
fn crash_child() {
    let Ok(repo_path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let repo_path = PathBuf::from(repo_path);
    let log_path = repo_path.with_extension("log");
    let state = parse_log(&log_path);
    assert!(
        state.pending.is_none(),
        "parent resolves pending transactions"
    );
    let mut live: Vec<[u8; 32]> = state.live.into_iter().collect();
    let mut repo = open_breaking_lock(&repo_path);
    let mut log = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&log_path)
        .unwrap();
    let mut txn = state.next_txn;
    loop {
        let mut rng = SplitMix(txn.wrapping_mul(7919) ^ 0x5eed);
        let mut ops: Vec<(u8, [u8; 32])> = Vec::new();
        for _ in 0..(5 + rng.below(25)) {
            if !live.is_empty() && rng.below(4) == 0 {
                let k = rng.below(live.len() as u64) as usize;
                let id = live.swap_remove(k);
                ops.push((b'D', id));
            } else if !live.is_empty() && rng.below(8) == 0 {
                // overwrite an existing object (same data: data derives from the id)
                let id = live[rng.below(live.len() as u64) as usize];
                ops.push((b'P', id));
            } else {
                let id = rng.id();
                live.push(id);
                ops.push((b'P', id));
            }
        }
        let m = marker_id(txn);
        ops.push((b'P', m));
        live.push(m);
        let mut text = format!("B {txn}\n");
        for (k, id) in &ops {
            text.push_str(&format!("{} {}\n", *k as char, hex::encode(id)));
        }
        log.write_all(text.as_bytes()).unwrap();
        for (k, id) in &ops {
            if *k == b'P' {
                repo.put(id, &data_for(id, MAX_DATA)).unwrap();
            } else {
                repo.delete(id).unwrap();
            }
        }
        repo.commit(txn % 3 == 0, 0.1).unwrap();
        log.write_all(format!("C {txn}\n").as_bytes()).unwrap();
        txn += 1;
    }
}

fn verify(path: &Path, log_path: &Path) -> usize {
    let state = parse_log(log_path);
    // the writer is dead and reaped: its lock is stale. Breaking it right away avoids the
    // 1 s retry sleep of borg's lock protocol (stale-lock detection is tested in formats_*).
    rborg_repository::lock::break_lock(path).unwrap();
    let mut repo = open_breaking_lock(path);
    let mut live = state.live.clone();
    if let Some((n, ops)) = &state.pending {
        // the interrupted transaction: committed as a whole or not at all
        let committed = repo.contains(&marker_id(*n)).unwrap();
        let mut after = live.clone();
        for (k, id) in ops {
            if *k == b'P' {
                after.insert(*id);
            } else {
                after.remove(id);
            }
        }
        if committed {
            live = after;
        }
        let mut f = fs::OpenOptions::new().append(true).open(log_path).unwrap();
        // terminate a possibly torn line first
        f.write_all(format!("\n{} {n}\n", if committed { "C" } else { "A" }).as_bytes())
            .unwrap();
    }
    assert_eq!(repo.len().unwrap(), live.len(), "object count after crash");
    for id in &live {
        let data = repo
            .get(id)
            .unwrap_or_else(|e| panic!("committed object {} lost: {e}", hex::encode(id)));
        assert_eq!(
            data,
            data_for(id, MAX_DATA),
            "object {} damaged",
            hex::encode(id)
        );
    }
    live.len()
}

#[test]
fn crash_safety_under_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let have_borg = borg_available("crash_safety_under_sigkill");
    let home = tempdir();
    let path = home.path().join("repo");
    let log_path = path.with_extension("log");
    drop(LocalRepository::create(&path, &OpenOptions::exclusive()).unwrap());
    {
        let mut r = LocalRepository::open(&path, &OpenOptions::exclusive()).unwrap();
        r.config_mut().max_segment_size = 256 * 1024;
        r.save_config().unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let mut rng = SplitMix(2024);
    let start = Instant::now();
    let iterations = 210;
    let mut borg_checks = 0;
    let mut max_live = 0;
    let mut pending_committed = 0;
    for i in 0..iterations {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // random kill moments; sometimes a longer run so that the writer gets through
        // several commits (and compactions) even on a loaded machine with slow fsync
        let ms = if i % 7 == 3 { 400 } else { 10 + rng.below(150) };
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "writer exited by itself (failed?) at iteration {i}: {status:?}"
        );
        let before = parse_log(&log_path);
        let n = verify(&path, &log_path);
        if before.pending.is_some() && parse_log(&log_path).live.len() != before.live.len() {
            pending_committed += 1;
        }
        max_live = max_live.max(n);
        if have_borg && (i % 20 == 19 || i == iterations - 1) {
            let out = borg_check(home.path(), &path);
            assert!(
                out.status.success(),
                "borg check after kill {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            borg_checks += 1;
        }
    }
    let mut repo = open_breaking_lock(&path);
    let report = repo.check_report(false).unwrap();
    assert!(report.ok, "{report:?}");
    let txns = parse_log(&log_path).next_txn;
    eprintln!(
        "crash test: {iterations} kills, {txns} transactions, up to {max_live} live objects, \
         {pending_committed} interrupted transactions found committed (killed inside/after commit), {borg_checks} borg checks, {:?}",
        start.elapsed()
    );
    assert!(
        txns > iterations as u64,
        "the writer made progress ({txns} transactions)"
    );
}
