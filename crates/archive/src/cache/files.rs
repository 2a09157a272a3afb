//! The files cache (borg 1.2 `cache.py` `FileCacheEntry`, `_read_files`, `commit`,
//! `file_known_and_unchanged`, `memorize_file`; internals "The files cache").
//!
//! On disk (`files`, or `files.<BORG_FILES_CACHE_SUFFIX>`) it is a stream of msgpack
//! arrays `[path_hash, [age, inode, size, cmtime, [chunk id, ...]]]`, where `path_hash` is
//! the key's ID hash of the absolute path and `cmtime` the ctime or mtime in nanoseconds
//! (an int, or little-endian signed bytes when wider than 63 bits: `int_to_bigint`).
//! Loading ages every entry by one backup; saving keeps the entries seen in this backup
//! whose cmtime is older than the newest cmtime seen (a file modified within the
//! timestamp granularity of the backup must be read next time) plus older entries
//! younger than `BORG_FILES_CACHE_TTL`.

use hashbrown::HashTable;
use rborg_crypto::msgpack;
use rborg_repository::ObjectId;
use rmpv::Value;

/// One files cache entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileCacheEntry {
    /// Backups since the file was last seen (0: seen in this one).
    pub age: u64,
    /// Inode number.
    pub inode: u64,
    /// File size.
    pub size: u64,
    /// ctime or mtime (per `--files-cache`) in nanoseconds.
    pub cmtime: i64,
    /// The file's content chunks.
    pub chunk_ids: Vec<ObjectId>,
}

/// The `stat` fields the files cache compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    /// `st_ino`.
    pub inode: u64,
    /// `st_size`.
    pub size: u64,
    /// `st_ctime_ns`.
    pub ctime_ns: i64,
    /// `st_mtime_ns`.
    pub mtime_ns: i64,
}

/// The result of a files cache lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// No entry (or the mode disables lookups): status `A`.
    Unknown,
    /// An entry exists but the file changed: status `M`.
    Changed,
    /// Unchanged: these are its chunks (status `U` if they all still exist).
    Unchanged(Vec<ObjectId>),
}

/// The in-memory files cache, laid out for a million files: one array of fixed-size entries
/// (insertion order, which is also the order they are saved in, as borg's dict), one array
/// of every entry's chunk IDs back to back, and a hash table of 4-byte positions keyed by
/// the path hash. About 80 bytes per file plus 32 per chunk, where a `HashMap` of entries
/// that each own a `Vec` of chunk IDs took ~250 (its table's slack, an allocation per
/// entry, and a transient second table while it grew).
#[derive(Clone, Default)]
pub struct FilesCache {
    entries: Vec<Entry>,
    chunk_ids: Vec<ObjectId>,
    positions: HashTable<u32>,
    newest_cmtime: Option<i64>,
}

impl std::fmt::Debug for FilesCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilesCache")
            .field("entries", &self.entries.len())
            .field("chunk_ids", &self.chunk_ids.len())
            .field("newest_cmtime", &self.newest_cmtime)
            .finish()
    }
}

/// A [`FileCacheEntry`] in the compact table: its chunk IDs are
/// `chunk_ids[first_chunk..first_chunk + chunk_count]` of the cache.
#[derive(Clone, Copy, Debug)]
struct Entry {
    path_hash: ObjectId,
    age: u32,
    chunk_count: u32,
    first_chunk: u64,
    inode: u64,
    size: u64,
    cmtime: i64,
}

/// The table's hash of a path hash: its first 8 bytes. Path hashes are keyed MACs of the
/// path (`key.id_hash`), uniformly distributed and unpredictable without the key.
fn table_hash(path_hash: &ObjectId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&path_hash[..8]);
    u64::from_le_bytes(b)
}

/// About the packed size of a files cache entry for a file of one chunk (path hash, age,
/// inode, size, cmtime and one chunk ID, with their msgpack headers).
const PACKED_ENTRY_BYTES: usize = 80;

fn bigint(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => i.as_i64(),
        Value::Binary(b) if !b.is_empty() && b.len() <= 8 => {
            let mut buf = if b[b.len() - 1] & 0x80 != 0 {
                [0xff; 8]
            } else {
                [0; 8]
            };
            buf[..b.len()].copy_from_slice(b);
            Some(i64::from_le_bytes(buf))
        }
        _ => None,
    }
}

fn id32(v: &Value) -> Option<ObjectId> {
    msgpack::as_raw(v)?.try_into().ok()
}

impl FilesCache {
    /// An empty files cache.
    pub fn new() -> FilesCache {
        FilesCache::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, path_hash: &ObjectId) -> Option<usize> {
        let entries = &self.entries;
        self.positions
            .find(table_hash(path_hash), |&i| {
                entries[i as usize].path_hash == *path_hash
            })
            .map(|&i| i as usize)
    }

    fn chunks_of(&self, e: &Entry) -> &[ObjectId] {
        let first = e.first_chunk as usize;
        &self.chunk_ids[first..first + e.chunk_count as usize]
    }

    /// The entry of `path_hash`.
    pub fn get(&self, path_hash: &ObjectId) -> Option<FileCacheEntry> {
        let e = &self.entries[self.position(path_hash)?];
        Some(FileCacheEntry {
            age: e.age.into(),
            inode: e.inode,
            size: e.size,
            cmtime: e.cmtime,
            chunk_ids: self.chunks_of(e).to_vec(),
        })
    }

    /// Inserts or replaces the entry of `path_hash`. A replaced entry's chunk IDs are
    /// overwritten in place when the new list is no longer, else appended.
    fn put(&mut self, path_hash: ObjectId, mut entry: Entry, ids: &[ObjectId]) {
        let count = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        let ids = &ids[..count as usize];
        entry.chunk_count = count;
        match self.position(&path_hash) {
            Some(at) => {
                let old = self.entries[at];
                if count <= old.chunk_count {
                    let first = old.first_chunk as usize;
                    self.chunk_ids[first..first + ids.len()].copy_from_slice(ids);
                    entry.first_chunk = old.first_chunk;
                } else {
                    entry.first_chunk = self.chunk_ids.len() as u64;
                    self.chunk_ids.extend_from_slice(ids);
                }
                self.entries[at] = entry;
            }
            None => {
                // positions are u32: past 4 billion files the cache stops growing (the
                // files are still backed up, only read again next time)
                let Ok(at) = u32::try_from(self.entries.len()) else {
                    return;
                };
                entry.first_chunk = self.chunk_ids.len() as u64;
                self.chunk_ids.extend_from_slice(ids);
                self.entries.push(entry);
                let entries = &self.entries;
                self.positions
                    .insert_unique(table_hash(&path_hash), at, |&i| {
                        table_hash(&entries[i as usize].path_hash)
                    });
            }
        }
    }

    /// Parses the file content, ageing every entry by one (borg's `_read_files`).
    /// `Err` carries what borg reports as "The files cache seems invalid".
    pub fn parse(data: &[u8]) -> Result<FilesCache, String> {
        FilesCache::parse_from(&mut &data[..], data.len() as u64)
    }

    /// [`FilesCache::parse`] from a reader of `len` bytes (a size hint), entry by entry.
    pub fn parse_from<R: std::io::BufRead>(input: &mut R, len: u64) -> Result<FilesCache, String> {
        // sized up front (an entry with one chunk packs to about 80 bytes): growing the
        // tables by doubling would hold the old and the new one at once
        let expected = usize::try_from(len).unwrap_or(0) / PACKED_ENTRY_BYTES;
        let mut fc = FilesCache {
            entries: Vec::with_capacity(expected),
            chunk_ids: Vec::with_capacity(expected),
            positions: HashTable::with_capacity(expected),
            newest_cmtime: None,
        };
        let mut ids = Vec::new();
        while !input.fill_buf().map_err(|e| e.to_string())?.is_empty() {
            let v = rmpv::decode::read_value(input).map_err(|e| e.to_string())?;
            let bad = || "unexpected files cache entry".to_string();
            let pair = v.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
            let path_hash = id32(&pair[0]).ok_or_else(bad)?;
            let e = pair[1]
                .as_array()
                .filter(|a| a.len() == 5)
                .ok_or_else(bad)?;
            ids.clear();
            for id in e[4].as_array().ok_or_else(bad)? {
                ids.push(id32(id).ok_or_else(bad)?);
            }
            let age = e[0].as_u64().ok_or_else(bad)?.saturating_add(1);
            let entry = Entry {
                path_hash,
                age: u32::try_from(age).unwrap_or(u32::MAX),
                chunk_count: 0,
                first_chunk: 0,
                inode: e[1].as_u64().ok_or_else(bad)?,
                size: e[2].as_u64().ok_or_else(bad)?,
                cmtime: bigint(&e[3]).ok_or_else(bad)?,
            };
            fc.put(path_hash, entry, &ids);
        }
        Ok(fc)
    }

    /// The file content to save (borg's `commit`): entries of this backup older than the
    /// newest cmtime seen, and older entries with `age < ttl`. See [`FilesCache::write_to`].
    pub fn to_bytes(&self, ttl: u64) -> Vec<u8> {
        let mut out = Vec::new();
        // writing into a Vec cannot fail
        let _ = self.write_to(ttl, &mut out);
        out
    }

    /// Writes what [`FilesCache::to_bytes`] returns to `out`, entry by entry: with a million
    /// files the content is ~100 MB, which the save does not hold in memory beside the
    /// entries themselves (the unchanged re-run's peak RSS). Returns the bytes written.
    pub fn write_to(&self, ttl: u64, out: &mut dyn std::io::Write) -> std::io::Result<u64> {
        let newest = self.newest_cmtime.unwrap_or(i64::MAX);
        let mut packed = Vec::new();
        let mut written = 0u64;
        for e in &self.entries {
            let age = u64::from(e.age);
            let keep = (age == 0 && e.cmtime < newest) || (age > 0 && age < ttl);
            if !keep {
                continue;
            }
            let entry = Value::Array(vec![
                Value::from(age),
                Value::from(e.inode),
                Value::from(e.size),
                Value::from(e.cmtime),
                Value::Array(
                    self.chunks_of(e)
                        .iter()
                        .map(|id| Value::Binary(id.to_vec()))
                        .collect(),
                ),
            ]);
            packed.clear();
            msgpack::pack_into(
                &Value::Array(vec![Value::Binary(e.path_hash.to_vec()), entry]),
                &mut packed,
            );
            out.write_all(&packed)?;
            written += packed.len() as u64;
        }
        Ok(written)
    }

    /// borg's `file_known_and_unchanged` for a regular file. `mode` holds borg's mode
    /// letters (`c`time, `m`time, `s`ize, `i`node, `r`echunk, `d`isabled). On a hit the
    /// entry is marked as seen in this backup and its inode updated.
    pub fn lookup(&mut self, path_hash: &ObjectId, st: &FileStat, mode: &str) -> Lookup {
        if mode.contains('d') || mode.contains('r') {
            return Lookup::Unknown;
        }
        let Some(at) = self.position(path_hash) else {
            return Lookup::Unknown;
        };
        let e = &mut self.entries[at];
        if mode.contains('s') && e.size != st.size {
            return Lookup::Changed;
        }
        if mode.contains('i') && e.inode != st.inode {
            return Lookup::Changed;
        }
        if mode.contains('c') {
            if e.cmtime != st.ctime_ns {
                return Lookup::Changed;
            }
        } else if mode.contains('m') && e.cmtime != st.mtime_ns {
            return Lookup::Changed;
        }
        e.inode = st.inode;
        e.age = 0;
        let e = *e;
        Lookup::Unchanged(self.chunks_of(&e).to_vec())
    }

    /// borg's `memorize_file`: remember a file read in this backup (not in `d` mode).
    pub fn memorize(&mut self, path_hash: ObjectId, st: &FileStat, mode: &str, ids: Vec<ObjectId>) {
        if mode.contains('d') {
            return;
        }
        let cmtime = if mode.contains('c') {
            st.ctime_ns
        } else if mode.contains('m') {
            st.mtime_ns
        } else {
            // borg's modes always contain c or m unless disabled; keep ctime as it does
            st.ctime_ns
        };
        let entry = Entry {
            path_hash,
            age: 0,
            chunk_count: 0,
            first_chunk: 0,
            inode: st.inode,
            size: st.size,
            cmtime,
        };
        self.put(path_hash, entry, &ids);
        self.newest_cmtime = Some(self.newest_cmtime.unwrap_or(0).max(cmtime));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(ctime: i64) -> FileStat {
        FileStat {
            inode: 7,
            size: 3,
            ctime_ns: ctime,
            mtime_ns: ctime,
        }
    }

    #[test]
    fn roundtrip_ages_and_expires() {
        let mut fc = FilesCache::new();
        fc.memorize([1; 32], &st(10), "cis", vec![[9; 32]]);
        fc.memorize([2; 32], &st(20), "cis", vec![]);
        // the newest file (cmtime 20) is not kept: it might still change within granularity
        let loaded = FilesCache::parse(&fc.to_bytes(20)).unwrap();
        assert_eq!(loaded.len(), 1);
        let e = loaded.get(&[1; 32]).unwrap();
        assert_eq!(
            (e.age, e.cmtime, e.chunk_ids.clone()),
            (1, 10, vec![[9; 32]])
        );
        // not seen again: expires once age reaches the ttl
        let again = FilesCache::parse(&loaded.to_bytes(2)).unwrap();
        assert_eq!(again.get(&[1; 32]).unwrap().age, 2);
        assert!(FilesCache::parse(&again.to_bytes(2)).unwrap().is_empty());
    }

    #[test]
    fn replaced_entries_keep_their_place_and_their_own_chunks() {
        let mut fc = FilesCache::new();
        for i in 0..1000u32 {
            let mut path = [0u8; 32];
            path[..4].copy_from_slice(&i.to_le_bytes());
            let ids = (0..i % 3).map(|n| [n as u8 + 1; 32]).collect();
            fc.memorize(path, &st(5), "cis", ids);
        }
        // longer (appended), shorter (in place) and equal lists replace entries 7, 8, 9
        let path = |i: u32| {
            let mut p = [0u8; 32];
            p[..4].copy_from_slice(&i.to_le_bytes());
            p
        };
        fc.memorize(path(7), &st(6), "cis", vec![[7; 32]; 4]);
        fc.memorize(path(8), &st(6), "cis", vec![]);
        fc.memorize(path(9), &st(6), "cis", vec![[9; 32]]);
        assert_eq!(fc.len(), 1000);
        assert_eq!(fc.get(&path(7)).unwrap().chunk_ids, vec![[7; 32]; 4]);
        assert!(fc.get(&path(8)).unwrap().chunk_ids.is_empty());
        assert_eq!(fc.get(&path(9)).unwrap().chunk_ids, vec![[9; 32]]);
        assert_eq!(fc.get(&path(10)).unwrap().chunk_ids, vec![[1; 32]]);
        assert_eq!(fc.get(&path(11)).unwrap().chunk_ids, vec![[1; 32], [2; 32]]);
        // saved in insertion order (as borg's dict), every entry older than the newest cmtime
        let bytes = fc.to_bytes(20);
        let loaded = FilesCache::parse(&bytes).unwrap();
        assert_eq!(loaded.len(), 997);
        assert_eq!(loaded.entries[7].path_hash, path(10));
        assert_eq!(loaded.to_bytes(20).len(), bytes.len());
        assert_eq!(loaded.get(&path(11)).unwrap().age, 1);
    }

    #[test]
    fn lookup_modes() {
        let mut fc = FilesCache::new();
        fc.memorize([1; 32], &st(10), "cis", vec![[9; 32]]);
        assert_eq!(
            fc.lookup(&[1; 32], &st(10), "cis"),
            Lookup::Unchanged(vec![[9; 32]])
        );
        assert_eq!(fc.lookup(&[1; 32], &st(11), "cis"), Lookup::Changed);
        assert_eq!(
            fc.lookup(&[1; 32], &st(11), "s"),
            Lookup::Unchanged(vec![[9; 32]])
        );
        assert_eq!(fc.lookup(&[1; 32], &st(10), "cisr"), Lookup::Unknown);
        assert_eq!(fc.lookup(&[2; 32], &st(10), "cis"), Lookup::Unknown);
        assert_eq!(bigint(&Value::Binary(vec![0xff])), Some(-1));
    }
}
