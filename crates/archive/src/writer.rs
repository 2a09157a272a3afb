//! Writing archives: the storing half shared by `create`, `recreate` and `import-tar`
//! (borg 1.2 `archive.py` `Archive.add_item`/`chunk_file`/`save`, `ChunkBuffer`/`CacheChunkBuffer`,
//! `cache.py` `add_chunk`/`chunk_incref`; `internals/data-structures.rst` "Archives").
//!
//! Two layers:
//!
//! * [`ChunkStore`] is the session with the repository: it owns the (shared, lockable)
//!   repository handle, the nonce manager, the compressor and the set of [`KnownChunks`]. It is
//!   `Sync`, so the create pipeline's workers can hash/compress/encrypt in parallel through it.
//!   [`ChunkStore::commit`] writes the manifest and commits the repository.
//! * [`ArchiveWriter`] builds one archive: content (from a reader, or as existing chunk list
//!   entries whose references are only counted again), items packed into the item stream
//!   (cut with `ITEMS_CHUNKER_PARAMS`), and finally the archive metadata object with its TAM
//!   and the manifest entry ([`ArchiveWriter::finish`]).
//!
//! ```no_run
//! # fn demo(repo: &mut rborg_repository::LocalRepository, key: &rborg_crypto::Key,
//! #         manifest: &mut rborg_archive::Manifest) -> Result<(), rborg_archive::create::CreateError> {
//! use rborg_archive::writer::{ArchiveInfo, ArchiveWriter, ChunkStore};
//! let store = ChunkStore::open(repo, key, rborg_compress::CompressionSpec::default(), "/tmp/nonce".into())?;
//! let mut w = ArchiveWriter::new(key)?;
//! let mut item = rborg_archive::Item::default();
//! item.path = b"hello.txt".to_vec();
//! item.mode = Some(0o100644);
//! let chunks = w.add_content(&store, &b"hello"[..], &rborg_chunker::ChunkerParams::default())?;
//! item.chunks = Some(chunks);
//! w.add_item(&store, &item)?;
//! w.finish(&store, manifest, "demo", &ArchiveInfo::default())?;
//! store.commit(manifest)?;
//! # Ok(()) }
//! ```

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use chrono::{NaiveDateTime, Utc};
use rborg_chunker::{Chunker, ChunkerParams};
use rborg_compress::{CompressionSpec, Compressor};
use rborg_crypto::{msgpack, Key, NonceManager, RepoNonces, TamContext};
use rborg_repository::hashindex::{ChunkEntry, ChunkIndex, MAX_VALUE};
use rborg_repository::{ObjectId, Repository};
use rmpv::Value;

use crate::create::{CreateError, CreateResult, Created, Stats, ITEM_BUFFER_SIZE};
use crate::item::{ChunkListEntry, Item};
use crate::manifest::{ArchiveEntry, Manifest, ISO_FORMAT, MANIFEST_ID};

/// How many repository object IDs are requested per `list` call.
const LIST_PAGE: usize = 10_000;

/// Unused capacity an envelope may keep when it leaves [`ChunkStore::encrypt`]: more is given
/// back, since envelopes wait in the pipeline's queue (a chunk that compressed to a quarter
/// would otherwise hold its whole worst-case buffer).
const ENVELOPE_SLACK: usize = 64 << 10;

fn lock_err<T>(_: T) -> CreateError {
    CreateError::Internal("lock poisoned".into())
}

/// The deduplication seam: which objects the repository holds, with their reference counts
/// and their plaintext and stored sizes when known: borg's chunks cache `ChunkIndex`
/// (`cache.py` `LocalCache.chunks`, internals "The chunks cache"), in borg's own table.
///
/// With a synchronised client cache the set *is* the cache's chunks index, moved in for the
/// run ([`KnownChunks::take_from_cache`]) and handed back after it ([`KnownChunks::return_to`]):
/// references are counted in place as borg's `chunk_incref` does, so a backup holds one
/// table of the repository's chunks, not the cache's plus a copy plus a map of this run's
/// references (at a million one-chunk files that was ~200 bytes per file). Without a cache
/// (borg's `AdHocCache`) it is filled from `Repository::list` with sizes unknown (stored as
/// `csize == 0`, which no stored object has: every envelope has a header) and
/// "infinite" reference counts; the stored size of such a chunk is read from the
/// repository on first use.
#[derive(Debug, Default)]
pub struct KnownChunks {
    index: RwLock<ChunkIndex>,
}

/// The entry of an object whose sizes are not known (yet).
const SIZES_UNKNOWN: ChunkEntry = ChunkEntry {
    refcount: MAX_VALUE,
    size: 0,
    csize: 0,
};

fn to_u32(n: u64) -> CreateResult<u32> {
    u32::try_from(n).map_err(|_| CreateError::Internal(format!("chunk size {n} exceeds 32 bits")))
}

impl KnownChunks {
    /// Lists every object of the repository (except the manifest) as known, csize unknown.
    pub fn from_repository(repository: &mut dyn Repository) -> CreateResult<KnownChunks> {
        let mut index = ChunkIndex::new();
        let mut marker: Option<ObjectId> = None;
        loop {
            let page = repository.list(Some(LIST_PAGE), marker.as_ref())?;
            let Some(last) = page.last().copied() else {
                break;
            };
            for id in page {
                index.insert(id, SIZES_UNKNOWN);
            }
            marker = Some(last);
        }
        index.remove(&MANIFEST_ID);
        Ok(KnownChunks {
            index: RwLock::new(index),
        })
    }

    /// Moves the chunks index of a synchronised client cache in (the cache holds an empty
    /// one until [`KnownChunks::return_to`]). Entries with no reference left are dropped:
    /// borg's `add_chunk` stores such a chunk again (`seen_chunk` is 0).
    pub fn take_from_cache(cache: &mut crate::cache::LocalCache) -> KnownChunks {
        KnownChunks::from_index(std::mem::take(&mut cache.chunks))
    }

    /// The chunks of a chunks cache index, without those no reference is left to.
    fn from_index(mut index: ChunkIndex) -> KnownChunks {
        let unreferenced: Vec<ObjectId> = index
            .iter()
            .filter(|(_, e)| e.refcount == 0)
            .map(|(id, _)| id)
            .collect();
        for id in &unreferenced {
            index.remove(id);
        }
        KnownChunks {
            index: RwLock::new(index),
        }
    }

    /// Hands the index, with the references counted since [`KnownChunks::take_from_cache`],
    /// back to the cache.
    pub fn return_to(self, cache: &mut crate::cache::LocalCache) {
        cache.chunks = self.into_index();
    }

    /// The table itself.
    pub fn into_index(self) -> ChunkIndex {
        self.index.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` with exclusive access to the table (e.g. to lend it to the cache for a
    /// commit); everyone else waits meanwhile.
    pub fn with_index<R>(&self, f: impl FnOnce(&mut ChunkIndex) -> R) -> CreateResult<R> {
        let mut index = self.index.write().map_err(lock_err)?;
        Ok(f(&mut index))
    }

    /// Whether `id` is known to be stored.
    pub fn contains(&self, id: &ObjectId) -> bool {
        self.index
            .read()
            .map(|m| m.contains_key(id))
            .unwrap_or(false)
    }

    /// `None`: unknown; `Some(None)`: stored, size not known yet; `Some(Some(csize))`.
    pub fn get(&self, id: &ObjectId) -> CreateResult<Option<Option<u64>>> {
        Ok(self
            .index
            .read()
            .map_err(lock_err)?
            .get(id)
            .map(|e| (e.csize != 0).then_some(u64::from(e.csize))))
    }

    /// `(size, csize)` of `id` when both are known (a chunk of the chunks cache, or one
    /// stored or looked up in this run): what a reference to it needs without reading it.
    pub fn sizes(&self, id: &ObjectId) -> Option<(u64, u64)> {
        let e = self.index.read().ok()?.get(id)?;
        (e.csize != 0).then_some((u64::from(e.size), u64::from(e.csize)))
    }

    /// Records that `id` is stored with plaintext size `size` and stored size `csize`,
    /// keeping its reference count (an object not known before gets none).
    pub fn insert(&self, id: ObjectId, size: u64, csize: u64) -> CreateResult<()> {
        let (size, csize) = (to_u32(size)?, to_u32(csize)?);
        let mut index = self.index.write().map_err(lock_err)?;
        let refcount = index.get(&id).map_or(0, |e| e.refcount);
        index.insert(
            id,
            ChunkEntry {
                refcount,
                size,
                csize,
            },
        );
        Ok(())
    }

    /// Counts one more reference to `id`, stored with these sizes (borg's `chunk_incref`,
    /// or `chunks.add(id, 1, size, csize)` for a chunk this run stored).
    pub fn add_ref(&self, id: ObjectId, size: u64, csize: u64) -> CreateResult<()> {
        let entry = ChunkEntry {
            refcount: 1,
            size: to_u32(size)?,
            csize: to_u32(csize)?,
        };
        self.index
            .write()
            .map_err(lock_err)?
            .add(&id, entry)
            .map_err(|e| CreateError::Internal(e.to_string()))
    }

    /// Counts one more reference to `id` if its sizes are known, returning them (an
    /// unchanged file's chunk from the files cache): one look-up for both.
    pub fn add_ref_if_sized(&self, id: &ObjectId) -> CreateResult<Option<(u64, u64)>> {
        let mut index = self.index.write().map_err(lock_err)?;
        let Some(e) = index.get(id).filter(|e| e.csize != 0) else {
            return Ok(None);
        };
        index.incref(id);
        Ok(Some((u64::from(e.size), u64::from(e.csize))))
    }

    /// borg's `chunk_decref` bookkeeping: one reference less; returns whether none is left,
    /// in which case the entry is gone and the caller deletes the object.
    pub fn remove_ref(&self, id: &ObjectId) -> CreateResult<bool> {
        let mut index = self.index.write().map_err(lock_err)?;
        let left = index
            .decref(id)
            .map_err(|e| CreateError::Internal(e.to_string()))?;
        let gone = left.is_some_and(|e| e.refcount == 0);
        if gone {
            index.remove(id);
        }
        Ok(gone)
    }

    /// Forgets `id` (it was deleted).
    pub(crate) fn remove(&self, id: &ObjectId) -> CreateResult<()> {
        self.index.write().map_err(lock_err)?.remove(id);
        Ok(())
    }
}

/// The repository handle shared between the storing thread and the nonce manager.
type SharedRepo<'r> = Arc<Mutex<&'r mut (dyn Repository + Send)>>;

/// Lets the nonce manager reserve nonce space through the shared repository.
struct SharedNonces<'r>(SharedRepo<'r>);

impl RepoNonces for SharedNonces<'_> {
    fn get_free_nonce(&mut self) -> rborg_crypto::Result<Option<u64>> {
        let mut repo = self
            .0
            .lock()
            .map_err(|_| rborg_crypto::Error::Nonce("repository lock poisoned".into()))?;
        repo.get_free_nonce()
            .map_err(|e| rborg_crypto::Error::Nonce(e.to_string()))
    }

    fn commit_nonce_reservation(
        &mut self,
        next_unreserved: u64,
        start_nonce: Option<u64>,
    ) -> rborg_crypto::Result<()> {
        let mut repo = self
            .0
            .lock()
            .map_err(|_| rborg_crypto::Error::Nonce("repository lock poisoned".into()))?;
        repo.commit_nonce_reservation(next_unreserved, start_nonce)
            .map_err(|e| rborg_crypto::Error::Nonce(e.to_string()))
    }
}

/// A write session with a repository: deduplicates, compresses, encrypts and puts objects
/// (borg's `Cache.add_chunk` with the key's encryption and the repository's nonce reservation).
pub struct ChunkStore<'k, 'r> {
    repo: SharedRepo<'r>,
    nonces: Mutex<NonceManager<SharedNonces<'r>>>,
    key: &'k Key,
    compressor: Compressor,
    known: KnownChunks,
    nonce_file: PathBuf,
}

impl<'k, 'r> ChunkStore<'k, 'r> {
    /// Opens a session: lists the repository's objects as [`KnownChunks`] and continues the
    /// nonce sequence after the manifest's. `nonce_file` is the security directory's nonce file.
    pub fn open(
        repository: &'r mut (dyn Repository + Send),
        key: &'k Key,
        compression: CompressionSpec,
        nonce_file: PathBuf,
    ) -> CreateResult<Self> {
        let known = KnownChunks::from_repository(repository)?;
        Self::with_known(repository, key, compression, nonce_file, known)
    }

    /// Opens a session with a given set of known chunks (empty for a dry run, which never
    /// stores).
    pub fn with_known(
        repository: &'r mut (dyn Repository + Send),
        key: &'k Key,
        compression: CompressionSpec,
        nonce_file: PathBuf,
        known: KnownChunks,
    ) -> CreateResult<Self> {
        let manifest_nonce = match repository.get(&MANIFEST_ID) {
            Ok(old) => key.nonce_after_manifest(&old).unwrap_or(0),
            Err(rborg_repository::Error::ObjectNotFound { .. }) => 0,
            Err(e) => return Err(e.into()),
        };
        let repo: SharedRepo<'r> = Arc::new(Mutex::new(repository));
        let nonces = Mutex::new(NonceManager::new(
            SharedNonces(repo.clone()),
            nonce_file.clone(),
            manifest_nonce,
        ));
        Ok(ChunkStore {
            repo,
            nonces,
            key,
            compressor: compression.compressor(),
            known,
            nonce_file,
        })
    }

    /// The key objects are encrypted with.
    pub fn key(&self) -> &'k Key {
        self.key
    }

    /// The set of objects known to be stored.
    pub fn known(&self) -> &KnownChunks {
        &self.known
    }

    /// Ends the session, returning the set of known objects with this run's references
    /// (see [`KnownChunks::return_to`]).
    pub fn into_known(self) -> KnownChunks {
        self.known
    }

    /// Exclusive access to the repository (to read objects while writing).
    pub fn repository(&self) -> CreateResult<MutexGuard<'_, &'r mut (dyn Repository + Send)>> {
        self.repo.lock().map_err(lock_err)
    }

    /// Compresses with the session's compressor and encrypts with the next nonces.
    ///
    /// The chunk is compressed straight into its envelope, behind the room for the envelope
    /// header, and encrypted in place: no second buffer per chunk. The compressors size their
    /// output for the worst case, so the slack is given back before the envelope joins the
    /// queue to the segment writer (a shrinking `realloc` does not copy).
    pub fn encrypt(&self, data: &[u8]) -> CreateResult<Vec<u8>> {
        let header = self.key.envelope_header_len();
        let mut envelope = Vec::with_capacity(header + data.len() / 2 + 64);
        envelope.resize(header, 0);
        self.compressor.try_compress_into(data, &mut envelope)?;
        if envelope.capacity() - envelope.len() > ENVELOPE_SLACK {
            envelope.shrink_to_fit();
        }
        let mut nonces = self.nonces.lock().map_err(lock_err)?;
        self.key.seal_next_in_place(&mut envelope, &mut nonces)?;
        Ok(envelope)
    }

    /// borg's `cache.add_chunk`: stores the chunk `id` unless it is known; returns its chunk
    /// list entry and whether it was new, and counts the reference. `envelope` is the already
    /// encrypted object (from a pipeline worker); without it `plain` is compressed and
    /// encrypted here.
    pub fn add_chunk(
        &self,
        id: ObjectId,
        size: u64,
        envelope: Option<Vec<u8>>,
        plain: Option<&[u8]>,
    ) -> CreateResult<(ChunkListEntry, bool)> {
        if let Some(csize) = self.known.get(&id)? {
            let csize = match csize {
                Some(c) => c,
                None => self.repository()?.get(&id)?.len() as u64,
            };
            self.known.add_ref(id, size, csize)?;
            return Ok((ChunkListEntry { id, size, csize }, false));
        }
        let envelope = match (envelope, plain) {
            (Some(e), _) => e,
            (None, Some(p)) => self.encrypt(p)?,
            (None, None) => {
                return Err(CreateError::Internal(
                    "chunk vanished from the known set".into(),
                ))
            }
        };
        let csize = envelope.len() as u64;
        self.repository()?.put(&id, &envelope)?;
        self.known.add_ref(id, size, csize)?;
        Ok((ChunkListEntry { id, size, csize }, true))
    }

    /// Counts one more reference to `id` (borg's `chunk_incref`).
    pub(crate) fn add_ref(&self, id: ObjectId, size: u64, csize: u64) -> CreateResult<()> {
        self.known.add_ref(id, size, csize)
    }

    /// The chunk list entry of a chunk whose sizes are known (an unchanged file's chunk from
    /// the files cache), counting the reference; `None` if they are not.
    pub(crate) fn cached_chunk(&self, id: ObjectId) -> CreateResult<Option<ChunkListEntry>> {
        Ok(self
            .known
            .add_ref_if_sized(&id)?
            .map(|(size, csize)| ChunkListEntry { id, size, csize }))
    }

    /// Deletes the object `id` (not committed) and forgets it.
    pub(crate) fn delete(&self, id: &ObjectId) -> CreateResult<()> {
        self.repository()?.delete(id)?;
        self.known.remove(id)
    }

    /// Stores `data` (ID computed with the key) and returns its entry and whether it was new.
    pub fn add_data(&self, data: &[u8]) -> CreateResult<(ChunkListEntry, bool)> {
        let id = self.key.id_hash(data);
        self.add_chunk(id, data.len() as u64, None, Some(data))
    }

    /// Replaces the stored object `id` with `data` compressed by this session's compressor
    /// (borg's `--recompress`: the object keeps its ID). Returns the new stored size.
    pub fn overwrite(&self, id: ObjectId, data: &[u8]) -> CreateResult<u64> {
        let envelope = self.encrypt(data)?;
        let csize = envelope.len() as u64;
        self.repository()?.put(&id, &envelope)?;
        self.known.insert(id, data.len() as u64, csize)?;
        Ok(csize)
    }

    /// Writes `manifest` (continuing in this session's nonce space) and commits the
    /// repository, keeping the session open (borg's `manifest.write();
    /// repository.commit()` inside `Archive.save`, e.g. for a checkpoint).
    pub fn commit_manifest(&self, manifest: &mut Manifest) -> CreateResult<()> {
        let mut repository = self.repository()?;
        manifest.write(&mut **repository, self.key, self.nonce_file.clone())?;
        repository.commit(false, rborg_repository::DEFAULT_COMPACT_THRESHOLD)?;
        Ok(())
    }

    /// Writes `manifest` (continuing in this session's nonce space) and commits the
    /// repository (borg's `manifest.write(); repository.commit()`).
    pub fn commit(self, manifest: &mut Manifest) -> CreateResult<()> {
        let ChunkStore {
            repo,
            nonces,
            nonce_file,
            ..
        } = self;
        // the nonce manager holds the other handle to the repository
        drop(nonces);
        let repo = Arc::try_unwrap(repo)
            .map_err(|_| CreateError::Internal("repository still shared".into()))?;
        let repository = repo.into_inner().map_err(lock_err)?;
        manifest.write(&mut *repository, self.key, nonce_file)?;
        repository.commit(false, rborg_repository::DEFAULT_COMPACT_THRESHOLD)?;
        Ok(())
    }
}

/// borg's `ChunkBuffer`/`CacheChunkBuffer`: packs items and stores the item stream in chunks.
pub(crate) struct ItemBuffer {
    buffer: Vec<u8>,
    chunker: Chunker,
    /// The item stream's chunks stored so far (the archive metadata's `items`).
    pub(crate) chunks: Vec<ObjectId>,
    /// What storing the item stream added (borg's `CacheChunkBuffer` updates the
    /// `Archive.stats` it was given).
    pub(crate) stats: Stats,
}

impl ItemBuffer {
    pub(crate) fn new(key: &Key) -> CreateResult<Self> {
        Ok(ItemBuffer {
            buffer: Vec::new(),
            chunker: Chunker::new(&ChunkerParams::ITEMS, key.chunk_seed())?,
            chunks: Vec::new(),
            stats: Stats::default(),
        })
    }

    /// Packs `item`; stores the complete chunks once the buffer is large.
    pub(crate) fn add(&mut self, item: &Item, store: &ChunkStore) -> CreateResult<()> {
        msgpack::pack_into(&item.to_value(), &mut self.buffer);
        if self.buffer.len() > ITEM_BUFFER_SIZE {
            self.flush(false, store)?;
        }
        Ok(())
    }

    /// Stores all complete chunks of the buffer; with `all`, the last one as well.
    pub(crate) fn flush(&mut self, all: bool, store: &ChunkStore) -> CreateResult<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let buffer = std::mem::take(&mut self.buffer);
        let pieces: Vec<(usize, usize)> = self
            .chunker
            .chunk_slice(&buffer)
            .map(|c| (c.offset as usize, c.len))
            .collect();
        let keep_last = !all && pieces.len() > 1;
        let store_count = if keep_last {
            pieces.len() - 1
        } else {
            pieces.len()
        };
        for &(off, len) in &pieces[..store_count] {
            let (entry, new) = store.add_data(&buffer[off..off + len])?;
            self.stats.update(entry.size, entry.csize, new);
            self.chunks.push(entry.id);
        }
        if keep_last {
            if let Some(&(off, _)) = pieces.last() {
                self.buffer = buffer[off..].to_vec();
            }
        }
        Ok(())
    }
}

/// The archive metadata that is not computed while writing (borg's `Archive.save` arguments
/// and `Archive.__init__` settings).
#[derive(Clone, Debug, Default)]
pub struct ArchiveInfo {
    /// `--comment`.
    pub comment: String,
    /// `--timestamp`: the start time to record instead of now (the end time is this plus the
    /// duration).
    pub timestamp: Option<NaiveDateTime>,
    /// With `timestamp`: the end time to record (recreate keeps the original's times).
    pub time_end: Option<NaiveDateTime>,
    /// The command line recorded in the archive.
    pub cmdline: Vec<String>,
    /// Host name recorded in the archive.
    pub hostname: String,
    /// User name recorded in the archive.
    pub username: String,
    /// The chunker parameters recorded in the archive.
    pub chunker_params: ChunkerParams,
    /// Extra metadata keys (borg's `additional_metadata`, e.g. recreate's
    /// `recreate_cmdline`), appended after the standard ones.
    pub extra: Vec<(String, Value)>,
}

/// The start and end time `Archive.save` records: with a `timestamp` (`--timestamp`) the
/// start is that and the end is it plus the run's duration (or `time_end` when given);
/// otherwise the end is now and the start is now minus the duration (borg 1.2
/// `archive.py` `Archive.save`).
pub(crate) fn archive_times(
    started: std::time::Instant,
    timestamp: Option<NaiveDateTime>,
    time_end: Option<NaiveDateTime>,
) -> (NaiveDateTime, NaiveDateTime) {
    let duration = chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
    match (timestamp, time_end) {
        (Some(t), Some(e)) => (t, e),
        (Some(t), None) => (t, t + duration),
        (None, _) => {
            let end = Utc::now().naive_utc();
            (end - duration, end)
        }
    }
}

/// The archive metadata dict of borg 1.2's `Archive.save`, in its key order: `version`,
/// `name`, `comment`, `items` (the item stream's chunk IDs), `cmdline`, `hostname`,
/// `username`, `time`, `time_end`, `chunker_params`, the statistics (`size`, `csize`,
/// `nfiles`, `size_parts`, `csize_parts`, `nfiles_parts`), then `info.extra`.
pub(crate) fn archive_metadata(
    name: &str,
    info: &ArchiveInfo,
    items: &[ObjectId],
    start: NaiveDateTime,
    end: NaiveDateTime,
    stats: &Stats,
) -> Value {
    let s = |v: &str| Value::from(v);
    let params = std::iter::once(s(info.chunker_params.algorithm()))
        .chain(info.chunker_params.numbers().into_iter().map(Value::from))
        .collect();
    let mut meta = vec![
        (s("version"), Value::from(1)),
        (s("name"), s(name)),
        (s("comment"), s(&info.comment)),
        (
            s("items"),
            Value::Array(items.iter().map(|id| Value::Binary(id.to_vec())).collect()),
        ),
        (
            s("cmdline"),
            Value::Array(info.cmdline.iter().map(|a| s(a)).collect()),
        ),
        (s("hostname"), s(&info.hostname)),
        (s("username"), s(&info.username)),
        (s("time"), s(&start.format(ISO_FORMAT).to_string())),
        (s("time_end"), s(&end.format(ISO_FORMAT).to_string())),
        (s("chunker_params"), Value::Array(params)),
        (s("size"), Value::from(stats.osize)),
        (s("csize"), Value::from(stats.csize)),
        (s("nfiles"), Value::from(stats.nfiles)),
        (s("size_parts"), Value::from(stats.osize_parts)),
        (s("csize_parts"), Value::from(stats.csize_parts)),
        (s("nfiles_parts"), Value::from(stats.nfiles_parts)),
    ];
    meta.extend(info.extra.iter().map(|(k, v)| (s(k), v.clone())));
    Value::Map(meta)
}

/// Builds one archive through a [`ChunkStore`] (borg's `Archive` in write mode).
pub struct ArchiveWriter {
    pub(crate) items: ItemBuffer,
    /// The archive's content statistics so far (the item stream's are added at
    /// [`ArchiveWriter::finish`]).
    pub stats: Stats,
    /// Warnings reported while writing (counted into [`Created::warnings`]).
    pub warnings: u64,
    /// Content chunks that were already stored.
    pub chunks_deduplicated: u64,
    /// Content chunks this archive stored.
    pub chunks_stored: u64,
    started: std::time::Instant,
    content_chunker: Option<(ChunkerParams, Chunker)>,
}

impl ArchiveWriter {
    /// Starts an archive; the item stream is chunked with the key's seed.
    pub fn new(key: &Key) -> CreateResult<Self> {
        Ok(ArchiveWriter {
            items: ItemBuffer::new(key)?,
            stats: Stats::default(),
            warnings: 0,
            chunks_deduplicated: 0,
            chunks_stored: 0,
            started: std::time::Instant::now(),
            content_chunker: None,
        })
    }

    /// Counts one content chunk reference in the statistics.
    pub(crate) fn count_chunk(&mut self, stats: &mut Stats, entry: &ChunkListEntry, new: bool) {
        if new {
            self.chunks_stored += 1;
        } else {
            self.chunks_deduplicated += 1;
        }
        stats.update(entry.size, entry.csize, new);
    }

    /// Chunks `reader` with `params` (seeded with the key's `chunk_seed`), stores the chunks
    /// and returns the chunk list (borg's `Archive.chunk_file`). The sizes count into the
    /// archive statistics.
    pub fn add_content<R: Read>(
        &mut self,
        store: &ChunkStore,
        reader: R,
        params: &ChunkerParams,
    ) -> CreateResult<Vec<ChunkListEntry>> {
        let mut chunker = match self.content_chunker.take() {
            Some((p, c)) if &p == params => c,
            _ => Chunker::new(params, store.key().chunk_seed())?,
        };
        let mut out = Vec::new();
        let mut stats = self.stats;
        let result = (|| -> CreateResult<()> {
            let mut chunks = chunker.chunkify(reader);
            let mut zeros = Vec::new();
            while let Some(chunk) = chunks.next_chunk()? {
                let data = match chunk.data {
                    Some(d) => d,
                    None => {
                        zeros.resize(chunk.len, 0);
                        &zeros[..chunk.len]
                    }
                };
                let (entry, new) = store.add_data(data)?;
                self.count_chunk(&mut stats, &entry, new);
                out.push(entry);
            }
            Ok(())
        })();
        self.content_chunker = Some((*params, chunker));
        result?;
        self.stats = stats;
        Ok(out)
    }

    /// Takes over chunks that are already stored (borg's `cache.chunk_incref`, as recreate
    /// does without rechunking): only the statistics change.
    pub fn add_existing_chunks(&mut self, chunks: &[ChunkListEntry]) {
        let mut stats = self.stats;
        for c in chunks {
            self.count_chunk(&mut stats, c, false);
        }
        self.stats = stats;
    }

    /// Appends `item` to the item stream (borg's `Archive.add_item`); a regular file that is
    /// not a hardlink slave counts into `nfiles` when `counts_as_file`.
    pub fn add_item(&mut self, store: &ChunkStore, item: &Item) -> CreateResult<()> {
        self.items.add(item, store)
    }

    /// Stores the rest of the item stream and the archive metadata object (with its TAM) and
    /// adds the archive to `manifest` (borg's `Archive.save` without the commit: call
    /// [`ChunkStore::commit`] afterwards).
    pub fn finish(
        mut self,
        store: &ChunkStore,
        manifest: &mut Manifest,
        name: &str,
        info: &ArchiveInfo,
    ) -> CreateResult<Created> {
        if manifest.archives.contains_key(name) {
            return Err(CreateError::AlreadyExists(name.to_string()));
        }
        self.items.flush(true, store)?;
        let mut stats = self.stats + self.items.stats;
        let (start, end) = archive_times(self.started, info.timestamp, info.time_end);
        let meta = archive_metadata(name, info, &self.items.chunks, start, end, &stats);
        let data = rborg_crypto::pack_and_authenticate(store.key(), &meta, TamContext::Archive)?;
        let (entry, new) = store.add_data(&data)?;
        // borg counts the metadata object in the statistics it prints (after storing it)
        stats.update(entry.size, entry.csize, new);
        manifest.archives.insert(
            name.to_string(),
            ArchiveEntry {
                id: entry.id,
                time: start.format(ISO_FORMAT).to_string(),
            },
        );
        Ok(Created {
            id: entry.id,
            name: name.to_string(),
            start,
            end,
            stats,
            metadata_csize: entry.csize,
            warnings: self.warnings,
            chunks_deduplicated: self.chunks_deduplicated,
            chunks_stored: self.chunks_stored,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(refcount: u32, size: u32, csize: u32) -> ChunkEntry {
        ChunkEntry {
            refcount,
            size,
            csize,
        }
    }

    #[test]
    fn known_chunks_count_references_in_the_cache_index() {
        let mut index = ChunkIndex::new();
        index.insert([1; 32], entry(2, 100, 60));
        index.insert([2; 32], entry(0, 100, 60));
        let known = KnownChunks::from_index(index);
        // an entry without references is not known: borg stores such a chunk again
        assert!(known.contains(&[1; 32]));
        assert!(!known.contains(&[2; 32]));
        assert_eq!(known.get(&[1; 32]).unwrap(), Some(Some(60)));
        assert_eq!(known.get(&[3; 32]).unwrap(), None);
        // an unchanged file's chunk: one more reference, sizes from the index
        assert_eq!(known.add_ref_if_sized(&[1; 32]).unwrap(), Some((100, 60)));
        assert_eq!(known.add_ref_if_sized(&[3; 32]).unwrap(), None);
        // a chunk stored by this run
        known.add_ref([3; 32], 10, 30).unwrap();
        // the checkpoint's metadata object goes again: its only reference is dropped
        assert!(known.remove_ref(&[3; 32]).unwrap());
        assert!(!known.contains(&[3; 32]));
        assert!(!known.remove_ref(&[1; 32]).unwrap());
        let index = known.into_index();
        assert_eq!(index.get(&[1; 32]), Some(entry(2, 100, 60)));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn listed_objects_have_unknown_sizes_until_recorded() {
        let mut index = ChunkIndex::new();
        index.insert([5; 32], SIZES_UNKNOWN);
        let known = KnownChunks::from_index(index);
        assert_eq!(known.get(&[5; 32]).unwrap(), Some(None));
        assert_eq!(known.sizes(&[5; 32]), None);
        assert_eq!(known.add_ref_if_sized(&[5; 32]).unwrap(), None);
        // the size read from the repository joins the entry; the "infinite" count stays
        known.add_ref([5; 32], 7, 40).unwrap();
        assert_eq!(known.sizes(&[5; 32]), Some((7, 40)));
        assert_eq!(
            known.into_index().get(&[5; 32]).unwrap().refcount,
            MAX_VALUE
        );
    }
}
