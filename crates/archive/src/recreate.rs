//! Re-creating archives: `borg recreate` (borg 1.2.4 `archiver.py` `do_recreate`,
//! `archive.py` `ArchiveRecreater`).
//!
//! An archive is read item by item and written again through an [`ArchiveWriter`]: items the
//! patterns (plus the tag rules of `--exclude-caches`/`--exclude-if-present`, found *in the
//! archive*) exclude are left out, file contents keep their chunk lists (only references are
//! counted) unless they are re-chunked (`--chunker-params` different from the archive's) or
//! re-compressed (`--recompress`: a stored object is replaced by the same ID with the new
//! compression). The new archive replaces the old one under its name (the old one is deleted
//! afterwards), or is stored as `--target`.
//!
//! As in borg, an archive whose run would change nothing (no pattern, no recompression, no
//! re-chunking, no comment and no target) is skipped, and a hardlink slave whose master is
//! excluded takes over the master's chunks (the first one does; later ones point to it).

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use chrono::NaiveDateTime;
use rborg_chunker::ChunkerParams;
use rborg_compress::CompressionSpec;
use rborg_crypto::Key;
use rborg_repository::{IdSet, ObjectId, Repository};
use rmpv::Value;

use crate::archive::{open_object, ArchiveMeta, ReadError};
use crate::create::{CreateError, Created, Reporter};
use crate::delete::{delete_archive, DeleteError};
use crate::item::{hardlinkable, ChunkListEntry, Item, S_IFMT, S_IFREG};
use crate::manifest::{Manifest, ISO_FORMAT};
use crate::patterns::{IeCommand, Pattern, PatternMatcher, PatternStyle};
use crate::refcount::RefCounts;
use crate::walk::{CACHE_TAG_CONTENTS, CACHE_TAG_NAME};
use crate::writer::{ArchiveInfo, ArchiveWriter, ChunkStore, KnownChunks};

/// `--recompress`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Recompress {
    /// Keep stored chunks as they are (the default).
    #[default]
    Never,
    /// Recompress chunks whose stored compression differs from the one `-C` would choose.
    IfDifferent,
    /// Recompress every chunk.
    Always,
}

/// What can go wrong recreating an archive.
#[derive(Debug, thiserror::Error)]
pub enum RecreateError {
    /// Writing (storing objects, the archive, the manifest) failed.
    #[error(transparent)]
    Write(#[from] CreateError),
    /// Reading the source archive failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Deleting the replaced archive failed.
    #[error(transparent)]
    Delete(#[from] DeleteError),
    /// A tag pattern could not be built.
    #[error(transparent)]
    Pattern(#[from] crate::patterns::PatternError),
    /// Reading a chunk for re-chunking failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Result type of recreating.
pub type RecreateResult<T> = std::result::Result<T, RecreateError>;

/// The options of `borg recreate`.
#[derive(Debug, Clone, Default)]
pub struct RecreateOptions {
    /// The include/exclude rules and `PATH` includes (borg's `build_matcher`).
    pub patterns: PatternMatcher,
    /// `--exclude-caches`: leave out directories with a `CACHEDIR.TAG` (in the archive).
    pub exclude_caches: bool,
    /// `--exclude-if-present NAME`.
    pub exclude_if_present: Vec<String>,
    /// `--keep-exclude-tags`: keep the tag files of excluded directories.
    pub keep_exclude_tags: bool,
    /// `--chunker-params`: re-chunk archives made with other parameters.
    pub chunker_params: Option<ChunkerParams>,
    /// `-C`: compression of newly stored (and recompressed) chunks.
    pub compression: CompressionSpec,
    /// `--recompress`.
    pub recompress: Recompress,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--timestamp`.
    pub timestamp: Option<NaiveDateTime>,
    /// The command line (stored as `recreate_cmdline`).
    pub cmdline: Vec<String>,
    /// Host name recorded in the new archive.
    pub hostname: String,
    /// User name recorded in the new archive.
    pub username: String,
}

/// The outcome of one archive.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Nothing would change: the archive was not processed.
    NothingToDo,
    /// A dry run went through the items.
    DryRun,
    /// The archive was written (replacing the original unless a target was given).
    Recreated(Box<Created>),
}

/// A `borg recreate` session over one repository: processes archives one by one and
/// commits once at the end (borg's `do_recreate`).
pub struct Recreater<'k, 'r> {
    store: ChunkStore<'k, 'r>,
    key: &'k Key,
    opts: RecreateOptions,
    target_params: ChunkerParams,
    /// Chunks already stored (or recompressed) in this run (borg's `seen_chunks`).
    seen: IdSet,
}

/// Whether `name` is the temporary name of an interrupted recreate (borg's
/// `is_temporary_archive`).
pub fn is_temporary_archive(name: &str) -> bool {
    name.ends_with(".recreate")
}

/// borg's `file_status`: the `--list` letter of an item by its type.
pub fn file_status(mode: u32) -> char {
    match mode & S_IFMT {
        S_IFREG => 'A',
        0o040000 => 'd',
        0o060000 => 'b',
        0o020000 => 'c',
        0o120000 => 's',
        0o010000 => 'f',
        _ => '?',
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn parse_time(t: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(t, ISO_FORMAT)
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S"))
        .ok()
}

impl<'k, 'r> Recreater<'k, 'r> {
    /// Starts a session (a dry run lists nothing from the repository).
    pub fn new(
        repository: &'r mut (dyn Repository + Send),
        key: &'k Key,
        nonce_file: PathBuf,
        opts: RecreateOptions,
    ) -> RecreateResult<Self> {
        let known = if opts.dry_run {
            KnownChunks::default()
        } else {
            KnownChunks::from_repository(repository)?
        };
        let store =
            ChunkStore::with_known(repository, key, opts.compression.clone(), nonce_file, known)?;
        // without --chunker-params borg's target still records its default parameters
        let target_params = opts.chunker_params.unwrap_or(ChunkerParams::DEFAULT);
        Ok(Recreater {
            store,
            key,
            opts,
            target_params,
            seen: IdSet::default(),
        })
    }

    fn load_items(&self, meta: &ArchiveMeta) -> RecreateResult<Vec<Item>> {
        let mut repo = self.store.repository()?;
        let items = meta
            .iter_items(&mut **repo, self.key)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(items)
    }

    /// Reads a file item's content (for the cache tag check).
    fn read_prefix(&self, chunks: &[ChunkListEntry], n: usize) -> RecreateResult<Vec<u8>> {
        let mut out = Vec::new();
        for c in chunks {
            if out.len() >= n {
                break;
            }
            out.extend(self.fetch(&c.id)?);
        }
        out.truncate(n);
        Ok(out)
    }

    fn fetch(&self, id: &ObjectId) -> RecreateResult<Vec<u8>> {
        let cdata = self
            .store
            .repository()?
            .get(id)
            .map_err(CreateError::from)?;
        Ok(open_object(self.key, id, &cdata)?)
    }

    /// The matcher with the rules of `--exclude-caches`/`--exclude-if-present` for the
    /// tagged directories of this archive (borg's `matcher_add_tagged_dirs`).
    fn tagged_matcher(&self, items: &[Item]) -> RecreateResult<PatternMatcher> {
        let mut matcher = self.opts.patterns.clone();
        if !self.opts.exclude_caches && self.opts.exclude_if_present.is_empty() {
            return Ok(matcher);
        }
        let base = |p: &[u8]| -> (String, String) {
            let s = lossy(p);
            match s.rfind('/') {
                Some(i) => (s[..i].to_string(), s[i + 1..].to_string()),
                None => (String::new(), s),
            }
        };
        // CACHEDIR.TAG slaves whose content is in a master elsewhere (borg #4911)
        let by_path: HashMap<&[u8], &Item> = items.iter().map(|i| (&i.path[..], i)).collect();
        let mut tag_files = Vec::new();
        let mut tagged_dirs = Vec::new();
        for item in items {
            let (dir, name) = base(&item.path);
            if name != CACHE_TAG_NAME && !self.opts.patterns.matches(&item.path) {
                continue;
            }
            let tagged = if self.opts.exclude_if_present.contains(&name) {
                true
            } else if self.opts.exclude_caches
                && name == CACHE_TAG_NAME
                && item.mode.unwrap_or(0) & S_IFMT == S_IFREG
            {
                let content = match (&item.chunks, &item.source) {
                    (Some(c), _) => Some(c),
                    (None, Some(src)) => by_path.get(&src[..]).and_then(|m| m.chunks.as_ref()),
                    (None, None) => None,
                };
                match content {
                    Some(c) => self.read_prefix(c, CACHE_TAG_CONTENTS.len())? == CACHE_TAG_CONTENTS,
                    None => false,
                }
            } else {
                false
            };
            if tagged {
                if self.opts.keep_exclude_tags {
                    tag_files.push(Pattern::with_style(
                        &lossy(&item.path),
                        PatternStyle::PathPrefix,
                    )?);
                    tagged_dirs.push(Pattern::with_style(
                        &format!("{dir}/"),
                        PatternStyle::Fnmatch,
                    )?);
                } else {
                    tagged_dirs.push(Pattern::with_style(&dir, PatternStyle::PathPrefix)?);
                }
            }
        }
        // borg adds these after the user's rules: tag files are kept, tagged dirs left out
        for p in tag_files {
            matcher.add(p, IeCommand::Include);
        }
        for p in tagged_dirs {
            matcher.add(p, IeCommand::ExcludeNoRecurse);
        }
        Ok(matcher)
    }

    /// Recreates the archive `name` (borg's `ArchiveRecreater.recreate`). `comment` replaces
    /// the archive's comment; with `target` the result is stored under that name and the
    /// original is kept.
    pub fn recreate(
        &mut self,
        manifest: &mut Manifest,
        name: &str,
        comment: Option<&str>,
        target: Option<&str>,
        reporter: &mut dyn Reporter,
    ) -> RecreateResult<Outcome> {
        let meta = {
            let mut repo = self.store.repository()?;
            ArchiveMeta::load_by_name(&mut **repo, self.key, manifest, name, false)?
        };
        let source_params = meta
            .chunker_params
            .as_ref()
            .and_then(chunker_params_of_value);
        let rechunkify =
            self.opts.chunker_params.is_some() && source_params != Some(self.target_params);
        let recompress = self.opts.recompress != Recompress::Never;
        let items = self.load_items(&meta)?;
        let matcher = self.tagged_matcher(&items)?;
        if matcher.is_empty() && !recompress && !rechunkify && comment.is_none() && target.is_none()
        {
            return Ok(Outcome::NothingToDo);
        }
        let target_name = target.map_or_else(|| format!("{name}.recreate"), str::to_string);
        if !self.opts.dry_run && manifest.archives.contains_key(&target_name) {
            return Err(CreateError::AlreadyExists(target_name).into());
        }
        let mut writer = ArchiveWriter::new(self.key)?;
        let subset = !matcher.is_empty();
        // excluded hardlink masters: path -> (chunks, chunks_healthy, new master path)
        type Moved = (
            Option<Vec<ChunkListEntry>>,
            Option<Vec<ChunkListEntry>>,
            Option<Vec<u8>>,
        );
        let mut masters: HashMap<Vec<u8>, Moved> = HashMap::new();
        for mut item in items {
            let mode = item.mode.unwrap_or(0);
            if !matcher.matches(&item.path) {
                reporter.status('x', &item.path);
                if subset
                    && hardlinkable(mode)
                    && item.hardlink_master.unwrap_or(true)
                    && item.source.is_none()
                {
                    masters.insert(
                        item.path.clone(),
                        (item.chunks.take(), item.chunks_healthy.take(), None),
                    );
                }
                continue;
            }
            if subset && hardlinkable(mode) {
                if let Some(entry) = item.source.as_ref().and_then(|s| masters.get_mut(s)) {
                    match &entry.2 {
                        None => {
                            item.chunks = entry.0.take();
                            if let Some(h) = entry.1.take() {
                                item.chunks_healthy = Some(h);
                            }
                            entry.2 = Some(item.path.clone());
                            item.source = None;
                        }
                        Some(new_source) => item.source = Some(new_source.clone()),
                    }
                }
            }
            if self.opts.dry_run {
                reporter.status('-', &item.path);
                continue;
            }
            let mut status = Some(file_status(mode));
            if let Some(chunks) = item.chunks.take() {
                reporter.status(file_status(mode), &item.path);
                status = None;
                let chunks = if !recompress && !rechunkify {
                    writer.add_existing_chunks(&chunks);
                    chunks
                } else {
                    self.process_chunks(&mut writer, &chunks, rechunkify)?
                };
                item.chunks = Some(chunks);
                writer.stats.nfiles += 1;
            }
            writer.add_item(&self.store, &item)?;
            if let Some(s) = status {
                // borg prints the status of items without content after adding them
                reporter.status(s, &item.path);
            }
        }
        if self.opts.dry_run {
            return Ok(Outcome::DryRun);
        }
        let comment = comment.map_or_else(|| lossy(&meta.comment), str::to_string);
        let mut extra = Vec::new();
        let old_start = parse_time(&meta.time);
        let (timestamp, time_end) = match self.opts.timestamp {
            Some(t) => (Some(t), None),
            None => (
                old_start,
                meta.time_end.as_deref().and_then(parse_time).or(old_start),
            ),
        };
        extra.push((
            "recreate_cmdline".to_string(),
            Value::Array(
                self.opts
                    .cmdline
                    .iter()
                    .map(|a| Value::from(a.as_str()))
                    .collect(),
            ),
        ));
        let info = ArchiveInfo {
            comment,
            timestamp,
            time_end,
            cmdline: meta.cmdline.iter().map(|a| lossy(a)).collect(),
            hostname: self.opts.hostname.clone(),
            username: self.opts.username.clone(),
            chunker_params: self.target_params,
            extra,
        };
        let created = if target.is_some() {
            writer.finish(&self.store, manifest, &target_name, &info)?
        } else {
            // the new archive takes the name at once; the old one is deleted under a
            // temporary name (borg saves NAME.recreate, deletes NAME, renames)
            let old = manifest
                .archives
                .remove(name)
                .ok_or_else(|| ReadError::DoesNotExist(name.to_string()))?;
            let created = writer.finish(&self.store, manifest, name, &info)?;
            manifest.archives.insert(target_name.clone(), old);
            let mut repo = self.store.repository()?;
            let mut refs = RefCounts::build(&mut **repo, self.key, manifest)?;
            delete_archive(
                &mut **repo,
                self.key,
                manifest,
                &target_name,
                &mut refs,
                false,
                true,
            )?;
            created
        };
        Ok(Outcome::Recreated(Box::new(created)))
    }

    /// Re-chunks and/or recompresses one file's content (borg's `process_chunks` with
    /// `chunk_processor`).
    fn process_chunks(
        &mut self,
        writer: &mut ArchiveWriter,
        chunks: &[ChunkListEntry],
        rechunkify: bool,
    ) -> RecreateResult<Vec<ChunkListEntry>> {
        let mut out = Vec::new();
        if rechunkify {
            let reader = ChunkReader {
                recreater: self,
                ids: chunks.iter().map(|c| c.id).collect(),
                current: Vec::new(),
                pos: 0,
            };
            // the content is re-cut as one stream, fetched chunk by chunk
            let params = self.target_params;
            out = writer.add_content(&self.store, reader, &params)?;
            if self.opts.recompress != Recompress::Never {
                // chunks that existed before are recompressed as well (borg's
                // `chunk_processor` overwrites them); new ones already have `-C`
                for c in out.iter_mut() {
                    *c = self.recompress_chunk(c)?;
                }
            }
            return Ok(out);
        }
        for c in chunks {
            let entry = self.recompress_chunk(c)?;
            writer.add_existing_chunks(std::slice::from_ref(&entry));
            out.push(entry);
        }
        Ok(out)
    }

    /// borg's `chunk_processor` for `--recompress`: the object keeps its ID and is stored
    /// again with the new compression (with `if-different`, only when the compression `-C`
    /// would choose differs from the stored one). Each object is handled once per run.
    fn recompress_chunk(&mut self, c: &ChunkListEntry) -> RecreateResult<ChunkListEntry> {
        if self.seen.contains(&c.id) {
            let csize = self.store.known().get(&c.id)?.flatten().unwrap_or(c.csize);
            return Ok(ChunkListEntry { csize, ..*c });
        }
        let cdata = self
            .store
            .repository()?
            .get(&c.id)
            .map_err(CreateError::from)?;
        let compressed = self
            .key
            .decrypt(Some(&c.id), &cdata)
            .map_err(CreateError::from)?;
        let data = open_object(self.key, &c.id, &cdata)?;
        let mut overwrite = true;
        if self.opts.recompress == Recompress::IfDifferent {
            let stored = rborg_compress::detect(&compressed).ok().map(|t| t.name());
            let wanted = self
                .opts
                .compression
                .compressor()
                .decide(&data)
                .map_err(CreateError::from)?;
            if stored == Some(wanted) {
                overwrite = false;
            }
        }
        let csize = if overwrite {
            self.store.overwrite(c.id, &data)?
        } else {
            cdata.len() as u64
        };
        self.seen.insert(c.id);
        Ok(ChunkListEntry { csize, ..*c })
    }

    /// Writes the manifest and commits (borg's `manifest.write(); repository.commit()`);
    /// nothing happens after a dry run.
    pub fn commit(self, manifest: &mut Manifest) -> RecreateResult<()> {
        if self.opts.dry_run {
            return Ok(());
        }
        self.store.commit(manifest)?;
        Ok(())
    }
}

/// Reads a chunk list's content through the session's repository lock.
struct ChunkReader<'a, 'k, 'r> {
    recreater: &'a Recreater<'k, 'r>,
    ids: std::collections::VecDeque<ObjectId>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader<'_, '_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.current.len() {
            let Some(id) = self.ids.pop_front() else {
                return Ok(0);
            };
            self.current = self
                .recreater
                .fetch(&id)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.pos = 0;
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Chunker parameters as stored in archive metadata (`["buzhash", 19, 23, 21, 4095]`, or the
/// four numbers of archives older than borg 1.2, which mean buzhash).
fn chunker_params_of_value(v: &Value) -> Option<ChunkerParams> {
    let arr = v.as_array()?;
    let parts: Vec<String> = arr
        .iter()
        .map(|x| match x {
            Value::String(s) => s.as_str().map(str::to_string),
            Value::Binary(b) => Some(lossy(b)),
            other => other.as_u64().map(|n| n.to_string()),
        })
        .collect::<Option<_>>()?;
    let text = if parts.len() == 4 {
        format!("buzhash,{}", parts.join(","))
    } else {
        parts.join(",")
    };
    text.parse().ok()
}
