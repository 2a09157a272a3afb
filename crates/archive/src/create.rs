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
//! One thread walks the filesystem, reads and chunks files, and a second one opens and stats
//! the entries ahead of it, reads their attributes and lists directories (`lookahead`: that is
//! all an unchanged re-run does per file); `threads` workers compute chunk IDs, compress and
//! encrypt (nonces come from one shared [`rborg_crypto::NonceManager`], so they are unique as
//! in borg); the calling thread takes the results in walk order,
//! deduplicates against the repository's object list plus what this run stored, puts new
//! objects and builds the items. Channels are bounded, so memory stays at a few dozen chunks.
//! Objects and the item stream are stored through [`crate::writer`]'s `ChunkStore` and item
//! buffer, the storing half that `recreate` and `import-tar` use too; the storing side also
//! writes the checkpoints (see [`create_archive_cached`]).
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
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use chrono;
use chrono::{NaiveDateTime, Utc};
use rborg_chunker::{ChunkKind, Chunker, ChunkerParams};
use rborg_compress::CompressionSpec;
use rborg_crypto::{Key, TamContext};
use rborg_repository::{ObjectId, Repository};
use rmpv::Value;

use crate::cache::{FileStat, FilesCache, LocalCache, Lookup};
use crate::item::{ChunkListEntry, Item, S_IFMT, S_IFREG};
use crate::manifest::{ArchiveEntry, Manifest, ISO_FORMAT};
use crate::patterns::PatternMatcher;
use crate::walk::{dir_tags, make_path_safe, normpath_bytes};
use crate::writer::{
    archive_metadata, archive_times, ArchiveInfo, ChunkStore, ItemBuffer, KnownChunks,
};

mod lookahead;
use lookahead::{Listing, Lookahead, Looked};

/// borg's `ChunkBuffer.BUFFER_SIZE`: the item stream is cut once this much is buffered.
pub const ITEM_BUFFER_SIZE: usize = 8 * 1024 * 1024;

/// borg's default `--checkpoint-interval` in seconds (30 minutes).
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 1800;

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
    /// The run was interrupted ([`CreateOptions::interrupt`]): the archive was not saved;
    /// what was stored is in the checkpoint archive, if one was written.
    #[error("Got Ctrl-C / SIGINT.")]
    Interrupted,
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
    /// `-c/--checkpoint-interval`: once this much time has passed since the last checkpoint
    /// (checked after every content chunk, as borg's `ChunksProcessor.maybe_checkpoint`), the
    /// archive so far is committed as `NAME.checkpoint`, the file being read as a part file.
    /// `None` (borg: 0) writes checkpoints only when [`CreateOptions::interrupt`] asks.
    pub checkpoint_interval: Option<Duration>,
    /// borg's `sig_int`: a flag the caller's SIGINT handler sets. The next content chunk then
    /// triggers a checkpoint, the file being read is finished (its last part checkpointed),
    /// nothing new is started and the run ends with [`CreateError::Interrupted`] without
    /// saving the archive itself (borg 1.2 `do_create`: "Got Ctrl-C / SIGINT."). Once set
    /// it stays set: with no content chunk left to read the run still ends that way.
    pub interrupt: Option<Arc<AtomicBool>>,
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
            checkpoint_interval: Some(Duration::from_secs(DEFAULT_CHECKPOINT_INTERVAL)),
            interrupt: None,
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
    /// Original size of the files that were stored in checkpoint parts, counted again for
    /// their complete items (borg's `osize_parts`, stored as `size_parts`).
    pub osize_parts: u64,
    /// Stored size of the same (borg's `csize_parts`).
    pub csize_parts: u64,
    /// Number of part items (borg's `nfiles_parts`).
    pub nfiles_parts: u64,
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

    /// Counts one more reference to a chunk of a file that was stored in parts (borg's
    /// `Statistics.update(..., part=True)`, never unique).
    pub fn update_parts(&mut self, size: u64, csize: u64) {
        self.osize_parts += size;
        self.csize_parts += csize;
    }
}

impl std::ops::Add for Stats {
    type Output = Stats;

    /// borg's `Statistics.__add__`.
    fn add(self, o: Stats) -> Stats {
        Stats {
            osize: self.osize + o.osize,
            csize: self.csize + o.csize,
            usize: self.usize + o.usize,
            nfiles: self.nfiles + o.nfiles,
            osize_parts: self.osize_parts + o.osize_parts,
            csize_parts: self.csize_parts + o.csize_parts,
            nfiles_parts: self.nfiles_parts + o.nfiles_parts,
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

/// A content chunk after the workers: its ID, plaintext size and, unless the repository
/// already had it when the worker looked, the encrypted envelope.
struct Processed {
    id: ObjectId,
    size: u64,
    envelope: Option<Vec<u8>>,
    /// Bytes this chunk holds of the [`InFlight`] budget (0 for a known all-zero chunk,
    /// which never had a buffer).
    in_flight: usize,
}

struct Job {
    data: Vec<u8>,
    reply: SyncSender<CreateResult<Processed>>,
}

/// Events the walker gathers before handing them to the storing side (see [`EventBatches`]).
const EVENT_BATCH: usize = 64;

/// The longest the walker holds gathered events back.
const EVENT_BATCH_AGE: Duration = Duration::from_millis(10);

/// Chunks up to this size are hashed, compressed and encrypted on the walker's thread: for
/// the many small files of a server, handing each to a worker and its result back cost more
/// in thread wake-ups than the work (1 million files of up to 255 bytes: the first backup
/// spent ~40% of its samples switching threads).
const INLINE_CHUNK_BYTES: usize = 16 << 10;

/// Chunk bytes in flight per worker thread (see [`InFlight`]): a chunk being compressed and
/// one waiting for the storing side, at borg's default 2 MiB target chunk size, with room
/// for chunks above the mean.
const IN_FLIGHT_PER_THREAD: usize = 6 << 20;

/// Plus this much for the chunk the walker is cutting and the one being stored, so that
/// even one or two workers keep going through a run of large chunks (up to 8 MiB with
/// borg's default `--chunker-params`).
const IN_FLIGHT_BASE: usize = 12 << 20;

fn in_flight_limit(threads: usize) -> usize {
    threads * IN_FLIGHT_PER_THREAD + IN_FLIGHT_BASE
}

/// The chunk bytes between the chunker and the storing side: a chunk is counted from the
/// moment the walker copies it out of the chunker's buffer until the storing side has put
/// its encrypted object into the segment writer. The channels bound how many chunks are in
/// flight, but chunks range from a few bytes to 8 MiB, so a count alone lets a run of big
/// chunks hold ~100 MiB; this bounds the bytes (the first backup's peak RSS: see
/// docs/performance.md). A chunk larger than the whole limit still passes when nothing else
/// is in flight.
struct InFlight {
    state: Mutex<InFlightState>,
    room: Condvar,
    limit: usize,
}

#[derive(Default)]
struct InFlightState {
    bytes: usize,
    /// The storing side ended: nobody will make room any more.
    closed: bool,
    /// Whether the walker waits for room (a release wakes it only then: one system call
    /// less per chunk).
    waiting: bool,
}

impl InFlight {
    fn new(limit: usize) -> InFlight {
        InFlight {
            state: Mutex::new(InFlightState::default()),
            room: Condvar::new(),
            limit,
        }
    }

    /// Takes room for `bytes` if they fit now (or nothing is in flight).
    fn try_acquire(&self, bytes: usize) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        if state.closed || (state.bytes > 0 && state.bytes + bytes > self.limit) {
            return false;
        }
        state.bytes += bytes;
        true
    }

    /// Waits until `bytes` more fit (or nothing is in flight); false once closed.
    fn acquire(&self, bytes: usize) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        while !state.closed && state.bytes > 0 && state.bytes + bytes > self.limit {
            state.waiting = true;
            state = match self.room.wait(state) {
                Ok(s) => s,
                Err(_) => return false,
            };
        }
        state.waiting = false;
        state.bytes += bytes;
        !state.closed
    }

    fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let waiting = match self.state.lock() {
            Ok(mut state) => {
                state.bytes = state.bytes.saturating_sub(bytes);
                state.waiting
            }
            Err(_) => true,
        };
        if waiting {
            self.room.notify_one();
        }
    }

    fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        self.room.notify_all();
    }
}

impl Event {
    /// A [`Event::Chunk`] whose result is already there (processed on the walker's thread).
    fn ready_chunk(processed: CreateResult<Processed>) -> Event {
        let (tx, rx) = sync_channel(1);
        // the receiver is alive: the send cannot fail, and the capacity holds it
        let _ = tx.send(processed);
        Event::Chunk(rx)
    }
}

/// What the walker sends to the storing thread, in archive order.
enum Event {
    /// A file's content follows: its item as it is before the content, which checkpoint part
    /// items are made from (borg's `process_file_chunks` gets the item at that stage).
    FileStart(Box<Item>),
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

fn lock_err<T>(_: T) -> CreateError {
    CreateError::Internal("lock poisoned".into())
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
///
/// # Checkpoints
///
/// Every `opts.checkpoint_interval` (and once when `opts.interrupt` is set) the archive so
/// far is saved as `NAME.checkpoint` (`.checkpoint.N` if taken) and committed with the
/// cache, as borg 1.2's `Archive.write_checkpoint`: the file being read gets a part item
/// `PATH.borg_part_N` (`part: N`) with the chunks read since its previous part, the item
/// stream is flushed, the manifest written and the repository committed; then the checkpoint
/// is dropped from the in-memory manifest and its metadata object deleted, so the next
/// commit (a later checkpoint, or the archive itself) removes it. A file that got parts
/// gets its last part too, and its complete item references every chunk once more; the part
/// items stay in the archive (readers skip them unless `--consider-part-files`).
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
    let started = Instant::now();

    let known = match cache.as_deref_mut() {
        Some(c) => KnownChunks::take_from_cache(c),
        None if !opts.dry_run => KnownChunks::from_repository(&mut *repository)?,
        None => KnownChunks::default(),
    };
    let compression = opts.compression.clone();
    let (created, known) =
        match ChunkStore::with_known(repository, key, compression, nonce_file, known) {
            Ok(store) => {
                let created = build_archive(
                    &store,
                    key,
                    manifest,
                    name,
                    sources,
                    opts,
                    reporter,
                    cache.as_deref_mut(),
                    (start_wall, started),
                );
                (created, Some(store.into_known()))
            }
            Err(e) => (Err(e), None),
        };
    // the chunks index goes back to the cache; after a failure it may hold references of
    // chunks that were never committed, so the cache reloads what was (borg's rollback)
    if let Some(c) = cache {
        if let Some(known) = known {
            known.return_to(c);
        }
        if created.is_err() {
            let _ = c.rollback();
        }
    }
    created
}

/// [`create_archive_cached`] once the store is open.
#[allow(clippy::too_many_arguments)]
fn build_archive(
    store: &ChunkStore,
    key: &Key,
    manifest: &mut Manifest,
    name: &str,
    sources: Vec<Source>,
    opts: &CreateOptions,
    reporter: &mut dyn Reporter,
    mut cache: Option<&mut LocalCache>,
    (start_wall, started): (NaiveDateTime, Instant),
) -> CreateResult<Created> {
    let files_mode = opts.files_cache_mode.clone();
    let files = cache
        .as_deref_mut()
        .and_then(|c| c.files.take())
        .filter(|_| !files_mode.contains('d'))
        .map(Mutex::new);
    let cwd = std::env::current_dir()
        .map(|d| d.into_os_string().into_vec())
        .unwrap_or_default();
    let halt = AtomicBool::new(false);
    let in_flight = InFlight::new(in_flight_limit(opts.threads.max(1)));
    let mut archive = Building {
        name,
        checkpoint_name: checkpoint_name(manifest, name),
        info: ArchiveInfo {
            comment: opts.comment.clone(),
            timestamp: opts.timestamp,
            time_end: None,
            cmdline: opts.cmdline.clone(),
            hostname: opts.hostname.clone(),
            username: opts.username.clone(),
            chunker_params: opts.chunker_params,
            extra: Vec::new(),
        },
        manifest,
        cache,
        files: files.as_ref(),
        items: ItemBuffer::new(key)?,
        started,
        interval: opts.checkpoint_interval.filter(|_| !opts.dry_run),
        interrupt: opts.interrupt.as_deref(),
        interrupt_done: false,
        halt: &halt,
        in_flight: &in_flight,
        last_checkpoint: Instant::now(),
        part: PartState::default(),
    };
    let mut stats = Stats::default();
    let threads = opts.threads.max(1);
    let mut counters = (0u64, 0u64, 0u64); // warnings, dedup chunks, stored chunks

    let lookahead = Lookahead::default();
    let (job_tx, job_rx) = sync_channel::<Job>(2 * threads);
    let job_rx = Mutex::new(job_rx);
    let outcome = std::thread::scope(|scope| -> CreateResult<Outcome> {
        let (event_tx, event_rx) = sync_channel::<Vec<Event>>(4 * threads + 8);
        let job_tx = job_tx;
        for _ in 0..threads {
            let job_rx = &job_rx;
            scope.spawn(move || worker(job_rx, store));
        }
        let seed = key.chunk_seed();
        let files_ref = files.as_ref();
        let known_ref = store.known();
        let files_mode = files_mode.as_str();
        let cwd = cwd.as_slice();
        let halt = &halt;
        let in_flight = &in_flight;
        let store_ref = store;
        let process = move |data: &[u8]| process_chunk(store_ref, data);
        let lookahead = &lookahead;
        let walker = std::thread::Builder::new().stack_size(WALKER_STACK);
        walker
            .spawn_scoped(scope, move || {
                // however the walker ends, the look-ahead ends with it
                let _close = lookahead::CloseOnDrop(lookahead);
                let mut walker = Walker {
                    opts,
                    events: EventBatches::new(event_tx),
                    process: &process,
                    jobs: job_tx,
                    hard_links: HashMap::new(),
                    skip: HashSet::new(),
                    depth: 0,
                    chunker: None,
                    seed,
                    files_cache: files_ref.map(|f| FilesCacheUse {
                        files: f,
                        known: known_ref,
                        key,
                        mode: files_mode,
                        cwd,
                    }),
                    halt,
                    in_flight,
                    key,
                    known: known_ref,
                    zero_ids: HashMap::new(),
                    names: crate::acl::IdNames::default(),
                    lookahead: (!opts.dry_run).then_some(lookahead),
                };
                walker.run(sources);
                let _ = walker.events.flush();
            })
            .map_err(|e| CreateError::Io {
                context: "cannot start the walker thread".into(),
                source: e,
            })?;
        if !opts.dry_run {
            scope.spawn(move || lookahead.run(opts));
        }
        let outcome = consume(
            event_rx,
            store,
            &mut archive,
            &mut stats,
            reporter,
            opts,
            &mut counters,
        );
        // whatever happened, the walker must not start anything new (nor wait for room)
        halt.store(true, Ordering::SeqCst);
        in_flight.close();
        outcome
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
    // borg's do_create: after a SIGINT the archive is not saved ("it is valid, but
    // incomplete"); the checkpoint, if one was written, keeps what was stored
    if outcome == Outcome::Interrupted || archive.interrupted() {
        return Err(CreateError::Interrupted);
    }
    let saved = archive.save(store, false, &stats)?;
    // the files cache goes back to its owner
    if let (Some(c), Some(f)) = (archive.cache.take(), archive.files) {
        c.files = Some(std::mem::take(&mut *f.lock().map_err(lock_err)?));
    }
    // borg counts the metadata object in the statistics it prints (after storing it)
    let mut stats = saved.stats;
    stats.update(saved.entry.size, saved.entry.csize, saved.new);
    Ok(Created {
        id: saved.entry.id,
        name: name.to_string(),
        start: saved.start,
        end: saved.end,
        stats,
        metadata_csize: saved.entry.csize,
        warnings: counters.0,
        chunks_deduplicated: counters.1,
        chunks_stored: counters.2,
    })
}

/// borg's `Archive.__init__`: the first of `NAME.checkpoint`, `NAME.checkpoint.1`, ... that
/// is not in the manifest (a checkpoint left by an interrupted run is kept).
fn checkpoint_name(manifest: &Manifest, name: &str) -> String {
    (0u64..)
        .map(|i| match i {
            0 => format!("{name}.checkpoint"),
            _ => format!("{name}.checkpoint.{i}"),
        })
        .find(|n| !manifest.archives.contains_key(n))
        .unwrap_or_default()
}

/// How the storing side ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Everything the walker sent was stored.
    Complete,
    /// Stopped after the checkpoint an interrupt asked for.
    Interrupted,
}

/// The part-file state of the file being read (borg's `process_file_chunks` locals).
#[derive(Default)]
struct PartState {
    /// The file's item as it is before its content (path, stat attributes, hardlink
    /// master flag): what a part item is made from. `None` between files.
    template: Option<Box<Item>>,
    /// Index of the first chunk not in a part item yet (borg's `from_chunk`).
    from_chunk: usize,
    /// Part items written for this file (borg's `part_number - 1`).
    parts: u64,
}

/// An archive metadata object that was saved.
struct Saved {
    entry: ChunkListEntry,
    new: bool,
    start: NaiveDateTime,
    end: NaiveDateTime,
    /// The statistics recorded in the metadata.
    stats: Stats,
}

/// The archive being built on the storing side (borg 1.2's `Archive` in create mode and the
/// checkpoint half of `ChunksProcessor`).
struct Building<'c> {
    name: &'c str,
    /// borg's `Archive.checkpoint_name`.
    checkpoint_name: String,
    info: ArchiveInfo,
    manifest: &'c mut Manifest,
    cache: Option<&'c mut LocalCache>,
    /// The files cache, shared with the walker.
    files: Option<&'c Mutex<FilesCache>>,
    items: ItemBuffer,
    started: Instant,
    /// `--checkpoint-interval`; `None`: only on interrupt.
    interval: Option<Duration>,
    /// borg's `sig_int`.
    interrupt: Option<&'c AtomicBool>,
    /// borg's `sig_int.action_done()`: the interrupt's checkpoint was written.
    interrupt_done: bool,
    /// Tells the walker to start no new entry (borg's `_rec_walk` checks `action_done`).
    halt: &'c AtomicBool,
    /// Where the storing side gives back the room of each chunk it has stored.
    in_flight: &'c InFlight,
    /// borg's `ChunksProcessor.last_checkpoint`.
    last_checkpoint: Instant,
    part: PartState,
}

impl Building<'_> {
    /// Whether the interrupt flag was raised (borg: `bool(sig_int)`).
    fn interrupted(&self) -> bool {
        self.interrupt.is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// borg's `maybe_checkpoint` condition: an interrupt not acted on yet, or more than the
    /// interval since the last checkpoint.
    fn checkpoint_due(&self) -> bool {
        (self.interrupted() && !self.interrupt_done)
            || self
                .interval
                .is_some_and(|i| !i.is_zero() && self.last_checkpoint.elapsed() > i)
    }

    /// borg's `ChunksProcessor.write_part_file` + `maybe_checkpoint`: the chunks of the file
    /// being read since its last part become part item `PATH.borg_part_N`, then a checkpoint
    /// is written.
    fn write_part_file(
        &mut self,
        store: &ChunkStore,
        chunks: &[ChunkListEntry],
    ) -> CreateResult<()> {
        let Some(template) = self.part.template.as_deref() else {
            return Ok(());
        };
        let number = self.part.parts + 1;
        let mut item = template.clone();
        let new_chunks = chunks.get(self.part.from_chunk..).unwrap_or_default();
        item.path
            .extend_from_slice(format!(".borg_part_{number}").as_bytes());
        item.size = Some(new_chunks.iter().map(|c| c.size).sum());
        item.chunks = Some(new_chunks.to_vec());
        item.part = Some(number);
        self.items.add(&item, store)?;
        self.write_checkpoint(store)?;
        self.part.from_chunk = chunks.len();
        self.part.parts = number;
        self.last_checkpoint = Instant::now();
        if self.interrupted() && !self.interrupt_done {
            self.interrupt_done = true;
            self.halt.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// borg's `Archive.write_checkpoint`: save as the checkpoint name (committed), then
    /// forget it again: out of the in-memory manifest and its metadata object deleted, both
    /// to be committed with the next save.
    fn write_checkpoint(&mut self, store: &ChunkStore) -> CreateResult<()> {
        let saved = self.save(store, true, &Stats::default())?;
        self.manifest.archives.remove(&self.checkpoint_name);
        let id = saved.entry.id;
        // borg's cache.chunk_decref(self.id): the object goes when no reference is left (in
        // the known set, which is the chunks cache; the next save commits it)
        let unreferenced = store.known().remove_ref(&id)?;
        if unreferenced {
            store.delete(&id)?;
        }
        Ok(())
    }

    /// borg's `Archive.save` (+ `cache.commit`): flushes the item stream, stores the
    /// metadata object, adds it to the manifest, writes the manifest, commits the
    /// repository and then the client cache with this run's references so far (and the
    /// files cache), so an interruption after any save leaves repository and cache in step.
    ///
    /// The statistics recorded are borg's `Archive.stats` at that moment. For a checkpoint
    /// that is the item stream only, this flush included (borg adds the files' statistics
    /// only at the end). For the archive it is `content` plus the item stream *without* this
    /// last flush: borg's `archive.stats += fso.stats` makes a new object while the item
    /// buffer keeps updating the old one, so `borg info` and `create --stats` of a borg 1.2
    /// archive leave the last item chunk out; rborg records the same numbers.
    fn save(
        &mut self,
        store: &ChunkStore,
        checkpoint: bool,
        content: &Stats,
    ) -> CreateResult<Saved> {
        let before_flush = self.items.stats;
        self.items.flush(true, store)?;
        let item_stats = if checkpoint {
            self.items.stats
        } else {
            before_flush
        };
        let (name, info) = if checkpoint {
            let info = ArchiveInfo {
                comment: String::new(),
                timestamp: None,
                ..self.info.clone()
            };
            (self.checkpoint_name.clone(), info)
        } else {
            (self.name.to_string(), self.info.clone())
        };
        if self.manifest.archives.contains_key(&name) {
            return Err(CreateError::AlreadyExists(name));
        }
        let stats = *content + item_stats;
        let (start, end) = archive_times(self.started, info.timestamp, None);
        let meta = archive_metadata(&name, &info, &self.items.chunks, start, end, &stats);
        let data = rborg_crypto::pack_and_authenticate(store.key(), &meta, TamContext::Archive)?;
        let (entry, new) = store.add_data(&data)?;
        self.manifest.archives.insert(
            name,
            ArchiveEntry {
                id: entry.id,
                time: start.format(ISO_FORMAT).to_string(),
            },
        );
        store.commit_manifest(self.manifest)?;
        self.commit_cache(store)?;
        Ok(Saved {
            entry,
            new,
            start,
            end,
            stats,
        })
    }

    /// borg's `cache.commit()` after the repository commit: the chunks cache (the store's
    /// known set, this run's references counted in place) and the files cache are written.
    fn commit_cache(&mut self, store: &ChunkStore) -> CreateResult<()> {
        let Some(c) = self.cache.as_deref_mut() else {
            return Ok(());
        };
        // the walker shares the files cache: lend it to the cache for writing, then take it
        // back (the walker waits for the lock meanwhile)
        let mut files = match self.files {
            Some(f) => Some(f.lock().map_err(lock_err)?),
            None => None,
        };
        if let Some(f) = files.as_deref_mut() {
            c.files = Some(std::mem::take(f));
        }
        c.begin()?;
        // the chunks cache is the store's known set (references counted in place): lent to
        // the cache for writing while the workers wait
        let manifest = &*self.manifest;
        let committed = store.known().with_index(|index| {
            std::mem::swap(&mut c.chunks, index);
            let committed = c.commit(manifest, store.key());
            std::mem::swap(&mut c.chunks, index);
            committed
        })?;
        if let (Some(f), Some(back)) = (files.as_deref_mut(), c.files.take()) {
            *f = back;
        }
        Ok(committed?)
    }
}

/// A worker: ID hash, then (unless the chunk is known) compression and encryption.
fn worker(jobs: &Mutex<Receiver<Job>>, store: &ChunkStore) {
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let _ = job.reply.send(process_chunk(store, &job.data));
    }
}

/// ID hash, then (unless the chunk is known) compression and encryption: a worker's job, and
/// the walker's own for a small chunk.
fn process_chunk(store: &ChunkStore, data: &[u8]) -> CreateResult<Processed> {
    let id = store.key().id_hash(data);
    let envelope = if store.known().contains(&id) {
        None
    } else {
        Some(store.encrypt(data)?)
    };
    Ok(Processed {
        id,
        size: data.len() as u64,
        envelope,
        in_flight: data.len(),
    })
}

/// The storing side: takes the walker's events in order, stores chunks and items, and
/// writes checkpoints when they are due.
fn consume(
    events: Receiver<Vec<Event>>,
    store: &ChunkStore,
    archive: &mut Building,
    stats: &mut Stats,
    reporter: &mut dyn Reporter,
    opts: &CreateOptions,
    counters: &mut (u64, u64, u64),
) -> CreateResult<Outcome> {
    let mut pending: Vec<ChunkListEntry> = Vec::new();
    let mut last_ids: Vec<ObjectId> = Vec::new();
    let mut file_stats = Stats::default();
    for event in events.into_iter().flatten() {
        match event {
            Event::FileStart(item) => {
                archive.part = PartState {
                    template: Some(item),
                    ..PartState::default()
                };
            }
            Event::Chunk(rx) => {
                let processed = rx
                    .recv()
                    .map_err(|_| CreateError::Internal("worker ended".into()))??;
                let (entry, new) =
                    store.add_chunk(processed.id, processed.size, processed.envelope, None)?;
                archive.in_flight.release(processed.in_flight);
                if new {
                    counters.2 += 1;
                } else {
                    counters.1 += 1;
                }
                file_stats.update(entry.size, entry.csize, new);
                pending.push(entry);
                if archive.checkpoint_due() {
                    archive.write_part_file(store, &pending)?;
                }
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
                    if archive.part.parts > 0 {
                        // the rest of a file that has parts goes into a last part, so the
                        // parts concatenate to the whole file
                        if chunks.len() > archive.part.from_chunk {
                            archive.write_part_file(store, &chunks)?;
                        }
                        // the complete item references every chunk once more
                        for c in &chunks {
                            store.add_ref(c.id, c.size, c.csize)?;
                            file_stats.update_parts(c.size, c.csize);
                        }
                        file_stats.nfiles_parts += archive.part.parts;
                    }
                    archive.part = PartState::default();
                    last_ids = chunks.iter().map(|c| c.id).collect();
                    item.size = Some(chunks.iter().map(|c| c.size).sum());
                    item.chunks = Some(chunks);
                    *stats = *stats + file_stats;
                    file_stats = Stats::default();
                }
                archive.items.add(&item, store)?;
                reporter.progress(&(*stats + archive.items.stats), &item.path);
            }
            Event::Status(st, path) => reporter.status(st, &path),
            Event::DiscardChunks => {
                // borg: the read error ends process_file_chunks; parts already written stay
                pending.clear();
                file_stats = Stats::default();
                archive.part = PartState::default();
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
                if let Some(f) = archive.files {
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
        // after the interrupt's checkpoint, the file being read is finished and then the
        // run stops (borg's `_rec_walk` returns once `sig_int.action_done()`)
        if archive.interrupt_done && archive.part.template.is_none() {
            return Ok(Outcome::Interrupted);
        }
    }
    Ok(Outcome::Complete)
}

/// The walking and reading side (borg's `_rec_walk` and `FilesystemObjectProcessors`).
struct Walker<'o> {
    opts: &'o CreateOptions,
    /// How many directories deep the walk is (see [`RELATIVE_WALK_DEPTH`]).
    depth: usize,
    events: EventBatches,
    /// [`process_chunk`] on the walker's thread, for chunks up to [`INLINE_CHUNK_BYTES`].
    process: &'o (dyn Fn(&[u8]) -> CreateResult<Processed> + Sync),
    jobs: SyncSender<Job>,
    /// (inode, device) of hardlink masters -> their archived path.
    hard_links: HashMap<(u64, u64), Vec<u8>>,
    skip: HashSet<(u64, u64)>,
    chunker: Option<Chunker>,
    seed: i32,
    /// The files cache, when there is one and it is not disabled.
    files_cache: Option<FilesCacheUse<'o>>,
    /// Set by the storing side after an interrupt's checkpoint: start no new entry.
    halt: &'o AtomicBool,
    /// Room for chunk bytes between the chunker and the storing side.
    in_flight: &'o InFlight,
    key: &'o Key,
    known: &'o KnownChunks,
    /// IDs of all-zero chunks by size (borg's `zero_chunk_ids` in `cached_hash`): a sparse
    /// or zero-filled file is not hashed again chunk by chunk.
    zero_ids: HashMap<usize, ObjectId>,
    /// Names of users and groups by id: the items' owners and the ACLs' named entries.
    names: crate::acl::IdNames,
    /// The thread looking up files and directories ahead of the walker, unless this is a dry
    /// run.
    lookahead: Option<&'o Lookahead>,
}

/// The walker's end of the event channel: events go to the storing side [`EVENT_BATCH`] at a
/// time (one hand-over and one wake-up per batch instead of per event; many small files made
/// three per file).
struct EventBatches {
    sender: SyncSender<Vec<Event>>,
    batch: std::cell::RefCell<Vec<Event>>,
    /// When the oldest event of `batch` was gathered: a batch is not held longer than
    /// [`EVENT_BATCH_AGE`], so that slow input (a FIFO, a network file system) still reaches
    /// the storing side, its progress display and its checkpoints in time.
    since: std::cell::Cell<Option<Instant>>,
}

impl EventBatches {
    fn new(sender: SyncSender<Vec<Event>>) -> EventBatches {
        EventBatches {
            sender,
            batch: std::cell::RefCell::new(Vec::with_capacity(EVENT_BATCH)),
            since: std::cell::Cell::new(None),
        }
    }

    fn send(&self, e: Event) -> Step {
        let full = {
            let mut batch = self.batch.borrow_mut();
            batch.push(e);
            batch.len() >= EVENT_BATCH
        };
        if self.since.get().is_none() {
            self.since.set(Some(Instant::now()));
        }
        if full {
            self.flush()
        } else {
            self.flush_if_old()
        }
    }

    /// Sends the batch if its oldest event waits longer than [`EVENT_BATCH_AGE`] (called
    /// before anything that may block, such as reading the next piece of a file).
    fn flush_if_old(&self) -> Step {
        match self.since.get() {
            Some(t) if t.elapsed() >= EVENT_BATCH_AGE => self.flush(),
            _ => Ok(()),
        }
    }

    /// Sends the events gathered so far.
    fn flush(&self) -> Step {
        self.since.set(None);
        let batch = std::mem::replace(
            &mut *self.batch.borrow_mut(),
            Vec::with_capacity(EVENT_BATCH),
        );
        if batch.is_empty() {
            return Ok(());
        }
        self.sender.send(batch).map_err(|_| Stop)
    }
}

/// What the walker needs to consult the files cache (borg's `file_known_and_unchanged`
/// and `seen_chunk`).
struct FilesCacheUse<'o> {
    files: &'o Mutex<FilesCache>,
    known: &'o KnownChunks,
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
        self.events.send(e)
    }

    /// borg's `_rec_walk`/`do_create` loop after a SIGINT checkpoint: "get out of here".
    fn halted(&self) -> Step {
        if self.halt.load(Ordering::SeqCst) {
            Err(Stop)
        } else {
            Ok(())
        }
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
            if self.halted().is_err() {
                return;
            }
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
                    let r = self.walk(&path, restrict, None, None);
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
            self.process_dir(path, &md, true, None)
        } else {
            self.process_nondir(path, &md, None, None)
        }
    }

    /// borg's `_rec_walk`: the patterns decide first; an excluded path is reported as `x` and,
    /// when its rule allows recursion and it is a directory, walked without being stored, so
    /// included paths below it are found.
    /// `at`: the entry in its open parent directory, when walked from there; `looked`: what
    /// the [`lookahead`] found about it.
    fn walk(
        &mut self,
        path: &[u8],
        restrict_dev: Option<u64>,
        at: Option<At<'_>>,
        looked: Option<Box<Looked>>,
    ) -> Step {
        self.halted()?;
        let decision = self.opts.patterns.decide(path);
        if !decision.included {
            self.send(Event::Status('x', path.to_vec()))?;
            if !decision.recurse_dir {
                return Ok(());
            }
        }
        let recurse_excluded_dir = !decision.included;
        let fs_path = Path::new(OsStr::from_bytes(path));
        let (stat, attrs, listing, opened) = match looked {
            Some(looked) => {
                let Looked {
                    md,
                    attrs,
                    listing,
                    file,
                    ..
                } = *looked;
                (Ok(md), Some(attrs), listing, file)
            }
            None => (
                at.map_or_else(|| std::fs::symlink_metadata(fs_path), At::metadata),
                None,
                None,
                None,
            ),
        };
        let md = match stat {
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
        if self.opts.exclude_nodump && (ft.is_file() || ft.is_dir()) {
            let nodump = match &attrs {
                Some(attrs) => attrs.nodump(),
                None => linux_flags(path, None).is_some_and(|f| f & 0x1 != 0),
            };
            if nodump {
                return self.send(Event::Status('x', path.to_vec()));
            }
        }
        if !ft.is_dir() {
            return self.process_nondir(path, &md, at, attrs.map(|a| (a, opened)));
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
                    self.process_dir(path, &md, false, attrs)?;
                    for tag in tags {
                        let mut child = path.to_vec();
                        child.push(b'/');
                        child.extend_from_slice(tag.as_bytes());
                        self.walk(&child, restrict_dev, None, None)?;
                    }
                }
                return self.send(Event::Status('x', path.to_vec()));
            }
        }
        if !recurse_excluded_dir {
            self.process_dir(path, &md, false, attrs)?;
        }
        if recurse {
            self.walk_children(path, fs_path, restrict_dev, listing)?;
        }
        if recurse_excluded_dir {
            return Ok(());
        }
        // borg prints a directory's status after its contents
        let status = if self.opts.dry_run { '-' } else { 'd' };
        self.send(Event::Status(status, path.to_vec()))
    }

    /// Walks the entries of directory `path` in inode order (borg's `scandir_inorder`);
    /// `listing`: what the [`lookahead`] already listed.
    fn walk_children(
        &mut self,
        path: &[u8],
        fs_path: &Path,
        restrict_dev: Option<u64>,
        listing: Option<Listing>,
    ) -> Step {
        // the entries are opened relative to the directory (borg's parent_fd), which holds two
        // descriptors per level while its subdirectories are walked; deeper down, or without
        // the directory open, by their paths
        let relative = self.depth < RELATIVE_WALK_DEPTH;
        let Listing { dir, entries, .. } = match listing.filter(|_| relative) {
            Some(listing) => listing,
            None => match Listing::read(
                path,
                fs_path,
                relative.then(|| open_directory(fs_path).ok()).flatten(),
            ) {
                Ok(listing) => listing,
                Err(e) => return self.warn_error(path, "scandir", &e),
            },
        };
        let lookahead = self.lookahead.filter(|_| dir.is_some());
        if let (Some(l), Some(dir)) = (lookahead, &dir) {
            l.enter(Arc::clone(dir), Arc::clone(&entries), restrict_dev);
        }
        self.depth += 1;
        let walked = entries.iter().try_for_each(|entry| {
            let looked = lookahead.and_then(|l| l.next());
            let at = dir
                .as_deref()
                .zip(entry.dir_entry.as_ref())
                .map(|(dir, dir_entry)| At {
                    dir,
                    entry: dir_entry,
                    name: OsStr::from_bytes(&entry.name),
                });
            self.walk(&entry.path, restrict_dev, at, looked)
        });
        self.depth -= 1;
        if let Some(l) = lookahead {
            l.leave();
        }
        walked
    }

    /// Stores a directory item; `report` sends its status (`d`, `-` in a dry run) right away,
    /// otherwise the walker reports it after the directory's contents, as borg does.
    fn process_dir(
        &mut self,
        path: &[u8],
        md: &Metadata,
        report: bool,
        attrs: Option<ExtAttrs>,
    ) -> Step {
        if self.opts.dry_run {
            if !report {
                return Ok(());
            }
            return self.send(Event::Status('-', path.to_vec()));
        }
        let mut item = Item::new(make_path_safe(path), md.mode());
        self.simple_attrs(&mut item, md);
        self.ext_attrs(&mut item, path, md, None, attrs);
        self.send(Event::Item {
            item: Box::new(item),
            fs_path: path.to_vec(),
            status: report.then_some('d'),
            has_content: false,
            counts_as_file: false,
        })
    }

    fn process_nondir(
        &mut self,
        path: &[u8],
        md: &Metadata,
        at: Option<At<'_>>,
        looked: Option<(ExtAttrs, Option<File>)>,
    ) -> Step {
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
                    at,
                    None,
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
                    at,
                    looked,
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
        open_noatime_at(rustix::fs::CWD, OsStr::from_bytes(path), follow, false)
    }

    fn process_file(
        &mut self,
        path: &[u8],
        mut item: Item,
        md: &Metadata,
        role: FileRole,
        at: Option<At<'_>>,
        looked: Option<(ExtAttrs, Option<File>)>,
    ) -> Step {
        let FileRole {
            hardlinked,
            master,
            slave,
            special,
        } = role;
        let open = || match at {
            Some(at) => open_noatime_at(at.dir.as_fd(), at.name, special, false),
            None => Self::open_noatime(path, special),
        };
        // the look-ahead already opened the file and took its stat and attributes, and may
        // hand over the open file; if not, it is opened again when its content is read
        let (md, mut file, attrs) = match looked {
            Some((attrs, opened)) => (md.clone(), opened, Some(attrs)),
            None => {
                let file = match open() {
                    Ok(f) => f,
                    Err(e) => return self.warn_error(path, "open", &e),
                };
                let md = file.metadata().unwrap_or_else(|_| md.clone());
                (md, Some(file), None)
            }
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
                let file: &File = match &file {
                    Some(f) => f,
                    None => match open() {
                        // borg's stat_update_check, against what the look-ahead found
                        Ok(f) => match f.metadata() {
                            Ok(now) if (now.ino(), now.dev()) != (md.ino(), md.dev()) => {
                                let e = std::io::Error::other(
                                    "file inode changed (race condition), skipping file",
                                );
                                return self.warn_error(path, "", &e);
                            }
                            _ => file.insert(f),
                        },
                        Err(e) => return self.warn_error(path, "open", &e),
                    },
                };
                self.send(Event::FileStart(Box::new(item.clone())))?;
                if let Err(msg) = self.read_content(file, special) {
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
        self.ext_attrs(&mut item, path, &md, file.as_ref(), attrs);
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
    ///
    /// `slow`: a FIFO, device or stream, whose reads may wait for its writer: what was
    /// gathered is sent before each read (see [`EventBatches`]).
    fn read_content<R: Read>(
        &mut self,
        reader: R,
        slow: bool,
    ) -> std::result::Result<(), ReadFailure> {
        let Some(chunker) = self.chunker.as_mut() else {
            return Err(ReadFailure::Stop);
        };
        let mut chunks = chunker.chunkify(reader);
        loop {
            let sent = if slow {
                self.events.flush()
            } else {
                self.events.flush_if_old()
            };
            sent.map_err(|_| ReadFailure::Stop)?;
            let chunk = match chunks.next_chunk() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    return Err(ReadFailure::Io(std::io::Error::other(e.to_string())));
                }
            };
            if chunk.kind != ChunkKind::Data {
                // all zero: the ID of this size is known after the first one; a chunk the
                // repository has needs no buffer, hash or worker at all
                let id = match self.zero_ids.get(&chunk.len) {
                    Some(id) => *id,
                    None => {
                        let id = self.key.id_hash(&vec![0u8; chunk.len]);
                        self.zero_ids.insert(chunk.len, id);
                        id
                    }
                };
                if self.known.contains(&id) {
                    let known = Processed {
                        id,
                        size: chunk.len as u64,
                        envelope: None,
                        in_flight: 0,
                    };
                    self.events
                        .send(Event::ready_chunk(Ok(known)))
                        .map_err(|_| ReadFailure::Stop)?;
                    continue;
                }
            }
            if let (ChunkKind::Data, Some(d)) = (chunk.kind, chunk.data) {
                if d.len() <= INLINE_CHUNK_BYTES {
                    // a small chunk costs less to hash and seal here than to hand to a
                    // worker and back; held by the event batch, not the in-flight budget
                    let processed = (self.process)(d).map(|p| Processed { in_flight: 0, ..p });
                    self.events
                        .send(Event::ready_chunk(processed))
                        .map_err(|_| ReadFailure::Stop)?;
                    continue;
                }
            }
            if !self.in_flight.try_acquire(chunk.len) {
                // the storing side gives room back only for chunks it has received
                self.events.flush().map_err(|_| ReadFailure::Stop)?;
                if !self.in_flight.acquire(chunk.len) {
                    return Err(ReadFailure::Stop);
                }
            }
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
        self.send(Event::FileStart(Box::new(item.clone())))?;
        match self.read_content(reader, true) {
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
            (
                self.names.user(md.uid()).map(String::into_bytes),
                self.names.group(md.gid()).map(String::into_bytes),
            )
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
        self.ext_attrs(item, path, md, None, None);
    }

    /// borg's `stat_ext_attrs`: flags, xattrs and ACLs, those the [`lookahead`] read (`ahead`)
    /// or else read here, through `file` when it is open.
    fn ext_attrs(
        &mut self,
        item: &mut Item,
        path: &[u8],
        md: &Metadata,
        file: Option<&File>,
        ahead: Option<ExtAttrs>,
    ) {
        ahead
            .unwrap_or_else(|| ExtAttrs::read(self.opts, path, md.mode(), file, &mut self.names))
            .apply(item, self.opts);
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
                let all_known = ids.iter().all(|id| self.known.sizes(id).is_some());
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

/// What borg's `stat_ext_attrs` reads beyond `stat`: BSD-style flags (Linux inode flags
/// mapped as borg maps them), extended attributes and POSIX ACLs. Read on the walker's thread
/// or ahead of it ([`lookahead`]).
#[derive(Default)]
struct ExtAttrs {
    /// The flags, read for regular files and directories when they are archived or
    /// `--exclude-nodump` asks for them.
    flags: Option<u64>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    acl_access: Option<Vec<u8>>,
    acl_default: Option<Vec<u8>>,
}

impl ExtAttrs {
    fn read(
        opts: &CreateOptions,
        path: &[u8],
        mode: u32,
        file: Option<&File>,
        names: &mut crate::acl::IdNames,
    ) -> ExtAttrs {
        let ft = mode & S_IFMT;
        let mut out = ExtAttrs::default();
        if (!opts.noflags || opts.exclude_nodump) && (ft == S_IFREG || ft == crate::item::S_IFDIR) {
            out.flags = linux_flags(path, file);
        }
        if !opts.noxattrs {
            out.xattrs = xattrs(path, file);
        }
        if !opts.noacls {
            // names are looked up only for files that have an extended ACL
            (out.acl_access, out.acl_default) = crate::acl::read_item_acls(
                Path::new(OsStr::from_bytes(path)),
                file,
                mode,
                opts.numeric_ids,
                names,
            );
        }
        out
    }

    /// `--exclude-nodump`: the entry has the `nodump` flag.
    fn nodump(&self) -> bool {
        self.flags.is_some_and(|f| f & 0x1 != 0)
    }

    fn apply(self, item: &mut Item, opts: &CreateOptions) {
        if !opts.noflags {
            item.bsdflags = self.flags.filter(|&f| f != 0);
        }
        if !self.xattrs.is_empty() {
            item.xattrs = Some(self.xattrs);
        }
        if !opts.noacls {
            item.acl_access = self.acl_access;
            item.acl_default = self.acl_default;
        }
    }
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

/// The walker's stack: it recurses once per directory level, and borg stores trees as deep
/// as paths go (`PATH_MAX` allows some 2000 levels). Address space only; the pages a shallow
/// walk never touches cost nothing.
const WALKER_STACK: usize = 256 << 20;

/// Directories up to this deep have their entries stat'ed and opened through [`At`]; each
/// level keeps two descriptors open meanwhile, so that a tree 256 levels deep needs 512 of the
/// usual 1024 (borg keeps one per level, for all levels).
const RELATIVE_WALK_DEPTH: usize = 256;

/// An entry met while walking a directory, with the directory open: it is stat'ed and opened
/// relative to it (borg's `parent_fd` and `name`), sparing the kernel a walk of its whole path
/// for each.
#[derive(Clone, Copy)]
struct At<'a> {
    dir: &'a File,
    entry: &'a std::fs::DirEntry,
    /// The entry's name (what `entry.file_name()` would allocate again).
    name: &'a OsStr,
}

impl At<'_> {
    /// The entry's `lstat` (`fstatat` in the directory).
    fn metadata(self) -> std::io::Result<Metadata> {
        self.entry.metadata()
    }
}

/// Opens a directory for [`At`] lookups.
fn open_directory(path: &Path) -> std::io::Result<File> {
    open_directory_at(rustix::fs::CWD, path.as_os_str())
}

/// Opens directory `name` in `dir` (a path, with [`rustix::fs::CWD`]), not following a
/// symlink.
fn open_directory_at(dir: std::os::fd::BorrowedFd<'_>, name: &OsStr) -> std::io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::openat(
        dir,
        name,
        flags,
        Mode::empty(),
    )?))
}

/// Opens `name` in `dir` (a path, with [`rustix::fs::CWD`]) for reading without updating its
/// atime where allowed (borg's `O_NOATIME`, dropped when the file is not ours); `follow` lets a
/// symlink be followed (only `--read-special` does that); `nonblock` keeps a FIFO from
/// blocking the open.
fn open_noatime_at(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &OsStr,
    follow: bool,
    nonblock: bool,
) -> std::io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let mut base = OFlags::RDONLY | OFlags::NOCTTY | OFlags::CLOEXEC;
    if !follow {
        base |= OFlags::NOFOLLOW;
    }
    if nonblock {
        base |= OFlags::NONBLOCK;
    }
    let fd = match rustix::fs::openat(dir, name, base | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => rustix::fs::openat(dir, name, base, Mode::empty())?,
        other => other?,
    };
    Ok(File::from(fd))
}

/// borg's `xattr.get_all(fd or path, follow_symlinks=False)`: all extended attributes except
/// the POSIX ACL ones, sorted by name (borg wraps them in a `StableDict`). Read through `file`
/// when the file is open, as borg does, sparing two path lookups per file.
fn xattrs(path: &[u8], file: Option<&File>) -> Vec<(Vec<u8>, Vec<u8>)> {
    use xattr::FileExt;
    let p = OsStr::from_bytes(path);
    let mut out = Vec::new();
    // the xattr crate's list/get use llistxattr/lgetxattr: symlinks are not followed
    let names = match file {
        Some(f) => f.list_xattr(),
        None => xattr::list(p),
    };
    let Ok(names) = names else {
        return out;
    };
    for name in names {
        let n = name.as_bytes();
        if n.is_empty() || n.starts_with(b"system.posix_acl_") {
            continue;
        }
        if let Some(value) = crate::acl::read_xattr(Path::new(p), file, &name) {
            out.push((n.to_vec(), value));
        }
    }
    out.sort();
    out
}
