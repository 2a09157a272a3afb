//! [`LocalRepository`]: borg's `Repository` class (`borg/repository.py`) for a repository in a
//! local directory: creation, opening with locking, transactions over the segment log, the
//! index/hints files, storage quota, append-only mode, the nonce file and destruction.
//! Compaction lives in `compact.rs`, `check` in `check.rs`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{ConfigError, RepoConfig};
use crate::error::{format_file_size, Error};
use crate::hashindex::{NsEntry, NsIndex, ObjectId};
use crate::hints::Hints;
use crate::index_files::{self, IndexFileError};
use crate::lock::{self, Lock};
use crate::segment::{
    self, LoggedIO, SegmentEntry, ATTIC_MAGIC, MAX_OBJECT_SIZE, MAX_SEGMENT_SIZE_LIMIT, TAG_COMMIT,
    TAG_DELETE, TAG_PUT,
};
use crate::{Repository, Result};

/// The README borg writes into every repository (`constants.REPOSITORY_README`).
pub const REPOSITORY_README: &str =
    "This is a Borg Backup repository.\nSee https://borgbackup.readthedocs.io/\n";

/// How to open (or create) a repository; mirrors the arguments of borg's `Repository()`.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// `Some(true)`: exclusive lock; `Some(false)`: shared lock (read only use);
    /// `None`: shared lock that is upgraded on the first write (borg's "old client" mode).
    pub exclusive: Option<bool>,
    /// How long to wait for the lock (`--lock-wait`), passed to [`Lock::acquire`].
    pub lock_wait: Option<Duration>,
    /// Whether to lock at all (`--bypass-lock` sets this to false).
    pub lock: bool,
    /// Force append-only mode for this session (the config can only add to it).
    pub append_only: bool,
    /// Override the config's `storage_quota` (bytes, 0 = none).
    pub storage_quota: Option<u64>,
    /// Refuse Attic repositories by looking at the newest segment's magic.
    pub check_segment_magic: bool,
    /// `create` only: create missing parent directories.
    pub make_parent_dirs: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            exclusive: Some(false),
            lock_wait: None,
            lock: true,
            append_only: false,
            storage_quota: None,
            check_segment_magic: true,
            make_parent_dirs: false,
        }
    }
}

impl OpenOptions {
    /// Defaults with an exclusive lock (what writing commands use).
    pub fn exclusive() -> Self {
        OpenOptions {
            exclusive: Some(true),
            ..Default::default()
        }
    }
}

/// What [`LocalRepository::check_report`] found.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// True when no error was found, or errors were repaired.
    pub ok: bool,
    /// Errors (borg logs them with `logger.error`).
    pub errors: Vec<String>,
    /// Warnings, e.g. per-object differences between the committed and the rebuilt index.
    pub warnings: Vec<String>,
}

/// A borg repository in a local directory (borg's `Repository`).
pub struct LocalRepository {
    pub(crate) path: PathBuf,
    pub(crate) config: RepoConfig,
    lock: Option<Lock>,
    lock_exclusive: bool,
    pub(crate) exclusive: Option<bool>,
    pub(crate) do_lock: bool,
    pub(crate) io: LoggedIO,
    pub(crate) index: Option<NsIndex>,
    /// segment -> number of current (non-superseded) PUTs in it (borg: `segments`).
    pub(crate) segments: BTreeMap<u32, u32>,
    /// segment -> freeable bytes (borg: `compact`).
    pub(crate) compact: BTreeMap<u32, u32>,
    pub(crate) storage_quota_use: u64,
    /// id -> segments holding PUTs shadowed by a DELETE of the id (borg: `shadow_index`).
    pub(crate) shadow_index: HashMap<ObjectId, Vec<u32>>,
    pub(crate) active_txn: bool,
    transaction_doomed: Option<(u64, u64)>,
    pub(crate) append_only: bool,
    pub(crate) storage_quota: u64,
    pub(crate) additional_free_space: u64,
    pub(crate) max_segment_size: u64,
    created: bool,
    closed: bool,
    /// A write of this transaction failed with ENOSPC: closing removes its uncommitted
    /// segments at once to give the space back (borg's `Repository.__exit__`).
    no_space: bool,
}

/// Saturating `+=` for the per-segment counters: their values come from the hints file, which
/// must never make us panic or wrap.
pub(crate) fn add(slot: &mut u32, v: u32) {
    *slot = slot.saturating_add(v);
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn is_repository(path: &Path) -> bool {
    match fs::File::open(path.join("README")) {
        Ok(f) => {
            use std::io::Read;
            let mut head = Vec::new();
            if f.take(100).read_to_end(&mut head).is_err() {
                return false;
            }
            contains(&head, b"Borg Backup repository") || contains(&head, b"Borg repository")
        }
        Err(_) => false,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Python's `os.path.abspath`, which borg's `Repository` applies to its path: joined to the
/// working directory and normalised lexically (`.` and `..` removed, symlinks not resolved), so
/// `../repo` and `/x/repo` name the same repository in the security database.
fn absolute(path: &Path) -> PathBuf {
    use std::path::Component;
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `YYYY-mm-ddTHH:MM:SS.ffffff` in UTC (borg's `ISO_FORMAT`).
pub(crate) fn utc_iso_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let micros = now.subsec_micros();
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

fn free_space(path: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    // the field types differ between platforms (u32/u64)
    #[allow(clippy::unnecessary_cast)]
    let free = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
    Some(free)
}

/// Overwrite a file with random bytes, sync and unlink it (borg's `secure_erase` with
/// `avoid_collateral_damage=True`: files with other hard links are only unlinked).
fn secure_erase(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(path)?;
    if md.nlink() <= 1 {
        let mut f = fs::OpenOptions::new().write(true).open(path)?;
        let mut left = md.len();
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut buf[..n]);
            f.write_all(&buf[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
    }
    fs::remove_file(path)
}

impl LocalRepository {
    /// Create a new, empty repository at `path` and open it (borg `Repository(create=True)`).
    /// Fails if there is a repository at `path` or one of its parents, or something else at
    /// `path` (an empty directory is fine).
    pub fn create(path: &Path, opts: &OpenOptions) -> Result<Self> {
        let path = absolute(path);
        Self::check_can_create_repository(&path)?;
        if opts.make_parent_dirs {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
        }
        if !path.exists() {
            match fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::ParentPathDoesNotExist(path_str(&path)))
                }
                Err(e) => return Err(e.into()),
            }
        }
        fs::write(path.join("README"), REPOSITORY_README)?;
        fs::create_dir(path.join("data"))?;
        let mut id = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut id);
        let mut config = RepoConfig::new(id);
        config.append_only = opts.append_only;
        config.storage_quota = opts.storage_quota.unwrap_or(0);
        config.additional_free_space = 0;
        save_config(&path, &config)?;
        let mut repo = Self::open(&path, opts)?;
        repo.created = true;
        Ok(repo)
    }

    fn check_can_create_repository(path: &Path) -> Result<()> {
        match fs::metadata(path) {
            Ok(md) => {
                if is_repository(path) {
                    return Err(Error::AlreadyExists(path_str(path)));
                }
                if !md.is_dir() || fs::read_dir(path)?.next().is_some() {
                    return Err(Error::PathAlreadyExists(path_str(path)));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let mut p = path.parent();
        while let Some(parent) = p {
            if is_repository(parent) {
                return Err(Error::AlreadyExists(path_str(parent)));
            }
            p = parent.parent();
        }
        Ok(())
    }

    /// Open an existing repository (borg `Repository.open`): lock it, read and validate the
    /// config, refuse Attic repositories.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Self> {
        let path = absolute(path);
        let md = match fs::metadata(&path) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::DoesNotExist(path_str(&path)))
            }
            Err(e) => return Err(e.into()),
        };
        if !md.is_dir() {
            return Err(Error::InvalidRepository(path_str(&path)));
        }
        let want_exclusive = opts.exclusive == Some(true);
        let lock = if opts.lock {
            Some(Lock::acquire(&path, want_exclusive, opts.lock_wait)?)
        } else {
            None
        };
        let config = match RepoConfig::load(&path.join("config")) {
            Ok(c) => c,
            Err(ConfigError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::InvalidRepository(path_str(&path)))
            }
            Err(e) => {
                return Err(Error::InvalidRepositoryConfig(
                    path_str(&path),
                    e.to_string(),
                ))
            }
        };
        if config.version != 1 {
            return Err(Error::InvalidRepositoryConfig(
                path_str(&path),
                format!(
                    "repository version {} is not supported by this borg version",
                    config.version
                ),
            ));
        }
        if config.max_segment_size >= MAX_SEGMENT_SIZE_LIMIT {
            return Err(Error::InvalidRepositoryConfig(
                path_str(&path),
                format!("max_segment_size >= {MAX_SEGMENT_SIZE_LIMIT}"),
            ));
        }
        let io = LoggedIO::new(&path, config.max_segment_size, config.segments_per_dir);
        let mut repo = LocalRepository {
            append_only: opts.append_only || config.append_only,
            storage_quota: opts.storage_quota.unwrap_or(config.storage_quota),
            additional_free_space: config.additional_free_space,
            max_segment_size: config.max_segment_size,
            path,
            config,
            lock,
            lock_exclusive: want_exclusive,
            exclusive: opts.exclusive,
            do_lock: opts.lock,
            io,
            index: None,
            segments: BTreeMap::new(),
            compact: BTreeMap::new(),
            storage_quota_use: 0,
            shadow_index: HashMap::new(),
            active_txn: false,
            no_space: false,
            transaction_doomed: None,
            created: false,
            closed: false,
        };
        if opts.check_segment_magic {
            if let Some(seg) = repo.io.get_latest_segment()? {
                if repo.io.get_segment_magic(seg)? == ATTIC_MAGIC {
                    return Err(Error::AtticRepository(path_str(&repo.path)));
                }
            }
        }
        Ok(repo)
    }

    /// The repository directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed `config` file.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// Change the config (e.g. `borg config REPO NAME VALUE`); call [`Self::save_config`] to
    /// write it.
    pub fn config_mut(&mut self) -> &mut RepoConfig {
        &mut self.config
    }

    /// Write the config like borg's `save_config` (old file hard-linked aside, new file written
    /// atomically, old contents securely erased, since it may hold an old repokey).
    ///
    /// Without a lock (`--bypass-lock`), a refused write only warns: that is expected on a
    /// read-only repository (borg's `save_config` `PermissionError` handling).
    pub fn save_config(&mut self) -> Result<()> {
        match save_config(&self.path, &self.config) {
            Err(Error::Config(crate::config::ConfigError::Io(e)))
                if !self.do_lock && e.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                eprintln!(
                    "{e}: Failed writing to '{}'. This is expected when working on read-only repositories.",
                    self.path.join("config").display()
                );
                Ok(())
            }
            other => other,
        }
    }

    /// Whether the repository is (or was opened) append-only.
    pub fn append_only(&self) -> bool {
        self.append_only
    }

    /// Disable fsync of segments (benchmarks only: measures what durability costs).
    pub fn set_fsync(&mut self, fsync: bool) {
        self.io.set_fsync(fsync);
    }

    /// Release the lock and close files. Uncommitted changes are discarded; after a write that
    /// failed for lack of space they are also deleted, as borg does, so the file system is not
    /// left full (otherwise the next open would clean them up).
    pub fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        if self.active_txn && self.no_space {
            eprintln!("No space left on device, cleaning up partial transaction to free space.");
            // flushing the write segment fails again; it is deleted right after
            let _ = self.io.close();
            self.rollback_cleanup()?;
        }
        self.closed = true;
        self.io.close()?;
        if let Some(lock) = self.lock.take() {
            lock.release()?;
        }
        Ok(())
    }

    fn ensure_open(&self) -> Result<()> {
        if self.closed {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    pub(crate) fn object_not_found(&self, id: &ObjectId) -> Error {
        Error::ObjectNotFound {
            id: hex::encode(id),
            repo: path_str(&self.path),
        }
    }

    /// The highest N with a non-empty `index.N` (borg's `get_index_transaction_id`).
    pub fn get_index_transaction_id(&self) -> Result<Option<u32>> {
        let mut best = None;
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(num) = name.strip_prefix("index.") else {
                continue;
            };
            if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(n) = num.parse::<u32>() else { continue };
            if entry.metadata()?.len() == 0 {
                continue;
            }
            best = best.max(Some(n));
        }
        Ok(best)
    }

    /// Make index and segments agree: rebuild the index by replaying segments when the
    /// newest committed segment is not the one the index was written for (e.g. after a crash
    /// between writing the commit tag and the index).
    pub fn check_transaction(&mut self) -> Result<()> {
        let index_tid = self.get_index_transaction_id()?;
        let segments_tid = self.io.get_segments_transaction_id()?;
        match (index_tid, segments_tid) {
            (Some(_), None) => Err(Error::CheckNeeded(format!(
                "{}\" - although likely this is \"beyond repair",
                path_str(&self.path)
            ))),
            (i, Some(s)) if i != Some(s) => {
                let replay_from = match i {
                    Some(i) if i > s => None,
                    other => other,
                };
                self.replay_segments(replay_from, s)
            }
            _ => Ok(()),
        }
    }

    /// The current transaction id after [`Self::check_transaction`].
    pub fn get_transaction_id(&mut self) -> Result<Option<u32>> {
        self.check_transaction()?;
        self.get_index_transaction_id()
    }

    fn index_path(&self, tid: u32) -> PathBuf {
        self.path.join(format!("index.{tid}"))
    }

    pub(crate) fn open_index(&mut self, tid: Option<u32>, auto_recover: bool) -> Result<NsIndex> {
        let Some(tid) = tid else {
            return Ok(NsIndex::new());
        };
        match index_files::load_index(&self.path, tid) {
            Ok(ix) => Ok(ix),
            Err(e) => {
                let _ = fs::remove_file(self.index_path(tid));
                if !auto_recover {
                    return Err(e.into());
                }
                let t = self.get_transaction_id()?;
                self.prepare_txn(t, true)?;
                self.commit_inner(false, crate::DEFAULT_COMPACT_THRESHOLD, false)?;
                let t = self.get_transaction_id()?;
                self.open_index(t, true)
            }
        }
    }

    pub(crate) fn prepare_txn(&mut self, tid: Option<u32>, do_cleanup: bool) -> Result<()> {
        self.ensure_open()?;
        self.active_txn = true;
        if self.do_lock && !self.lock_exclusive {
            if self.exclusive.is_some() {
                self.active_txn = false;
                return Err(Error::NotExclusive);
            }
            let res = match self.lock.as_mut() {
                Some(l) => l.upgrade(),
                None => Ok(()),
            };
            if let Err(e) = res {
                self.active_txn = false;
                return Err(e.into());
            }
            self.lock_exclusive = true;
        }
        if self.index.is_none() || tid.is_none() {
            match self.open_index(tid, false) {
                Ok(ix) => self.index = Some(ix),
                Err(_) => {
                    self.check_transaction()?;
                    let ix = self.open_index(tid, false)?;
                    self.index = Some(ix);
                }
            }
        }
        match tid {
            None => {
                self.segments.clear();
                self.compact.clear();
                self.storage_quota_use = 0;
                self.shadow_index.clear();
            }
            Some(tid) => {
                if do_cleanup {
                    self.io.cleanup(tid)?;
                }
                match index_files::load_hints_parsed(&self.path, tid) {
                    Ok(parsed) => {
                        let h = parsed.hints;
                        self.segments = h.segments;
                        self.compact = h.compact;
                        self.storage_quota_use = h.storage_quota_use;
                        self.shadow_index = h.shadow_index;
                        if parsed.version == 1 {
                            // upgrade from v1 hints: recompute the freeable space of sparse segments
                            self.compact.clear();
                            let mut v1 = parsed.v1_compact_segments;
                            v1.sort_unstable();
                            for seg in v1 {
                                self.rebuild_sparse(seg)?;
                            }
                        }
                    }
                    Err(e @ IndexFileError::Io { .. }) => return Err(e.into()),
                    Err(e) => {
                        let hints_path = self.path.join(format!("hints.{tid}"));
                        if !matches!(e, IndexFileError::Missing(_)) {
                            let _ = fs::remove_file(hints_path);
                        }
                        let _ = fs::remove_file(self.index_path(tid));
                        self.check_transaction()?;
                        return self.prepare_txn(Some(tid), true);
                    }
                }
                // drop uncommitted segments from the shadow index
                for segs in self.shadow_index.values_mut() {
                    segs.retain(|&s| s <= tid);
                }
            }
        }
        // replay_segments (possibly run above) ends with a rollback; the caller's transaction
        // is nevertheless active now (borg leaves the flag cleared there, which makes the next
        // write run prepare_txn again and clean up the segment just written).
        self.active_txn = true;
        Ok(())
    }

    pub(crate) fn write_index(&mut self) -> Result<()> {
        let tid = self
            .io
            .get_segments_transaction_id()?
            .ok_or_else(|| Error::CheckNeeded(path_str(&self.path)))?;
        if self.append_only {
            let mut log = fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(self.path.join("transactions"))?;
            writeln!(log, "transaction {tid}, UTC time {}", utc_iso_now())?;
        }
        let hints = Hints {
            segments: self.segments.clone(),
            compact: self.compact.clone(),
            storage_quota_use: self.storage_quota_use,
            shadow_index: self.shadow_index.clone(),
        };
        let index = self.index.take().unwrap_or_default();
        index_files::save(&self.path, tid, &index, &hints)?;
        Ok(())
    }

    fn check_free_space(&mut self) -> Result<()> {
        let index_size = self.index.as_ref().map(|i| i.size()).unwrap_or(0) as u64;
        let mut required = index_size * 4;
        let hints_size =
            (self.segments.len() as u64) * 10 + (self.compact.len() as u64) * 10 + 4096;
        required += hints_size;
        required += self.additional_free_space;
        if !self.append_only {
            let full_segment_size = self.max_segment_size + u64::from(MAX_OBJECT_SIZE);
            if self.compact.len() < 10 {
                let mut working = 0u64;
                for (&seg, &free) in &self.compact {
                    if let Ok(size) = self.io.segment_size(seg) {
                        working = working.saturating_add(size.saturating_sub(u64::from(free)));
                    }
                }
                required += working.min(full_segment_size);
            } else {
                required += full_segment_size;
            }
        }
        let Some(free) = free_space(&self.path) else {
            return Ok(());
        };
        if free < required {
            if self.created {
                self.destroy_inner()?;
            } else {
                self.rollback_cleanup()?;
            }
            return Err(Error::InsufficientFreeSpace {
                required: format_file_size(required as i64),
                available: format_file_size(free as i64),
            });
        }
        Ok(())
    }

    fn rollback_cleanup(&mut self) -> Result<()> {
        if let Some(tid) = self.io.get_segments_transaction_id()? {
            self.io.cleanup(tid)?;
        }
        self.rollback_inner();
        Ok(())
    }

    pub(crate) fn rollback_inner(&mut self) {
        self.index = None;
        self.active_txn = false;
        self.transaction_doomed = None;
    }

    /// `commit` with borg's `cleanup_commits` option (`borg compact --cleanup-commits`): first
    /// mark all 17-byte commit-only segments (left by borg bug #2850) as entirely freeable.
    pub fn commit_with_cleanup(
        &mut self,
        compact: bool,
        threshold: f64,
        cleanup_commits: bool,
    ) -> Result<()> {
        self.commit_inner(compact, threshold, cleanup_commits)
    }

    pub(crate) fn commit_inner(
        &mut self,
        compact: bool,
        threshold: f64,
        cleanup_commits: bool,
    ) -> Result<()> {
        self.ensure_open()?;
        if let Some((quota, used)) = self.transaction_doomed {
            self.rollback_inner();
            return Err(Error::StorageQuotaExceeded {
                quota: format_file_size(quota as i64),
                used: format_file_size(used as i64),
            });
        }
        if !self.active_txn || self.index.is_none() {
            let t = self.get_transaction_id()?;
            self.prepare_txn(t, true)?;
        }
        self.check_free_space()?;
        let segment = self.io.write_commit(false)?;
        self.segments.entry(segment).or_insert(0);
        add(
            self.compact.entry(segment).or_insert(0),
            segment::HEADER_SIZE,
        );
        if compact && !self.append_only {
            if cleanup_commits {
                for entry in self.io.segment_iter(None, false)? {
                    let (seg, file) = entry?;
                    if fs::metadata(&file)?.len() == 17 {
                        self.segments.insert(seg, 0);
                        self.compact.insert(seg, segment::HEADER_SIZE);
                    }
                }
            }
            self.compact_segments(threshold)?;
        }
        self.write_index()?;
        self.rollback_inner();
        Ok(())
    }

    /// Rebuild index and hints from the segments after `index_tid` up to `segments_tid`.
    pub(crate) fn replay_segments(
        &mut self,
        index_tid: Option<u32>,
        segments_tid: u32,
    ) -> Result<()> {
        let remember = self.exclusive;
        self.exclusive = None;
        let res = self.replay_inner(index_tid, segments_tid);
        self.exclusive = remember;
        self.rollback_inner();
        res
    }

    fn replay_inner(&mut self, index_tid: Option<u32>, segments_tid: u32) -> Result<()> {
        self.prepare_txn(index_tid, false)?;
        self.apply_segments(index_tid, segments_tid)?;
        self.write_index()
    }

    /// Applies the committed segments after `after` (all when `None`) up to `up_to` to the
    /// index in memory (borg's `replay_segments` loop; shared by replay and lock-free readers).
    fn apply_segments(&mut self, after: Option<u32>, up_to: u32) -> Result<()> {
        for (segment, _) in self.io.segment_list(None, false)? {
            if after.is_some_and(|t| segment <= t) {
                continue;
            }
            if segment > up_to {
                break;
            }
            let objects = self
                .io
                .iter_objects(segment, 0, false, true)?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            self.update_index(segment, &objects, None)?;
        }
        Ok(())
    }

    /// Apply the entries of one segment to index/segments/compact (shared by replay and check).
    pub(crate) fn update_index(
        &mut self,
        segment: u32,
        objects: &[SegmentEntry],
        mut report: Option<&mut Vec<String>>,
    ) -> Result<()> {
        self.segments.insert(segment, 0);
        for obj in objects {
            let key = obj.key;
            let size = obj.size;
            match obj.tag {
                TAG_PUT => {
                    let index = self.index.get_or_insert_with(NsIndex::new);
                    if let Some(old) = index.get_borg(&key) {
                        add(self.compact.entry(old.segment).or_insert(0), size);
                        if let Some(c) = self.segments.get_mut(&old.segment) {
                            *c = c.saturating_sub(1);
                            // borg >= 1.2.7 (PR #7896): remember the superseded PUT
                            self.shadow_index.entry(key).or_default().push(old.segment);
                        }
                    }
                    index.try_insert(
                        key,
                        NsEntry {
                            segment,
                            offset: obj.offset,
                        },
                    )?;
                    add(self.segments.entry(segment).or_insert(0), 1);
                    self.storage_quota_use = self.storage_quota_use.saturating_add(u64::from(size));
                }
                TAG_DELETE => {
                    let index = self.index.get_or_insert_with(NsIndex::new);
                    let old = match index.get_borg(&key) {
                        Some(e) => {
                            index.remove(&key);
                            Some(e)
                        }
                        None => None,
                    };
                    if let Some(old) = old {
                        if self.io.segment_exists(old.segment) {
                            if let Some(c) = self.segments.get_mut(&old.segment) {
                                *c = c.saturating_sub(1);
                            }
                            let size = self.io.read_size(old.segment, old.offset, &key)?;
                            add(self.compact.entry(old.segment).or_insert(0), size);
                            // borg >= 1.2.7 (PR #7896): remember the deleted PUT
                            self.shadow_index.entry(key).or_default().push(old.segment);
                        }
                    }
                }
                TAG_COMMIT => {}
                tag => {
                    let msg = format!("Unexpected tag {tag} in segment {segment}");
                    match report.as_deref_mut() {
                        Some(r) => r.push(msg),
                        None => return Err(Error::CheckNeeded(msg)),
                    }
                }
            }
        }
        if self.segments.get(&segment) == Some(&0) {
            let size = self.io.segment_size(segment)?;
            self.compact
                .insert(segment, u32::try_from(size).unwrap_or(u32::MAX));
        }
        Ok(())
    }

    /// Recompute the freeable bytes of one segment against the current index (borg's
    /// `_rebuild_sparse`, used when upgrading version 1 hints).
    fn rebuild_sparse(&mut self, segment: u32) -> Result<()> {
        let size = match self.io.segment_size(segment) {
            Ok(s) => s,
            Err(_) => {
                self.segments.remove(&segment);
                return Ok(());
            }
        };
        if self.segments.get(&segment).copied().unwrap_or(0) == 0 {
            self.compact
                .insert(segment, u32::try_from(size).unwrap_or(u32::MAX));
            return Ok(());
        }
        let mut free = 0u32;
        for entry in self.io.iter_objects(segment, 0, false, false)? {
            let entry = entry?;
            match entry.tag {
                TAG_PUT => {
                    let cur = self.index.as_mut().and_then(|i| i.get_borg(&entry.key));
                    if cur
                        != Some(NsEntry {
                            segment,
                            offset: entry.offset,
                        })
                    {
                        free = free.saturating_add(entry.size);
                    }
                }
                TAG_DELETE => free = free.saturating_add(entry.size),
                _ => {}
            }
        }
        self.compact.insert(segment, free);
        Ok(())
    }

    fn ensure_index(&mut self) -> Result<()> {
        if self.index.is_none() {
            let ix = if self.do_lock {
                let t = self.get_transaction_id()?;
                self.open_index(t, true)?
            } else {
                self.read_only_index()?
            };
            self.index = Some(ix);
        }
        Ok(())
    }

    /// The index of the newest committed transaction for a reader without a lock
    /// (`--bypass-lock`), built in memory: the newest `index.N` not beyond the segments, plus
    /// the committed segments after it. Nothing is written or removed: borg's reader path
    /// (`check_transaction` -> `replay_segments` -> `write_index`) rewrites `index.N`,
    /// `hints.N` and `integrity.N` and deletes the older ones, so a reader opening the
    /// repository while a writer commits (between the commit tag and the index) could
    /// make the writer's own rename of those files fail ("hints.N: file not found").
    fn read_only_index(&mut self) -> Result<NsIndex> {
        let index_tid = self.get_index_transaction_id()?;
        let Some(segments_tid) = self.io.get_segments_transaction_id()? else {
            return match index_tid {
                Some(_) => Err(Error::CheckNeeded(format!(
                    "{}\" - although likely this is \"beyond repair",
                    path_str(&self.path)
                ))),
                None => Ok(NsIndex::new()),
            };
        };
        // (a writer may remove the older index at any moment: then replay everything)
        let (index, from) = match index_tid.filter(|&t| t <= segments_tid) {
            Some(t) => match index_files::load_index(&self.path, t) {
                Ok(ix) => (ix, Some(t)),
                Err(_) => (NsIndex::new(), None),
            },
            None => (NsIndex::new(), None),
        };
        if from == Some(segments_tid) {
            return Ok(index);
        }
        self.index = Some(index);
        self.apply_segments(from, segments_tid)?;
        Ok(self.index.take().unwrap_or_default())
    }

    fn ensure_txn(&mut self) -> Result<()> {
        self.ensure_open()?;
        if !self.active_txn {
            if !self.do_lock {
                // an index built by `read_only_index` does not match the hints on disk:
                // let `prepare_txn` load both
                self.index = None;
            }
            let t = self.get_transaction_id()?;
            self.prepare_txn(t, true)?;
        }
        Ok(())
    }

    /// Common part of put (superseding) and delete: account the old PUT as freeable, write a
    /// DELETE and record the shadowed segment (always, as borg >= 1.2.7 does).
    /// `put` of the trait (which records an ENOSPC on the way out).
    fn put_object(&mut self, id: &ObjectId, data: &[u8]) -> Result<()> {
        self.ensure_txn()?;
        let existing = self.index.as_mut().and_then(|i| i.get_borg(id));
        if let Some(old) = existing {
            // borg 1.2.4 passes update_shadow_index=False here; that can resurrect deleted
            // objects after compaction (borg issue #6687, fixed in 1.2.7 by PR #7896, which
            // we follow: the DELETE written here must be recorded in the shadow index too).
            self.delete_entry(id, old)?;
        }
        let (segment, offset) = self.io.write_put(id, data, false)?;
        self.storage_quota_use = self
            .storage_quota_use
            .saturating_add(data.len() as u64 + u64::from(segment::PUT_HEADER_SIZE));
        add(self.segments.entry(segment).or_insert(0), 1);
        self.index
            .get_or_insert_with(NsIndex::new)
            .try_insert(*id, NsEntry { segment, offset })?;
        if self.storage_quota != 0 && self.storage_quota_use > self.storage_quota {
            self.transaction_doomed = Some((self.storage_quota, self.storage_quota_use));
            return Err(Error::StorageQuotaExceeded {
                quota: format_file_size(self.storage_quota as i64),
                used: format_file_size(self.storage_quota_use as i64),
            });
        }
        Ok(())
    }

    /// `delete` of the trait (which records an ENOSPC on the way out).
    fn delete_object(&mut self, id: &ObjectId) -> Result<()> {
        self.ensure_txn()?;
        let old = match self.index.as_mut() {
            Some(index) => match index.get_borg(id) {
                Some(e) => {
                    index.remove(id);
                    e
                }
                None => return Err(self.object_not_found(id)),
            },
            None => return Err(self.object_not_found(id)),
        };
        self.delete_entry(id, old)
    }

    /// Remembers that a write failed for lack of space (see [`LocalRepository::close`]).
    fn note_no_space<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            if is_no_space(e) {
                self.no_space = true;
            }
        }
        result
    }

    fn delete_entry(&mut self, id: &ObjectId, old: NsEntry) -> Result<()> {
        self.shadow_index.entry(*id).or_default().push(old.segment);
        if let Some(c) = self.segments.get_mut(&old.segment) {
            *c = c.saturating_sub(1);
        }
        let size = self.io.read_size(old.segment, old.offset, id)?;
        add(self.compact.entry(old.segment).or_insert(0), size);
        let (segment, size) = self.io.write_delete(id, false)?;
        add(self.compact.entry(segment).or_insert(0), size);
        self.segments.entry(segment).or_insert(0);
        Ok(())
    }

    /// Low-level scan over all entries of all segments, committed or not (borg's
    /// `scan_low_level`, used by `borg debug dump-repo-objs --ghost`): (id, data, tag, segment,
    /// offset). Segments with integrity errors are skipped from the error on; the errors are
    /// returned as messages.
    #[allow(clippy::type_complexity)]
    pub fn scan_low_level(
        &mut self,
        segment: Option<u32>,
        offset: Option<u32>,
    ) -> Result<(Vec<(ObjectId, Option<Vec<u8>>, u8, u32, u32)>, Vec<String>)> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (current, filename) in self.io.segment_list(segment, false)? {
            if segment.is_some_and(|s| current > s) {
                break;
            }
            let it = match self
                .io
                .iter_objects(current, offset.unwrap_or(0), true, true)
            {
                Ok(it) => it,
                Err(e) => {
                    errors.push(format!(
                        "Segment {current} ({}) has IntegrityError(s) [{e}] - skipping.",
                        filename.display()
                    ));
                    continue;
                }
            };
            for entry in it {
                match entry {
                    Ok(e) => {
                        if offset.is_some_and(|o| e.offset > o) {
                            break;
                        }
                        out.push((e.key, e.data, e.tag, current, e.offset));
                    }
                    Err(e) => {
                        errors.push(format!(
                            "Segment {current} ({}) has IntegrityError(s) [{e}] - skipping.",
                            filename.display()
                        ));
                        break;
                    }
                }
            }
        }
        Ok((out, errors))
    }

    /// The (segment, offset) of an object in the committed index (for `borg debug` verbs).
    pub fn locate(&mut self, id: &ObjectId) -> Result<Option<NsEntry>> {
        self.ensure_index()?;
        Ok(self.index.as_ref().and_then(|i| i.get(id)))
    }

    /// The current hints (segment use counts, freeable space, quota use, shadow index) as they
    /// would be written at commit (for `borg debug dump-hints`).
    pub fn hints(&mut self) -> Result<Hints> {
        let was_active = self.active_txn;
        if !was_active {
            self.ensure_txn()?;
        }
        let h = Hints {
            segments: self.segments.clone(),
            compact: self.compact.clone(),
            storage_quota_use: self.storage_quota_use,
            shadow_index: self.shadow_index.clone(),
        };
        if !was_active {
            self.rollback_inner();
        }
        Ok(h)
    }

    fn destroy_inner(&mut self) -> Result<()> {
        if self.append_only {
            return Err(Error::AppendOnly(path_str(&self.path)));
        }
        self.close()?;
        fs::remove_file(self.path.join("config"))?;
        fs::remove_dir_all(&self.path)?;
        Ok(())
    }

    fn require_exclusive(&self) -> Result<()> {
        if self.do_lock && !self.lock_exclusive {
            return Err(Error::NotExclusive);
        }
        Ok(())
    }

    /// Full `check` result with borg's messages (see [`Repository::check`]).
    pub fn check_report(&mut self, repair: bool) -> Result<CheckReport> {
        self.ensure_open()?;
        self.check_impl(repair, None)
    }

    /// A partial check (`borg check --repository-only --max-duration SECONDS`): verify the crc of
    /// segments for about `max_duration`, continuing where the previous partial check stopped
    /// (config `last_segment_checked`); no index comparison, no repair.
    pub fn check_partial(&mut self, max_duration: Duration) -> Result<CheckReport> {
        self.ensure_open()?;
        self.check_impl(false, Some(max_duration))
    }
}

fn save_config(path: &Path, config: &RepoConfig) -> Result<()> {
    let config_path = path.join("config");
    let old = path.join("config.old");
    if old.is_file() {
        secure_erase(&old)?;
    }
    if config_path.is_file() {
        if let Err(e) = fs::hard_link(&config_path, &old) {
            let tolerated = [
                libc::EMLINK,
                libc::ENOSYS,
                libc::EPERM,
                libc::EACCES,
                libc::ENOTSUP,
                libc::EIO,
            ];
            if !e.raw_os_error().is_some_and(|c| tolerated.contains(&c)) {
                return Err(e.into());
            }
        }
    }
    config.save(&config_path)?;
    if old.is_file() {
        secure_erase(&old)?;
    }
    Ok(())
}

impl Drop for LocalRepository {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl Repository for LocalRepository {
    fn id(&self) -> ObjectId {
        self.config.id
    }

    fn len(&mut self) -> Result<usize> {
        self.ensure_open()?;
        self.ensure_index()?;
        Ok(self.index.as_ref().map_or(0, |i| i.len()))
    }

    fn contains(&mut self, id: &ObjectId) -> Result<bool> {
        self.ensure_open()?;
        self.ensure_index()?;
        Ok(self.index.as_mut().and_then(|i| i.get_borg(id)).is_some())
    }

    fn get(&mut self, id: &ObjectId) -> Result<Vec<u8>> {
        self.ensure_open()?;
        self.ensure_index()?;
        let entry = self.index.as_mut().and_then(|i| i.get_borg(id));
        match entry {
            Some(e) => Ok(self.io.read(e.segment, e.offset, id)?),
            None => Err(self.object_not_found(id)),
        }
    }

    fn put(&mut self, id: &ObjectId, data: &[u8]) -> Result<()> {
        let result = self.put_object(id, data);
        self.note_no_space(result)
    }

    fn delete(&mut self, id: &ObjectId) -> Result<()> {
        let result = self.delete_object(id);
        self.note_no_space(result)
    }

    fn commit(&mut self, compact: bool, threshold: f64) -> Result<()> {
        let result = self.commit_inner(compact, threshold, false);
        self.note_no_space(result)
    }

    fn rollback(&mut self) -> Result<()> {
        self.rollback_inner();
        Ok(())
    }

    fn list(&mut self, limit: Option<usize>, marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
        self.ensure_open()?;
        self.ensure_index()?;
        let Some(index) = self.index.as_ref() else {
            return Ok(Vec::new());
        };
        if let Some(m) = marker {
            if !index.contains_key(m) {
                return Err(self.object_not_found(m));
            }
        }
        let mut started = marker.is_none();
        let mut out = Vec::new();
        for (id, _) in index.iter() {
            if !started {
                started = Some(&id) == marker;
                continue;
            }
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            out.push(id);
        }
        Ok(out)
    }

    fn scan(&mut self, limit: Option<usize>, marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
        self.ensure_open()?;
        if limit == Some(0) {
            return Err(Error::InvalidArgument(
                "please use limit > 0 or limit = None".into(),
            ));
        }
        self.ensure_index()?;
        let (start_segment, mut start_offset) = match marker {
            None => (0, 0),
            Some(m) => match self.index.as_ref().and_then(|i| i.get(m)) {
                Some(e) => (e.segment, e.offset),
                None => return Err(self.object_not_found(m)),
            },
        };
        let mut result = Vec::new();
        for (segment, _) in self.io.segment_list(Some(start_segment), false)? {
            let it = match self.io.iter_objects(segment, start_offset, false, false) {
                Ok(it) => it,
                Err(e) if e.is_integrity_error() => continue,
                Err(e) => return Err(e.into()),
            };
            for entry in it {
                let Ok(entry) = entry else { break };
                if start_offset > 0 {
                    start_offset = 0;
                    continue;
                }
                let current = self.index.as_ref().and_then(|i| i.get(&entry.key));
                if entry.tag == TAG_PUT
                    && current
                        == Some(NsEntry {
                            segment,
                            offset: entry.offset,
                        })
                {
                    result.push(entry.key);
                    if limit.is_some_and(|l| result.len() == l) {
                        return Ok(result);
                    }
                }
            }
            start_offset = 0;
        }
        Ok(result)
    }

    fn check(&mut self, repair: bool, _save_space: bool) -> Result<bool> {
        Ok(self.check_report(repair)?.ok)
    }

    fn destroy(&mut self) -> Result<()> {
        self.destroy_inner()
    }

    fn save_key(&mut self, keydata: &[u8]) -> Result<()> {
        self.ensure_open()?;
        self.config.key = Some(String::from_utf8_lossy(keydata).into_owned());
        self.save_config()
    }

    fn load_key(&mut self) -> Result<Vec<u8>> {
        Ok(self
            .config
            .key
            .as_deref()
            .unwrap_or("")
            .trim()
            .as_bytes()
            .to_vec())
    }

    fn break_lock(&mut self) -> Result<()> {
        lock::break_lock(&self.path)?;
        Ok(())
    }

    fn get_free_nonce(&mut self) -> Result<Option<u64>> {
        self.require_exclusive()?;
        match fs::read_to_string(self.path.join("nonce")) {
            Ok(s) => {
                let bytes = hex::decode(s.trim()).map_err(|e| {
                    Error::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("nonce file: {e}"),
                    ))
                })?;
                if bytes.len() > 8 && bytes[..bytes.len() - 8].iter().any(|&b| b != 0) {
                    return Err(Error::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "nonce file: value does not fit 64 bits",
                    )));
                }
                Ok(Some(
                    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn commit_nonce_reservation(
        &mut self,
        next_unreserved: u64,
        start_nonce: Option<u64>,
    ) -> Result<()> {
        self.require_exclusive()?;
        if self.get_free_nonce()? != start_nonce {
            return Err(Error::NonceMismatch);
        }
        let nonce_path = self.path.join("nonce");
        match segment::save_file(
            &nonce_path,
            hex::encode(next_unreserved.to_be_bytes()).as_bytes(),
        ) {
            // without a lock (`--bypass-lock`) a refused write only warns, as in borg: a
            // read-only repository is expected then (`borg check` encrypts item chunks, so it
            // reserves nonces even when it writes nothing)
            Err(e) if !self.do_lock && e.kind() == std::io::ErrorKind::PermissionDenied => {
                eprintln!(
                    "{e}: Failed writing to '{}'. This is expected when working on read-only repositories.",
                    nonce_path.display()
                );
                Ok(())
            }
            other => Ok(other?),
        }
    }
}

/// Whether `e` comes from an ENOSPC anywhere in its chain of causes.
fn is_no_space(e: &Error) -> bool {
    // `Error::Io` is transparent: its `source()` skips the io::Error itself
    if let Error::Io(io) = e {
        return io.raw_os_error() == Some(libc::ENOSPC);
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.raw_os_error() == Some(libc::ENOSPC) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::absolute;
    use std::path::Path;

    #[test]
    fn absolute_normalises_like_python_abspath() {
        assert_eq!(absolute(Path::new("/a/b/../c/./d")), Path::new("/a/c/d"));
        assert_eq!(absolute(Path::new("/..")), Path::new("/"));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(absolute(Path::new("../x")), cwd.parent().unwrap().join("x"));
    }
}
