//! Deleting and renaming archives (borg 1.2.4 `archive.py` `Archive.delete` / `set_meta` /
//! `rename`, `archiver.py` `_delete_archives` / `do_rename`).
//!
//! Deleting an archive removes one reference from every object it uses (content chunks,
//! item stream chunks, the metadata object, see [`crate::refcount`]); objects left without
//! references are deleted from the repository. The caller then writes the manifest and
//! commits; the space is reclaimed by `borg compact`.
//!
//! Renaming rewrites the metadata object with the new name, which gives it a new ID, stores
//! it, points the manifest at it and deletes the old object. borg 1.2.4 packs the renamed
//! metadata without re-authenticating it (it keeps the stale `tam`); rborg writes a fresh
//! archive TAM, as borg >= 1.2.5 does, which borg 1.2.4 reads the same way.
//!
//! ```no_run
//! # fn demo(repo: &mut dyn rborg_repository::Repository, key: &rborg_crypto::Key,
//! #         manifest: &mut rborg_archive::Manifest, nonce_file: std::path::PathBuf)
//! #         -> Result<(), rborg_archive::delete::DeleteError> {
//! use rborg_archive::{delete, refcount::RefCounts};
//! let mut refs = RefCounts::build(repo, key, manifest)?;
//! delete::delete_archive(repo, key, manifest, "old-archive", &mut refs, false, false)?;
//! manifest.write(repo, key, nonce_file)?;
//! repo.commit(false, 0.1)?;
//! # Ok(()) }
//! ```

use rborg_crypto::{msgpack, Key, TamContext};
use rborg_repository::Repository;
use rmpv::Value;

use crate::archive::{fetch_object, ArchiveMeta, ReadError};
use crate::refcount::{ArchiveRefs, RefCounts};
use crate::{ArchiveEntry, Manifest};

/// What can go wrong deleting or renaming.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// Reading the archive failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] rborg_repository::Error),
    /// The archive layer failed (manifest write, ...).
    #[error(transparent)]
    Archive(#[from] crate::Error),
    /// Encryption or TAM failed.
    #[error(transparent)]
    Crypto(#[from] rborg_crypto::Error),
    /// An object the archive uses has no reference count (borg's `ChunksIndexError`).
    #[error(
        "Chunk ID {0} missing from chunks index, corrupted chunks index - aborting transaction."
    )]
    ChunksIndex(String),
    /// The archive does not exist (borg's `Archive.DoesNotExist`).
    #[error("Archive {0} does not exist")]
    DoesNotExist(String),
    /// The new name is taken (borg's `Archive.AlreadyExists`).
    #[error("Archive {0} already exists")]
    AlreadyExists(String),
}

/// Sizes of what a deletion released (borg's `Statistics` after `Archive.delete`, as
/// positive numbers; references from checkpoint part files are left out unless
/// `consider_part_files`, as borg counts them apart).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeleteStats {
    /// Plaintext size of all references removed.
    pub original_size: u64,
    /// Stored size of all references removed.
    pub compressed_size: u64,
    /// Stored size of the objects deleted from the repository.
    pub deduplicated_size: u64,
    /// Number of objects deleted from the repository.
    pub deleted_objects: u64,
    /// With `forced`: objects of the archive were missing or its item stream was unreadable
    /// (borg warns "forced deletion succeeded, but the deleted archive was corrupted.").
    pub corrupted: bool,
}

/// Deletes the archive `name`: decrements the references it holds in `refs`, deletes objects
/// whose count drops to 0 and removes it from `manifest` (not written, not committed). With
/// `forced`, objects already missing from the repository are tolerated (borg `--force`).
pub fn delete_archive(
    repository: &mut dyn Repository,
    key: &Key,
    manifest: &mut Manifest,
    name: &str,
    refs: &mut RefCounts,
    forced: bool,
    consider_part_files: bool,
) -> Result<DeleteStats, DeleteError> {
    let entry = manifest
        .archives
        .get(name)
        .ok_or_else(|| DeleteError::DoesNotExist(name.to_string()))?
        .clone();
    let mut stats = DeleteStats::default();
    let archive_refs = match ArchiveRefs::collect(repository, key, &entry.id) {
        Ok(r) => r,
        // borg's forced delete still drops the metadata object and the manifest entry
        Err(_) if forced => {
            stats.corrupted = true;
            if refs.decref(&entry.id) == Some(0) {
                stats.deleted_objects += 1;
                match repository.delete(&entry.id) {
                    Ok(()) | Err(rborg_repository::Error::ObjectNotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            manifest.archives.remove(name);
            return Ok(stats);
        }
        Err(e) => return Err(e.into()),
    };
    for r in &archive_refs.refs {
        let left = refs
            .decref(&r.id)
            .ok_or_else(|| DeleteError::ChunksIndex(hex::encode(r.id)))?;
        let counted = !r.part || consider_part_files;
        if counted {
            stats.original_size += r.size;
            stats.compressed_size += r.csize;
        }
        if left == 0 {
            if counted {
                stats.deduplicated_size += r.csize;
            }
            stats.deleted_objects += 1;
            match repository.delete(&r.id) {
                Ok(()) => {}
                Err(rborg_repository::Error::ObjectNotFound { .. }) if forced => {
                    stats.corrupted = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    manifest.archives.remove(name);
    Ok(stats)
}

/// Renames archive `old` to `new` (borg's `Archive.rename`): stores the metadata object with
/// the new name and a fresh TAM under its new ID, updates `manifest` (not written) and deletes
/// the old metadata object. `nonce_file` is the security directory's nonce file.
pub fn rename_archive(
    repository: &mut dyn Repository,
    key: &Key,
    manifest: &mut Manifest,
    old: &str,
    new: &str,
    nonce_file: std::path::PathBuf,
) -> Result<ArchiveEntry, DeleteError> {
    if manifest.archives.contains_key(new) {
        return Err(DeleteError::AlreadyExists(new.to_string()));
    }
    let entry = manifest
        .archives
        .get(old)
        .ok_or_else(|| DeleteError::DoesNotExist(old.to_string()))?
        .clone();
    let data = fetch_object(repository, key, &entry.id)?;
    let meta = ArchiveMeta::decode(key, &entry.id, &data, false)?;
    let mut map = meta.raw.as_map().cloned().unwrap_or_default();
    map.retain(|(k, _)| msgpack::key_bytes(k) != b"tam");
    for (k, v) in map.iter_mut() {
        if msgpack::key_bytes(k) == b"name" {
            *v = Value::from(new);
        }
    }
    let plain = rborg_crypto::pack_and_authenticate(key, &Value::Map(map), TamContext::Archive)?;
    let new_id = key.id_hash(&plain);
    crate::manifest::put_metadata_object(repository, key, &new_id, &plain, nonce_file)?;
    if new_id != entry.id {
        repository.delete(&entry.id)?;
    }
    let new_entry = ArchiveEntry {
        id: new_id,
        time: entry.time.clone(),
    };
    manifest.archives.remove(old);
    manifest.archives.insert(new.to_string(), new_entry.clone());
    Ok(new_entry)
}
