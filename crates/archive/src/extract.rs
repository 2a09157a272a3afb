//! Extracting an archive into a directory (borg 1.2.4 `archiver.py` `do_extract`,
//! `archive.py` `Archive.extract_item` / `extract_helper` / `restore_attrs`,
//! `get_item_uid_gid`; item format: `internals/data-structures.rst` "Items").
//!
//! What is restored, in borg's order per item: the file itself (content from its chunks,
//! optionally sparse), owner (by user/group name unless `numeric_ids`, falling back to the
//! stored uid/gid), mode, POSIX ACLs (as `system.posix_acl_*` xattrs), extended attributes
//! (after chown, which clears capabilities), then atime/mtime in nanoseconds. Not restored:
//! `bsdflags` (Linux `chattr` flags) and birthtime (which Linux cannot set). Directories are created when met and get their attributes
//! when the walk leaves them (so extracting their content does not change their mtime).
//! Hard links follow borg 1.2's model: the first item of a link group carries the chunks
//! (`hardlink_master`), later ones name it in `source` and become links to it.
//!
//! Errors of the repository or the crypto layer (a missing or corrupted chunk) abort the
//! extraction as in borg (exit code 2); a failing file system operation on one item is a
//! warning (exit code 1) and extraction goes on.
//!
//! ```no_run
//! # fn demo(repo: &mut (dyn rborg_repository::Repository + Send), key: &rborg_crypto::Key,
//! #         meta: &rborg_archive::ArchiveMeta) -> Result<(), rborg_archive::extract::ExtractError> {
//! use rborg_archive::extract::{extract_archive, ExtractOptions};
//! use rborg_archive::patterns::PatternMatcher;
//! let mut matcher = PatternMatcher::new();
//! let summary = extract_archive(repo, key, meta, &mut matcher, std::path::Path::new("."),
//!                               &ExtractOptions::default(), None, &mut |_event| {})?;
//! assert_eq!(summary.warnings, 0);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TryRecvError};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use rborg_crypto::Key;
use rborg_repository::{ObjectId, Repository};

use crate::archive::{
    decrypt_batch, finish_batch, open_object, ArchiveMeta, Decrypted, ReadError, PREFETCH,
};
use crate::item::{
    hardlinkable, strip_components, stripped_away, ChunkListEntry, Item, ItemUnpacker, S_IFBLK,
    S_IFCHR, S_IFIFO, S_IFREG,
};
use crate::patterns::PatternMatcher;

/// Options of `borg extract`.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// `-n/--dry-run`: read and verify all content, write nothing.
    pub dry_run: bool,
    /// `--stdout`: write file contents to the given writer instead of creating files.
    pub stdout: bool,
    /// `--sparse`: create holes for all-zero chunks.
    pub sparse: bool,
    /// `--numeric-ids`: restore the stored uid/gid, ignore user/group names.
    pub numeric_ids: bool,
    /// `--strip-components N`.
    pub strip_components: usize,
    /// `--consider-part-files`: extract checkpoint part files too.
    pub consider_part_files: bool,
    /// `--noxattrs`: do not restore extended attributes.
    pub no_xattrs: bool,
    /// `--noacls`: do not restore POSIX ACLs.
    pub no_acls: bool,
    /// `--progress`: report [`ExtractEvent::Total`] first (an extra pass over the item
    /// metadata, as borg does) and [`ExtractEvent::Data`] for every chunk.
    pub progress: bool,
}

/// What the extraction reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractEvent {
    /// An item is about to be extracted (borg's `--list` output, the stripped path).
    Listed(String),
    /// A non-fatal problem (borg prints it and exits with code 1).
    Warning(String),
    /// With `progress`: the content size of all selected items, before any is extracted.
    Total(u64),
    /// With `progress`: `bytes` of content of the item at `path` were extracted.
    Data {
        /// The (stripped) item path.
        path: String,
        /// Size of the chunk just written.
        bytes: u64,
    },
}

/// Totals of one extraction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    /// Items extracted (or, in dry-run/stdout mode, processed).
    pub items: u64,
    /// Content bytes read from the repository.
    pub bytes: u64,
    /// Number of warnings reported.
    pub warnings: u64,
}

/// A fatal extraction error.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Reading the archive or a chunk failed (missing object, integrity error, ...).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// An item path is absolute or leaves the destination (borg: "Path should be relative and
    /// local").
    #[error("Path should be relative and local: {0}")]
    UnsafePath(String),
    /// Writing to `--stdout` failed.
    #[error("writing to stdout: {0}")]
    Stdout(std::io::Error),
}

/// Error of one item: fatal ones abort, the others become warnings.
enum ItemError {
    Fatal(ExtractError),
    /// borg's `BackupOSError`: operation and OS error.
    Os(&'static str, std::io::Error),
    /// borg's `BackupError`.
    Backup(String),
}

impl From<ReadError> for ItemError {
    fn from(e: ReadError) -> Self {
        ItemError::Fatal(e.into())
    }
}

fn os(op: &'static str) -> impl Fn(std::io::Error) -> ItemError {
    move |e| ItemError::Os(op, e)
}

fn nix_io(e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// The display form of a path, as borg's `remove_surrogates` shows it.
fn show(path: &[u8]) -> String {
    crate::format::remove_surrogates(path)
}

/// The most plaintext the content reader opens and hands over at once (fewer chunks than
/// [`CONTENT_BATCH_CHUNKS`] when they are big; a single bigger chunk goes alone). One batch
/// is being written while the next is read and opened, which bounds extraction's content
/// memory to about three times this (the compressed and opened batch, the written one).
const BATCH_BYTES: u64 = 8 << 20;

/// The most chunks in one content batch: many small files' chunks go in one repository
/// call and one hand-over.
const CONTENT_BATCH_CHUNKS: usize = 256;

/// Consecutive chunks of a batch's content plan as [`read_content`] hands them on: each
/// stored object decrypted where it lies, with the range of its (compressed) payload.
struct DecryptedBatch {
    /// Plan index of the first chunk.
    start: usize,
    ids: Vec<ObjectId>,
    chunks: Vec<Result<Decrypted, ReadError>>,
}

/// Consecutive chunks of a batch's content plan, opened ([`finish_content`]).
struct ContentBatch {
    /// Plan index of the first chunk.
    start: usize,
    chunks: Vec<Result<Vec<u8>, ReadError>>,
}

/// The content reader (borg's `DownloadPipeline.fetch_many` with preload): on its own
/// thread, reads the planned chunks of the selected items in order with
/// [`Repository::get_many`] (announcing them ahead through [`Repository::preload`]) and
/// decrypts them (envelope MAC, AES-CTR), handing each batch to [`finish_content`] on a
/// second thread, which decompresses and ID-checks it for the writer: reading and opening
/// overlap the file system work of extraction, and opening is split in two stages of a
/// similar size (one BLAKE2b pass each). Split by stage, not by chunk over a pool: each
/// thread's buffers come from its own malloc arena, and a pool opening whole chunks kept one
/// peak of both buffer kinds per worker (peak RSS +25 MB at 1 GiB, above borg's; see
/// docs/performance.md). A failed batch is read again chunk by chunk, so that the error
/// belongs to the chunk that caused it (the writer reports it when it reaches that chunk, as
/// borg fails on the file that needs it). Stops when the next stage hangs up.
fn read_content(
    repository: &mut (dyn Repository + Send),
    key: &Key,
    mut plan: ReadAhead,
    out: SyncSender<DecryptedBatch>,
) {
    let mut i = 0;
    while i < plan.ids.len() {
        // a preload failure (a broken connection) shows again in get_many, per chunk
        let _ = plan.announce(&mut *repository, i);
        let mut end = i;
        while end < plan.ids.len()
            && end - i < CONTENT_BATCH_CHUNKS
            && (end == i || plan.offsets[end + 1] - plan.offsets[i] <= BATCH_BYTES)
        {
            end += 1;
        }
        let ids = &plan.ids[i..end];
        let cdatas: Vec<Result<Vec<u8>, ReadError>> = match repository.get_many(ids) {
            Ok(cdatas) => cdatas.into_iter().map(Ok).collect(),
            Err(_) => ids
                .iter()
                .map(|id| {
                    let mut one = repository.get_many(std::slice::from_ref(id))?;
                    Ok(one.pop().unwrap_or_default())
                })
                .collect(),
        };
        let batch = DecryptedBatch {
            start: i,
            ids: ids.to_vec(),
            chunks: decrypt_batch(key, ids, cdatas),
        };
        if out.send(batch).is_err() {
            return;
        }
        i = end;
    }
}

/// The second stage of [`read_content`]: decompresses each decrypted batch and checks its
/// chunks' IDs side by side ([`finish_batch`]), then hands it to the writer. Stops when
/// either side hangs up.
fn finish_content(key: &Key, batches: Receiver<DecryptedBatch>, out: SyncSender<ContentBatch>) {
    for batch in batches {
        let batch = ContentBatch {
            start: batch.start,
            chunks: finish_batch(key, &batch.ids, batch.chunks),
        };
        if out.send(batch).is_err() {
            return;
        }
    }
}

/// The writer's end of [`read_content`]: hands out the planned chunks by plan index, in
/// order, dropping those the writer passes over (a file that became a hard link or could
/// not be created).
struct ContentStream {
    batches: Receiver<ContentBatch>,
    current: std::collections::VecDeque<Result<Vec<u8>, ReadError>>,
    /// Plan index of the front of `current`.
    next: usize,
}

impl ContentStream {
    fn new(batches: Receiver<ContentBatch>) -> ContentStream {
        ContentStream {
            batches,
            current: Default::default(),
            next: 0,
        }
    }

    /// The plaintext of plan chunk `index`.
    fn take(&mut self, index: usize) -> Result<Vec<u8>, ItemError> {
        loop {
            if index < self.next {
                return Err(ItemError::Backup(format!(
                    "content chunk {index} was read out of order"
                )));
            }
            if let Some(front) = self.current.pop_front() {
                self.next += 1;
                if self.next - 1 == index {
                    return Ok(front?);
                }
                continue;
            }
            match self.batches.recv() {
                Ok(batch) => {
                    self.next = batch.start;
                    self.current = batch.chunks.into();
                }
                Err(_) => {
                    return Err(ItemError::Backup(format!(
                        "content chunk {index} was never read"
                    )))
                }
            }
        }
    }

    /// Hands the content of an item whose chunks start at plan index `first` to `sink`, in
    /// order; returns the content size. A chunk whose size differs from its chunk list
    /// entry is an error.
    fn read(
        &mut self,
        first: Option<usize>,
        chunks: &[ChunkListEntry],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), ItemError>,
    ) -> Result<u64, ItemError> {
        let Some(first) = first.or_else(|| chunks.is_empty().then_some(0)) else {
            return Err(ItemError::Backup(
                "content chunks were not planned for reading".into(),
            ));
        };
        let mut total = 0u64;
        for (k, entry) in chunks.iter().enumerate() {
            let data = self.take(first + k)?;
            if data.len() as u64 != entry.size {
                return Err(ItemError::Backup(format!(
                    "chunk {} has {} bytes, chunk list says {}",
                    hex::encode(entry.id),
                    data.len(),
                    entry.size
                )));
            }
            total += data.len() as u64;
            sink(&data)?;
        }
        Ok(total)
    }
}

/// Plaintext bytes of chunks the extractor keeps announced ahead of the file it is writing
/// (through [`Repository::preload`]): enough to keep a remote server busy across many small
/// files, small enough that the replies waiting in memory stay bounded.
const READ_AHEAD_BYTES: u64 = 32 << 20;

/// The chunks the selected items of one batch of the item stream will read, in order
/// (borg's `DownloadPipeline` with `preload=True`), and how many have been announced.
#[derive(Default)]
struct ReadAhead {
    ids: Vec<ObjectId>,
    /// `offsets[i]`: plaintext bytes of `ids[..i]` (one more entry than `ids`).
    offsets: Vec<u64>,
    announced: usize,
}

impl ReadAhead {
    /// Appends an item's chunks; returns the index of its first chunk.
    fn push(&mut self, chunks: &[ChunkListEntry]) -> usize {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let first = self.ids.len();
        let mut end = self.offsets[first];
        for c in chunks {
            self.ids.push(c.id);
            end += c.size;
            self.offsets.push(end);
        }
        first
    }

    /// Announces the chunks from `first` (the next file's first chunk; what lies before it
    /// has been read or skipped) up to [`READ_AHEAD_BYTES`] beyond it.
    fn announce(&mut self, repository: &mut dyn Repository, first: usize) -> Result<(), ReadError> {
        let from = self.announced.max(first);
        let limit = self.offsets[first].saturating_add(READ_AHEAD_BYTES);
        let mut to = from;
        while to < self.ids.len() && self.offsets[to] < limit {
            to += 1;
        }
        if to > from {
            repository.preload(&self.ids[from..to])?;
            self.announced = to;
        }
        Ok(())
    }
}

/// Maps user and group names to ids, remembering answers (borg's `user2uid`/`group2gid`).
#[derive(Default)]
struct Owners {
    users: HashMap<Vec<u8>, Option<u32>>,
    groups: HashMap<Vec<u8>, Option<u32>>,
}

impl Owners {
    /// borg's `get_item_uid_gid(item, numeric=...)` with defaults 0.
    fn uid_gid(&mut self, item: &Item, numeric: bool) -> (u32, u32) {
        let by_name = |name: &Option<Vec<u8>>,
                       cache: &mut HashMap<Vec<u8>, Option<u32>>,
                       user: bool|
         -> Option<u32> {
            let name = name.as_deref().filter(|n| !n.is_empty())?;
            *cache.entry(name.to_vec()).or_insert_with(|| {
                let text = std::str::from_utf8(name).ok()?;
                if user {
                    nix::unistd::User::from_name(text)
                        .ok()
                        .flatten()
                        .map(|u| u.uid.as_raw())
                } else {
                    nix::unistd::Group::from_name(text)
                        .ok()
                        .flatten()
                        .map(|g| g.gid.as_raw())
                }
            })
        };
        let (mut uid, mut gid) = (None, None);
        if !numeric {
            uid = by_name(&item.user, &mut self.users, true);
            gid = by_name(&item.group, &mut self.groups, false);
        }
        let uid = uid.unwrap_or_else(|| item.uid.and_then(|u| u32::try_from(u).ok()).unwrap_or(0));
        let gid = gid.unwrap_or_else(|| item.gid.and_then(|g| u32::try_from(g).ok()).unwrap_or(0));
        (uid, gid)
    }
}

/// Sets one extended attribute on `path` without following a symlink (`lsetxattr`, as borg's
/// `xattr.setxattr(..., follow_symlinks=False)`).
fn lsetxattr(path: &Path, name: &[u8], value: &[u8]) -> std::io::Result<()> {
    xattr::set(path, std::ffi::OsStr::from_bytes(name), value)
}

/// The binary ACL xattr for borg's ACL text ([`crate::acl::text_to_xattr`]): named entries
/// resolve to the local uid/gid of the name (falling back to the stored id) unless
/// `numeric_ids` (borg's `acl_use_local_uid_gid` / `posix_acl_use_stored_uid_gid`).
fn acl_xattr(text: &[u8], numeric_ids: bool, owners: &mut Owners) -> Option<Vec<u8>> {
    crate::acl::text_to_xattr(text, |user, name, stored| {
        if numeric_ids {
            return stored;
        }
        let mut probe = Item::default();
        let id = stored.map(u64::from);
        if user {
            probe.user = Some(name.to_vec());
            probe.uid = id;
        } else {
            probe.group = Some(name.to_vec());
            probe.gid = id;
        }
        let (uid, gid) = owners.uid_gid(&probe, false);
        Some(if user { uid } else { gid })
    })
}

/// The attributes borg's `restore_attrs` sets on an extracted item, prepared by
/// [`Extractor::prepare_attrs`] (so that a file's can be applied on the content writer's
/// thread).
struct Attrs {
    uid: u32,
    gid: u32,
    mode: u32,
    is_link: bool,
    /// `system.posix_acl_*` xattrs, or the ACL text that could not be translated.
    acls: Vec<(&'static str, Result<Vec<u8>, String>)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    atime: i64,
    mtime: i64,
}

impl Attrs {
    /// Sets owner, mode, ACLs, xattrs, then timestamps, through `file` when given (borg's
    /// order: xattrs after chown, which clears capabilities). Owner and timestamp failures
    /// are ignored as in borg; xattr failures go to `warn`.
    fn apply(
        &self,
        path: &Path,
        file: Option<&File>,
        warn: &mut dyn FnMut(String),
    ) -> Result<(), ItemError> {
        let mode = self.mode & 0o7777;
        match file {
            Some(f) => {
                let _ = std::os::unix::fs::fchown(f, Some(self.uid), Some(self.gid));
                f.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(os("attrs"))?;
            }
            None => {
                let _ = std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid));
                if !self.is_link {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                        .map_err(os("attrs"))?;
                }
            }
        }
        for (name, value) in &self.acls {
            let value = value.as_ref().map_err(|e| ItemError::Backup(e.clone()))?;
            lsetxattr(path, name.as_bytes(), value).map_err(os("attrs"))?;
        }
        for (name, value) in &self.xattrs {
            if let Err(e) = lsetxattr(path, name, value) {
                warn(format!(
                    "{}: when setting extended attribute {}: {e}",
                    path.display(),
                    show(name)
                ));
            }
        }
        let ts =
            |ns: i64| TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
        let _ = match file {
            Some(f) => {
                use std::os::fd::AsRawFd;
                nix::sys::stat::futimens(f.as_raw_fd(), &ts(self.atime), &ts(self.mtime))
            }
            None => nix::sys::stat::utimensat(
                None,
                path,
                &ts(self.atime),
                &ts(self.mtime),
                UtimensatFlags::NoFollowSymlink,
            ),
        };
        Ok(())
    }
}

/// What [`Extractor::extract_item`] made of an item.
enum Created {
    /// All done (a directory, link, special file, or a regular file that became a hard link).
    Done,
    /// A regular file, created empty at this path: its content and attributes follow
    /// ([`fill_file`]).
    File(File, PathBuf),
}

/// The rest of borg's `extract_item` for a regular file that [`Extractor::extract_item`]
/// created: its content (the chunks from plan index `first` of `content`, holes seeked over
/// when `sparse`), then its attributes, then the size and health checks. `progress` hears
/// each piece written, `warn` the attribute warnings. Returns the content bytes read (0 when
/// reading failed) with the item's outcome.
#[allow(clippy::too_many_arguments)]
fn fill_file(
    mut file: File,
    path: &Path,
    item: &Item,
    first: Option<usize>,
    attrs: &Attrs,
    content: &mut ContentStream,
    sparse: bool,
    progress: &mut dyn FnMut(u64),
    warn: &mut dyn FnMut(String),
) -> (u64, Result<(), ItemError>) {
    let chunks = item.chunks.as_deref().unwrap_or_default();
    let written = content.read(first, chunks, &mut |data| {
        progress(data.len() as u64);
        if sparse && data.iter().all(|&b| b == 0) {
            file.seek(SeekFrom::Current(data.len() as i64))
                .map_err(os("write"))?;
        } else {
            file.write_all(data).map_err(os("write"))?;
        }
        Ok(())
    });
    let total = match written {
        Ok(total) => total,
        Err(e) => return (0, Err(e)),
    };
    let result = (|| {
        // borg's fd.truncate(fd.tell()): only a file that ends in a hole (sparse mode seeks
        // over zeros) is shorter than its content; a new file written to its end already has
        // its size
        if sparse {
            file.set_len(total).map_err(os("truncate_and_attrs"))?;
        }
        attrs.apply(path, Some(&file), warn)?;
        drop(file);
        check_size(item, total)?;
        check_healthy(item)
    })();
    (total, result)
}

/// A `--progress` event for `bytes` of `path`'s content (`None`: no progress display).
fn progress_data(events: &mut dyn FnMut(ExtractEvent), path: Option<&str>, bytes: u64) {
    if let Some(path) = path {
        events(ExtractEvent::Data {
            path: path.to_string(),
            bytes,
        });
    }
}

/// Refuses absolute paths and `..` components, so nothing is written outside the destination.
fn check_relative(path: &[u8]) -> Result<(), ExtractError> {
    if path.starts_with(b"/") || path.split(|&b| b == b'/').any(|c| c == b"..") {
        return Err(ExtractError::UnsafePath(show(path)));
    }
    Ok(())
}

/// borg 1.2's `hardlink_masters` for partial extraction: archive path of a link group's
/// first item -> its chunks (when not extracted) or the path it was extracted to.
type Masters = HashMap<Vec<u8>, (Option<Vec<ChunkListEntry>>, Option<PathBuf>)>;

struct Extractor<'a> {
    opts: &'a ExtractOptions,
    dest: PathBuf,
    owners: Owners,
    stdout: Option<&'a mut dyn Write>,
    events: &'a mut dyn FnMut(ExtractEvent),
    summary: ExtractSummary,
    masters: Option<Masters>,
    /// The directory the previous item's parent was found or made in: the items of a
    /// directory follow each other, so its existence is checked once, not once per file.
    /// Forgotten whenever an existing path is removed.
    known_parent: Option<PathBuf>,
}

impl Extractor<'_> {
    fn warn(&mut self, msg: String) {
        self.summary.warnings += 1;
        (self.events)(ExtractEvent::Warning(msg));
    }

    fn report(&mut self, path: &[u8], result: Result<(), ItemError>) -> Result<(), ExtractError> {
        match result {
            Ok(()) => Ok(()),
            Err(ItemError::Fatal(e)) => Err(e),
            Err(ItemError::Os(op, e)) => {
                self.warn(format!("{}: {op}: {e}", show(path)));
                Ok(())
            }
            Err(ItemError::Backup(msg)) => {
                self.warn(format!("{}: {msg}", show(path)));
                Ok(())
            }
        }
    }

    fn target(&self, path: &[u8]) -> PathBuf {
        self.dest.join(OsStr::from_bytes(path))
    }

    /// Content of an item in dry-run and stdout mode: fetched, verified, maybe written out.
    /// Its chunks start at plan index `first` of `content`.
    fn read_only(
        &mut self,
        item: &Item,
        first: Option<usize>,
        content: &mut ContentStream,
    ) -> Result<(), ItemError> {
        if let Some(chunks) = &item.chunks {
            let stdout = if self.opts.stdout {
                self.stdout.as_deref_mut()
            } else {
                None
            };
            let mut stdout = stdout;
            let progress = self.opts.progress.then(|| show(&item.path));
            let events = &mut self.events;
            let total = content.read(first, chunks, &mut |data| {
                progress_data(events, progress.as_deref(), data.len() as u64);
                if let Some(out) = stdout.as_deref_mut() {
                    out.write_all(data)
                        .map_err(|e| ItemError::Fatal(ExtractError::Stdout(e)))?;
                }
                Ok(())
            })?;
            if let Some(out) = stdout {
                out.flush()
                    .map_err(|e| ItemError::Fatal(ExtractError::Stdout(e)))?;
            }
            self.summary.bytes += total;
            check_size(item, total)?;
        }
        check_healthy(item)
    }

    /// borg's `extract_helper`: for a hardlink slave, link to the already extracted master (or
    /// take over the master's chunks when the master was not extracted). Returns whether a
    /// link was made.
    fn link_helper(&mut self, item: &mut Item, path: &Path) -> Result<bool, ItemError> {
        let Some(source) = item.source.clone() else {
            return Ok(false);
        };
        check_relative(&source).map_err(ItemError::Fatal)?;
        let default = self.dest.join(OsStr::from_bytes(&strip_components(
            &source,
            self.opts.strip_components,
        )));
        let (chunks, link_target) = match self.masters.as_ref().and_then(|m| m.get(&source)) {
            Some((c, t)) => (c.clone(), t.clone()),
            None => (None, Some(default)),
        };
        if let Some(target) = link_target {
            std::fs::hard_link(&target, path).map_err(os("link"))?;
            return Ok(true);
        }
        if let Some(chunks) = chunks {
            item.chunks = Some(chunks);
        }
        Ok(false)
    }

    fn after_extract(&mut self, item: &Item, original_path: &[u8], path: &Path) {
        if let Some(masters) = &mut self.masters {
            let key = item
                .source
                .clone()
                .unwrap_or_else(|| original_path.to_vec());
            masters.insert(key, (None, Some(path.to_path_buf())));
        }
    }

    /// borg's `extract_item` for everything but dry-run/stdout and directories' second pass,
    /// except a regular file's content and attributes: a created file comes back as
    /// [`Created::File`] for [`fill_file`].
    fn extract_item(
        &mut self,
        item: &mut Item,
        original_path: &[u8],
    ) -> Result<Created, ItemError> {
        check_relative(&item.path).map_err(ItemError::Fatal)?;
        let path = self.target(&item.path);
        if let Ok(st) = std::fs::symlink_metadata(&path) {
            self.known_parent = None;
            let _ = if st.is_dir() {
                std::fs::remove_dir(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
        let mode = item.mode.unwrap_or(0);
        let known_parent = &mut self.known_parent;
        let mut make_parent = |p: &Path| -> Result<(), ItemError> {
            match p.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => {
                    if known_parent.as_deref() != Some(parent) {
                        if !parent.exists() {
                            std::fs::create_dir_all(parent).map_err(os("makedirs"))?;
                        }
                        *known_parent = Some(parent.to_path_buf());
                    }
                    Ok(())
                }
                _ => Ok(()),
            }
        };
        match mode & crate::item::S_IFMT {
            S_IFREG => {
                make_parent(&path)?;
                if self.link_helper(item, &path)? {
                    return Ok(Created::Done);
                }
                let file = File::create(&path).map_err(os("open"))?;
                self.after_extract(item, original_path, &path);
                Ok(Created::File(file, path))
            }
            crate::item::S_IFDIR => {
                make_parent(&path)?;
                if !path.exists() {
                    std::fs::DirBuilder::new()
                        .mode(0o777)
                        .create(&path)
                        .map_err(os("mkdir"))?;
                }
                Ok(Created::Done)
            }
            crate::item::S_IFLNK => {
                make_parent(&path)?;
                let source = item.source.clone().unwrap_or_default();
                std::os::unix::fs::symlink(OsStr::from_bytes(&source), &path)
                    .map_err(os("symlink"))?;
                self.restore_attrs(&path, item, None)?;
                Ok(Created::Done)
            }
            S_IFIFO => {
                make_parent(&path)?;
                if self.link_helper(item, &path)? {
                    return Ok(Created::Done);
                }
                nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o666))
                    .map_err(|e| ItemError::Os("mkfifo", nix_io(e)))?;
                self.restore_attrs(&path, item, None)?;
                self.after_extract(item, original_path, &path);
                Ok(Created::Done)
            }
            S_IFCHR | S_IFBLK => {
                make_parent(&path)?;
                if self.link_helper(item, &path)? {
                    return Ok(Created::Done);
                }
                let kind = if mode & crate::item::S_IFMT == S_IFCHR {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                nix::sys::stat::mknod(
                    &path,
                    kind,
                    Mode::from_bits_truncate(mode & 0o7777),
                    item.rdev.unwrap_or(0),
                )
                .map_err(|e| ItemError::Os("mknod", nix_io(e)))?;
                self.restore_attrs(&path, item, None)?;
                self.after_extract(item, original_path, &path);
                Ok(Created::Done)
            }
            other => Err(ItemError::Backup(format!(
                "Unknown archive item type {other:o}"
            ))),
        }
    }

    /// borg's `restore_attrs`: owner, mode, xattrs, then timestamps. Owner and timestamp
    /// failures are ignored as in borg; xattr failures are warnings.
    fn restore_attrs(
        &mut self,
        path: &Path,
        item: &Item,
        file: Option<&File>,
    ) -> Result<(), ItemError> {
        self.prepare_attrs(item)
            .apply(path, file, &mut |w| self.warn(w))
    }

    /// What [`Attrs::apply`] sets on `item`'s file: owner names resolved to local ids and ACL
    /// text translated here, where the name caches live.
    fn prepare_attrs(&mut self, item: &Item) -> Attrs {
        let (uid, gid) = self.owners.uid_gid(item, self.opts.numeric_ids);
        let is_link = item.is_link();
        let mut acls = Vec::new();
        if !self.opts.no_acls && !is_link {
            let texts = [
                (&item.acl_access, "system.posix_acl_access"),
                (&item.acl_default, "system.posix_acl_default"),
            ];
            for (text, name) in texts {
                let Some(text) = text.as_deref().filter(|t| !t.is_empty()) else {
                    continue;
                };
                let value = acl_xattr(text, self.opts.numeric_ids, &mut self.owners)
                    .ok_or_else(|| format!("invalid ACL {:?}", show(text)));
                acls.push((name, value));
            }
        }
        let xattrs = if self.opts.no_xattrs {
            Vec::new()
        } else {
            item.xattrs.clone().unwrap_or_default()
        };
        let mtime = item.mtime.unwrap_or(0);
        Attrs {
            uid,
            gid,
            mode: item.mode.unwrap_or(0),
            is_link,
            acls,
            xattrs,
            atime: item.atime.unwrap_or(mtime),
            mtime,
        }
    }

    /// [`fill_file`] on this thread (dry runs aside, the sequential path: `--progress`
    /// reports each piece written as it goes).
    fn fill_here(
        &mut self,
        file: File,
        path: &Path,
        item: &Item,
        first: Option<usize>,
        content: &mut ContentStream,
    ) -> Result<(), ItemError> {
        let attrs = self.prepare_attrs(item);
        let progress = self.opts.progress.then(|| show(&item.path));
        let events = &mut self.events;
        let mut warnings = Vec::new();
        let (total, result) = fill_file(
            file,
            path,
            item,
            first,
            &attrs,
            content,
            self.opts.sparse,
            &mut |bytes| progress_data(events, progress.as_deref(), bytes),
            &mut |w| warnings.push(w),
        );
        self.summary.bytes += total;
        for w in warnings {
            self.warn(w);
        }
        result
    }

    /// Second pass over a directory: its attributes, after its content was extracted.
    fn finish_dir(&mut self, item: &Item) -> Result<(), ExtractError> {
        let path = self.target(&item.path);
        let result = if path.is_dir() {
            self.restore_attrs(&path, item, None)
        } else {
            Ok(())
        };
        self.report(&item.path, result)
    }
}

/// Extracts the selected items of one batch of the item stream (each with the plan index of
/// its first content chunk), finishing the directories the walk leaves.
fn extract_selected(
    ex: &mut Extractor<'_>,
    dirs: &mut Vec<Item>,
    selected: Vec<(Item, Option<usize>)>,
    content: &mut ContentStream,
) -> Result<(), ExtractError> {
    let opts = ex.opts;
    for (mut item, first_chunk) in selected {
        let original_path = item.path.clone();
        item.path = strip_components(&item.path, opts.strip_components);
        if !opts.dry_run {
            while dirs.last().is_some_and(|d| !item.path.starts_with(&d.path)) {
                if let Some(d) = dirs.pop() {
                    if !opts.stdout {
                        ex.finish_dir(&d)?;
                    }
                }
            }
        }
        (ex.events)(ExtractEvent::Listed(show(&item.path)));
        ex.summary.items += 1;
        let result = if opts.dry_run || opts.stdout {
            ex.read_only(&item, first_chunk, content)
        } else {
            let created = ex.extract_item(&mut item, &original_path);
            if item.is_dir() {
                dirs.push(item.clone());
            }
            match created {
                Ok(Created::File(file, path)) => {
                    ex.fill_here(file, &path, &item, first_chunk, content)
                }
                Ok(Created::Done) => Ok(()),
                Err(e) => Err(e),
            }
        };
        ex.report(&original_path, result)?;
    }
    Ok(())
}

/// A regular file [`Extractor::extract_item`] created, on its way to the content writer.
struct FileJob {
    file: File,
    path: PathBuf,
    item: Item,
    /// Plan index of its first content chunk.
    first: Option<usize>,
    attrs: Attrs,
}

/// What the content writer made of a [`FileJob`].
struct FileOutcome {
    bytes: u64,
    warnings: Vec<String>,
    result: Result<(), ItemError>,
}

/// The content writer of [`extract_selected_pipelined`]: fills the created files in the
/// order they come, reading their content from `content`. Stops when either side hangs up.
fn write_files(
    jobs: Receiver<FileJob>,
    done: Sender<FileOutcome>,
    mut content: ContentStream,
    sparse: bool,
) {
    for job in jobs {
        let mut warnings = Vec::new();
        let (bytes, result) = fill_file(
            job.file,
            &job.path,
            &job.item,
            job.first,
            &job.attrs,
            &mut content,
            sparse,
            &mut |_| {},
            &mut |w| warnings.push(w),
        );
        let outcome = FileOutcome {
            bytes,
            warnings,
            result,
        };
        if done.send(outcome).is_err() {
            return;
        }
    }
}

/// Created files handed to the content writer and not yet filled: bounds the open file
/// descriptors (and how far creation runs ahead).
const FILES_AHEAD: usize = 64;

/// Items extracted but not yet reported (waiting for an earlier file's content).
const REPORTS_AHEAD: usize = 512;

/// An item of [`extract_selected_pipelined`] waiting for its turn to be reported, or a
/// directory whose attributes wait until everything before them is done.
enum Pending {
    Item {
        listed: String,
        original_path: Vec<u8>,
        /// `None` while its file is with the content writer.
        outcome: Option<(Vec<String>, Result<(), ItemError>)>,
    },
    FinishDir(Box<Item>),
}

/// [`extract_selected`] on two threads: this one makes the items in archive order
/// (directories, links, special files, regular files created empty) and hands each regular
/// file to a content writer thread ([`write_files`]), which fills it (content, then
/// attributes) while the next files are created. File creation (inode allocation, directory
/// entries) and the content copy into the page cache were the two halves of the one writing
/// thread's time. Everything is reported in archive order, as borg does: an item's `--list`
/// line, its warnings, its error; a directory gets its attributes when all items before it
/// are done.
fn extract_selected_pipelined(
    ex: &mut Extractor<'_>,
    dirs: &mut Vec<Item>,
    selected: Vec<(Item, Option<usize>)>,
    jobs: SyncSender<FileJob>,
    done: Receiver<FileOutcome>,
) -> Result<(), ExtractError> {
    let opts = ex.opts;
    let mut pending = std::collections::VecDeque::new();
    for (mut item, first) in selected {
        let original_path = item.path.clone();
        item.path = strip_components(&item.path, opts.strip_components);
        while dirs.last().is_some_and(|d| !item.path.starts_with(&d.path)) {
            if let Some(d) = dirs.pop() {
                pending.push_back(Pending::FinishDir(Box::new(d)));
            }
        }
        ex.summary.items += 1;
        let listed = show(&item.path);
        let created = ex.extract_item(&mut item, &original_path);
        if item.is_dir() {
            dirs.push(item.clone());
        }
        let outcome = match created {
            Ok(Created::File(file, path)) => {
                let attrs = ex.prepare_attrs(&item);
                let job = FileJob {
                    file,
                    path,
                    item,
                    first,
                    attrs,
                };
                match jobs.send(job) {
                    Ok(()) => None,
                    Err(_) => Some((Vec::new(), Err(writer_gone()))),
                }
            }
            Ok(Created::Done) => Some((Vec::new(), Ok(()))),
            Err(e) => Some((Vec::new(), Err(e))),
        };
        pending.push_back(Pending::Item {
            listed,
            original_path,
            outcome,
        });
        report_pending(ex, &mut pending, &done, REPORTS_AHEAD)?;
    }
    report_pending(ex, &mut pending, &done, 0)
}

fn writer_gone() -> ItemError {
    ItemError::Backup("the content writer stopped".into())
}

/// Reports the pending items from the front as far as they are done, waiting for the
/// content writer while more than `keep` are pending.
fn report_pending(
    ex: &mut Extractor<'_>,
    pending: &mut std::collections::VecDeque<Pending>,
    done: &Receiver<FileOutcome>,
    keep: usize,
) -> Result<(), ExtractError> {
    loop {
        match pending.front_mut() {
            None => return Ok(()),
            Some(Pending::Item { outcome: None, .. }) => {
                let received = if pending.len() > keep {
                    done.recv().map_err(|_| TryRecvError::Disconnected)
                } else {
                    done.try_recv()
                };
                let outcome = match received {
                    Ok(o) => {
                        ex.summary.bytes += o.bytes;
                        (o.warnings, o.result)
                    }
                    Err(TryRecvError::Empty) => return Ok(()),
                    Err(TryRecvError::Disconnected) => (Vec::new(), Err(writer_gone())),
                };
                if let Some(Pending::Item { outcome: slot, .. }) = pending.front_mut() {
                    *slot = Some(outcome);
                }
            }
            Some(Pending::FinishDir(_)) => {
                if let Some(Pending::FinishDir(d)) = pending.pop_front() {
                    ex.finish_dir(&d)?;
                }
            }
            Some(Pending::Item {
                outcome: Some(_), ..
            }) => {
                if let Some(Pending::Item {
                    listed,
                    original_path,
                    outcome: Some((warnings, result)),
                }) = pending.pop_front()
                {
                    (ex.events)(ExtractEvent::Listed(listed));
                    for w in warnings {
                        ex.warn(w);
                    }
                    ex.report(&original_path, result)?;
                }
            }
        }
    }
}

fn check_size(item: &Item, total: u64) -> Result<(), ItemError> {
    match item.size {
        Some(size) if size != total => Err(ItemError::Backup(format!(
            "Size inconsistency detected: size {size}, chunks size {total}"
        ))),
        _ => Ok(()),
    }
}

fn check_healthy(item: &Item) -> Result<(), ItemError> {
    if item.chunks_healthy.is_some() {
        return Err(ItemError::Backup(
            "File has damaged (all-zero) chunks. Try running borg check --repair.".into(),
        ));
    }
    Ok(())
}

/// The content size of the items `extract_archive` will extract (borg's
/// `sum(item.get_size(hardlink_masters) for item in archive.iter_items(filter))` for the
/// progress indicator). Matches on a copy of `matcher`, so its match counts stay untouched.
fn selected_size(
    repository: &mut dyn Repository,
    key: &Key,
    meta: &ArchiveMeta,
    matcher: &PatternMatcher,
    opts: &ExtractOptions,
) -> Result<u64, ExtractError> {
    let matcher = matcher.clone();
    let mut sizes: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut total = 0u64;
    let mut unpacker = ItemUnpacker::new();
    for batch in meta.items.chunks(PREFETCH) {
        let cdatas = repository.get_many(batch).map_err(ReadError::from)?;
        for (id, cdata) in batch.iter().zip(cdatas) {
            unpacker.feed(&open_object(key, id, &cdata)?);
        }
        while let Some(item) = unpacker.next_item()? {
            if item.part.is_some() && !opts.consider_part_files {
                continue;
            }
            let own = item
                .size
                .or_else(|| item.chunks.as_ref().map(|c| c.iter().map(|e| e.size).sum()));
            // a hardlink slave has the size of its master's content
            let size = match (own, &item.source) {
                (Some(s), _) => s,
                (None, Some(src)) if item.mode.unwrap_or(0) & crate::item::S_IFMT == S_IFREG => {
                    sizes.get(src).copied().unwrap_or(0)
                }
                _ => 0,
            };
            if item.chunks.is_some() {
                sizes.insert(item.path.clone(), size);
            }
            if matcher.matches(&item.path) && !stripped_away(&item.path, opts.strip_components) {
                total += size;
            }
        }
    }
    unpacker.finish()?;
    Ok(total)
}

/// Extracts the items of `meta` that `matcher` selects into `dest` (borg's `do_extract`).
///
/// With `opts.stdout`, file contents go to `stdout` in archive order and nothing is created.
/// `events` receives `--list` lines and warnings as they happen; include patterns that
/// matched nothing are reported as warnings at the end, as borg does.
#[allow(clippy::too_many_arguments)]
pub fn extract_archive<'a>(
    repository: &'a mut (dyn Repository + Send),
    key: &'a Key,
    meta: &ArchiveMeta,
    matcher: &mut PatternMatcher,
    dest: &Path,
    opts: &'a ExtractOptions,
    stdout: Option<&'a mut dyn Write>,
    events: &'a mut dyn FnMut(ExtractEvent),
) -> Result<ExtractSummary, ExtractError> {
    let partial = !matcher.is_empty() || opts.strip_components > 0;
    let mut ex = Extractor {
        opts,
        dest: dest.to_path_buf(),
        owners: Owners::default(),
        stdout,
        events,
        summary: ExtractSummary::default(),
        masters: if partial { Some(HashMap::new()) } else { None },
        known_parent: None,
    };
    if opts.progress {
        let total = selected_size(&mut *repository, key, meta, matcher, opts)?;
        (ex.events)(ExtractEvent::Total(total));
    }
    let mut dirs: Vec<Item> = Vec::new();
    let mut unpacker = ItemUnpacker::new();
    for batch in meta.items.chunks(PREFETCH) {
        let cdatas = repository.get_many(batch).map_err(ReadError::from)?;
        for (id, cdata) in batch.iter().zip(cdatas) {
            unpacker.feed(&open_object(key, id, &cdata)?);
        }
        // First the selection, so that the chunks of the selected files are known (and the
        // content reader can go ahead of the writer) before the first of them is extracted.
        let mut selected = Vec::new();
        let mut plan = ReadAhead::default();
        while let Some(mut item) = unpacker.next_item()? {
            if item.part.is_some() && !opts.consider_part_files {
                continue;
            }
            let mode = item.mode.unwrap_or(0);
            // borg's build_filter: an item stripped down to nothing counts as not matched, so
            // a link group's master that --strip-components removes still lends its chunks.
            let matched =
                matcher.matches(&item.path) && !stripped_away(&item.path, opts.strip_components);
            if let Some(masters) = &mut ex.masters {
                if !matched
                    && hardlinkable(mode)
                    && item.hardlink_master.unwrap_or(true)
                    && item.source.is_none()
                {
                    masters.insert(item.path.clone(), (item.chunks.clone(), None));
                }
                // a link whose master is not extracted takes over its chunks (`link_helper`
                // decides again when the item's turn comes: an earlier link extracted by
                // then is linked to instead, and the chunks read for this one are dropped)
                if let Some((Some(chunks), None)) =
                    item.source.as_ref().and_then(|s| masters.get(s))
                {
                    // (dry-run and --stdout read only an item's own chunks, as borg 1.2.4)
                    let writes = !opts.dry_run && !opts.stdout;
                    if matched && writes && mode & crate::item::S_IFMT == S_IFREG {
                        item.chunks = Some(chunks.clone());
                    }
                }
            }
            if !matched {
                continue;
            }
            let reads_content =
                opts.dry_run || opts.stdout || mode & crate::item::S_IFMT == S_IFREG;
            let first_chunk = match &item.chunks {
                Some(chunks) if reads_content => Some(plan.push(chunks)),
                _ => None,
            };
            selected.push((item, first_chunk));
        }
        let repository = &mut *repository;
        let ex = &mut ex;
        let dirs = &mut dirs;
        std::thread::scope(|scope| -> Result<(), ExtractError> {
            // a hand-over, no queue: one batch being written, the next being read and opened
            let (decrypted, to_finish) = sync_channel(0);
            let (batches, received) = sync_channel(0);
            let reader = scope.spawn(move || read_content(repository, key, plan, decrypted));
            let finisher = scope.spawn(move || finish_content(key, to_finish, batches));
            let content = ContentStream::new(received);
            // dry runs, --stdout and --progress (whose events come from where content is
            // written) stay on this thread
            let result = if opts.dry_run || opts.stdout || opts.progress {
                let mut content = content;
                extract_selected(ex, dirs, selected, &mut content)
                // `content` dropped: the reader, if still going ahead, stops
            } else {
                let (jobs, job_queue) = sync_channel(FILES_AHEAD);
                let (outcomes, done) = channel();
                let sparse = opts.sparse;
                let writer = scope.spawn(move || write_files(job_queue, outcomes, content, sparse));
                // returns having hung up on the writer, which then drops the content stream
                let result = extract_selected_pipelined(ex, dirs, selected, jobs, done);
                if let Err(panic) = writer.join() {
                    std::panic::resume_unwind(panic);
                }
                result
            };
            for stage in [finisher, reader] {
                if let Err(panic) = stage.join() {
                    std::panic::resume_unwind(panic);
                }
            }
            result
        })?;
    }
    unpacker.finish()?;
    if !opts.dry_run && !opts.stdout {
        while let Some(d) = dirs.pop() {
            ex.finish_dir(&d)?;
        }
    }
    for pattern in matcher.unmatched_includes() {
        ex.warn(format!("Include pattern '{pattern}' never matched."));
    }
    Ok(ex.summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_text_to_xattr() {
        let mut owners = Owners::default();
        let text =
            b"user::rw-\nuser:no-such-user-x:r--\t:1234\ngroup::r--\t\nmask::r-x\nother::---";
        let v = acl_xattr(text, false, &mut owners).unwrap();
        let mut want = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 1234),
            (4, 4, u32::MAX),
            (0x10, 5, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            want.extend_from_slice(&tag.to_le_bytes());
            want.extend_from_slice(&perm.to_le_bytes());
            want.extend_from_slice(&id.to_le_bytes());
        }
        assert_eq!(v, want);
        assert!(acl_xattr(b"bogus::rw-", false, &mut owners).is_none());
        assert!(acl_xattr(b"user::rwz", false, &mut owners).is_none());
    }

    #[test]
    fn refuses_escaping_paths() {
        assert!(check_relative(b"/etc/passwd").is_err());
        assert!(check_relative(b"a/../../x").is_err());
        assert!(check_relative(b"a/b..c").is_ok());
    }
}
