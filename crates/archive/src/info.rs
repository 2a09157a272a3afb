//! The numbers `borg info` shows (borg 1.2.4 `archive.py` `Archive.calc_stats` /
//! `_calc_stats`, `cache.py` `CacheStatsMixin.stats`, `hashindex.pyx` `stats_against` /
//! `summarize`).
//!
//! * Per archive: original and compressed size and file count are the totals borg >= 1.2
//!   stores in the archive metadata (`size`, `csize`, `nfiles`, plus the `*_parts` values with
//!   `--consider-part-files`); the deduplicated size is the stored size of the objects that
//!   only this archive references (its own reference count equals the repository's).
//! * "All archives": the sum of the archives' metadata sizes, the stored size of all unique
//!   objects, and the unique/total chunk counts of the reference counts.
//!
//! ```no_run
//! # fn demo(repo: &mut dyn rborg_repository::Repository, key: &rborg_crypto::Key,
//! #         manifest: &rborg_archive::Manifest) -> Result<(), rborg_archive::ReadError> {
//! use rborg_archive::{info, refcount::RefCounts};
//! let refs = RefCounts::build(repo, key, manifest)?;
//! let all = info::repository_stats(repo, key, manifest, &refs, false)?;
//! println!("{} unique chunks", all.total_unique_chunks);
//! # Ok(()) }
//! ```

use rborg_crypto::Key;
use rborg_repository::{IdMap, Repository};

use crate::archive::{ArchiveMeta, ReadError, ReadResult};
use crate::refcount::{ArchiveRefs, RefCounts};
use crate::Manifest;

/// One archive's statistics (borg's `Statistics` from `calc_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Sum of the files' plaintext sizes.
    pub original_size: u64,
    /// Sum of the files' stored chunk sizes.
    pub compressed_size: u64,
    /// Stored size of the objects no other archive references.
    pub deduplicated_size: u64,
    /// Number of files.
    pub nfiles: u64,
}

/// The repository totals (borg's `CacheStatsMixin.stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepositoryStats {
    /// Sum of the archives' original sizes.
    pub total_size: u64,
    /// Sum of the archives' compressed sizes.
    pub total_csize: u64,
    /// Plaintext size of all distinct objects.
    pub unique_size: u64,
    /// Stored size of all distinct objects.
    pub unique_csize: u64,
    /// Number of distinct objects.
    pub total_unique_chunks: u64,
    /// Number of references.
    pub total_chunks: u64,
}

/// One element of an archive's chunker parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkerParam {
    /// The algorithm name (`buzhash`, `fixed`).
    Name(String),
    /// A number.
    Int(u64),
}

/// borg's `normalize_chunker_params`: the stored list, with `buzhash` put in front of a
/// borg < 1.2 four-number tuple; `None` when the archive has none.
pub fn chunker_params(meta: &ArchiveMeta) -> Option<Vec<ChunkerParam>> {
    let items = meta.chunker_params.as_ref()?.as_array()?;
    let mut out: Vec<ChunkerParam> = items
        .iter()
        .map(|v| match (v.as_u64(), rborg_crypto::msgpack::as_raw(v)) {
            (Some(n), _) => ChunkerParam::Int(n),
            (None, Some(b)) => ChunkerParam::Name(String::from_utf8_lossy(b).into_owned()),
            _ => ChunkerParam::Name(String::new()),
        })
        .collect();
    if out.len() == 4 && matches!(out[0], ChunkerParam::Int(_)) {
        out.insert(0, ChunkerParam::Name("buzhash".into()));
    }
    Some(out)
}

fn stat(meta: &ArchiveMeta, key: &str) -> Option<u64> {
    meta.stats.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// `(original, compressed, nfiles)` from the archive metadata.
fn meta_totals(meta: &ArchiveMeta, consider_part_files: bool) -> ReadResult<(u64, u64, u64)> {
    let need = |k: &str| {
        stat(meta, k).ok_or_else(|| {
            ReadError::InvalidArchive(format!(
                "archive {} has no '{k}' statistic (made by borg < 1.2; not supported by rborg info)",
                meta.name_lossy()
            ))
        })
    };
    let (mut size, mut csize, mut nfiles) = (need("size")?, need("csize")?, need("nfiles")?);
    if consider_part_files {
        size += stat(meta, "size_parts").unwrap_or(0);
        csize += stat(meta, "csize_parts").unwrap_or(0);
        nfiles += stat(meta, "nfiles_parts").unwrap_or(0);
    }
    Ok((size, csize, nfiles))
}

/// Statistics of the archive `meta`, its deduplicated size measured against `refs`.
pub fn archive_stats(
    repository: &mut dyn Repository,
    key: &Key,
    meta: &ArchiveMeta,
    refs: &RefCounts,
    consider_part_files: bool,
) -> ReadResult<ArchiveStats> {
    let (original_size, compressed_size, nfiles) = meta_totals(meta, consider_part_files)?;
    let own = ArchiveRefs::collect(repository, key, &meta.id)?;
    let mut local: IdMap<u64> = IdMap::default();
    for r in &own.refs {
        *local.entry(r.id).or_default() += 1;
    }
    let mut deduplicated_size = 0;
    for (id, count) in local {
        let global = refs.get(&id).ok_or_else(|| {
            ReadError::InvalidArchive(format!(
                "stats_against: key {} contained in archive but not in the chunk index",
                hex::encode(id)
            ))
        })?;
        if global.refcount == count {
            deduplicated_size += global.csize;
        }
    }
    Ok(ArchiveStats {
        original_size,
        compressed_size,
        deduplicated_size,
        nfiles,
    })
}

/// The "All archives" and "Chunk index" numbers.
pub fn repository_stats(
    repository: &mut dyn Repository,
    key: &Key,
    manifest: &Manifest,
    refs: &RefCounts,
    consider_part_files: bool,
) -> ReadResult<RepositoryStats> {
    let (_, _, unique_size, unique_csize, total_unique_chunks, total_chunks) = refs.summarize();
    let (mut total_size, mut total_csize) = (0, 0);
    for entry in manifest.archives.values() {
        let meta = ArchiveMeta::load(repository, key, &entry.id, false)?;
        let (s, c, _) = meta_totals(&meta, consider_part_files)?;
        total_size += s;
        total_csize += c;
    }
    Ok(RepositoryStats {
        total_size,
        total_csize,
        unique_size,
        unique_csize,
        total_unique_chunks,
        total_chunks,
    })
}
