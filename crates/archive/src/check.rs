//! The archive consistency check and repair of `borg check` (borg 1.2.4 `archive.py`
//! `ArchiveChecker`).
//!
//! Steps, as borg runs them:
//! 1. list every object ID of the repository (the in-memory reference count table);
//! 2. `--verify-data`: decrypt, decompress and ID-check every object in segment order; with
//!    `--repair`, defect objects are deleted so step 4 replaces them;
//! 3. load the manifest, or rebuild it from the archive metadata objects found by decrypting
//!    every object (`rebuild_manifest`; duplicate names get a `.1`, `.2`, ... suffix);
//! 4. walk the selected archives (`rebuild_refcounts`): a missing or corrupted metadata object
//!    drops the archive from the manifest; the item stream is read robustly (missing or
//!    garbled item chunks are skipped and the stream resynchronised, invalid items dropped); a
//!    missing file chunk is replaced by an all-zero chunk of the same size and the original list
//!    kept as `chunks_healthy`, so a later check heals the file when the chunk reappears; the
//!    item stream and metadata object are rewritten when anything changed;
//! 5. with every archive checked, objects nothing references are orphans (`orphan_chunks_check`);
//!    repair deletes them, together with the objects step 4 superseded;
//! 6. repair writes the manifest and commits.
//!
//! borg 1.2.4 neither writes nor checks archive TAMs; the checker does not check them either.
//! A rewritten archive keeps a TAM if it had one (a fresh, valid one). Messages are borg's, so
//! scripts that read `borg check` output read rborg's the same way.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{channel, sync_channel, SyncSender};
use std::sync::{Arc, Mutex};

use rborg_chunker::ChunkerParams;
use rborg_compress::{CompressionSpec, MAX_DATA_SIZE};
use rborg_crypto::{msgpack, Key, TamContext};
use rborg_repository::{IdMap, IdSet, ObjectId, Repository};
use rmpv::Value;

use crate::archive::{decrypt_batch, finish_batch, open_object, worker_threads, PREFETCH};
use crate::item::{ChunkListEntry, Item};
use crate::manifest::{put_metadata_object, Operation, MANIFEST_ID};
use crate::robust_unpacker::{packed_key, valid_msgpacked_dict, RobustUnpacker};
use crate::Manifest;

/// How many IDs one `list` call asks for (borg's `LIST_SCAN_LIMIT`).
const LIST_SCAN_LIMIT: usize = 100_000;

/// How many IDs one `scan` call asks for in `--verify-data` (borg uses 100).
const SCAN_LIMIT: usize = 100;

/// borg's `ARCHIVE_KEYS` (`constants.py`): the keys an archive metadata dict may start with.
const ARCHIVE_KEYS: &[&str] = &[
    "version",
    "name",
    "items",
    "cmdline",
    "hostname",
    "username",
    "time",
    "time_end",
    "comment",
    "chunker_params",
    "recreate_cmdline",
    "recreate_source_id",
    "recreate_args",
    "recreate_partial_chunks",
    "size",
    "csize",
    "nfiles",
    "size_parts",
    "csize_parts",
    "nfiles_parts",
];

/// borg's `REQUIRED_ARCHIVE_KEYS`.
const REQUIRED_ARCHIVE_KEYS: &[&str] = &["version", "name", "items", "cmdline", "time"];

/// borg's `REQUIRED_ITEM_KEYS`.
const REQUIRED_ITEM_KEYS: &[&str] = &["path", "mtime"];

/// How many objects `find_key_sample` tries before giving up (borg's `make_key`).
const KEY_ATTEMPTS: usize = 999;

/// The level borg logs a line of the check at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Details, logged at DEBUG.
    Debug,
    /// Progress, logged at INFO.
    Info,
    /// Something noteworthy that is not an inconsistency, logged at WARNING.
    Warning,
    /// A problem, logged at ERROR.
    Error,
}

/// What went wrong so badly that the check could not go on.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The archive layer failed (e.g. the manifest needs an unsupported feature).
    #[error(transparent)]
    Archive(#[from] crate::Error),
    /// The repository failed (I/O, locking, ...).
    #[error(transparent)]
    Repository(#[from] rborg_repository::Error),
    /// Encryption of a repaired object failed.
    #[error(transparent)]
    Crypto(#[from] rborg_crypto::Error),
    /// Cutting a rewritten item stream failed.
    #[error(transparent)]
    Chunker(#[from] rborg_chunker::Error),
    /// No object of the repository has a known key type (borg's `make_key` `IntegrityError`).
    #[error("make_key: failed to create the key (tried {0} chunks)")]
    NoKey(usize),
}

/// Result type of the check.
pub type CheckResult<T> = std::result::Result<T, CheckError>;

/// Which archives the check walks (borg's `archive`, `first`, `last`, `glob`, `sort_by`).
pub enum Selection<'a> {
    /// One archive, named on the command line (`REPO::ARCHIVE`); missing is an error.
    Archive(String),
    /// The archives `select` picks from the (possibly rebuilt) manifest, in check order. `all`
    /// says that no `--first`/`--last`/`--glob-archives`/`--prefix` narrowed the selection,
    /// which the orphan check needs.
    Filter {
        /// Whether every archive is selected.
        all: bool,
        /// Picks the archive names to check.
        select: &'a dyn Fn(&Manifest) -> Vec<String>,
    },
}

/// How to run the check.
pub struct CheckOptions<'a> {
    /// Write repairs (borg `--repair`).
    pub repair: bool,
    /// Verify every object's MAC and ID first (borg `--verify-data`).
    pub verify_data: bool,
    /// Which archives to check.
    pub selection: Selection<'a>,
    /// The security directory's nonce file, for objects encrypted by the repair.
    pub nonce_file: PathBuf,
    /// The repository location, for messages.
    pub location: String,
}

/// Every object ID in the repository, in index order (borg's `init_chunks`).
pub fn all_object_ids(repository: &mut dyn Repository) -> rborg_repository::Result<Vec<ObjectId>> {
    let mut ids = Vec::new();
    let mut marker: Option<ObjectId> = None;
    loop {
        let batch = repository.list(Some(LIST_SCAN_LIMIT), marker.as_ref())?;
        let Some(last) = batch.last().copied() else {
            return Ok(ids);
        };
        marker = Some(last);
        ids.extend(batch);
    }
}

/// An object whose envelope has a known key type byte, to find and unlock the key with when the
/// manifest may be missing or damaged (borg's `make_key`: up to 999 objects are tried; the
/// manifest first here, as any object will do). `Ok(None)` for an empty repository.
pub fn find_key_sample(repository: &mut dyn Repository) -> CheckResult<Option<Vec<u8>>> {
    let mut ids = all_object_ids(repository)?;
    if ids.is_empty() {
        return Ok(None);
    }
    if let Some(pos) = ids.iter().position(|id| *id == MANIFEST_ID) {
        ids.swap(0, pos);
    }
    let attempts = ids.len().min(KEY_ATTEMPTS);
    for id in &ids[..attempts] {
        let cdata = repository.get(id)?;
        if rborg_crypto::KeyType::from_manifest(&cdata).is_ok() {
            return Ok(Some(cdata));
        }
    }
    Err(CheckError::NoKey(attempts))
}

/// Runs the archive check (borg's `ArchiveChecker.check`), logging through `log`. Returns
/// borg's result: true when no problem was found, or when repairing.
pub fn check_archives(
    repository: &mut dyn Repository,
    key: &Key,
    options: &CheckOptions,
    log: &mut dyn FnMut(Severity, &str),
) -> CheckResult<bool> {
    log(Severity::Info, "Starting archive consistency check...");
    let mut checker = Checker {
        repository,
        key,
        repair: options.repair,
        nonce_file: options.nonce_file.clone(),
        log,
        chunks: IdMap::default(),
        possibly_superseded: IdSet::default(),
        error_found: false,
        zero_chunks: HashMap::new(),
    };
    let check_all = match &options.selection {
        Selection::Archive(_) => false,
        Selection::Filter { all, .. } => *all,
    };
    checker.chunks = all_object_ids(checker.repository)?
        .into_iter()
        .map(|id| (id, 0))
        .collect();
    if checker.chunks.is_empty() {
        checker.error("Repository contains no apparent data at all, cannot continue check/repair.");
        return Ok(false);
    }
    if options.verify_data {
        checker.verify_data()?;
    }
    let mut manifest = if !checker.chunks.contains_key(&MANIFEST_ID) {
        checker.error_found("Repository manifest not found!");
        checker.rebuild_manifest()?
    } else {
        let cdata = checker.repository.get(&MANIFEST_ID)?;
        match Manifest::decode(key, &cdata, &options.location) {
            Ok(m) => {
                m.check_repository_compatibility(&[Operation::Check])?;
                m
            }
            Err(e) => {
                checker.error_found(&format!("Repository manifest is corrupted: {e}"));
                checker.chunks.remove(&MANIFEST_ID);
                checker.rebuild_manifest()?
            }
        }
    };
    checker.rebuild_refcounts(&mut manifest, &options.selection)?;
    checker.orphan_chunks_check(check_all)?;
    if checker.repair {
        checker.info("Writing Manifest.");
        manifest.write(checker.repository, key, checker.nonce_file.clone())?;
        checker.info("Committing repo.");
        checker.repository.commit(false, 0.1)?;
    }
    if checker.error_found {
        checker.error("Archive consistency check complete, problems found.");
    } else {
        checker.info("Archive consistency check complete, no problems found.");
    }
    Ok(checker.repair || !checker.error_found)
}

struct Checker<'a, 'l> {
    repository: &'a mut dyn Repository,
    key: &'a Key,
    repair: bool,
    nonce_file: PathBuf,
    log: &'l mut dyn FnMut(Severity, &str),
    /// Every known object with the number of references found so far (borg's `self.chunks`).
    chunks: IdMap<u64>,
    /// Objects a rewrite may have replaced: unreferenced ones are deleted, not reported.
    possibly_superseded: IdSet,
    error_found: bool,
    /// All-zero replacement chunks by size: (ID, stored size).
    zero_chunks: HashMap<u64, (ObjectId, u64)>,
}

/// One archive's item stream after the robust walk, packed again (compact even for archives
/// of millions of files).
struct WalkedItems {
    stream: Vec<u8>,
    /// Whether the items differ from what the stored stream holds.
    changed: bool,
}

impl Checker<'_, '_> {
    fn info(&mut self, msg: &str) {
        (self.log)(Severity::Info, msg);
    }

    fn error(&mut self, msg: &str) {
        (self.log)(Severity::Error, msg);
    }

    fn error_found(&mut self, msg: &str) {
        self.error_found = true;
        self.error(msg);
    }

    /// Stores a new object the way borg's `key.encrypt` does (lz4) when repairing.
    fn put(&mut self, id: &ObjectId, plaintext: &[u8]) -> CheckResult<()> {
        put_metadata_object(
            self.repository,
            self.key,
            id,
            plaintext,
            self.nonce_file.clone(),
        )?;
        Ok(())
    }

    /// borg's `add_reference`: count a reference to `id`; an object not in the repository yet
    /// is stored (repair only) from `plaintext`.
    fn add_reference(&mut self, id: ObjectId, plaintext: Option<&[u8]>) -> CheckResult<()> {
        if let Some(n) = self.chunks.get_mut(&id) {
            *n += 1;
            return Ok(());
        }
        self.chunks.insert(id, 1);
        if self.repair {
            if let Some(p) = plaintext {
                self.put(&id, p)?;
            }
        }
        Ok(())
    }

    fn mark_as_possibly_superseded(&mut self, id: ObjectId) {
        if self.chunks.get(&id).copied().unwrap_or(0) == 0 {
            self.possibly_superseded.insert(id);
        }
    }

    /// borg's `verify_data`.
    fn verify_data(&mut self) -> CheckResult<()> {
        self.info("Starting cryptographic data integrity verification...");
        let count_index = self.chunks.len();
        let mut errors = 0usize;
        let mut defect: Vec<ObjectId> = Vec::new();
        // Objects are read here in scan order and verified (decrypt, decompress, ID hash) in
        // batches by one worker per core while the next ones are read: a batch's MACs and ID
        // hashes are computed side by side in SIMD lanes. One batch waits at most (a queue per
        // worker cost 20 MB of peak RSS for 4% of speed). Failures are reported in scan order
        // at the end.
        let threads = worker_threads();
        let key = self.key;
        let (work_tx, work_rx) = sync_channel::<VerifyBatch>(1);
        // shared by the workers only: if they all stop (a panic), sending fails instead of
        // blocking for ever
        let work_rx = Arc::new(Mutex::new(work_rx));
        let (fail_tx, fail_rx) = channel::<(usize, ObjectId, String)>();
        // (scan position, id, message, whether the object is defect)
        let mut failures: Vec<(usize, ObjectId, String, bool)> = Vec::new();
        let repository = &mut *self.repository;
        let scanned = std::thread::scope(|s| {
            for _ in 0..threads {
                let (work_rx, fail_tx) = (Arc::clone(&work_rx), fail_tx.clone());
                s.spawn(move || loop {
                    let job = match work_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => break,
                    };
                    let Ok(batch) = job else { break };
                    for (seq, id, e) in verify_batch(key, batch) {
                        let msg = format!("chunk {}, integrity error: {e}", hex::encode(id));
                        let _ = fail_tx.send((seq, id, msg));
                    }
                });
            }
            drop(work_rx);
            read_for_verification(repository, work_tx, &mut failures)
        });
        drop(fail_tx);
        let count_segments = scanned?;
        failures.extend(
            fail_rx
                .try_iter()
                .map(|(seq, id, msg)| (seq, id, msg, true)),
        );
        failures.sort_by_key(|f| f.0);
        for (_, id, msg, is_defect) in failures {
            errors += 1;
            self.error_found(&msg);
            if is_defect {
                defect.push(id);
            }
        }
        if count_index != count_segments {
            self.error("Repo/Chunks index object count vs. segment files object count mismatch.");
            self.error(&format!(
                "Repo/Chunks index: {count_index} objects != segment files: {count_segments} objects"
            ));
        }
        if !defect.is_empty() {
            if self.repair {
                (self.log)(
                    Severity::Warning,
                    "Found defect chunks. They will be deleted now, so affected files can get repaired now and maybe healed later.",
                );
                for id in defect {
                    // read again: a transient error (RAM, network) would not repeat
                    let again = self
                        .repository
                        .get(&id)
                        .map_err(|e| e.to_string())
                        .and_then(|c| verify_object(self.key, &id, &c));
                    if again.is_err() {
                        self.chunks.remove(&id);
                        self.repository.delete(&id)?;
                        (self.log)(
                            Severity::Debug,
                            &format!("chunk {} deleted.", hex::encode(id)),
                        );
                    } else {
                        (self.log)(
                            Severity::Warning,
                            &format!(
                                "chunk {} not deleted, did not consistently fail.",
                                hex::encode(id)
                            ),
                        );
                    }
                }
            } else {
                (self.log)(
                    Severity::Warning,
                    "Found defect chunks. With --repair, they would get deleted, so affected files could get repaired then and maybe healed later.",
                );
                for id in defect {
                    (self.log)(
                        Severity::Debug,
                        &format!("chunk {} is defect.", hex::encode(id)),
                    );
                }
            }
        }
        let line = format!(
            "Finished cryptographic data integrity verification, verified {count_segments} chunks with {errors} integrity errors."
        );
        if errors > 0 {
            self.error(&line);
        } else {
            self.info(&line);
        }
        Ok(())
    }

    /// borg's `rebuild_manifest`: a new manifest listing every archive metadata object found.
    fn rebuild_manifest(&mut self) -> CheckResult<Manifest> {
        self.info("Rebuilding missing manifest, this might take some time...");
        let keys_serialized: Vec<Vec<u8>> = ARCHIVE_KEYS.iter().map(|k| packed_key(k)).collect();
        let mut manifest = Manifest::new();
        let ids: Vec<ObjectId> = self.chunks.keys().copied().collect();
        for batch in ids.chunks(PREFETCH) {
            let cdatas = self.repository.get_many(batch)?;
            for (id, cdata) in batch.iter().zip(cdatas) {
                let data = match open_object(self.key, id, &cdata) {
                    Ok(d) => d,
                    Err(e) => {
                        self.error_found(&format!("Skipping corrupted chunk: {e}"));
                        continue;
                    }
                };
                if !valid_msgpacked_dict(&data, &keys_serialized)
                    || !contains(&data, b"cmdline")
                    || !contains(&data, b"\xa7version\x01")
                {
                    continue;
                }
                let Ok(archive) = msgpack::unpack(&data) else {
                    continue;
                };
                if !REQUIRED_ARCHIVE_KEYS
                    .iter()
                    .all(|k| msgpack::map_get(&archive, k).is_some())
                {
                    continue;
                }
                let name = raw_text(msgpack::map_get(&archive, "name"));
                let time = raw_text(msgpack::map_get(&archive, "time"));
                self.info(&format!("Found archive {name}"));
                let mut stored_name = name.clone();
                if manifest.archives.contains_key(&name) {
                    let mut i = 1;
                    while manifest.archives.contains_key(&format!("{name}.{i}")) {
                        i += 1;
                    }
                    stored_name = format!("{name}.{i}");
                    (self.log)(
                        Severity::Warning,
                        &format!("Duplicate archive name {name}, storing as {stored_name}"),
                    );
                }
                manifest
                    .archives
                    .insert(stored_name, crate::ArchiveEntry { id: *id, time });
            }
        }
        self.info("Manifest rebuild complete.");
        Ok(manifest)
    }

    /// borg's `rebuild_refcounts`: walk the selected archives, counting references and
    /// repairing what is missing.
    fn rebuild_refcounts(
        &mut self,
        manifest: &mut Manifest,
        selection: &Selection,
    ) -> CheckResult<()> {
        self.chunks.remove(&MANIFEST_ID);
        let names: Vec<String> = match selection {
            Selection::Archive(name) => {
                if !manifest.archives.contains_key(name) {
                    self.error_found(&format!("Archive '{name}' not found."));
                    return Ok(());
                }
                vec![name.clone()]
            }
            Selection::Filter { select, .. } => select(&*manifest),
        };
        let count = names.len();
        for (i, name) in names.iter().enumerate() {
            let Some(entry) = manifest.archives.get(name).cloned() else {
                continue;
            };
            self.info(&format!("Analyzing archive {name} ({}/{count})", i + 1));
            let archive_id = entry.id;
            if !self.chunks.contains_key(&archive_id) {
                self.error_found(&format!(
                    "Archive metadata block {} is missing!",
                    hex::encode(archive_id)
                ));
                manifest.archives.remove(name);
                continue;
            }
            self.mark_as_possibly_superseded(archive_id);
            let cdata = self.repository.get(&archive_id)?;
            let meta = match open_object(self.key, &archive_id, &cdata)
                .map_err(|e| e.to_string())
                .and_then(|data| parse_archive(&data))
            {
                Ok(m) => m,
                Err(e) => {
                    self.error_found(&format!(
                        "Archive metadata block {} is corrupted: {e}",
                        hex::encode(archive_id)
                    ));
                    manifest.archives.remove(name);
                    continue;
                }
            };
            let walked = self.walk_items(name, &meta.items, &manifest.item_keys)?;
            for id in &meta.items {
                self.mark_as_possibly_superseded(*id);
            }
            if !walked.changed {
                // the stored stream and metadata object are exactly what a rewrite would give
                for id in &meta.items {
                    self.add_reference(*id, None)?;
                }
                self.add_reference(archive_id, None)?;
                continue;
            }
            let item_ids = self.write_item_stream(&walked.stream)?;
            let data = meta.with_items(self.key, &item_ids)?;
            let new_id = self.key.id_hash(&data);
            self.add_reference(new_id, Some(&data))?;
            manifest.archives.insert(
                name.clone(),
                crate::ArchiveEntry {
                    id: new_id,
                    time: entry.time,
                },
            );
        }
        Ok(())
    }

    /// borg's `robust_iterator` feeding `verify_file_chunks`: the archive's valid items, their
    /// chunk lists checked (and repaired), packed again; missing or undecodable item chunks and
    /// invalid items are reported and skipped.
    fn walk_items(
        &mut self,
        archive_name: &str,
        item_ids: &[ObjectId],
        item_keys: &[String],
    ) -> CheckResult<WalkedItems> {
        let allowed: HashSet<&[u8]> = item_keys.iter().map(|k| k.as_bytes()).collect();
        let mut unpacker = RobustUnpacker::new(
            |v: &Value| v.is_map() && msgpack::map_get(v, "path").is_some(),
            item_keys,
        );
        let mut out = WalkedItems {
            stream: Vec::new(),
            changed: false,
        };
        let mut chunk_no = 0usize;
        let mut after_gap = false;
        let mut start = 0;
        while start < item_ids.len() {
            let present = self.chunks.contains_key(&item_ids[start]);
            let end = item_ids[start..]
                .iter()
                .position(|id| self.chunks.contains_key(id) != present)
                .map_or(item_ids.len(), |n| start + n);
            let group = &item_ids[start..end];
            start = end;
            if !present {
                for id in group {
                    self.report(&mut out, "item metadata chunk missing", id, chunk_no);
                    chunk_no += 1;
                }
                after_gap = true;
                continue;
            }
            if after_gap {
                unpacker.resync();
            }
            for batch in group.chunks(PREFETCH) {
                let cdatas = self.repository.get_many(batch)?;
                for (id, cdata) in batch.iter().zip(cdatas) {
                    match open_object(self.key, id, &cdata) {
                        Ok(data) => {
                            unpacker.feed(&data);
                            loop {
                                match unpacker.next_value() {
                                    Ok(Some(value)) => match valid_item(value, &allowed) {
                                        Ok((mut item, dropped_keys)) => {
                                            let mut modified = dropped_keys;
                                            if item.chunks.is_some() {
                                                modified |= self
                                                    .verify_file_chunks(archive_name, &mut item)?;
                                            }
                                            out.changed |= modified;
                                            if modified {
                                                msgpack::pack_into(
                                                    &item.to_value(),
                                                    &mut out.stream,
                                                );
                                            } else {
                                                // kept as stored: no second packing
                                                out.stream.extend_from_slice(unpacker.last_raw());
                                            }
                                        }
                                        Err(reason) => self.report(
                                            &mut out,
                                            &format!("Did not get expected metadata dict when unpacking item metadata ({reason})"),
                                            id,
                                            chunk_no,
                                        ),
                                    },
                                    Ok(None) => break,
                                    Err(_) => {
                                        self.report(
                                            &mut out,
                                            "Unpacker crashed while unpacking item metadata, trying to resync...",
                                            id,
                                            chunk_no,
                                        );
                                        unpacker.resync();
                                        break;
                                    }
                                }
                            }
                        }
                        Err(e) => self.report(&mut out, &e.to_string(), id, chunk_no),
                    }
                    chunk_no += 1;
                }
            }
        }
        Ok(out)
    }

    fn report(&mut self, out: &mut WalkedItems, msg: &str, id: &ObjectId, chunk_no: usize) {
        out.changed = true;
        self.error_found(&format!("{msg} [chunk: {chunk_no:06}_{}]", hex::encode(id)));
    }

    /// An all-zero chunk of `size` bytes: its ID, stored size and plaintext.
    fn replacement_chunk(&mut self, size: u64) -> CheckResult<(ObjectId, u64, Vec<u8>)> {
        let data = vec![
            0u8;
            usize::try_from(size)
                .unwrap_or(usize::MAX)
                .min(MAX_DATA_SIZE)
        ];
        if let Some(&(id, csize)) = self.zero_chunks.get(&size) {
            return Ok((id, csize, data));
        }
        let id = self.key.id_hash(&data);
        // the stored size does not depend on the nonce
        let compressed = CompressionSpec::Lz4.compressor().compress(&data);
        let csize = self.key.encrypt(&compressed, 0).len() as u64;
        self.zero_chunks.insert(size, (id, csize));
        Ok((id, csize, data))
    }

    /// borg's `verify_file_chunks`: replace missing chunks by all-zero ones, heal files whose
    /// chunks reappeared. Returns whether the item changed.
    fn verify_file_chunks(&mut self, archive_name: &str, item: &mut Item) -> CheckResult<bool> {
        // the common case, a file never damaged whose chunks are all there, counts references
        // without the bookkeeping of a repair
        if item.chunks_healthy.is_none() {
            let chunks = item.chunks.as_deref().unwrap_or_default();
            if chunks.iter().all(|c| self.chunks.contains_key(&c.id)) {
                for c in chunks {
                    if let Some(n) = self.chunks.get_mut(&c.id) {
                        *n += 1;
                    }
                }
                self.warn_size_inconsistency(archive_name, item);
                return Ok(false);
            }
        }
        let path = String::from_utf8_lossy(&item.path).into_owned();
        let current = item.chunks.clone().unwrap_or_default();
        let mut changed = false;
        let mut has_healthy = item.chunks_healthy.is_some();
        if has_healthy && item.chunks_healthy.as_ref().map(Vec::len) != Some(current.len()) {
            (self.log)(
                Severity::Warning,
                &format!("{archive_name}: {path}: Invalid chunks_healthy metadata removed!"),
            );
            item.chunks_healthy = None;
            has_healthy = false;
            changed = true;
        }
        let healthy = item
            .chunks_healthy
            .clone()
            .unwrap_or_else(|| current.clone());
        let mut replaced = false;
        let mut list: Vec<ChunkListEntry> = Vec::with_capacity(current.len());
        let mut offset = 0u64;
        for (cur, good) in current.iter().zip(&healthy) {
            let size = good.size;
            let range = format!("Byte {}-{}", offset, offset + size);
            let entry = if !self.chunks.contains_key(&good.id) {
                if cur == good {
                    self.error_found(&format!(
                        "{archive_name}: {path}: New missing file chunk detected ({range}, Chunk {}). Replacing with all-zero chunk.",
                        hex::encode(good.id)
                    ));
                    replaced = true;
                    let (id, csize, data) = self.replacement_chunk(size)?;
                    self.add_reference(id, Some(&data))?;
                    ChunkListEntry { id, size, csize }
                } else {
                    self.info(&format!(
                        "{archive_name}: {path}: Previously missing file chunk is still missing ({range}, Chunk {}). It has an all-zero replacement chunk already.",
                        hex::encode(good.id)
                    ));
                    if self.chunks.contains_key(&cur.id) {
                        self.add_reference(cur.id, None)?;
                        *cur
                    } else {
                        (self.log)(
                            Severity::Warning,
                            &format!(
                                "{archive_name}: {path}: Missing all-zero replacement chunk detected ({range}, Chunk {}). Generating new replacement chunk.",
                                hex::encode(cur.id)
                            ),
                        );
                        self.error_found = true;
                        replaced = true;
                        let (id, csize, data) = self.replacement_chunk(size)?;
                        self.add_reference(id, Some(&data))?;
                        ChunkListEntry { id, size, csize }
                    }
                }
            } else {
                if cur != good {
                    self.info(&format!(
                        "{archive_name}: {path}: Healed previously missing file chunk! ({range}, Chunk {}).",
                        hex::encode(good.id)
                    ));
                    self.mark_as_possibly_superseded(cur.id);
                }
                self.add_reference(good.id, None)?;
                *good
            };
            list.push(entry);
            offset += size;
        }
        if replaced && !has_healthy {
            item.chunks_healthy = Some(current.clone());
        }
        if has_healthy && list == healthy {
            self.info(&format!(
                "{archive_name}: {path}: Completely healed previously damaged file!"
            ));
            item.chunks_healthy = None;
        }
        changed |= list != current || (has_healthy && item.chunks_healthy.is_none());
        item.chunks = Some(list);
        self.warn_size_inconsistency(archive_name, item);
        Ok(changed)
    }

    /// borg's warning for a file whose `size` is not the sum of its chunks' sizes.
    fn warn_size_inconsistency(&mut self, archive_name: &str, item: &Item) {
        let Some(size) = item.size else { return };
        let chunks_size: u64 = item.chunks.iter().flatten().map(|c| c.size).sum();
        if size != chunks_size {
            let path = String::from_utf8_lossy(&item.path);
            (self.log)(
                Severity::Warning,
                &format!(
                    "{archive_name}: {path}: size inconsistency detected: size {size}, chunks size {chunks_size}"
                ),
            );
        }
    }

    /// Cuts a packed item stream with the items chunker (borg's `ChunkBuffer`) and references
    /// (and, repairing, stores) its chunks. Returns the chunk IDs.
    fn write_item_stream(&mut self, stream: &[u8]) -> CheckResult<Vec<ObjectId>> {
        let pieces =
            rborg_chunker::chunk_slice(&ChunkerParams::ITEMS, self.key.chunk_seed(), stream)?;
        let mut ids = Vec::with_capacity(pieces.len());
        for piece in pieces {
            let start = usize::try_from(piece.offset).unwrap_or(usize::MAX);
            let data = &stream[start..start + piece.len];
            let id = self.key.id_hash(data);
            self.add_reference(id, Some(data))?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// borg's `orphan_chunks_check`.
    fn orphan_chunks_check(&mut self, check_all: bool) -> CheckResult<()> {
        if !check_all {
            self.info("Orphaned objects check skipped (needs all archives checked).");
            return Ok(());
        }
        let unused: Vec<ObjectId> = self
            .chunks
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(id, _)| *id)
            .collect();
        let orphaned = unused
            .iter()
            .filter(|id| !self.possibly_superseded.contains(*id))
            .count();
        if orphaned > 0 {
            self.error_found(&format!("{orphaned} orphaned objects found!"));
        }
        if self.repair && !unused.is_empty() {
            self.info(&format!(
                "Deleting {orphaned} orphaned and {} superseded objects...",
                self.possibly_superseded.len()
            ));
            for id in &unused {
                self.repository.delete(id)?;
            }
            self.info("Finished deleting orphaned/superseded objects.");
        }
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn raw_text(v: Option<&Value>) -> String {
    v.and_then(msgpack::as_raw)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// borg's `valid_item`: a map with the required keys and only allowed ones (Attic <= 0.13's
/// meaningless `acl` key is dropped). Returns the item and whether a key was dropped.
fn valid_item(value: Value, allowed: &HashSet<&[u8]>) -> Result<(Item, bool), String> {
    let Value::Map(mut entries) = value else {
        return Err("not a dictionary".into());
    };
    let before = entries.len();
    entries.retain(|(k, _)| msgpack::key_bytes(k) != b"acl");
    let dropped = entries.len() != before;
    let keys: Vec<&[u8]> = entries.iter().map(|(k, _)| msgpack::key_bytes(k)).collect();
    let missing: Vec<&str> = REQUIRED_ITEM_KEYS
        .iter()
        .filter(|k| !keys.contains(&k.as_bytes()))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing required keys: {}", missing.join(", ")));
    }
    let invalid: Vec<String> = keys
        .iter()
        .filter(|k| !allowed.contains(*k))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    if !invalid.is_empty() {
        return Err(format!("invalid keys: {}", invalid.join(", ")));
    }
    let item = Item::from_value(&Value::Map(entries)).map_err(|e| e.to_string())?;
    Ok((item, dropped))
}

/// The parts of an archive metadata object the check needs, read leniently as borg 1.2.4 does
/// (no TAM check).
struct ParsedArchive {
    map: Vec<(Value, Value)>,
    items: Vec<ObjectId>,
    had_tam: bool,
}

fn parse_archive(data: &[u8]) -> Result<ParsedArchive, String> {
    let value = msgpack::unpack(data).map_err(|e| e.to_string())?;
    let Value::Map(map) = value else {
        return Err("archive metadata is not a dictionary".into());
    };
    let get = |k: &str| {
        map.iter()
            .find(|(key, _)| msgpack::key_bytes(key) == k.as_bytes())
            .map(|(_, v)| v)
    };
    if get("version").and_then(Value::as_u64) != Some(1) {
        return Err("Unknown archive metadata version".into());
    }
    let items = get("items")
        .and_then(Value::as_array)
        .ok_or("archive metadata has no item list")?
        .iter()
        .map(|v| msgpack::as_raw(v).and_then(|b| <ObjectId>::try_from(b).ok()))
        .collect::<Option<Vec<_>>>()
        .ok_or("an item chunk ID is not 32 bytes")?;
    let had_tam = get("tam").is_some();
    Ok(ParsedArchive {
        map,
        items,
        had_tam,
    })
}

impl ParsedArchive {
    /// The metadata with a new item list, packed in the stored key order; a TAM the archive
    /// had is recomputed.
    fn with_items(&self, key: &Key, items: &[ObjectId]) -> CheckResult<Vec<u8>> {
        let list = Value::Array(items.iter().map(|id| Value::Binary(id.to_vec())).collect());
        let map: Vec<(Value, Value)> = self
            .map
            .iter()
            .map(|(k, v)| {
                if msgpack::key_bytes(k) == b"items" {
                    (k.clone(), list.clone())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect();
        if self.had_tam {
            Ok(rborg_crypto::pack_and_authenticate(
                key,
                &Value::Map(map),
                TamContext::Archive,
            )?)
        } else {
            Ok(msgpack::pack(&Value::Map(map)))
        }
    }
}

/// Objects handed to a verifier at once: (scan position, ID, stored bytes).
type VerifyBatch = Vec<(usize, ObjectId, Vec<u8>)>;

/// A verify batch is handed over once it holds this many objects (the four BLAKE2b lanes)
/// ...
const VERIFY_BATCH_OBJECTS: usize = 4;
/// ... or this many stored bytes, whichever comes first (4 MiB: 10 MB more peak RSS, no
/// faster).
const VERIFY_BATCH_BYTES: usize = 2 << 20;

/// The reading half of `verify_data`: scans every object in segment order, hands what reads to
/// the verifiers through `work` and records what does not read in `failures`. Returns the
/// number of objects scanned.
fn read_for_verification(
    repository: &mut dyn Repository,
    work: SyncSender<VerifyBatch>,
    failures: &mut Vec<(usize, ObjectId, String, bool)>,
) -> CheckResult<usize> {
    let mut marker: Option<ObjectId> = None;
    let mut seq = 0usize;
    let mut batch: VerifyBatch = Vec::with_capacity(VERIFY_BATCH_OBJECTS);
    let mut batch_bytes = 0usize;
    loop {
        let ids = repository.scan(Some(SCAN_LIMIT), marker.as_ref())?;
        let Some(last) = ids.last().copied() else {
            if !batch.is_empty() {
                // a send fails only when every verifier is gone (a panic, which the scope
                // that started them passes on)
                let _ = work.send(batch);
            }
            return Ok(seq);
        };
        marker = Some(last);
        // all of them in flight at once through `borg serve` (borg's `get_many` here)
        repository.preload(&ids)?;
        for id in ids {
            match repository.get(&id) {
                Ok(cdata) => {
                    batch_bytes += cdata.len();
                    batch.push((seq, id, cdata));
                    if batch.len() >= VERIFY_BATCH_OBJECTS || batch_bytes >= VERIFY_BATCH_BYTES {
                        let full =
                            std::mem::replace(&mut batch, Vec::with_capacity(VERIFY_BATCH_OBJECTS));
                        batch_bytes = 0;
                        if work.send(full).is_err() {
                            return Ok(seq);
                        }
                    }
                }
                Err(
                    e @ (rborg_repository::Error::Integrity(_)
                    | rborg_repository::Error::ObjectNotFound { .. }),
                ) => {
                    let is_defect = matches!(e, rborg_repository::Error::Integrity(_));
                    failures.push((
                        seq,
                        id,
                        format!("chunk {}: {e}", hex::encode(id)),
                        is_defect,
                    ));
                }
                Err(e) => return Err(e.into()),
            }
            seq += 1;
        }
    }
}

/// [`verify_object`] for a batch, the MACs and ID hashes of its objects computed side by side
/// ([`decrypt_batch`], [`finish_batch`]). Returns the failures: (scan position, ID, what
/// failed), with the messages [`verify_object`] gives.
fn verify_batch(key: &Key, mut batch: VerifyBatch) -> Vec<(usize, ObjectId, String)> {
    let mut failures = Vec::new();
    // the manifest is not stored under its ID hash
    batch.retain(|(seq, id, cdata)| {
        if *id != MANIFEST_ID {
            return true;
        }
        if let Err(e) = verify_object(key, id, cdata) {
            failures.push((*seq, *id, e));
        }
        false
    });
    let (seqs, ids): (Vec<usize>, Vec<ObjectId>) =
        batch.iter().map(|(seq, id, _)| (*seq, *id)).unzip();
    let stored = batch.into_iter().map(|(_, _, cdata)| Ok(cdata)).collect();
    let decrypted = decrypt_batch(key, &ids, stored);
    // decompressed and ID-checked in groups of at most VERIFY_PLAINTEXT_BYTES, so that a
    // batch of well compressed chunks does not hold all their plaintexts at once
    let mut group = VerifyGroup::default();
    for ((seq, id), object) in seqs.into_iter().zip(ids).zip(decrypted) {
        let plaintext = match &object {
            Ok(object) => object.declared_len().unwrap_or(VERIFY_PLAINTEXT_BYTES),
            Err(_) => 0,
        };
        if !group.ids.is_empty() && group.plaintext + plaintext > VERIFY_PLAINTEXT_BYTES {
            group.finish(key, &mut failures);
        }
        group.seqs.push(seq);
        group.ids.push(id);
        group.objects.push(object);
        group.plaintext += plaintext;
    }
    group.finish(key, &mut failures);
    failures
}

/// How much plaintext a verifier decompresses at a time: more than a few of borg's usual
/// 2 MiB chunks, so that their ID hashes are computed side by side, far less than the
/// 4 x 8 MiB a batch of four large, well compressed chunks decompresses to (`heaptrack` of
/// a 1 GiB check: 57 of its 60 MB peak heap was such plaintext). A larger object is
/// decompressed alone.
const VERIFY_PLAINTEXT_BYTES: usize = 8 << 20;

/// Decrypted objects of a verify batch waiting to be decompressed and ID-checked together.
/// (Keeping the plaintext buffers from group to group raised peak RSS by 15-20 MB on the
/// 1 GiB check and was no faster: the freed buffers go back to malloc's arenas anyway.)
#[derive(Default)]
struct VerifyGroup {
    seqs: Vec<usize>,
    ids: Vec<ObjectId>,
    objects: Vec<crate::archive::ReadResult<crate::archive::Decrypted>>,
    /// The plaintext their payloads declare.
    plaintext: usize,
}

impl VerifyGroup {
    /// Decompresses and ID-checks the group ([`finish_batch`]), adds its failures to
    /// `failures` and empties it.
    fn finish(&mut self, key: &Key, failures: &mut Vec<(usize, ObjectId, String)>) {
        let objects = std::mem::take(&mut self.objects);
        let opened = finish_batch(key, &self.ids, objects);
        for ((seq, id), opened) in self.seqs.drain(..).zip(self.ids.drain(..)).zip(opened) {
            if let Err(e) = opened {
                failures.push((seq, id, e.to_string()));
            }
        }
        self.plaintext = 0;
    }
}

/// Decrypt, decompress and ID-check one object (the manifest is only decrypted and
/// decompressed: it is not stored under its ID hash).
fn verify_object(key: &Key, id: &ObjectId, cdata: &[u8]) -> Result<(), String> {
    if *id == MANIFEST_ID {
        let compressed = key.decrypt(None, cdata).map_err(|e| e.to_string())?;
        rborg_compress::decompress(&compressed, None, MAX_DATA_SIZE)
            .map(|_| ())
            .map_err(|e| e.to_string())
    } else {
        open_object(key, id, cdata)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, Value)]) -> Value {
        Value::Map(
            entries
                .iter()
                .map(|(k, v)| (Value::from(*k), v.clone()))
                .collect(),
        )
    }

    fn allowed() -> Vec<String> {
        crate::manifest::ITEM_KEYS
            .iter()
            .map(|k| k.to_string())
            .collect()
    }

    #[test]
    fn items_are_validated_as_borg_does() {
        let keys = allowed();
        let allowed: HashSet<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let good = map(&[("path", Value::from("a")), ("mtime", Value::from(1))]);
        let (item, dropped) = valid_item(good, &allowed).unwrap();
        assert_eq!(item.path, b"a");
        assert!(!dropped);
        // Attic <= 0.13 wrote a meaningless `acl` key: dropped, the item kept
        let attic = map(&[
            ("path", Value::from("b")),
            ("mtime", Value::from(1)),
            ("acl", Value::Nil),
        ]);
        let (item, dropped) = valid_item(attic, &allowed).unwrap();
        assert!(dropped);
        assert!(!item.encode().windows(3).any(|w| w == b"acl"));
        let no_mtime = map(&[("path", Value::from("c"))]);
        assert_eq!(
            valid_item(no_mtime, &allowed).unwrap_err(),
            "missing required keys: mtime"
        );
        let unknown = map(&[
            ("path", Value::from("d")),
            ("mtime", Value::from(1)),
            ("bogus", Value::from(1)),
        ]);
        assert_eq!(
            valid_item(unknown, &allowed).unwrap_err(),
            "invalid keys: bogus"
        );
        assert_eq!(
            valid_item(Value::from(3), &allowed).unwrap_err(),
            "not a dictionary"
        );
    }

    /// A batch whose plaintexts outgrow [`VERIFY_PLAINTEXT_BYTES`] is verified in several
    /// groups; each failure (a wrong ID, a bad MAC) stays with its own object.
    #[test]
    fn verify_batch_groups_keep_failures_with_their_objects() {
        let key = Key::create(rborg_crypto::KeyType::Blake2Repokey, [1; 32]);
        let zstd: CompressionSpec = "zstd,3".parse().unwrap();
        let zstd = zstd.compressor();
        let sizes = [3 << 20, 3 << 20, 3 << 20, 5 << 20, 100, 100];
        assert!(sizes.iter().sum::<usize>() > VERIFY_PLAINTEXT_BYTES);
        let batch: VerifyBatch = sizes
            .iter()
            .enumerate()
            .map(|(seq, &size)| {
                let data = vec![seq as u8; size];
                let mut id = key.id_hash(&data);
                let mut stored = key.encrypt(&zstd.compress(&data), seq as u64 * 1000);
                match seq {
                    2 | 5 => id[0] ^= 1,
                    4 => *stored.last_mut().unwrap() ^= 1,
                    _ => {}
                }
                (seq, id, stored)
            })
            .collect();
        let mut failures = verify_batch(&key, batch);
        failures.sort_by_key(|f| f.0);
        let seqs: Vec<usize> = failures.iter().map(|f| f.0).collect();
        assert_eq!(seqs, [2, 4, 5], "{failures:?}");
        assert!(failures[0].2.ends_with("id verification failed"));
        assert!(failures[1].2.contains("MAC Authentication failed"));
        assert!(failures[2].2.ends_with("id verification failed"));
        // each reported ID is its own object's (5 carries a wrong one, 4 a right one)
        let want_4 = key.id_hash(&[4u8; 100]);
        assert_eq!(failures[1].1, want_4);
        assert_ne!(failures[2].1, key.id_hash(&[5u8; 100]));
    }

    #[test]
    fn archive_metadata_is_read_leniently() {
        let id = [7u8; 32];
        let meta = map(&[
            ("version", Value::from(1)),
            ("items", Value::Array(vec![Value::Binary(id.to_vec())])),
            ("tam", map(&[("type", Value::from("bogus"))])),
        ]);
        let parsed = parse_archive(&msgpack::pack(&meta)).unwrap();
        assert_eq!(parsed.items, vec![id]);
        assert!(parsed.had_tam);
        let v2 = map(&[("version", Value::from(2)), ("items", Value::Array(vec![]))]);
        assert_eq!(
            parse_archive(&msgpack::pack(&v2)).err().unwrap(),
            "Unknown archive metadata version"
        );
        assert!(parse_archive(b"\xc1garbage").is_err());
        let short = map(&[
            ("version", Value::from(1)),
            ("items", Value::Array(vec![Value::Binary(vec![1, 2])])),
        ]);
        assert!(parse_archive(&msgpack::pack(&short)).is_err());
    }
}
