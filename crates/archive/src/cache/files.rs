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

use std::collections::HashMap;

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

/// The in-memory files cache.
#[derive(Clone, Debug, Default)]
pub struct FilesCache {
    entries: HashMap<ObjectId, FileCacheEntry>,
    newest_cmtime: Option<i64>,
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

    /// The entry of `path_hash`.
    pub fn get(&self, path_hash: &ObjectId) -> Option<&FileCacheEntry> {
        self.entries.get(path_hash)
    }

    /// Parses the file content, ageing every entry by one (borg's `_read_files`).
    /// `Err` carries what borg reports as "The files cache seems invalid".
    pub fn parse(data: &[u8]) -> Result<FilesCache, String> {
        // sized up front: growing a table of a million entries by doubling held the old and
        // the new table at once (~90 bytes per file on top of the peak); an entry with one
        // chunk packs to about 80 bytes
        let mut entries = HashMap::with_capacity(data.len() / PACKED_ENTRY_BYTES);
        let mut rest = data;
        while !rest.is_empty() {
            let v = rmpv::decode::read_value(&mut rest).map_err(|e| e.to_string())?;
            let bad = || "unexpected files cache entry".to_string();
            let pair = v.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
            let path_hash = id32(&pair[0]).ok_or_else(bad)?;
            let e = pair[1]
                .as_array()
                .filter(|a| a.len() == 5)
                .ok_or_else(bad)?;
            let chunk_ids = e[4]
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(id32)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(bad)?;
            let entry = FileCacheEntry {
                age: e[0].as_u64().ok_or_else(bad)? + 1,
                inode: e[1].as_u64().ok_or_else(bad)?,
                size: e[2].as_u64().ok_or_else(bad)?,
                cmtime: bigint(&e[3]).ok_or_else(bad)?,
                chunk_ids,
            };
            entries.insert(path_hash, entry);
        }
        Ok(FilesCache {
            entries,
            newest_cmtime: None,
        })
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
    /// files the content is ~100 MB, which the save no longer holds in memory beside the
    /// entries themselves (the unchanged re-run's peak RSS). Returns the bytes written.
    pub fn write_to(&self, ttl: u64, out: &mut dyn std::io::Write) -> std::io::Result<u64> {
        let newest = self.newest_cmtime.unwrap_or(i64::MAX);
        let mut packed = Vec::new();
        let mut written = 0u64;
        for (path_hash, e) in &self.entries {
            let keep = (e.age == 0 && e.cmtime < newest) || (e.age > 0 && e.age < ttl);
            if !keep {
                continue;
            }
            let entry = Value::Array(vec![
                Value::from(e.age),
                Value::from(e.inode),
                Value::from(e.size),
                Value::from(e.cmtime),
                Value::Array(
                    e.chunk_ids
                        .iter()
                        .map(|id| Value::Binary(id.to_vec()))
                        .collect(),
                ),
            ]);
            packed.clear();
            msgpack::pack_into(
                &Value::Array(vec![Value::Binary(path_hash.to_vec()), entry]),
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
        let Some(e) = self.entries.get_mut(path_hash) else {
            return Lookup::Unknown;
        };
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
        Lookup::Unchanged(e.chunk_ids.clone())
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
        self.entries.insert(
            path_hash,
            FileCacheEntry {
                age: 0,
                inode: st.inode,
                size: st.size,
                cmtime,
                chunk_ids: ids,
            },
        );
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
