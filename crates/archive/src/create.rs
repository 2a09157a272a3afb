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
//! # Deduplication and the client cache
//!
//! With a [`LocalCache`] ([`create_archive_cached`], borg's `LocalCache`), the chunks cache
//! is the set of known objects with their sizes, the files cache lets unchanged files be
//! archived from their cached chunk IDs without reading them (status `U`; `M` for known but
//! modified files), and after the repository commit the run's references are added to the
//! chunks cache and the cache is committed. Without one (borg's `AdHocCache`, used for
//! `--no-cache-sync` and dry runs), the set of object IDs comes from `Repository::list`, the
//! stored size (`csize`) of a chunk that already existed is read from the repository once,
//! and every file is read and chunked.
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
use std::os::unix::ffi::{OsStrExt, OsStringExt};
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

use crate::cache::{FileStat, FilesCache, LocalCache, Lookup};
use crate::item::{ChunkListEntry, Item, S_IFMT, S_IFREG};
use crate::manifest::{ArchiveEntry, Manifest, ISO_FORMAT, MANIFEST_ID};
use crate::patterns::PatternMatcher;
use crate::walk::{dir_tags, make_path_safe, normpath_bytes};

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
    /// The client cache failed.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
}

/// Result type of archive creation.
pub type CreateResult<T> = std::result::Result<T, CreateError>;

/// What to archive.
pub enum Source {
    /// A filesystem path, archived recursively.
    Path(PathBuf),
    /// A filesystem path archived on its own: no recursion into a directory and no pattern
    /// matching (borg's `--paths-from-stdin` / `--paths-from-command`).
    Single(PathBuf),
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
    /// The include/exclude rules (`-e`, `--exclude-from`, `--pattern`, `--patterns-from`), with
    /// fallback "include". An excluded directory is still descended into when its rule says
    /// so (`-` rules), to find included paths below it (borg's `_rec_walk`).
    pub patterns: PatternMatcher,
    /// `--exclude-caches`.
    pub exclude_caches: bool,
    /// `--exclude-nodump`: leave out files and directories with the NODUMP flag
    /// (`chattr +d`).
    pub exclude_nodump: bool,
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
    /// `--noacls`: do not read POSIX ACLs.
    pub noacls: bool,
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
    /// `--files-cache` mode letters (`c`time, `m`time, `s`ize, `i`node, `r`echunk,
    /// `d`isabled; default `cis`). Used only when a [`LocalCache`] is given.
    pub files_cache_mode: String,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            chunker_params: ChunkerParams::DEFAULT,
            compression: CompressionSpec::Lz4,
            numeric_ids: false,
            one_file_system: false,
            read_special: false,
            patterns: PatternMatcher::new(),
            exclude_caches: false,
            exclude_nodump: false,
            exclude_if_present: Vec::new(),
            keep_exclude_tags: false,
            noatime: false,
            noctime: false,
            noflags: false,
            noxattrs: false,
            noacls: false,
            sparse: false,
            comment: String::new(),
            timestamp: None,
            cmdline: Vec::new(),
            hostname: String::new(),
            username: String::new(),
            dry_run: false,
            skip_paths: Vec::new(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            files_cache_mode: "cis".to_string(),
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
    /// An item was added to the archive; `stats` are the archive's statistics so far
    /// (borg's `--progress`: `Statistics.show_progress` from `Archive.add_item`).
    fn progress(&mut self, _stats: &Stats, _path: &[u8]) {}
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
    /// Counts one chunk reference (borg's `Statistics.update`).
    pub fn update(&mut self, size: u64, csize: u64, unique: bool) {
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
    /// The chunks of an unchanged file, from the files cache (instead of `Chunk`s).
    CachedChunks(Vec<ObjectId>),
    /// Remember the last file item's chunks in the files cache under this path hash.
    Memorize(ObjectId, FileStat),
    /// The walker failed fatally.
    Fatal(CreateError),
}

/// Everything the storing side needs to put objects.
struct Store<'a, 'r> {
    repo: &'a Mutex<&'r mut (dyn Repository + Send)>,
    nonces: &'a Mutex<NonceManager<SharedNonces<'a, 'r>>>,
    key: &'a Key,
    compressor: &'a Compressor,
    /// Object IDs known to exist: `Some((size, csize))` when known, `None` when csize must
    /// be read.
    known: &'a RwLock<HashMap<ObjectId, Option<(u64, u64)>>>,
    /// References this run added, per object: (count, size, csize), for the chunks cache.
    refs: &'a Mutex<HashMap<ObjectId, (u32, u64, u64)>>,
    /// The files cache, where the storing side memorizes files read in this run.
    files: Option<&'a Mutex<FilesCache>>,
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
        if let Some(sizes) = existing {
            let csize = match sizes {
                Some((_, c)) => c,
                None => {
                    let c = self.repo.lock().map_err(lock_err)?.get(&id)?.len() as u64;
                    self.known
                        .write()
                        .map_err(lock_err)?
                        .insert(id, Some((size, c)));
                    c
                }
            };
            self.add_ref(id, size, csize)?;
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
            .insert(id, Some((size, csize)));
        self.add_ref(id, size, csize)?;
        Ok((ChunkListEntry { id, size, csize }, true))
    }

    /// Counts one more reference to `id` (borg's `chunk_incref`/`chunks.add`).
    fn add_ref(&self, id: ObjectId, size: u64, csize: u64) -> CreateResult<()> {
        let mut refs = self.refs.lock().map_err(lock_err)?;
        let e = refs.entry(id).or_insert((0, size, csize));
        e.0 += 1;
        Ok(())
    }

    /// The chunk list entry of a chunk the chunks cache knows (an unchanged file's chunk),
    /// counting the reference; `None` if it is unknown.
    fn cached_chunk(&self, id: ObjectId) -> CreateResult<Option<ChunkListEntry>> {
        let Some(Some((size, csize))) = self.known.read().map_err(lock_err)?.get(&id).copied()
        else {
            return Ok(None);
        };
        self.add_ref(id, size, csize)?;
        Ok(Some(ChunkListEntry { id, size, csize }))
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
/// Without a client cache: the repository's object list is the dedup set and every file is
/// read (see [`create_archive_cached`]).
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
    create_archive_cached(
        repository, key, manifest, nonce_file, name, sources, opts, reporter, None,
    )
}

/// [`create_archive`] with borg's client cache: the chunks cache is the dedup set (object
/// sizes come from it), the files cache (mode `opts.files_cache_mode`) lets unchanged files
/// be archived without reading them (status `U`, `M` for known but modified files), and
/// after the repository commit the cache is updated with this archive's references and
/// committed, so borg and rborg keep sharing a consistent cache.
#[allow(clippy::too_many_arguments)]
pub fn create_archive_cached(
    repository: &mut (dyn Repository + Send),
    key: &Key,
    manifest: &mut Manifest,
    nonce_file: PathBuf,
    name: &str,
    sources: Vec<Source>,
    opts: &CreateOptions,
    reporter: &mut dyn Reporter,
    mut cache: Option<&mut LocalCache>,
) -> CreateResult<Created> {
    if manifest.archives.contains_key(name) {
        return Err(CreateError::AlreadyExists(name.to_string()));
    }
    // Validate parameters before touching anything.
    Chunker::new(&opts.chunker_params, key.chunk_seed())?;
    let start_wall = Utc::now().naive_utc();
    let started = std::time::Instant::now();

    let mut known: HashMap<ObjectId, Option<(u64, u64)>> = HashMap::new();
    if let Some(c) = cache.as_deref() {
        known.extend(
            c.chunks
                .iter()
                .filter(|(_, e)| e.refcount > 0)
                .map(|(id, e)| (id, Some((u64::from(e.size), u64::from(e.csize))))),
        );
    } else if !opts.dry_run {
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
    let refs = Mutex::new(HashMap::new());
    let files_mode = opts.files_cache_mode.clone();
    let files = cache
        .as_deref_mut()
        .and_then(|c| c.files.take())
        .filter(|_| !files_mode.contains('d'))
        .map(Mutex::new);
    let cwd = std::env::current_dir()
        .map(|d| d.into_os_string().into_vec())
        .unwrap_or_default();
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
        refs: &refs,
        files: files.as_ref(),
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
        let files_ref = files.as_ref();
        let known_ref = &known;
        let files_mode = files_mode.as_str();
        let cwd = cwd.as_slice();
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
                files_cache: files_ref.map(|f| FilesCacheUse {
                    files: f,
                    known: known_ref,
                    key,
                    mode: files_mode,
                    cwd,
                }),
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
    if let Some(c) = cache {
        // borg's cache.commit() after the repository commit: this run's references
        // join the chunks cache, the files cache is written back
        let refs = refs.into_inner().map_err(lock_err)?;
        for (id, (n, size, csize)) in refs {
            c.add_refs(&id, n, size, csize)?;
        }
        if let Some(f) = files {
            c.files = Some(f.into_inner().map_err(lock_err)?);
        }
        c.begin()?;
        c.commit(manifest, key)?;
    }
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
    let mut last_ids: Vec<ObjectId> = Vec::new();
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
                    last_ids = chunks.iter().map(|c| c.id).collect();
                    item.size = Some(chunks.iter().map(|c| c.size).sum());
                    item.chunks = Some(chunks);
                    stats.osize += file_stats.osize;
                    stats.csize += file_stats.csize;
                    stats.usize += file_stats.usize;
                    file_stats = Stats::default();
                }
                items.add(&item, store, stats)?;
                reporter.progress(stats, &item.path);
            }
            Event::Status(st, path) => reporter.status(st, &path),
            Event::DiscardChunks => {
                pending.clear();
                file_stats = Stats::default();
            }
            Event::CachedChunks(ids) => {
                for id in ids {
                    let entry = store.cached_chunk(id)?.ok_or_else(|| {
                        CreateError::Internal("cached chunk vanished from the chunks cache".into())
                    })?;
                    counters.1 += 1;
                    file_stats.update(entry.size, entry.csize, false);
                    pending.push(entry);
                }
            }
            Event::Memorize(path_hash, st) => {
                if let Some(f) = store.files {
                    let ids = std::mem::take(&mut last_ids);
                    f.lock().map_err(lock_err)?.memorize(
                        path_hash,
                        &st,
                        &opts.files_cache_mode,
                        ids,
                    );
                }
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
    /// The files cache, when there is one and it is not disabled.
    files_cache: Option<FilesCacheUse<'o>>,
}

/// What the walker needs to consult the files cache (borg's `file_known_and_unchanged`
/// and `seen_chunk`).
struct FilesCacheUse<'o> {
    files: &'o Mutex<FilesCache>,
    known: &'o RwLock<HashMap<ObjectId, Option<(u64, u64)>>>,
    key: &'o Key,
    mode: &'o str,
    cwd: &'o [u8],
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
                    let (ino, dev) = match std::fs::symlink_metadata(OsStr::from_bytes(&path)) {
                        Ok(md) => (md.ino(), md.dev()),
                        Err(e) => {
                            if self.warn_error(&path, "stat", &e).is_err() {
                                return;
                            }
                            continue;
                        }
                    };
                    let restrict = self.opts.one_file_system.then_some(dev);
                    let r = self.walk(&path, restrict);
                    // never walk a root twice, even when it is given twice (borg #5603)
                    self.skip.insert((ino, dev));
                    r
                }
                Source::Single(p) => {
                    let path = normpath_bytes(p.as_os_str().as_bytes());
                    self.process_single(&path)
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

    /// One path of `--paths-from-stdin`: stored as it is, a directory without its contents
    /// (borg's `_process_any` without `_rec_walk`).
    fn process_single(&mut self, path: &[u8]) -> Step {
        let md = match std::fs::symlink_metadata(OsStr::from_bytes(path)) {
            Ok(md) => md,
            Err(e) => return self.warn_error(path, "stat", &e),
        };
        if md.file_type().is_dir() {
            self.process_dir(path, &md, true)
        } else {
            self.process_nondir(path, &md)
        }
    }

    /// borg's `_rec_walk`: the patterns decide first; an excluded path is reported as `x` and,
    /// when its rule allows recursion and it is a directory, walked without being stored, so
    /// included paths below it are found.
    fn walk(&mut self, path: &[u8], restrict_dev: Option<u64>) -> Step {
        let decision = self.opts.patterns.decide(path);
        if !decision.included {
            self.send(Event::Status('x', path.to_vec()))?;
            if !decision.recurse_dir {
                return Ok(());
            }
        }
        let recurse_excluded_dir = !decision.included;
        let fs_path = Path::new(OsStr::from_bytes(path));
        let md = match std::fs::symlink_metadata(fs_path) {
            Ok(md) => md,
            Err(e) => return self.warn_error(path, "stat", &e),
        };
        if recurse_excluded_dir && !md.file_type().is_dir() {
            return Ok(());
        }
        if self.skip.contains(&(md.ino(), md.dev())) {
            return Ok(());
        }
        let recurse = restrict_dev.is_none_or(|d| d == md.dev());
        let ft = md.file_type();
        if self.opts.exclude_nodump
            && (ft.is_file() || ft.is_dir())
            && linux_flags(path, None).is_some_and(|f| f & 0x1 != 0)
        {
            return self.send(Event::Status('x', path.to_vec()));
        }
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
                // inside an excluded directory a tagged one is simply skipped (borg #3991)
                if recurse_excluded_dir {
                    return Ok(());
                }
                if self.opts.keep_exclude_tags {
                    // stored, but reported only as excluded
                    self.process_dir(path, &md, false)?;
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
        if !recurse_excluded_dir {
            self.process_dir(path, &md, false)?;
        }
        if recurse {
            self.walk_children(path, fs_path, restrict_dev)?;
        }
        if recurse_excluded_dir {
            return Ok(());
        }
        // borg prints a directory's status after its contents
        let status = if self.opts.dry_run { '-' } else { 'd' };
        self.send(Event::Status(status, path.to_vec()))
    }

    /// Walks the entries of directory `path` in inode order (borg's `scandir_inorder`).
    fn walk_children(&mut self, path: &[u8], fs_path: &Path, restrict_dev: Option<u64>) -> Step {
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

    /// Stores a directory item; `report` sends its status (`d`, `-` in a dry run) right away,
    /// otherwise the walker reports it after the directory's contents, as borg does.
    fn process_dir(&mut self, path: &[u8], md: &Metadata, report: bool) -> Step {
        if self.opts.dry_run {
            if !report {
                return Ok(());
            }
            return self.send(Event::Status('-', path.to_vec()));
        }
        let mut item = Item::new(make_path_safe(path), md.mode());
        self.stat_attrs(&mut item, path, md);
        self.send(Event::Item {
            item: Box::new(item),
            fs_path: path.to_vec(),
            status: report.then_some('d'),
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
        let mut memorize = None;
        if !slave {
            item.hardlink_master = Some(hardlinked);
            // special files are never looked up nor memorized: their content changes
            // without their stat changing
            let cached = match self.files_cache.as_ref().filter(|_| !special) {
                Some(fc) => {
                    let (s, cached, hash_st) = fc.check(path, &md);
                    status = Some(s);
                    memorize = Some(hash_st);
                    cached
                }
                None => None,
            };
            if let Some(ids) = cached {
                // unchanged: the lookup already refreshed the entry
                memorize = None;
                self.send(Event::CachedChunks(ids))?;
            } else {
                if let Err(msg) = self.read_content(&file) {
                    match msg {
                        ReadFailure::Stop => return Err(Stop),
                        ReadFailure::Io(e) => {
                            self.send(Event::DiscardChunks)?;
                            return self.warn_error(path, "read", &e);
                        }
                    }
                }
                // a FIFO or device changes its ctime as it is fed; borg only checks regular
                // files; a file that changed while read is not memorized
                if let Some(after) = file.metadata().ok().filter(|_| !special) {
                    if after.ctime() != md.ctime() || after.ctime_nsec() != md.ctime_nsec() {
                        // borg printed the A/M status before reading; C follows
                        if let Some(before) = status {
                            self.send(Event::Status(before, path.to_vec()))?;
                        }
                        status = Some('C');
                        memorize = None;
                    }
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
        if let Some((path_hash, st)) = memorize {
            self.send(Event::Memorize(path_hash, st))?;
        }
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
        if !self.opts.noacls {
            // names are looked up only for files that have an extended ACL
            let (access, default) = crate::acl::read_item_acls(
                Path::new(OsStr::from_bytes(path)),
                md.mode(),
                self.opts.numeric_ids,
                &mut crate::acl::IdNames::default(),
            );
            item.acl_access = access;
            item.acl_default = default;
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

impl FilesCacheUse<'_> {
    /// borg's `file_known_and_unchanged` plus the `seen_chunk` check of `process_file`:
    /// the status (`A` unknown, `M` modified or a chunk is gone, `U` unchanged), the chunk
    /// IDs of an unchanged file, and the path hash and stat to memorize after reading.
    fn check(
        &self,
        path: &[u8],
        md: &Metadata,
    ) -> (char, Option<Vec<ObjectId>>, (ObjectId, FileStat)) {
        // os.path.join(cwd, path)
        let hashed = if path.starts_with(b"/") || self.cwd.is_empty() {
            path.to_vec()
        } else {
            let mut h = self.cwd.to_vec();
            if !h.ends_with(b"/") {
                h.push(b'/');
            }
            h.extend_from_slice(path);
            h
        };
        let path_hash = self.key.id_hash(&hashed);
        let st = FileStat {
            inode: md.ino(),
            size: md.size(),
            ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        };
        let lookup = match self.files.lock() {
            Ok(mut f) => f.lookup(&path_hash, &st, self.mode),
            Err(_) => Lookup::Unknown,
        };
        let (status, ids) = match lookup {
            Lookup::Unknown => ('A', None),
            Lookup::Changed => ('M', None),
            Lookup::Unchanged(ids) => {
                let all_known = self
                    .known
                    .read()
                    .is_ok_and(|k| ids.iter().all(|id| matches!(k.get(id), Some(Some(_)))));
                if all_known {
                    ('U', Some(ids))
                } else {
                    ('M', None)
                }
            }
        };
        (status, ids, (path_hash, st))
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
