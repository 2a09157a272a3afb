//! Store tests that need no borg: transactions, recovery, compaction, quota, append-only,
//! nonce, check/repair.

mod common;

use std::collections::BTreeMap;
use std::fs;

use common::*;
use rborg_repository::segment::LoggedIO;
use rborg_repository::{Error, LocalRepository, OpenOptions, Repository};

fn small_segments(path: &std::path::Path, size: u64) {
    let mut r = LocalRepository::open(path, &OpenOptions::exclusive()).unwrap();
    r.config_mut().max_segment_size = size;
    r.save_config().unwrap();
}

fn fill(
    repo: &mut LocalRepository,
    rng: &mut SplitMix,
    n: usize,
    model: &mut BTreeMap<[u8; 32], Vec<u8>>,
) {
    for _ in 0..n {
        let id = rng.id();
        let data = data_for(&id, 3000);
        repo.put(&id, &data).unwrap();
        model.insert(id, data);
    }
}

fn assert_model(repo: &mut LocalRepository, model: &BTreeMap<[u8; 32], Vec<u8>>) {
    assert_eq!(repo.len().unwrap(), model.len());
    for (id, data) in model {
        assert_eq!(&repo.get(id).unwrap(), data);
    }
    let mut listed = Vec::new();
    let mut marker = None;
    loop {
        let page = repo.list(Some(7), marker.as_ref()).unwrap();
        if page.is_empty() {
            break;
        }
        marker = page.last().copied();
        listed.extend(page);
    }
    listed.sort();
    assert_eq!(listed, model.keys().copied().collect::<Vec<_>>());
    let mut scanned = Vec::new();
    let mut marker = None;
    loop {
        let page = repo.scan(Some(5), marker.as_ref()).unwrap();
        if page.is_empty() {
            break;
        }
        marker = page.last().copied();
        scanned.extend(page);
    }
    assert_eq!(scanned.len(), model.len(), "scan returns each object once");
    scanned.sort();
    assert_eq!(scanned, listed);
}

#[test]
fn create_put_get_delete_commit_reopen() {
    let tmp = tempdir();
    let path = tmp.path().join("repo");
    let mut repo = LocalRepository::create(&path, &OpenOptions::exclusive()).unwrap();
    assert_eq!(
        fs::read_to_string(path.join("README")).unwrap(),
        rborg_repository::local::REPOSITORY_README
    );
    let mut rng = SplitMix(1);
    let mut model = BTreeMap::new();
    fill(&mut repo, &mut rng, 50, &mut model);
    repo.commit(true, 0.1).unwrap();
    assert_model(&mut repo, &model);
    // overwrite and delete
    let ids: Vec<_> = model.keys().copied().collect();
    for id in &ids[..10] {
        repo.delete(id).unwrap();
        model.remove(id);
    }
    for id in &ids[10..15] {
        repo.put(id, b"replaced").unwrap();
        model.insert(*id, b"replaced".to_vec());
    }
    let missing = [0xeeu8; 32];
    let e = repo.delete(&missing).unwrap_err();
    assert_eq!(e.borg_class(), "ObjectNotFound");
    repo.commit(true, 0.1).unwrap();
    drop(repo);
    let mut repo = LocalRepository::open(&path, &OpenOptions::exclusive()).unwrap();
    assert_model(&mut repo, &model);
    assert!(repo.check(false, false).unwrap());
    assert!(matches!(
        repo.get(&missing),
        Err(Error::ObjectNotFound { .. })
    ));
    // already exists
    drop(repo);
    assert!(matches!(
        LocalRepository::create(&path, &OpenOptions::exclusive()),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        LocalRepository::create(&path.join("data"), &OpenOptions::exclusive()),
        Err(Error::PathAlreadyExists(_))
    ));
    assert!(matches!(
        LocalRepository::create(&path.join("data/new"), &OpenOptions::exclusive()),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        LocalRepository::open(&tmp.path().join("nope"), &OpenOptions::exclusive()),
        Err(Error::DoesNotExist(_))
    ));
}

#[test]
fn rollback_discards_and_uncommitted_tail_is_dropped() {
    let tmp = tempdir();
    let path = tmp.path().join("repo");
    let mut repo = LocalRepository::create(&path, &OpenOptions::exclusive()).unwrap();
    let mut rng = SplitMix(2);
    let mut model = BTreeMap::new();
    fill(&mut repo, &mut rng, 20, &mut model);
    repo.commit(false, 0.1).unwrap();
    let mut extra = BTreeMap::new();
    fill(&mut repo, &mut rng, 5, &mut extra);
    repo.rollback().unwrap();
    assert_model(&mut repo, &model);
    // simulate a crash: uncommitted writes stay on disk, plus a garbage segment
    fill(&mut repo, &mut rng, 5, &mut extra);
    drop(repo);
    let last = segment_files(&path).last().unwrap().0;
    fs::write(
        path.join("data/0").join((last + 1).to_string()),
        b"BORG_SEGgarbage",
    )
    .unwrap();
    let mut repo = LocalRepository::open(&path, &OpenOptions::exclusive()).unwrap();
    assert_model(&mut repo, &model);
    for id in extra.keys() {
        assert!(!repo.contains(id).unwrap());
    }
    // the next transaction removes the uncommitted segments
    fill(&mut repo, &mut rng, 1, &mut model);
    repo.commit(false, 0.1).unwrap();
    assert!(
        !path.join("data/0").join((last + 1).to_string()).exists() || {
            // the number may have been reused by the new transaction: it must then be a valid segment
            let mut io = LoggedIO::new(&path, 1 << 30, 1000);
            io.iter_objects(last + 1, 0, false, true)
                .unwrap()
                .all(|e| e.is_ok())
        }
    );
    assert_model(&mut repo, &model);
    assert!(repo.check(false, false).unwrap());
}

#[test]
fn missing_and_corrupt_index_and_hints_are_rebuilt() {
    let tmp = tempdir();
    let path = tmp.path().join("repo");
    let mut repo = LocalRepository::create(&path, &OpenOptions::exclusive()).unwrap();
    let mut rng = SplitMix(3);
    let mut model = BTreeMap::new();
    for _ in 0..3 {
        fill(&mut repo, &mut rng, 30, &mut model);
        let victim = *model.keys().next().unwrap();
        repo.delete(&victim).unwrap();
        model.remove(&victim);
        repo.commit(true, 0.1).unwrap();
    }
    let tid = repo.get_index_transaction_id().unwrap().unwrap();
    let hints_before = repo.hints().unwrap();
    drop(repo);
    let index_file = path.join(format!("index.{tid}"));
    let good_index = fs::read(&index_file).unwrap();

    // 1. deleted index
    fs::remove_file(&index_file).unwrap();
    let mut repo = LocalRepository::open(&path, &OpenOptions::exclusive()).unwrap();
    assert_model(&mut repo, &model);
    assert!(index_file.exists(), "index rewritten");
    let hints_after = repo.hints().unwrap();
    assert_eq!(hints_after.segments, hints_before.segments);
    assert_eq!(
        hints_after.storage_quota_use,
        hints_before.storage_quota_use
    );
    drop(repo);

    // 2. corrupted index (one flipped bit in a bucket): integrity check fails, index rebuilt
    let mut bad = fs::read(&index_file).unwrap();
    let n = bad.len();
    bad[n - 3] ^= 0x40;
    fs::write(&index_file, &bad).unwrap();
    let mut repo = LocalRepository::open(&path, &OpenOptions::exclusive()).unwrap();
    assert_model(&mut repo, &model);
    // borg recovers by replaying and committing a new (empty) transaction
    let tid_now = repo.get_index_transaction_id().unwrap().unwrap();
    assert!(tid_now > tid);
    drop(repo);
    assert!(!index_file.exists(), "corrupt index removed");
    assert!(path.join(format!("index.{tid_now}")).exists());

    // 3. corrupted hints
    let hints_file = path.join(format!("hints.{tid_now}"));
    fs::write(&hints_file, b"\xff\xff\xff").unwrap();
    let mut repo = LocalRepository::open(&path, &OpenOptions::exclusive()).unwrap();
    fill(&mut repo, &mut rng, 2, &mut model);
    repo.commit(true, 0.1).unwrap();
    assert_model(&mut repo, &model);
    assert!(repo.check(false, false).unwrap());
    assert_ne!(good_index.len(), 0);
}

#[test]
fn compaction_frees_space_and_keeps_objects() {
    let tmp = tempdir();
    let path = tmp.path().join("repo");
    drop(LocalRepository::create(&path, &OpenOptions::exclusive()).unwrap());
    small_segments(&path, 64 * 1024);
    let mut repo = LocalRepository::open(&path, &OpenOptions::exclusive()).unwrap();
    let mut rng = SplitMix(4);
    let mut model = BTreeMap::new();
    fill(&mut repo, &mut rng, 400, &mut model);
    repo.commit(false, 0.1).unwrap();
    let size_full = dir_size(&path.join("data"));
    let ids: Vec<_> = model.keys().copied().collect();
    for id in ids.iter().step_by(2) {
        repo.delete(id).unwrap();
        model.remove(id);
    }
    repo.commit(false, 0.1).unwrap();
    let hints = repo.hints().unwrap();
    let freeable: u64 = hints.compact.values().map(|&v| u64::from(v)).sum();
    assert!(
        freeable > size_full / 3,
        "freeable {freeable} of {size_full}"
    );
    // compact
    repo.commit(true, 0.1).unwrap();
    let size_after = dir_size(&path.join("data"));
    assert!(
        size_after < size_full * 65 / 100,
        "{size_after} vs {size_full}"
    );
    assert_model(&mut repo, &model);
    assert!(repo.check(false, false).unwrap());
    // reopen: committed state survives
    drop(repo);
    let mut repo = LocalRepository::open(&path, &OpenOptions::exclusive()).unwrap();
    assert_model(&mut repo, &model);
}

#[test]
fn storage_quota_and_append_only() {
    let tmp = tempdir();
    let path = tmp.path().join("repo");
    let opts = OpenOptions {
        storage_quota: Some(20_000),
        ..OpenOptions::exclusive()
    };
    let mut repo = LocalRepository::create(&path, &opts).unwrap();
    repo.put(&[1; 32], &[0u8; 10_000]).unwrap();
    let err = repo.put(&[2; 32], &[0u8; 10_000]).unwrap_err();
    assert_eq!(err.borg_class(), "StorageQuotaExceeded");
    assert_eq!(
        err.to_string(),
        "The storage quota (20.00 kB) has been exceeded (20.08 kB). Try deleting some archives."
    );
    // the transaction is doomed: commit fails and rolls back
    assert_eq!(
        repo.commit(true, 0.1).unwrap_err().borg_class(),
        "StorageQuotaExceeded"
    );
    assert_eq!(repo.len().unwrap(), 0);
    drop(repo);

    let path2 = tmp.path().join("ao");
    let mut repo = LocalRepository::create(
        &path2,
        &OpenOptions {
            append_only: true,
            ..OpenOptions::exclusive()
        },
    )
    .unwrap();
    repo.put(&[1; 32], b"a").unwrap();
    repo.commit(true, 0.1).unwrap();
    repo.delete(&[1; 32]).unwrap();
    repo.commit(true, 0.1).unwrap();
    let segs: Vec<u32> = segment_files(&path2).iter().map(|s| s.0).collect();
    assert_eq!(segs.first(), Some(&0), "append-only never deletes segments");
    let log = fs::read_to_string(path2.join("transactions")).unwrap();
    let lines: Vec<_> = log.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].starts_with("transaction 1, UTC time 20"),
        "{}",
        lines[0]
    );
    assert_eq!(
        repo.check(true, false).unwrap_err().borg_class(),
        "ValueError"
    );
    assert_eq!(
        repo.destroy().unwrap_err().to_string(),
        format!("{} is in append-only mode", path2.display())
    );
}

#[test]
fn nonce_reservation() {
    let tmp = tempdir();
    let path = tmp.path().join("repo");
    let mut repo = LocalRepository::create(&path, &OpenOptions::exclusive()).unwrap();
    assert_eq!(repo.get_free_nonce().unwrap(), None);
    repo.commit_nonce_reservation(0x1020, None).unwrap();
    assert_eq!(
        fs::read_to_string(path.join("nonce")).unwrap(),
        "0000000000001020"
    );
    assert_eq!(repo.get_free_nonce().unwrap(), Some(0x1020));
    assert!(matches!(
        repo.commit_nonce_reservation(0x2000, Some(5)),
        Err(Error::NonceMismatch)
    ));
    repo.commit_nonce_reservation(0x2000, Some(0x1020)).unwrap();
    assert_eq!(repo.get_free_nonce().unwrap(), Some(0x2000));
    repo.save_key(b"BORG_KEY abc").unwrap();
    assert_eq!(repo.load_key().unwrap(), b"BORG_KEY abc");
    repo.destroy().unwrap();
    assert!(!path.exists());
}

#[test]
fn check_detects_and_repairs_damaged_segment() {
    let tmp = tempdir();
    let path = tmp.path().join("repo");
    let mut repo = LocalRepository::create(&path, &OpenOptions::exclusive()).unwrap();
    let mut rng = SplitMix(5);
    let mut model = BTreeMap::new();
    fill(&mut repo, &mut rng, 40, &mut model);
    repo.commit(false, 0.1).unwrap();
    drop(repo);
    let (seg, file) = segment_files(&path)[0].clone();
    assert_eq!(seg, 0);
    let mut bytes = fs::read(&file).unwrap();
    bytes[200] ^= 0xff;
    fs::write(&file, &bytes).unwrap();
    let mut repo = LocalRepository::open(&path, &OpenOptions::exclusive()).unwrap();
    let report = repo.check_report(false).unwrap();
    assert!(!report.ok);
    assert!(
        report.errors[0].contains("checksum mismatch"),
        "{:?}",
        report.errors
    );
    let report = repo.check_report(true).unwrap();
    assert!(report.ok);
    // after repair: consistent again, the damaged object is gone, all others readable
    assert!(repo.check(false, false).unwrap());
    let n = repo.len().unwrap();
    assert_eq!(n, model.len() - 1);
    let mut lost = 0;
    for (id, data) in &model {
        match repo.get(id) {
            Ok(d) => assert_eq!(&d, data),
            Err(Error::ObjectNotFound { .. }) => lost += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(lost, 1);
}

#[test]
fn cleanup_commits_and_trait_object() {
    let tmp = tempdir();
    let path = tmp.path().join("repo");
    let mut repo = LocalRepository::create(&path, &OpenOptions::exclusive()).unwrap();
    let mut rng = SplitMix(6);
    let mut model = BTreeMap::new();
    for _ in 0..5 {
        fill(&mut repo, &mut rng, 3, &mut model);
        repo.commit(false, 0.1).unwrap();
    }
    let commit_only = |p: &std::path::Path| {
        segment_files(p)
            .iter()
            .filter(|(_, f)| fs::metadata(f).unwrap().len() == 17)
            .count()
    };
    assert_eq!(commit_only(&path), 5);
    repo.commit_with_cleanup(true, 0.1, true).unwrap();
    // all old commit-only segments are gone; only the final commit of the compaction is left
    assert_eq!(commit_only(&path), 1);
    // the store is usable through the object-safe trait (as a remote repository will be)
    let dynrepo: &mut dyn Repository = &mut repo;
    assert_eq!(dynrepo.len().unwrap(), model.len());
    let ids: Vec<_> = model.keys().copied().collect();
    let got = dynrepo.get_many(&ids).unwrap();
    assert_eq!(got, model.values().cloned().collect::<Vec<_>>());
    assert!(dynrepo.check(false, false).unwrap());
}

#[test]
fn partial_check_resumes_where_it_stopped() {
    let tmp = tempdir();
    let path = tmp.path().join("repo");
    drop(LocalRepository::create(&path, &OpenOptions::exclusive()).unwrap());
    small_segments(&path, 20_000);
    let mut repo = LocalRepository::open(&path, &OpenOptions::exclusive()).unwrap();
    let mut rng = SplitMix(8);
    let mut model = BTreeMap::new();
    fill(&mut repo, &mut rng, 60, &mut model);
    repo.commit(false, 0.1).unwrap();
    let segments: Vec<u32> = segment_files(&path).iter().map(|s| s.0).collect();
    assert!(segments.len() > 4);
    // damage the third segment
    let third = &segment_files(&path)[2].1;
    let mut bytes = fs::read(third).unwrap();
    bytes[20] ^= 1;
    fs::write(third, &bytes).unwrap();
    let tiny = std::time::Duration::from_nanos(1);
    let mut seen = Vec::new();
    let mut found_error = false;
    for _ in 0..=segments.len() {
        let report = repo.check_partial(tiny).unwrap();
        found_error |= !report.errors.is_empty();
        match repo.config().get("last_segment_checked") {
            Some(v) => seen.push(v.parse::<u32>().unwrap()),
            None => break,
        }
    }
    // one segment per run, in order, then the option is removed again
    assert_eq!(seen, segments[..seen.len()].to_vec());
    assert!(seen.len() >= segments.len() - 1);
    assert!(found_error, "the damaged segment was reported");
    let text = fs::read_to_string(path.join("config")).unwrap();
    assert!(!text.contains("last_segment_checked"), "{text}");
}
