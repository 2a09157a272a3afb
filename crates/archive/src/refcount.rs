//! Chunk reference counts rebuilt from the archives (what borg 1.2's chunks cache holds after
//! a resync: `cache.py` `LocalCache.sync` / `fetch_and_build_idx`; `internals/data-structures.rst`
//! "The chunks cache").
//!
//! Every archive references its metadata object once, each of its item stream chunks once,
//! and each content chunk once per chunk list entry (including checkpoint part files). The
//! count of an object is the sum over all archives; deleting an archive decrements, and an
//! object whose count reaches 0 is deleted from the repository.
//!
//! ```no_run
//! # fn demo(repo: &mut dyn rborg_repository::Repository, key: &rborg_crypto::Key,
//! #         manifest: &rborg_archive::Manifest) -> Result<(), rborg_archive::ReadError> {
//! let refs = rborg_archive::refcount::RefCounts::build(repo, key, manifest)?;
//! println!("{} unique chunks", refs.len());
//! # Ok(()) }
//! ```

use rborg_crypto::Key;
use rborg_repository::{IdMap, ObjectId, Repository};

use crate::archive::{open_object, ArchiveMeta, ReadResult, PREFETCH};
use crate::item::ItemUnpacker;
use crate::Manifest;

/// One chunk's entry: reference count, plaintext size, stored size (borg's `ChunkIndexEntry`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkRef {
    /// Number of references from all archives.
    pub refcount: u64,
    /// Plaintext size.
    pub size: u64,
    /// Stored (compressed, encrypted) size.
    pub csize: u64,
}

/// Reference counts of all objects the archives of a repository use.
#[derive(Clone, Debug, Default)]
pub struct RefCounts {
    map: IdMap<ChunkRef>,
}

/// One reference an archive holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    /// The referenced object.
    pub id: ObjectId,
    /// Its plaintext size.
    pub size: u64,
    /// Its stored size.
    pub csize: u64,
    /// Whether the reference comes from a checkpoint part file item (borg counts those
    /// separately in its statistics).
    pub part: bool,
}

/// Everything one archive references, in borg's `Archive.delete` order: content chunks
/// interleaved with the item stream chunks that list them, then the metadata object.
#[derive(Clone, Debug, Default)]
pub struct ArchiveRefs {
    /// Every reference, in order.
    pub refs: Vec<ObjectRef>,
}

impl ArchiveRefs {
    /// Collects the references of the archive whose metadata object is `meta_id`.
    pub fn collect(
        repository: &mut dyn Repository,
        key: &Key,
        meta_id: &ObjectId,
    ) -> ReadResult<ArchiveRefs> {
        let meta_cdata = repository.get(meta_id)?;
        let meta_data = open_object(key, meta_id, &meta_cdata)?;
        let meta = ArchiveMeta::decode(key, meta_id, &meta_data, false)?;
        let mut refs = Vec::new();
        let mut unpacker = ItemUnpacker::new();
        for batch in meta.items.chunks(PREFETCH) {
            let cdatas = repository.get_many(batch)?;
            for (id, cdata) in batch.iter().zip(cdatas) {
                let data = open_object(key, id, &cdata)?;
                refs.push(ObjectRef {
                    id: *id,
                    size: data.len() as u64,
                    csize: cdata.len() as u64,
                    part: false,
                });
                unpacker.feed(&data);
                while let Some(item) = unpacker.next_item()? {
                    let part = item.part.is_some();
                    for c in item.chunks.iter().flatten() {
                        refs.push(ObjectRef {
                            id: c.id,
                            size: c.size,
                            csize: c.csize,
                            part,
                        });
                    }
                }
            }
        }
        unpacker.finish()?;
        refs.push(ObjectRef {
            id: *meta_id,
            size: meta_data.len() as u64,
            csize: meta_cdata.len() as u64,
            part: false,
        });
        Ok(ArchiveRefs { refs })
    }
}

impl RefCounts {
    /// Builds the counts from every archive in `manifest` (borg's chunks cache resync).
    pub fn build(
        repository: &mut dyn Repository,
        key: &Key,
        manifest: &Manifest,
    ) -> ReadResult<RefCounts> {
        let mut counts = RefCounts::default();
        for entry in manifest.archives.values() {
            let refs = ArchiveRefs::collect(repository, key, &entry.id)?;
            counts.add(&refs);
        }
        Ok(counts)
    }

    /// Adds one reference for each entry of `refs`.
    pub fn add(&mut self, refs: &ArchiveRefs) {
        for r in &refs.refs {
            let e = self.map.entry(r.id).or_default();
            e.refcount += 1;
            e.size = r.size;
            e.csize = r.csize;
        }
    }

    /// Removes one reference to `id`; returns the remaining count, or `None` if `id` was
    /// unknown (borg's "Chunk ID missing from chunks index").
    pub fn decref(&mut self, id: &ObjectId) -> Option<u64> {
        let e = self.map.get_mut(id)?;
        e.refcount = e.refcount.saturating_sub(1);
        let left = e.refcount;
        if left == 0 {
            self.map.remove(id);
        }
        Some(left)
    }

    /// The entry of `id`.
    pub fn get(&self, id: &ObjectId) -> Option<ChunkRef> {
        self.map.get(id).copied()
    }

    /// Number of distinct objects referenced.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is referenced.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// borg's `ChunkIndex.summarize()`: `(total_size, total_csize, unique_size, unique_csize,
    /// total_unique_chunks, total_chunks)`.
    pub fn summarize(&self) -> (u64, u64, u64, u64, u64, u64) {
        let mut s = (0, 0, 0, 0, 0, 0);
        for e in self.map.values() {
            s.0 += e.size * e.refcount;
            s.1 += e.csize * e.refcount;
            s.2 += e.size;
            s.3 += e.csize;
            s.4 += 1;
            s.5 += e.refcount;
        }
        s
    }
}
