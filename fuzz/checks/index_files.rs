//! Fuzz target `index_files`: arbitrary bytes as the three transaction files of a repository,
//! `integrity.N`, `hints.N` and `index.N`, loaded from disk by
//! `rborg_repository::index_files` as `LocalRepository` opens a repository: the integrity
//! file (msgpack holding JSON digests) is parsed and the index and hints are verified against
//! it (XXH64 per part) while they are read.
//!
//! Input layout: `u32 LE` transaction N (the digests cover the file names), `u32 LE` integrity
//! length, `u32 LE` hints length, the integrity bytes, the hints bytes, then the index bytes
//! (lengths past the end are clipped), so a seed is the three real files of one borg
//! transaction, concatenated (`testdata/fuzz/make_seeds.py`).
//!
//! Property beyond "no panic": the files `index_files::save` writes for a loaded index and
//! hints load back, verified, to the same content. The files live under `$RBORG_FUZZ_DIR`.
//! Regression test: `crates/repository/tests/fuzz_regressions.rs`.

use std::path::Path;

use rborg_repository::index_files;

fn split(data: &[u8]) -> (u32, &[u8], &[u8], &[u8]) {
    let num = |at: usize| {
        data.get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (txn, a, b) = (num(0), num(4) as usize, num(8) as usize);
    let rest = data.get(12..).unwrap_or_default();
    let (integrity, rest) = rest.split_at(a.min(rest.len()));
    let (hints, index) = rest.split_at(b.min(rest.len()));
    (txn, integrity, hints, index)
}

/// One fuzz unit (`dir`: a scratch directory of its own); whether the input was accepted
/// (parsed, opened) by the loader.
pub fn run(data: &[u8], dir: &Path) -> bool {
    let repo = dir.join("r");
    let _ = std::fs::remove_dir_all(&repo);
    std::fs::create_dir_all(&repo).expect("repo directory");
    let (txn, integrity, hints, index) = split(data);
    std::fs::write(repo.join(format!("integrity.{txn}")), integrity).expect("write");
    std::fs::write(repo.join(format!("hints.{txn}")), hints).expect("write");
    std::fs::write(repo.join(format!("index.{txn}")), index).expect("write");
    let _ = index_files::latest_transaction_id(&repo);
    let _ = index_files::read_integrity(&repo, txn, "index");
    let loaded_index = index_files::load_index(&repo, txn);
    let loaded_hints = index_files::load_hints_parsed(&repo, txn);
    let accepted = loaded_index.is_ok() && loaded_hints.is_ok();
    if let (Ok(index), Ok(hints)) = (loaded_index, loaded_hints) {
        let out = dir.join("saved");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).expect("save directory");
        let next = txn.wrapping_add(1);
        if index_files::save(&out, next, &index, &hints.hints).is_ok() {
            let index2 = index_files::load_index(&out, next).expect("reload saved index");
            let hints2 = index_files::load_hints(&out, next).expect("reload saved hints");
            assert_eq!(index2.to_bytes(), index.to_bytes());
            // `load_hints` drops shadow segments newer than the transaction
            let mut want = hints.hints.clone();
            for segs in want.shadow_index.values_mut() {
                segs.retain(|&s| s <= next);
            }
            assert_eq!(hints2, want);
        }
    }
    accepted
}
