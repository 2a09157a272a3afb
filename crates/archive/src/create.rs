//! Creating archives: `borg create` (borg 1.2 `archiver.py` `do_create`/`_rec_walk`,
//! `archive.py` `FilesystemObjectProcessors`, `Archive.add_item`/`save`, `ChunkBuffer`,
//! `cache.py` `add_chunk`; `internals/data-structures.rst` "Archives", "Items").
//!
//! The filesystem is walked as borg walks it (directory entries in inode order, a directory
//! item before its contents, hardlinks as a master carrying the chunks plus slaves naming it
//! in `source`, sockets skipped), file contents are cut with the key's `chunk_seed`, so chunk
//! boundaries and IDs are the ones borg computes, and every chunk the repository does not
//! have yet is compressed, encrypted and stored. Items are packed into the item stream, which
//! is cut with `ITEMS_CHUNKER_PARAMS` and stored as well; the archive metadata object (with
//! its TAM) and the manifest entry complete the archive, and the repository is committed.
//!
//! # Pipeline
//!
//! One thread walks the filesystem, reads and chunks files; `threads` workers compute chunk
//! IDs, compress and encrypt (nonces come from one shared [`NonceManager`], so they are unique
//! as in borg); the calling thread takes the results in walk order, deduplicates against the
//! repository's object list plus what this run stored, puts new objects and builds the items.
//! Channels are bounded, so memory stays at a few dozen chunks.
//!
//! # Deduplication without a chunks cache
//!
//! rborg keeps no client-side chunks cache yet. The set of object IDs comes from
//! `Repository::list`; the stored size (`csize`) of a chunk that already existed is read
//! from the repository once (borg takes it from its chunks cache). There is no files cache
//! either: every file is read and chunked (borg's `--files-cache=disabled`).
//!
//! ```no_run
//! # fn demo(repo: &mut rborg_repository::LocalRepository, key: &rborg_crypto::Key,
//! #         manifest: &mut rborg_archive::Manifest) -> Result<(), rborg_archive::create::CreateError> {
//! use rborg_archive::create::{create_archive, CreateOptions, NoReport, Source};
//! let opts = CreateOptions::default();
//! let sources = vec![Source::Path("/home/user/docs".into())];
//! let done = create_archive(repo, key, manifest, "/tmp/nonce".into(), "docs-1", sources,
//!                           &opts, &mut NoReport)?;
//! println!("stored {} new bytes", done.stats.usize);
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Mutex, RwLock};

pub use chrono;
use chrono::{NaiveDateTime, Utc};
use rborg_chunker::{ChunkKind, Chunker, ChunkerParams};
use rborg_compress::{CompressionSpec, Compressor};
use rborg_crypto::{msgpack, Key, NonceManager, RepoNonces, TamContext};
use rborg_repository::{ObjectId, Repository};
use rmpv::Value;

use crate::item::{ChunkListEntry, Item, S_IFMT, S_IFREG};
use crate::manifest::{ArchiveEntry, Manifest, ISO_FORMAT, MANIFEST_ID};
use crate::walk::{dir_tags, make_path_safe, normpath_bytes, Pattern};

/// borg's `ChunkBuffer.BUFFER_SIZE`: the item stream is cut once this much is buffered.
pub const ITEM_BUFFER_SIZE: usize = 8 * 1024 * 1024;

/// How many repository object IDs are requested per `list` call.
const LIST_PAGE: usize = 10_000;

/// What can go wrong creating an archive. Per-file problems (unreadable file, vanished
/// entry) are not errors: they are reported as warnings and the file is skipped, as in borg.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The archive name is taken (borg's `Archive.AlreadyExists`).
    #[error("Archive {0} already exists")]
    AlreadyExists(String),
    /// The archive layer failed (manifest write, ...).
    #[error(transparent)]
    Archive(#[from] crate::Error),
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] rborg_repository::Error),
    /// Encryption or nonce management failed.
    #[error(transparent)]
    Crypto(#[from] rborg_crypto::Error),
    /// Compression failed.
    #[error(transparent)]
    Compress(#[from] rborg_compress::CompressError),
    /// The chunker parameters are invalid.
    #[error(transparent)]
    Chunker(#[from] rborg_chunker::Error),
    /// `--stdin-user`/`--stdin-group` names no user or group (borg: "no such user").
    #[error("{0}")]
    Invalid(String),
    /// Reading standard input failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being read.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A pipeline thread ended unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result type of archive creation.
pub type CreateResult<T> = std::result::Result<T, CreateError>;

/// What to archive.
pub enum Source {
    /// A filesystem path, archived recursively.
    Path(PathBuf),
    /// Data read from a stream (borg's `-` path: stdin), stored as one regular file.
    Stream {
        /// The reader.
        reader: Box<dyn Read + Send>,
        /// Path of the item (`--stdin-name`).
        name: String,
        /// Mode bits (`--stdin-mode`); the file type is forced to regular file.
        mode: u32,
        /// Owner (`--stdin-user`), must exist.
        user: String,
        /// Group (`--stdin-group`), must exist.
        group: String,
    },
}

/// Options of `borg create` that affect what is stored.
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// `--chunker-params` (default `buzhash,19,23,21,4095`).
    pub chunker_params: ChunkerParams,
    /// `-C/--compression` (default `lz4`).
    pub compression: CompressionSpec,
    /// `--numeric-ids`: store no user/group names.
    pub numeric_ids: bool,
    /// `-x/--one-file-system`: do not cross filesystem boundaries.
    pub one_file_system: bool,
    /// `--read-special`: read FIFOs and block/char devices (also through symlinks) like regular
    /// files and store them as regular files, as borg does.
    pub read_special: bool,
    /// `-e/--exclude` patterns (directories matched are not descended into).
    pub excludes: Vec<Pattern>,
    /// `--exclude-caches`.
    pub exclude_caches: bool,
    /// `--exclude-if-present NAME`.
    pub exclude_if_present: Vec<String>,
    /// `--keep-exclude-tags`.
    pub keep_exclude_tags: bool,
    /// `--noatime`.
    pub noatime: bool,
    /// `--noctime`.
    pub noctime: bool,
    /// `--noflags`.
    pub noflags: bool,
    /// `--noxattrs`.
    pub noxattrs: bool,
    /// `--sparse` (holes are detected only by the fixed chunker, as in borg).
    pub sparse: bool,
    /// `--comment`.
    pub comment: String,
    /// `--timestamp`: archive start time instead of now (UTC).
    pub timestamp: Option<NaiveDateTime>,
    /// Command line stored in the archive (`sys.argv`).
    pub cmdline: Vec<String>,
    /// Host name stored in the archive.
    pub hostname: String,
    /// User name stored in the archive.
    pub username: String,
    /// `-n/--dry-run`: walk and report, store nothing.
    pub dry_run: bool,
    /// Paths not to archive (borg skips its cache directory and a local repository).
    pub skip_paths: Vec<PathBuf>,
    /// Worker threads for hashing, compression and encryption (at least 1).
    pub threads: usize,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            chunker_params: ChunkerParams::DEFAULT,
            compression: CompressionSpec::Lz4,
            numeric_ids: false,
            one_file_system: false,
            read_special: false,
            excludes: Vec::new(),
            exclude_caches: false,
            exclude_if_present: Vec::new(),
            keep_exclude_tags: false,
            noatime: false,
            noctime: false,
            noflags: false,
            noxattrs: false,
            sparse: false,
            comment: String::new(),
            timestamp: None,
            cmdline: Vec::new(),
            hostname: String::new(),
            username: String::new(),
            dry_run: false,
            skip_paths: Vec::new(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Receives what `borg create --list` prints and the warnings borg logs.
pub trait Reporter {
    /// A processed path with borg's status letter (`A` added, `d` directory, `s` symlink,
    /// `h` hardlink, `f` fifo, `c`/`b` device, `i` stdin, `x` excluded, `E` error, `C`
    /// changed while read, `-` dry run). `path` is the filesystem path as walked.
    fn status(&mut self, status: char, path: &[u8]);
    /// A per-file problem; the file was skipped (or stored as read) and borg's exit code
    /// becomes "warning".
    fn warning(&mut self, message: &str);
}

/// A [`Reporter`] that ignores everything.
pub struct NoReport;

impl Reporter for NoReport {
    fn status(&mut self, _: char, _: &[u8]) {}
    fn warning(&mut self, _: &str) {}
}

/// borg's archive `Statistics` for one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Original (plaintext) size of all chunks referenced by the archive.
    pub osize: u64,
    /// Stored size of all chunks referenced by the archive.
    pub csize: u64,
    /// Stored size of the chunks this run added to the repository (deduplicated size).
    pub usize: u64,
    /// Number of regular files (hardlink slaves not counted).
    pub nfiles: u64,
}

impl Stats {
    fn update(&mut self, size: u64, csize: u64, unique: bool) {
        self.osize += size;
        self.csize += csize;
        if unique {
            self.usize += csize;
        }
    }
}

/// The outcome of a successful [`create_archive`].
#[derive(Clone, Debug)]
pub struct Created {
    /// ID of the archive metadata object (the archive fingerprint).
    pub id: ObjectId,
    /// Archive name.
    pub name: String,
    /// Start time (UTC).
    pub start: NaiveDateTime,
    /// End time (UTC).
    pub end: NaiveDateTime,
    /// Statistics (as stored in the archive metadata).
    pub stats: Stats,
    /// Stored size of the archive metadata object (for borg's "Utilization of max. archive
    /// size").
    pub metadata_csize: u64,
    /// Number of warnings reported.
    pub warnings: u64,
    /// Number of content chunks that were already in the repository.
    pub chunks_deduplicated: u64,
    /// Number of content chunks this run stored.
    pub chunks_stored: u64,
}

/// Lets the shared nonce manager reserve nonce space through the shared repository.
struct SharedNonces<'a, 'r>(&'a Mutex<&'r mut (dyn Repository + Send)>);

impl RepoNonces for SharedNonces<'_, '_> {
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

/// A content chunk after the workers: its ID, plaintext size and, unless the repository
/// already had it when the worker looked, the encrypted envelope.
struct Processed {
    id: ObjectId,
    size: u64,
    envelope: Option<Vec<u8>>,
}

struct Job {
    data: Vec<u8>,
    reply: SyncSender<CreateResult<Processed>>,
}

/// What the walker sends to the storing thread, in archive order.
enum Event {
    /// The next content chunk of the file being read.
    Chunk(Receiver<CreateResult<Processed>>),
    /// A finished item; a regular file with content takes the chunks sent before it.
    Item {
        item: Box<Item>,
        fs_path: Vec<u8>,
        status: Option<char>,
        has_content: bool,
        counts_as_file: bool,
    },
    /// Only a status line (excluded path, error, dry run).
    Status(char, Vec<u8>),
    /// A per-file problem.
    Warning(String),
    /// Reading the current file failed: forget the chunks sent for it.
    DiscardChunks,
    /// The walker failed fatally.
    Fatal(CreateError),
}

/// Everything the storing side needs to put objects.
struct Store<'a, 'r> {
    repo: &'a Mutex<&'r mut (dyn Repository + Send)>,
    nonces: &'a Mutex<NonceManager<SharedNonces<'a, 'r>>>,
    key: &'a Key,
    compressor: &'a Compressor,
    /// Object IDs known to exist: `Some(csize)` when known, `None` when csize must be read.
    known: &'a RwLock<HashMap<ObjectId, Option<u64>>>,
}

fn lock_err<T>(_: T) -> CreateError {
    CreateError::Internal("lock poisoned".into())
}

impl Store<'_, '_> {
    fn encrypt(&self, data: &[u8]) -> CreateResult<Vec<u8>> {
        let mut compressed = Vec::with_capacity(data.len() / 2 + 64);
        self.compressor.try_compress_into(data, &mut compressed)?;
        let mut nonces = self.nonces.lock().map_err(lock_err)?;
        Ok(self.key.encrypt_next(&compressed, &mut nonces)?)
    }

    /// borg's `cache.add_chunk`: stores `data` under `id` unless present; returns the chunk
    /// list entry and whether it was new.
    fn add_chunk(
        &self,
        id: ObjectId,
        size: u64,
        envelope: Option<Vec<u8>>,
        plain: Option<&[u8]>,
    ) -> CreateResult<(ChunkListEntry, bool)> {
        let existing = self.known.read().map_err(lock_err)?.get(&id).copied();
        if let Some(csize) = existing {
            let csize = match csize {
                Some(c) => c,
                None => {
                    let c = self.repo.lock().map_err(lock_err)?.get(&id)?.len() as u64;
                    self.known.write().map_err(lock_err)?.insert(id, Some(c));
                    c
                }
            };
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
        self.repo.lock().map_err(lock_err)?.put(&id, &envelope)?;
        self.known
            .write()
            .map_err(lock_err)?
            .insert(id, Some(csize));
        Ok((ChunkListEntry { id, size, csize }, true))
    }
}

/// borg's `ChunkBuffer`/`CacheChunkBuffer`: packs items and stores the item stream in chunks.
struct ItemBuffer {
    buffer: Vec<u8>,
    chunker: Chunker,
    chunks: Vec<ObjectId>,
}

impl ItemBuffer {
    fn add(&mut self, item: &Item, store: &Store, stats: &mut Stats) -> CreateResult<()> {
        msgpack::pack_into(&item.to_value(), &mut self.buffer);
        if self.buffer.len() > ITEM_BUFFER_SIZE {
            self.flush(false, store, stats)?;
        }
        Ok(())
    }

    /// Stores all complete chunks of the buffer; with `all`, the last one as well.
    fn flush(&mut self, all: bool, store: &Store, stats: &mut Stats) -> CreateResult<()> {
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
            let data = &buffer[off..off + len];
            let id = store.key.id_hash(data);
            let (entry, new) = store.add_chunk(id, len as u64, None, Some(data))?;
            stats.update(entry.size, entry.csize, new);
            self.chunks.push(id);
        }
        if keep_last {
            if let Some(&(off, _)) = pieces.last() {
                self.buffer = buffer[off..].to_vec();
            }
        }
        Ok(())
    }
}

/// Creates the archive `name` from `sources` (borg's `do_create`), writes the manifest and
/// commits. `nonce_file` is the security directory's nonce file. Returns statistics.
#[allow(clippy::too_many_arguments)]
pub fn create_archive(
    repository: &mut (dyn Repository + Send),
    key: &Key,
    manifest: &mut Manifest,
    nonce_file: PathBuf,
    name: &str,
    sources: Vec<Source>,
    opts: &CreateOptions,
    reporter: &mut dyn Reporter,
) -> CreateResult<Created> {
    if manifest.archives.contains_key(name) {
        return Err(CreateError::AlreadyExists(name.to_string()));
    }
    // Validate parameters before touching anything.
    Chunker::new(&opts.chunker_params, key.chunk_seed())?;
    let start_wall = Utc::now().naive_utc();
    let started = std::time::Instant::now();

    let mut known: HashMap<ObjectId, Option<u64>> = HashMap::new();
    if !opts.dry_run {
        let mut marker: Option<ObjectId> = None;
        loop {
            let page = repository.list(Some(LIST_PAGE), marker.as_ref())?;
            let Some(last) = page.last().copied() else {
                break;
            };
            known.extend(page.into_iter().map(|id| (id, None)));
            marker = Some(last);
        }
        known.remove(&MANIFEST_ID);
    }
    let manifest_nonce = match repository.get(&MANIFEST_ID) {
        Ok(old) => key.nonce_after_manifest(&old).unwrap_or(0),
        Err(rborg_repository::Error::ObjectNotFound { .. }) => 0,
        Err(e) => return Err(e.into()),
    };

    let compressor = opts.compression.compressor();
    let nonce_file_for_manifest = nonce_file.clone();
    let repo = Mutex::new(repository);
    let known = RwLock::new(known);
    let nonces = Mutex::new(NonceManager::new(
        SharedNonces(&repo),
        nonce_file,
        manifest_nonce,
    ));
    let store = Store {
        repo: &repo,
        nonces: &nonces,
        key,
        compressor: &compressor,
        known: &known,
    };
    let mut stats = Stats::default();
    let mut items = ItemBuffer {
        buffer: Vec::new(),
        chunker: Chunker::new(&ChunkerParams::ITEMS, key.chunk_seed())?,
        chunks: Vec::new(),
    };
    let threads = opts.threads.max(1);
    let mut counters = (0u64, 0u64, 0u64); // warnings, dedup chunks, stored chunks

    let (job_tx, job_rx) = sync_channel::<Job>(2 * threads);
    let job_rx = Mutex::new(job_rx);
    std::thread::scope(|scope| -> CreateResult<()> {
        let (event_tx, event_rx) = sync_channel::<Event>(4 * threads + 8);
        let job_tx = job_tx;
        for _ in 0..threads {
            let job_rx = &job_rx;
            let store = &store;
            scope.spawn(move || worker(job_rx, store));
        }
        let seed = key.chunk_seed();
        scope.spawn(move || {
            let mut walker = Walker {
                opts,
                events: event_tx,
                jobs: job_tx,
                hard_links: HashMap::new(),
                users: HashMap::new(),
                groups: HashMap::new(),
                skip: HashSet::new(),
                chunker: None,
                seed,
            };
            walker.run(sources);
        });
        consume(
            event_rx,
            &store,
            &mut items,
            &mut stats,
            reporter,
            opts,
            &mut counters,
        )
    })?;

    if opts.dry_run {
        return Ok(Created {
            id: [0; 32],
            name: name.to_string(),
            start: start_wall,
            end: start_wall,
            stats,
            metadata_csize: 0,
            warnings: counters.0,
            chunks_deduplicated: 0,
            chunks_stored: 0,
        });
    }

    items.flush(true, &store, &mut stats)?;
    let duration = chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
    let (start, end) = match opts.timestamp {
        Some(t) => (t, t + duration),
        None => {
            let end = Utc::now().naive_utc();
            (end - duration, end)
        }
    };
    let s = text;
    let params = std::iter::once(s(opts.chunker_params.algorithm()))
        .chain(opts.chunker_params.numbers().into_iter().map(Value::from))
        .collect();
    let meta = Value::Map(vec![
        (s("version"), Value::from(1)),
        (s("name"), s(name)),
        (s("comment"), s(&opts.comment)),
        (
            s("items"),
            Value::Array(
                items
                    .chunks
                    .iter()
                    .map(|id| Value::Binary(id.to_vec()))
                    .collect(),
            ),
        ),
        (
            s("cmdline"),
            Value::Array(opts.cmdline.iter().map(|a| text(a)).collect()),
        ),
        (s("hostname"), s(&opts.hostname)),
        (s("username"), s(&opts.username)),
        (s("time"), s(&start.format(ISO_FORMAT).to_string())),
        (s("time_end"), s(&end.format(ISO_FORMAT).to_string())),
        (s("chunker_params"), Value::Array(params)),
        (s("size"), Value::from(stats.osize)),
        (s("csize"), Value::from(stats.csize)),
        (s("nfiles"), Value::from(stats.nfiles)),
        (s("size_parts"), Value::from(0)),
        (s("csize_parts"), Value::from(0)),
        (s("nfiles_parts"), Value::from(0)),
    ]);
    let data = rborg_crypto::pack_and_authenticate(key, &meta, TamContext::Archive)?;
    let id = key.id_hash(&data);
    let (entry, new) = store.add_chunk(id, data.len() as u64, None, Some(&data))?;
    // borg counts the metadata object in the statistics it prints (after storing it)
    stats.update(entry.size, entry.csize, new);
    let mut repository = repo.lock().map_err(lock_err)?;
    manifest.archives.insert(
        name.to_string(),
        ArchiveEntry {
            id,
            time: start.format(ISO_FORMAT).to_string(),
        },
    );
    // the manifest writer continues in the nonce space reserved through the same file
    manifest.write(&mut **repository, key, nonce_file_for_manifest)?;
    repository.commit(false, rborg_repository::DEFAULT_COMPACT_THRESHOLD)?;
    Ok(Created {
        id,
        name: name.to_string(),
        start,
        end,
        stats,
        metadata_csize: entry.csize,
        warnings: counters.0,
        chunks_deduplicated: counters.1,
        chunks_stored: counters.2,
    })
}

fn text(v: &str) -> Value {
    Value::from(v)
}

/// A worker: ID hash, then (unless the chunk is known) compression and encryption.
fn worker(jobs: &Mutex<Receiver<Job>>, store: &Store) {
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let id = store.key.id_hash(&job.data);
        let known = store
            .known
            .read()
            .map(|k| k.contains_key(&id))
            .unwrap_or(false);
        let result = if known {
            Ok(None)
        } else {
            store.encrypt(&job.data).map(Some)
        };
        let _ = job.reply.send(result.map(|envelope| Processed {
            id,
            size: job.data.len() as u64,
            envelope,
        }));
    }
}

/// The storing side: takes the walker's events in order, stores chunks and items.
fn consume(
    events: Receiver<Event>,
    store: &Store,
    items: &mut ItemBuffer,
    stats: &mut Stats,
    reporter: &mut dyn Reporter,
    opts: &CreateOptions,
    counters: &mut (u64, u64, u64),
) -> CreateResult<()> {
    let mut pending: Vec<ChunkListEntry> = Vec::new();
    let mut file_stats = Stats::default();
    for event in events {
        match event {
            Event::Chunk(rx) => {
                let processed = rx
                    .recv()
                    .map_err(|_| CreateError::Internal("worker ended".into()))??;
                let (entry, new) =
                    store.add_chunk(processed.id, processed.size, processed.envelope, None)?;
                if new {
                    counters.2 += 1;
                } else {
                    counters.1 += 1;
                }
                file_stats.update(entry.size, entry.csize, new);
                pending.push(entry);
            }
            Event::Item {
                mut item,
                fs_path,
                status,
                has_content,
                counts_as_file,
            } => {
                if let Some(st) = status {
                    reporter.status(st, &fs_path);
                    if st == 'C' {
                        counters.0 += 1;
                        reporter.warning(&format!(
                            "{}: file changed while we backed it up",
                            String::from_utf8_lossy(&fs_path)
                        ));
                    }
                }
                if counts_as_file {
                    stats.nfiles += 1;
                }
                if opts.dry_run {
                    continue;
                }
                if has_content {
                    let chunks = std::mem::take(&mut pending);
                    item.size = Some(chunks.iter().map(|c| c.size).sum());
                    item.chunks = Some(chunks);
                    stats.osize += file_stats.osize;
                    stats.csize += file_stats.csize;
                    stats.usize += file_stats.usize;
                    file_stats = Stats::default();
                }
                items.add(&item, store, stats)?;
            }
            Event::Status(st, path) => reporter.status(st, &path),
            Event::DiscardChunks => {
                pending.clear();
                file_stats = Stats::default();
            }
            Event::Warning(msg) => {
                counters.0 += 1;
                reporter.warning(&msg);
            }
            Event::Fatal(e) => return Err(e),
        }
    }
    Ok(())
}

/// The walking and reading side (borg's `_rec_walk` and `FilesystemObjectProcessors`).
struct Walker<'o> {
    opts: &'o CreateOptions,
    events: SyncSender<Event>,
    jobs: SyncSender<Job>,
    /// (inode, device) of hardlink masters -> their archived path.
    hard_links: HashMap<(u64, u64), Vec<u8>>,
    users: HashMap<u32, Option<Vec<u8>>>,
    groups: HashMap<u32, Option<Vec<u8>>>,
    skip: HashSet<(u64, u64)>,
    chunker: Option<Chunker>,
    seed: i32,
}

/// The walker stops when the storing side is gone.
struct Stop;

type Step = std::result::Result<(), Stop>;

fn os_error(op: &str, e: &std::io::Error) -> String {
    if op.is_empty() {
        e.to_string()
    } else {
        format!("{op}: {e}")
    }
}

impl Walker<'_> {
    fn send(&self, e: Event) -> Step {
        self.events.send(e).map_err(|_| Stop)
    }

    fn run(&mut self, sources: Vec<Source>) {
        for p in &self.opts.skip_paths {
            if let Ok(md) = std::fs::symlink_metadata(p) {
                self.skip.insert((md.ino(), md.dev()));
            }
        }
        let chunker = match Chunker::new(&self.opts.chunker_params, self.seed) {
            Ok(c) => c,
            Err(e) => {
                let _ = self.send(Event::Fatal(e.into()));
                return;
            }
        };
        self.chunker = Some(chunker);
        for source in sources {
            let r = match source {
                Source::Path(p) => {
                    let path = normpath_bytes(p.as_os_str().as_bytes());
                    let dev = match std::fs::symlink_metadata(OsStr::from_bytes(&path)) {
                        Ok(md) => md.dev(),
                        Err(e) => {
                            if self.warn_error(&path, "stat", &e).is_err() {
                                return;
                            }
                            continue;
                        }
                    };
                    let restrict = self.opts.one_file_system.then_some(dev);
                    self.walk(&path, restrict)
                }
                Source::Stream {
                    reader,
                    name,
                    mode,
                    user,
                    group,
                } => self.process_stream(reader, &name, mode, &user, &group),
            };
            if r.is_err() {
                return;
            }
        }
    }

    fn warn_error(&self, path: &[u8], op: &str, e: &std::io::Error) -> Step {
        self.send(Event::Warning(format!(
            "{}: {}",
            String::from_utf8_lossy(path),
            os_error(op, e)
        )))?;
        self.send(Event::Status('E', path.to_vec()))
    }

    fn excluded(&self, path: &[u8]) -> bool {
        self.opts.excludes.iter().any(|p| p.matches(path))
    }

    fn walk(&mut self, path: &[u8], restrict_dev: Option<u64>) -> Step {
        if self.excluded(path) {
            return self.send(Event::Status('x', path.to_vec()));
        }
        let fs_path = Path::new(OsStr::from_bytes(path));
        let md = match std::fs::symlink_metadata(fs_path) {
            Ok(md) => md,
            Err(e) => return self.warn_error(path, "stat", &e),
        };
        if self.skip.contains(&(md.ino(), md.dev())) {
            return Ok(());
        }
        let recurse = restrict_dev.is_none_or(|d| d == md.dev());
        let ft = md.file_type();
        if !ft.is_dir() {
            return self.process_nondir(path, &md);
        }
        if recurse {
            let tags = dir_tags(
                fs_path,
                self.opts.exclude_caches,
                &self.opts.exclude_if_present,
            );
            if !tags.is_empty() {
                if self.opts.keep_exclude_tags {
                    self.process_dir(path, &md)?;
                    for tag in tags {
                        let mut child = path.to_vec();
                        child.push(b'/');
                        child.extend_from_slice(tag.as_bytes());
                        self.walk(&child, restrict_dev)?;
                    }
                }
                return self.send(Event::Status('x', path.to_vec()));
            }
        }
        self.process_dir(path, &md)?;
        if !recurse {
            return Ok(());
        }
        let entries = match std::fs::read_dir(fs_path) {
            Ok(rd) => rd,
            Err(e) => return self.warn_error(path, "scandir", &e),
        };
        // borg's scandir_inorder: sorted by inode number
        let mut list: Vec<(u64, Vec<u8>)> = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => {
                    use std::os::unix::fs::DirEntryExt;
                    list.push((e.ino(), e.file_name().as_bytes().to_vec()));
                }
                Err(e) => return self.warn_error(path, "scandir", &e),
            }
        }
        list.sort();
        for (_, name) in list {
            let mut child = path.to_vec();
            if child != b"/" {
                child.push(b'/');
            }
            child.extend_from_slice(&name);
            let child = normpath_bytes(&child);
            self.walk(&child, restrict_dev)?;
        }
        Ok(())
    }

    fn process_dir(&mut self, path: &[u8], md: &Metadata) -> Step {
        if self.opts.dry_run {
            return self.send(Event::Status('-', path.to_vec()));
        }
        let mut item = Item::new(make_path_safe(path), md.mode());
        self.stat_attrs(&mut item, path, md);
        self.send(Event::Item {
            item: Box::new(item),
            fs_path: path.to_vec(),
            status: Some('d'),
            has_content: false,
            counts_as_file: false,
        })
    }

    fn process_nondir(&mut self, path: &[u8], md: &Metadata) -> Step {
        let ft = md.mode() & S_IFMT;
        if self.opts.read_special {
            let is_special = |m: &Metadata| {
                matches!(
                    m.mode() & S_IFMT,
                    crate::item::S_IFIFO | crate::item::S_IFCHR | crate::item::S_IFBLK
                )
            };
            // borg follows a symlink only when it points to a special file
            let target = if ft == crate::item::S_IFLNK {
                std::fs::metadata(OsStr::from_bytes(path)).ok()
            } else {
                Some(md.clone())
            };
            if let Some(target) = target.filter(is_special) {
                if self.opts.dry_run {
                    return self.send(Event::Status('-', path.to_vec()));
                }
                let item = Item::new(make_path_safe(path), target.mode());
                return self.process_file(
                    path,
                    item,
                    &target,
                    FileRole {
                        special: true,
                        ..FileRole::default()
                    },
                );
            }
        }
        let status = match ft {
            S_IFREG => None,
            crate::item::S_IFLNK => Some('s'),
            crate::item::S_IFIFO => Some('f'),
            crate::item::S_IFCHR => Some('c'),
            crate::item::S_IFBLK => Some('b'),
            // sockets (and anything unknown) are skipped, as in borg
            crate::item::S_IFSOCK => return Ok(()),
            _ => {
                return self.send(Event::Warning(format!(
                    "Unknown file type: {}",
                    String::from_utf8_lossy(path)
                )))
            }
        };
        if self.opts.dry_run {
            return self.send(Event::Status('-', path.to_vec()));
        }
        let safe = make_path_safe(path);
        let mut item = Item::new(safe.clone(), md.mode());
        let hardlinkable = ft != crate::item::S_IFLNK && md.nlink() > 1;
        let link_key = (md.ino(), md.dev());
        let mut status = status;
        let mut master = false;
        if hardlinkable {
            if let Some(src) = self.hard_links.get(&link_key) {
                item.source = Some(src.clone());
                status = Some('h');
            } else {
                master = true;
            }
        }
        let slave = item.source.is_some();
        match ft {
            crate::item::S_IFLNK => {
                match std::fs::read_link(OsStr::from_bytes(path)) {
                    Ok(target) => item.source = Some(target.as_os_str().as_bytes().to_vec()),
                    Err(e) => return self.warn_error(path, "readlink", &e),
                }
                self.stat_attrs(&mut item, path, md);
            }
            S_IFREG => {
                return self.process_file(
                    path,
                    item,
                    md,
                    FileRole {
                        hardlinked: hardlinkable,
                        master,
                        slave,
                        special: false,
                    },
                )
            }
            _ => {
                if ft == crate::item::S_IFCHR || ft == crate::item::S_IFBLK {
                    item.rdev = Some(md.rdev());
                }
                if !slave {
                    item.hardlink_master = Some(hardlinkable);
                }
                self.stat_attrs(&mut item, path, md);
            }
        }
        self.send(Event::Item {
            item: Box::new(item),
            fs_path: path.to_vec(),
            status,
            has_content: false,
            counts_as_file: false,
        })?;
        if master {
            self.hard_links.insert(link_key, safe);
        }
        Ok(())
    }

    /// Opens `path` for reading without updating its atime where allowed; `follow` lets a
    /// symlink be followed (only `--read-special` does that).
    fn open_noatime(path: &[u8], follow: bool) -> std::io::Result<File> {
        let p = OsStr::from_bytes(path);
        let base = if follow {
            nix::fcntl::OFlag::O_NOCTTY
        } else {
            nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NOCTTY
        };
        let with = (base | nix::fcntl::OFlag::O_NOATIME).bits();
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(with)
            .open(p)
        {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(base.bits())
                    .open(p)
            }
            other => other,
        }
    }

    fn process_file(&mut self, path: &[u8], mut item: Item, md: &Metadata, role: FileRole) -> Step {
        let FileRole {
            hardlinked,
            master,
            slave,
            special,
        } = role;
        let file = match Self::open_noatime(path, special) {
            Ok(f) => f,
            Err(e) => return self.warn_error(path, "open", &e),
        };
        let md = match file.metadata() {
            Ok(m) => m,
            Err(_) => md.clone(),
        };
        let safe = item.path.clone();
        self.simple_attrs(&mut item, &md);
        if special {
            // borg stores a special file read with --read-special as a regular file
            item.mode = Some(S_IFREG | (md.mode() & 0o7777));
        }
        let mut status = if slave { Some('h') } else { Some('A') };
        if !slave {
            item.hardlink_master = Some(hardlinked);
            if let Err(msg) = self.read_content(&file) {
                match msg {
                    ReadFailure::Stop => return Err(Stop),
                    ReadFailure::Io(e) => {
                        self.send(Event::DiscardChunks)?;
                        return self.warn_error(path, "read", &e);
                    }
                }
            }
            // a FIFO or device changes its ctime as it is fed; borg only checks regular files
            if let Some(after) = file.metadata().ok().filter(|_| !special) {
                if after.ctime() != md.ctime() || after.ctime_nsec() != md.ctime_nsec() {
                    status = Some('C');
                }
            }
        }
        self.ext_attrs(&mut item, path, &md, Some(&file));
        self.send(Event::Item {
            item: Box::new(item),
            fs_path: path.to_vec(),
            status,
            has_content: !slave,
            counts_as_file: !slave,
        })?;
        if master {
            self.hard_links.insert((md.ino(), md.dev()), safe);
        }
        Ok(())
    }

    /// Reads and chunks a file, sending every chunk to the workers and a placeholder for
    /// its result to the storing side.
    fn read_content<R: Read>(&mut self, reader: R) -> std::result::Result<(), ReadFailure> {
        let Some(chunker) = self.chunker.as_mut() else {
            return Err(ReadFailure::Stop);
        };
        let mut chunks = chunker.chunkify(reader);
        loop {
            let chunk = match chunks.next_chunk() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    return Err(ReadFailure::Io(std::io::Error::other(e.to_string())));
                }
            };
            let data = match (chunk.kind, chunk.data) {
                (ChunkKind::Data, Some(d)) => d.to_vec(),
                // all-zero (CH_ALLOC) and hole (CH_HOLE) chunks are stored as zeros
                _ => vec![0u8; chunk.len],
            };
            let (tx, rx) = sync_channel(1);
            self.jobs
                .send(Job { data, reply: tx })
                .map_err(|_| ReadFailure::Stop)?;
            self.events
                .send(Event::Chunk(rx))
                .map_err(|_| ReadFailure::Stop)?;
        }
        Ok(())
    }

    fn process_stream(
        &mut self,
        reader: Box<dyn Read + Send>,
        name: &str,
        mode: u32,
        user: &str,
        group: &str,
    ) -> Step {
        let Some(uid) = nix::unistd::User::from_name(user).ok().flatten() else {
            return self.send(Event::Fatal(CreateError::Invalid(format!(
                "no such user: {user}"
            ))));
        };
        let Some(gid) = nix::unistd::Group::from_name(group).ok().flatten() else {
            return self.send(Event::Fatal(CreateError::Invalid(format!(
                "no such group: {group}"
            ))));
        };
        self.send(Event::Status('i', name.as_bytes().to_vec()))?;
        if self.opts.dry_run {
            return Ok(());
        }
        let now = Utc::now().timestamp() * 1_000_000_000;
        let mut item = Item::new(name.as_bytes().to_vec(), (mode & 0o107777) | S_IFREG);
        item.uid = Some(u64::from(uid.uid.as_raw()));
        item.user = Some(user.as_bytes().to_vec());
        item.gid = Some(u64::from(gid.gid.as_raw()));
        item.group = Some(group.as_bytes().to_vec());
        item.mtime = Some(now);
        item.atime = Some(now);
        item.ctime = Some(now);
        match self.read_content(reader) {
            Ok(()) => {}
            Err(ReadFailure::Stop) => return Err(Stop),
            Err(ReadFailure::Io(e)) => {
                return self.send(Event::Fatal(CreateError::Io {
                    context: "reading stdin".into(),
                    source: e,
                }))
            }
        }
        item.hardlink_master = Some(false);
        self.send(Event::Item {
            item: Box::new(item),
            fs_path: name.as_bytes().to_vec(),
            status: None,
            has_content: true,
            counts_as_file: true,
        })
    }

    /// borg's `stat_simple_attrs`.
    fn simple_attrs(&mut self, item: &mut Item, md: &Metadata) {
        item.mode = Some(md.mode());
        item.uid = Some(u64::from(md.uid()));
        item.gid = Some(u64::from(md.gid()));
        item.mtime = Some(md.mtime() * 1_000_000_000 + md.mtime_nsec());
        if !self.opts.noatime {
            item.atime = Some(md.atime() * 1_000_000_000 + md.atime_nsec());
        }
        if !self.opts.noctime {
            item.ctime = Some(md.ctime() * 1_000_000_000 + md.ctime_nsec());
        }
        let (user, group) = if self.opts.numeric_ids {
            (None, None)
        } else {
            (self.user_name(md.uid()), self.group_name(md.gid()))
        };
        // borg stores `None` (nil) when there is no name
        match user {
            Some(u) => item.user = Some(u),
            None => item.extra.push((b"user".to_vec(), Value::Nil)),
        }
        match group {
            Some(g) => item.group = Some(g),
            None => item.extra.push((b"group".to_vec(), Value::Nil)),
        }
    }

    /// borg's `stat_attrs` (simple plus extended attributes).
    fn stat_attrs(&mut self, item: &mut Item, path: &[u8], md: &Metadata) {
        self.simple_attrs(item, md);
        self.ext_attrs(item, path, md, None);
    }

    /// borg's `stat_ext_attrs`: BSD-style flags (Linux inode flags mapped as borg maps them)
    /// and extended attributes. ACLs are not archived yet.
    fn ext_attrs(&mut self, item: &mut Item, path: &[u8], md: &Metadata, file: Option<&File>) {
        let ft = md.mode() & S_IFMT;
        if !self.opts.noflags && (ft == S_IFREG || ft == crate::item::S_IFDIR) {
            if let Some(flags) = linux_flags(path, file) {
                if flags != 0 {
                    item.bsdflags = Some(flags);
                }
            }
        }
        if !self.opts.noxattrs {
            let x = xattrs(path);
            if !x.is_empty() {
                item.xattrs = Some(x);
            }
        }
    }

    fn user_name(&mut self, uid: u32) -> Option<Vec<u8>> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name.into_bytes())
            })
            .clone()
    }

    fn group_name(&mut self, gid: u32) -> Option<Vec<u8>> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
                    .ok()
                    .flatten()
                    .map(|g| g.name.into_bytes())
            })
            .clone()
    }
}

enum ReadFailure {
    Stop,
    Io(std::io::Error),
}

/// How a file item relates to other items and how it is opened.
#[derive(Clone, Copy, Debug, Default)]
struct FileRole {
    /// The file has more than one link.
    hardlinked: bool,
    /// This item carries the chunks for the other links.
    master: bool,
    /// Another item already carries this file's chunks.
    slave: bool,
    /// A FIFO or device read with `--read-special` (symlinks to it are followed).
    special: bool,
}

/// borg's Linux `get_flags`: FS_IOC_GETFLAGS, mapped to the BSD flags borg stores
/// (`UF_NODUMP`, `UF_IMMUTABLE`, `UF_APPEND`, `UF_COMPRESSED`).
fn linux_flags(path: &[u8], file: Option<&File>) -> Option<u64> {
    use rustix::fs::IFlags;
    let opened;
    let f = match file {
        Some(f) => f,
        None => {
            opened = Walker::open_noatime(path, false).ok()?;
            &opened
        }
    };
    let flags = rustix::fs::ioctl_getflags(f).ok()?;
    let mut out = 0u64;
    for (linux, bsd) in [
        (IFlags::NODUMP, 0x1u64),
        (IFlags::IMMUTABLE, 0x2),
        (IFlags::APPEND, 0x4),
        (IFlags::COMPRESSED, 0x20),
    ] {
        if flags.contains(linux) {
            out |= bsd;
        }
    }
    Some(out)
}

/// borg's `xattr.get_all(path, follow_symlinks=False)`: all extended attributes except the
/// POSIX ACL ones, sorted by name (borg wraps them in a `StableDict`).
fn xattrs(path: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let p = OsStr::from_bytes(path);
    let mut out = Vec::new();
    // the xattr crate's list/get use llistxattr/lgetxattr: symlinks are not followed
    let Ok(names) = xattr::list(p) else {
        return out;
    };
    for name in names {
        let n = name.as_bytes();
        if n.is_empty() || n.starts_with(b"system.posix_acl_") {
            continue;
        }
        if let Ok(Some(value)) = xattr::get(p, &name) {
            out.push((n.to_vec(), value));
        }
    }
    out.sort();
    out
}
