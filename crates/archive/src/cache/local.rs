//! borg 1.2's `LocalCache` (`cache.py`; internals "The cache"): the persistent client-side
//! chunks and files caches of one repository, shared with borg on the same machine.
//!
//! Layout of `<cache dir>/<repository id hex>/`: `README`, `config` (see [`super::config`]),
//! `chunks` (a `ChunkIndex` hash table, digests in `config [integrity] chunks`), `files`
//! (see [`super::files`], digests in `config [integrity] files`), `chunks.archive.d/`
//! (one compact `ChunkIndex` per archive, `<id hex>.compact` plus a detached
//! `<id hex>.compact.integrity` JSON, used to rebuild `chunks` cheaply), `pre12-meta`
//! and the `lock.*` files.
//!
//! Transactions work as in borg: `begin` copies `config`, `chunks` and `files` into
//! `txn.tmp`, renamed to `txn.active`; `commit` writes the new files and removes
//! `txn.active` (via `txn.tmp`); opening rolls an interrupted transaction back by copying
//! the saved files back.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rborg_crypto::paths::Env;
use rborg_crypto::Key;
use rborg_repository::hashindex::{ChunkEntry, ChunkIndex, HEADER_SIZE};
use rborg_repository::index_files::{parse_integrity_json, ExpectedDigests, IntegrityHasher};
use rborg_repository::lock::Lock;
use rborg_repository::{ObjectId, Repository};

use super::config::{parse_list, Ini};
use super::files::FilesCache;
use super::{files_cache_name, repository_cache_dir, CacheError, CacheResult};
use crate::manifest::Operation;
use crate::refcount::ArchiveRefs;
use crate::Manifest;

/// borg's `CACHE_README`.
pub const CACHE_README: &str =
    "This is a Borg Backup cache.\nSee https://borgbackup.readthedocs.io/\n";

/// How important a message of the cache is (the CLI logs it at that level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `logger.info` (shown with `-v`).
    Info,
    /// `logger.warning`.
    Warning,
    /// `logger.error` (sets exit code "warning", as borg's `set_ec(EXIT_WARNING)`).
    Error,
}

/// How to open the cache.
pub struct CacheOptions<'a> {
    /// Environment lookup (`BORG_CACHE_DIR`, `BORG_FILES_CACHE_SUFFIX`, `BORG_FILES_CACHE_TTL`).
    pub env: Env<'a>,
    /// `--files-cache` mode letters (`cis` default, `d` when the command needs no files
    /// cache).
    pub files_cache_mode: String,
    /// The repository location, canonical (stored as `previous_location`).
    pub location: String,
    /// `--lock-wait` (`None`: wait forever).
    pub lock_wait: Option<Duration>,
    /// Synchronise the chunks cache when the manifest changed (borg's `sync=True`).
    pub sync: bool,
}

/// An open cache (holds the cache lock until dropped).
pub struct LocalCache {
    path: PathBuf,
    files_name: String,
    ini: Ini,
    integrity: Vec<(String, String)>,
    manifest_id: Option<ObjectId>,
    ignored_features: BTreeSet<String>,
    mandatory_features: BTreeSet<String>,
    /// The chunks cache: id -> (refcount, size, csize) of every object archives reference.
    pub chunks: ChunkIndex,
    /// The files cache (`None` in mode `d`).
    pub files: Option<FilesCache>,
    mode: String,
    ttl: u64,
    txn_active: bool,
    _lock: Lock,
    /// Messages borg would log while opening/syncing, in order.
    pub messages: Vec<(Level, String)>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `data` to `path` through a temporary file and a rename (borg's `SaveFile`).
fn save_file(path: &Path, data: &[u8]) -> CacheResult<()> {
    save_file_with(path, |out| out.write_all(data)).map(|_| ())
}

/// [`save_file`] for content produced piece by piece by `write` (which returns what it
/// reports, e.g. the length): written to `PATH.tmp` through a buffer, then renamed over `path`.
fn save_file_with<T>(
    path: &Path,
    write: impl FnOnce(&mut dyn io::Write) -> io::Result<T>,
) -> CacheResult<T> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let mut out = io::BufWriter::with_capacity(1 << 20, file);
    let result = write(&mut out).map_err(io_err(&tmp))?;
    io::Write::flush(&mut out).map_err(io_err(&tmp))?;
    drop(out);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(result)
}

/// Feeds what passes through it to the integrity hash (borg's `IntegrityCheckedFile`).
struct HashingWriter<'a> {
    out: &'a mut dyn io::Write,
    hasher: &'a mut IntegrityHasher,
}

impl io::Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Parses the files cache at `path` while reading it, verifying it like
/// `IntegrityCheckedFile`. The outer error is the file's (unreadable, or corrupted: that
/// wins over a parse error, as in borg, where the check runs when the file is closed); the
/// inner one a parse error of intact content.
fn read_files_verified(
    path: &Path,
    name: &str,
    integrity: Option<&str>,
) -> CacheResult<Result<FilesCache, String>> {
    let file = fs::File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    let expected = match integrity {
        Some(json) => parse_integrity_json(path, json)?,
        None => None,
    };
    let mut hasher = IntegrityHasher::new(name);
    let mut reader = io::BufReader::with_capacity(
        1 << 20,
        HashingReader {
            inner: file,
            hasher: &mut hasher,
            read: 0,
        },
    );
    let parsed = FilesCache::parse_from(&mut reader, len);
    // the rest (after a parse error) still goes through the hash
    io::copy(&mut reader, &mut io::sink()).map_err(io_err(path))?;
    let read = reader.get_ref().read;
    drop(reader);
    if let Some(expected) = expected {
        check_digest(path, &expected, &mut hasher, "final", read)?;
    }
    Ok(parsed)
}

/// Compares the digest of `part` (the bytes hashed up to `position`) with the expected one.
fn check_digest(
    path: &Path,
    expected: &ExpectedDigests,
    hasher: &mut IntegrityHasher,
    part: &str,
    position: u64,
) -> CacheResult<()> {
    if expected.0.get(part).map(String::as_str) != Some(&hasher.hash_part(part, position)) {
        return Err(CacheError::Integrity {
            path: path.to_path_buf(),
            detail: format!("{part} digest mismatch"),
        });
    }
    Ok(())
}

/// Feeds what is read through it to the integrity hash.
struct HashingReader<'a, R> {
    inner: R,
    hasher: &'a mut IntegrityHasher,
    read: u64,
}

impl<R: io::Read> io::Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Reads a file, verifying it like `IntegrityCheckedFile`: `parts` lists the parts hashed
/// before the final one as (name, offset). Without `integrity` nothing is verified.
fn read_verified(
    path: &Path,
    name: &str,
    integrity: Option<&str>,
    parts: &[(&str, usize)],
) -> CacheResult<Vec<u8>> {
    let data = fs::read(path).map_err(io_err(path))?;
    let Some(json) = integrity else {
        return Ok(data);
    };
    let Some(expected) = parse_integrity_json(path, json)? else {
        return Ok(data);
    };
    let mut h = IntegrityHasher::new(name);
    let mut pos = 0;
    for &(part, end) in parts {
        let end = end.min(data.len());
        h.update(&data[pos..end]);
        pos = end;
        check_digest(path, &expected, &mut h, part, end as u64)?;
    }
    h.update(&data[pos..]);
    check_digest(path, &expected, &mut h, "final", data.len() as u64)?;
    Ok(data)
}

/// The integrity JSON of a chunk index file named `name`, hashed from the table itself:
/// no serialized copy of an index that may hold millions of entries.
fn index_integrity(index: &ChunkIndex, name: &str) -> String {
    let mut h = IntegrityHasher::new(name);
    h.update(&index.header_bytes());
    h.hash_part("HashHeader", HEADER_SIZE as u64);
    h.update(index.bucket_bytes());
    h.hash_part("final", (HEADER_SIZE + index.bucket_bytes().len()) as u64);
    h.integrity_json()
}

/// Writes a chunk index file (header and buckets straight from the table).
fn save_index(path: &Path, index: &ChunkIndex) -> CacheResult<()> {
    save_file_with(path, |out| index.write_to(out))
}

/// Parses a chunk index file's content, reusing its buffer for the table: a chunks cache of
/// a million chunks is ~100 MB, and a copy beside the bytes read doubled the peak of opening
/// the cache.
fn parse_index(path: &Path, mut data: Vec<u8>, compact: bool) -> CacheResult<ChunkIndex> {
    let r = if compact {
        ChunkIndex::from_bytes_compact(&data)
    } else if data.len() < HEADER_SIZE {
        // too short for a header: let the parser say so
        ChunkIndex::from_bytes(&data)
    } else {
        let mut header = [0u8; HEADER_SIZE];
        header.copy_from_slice(&data[..HEADER_SIZE]);
        data.drain(..HEADER_SIZE);
        ChunkIndex::from_header_and_buckets(&header, data)
    };
    r.map_err(|e| CacheError::Corrupt(format!("{}: {e}", path.display())))
}

fn remove_if_exists(path: &Path) -> CacheResult<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

impl LocalCache {
    /// Opens (creating it when missing) the cache of `repository`, rolls back an
    /// interrupted transaction, wipes a cache built with unknown mandatory features and,
    /// with `opts.sync`, synchronises the chunks cache when the manifest changed (borg's
    /// `LocalCache.__init__`). The security checks are the caller's (`SecurityDir`).
    pub fn open(
        repository: &mut dyn Repository,
        key: &Key,
        manifest: &Manifest,
        opts: &CacheOptions,
    ) -> CacheResult<LocalCache> {
        let repo_id = repository.id();
        let path = repository_cache_dir(opts.env, &repo_id);
        if !path.exists() {
            Self::create(&path, &repo_id)?;
        }
        if !path.is_dir() {
            return Err(CacheError::NotACache(format!(
                "{} Does not look like a Borg cache",
                path.display()
            )));
        }
        let lock = Lock::acquire(&path, true, opts.lock_wait)?;
        let ttl = (opts.env)("BORG_FILES_CACHE_TTL")
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(20);
        let mut cache = LocalCache {
            files_name: files_cache_name(opts.env),
            path,
            ini: Ini::default(),
            integrity: Vec::new(),
            manifest_id: None,
            ignored_features: BTreeSet::new(),
            mandatory_features: BTreeSet::new(),
            chunks: ChunkIndex::new(),
            files: None,
            mode: opts.files_cache_mode.clone(),
            ttl,
            txn_active: false,
            _lock: lock,
            messages: Vec::new(),
        };
        cache.rollback()?;
        cache.ini.set("cache", "previous_location", &opts.location);
        // borg's check_cache_compatibility: rborg supports no optional repository features,
        // so a cache built considering any mandatory feature must be rebuilt
        if !cache.mandatory_features.is_empty() {
            cache.wipe()?;
        }
        cache
            .ignored_features
            .extend(all_mandatory_features(manifest));
        if opts.sync && cache.manifest_id != Some(manifest.id) {
            cache.sync(repository, key, manifest)?;
            cache.commit(manifest, key)?;
        }
        Ok(cache)
    }

    /// The cache directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The manifest ID the chunks cache matches.
    pub fn manifest_id(&self) -> Option<ObjectId> {
        self.manifest_id
    }

    /// The `--files-cache` mode letters.
    pub fn files_cache_mode(&self) -> &str {
        &self.mode
    }

    /// borg's `LocalCache.create`.
    fn create(path: &Path, repo_id: &ObjectId) -> CacheResult<()> {
        fs::create_dir_all(path).map_err(io_err(path))?;
        let w = |name: &str, data: &[u8]| save_file(&path.join(name), data);
        w("README", CACHE_README.as_bytes())?;
        let mut ini = Ini::default();
        ini.set("cache", "version", "1");
        ini.set("cache", "repository", &hex::encode(repo_id));
        ini.set("cache", "manifest", "");
        ini.set("integrity", "manifest", "");
        w("config", ini.to_text().as_bytes())?;
        w("chunks", &ChunkIndex::new().to_bytes())?;
        let archive_d = path.join("chunks.archive.d");
        fs::create_dir_all(&archive_d).map_err(io_err(&archive_d))?;
        w("files", b"")?;
        w("pre12-meta", b"{}")
    }

    /// borg's `CacheConfig.load` plus `_do_open`: config, chunks, files.
    fn load(&mut self) -> CacheResult<()> {
        let config_path = self.path.join("config");
        let text = fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
        let not_cache = || {
            CacheError::NotACache(format!(
                "{} does not look like a Borg cache.",
                config_path.display()
            ))
        };
        let mut ini = Ini::parse(&text).map_err(|_| not_cache())?;
        let version = ini.get("cache", "version").ok_or_else(not_cache)?;
        if version.trim() != "1" {
            return Err(CacheError::NotACache(format!(
                "{} has unexpected cache version {version} (wanted: 1).",
                config_path.display()
            )));
        }
        let manifest_hex = ini.get("cache", "manifest").unwrap_or("").to_string();
        self.manifest_id = hex::decode(&manifest_hex)
            .ok()
            .and_then(|b| b.try_into().ok());
        self.ignored_features = parse_list(ini.get("cache", "ignored_features").unwrap_or(""))
            .into_iter()
            .collect();
        self.mandatory_features = parse_list(ini.get("cache", "mandatory_features").unwrap_or(""))
            .into_iter()
            .collect();
        self.integrity = Vec::new();
        if ini.has_section("integrity") {
            let integrity_manifest = ini.get("integrity", "manifest").map(str::to_string);
            if integrity_manifest.as_deref() != Some(manifest_hex.as_str()) {
                self.messages.push((
                    Level::Warning,
                    "Cache integrity data not available: old Borg version modified the cache."
                        .into(),
                ));
            } else {
                self.integrity = ini
                    .items("integrity")
                    .unwrap_or(&[])
                    .iter()
                    .filter(|(k, _)| k != "manifest")
                    .cloned()
                    .collect();
            }
        }
        // keep the location set by open() across a rollback
        if let Some(loc) = self.ini.get("cache", "previous_location") {
            ini.set("cache", "previous_location", loc);
        }
        self.ini = ini;

        let chunks_path = self.path.join("chunks");
        let integrity = self.integrity_of("chunks").map(str::to_string);
        let data = read_verified(
            &chunks_path,
            "chunks",
            integrity.as_deref(),
            &[("HashHeader", HEADER_SIZE)],
        )?;
        self.chunks = parse_index(&chunks_path, data, false)?;
        self.files = if self.mode.contains('d') {
            None
        } else {
            Some(self.read_files())
        };
        Ok(())
    }

    fn integrity_of(&self, name: &str) -> Option<&str> {
        self.integrity
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// borg's `_read_files`: a broken files cache is reported and replaced by an empty one.
    /// The file is parsed as it is read (through the integrity hash, checked at the end as
    /// borg's `IntegrityCheckedFile` does on close): with a million files it is ~100 MB that
    /// would otherwise sit in memory beside the entries parsed from it.
    fn read_files(&mut self) -> FilesCache {
        let path = self.path.join(&self.files_name);
        let integrity = self.integrity_of(&self.files_name).map(str::to_string);
        let msg = match read_files_verified(&path, &self.files_name, integrity.as_deref()) {
            Ok(Ok(fc)) => return fc,
            Ok(Err(e)) => format!("The files cache seems invalid. [{e}]"),
            Err(e @ CacheError::Integrity { .. }) => {
                format!("The files cache is corrupted. [{e}]")
            }
            Err(CacheError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return FilesCache::new()
            }
            Err(e) => format!("The files cache can't be read. [{e}]"),
        };
        self.messages.push((Level::Warning, msg));
        self.messages.push((
            Level::Warning,
            "Continuing without files cache - expect lower performance.".into(),
        ));
        FilesCache::new()
    }

    /// borg's `begin_txn`: snapshot config, chunks and files into `txn.active`.
    pub fn begin(&mut self) -> CacheResult<()> {
        if self.txn_active {
            return Ok(());
        }
        let tmp = self.path.join("txn.tmp");
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        for name in ["config", "chunks"] {
            let dst = tmp.join(name);
            fs::copy(self.path.join(name), &dst).map_err(io_err(&dst))?;
        }
        let dst = tmp.join(&self.files_name);
        match fs::copy(self.path.join(&self.files_name), &dst) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => save_file(&dst, b"")?,
            Err(e) => return Err(io_err(&dst)(e)),
        }
        let active = self.path.join("txn.active");
        fs::rename(&tmp, &active).map_err(io_err(&active))?;
        self.txn_active = true;
        Ok(())
    }

    /// borg's `commit`: saves the files cache (entries filtered by age/TTL), the chunks
    /// cache and the config (manifest ID, timestamp, key type, integrity data), then ends
    /// the transaction. Does nothing without an active transaction.
    pub fn commit(&mut self, manifest: &Manifest, key: &Key) -> CacheResult<()> {
        if !self.txn_active {
            return Ok(());
        }
        if let Some(files) = &self.files {
            let mut h = IntegrityHasher::new(&self.files_name);
            let ttl = self.ttl;
            save_file_with(&self.path.join(&self.files_name), |out| {
                let mut hashing = HashingWriter {
                    out,
                    hasher: &mut h,
                };
                files.write_to(ttl, &mut hashing)
            })
            .map(|len| h.hash_part("final", len))?;
            let name = self.files_name.clone();
            self.set_integrity(&name, h.integrity_json());
        }
        let json = index_integrity(&self.chunks, "chunks");
        save_index(&self.path.join("chunks"), &self.chunks)?;
        self.set_integrity("chunks", json);
        let id_hex = hex::encode(manifest.id);
        self.ini.set("cache", "manifest", &id_hex);
        self.ini.set(
            "cache",
            "timestamp",
            manifest.timestamp.as_deref().unwrap_or(""),
        );
        let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
        self.ini
            .set("cache", "ignored_features", &join(&self.ignored_features));
        self.ini.set(
            "cache",
            "mandatory_features",
            &join(&self.mandatory_features),
        );
        for (k, v) in &self.integrity {
            self.ini.set("integrity", k, v);
        }
        self.ini.set("integrity", "manifest", &id_hex);
        self.ini
            .set("cache", "key_type", &key.key_type().type_byte().to_string());
        save_file(&self.path.join("config"), self.ini.to_text().as_bytes())?;
        self.manifest_id = Some(manifest.id);
        let active = self.path.join("txn.active");
        let tmp = self.path.join("txn.tmp");
        fs::rename(&active, &tmp).map_err(io_err(&active))?;
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        self.txn_active = false;
        Ok(())
    }

    fn set_integrity(&mut self, name: &str, json: String) {
        match self.integrity.iter_mut().find(|(k, _)| k == name) {
            Some(e) => e.1 = json,
            None => self.integrity.push((name.to_string(), json)),
        }
    }

    /// borg's `rollback`: drop a partial transaction, restore an active one, reload.
    pub fn rollback(&mut self) -> CacheResult<()> {
        let tmp = self.path.join("txn.tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        let active = self.path.join("txn.active");
        if active.exists() {
            for entry in fs::read_dir(&active).map_err(io_err(&active))? {
                let entry = entry.map_err(io_err(&active))?;
                let name = entry.file_name();
                let n = name.to_string_lossy();
                if n == "config" || n == "chunks" || n == "files" || n.starts_with("files.") {
                    let dst = self.path.join(&name);
                    fs::copy(entry.path(), &dst).map_err(io_err(&dst))?;
                }
            }
            fs::rename(&active, &tmp).map_err(io_err(&active))?;
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        self.txn_active = false;
        self.load()
    }

    /// borg's `wipe_cache`: forget everything so the next sync rebuilds it.
    fn wipe(&mut self) -> CacheResult<()> {
        self.messages.push((
            Level::Warning,
            "Discarding incompatible cache and forcing a cache rebuild".into(),
        ));
        let archive_d = self.path.join("chunks.archive.d");
        if archive_d.is_dir() {
            fs::remove_dir_all(&archive_d).map_err(io_err(&archive_d))?;
            fs::create_dir_all(&archive_d).map_err(io_err(&archive_d))?;
        }
        self.chunks = ChunkIndex::new();
        save_file(&self.path.join(&self.files_name), b"")?;
        if self.files.is_some() {
            self.files = Some(FilesCache::new());
        }
        self.manifest_id = None;
        self.ini.set("cache", "manifest", "");
        self.ignored_features.clear();
        self.mandatory_features.clear();
        Ok(())
    }

    /// borg's `sync`: rebuild the chunks cache from the archives in `manifest`, reusing and
    /// maintaining the per-archive indexes in `chunks.archive.d` (a corrupted one is
    /// reported, deleted and rebuilt). Creating a *file* named `chunks.archive.d` disables
    /// the per-archive indexes, as in borg.
    pub fn sync(
        &mut self,
        repository: &mut dyn Repository,
        key: &Key,
        manifest: &Manifest,
    ) -> CacheResult<()> {
        manifest.check_repository_compatibility(&[Operation::Read])?;
        self.begin()?;
        let archive_d = self.path.join("chunks.archive.d");
        for legacy in ["chunks.archive", "chunks.archive.tmp"] {
            remove_if_exists(&self.path.join(legacy))?;
        }
        if !archive_d.exists() {
            fs::create_dir(&archive_d).map_err(io_err(&archive_d))?;
        }
        let do_cache = archive_d.is_dir();
        self.messages
            .push((Level::Info, "Synchronizing chunks cache...".into()));
        let mut cached: BTreeSet<ObjectId> = BTreeSet::new();
        if do_cache {
            for entry in fs::read_dir(&archive_d).map_err(io_err(&archive_d))? {
                let entry = entry.map_err(io_err(&archive_d))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let hex_part = match name.len() {
                    64 => Some(name.as_str()),
                    72 if name.ends_with(".compact") => Some(&name[..64]),
                    _ => None,
                };
                if let Some(id) = hex_part
                    .and_then(|h| hex::decode(h).ok())
                    .and_then(|b| ObjectId::try_from(b).ok())
                {
                    cached.insert(id);
                }
            }
        }
        let archives: Vec<(ObjectId, String)> = manifest
            .archives
            .iter()
            .map(|(name, e)| (e.id, name.clone()))
            .collect();
        let wanted: BTreeSet<ObjectId> = archives.iter().map(|(id, _)| *id).collect();
        self.messages.push((
            Level::Info,
            format!(
                "Archives: {}, w/ cached Idx: {}, w/ outdated Idx: {}, w/o cached Idx: {}.",
                wanted.len(),
                cached.len(),
                cached.difference(&wanted).count(),
                wanted.difference(&cached).count()
            ),
        ));
        for id in cached.difference(&wanted) {
            self.cleanup_cached_archive(id, true)?;
        }
        let mut master = ChunkIndex::new();
        for (id, name) in &archives {
            let mut index = None;
            if do_cache && cached.contains(id) {
                index = self.read_archive_index(id, name)?;
            }
            let index = match index {
                Some(i) => i,
                None => {
                    self.messages.push((
                        Level::Info,
                        format!("Fetching and building archive index for {name} ..."),
                    ));
                    let mut idx = build_archive_index(repository, key, id)?;
                    if do_cache {
                        self.write_archive_index(id, &mut idx)?;
                    }
                    idx
                }
            };
            self.messages
                .push((Level::Info, "Merging into master chunks index ...".into()));
            master.merge(&index);
        }
        self.chunks = master;
        self.messages.push((Level::Info, "Done.".into()));
        Ok(())
    }

    fn archive_index_path(&self, id: &ObjectId, suffix: &str) -> PathBuf {
        self.path
            .join("chunks.archive.d")
            .join(format!("{}{suffix}", hex::encode(id)))
    }

    fn cleanup_cached_archive(&self, id: &ObjectId, compact_too: bool) -> CacheResult<()> {
        let mut suffixes = vec!["", ".integrity"];
        if compact_too {
            suffixes.extend([".compact", ".compact.integrity"]);
        }
        for s in suffixes {
            remove_if_exists(&self.archive_index_path(id, s))?;
        }
        Ok(())
    }

    fn write_archive_index(&self, id: &ObjectId, index: &mut ChunkIndex) -> CacheResult<()> {
        index.compact();
        let name = format!("{}.compact", hex::encode(id));
        let json = index_integrity(index, &name);
        let path = self.archive_index_path(id, ".compact");
        save_file(
            &self.archive_index_path(id, ".compact.integrity"),
            json.as_bytes(),
        )?;
        save_index(&path, index)
    }

    /// borg's `read_archive_index`: the compact index (or a legacy one, converted);
    /// `None` after a corrupted one was reported and deleted.
    fn read_archive_index(&mut self, id: &ObjectId, name: &str) -> CacheResult<Option<ChunkIndex>> {
        self.messages.push((
            Level::Info,
            format!("Reading cached archive chunk index for {name} ..."),
        ));
        let compact = self.archive_index_path(id, ".compact");
        let (path, is_compact) = if compact.exists() {
            (compact, true)
        } else {
            (self.archive_index_path(id, ""), false)
        };
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut integrity_path = path.as_os_str().to_owned();
        integrity_path.push(".integrity");
        let integrity = fs::read_to_string(PathBuf::from(integrity_path)).ok();
        let result = read_verified(
            &path,
            &file_name,
            integrity.as_deref(),
            &[("HashHeader", HEADER_SIZE)],
        )
        .and_then(|data| parse_index(&path, data, is_compact));
        match result {
            Ok(mut index) => {
                if is_compact {
                    self.cleanup_cached_archive(id, false)?;
                } else {
                    self.cleanup_cached_archive(id, true)?;
                    self.write_archive_index(id, &mut index)?;
                }
                Ok(Some(index))
            }
            Err(e @ (CacheError::Integrity { .. } | CacheError::Corrupt(_))) => {
                self.messages.push((
                    Level::Error,
                    format!("Cached archive chunk index of {name} is corrupted: {e}"),
                ));
                self.cleanup_cached_archive(id, true)?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the chunks cache knows `id` (borg's `seen_chunk` > 0).
    pub fn seen_chunk(&self, id: &ObjectId) -> bool {
        self.chunks.get(id).is_some_and(|e| e.refcount > 0)
    }

    /// Adds `n` references to `id` with the given sizes (borg's `chunks.add`); starts a
    /// transaction when none is active.
    pub fn add_refs(&mut self, id: &ObjectId, n: u32, size: u64, csize: u64) -> CacheResult<()> {
        self.begin()?;
        let entry = ChunkEntry {
            refcount: n,
            size: size as u32,
            csize: csize as u32,
        };
        self.chunks
            .add(id, entry)
            .map_err(|e| CacheError::Corrupt(e.to_string()))
    }
}

/// borg's `Manifest.get_all_mandatory_features`, flattened: every feature any operation of
/// the repository requires (rborg supports none, so all end up in `ignored_features`).
fn all_mandatory_features(manifest: &Manifest) -> Vec<String> {
    use rborg_crypto::msgpack;
    let Some((_, flags)) = manifest
        .config
        .iter()
        .find(|(k, _)| msgpack::key_bytes(k) == b"feature_flags")
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (_, requirements) in flags.as_map().map(Vec::as_slice).unwrap_or(&[]) {
        let mandatory = msgpack::map_get(requirements, "mandatory").and_then(|v| v.as_array());
        for f in mandatory.map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(b) = msgpack::as_raw(f) {
                out.push(String::from_utf8_lossy(b).into_owned());
            }
        }
    }
    out
}

/// borg's `fetch_and_build_idx` (+ `fetch_missing_csize`): the chunk index of one archive,
/// its metadata object, item stream chunks and content chunks with one reference per use.
pub fn build_archive_index(
    repository: &mut dyn Repository,
    key: &Key,
    archive_id: &ObjectId,
) -> CacheResult<ChunkIndex> {
    let refs = ArchiveRefs::collect(repository, key, archive_id)?;
    let mut index = ChunkIndex::new();
    let mut missing_csize = Vec::new();
    for r in &refs.refs {
        let entry = ChunkEntry {
            refcount: 1,
            size: r.size as u32,
            csize: r.csize as u32,
        };
        index
            .add(&r.id, entry)
            .map_err(|e| CacheError::Corrupt(e.to_string()))?;
        if r.csize == 0 {
            missing_csize.push(r.id);
        }
    }
    // archives made with borg's AdHocCache (--no-cache-sync) have csize 0 for chunks that
    // already existed: take the stored size from the repository
    missing_csize.sort();
    missing_csize.dedup();
    for id in missing_csize {
        let csize = repository.get(&id)?.len() as u32;
        if let Some(e) = index.get(&id) {
            index.insert(id, ChunkEntry { csize, ..e });
        }
    }
    Ok(index)
}

/// Whether the cache of `repository_id` exists and matches `manifest_id` (borg's check in
/// `Cache.__new__` before it permits the ad-hoc cache of `--no-cache-sync`: a cache that is
/// in sync is used rather than invalidated).
pub fn cache_in_sync(env: Env, repository_id: &ObjectId, manifest_id: &ObjectId) -> bool {
    let config = repository_cache_dir(env, repository_id).join("config");
    let Ok(text) = fs::read_to_string(config) else {
        return false;
    };
    Ini::parse(&text)
        .ok()
        .and_then(|ini| ini.get("cache", "manifest").map(str::to_string))
        .is_some_and(|m| m == hex::encode(manifest_id))
}

/// `borg config --cache`: the cache config's values (borg edits `CacheConfig._config`).
impl LocalCache {
    /// A value of the cache config.
    pub fn config_get(&self, section: &str, name: &str) -> Option<&str> {
        self.ini.get(section, name)
    }

    /// Sets a value and saves the config (borg's `CacheConfig.save()` without manifest).
    pub fn config_set(&mut self, section: &str, name: &str, value: &str) -> CacheResult<()> {
        self.ini.set(section, name, value);
        save_file(&self.path.join("config"), self.ini.to_text().as_bytes())
    }

    /// Removes a value and saves the config.
    pub fn config_remove(&mut self, section: &str, name: &str) -> CacheResult<()> {
        self.ini.remove(section, name);
        save_file(&self.path.join("config"), self.ini.to_text().as_bytes())
    }
}
