//! borg's on-disk hash table (`_hashindex.c` / `hashindex.pyx`, borg 1.2.4).
//!
//! borg keeps the repository index (`index.N`, an [`NsIndex`]) and the chunks cache
//! (`chunks`, a [`ChunkIndex`]) as one flat open-addressing hash table that is written
//! to disk verbatim.  The format (see `internals/data-structures.rst`, "Index, hints and
//! integrity" and `_hashindex.c`) is:
//!
//! ```text
//! HashHeader (18 bytes, packed, little endian):
//!     magic       8 bytes  "BORG_IDX"
//!     num_entries i32
//!     num_buckets i32
//!     key_size    i8       (always 32)
//!     value_size  i8       (8 for NSIndex, 12 for ChunkIndex)
//! buckets: num_buckets * (key_size + value_size) bytes
//! ```
//!
//! Each bucket is `key || value`.  The first little-endian `u32` of the value doubles
//! as the bucket state: `0xffffffff` = empty (never used), `0xfffffffe` = deleted
//! (tombstone); real values must be `<= MAX_VALUE` (`0xfffffbff`).  A key's home bucket
//! is `u32_le(key[0..4]) % num_buckets`, collisions are resolved by linear probing.
//! The table grows/shrinks through borg's fixed `hash_sizes` table when the load leaves
//! `[0.25, 0.75]`, and is rebuilt in place when fewer than 7% of buckets are empty.
//!
//! This module reproduces all of that exactly (including the "move found entry into
//! the first tombstone" optimisation borg performs on every lookup made by a write),
//! so that for the same sequence of operations the serialized table is byte-identical
//! to the one borg writes, and borg can read our files without rebuilding them.
//!
//! ```
//! use rborg_repository::hashindex::{NsEntry, NsIndex};
//!
//! let mut index = NsIndex::new();
//! index.insert([7u8; 32], NsEntry { segment: 3, offset: 41 });
//! let bytes = index.to_bytes();
//! let back = NsIndex::from_bytes(&bytes).unwrap();
//! assert_eq!(back.get(&[7u8; 32]), Some(NsEntry { segment: 3, offset: 41 }));
//! assert_eq!(back.len(), 1);
//! ```

use std::io::{Read, Write};

/// A borg object id (the 32 byte key of every hash index).
pub type ObjectId = [u8; 32];

/// A [`Hasher`](std::hash::Hasher) for [`ObjectId`] keys that takes their first eight bytes as
/// the hash, as borg's own tables do with the first four (`_hashindex.c`).
///
/// Object IDs are keyed MACs of the plaintext (or, without encryption, its SHA-256), so their
/// bytes are already uniform: hashing them again with SipHash, the standard maps' default, cost
/// ~4% of an archive check. Like borg's tables, such a map is only as collision-resistant as
/// the IDs are unpredictable. Meant for `ObjectId` keys only (any other key still works, but
/// may hash poorly).
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(8) ^ u64::from_le_bytes(first);
    }

    fn write_usize(&mut self, n: usize) {
        // the length an array hashes first: the same for every ObjectId
        self.0 = self.0.rotate_left(8) ^ n as u64;
    }
}

/// A `HashMap` keyed by object ID with [`IdHasher`].
pub type IdMap<V> = std::collections::HashMap<ObjectId, V, std::hash::BuildHasherDefault<IdHasher>>;
/// A `HashSet` of object IDs with [`IdHasher`].
pub type IdSet = std::collections::HashSet<ObjectId, std::hash::BuildHasherDefault<IdHasher>>;

/// Magic bytes at the start of every hash index file.
pub const MAGIC: &[u8; 8] = b"BORG_IDX";
/// Size of the packed `HashHeader` struct.
pub const HEADER_SIZE: usize = 18;
/// Key size of all hash indexes borg 1.2 uses for repositories and caches.
pub const KEY_SIZE: usize = 32;
/// Largest value allowed in the first 32 bits of a value (`_MAX_VALUE` in borg,
/// `cache_sync/unpack.h`); everything above is reserved for in-band signalling.
pub const MAX_VALUE: u32 = 0xffff_fbff;

const EMPTY: u32 = 0xffff_ffff;
const DELETED: u32 = 0xffff_fffe;

const HASH_MIN_LOAD: f64 = 0.25;
const HASH_MAX_LOAD: f64 = 0.75;
const HASH_MAX_EFF_LOAD: f64 = 0.93;

/// borg's table of bucket counts (`hash_sizes` in `_hashindex.c`).
const HASH_SIZES: [i32; 58] = [
    1031, 2053, 4099, 8209, 16411, 32771, 65537, 131101, 262147, 445649, 757607, 1287917, 2189459,
    3065243, 4291319, 6007867, 8410991, 11775359, 16485527, 23079703, 27695653, 33234787, 39881729,
    47858071, 57429683, 68915617, 82698751, 99238507, 119086189, 144378011, 157223263, 173476439,
    190253911, 209915011, 230493629, 253169431, 278728861, 306647623, 337318939, 370742809,
    408229973, 449387209, 493428073, 543105119, 596976533, 657794869, 722676499, 795815791,
    874066969, 962279771, 1057701643, 1164002657, 1280003147, 1407800297, 1548442699, 1703765389,
    1873768367, 2062383853,
];

/// Errors while decoding a hash index file.
#[derive(Debug, thiserror::Error)]
pub enum HashIndexError {
    /// Fewer than 18 bytes: the `HashHeader` is incomplete.
    #[error("Could not read header (expected {HEADER_SIZE}, but read {0} bytes)")]
    TruncatedHeader(usize),
    /// The file does not start with `BORG_IDX`.
    #[error("Unknown MAGIC in header")]
    BadMagic,
    /// The header's key/value sizes do not match the requested index type.
    #[error("unexpected key/value size {key_size}/{value_size} (expected {KEY_SIZE}/{expected_value_size})")]
    WrongSizes {
        /// key size found in the header
        key_size: i8,
        /// value size found in the header
        value_size: i8,
        /// value size of the requested index type
        expected_value_size: usize,
    },
    /// File length does not match `18 + num_buckets * bucket_size`.
    #[error("Incorrect file length (expected {expected}, got {got})")]
    BadLength {
        /// length implied by the header
        expected: u64,
        /// actual length
        got: u64,
    },
    /// The header or bucket contents are inconsistent (negative counts, wrong
    /// `num_entries`, reserved values, no empty bucket, ...).
    #[error("corrupt hash index: {0}")]
    Corrupt(String),
    /// A value whose first field exceeds [`MAX_VALUE`] was passed to an insert.
    #[error("value {0:#x} exceeds MAX_VALUE (reserved for in-band signalling)")]
    ValueTooLarge(u32),
    /// I/O error while reading or writing.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A fixed-size value stored in a [`HashIndex`] bucket.
///
/// The first four bytes of the encoding are the little-endian `u32` returned by
/// [`BucketValue::tag`]; it must be `<= MAX_VALUE` because larger values mark
/// empty/deleted buckets.
pub trait BucketValue: Copy {
    /// Encoded size in bytes (`value_size` in the header).
    const SIZE: usize;
    /// The first 32-bit field (segment for [`NsEntry`], refcount for [`ChunkEntry`]).
    fn tag(&self) -> u32;
    /// Encode into exactly `SIZE` bytes.
    fn encode(&self, out: &mut [u8]);
    /// Decode from exactly `SIZE` bytes.
    fn decode(bytes: &[u8]) -> Self;
}

#[inline]
fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Value of borg 1.2's `NSIndex` (`hashindex.pyx`, `value_size = 8`): where the
/// newest PUT of an object lives: `(segment, offset)` as two little-endian `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NsEntry {
    /// Segment number (file name under `data/`).
    pub segment: u32,
    /// Byte offset of the PUT entry inside the segment file.
    pub offset: u32,
}

impl BucketValue for NsEntry {
    const SIZE: usize = 8;
    fn tag(&self) -> u32 {
        self.segment
    }
    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.segment.to_le_bytes());
        out[4..8].copy_from_slice(&self.offset.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        NsEntry {
            segment: le32(b, 0),
            offset: le32(b, 4),
        }
    }
}

/// Value of borg 1.2's `ChunkIndex` (`hashindex.pyx`, `value_size = 12`) used by the
/// chunks cache: `(refcount, size, csize)` as three little-endian `u32`.
/// A refcount of [`MAX_VALUE`] is "infinite" (borg never changes it any more).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkEntry {
    /// Number of references to the chunk.
    pub refcount: u32,
    /// Uncompressed size.
    pub size: u32,
    /// Compressed (stored) size.
    pub csize: u32,
}

impl BucketValue for ChunkEntry {
    const SIZE: usize = 12;
    fn tag(&self) -> u32 {
        self.refcount
    }
    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.refcount.to_le_bytes());
        out[4..8].copy_from_slice(&self.size.to_le_bytes());
        out[8..12].copy_from_slice(&self.csize.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        ChunkEntry {
            refcount: le32(b, 0),
            size: le32(b, 4),
            csize: le32(b, 8),
        }
    }
}

/// The repository index (`index.N`): object id -> (segment, offset).
pub type NsIndex = HashIndex<NsEntry>;
/// The chunks cache index (`cache/chunks`): object id -> (refcount, size, csize).
pub type ChunkIndex = HashIndex<ChunkEntry>;

fn lower_limit(num_buckets: usize) -> usize {
    if num_buckets <= HASH_SIZES[0] as usize {
        0
    } else {
        (num_buckets as f64 * HASH_MIN_LOAD) as usize
    }
}

fn upper_limit(num_buckets: usize) -> usize {
    if num_buckets >= HASH_SIZES[HASH_SIZES.len() - 1] as usize {
        num_buckets
    } else {
        (num_buckets as f64 * HASH_MAX_LOAD) as usize
    }
}

fn min_empty(num_buckets: usize) -> usize {
    1 + (num_buckets as f64 * (1.0 - HASH_MAX_EFF_LOAD)) as usize
}

/// Index of the smallest `HASH_SIZES` entry `>= size` (may be `len()`).
fn size_idx(size: usize) -> usize {
    HASH_SIZES
        .iter()
        .position(|&s| s as usize >= size)
        .unwrap_or(HASH_SIZES.len())
}

fn fit_size(current: usize) -> usize {
    let i = size_idx(current).min(HASH_SIZES.len() - 1);
    HASH_SIZES[i] as usize
}

fn grow_size(current: usize) -> usize {
    let i = (size_idx(current) + 1).min(HASH_SIZES.len() - 1);
    HASH_SIZES[i] as usize
}

fn shrink_size(current: usize) -> usize {
    match size_idx(current).checked_sub(1) {
        Some(i) => HASH_SIZES[i.min(HASH_SIZES.len() - 1)] as usize,
        None => HASH_SIZES[0] as usize,
    }
}

/// borg's open-addressing hash table with 32 byte keys and `V` values, stored as
/// the exact byte image borg writes to disk.
#[derive(Clone)]
pub struct HashIndex<V: BucketValue> {
    buckets: Vec<u8>,
    num_entries: usize,
    num_buckets: usize,
    num_empty: usize,
    lower_limit: usize,
    upper_limit: usize,
    min_empty: usize,
    _v: std::marker::PhantomData<V>,
}

impl<V: BucketValue> std::fmt::Debug for HashIndex<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashIndex")
            .field("num_entries", &self.num_entries)
            .field("num_buckets", &self.num_buckets)
            .field("value_size", &V::SIZE)
            .finish()
    }
}

impl<V: BucketValue> Default for HashIndex<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: BucketValue> PartialEq for HashIndex<V>
where
    V: PartialEq,
{
    /// Two indexes are equal if they map the same keys to the same values
    /// (bucket layout is ignored).
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(&k) == Some(v))
    }
}

impl<V: BucketValue> HashIndex<V> {
    const BUCKET: usize = KEY_SIZE + V::SIZE;

    /// An empty table with borg's minimum size (1031 buckets), like `NSIndex()`.
    pub fn new() -> Self {
        Self::with_buckets(fit_size(0))
    }

    /// An empty table sized so that `usable` entries fit without growing, like
    /// borg's `NSIndex(usable=n)` (`capacity = int(usable / 0.75)`).
    pub fn with_usable(usable: usize) -> Self {
        Self::with_buckets(fit_size((usable as f64 / HASH_MAX_LOAD) as usize))
    }

    /// `hashindex_init`: all buckets zeroed, then the first value word set to EMPTY.
    fn with_buckets(num_buckets: usize) -> Self {
        let mut buckets = vec![0u8; num_buckets * Self::BUCKET];
        for b in buckets.chunks_exact_mut(Self::BUCKET) {
            b[KEY_SIZE..KEY_SIZE + 4].copy_from_slice(&EMPTY.to_le_bytes());
        }
        HashIndex {
            buckets,
            num_entries: 0,
            num_buckets,
            num_empty: num_buckets,
            lower_limit: lower_limit(num_buckets),
            upper_limit: upper_limit(num_buckets),
            min_empty: min_empty(num_buckets),
            _v: std::marker::PhantomData,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.num_entries
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.num_entries == 0
    }

    /// Number of buckets in the table (`num_buckets` in the header).
    pub fn num_buckets(&self) -> usize {
        self.num_buckets
    }

    /// Size of the serialized table in bytes (borg's `size()`: header + buckets).
    pub fn size(&self) -> usize {
        HEADER_SIZE + self.buckets.len()
    }

    #[inline]
    fn tag_at(&self, idx: usize) -> u32 {
        le32(&self.buckets, idx * Self::BUCKET + KEY_SIZE)
    }

    #[inline]
    fn set_tag(&mut self, idx: usize, tag: u32) {
        let at = idx * Self::BUCKET + KEY_SIZE;
        self.buckets[at..at + 4].copy_from_slice(&tag.to_le_bytes());
    }

    #[inline]
    fn key_at(&self, idx: usize) -> &[u8] {
        let at = idx * Self::BUCKET;
        &self.buckets[at..at + KEY_SIZE]
    }

    #[inline]
    fn value_at(&self, idx: usize) -> V {
        let at = idx * Self::BUCKET + KEY_SIZE;
        V::decode(&self.buckets[at..at + V::SIZE])
    }

    #[inline]
    fn home(&self, key: &ObjectId) -> usize {
        (u32::from_le_bytes([key[0], key[1], key[2], key[3]]) as usize) % self.num_buckets
    }

    /// Read-only probe: index of the bucket holding `key`.
    fn find(&self, key: &ObjectId) -> Option<usize> {
        if self.num_buckets == 0 {
            return None;
        }
        let start = self.home(key);
        let mut idx = start;
        loop {
            let tag = self.tag_at(idx);
            if tag == EMPTY {
                return None;
            }
            if tag != DELETED && self.key_at(idx) == key {
                return Some(idx);
            }
            idx += 1;
            if idx >= self.num_buckets {
                idx = 0;
            }
            if idx == start {
                return None;
            }
        }
    }

    /// `hashindex_lookup`: like [`Self::find`], but moves a found entry into the first
    /// tombstone passed on the way (borg does this on every lookup).  On a miss,
    /// returns `Err(slot)` with the first deleted-or-empty bucket for an insert.
    fn lookup(&mut self, key: &ObjectId) -> Result<usize, usize> {
        let start = self.home(key);
        let mut didx: Option<usize> = None;
        let mut idx = start;
        loop {
            let tag = self.tag_at(idx);
            if tag == EMPTY {
                break;
            }
            if tag == DELETED {
                if didx.is_none() {
                    didx = Some(idx);
                }
            } else if self.key_at(idx) == key {
                if let Some(d) = didx {
                    let b = Self::BUCKET;
                    self.buckets.copy_within(idx * b..(idx + 1) * b, d * b);
                    self.set_tag(idx, DELETED);
                    return Ok(d);
                }
                return Ok(idx);
            }
            idx += 1;
            if idx >= self.num_buckets {
                idx = 0;
            }
            if idx == start {
                // Invariants (min_empty) make this unreachable for tables we built or
                // validated; fall back to the first tombstone.
                break;
            }
        }
        Err(didx.unwrap_or(idx))
    }

    /// Look up `key` without modifying the table.
    pub fn get(&self, key: &ObjectId) -> Option<V> {
        self.find(key).map(|i| self.value_at(i))
    }

    /// Look up `key` exactly like borg's `index[key]`, which moves the entry closer to
    /// its home bucket when it sits behind a tombstone.  Use this instead of
    /// [`Self::get`] when the on-disk layout has to match borg's for the same
    /// sequence of operations.
    pub fn get_borg(&mut self, key: &ObjectId) -> Option<V> {
        if self.num_buckets == 0 {
            return None;
        }
        self.lookup(key).ok().map(|i| self.value_at(i))
    }

    /// True if `key` is present.
    pub fn contains_key(&self, key: &ObjectId) -> bool {
        self.find(key).is_some()
    }

    /// Insert or overwrite; returns the previous value.
    ///
    /// # Panics
    /// If `value.tag() > MAX_VALUE` (borg raises an `AssertionError` there too); use
    /// [`Self::try_insert`] to get an error instead.
    pub fn insert(&mut self, key: ObjectId, value: V) -> Option<V> {
        match self.try_insert(key, value) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    /// `hashindex_set`: insert or overwrite, growing or rebuilding the table exactly
    /// when borg does.
    pub fn try_insert(&mut self, key: ObjectId, value: V) -> Result<Option<V>, HashIndexError> {
        if value.tag() > MAX_VALUE {
            return Err(HashIndexError::ValueTooLarge(value.tag()));
        }
        Ok(self.set(&key, value))
    }

    fn write_bucket(&mut self, idx: usize, key: &ObjectId, value: &V) {
        let at = idx * Self::BUCKET;
        self.buckets[at..at + KEY_SIZE].copy_from_slice(key);
        value.encode(&mut self.buckets[at + KEY_SIZE..at + Self::BUCKET]);
    }

    fn set(&mut self, key: &ObjectId, value: V) -> Option<V> {
        if self.num_empty == 0 {
            // Only compacted tables (or damaged ones loaded with `permit_compact`) get
            // here; borg cannot insert into those at all.  Rebuild to a proper size.
            self.resize(grow_size(self.num_entries));
        }
        match self.lookup(key) {
            Ok(idx) => {
                let old = self.value_at(idx);
                let at = idx * Self::BUCKET + KEY_SIZE;
                value.encode(&mut self.buckets[at..at + V::SIZE]);
                Some(old)
            }
            Err(mut idx) => {
                if self.num_entries > self.upper_limit {
                    self.resize(grow_size(self.num_buckets));
                    idx = match self.lookup(key) {
                        Ok(i) | Err(i) => i,
                    };
                }
                if self.tag_at(idx) == EMPTY {
                    if self.num_empty <= self.min_empty {
                        self.resize(self.num_buckets);
                        idx = match self.lookup(key) {
                            Ok(i) | Err(i) => i,
                        };
                    }
                    self.num_empty -= 1;
                }
                self.write_bucket(idx, key, &value);
                self.num_entries += 1;
                None
            }
        }
    }

    /// `hashindex_resize`: rebuild into `capacity` buckets by re-inserting all entries
    /// in bucket order (this removes all tombstones).
    fn resize(&mut self, capacity: usize) {
        let mut new = Self::with_buckets(fit_size(capacity));
        for idx in 0..self.num_buckets {
            let tag = self.tag_at(idx);
            if tag == EMPTY || tag == DELETED {
                continue;
            }
            let at = idx * Self::BUCKET;
            let mut key = [0u8; KEY_SIZE];
            key.copy_from_slice(&self.buckets[at..at + KEY_SIZE]);
            let value = self.value_at(idx);
            new.set(&key, value);
        }
        // A damaged file can hold one key in several buckets: the rebuild keeps one (the last,
        // like borg's `hashindex_set`), so count what it holds. borg only `assert`s equality
        // here; keeping the loaded count would save an index whose header disagrees with its
        // buckets (found by the `index` fuzz target).
        self.num_entries = new.num_entries;
        self.buckets = new.buckets;
        self.num_buckets = new.num_buckets;
        self.num_empty = self.num_buckets - self.num_entries;
        self.lower_limit = new.lower_limit;
        self.upper_limit = new.upper_limit;
        self.min_empty = new.min_empty;
    }

    /// `hashindex_delete`: remove `key` (leaving a tombstone), shrinking the table
    /// when the load drops below 25%.  Returns the removed value.
    pub fn remove(&mut self, key: &ObjectId) -> Option<V> {
        if self.num_buckets == 0 {
            return None;
        }
        let idx = self.lookup(key).ok()?;
        let old = self.value_at(idx);
        self.set_tag(idx, DELETED);
        self.num_entries -= 1;
        if self.num_entries < self.lower_limit {
            self.resize(shrink_size(self.num_buckets));
        }
        Some(old)
    }

    /// All entries in bucket order (the order borg's `iteritems()` yields).
    pub fn iter(&self) -> impl Iterator<Item = (ObjectId, V)> + '_ {
        self.buckets.chunks_exact(Self::BUCKET).filter_map(|b| {
            let tag = le32(b, KEY_SIZE);
            if tag == EMPTY || tag == DELETED {
                return None;
            }
            let mut key = [0u8; KEY_SIZE];
            key.copy_from_slice(&b[..KEY_SIZE]);
            Some((key, V::decode(&b[KEY_SIZE..])))
        })
    }

    /// The 18 byte `HashHeader` for the current table.
    pub fn header_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut h = [0u8; HEADER_SIZE];
        h[..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&(self.num_entries as i32).to_le_bytes());
        h[12..16].copy_from_slice(&(self.num_buckets as i32).to_le_bytes());
        h[16] = KEY_SIZE as u8;
        h[17] = V::SIZE as u8;
        h
    }

    /// The raw bucket array exactly as written after the header.
    pub fn bucket_bytes(&self) -> &[u8] {
        &self.buckets
    }

    /// Serialize (`hashindex_write`): header followed by the bucket array.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        out.extend_from_slice(&self.header_bytes());
        out.extend_from_slice(&self.buckets);
        out
    }

    /// Write the serialized table to `w` (two writes, no intermediate copy).
    pub fn write_to<W: Write>(&self, mut w: W) -> std::io::Result<()> {
        w.write_all(&self.header_bytes())?;
        w.write_all(&self.buckets)
    }

    /// Parse and validate a header; returns `(num_entries, num_buckets)`.
    pub fn parse_header(header: &[u8]) -> Result<(usize, usize), HashIndexError> {
        Self::parse_header_impl(header, false)
    }

    fn parse_header_impl(
        header: &[u8],
        permit_compact: bool,
    ) -> Result<(usize, usize), HashIndexError> {
        if header.len() < HEADER_SIZE {
            return Err(HashIndexError::TruncatedHeader(header.len()));
        }
        if &header[..8] != MAGIC {
            return Err(HashIndexError::BadMagic);
        }
        let num_entries = i32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        let num_buckets = i32::from_le_bytes([header[12], header[13], header[14], header[15]]);
        let key_size = header[16] as i8;
        let value_size = header[17] as i8;
        if key_size as usize != KEY_SIZE || value_size as usize != V::SIZE {
            return Err(HashIndexError::WrongSizes {
                key_size,
                value_size,
                expected_value_size: V::SIZE,
            });
        }
        let min_buckets = if permit_compact { 0 } else { 1 };
        if num_entries < 0 || num_buckets < min_buckets || num_entries > num_buckets {
            return Err(HashIndexError::Corrupt(format!(
                "num_entries {num_entries}, num_buckets {num_buckets}"
            )));
        }
        Ok((num_entries as usize, num_buckets as usize))
    }

    /// Decode a complete hash index file (`hashindex_read` with `permit_compact=False`).
    pub fn from_bytes(data: &[u8]) -> Result<Self, HashIndexError> {
        let (num_entries, num_buckets) = Self::parse_header(data)?;
        let expected = HEADER_SIZE as u64 + num_buckets as u64 * Self::BUCKET as u64;
        if data.len() as u64 != expected {
            return Err(HashIndexError::BadLength {
                expected,
                got: data.len() as u64,
            });
        }
        Self::from_parts(
            num_entries,
            num_buckets,
            data[HEADER_SIZE..].to_vec(),
            false,
        )
    }

    /// Decode a file that may be compacted (`hashindex_read(permit_compact=True)`, used
    /// by borg for `chunks.archive.d/*.compact`): no load-time rebuild.  Such a table is
    /// meant to be iterated; an insert first rebuilds it to a regular size.
    pub fn from_bytes_compact(data: &[u8]) -> Result<Self, HashIndexError> {
        let (num_entries, num_buckets) = Self::parse_header_impl(data, true)?;
        let expected = HEADER_SIZE as u64 + num_buckets as u64 * Self::BUCKET as u64;
        if data.len() as u64 != expected {
            return Err(HashIndexError::BadLength {
                expected,
                got: data.len() as u64,
            });
        }
        Self::from_parts(num_entries, num_buckets, data[HEADER_SIZE..].to_vec(), true)
    }

    /// `hashindex_compact`: move all entries to the front (keeping their order) and
    /// drop every empty/deleted bucket, so the file is as small as possible (borg's
    /// `ChunkIndex.compact()` before writing `chunks.archive.d/*.compact`).  Returns the
    /// number of bytes saved.
    pub fn compact(&mut self) -> u64 {
        let saved = ((self.num_buckets - self.num_entries) * Self::BUCKET) as u64;
        let b = Self::BUCKET;
        let mut tail = 0usize;
        for idx in 0..self.num_buckets {
            let tag = self.tag_at(idx);
            if tag == EMPTY || tag == DELETED {
                continue;
            }
            if tail != idx {
                self.buckets.copy_within(idx * b..(idx + 1) * b, tail * b);
            }
            tail += 1;
        }
        self.num_buckets = self.num_entries;
        self.buckets.truncate(self.num_buckets * b);
        self.num_empty = 0;
        saved
    }

    /// Read a complete hash index file from `r` (reads the header, then the bucket
    /// array straight into the table's buffer; the buffer grows only as data arrives,
    /// so a lying header cannot force a huge allocation).
    pub fn read_from<R: Read>(mut r: R) -> Result<Self, HashIndexError> {
        let mut header = [0u8; HEADER_SIZE];
        let mut got = 0;
        while got < HEADER_SIZE {
            let n = r.read(&mut header[got..])?;
            if n == 0 {
                return Err(HashIndexError::TruncatedHeader(got));
            }
            got += n;
        }
        let (num_entries, num_buckets) = Self::parse_header(&header)?;
        let want = num_buckets as u64 * Self::BUCKET as u64;
        let mut buckets = Vec::new();
        buckets
            .try_reserve_exact(want.min(1 << 30) as usize)
            .map_err(|e| HashIndexError::Corrupt(format!("cannot allocate {want} bytes: {e}")))?;
        r.take(want + 1).read_to_end(&mut buckets)?;
        if buckets.len() as u64 != want {
            return Err(HashIndexError::BadLength {
                expected: HEADER_SIZE as u64 + want,
                got: HEADER_SIZE as u64 + buckets.len() as u64,
            });
        }
        Self::from_parts(num_entries, num_buckets, buckets, false)
    }

    /// Build a table from an already separated header and bucket array (used by
    /// `index_files`, which hashes the two parts separately while reading).
    pub fn from_header_and_buckets(
        header: &[u8],
        buckets: Vec<u8>,
    ) -> Result<Self, HashIndexError> {
        let (num_entries, num_buckets) = Self::parse_header(header)?;
        let expected = num_buckets as u64 * Self::BUCKET as u64;
        if buckets.len() as u64 != expected {
            return Err(HashIndexError::BadLength {
                expected: HEADER_SIZE as u64 + expected,
                got: HEADER_SIZE as u64 + buckets.len() as u64,
            });
        }
        Self::from_parts(num_entries, num_buckets, buckets, false)
    }

    /// Validate a bucket array in one pass and apply borg's load-time rebuild.
    fn from_parts(
        num_entries: usize,
        num_buckets: usize,
        buckets: Vec<u8>,
        permit_compact: bool,
    ) -> Result<Self, HashIndexError> {
        let mut used = 0usize;
        let mut empty = 0usize;
        for b in buckets.chunks_exact(Self::BUCKET) {
            let tag = le32(b, KEY_SIZE);
            if tag == EMPTY {
                empty += 1;
            } else if tag == DELETED {
            } else if tag <= MAX_VALUE {
                used += 1;
            } else {
                return Err(HashIndexError::Corrupt(format!(
                    "reserved value {tag:#x} in a bucket"
                )));
            }
        }
        if used != num_entries {
            return Err(HashIndexError::Corrupt(format!(
                "header says {num_entries} entries, buckets hold {used}"
            )));
        }
        let mut index = HashIndex {
            buckets,
            num_entries,
            num_buckets,
            num_empty: empty,
            lower_limit: lower_limit(num_buckets),
            upper_limit: upper_limit(num_buckets),
            min_empty: min_empty(num_buckets),
            _v: std::marker::PhantomData,
        };
        if !permit_compact && index.num_empty < index.min_empty {
            // too many tombstones / not enough empty buckets: same-size rebuild, as borg.
            index.resize(index.num_buckets);
        }
        Ok(index)
    }
}

/// Totals over a chunk index (borg's `ChunkIndex.summarize()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkSummary {
    /// Sum of `size * refcount`.
    pub size: u64,
    /// Sum of `csize * refcount`.
    pub csize: u64,
    /// Sum of `size` (each chunk once).
    pub unique_size: u64,
    /// Sum of `csize` (each chunk once).
    pub unique_csize: u64,
    /// Number of entries.
    pub unique_chunks: u64,
    /// Sum of refcounts.
    pub chunks: u64,
}

/// The chunks-cache operations of borg's `ChunkIndex` (`hashindex.pyx`).  Refcounts
/// saturate at [`MAX_VALUE`], which then never changes again.
impl HashIndex<ChunkEntry> {
    fn update_at(&mut self, idx: usize, e: ChunkEntry) {
        let at = idx * Self::BUCKET + KEY_SIZE;
        e.encode(&mut self.buckets[at..at + ChunkEntry::SIZE]);
    }

    /// Increase the refcount of `id`; returns the updated entry, `None` if absent.
    pub fn incref(&mut self, id: &ObjectId) -> Option<ChunkEntry> {
        let idx = self.lookup_existing(id)?;
        let mut e = self.value_at(idx);
        if e.refcount != MAX_VALUE {
            e.refcount += 1;
        }
        self.update_at(idx, e);
        Some(e)
    }

    /// Decrease the refcount of `id`; returns the updated entry, `Ok(None)` if absent,
    /// an error if the refcount already is 0 (borg: "invalid reference count").
    pub fn decref(&mut self, id: &ObjectId) -> Result<Option<ChunkEntry>, HashIndexError> {
        let Some(idx) = self.lookup_existing(id) else {
            return Ok(None);
        };
        let mut e = self.value_at(idx);
        if e.refcount == 0 {
            return Err(HashIndexError::Corrupt("invalid reference count 0".into()));
        }
        if e.refcount != MAX_VALUE {
            e.refcount -= 1;
        }
        self.update_at(idx, e);
        Ok(Some(e))
    }

    /// borg's `add`: insert, or add `entry.refcount` to an existing entry (saturating)
    /// and overwrite its sizes.
    pub fn add(&mut self, id: &ObjectId, entry: ChunkEntry) -> Result<(), HashIndexError> {
        if entry.refcount > MAX_VALUE {
            return Err(HashIndexError::ValueTooLarge(entry.refcount));
        }
        match self.lookup_existing(id) {
            Some(idx) => {
                let old = self.value_at(idx);
                let sum =
                    (u64::from(old.refcount) + u64::from(entry.refcount)).min(MAX_VALUE.into());
                self.update_at(
                    idx,
                    ChunkEntry {
                        refcount: sum as u32,
                        ..entry
                    },
                );
            }
            None => {
                self.set(id, entry);
            }
        }
        Ok(())
    }

    /// borg's `merge`: [`Self::add`] every entry of `other` (in its bucket order).
    pub fn merge(&mut self, other: &ChunkIndex) {
        for (k, v) in other.iter() {
            // values in a table are always <= MAX_VALUE, so add cannot fail
            let _ = self.add(&k, v);
        }
    }

    /// borg's `summarize()`.
    pub fn summarize(&self) -> ChunkSummary {
        let mut s = ChunkSummary::default();
        for (_, e) in self.iter() {
            let (r, sz, cs) = (u64::from(e.refcount), u64::from(e.size), u64::from(e.csize));
            s.unique_chunks += 1;
            s.chunks += r;
            s.unique_size += sz;
            s.unique_csize += cs;
            s.size += sz * r;
            s.csize += cs * r;
        }
        s
    }
}

impl<V: BucketValue> HashIndex<V> {
    /// borg's `hashindex_get` (with the tombstone optimisation) for an existing key.
    fn lookup_existing(&mut self, key: &ObjectId) -> Option<usize> {
        if self.num_buckets == 0 {
            return None;
        }
        self.lookup(key).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> ObjectId {
        let mut k = [0u8; 32];
        // spread keys like sha256 would: mix the counter
        let x = i.wrapping_mul(0x9e37_79b9) ^ (i >> 7);
        k[..4].copy_from_slice(&x.to_le_bytes());
        k[4..8].copy_from_slice(&i.to_le_bytes());
        k
    }

    #[test]
    fn sizes_match_borg_helpers() {
        assert_eq!(fit_size(0), 1031);
        assert_eq!(fit_size(1031), 1031);
        assert_eq!(fit_size(1032), 2053);
        assert_eq!(grow_size(1031), 2053);
        assert_eq!(shrink_size(2053), 1031);
        assert_eq!(shrink_size(1031), 1031);
        assert_eq!(grow_size(2062383853), 2062383853);
        assert_eq!(min_empty(1031), 1 + 72);
        assert_eq!(upper_limit(1031), 773);
        assert_eq!(lower_limit(1031), 0);
        assert_eq!(lower_limit(2053), 513);
    }

    #[test]
    fn insert_get_remove_grow_shrink() {
        let mut idx = NsIndex::new();
        for i in 0..5000 {
            assert_eq!(
                idx.insert(
                    key(i),
                    NsEntry {
                        segment: i,
                        offset: i * 2
                    }
                ),
                None
            );
        }
        assert_eq!(idx.len(), 5000);
        assert!(idx.num_buckets() > 5000);
        for i in 0..5000 {
            assert_eq!(
                idx.get(&key(i)),
                Some(NsEntry {
                    segment: i,
                    offset: i * 2
                })
            );
        }
        for i in 0..4990 {
            assert_eq!(
                idx.remove(&key(i)),
                Some(NsEntry {
                    segment: i,
                    offset: i * 2
                })
            );
        }
        assert_eq!(idx.remove(&key(0)), None);
        assert_eq!(idx.len(), 10);
        assert_eq!(idx.num_buckets(), 1031);
        let back = NsIndex::from_bytes(&idx.to_bytes()).unwrap();
        assert_eq!(back, idx);
        assert_eq!(back.to_bytes(), idx.to_bytes());
    }

    #[test]
    fn chunk_index_ops() {
        let mut c = ChunkIndex::new();
        let e = |r| ChunkEntry {
            refcount: r,
            size: 10,
            csize: 5,
        };
        c.insert(key(1), e(1));
        assert_eq!(c.incref(&key(1)), Some(e(2)));
        assert_eq!(c.decref(&key(1)).unwrap(), Some(e(1)));
        assert_eq!(c.decref(&key(1)).unwrap(), Some(e(0)));
        assert!(c.decref(&key(1)).is_err());
        assert_eq!(c.incref(&key(2)), None);
        c.insert(key(3), e(MAX_VALUE));
        assert_eq!(c.incref(&key(3)), Some(e(MAX_VALUE)));
        assert_eq!(c.decref(&key(3)).unwrap(), Some(e(MAX_VALUE)));
        let mut other = ChunkIndex::new();
        other.insert(
            key(1),
            ChunkEntry {
                refcount: 4,
                size: 11,
                csize: 6,
            },
        );
        other.insert(key(3), e(7));
        other.insert(key(4), e(2));
        c.merge(&other);
        assert_eq!(
            c.get(&key(1)),
            Some(ChunkEntry {
                refcount: 4,
                size: 11,
                csize: 6
            })
        );
        assert_eq!(c.get(&key(3)), Some(e(MAX_VALUE)));
        assert_eq!(c.get(&key(4)), Some(e(2)));
        let s = c.summarize();
        assert_eq!(s.unique_chunks, 3);
        assert_eq!(s.chunks, 4 + u64::from(MAX_VALUE) + 2);
        assert_eq!(s.unique_size, 11 + 10 + 10);
        assert_eq!(s.size, 11 * 4 + 10 * u64::from(MAX_VALUE) + 10 * 2);
    }

    #[test]
    fn compact_tables() {
        let mut idx = NsIndex::new();
        assert_eq!(idx.compact(), 1031 * 40);
        let bytes = idx.to_bytes();
        assert_eq!(bytes.len(), HEADER_SIZE);
        assert!(NsIndex::from_bytes(&bytes).is_err()); // 0 buckets need permit_compact
        let mut c = NsIndex::from_bytes_compact(&bytes).unwrap();
        assert_eq!(
            (c.len(), c.get(&key(1)), c.remove(&key(1))),
            (0, None, None)
        );
        c.insert(
            key(1),
            NsEntry {
                segment: 1,
                offset: 1,
            },
        );
        assert_eq!(
            c.get(&key(1)),
            Some(NsEntry {
                segment: 1,
                offset: 1
            })
        );
        for i in 0..100 {
            idx.insert(
                key(i),
                NsEntry {
                    segment: i,
                    offset: 0,
                },
            );
        }
        idx.compact();
        assert_eq!(idx.num_buckets(), 100);
        let mut c = NsIndex::from_bytes_compact(&idx.to_bytes()).unwrap();
        assert_eq!(
            c.get(&key(5)),
            Some(NsEntry {
                segment: 5,
                offset: 0
            })
        );
        assert_eq!(c.get(&key(500)), None); // terminates on a full table
        c.insert(
            key(500),
            NsEntry {
                segment: 9,
                offset: 9,
            },
        );
        assert_eq!(c.len(), 101);
        assert!((0..100).all(|i| c.get(&key(i))
            == Some(NsEntry {
                segment: i,
                offset: 0
            })));
    }

    #[test]
    fn rejects_bad_input() {
        let idx = NsIndex::new();
        let bytes = idx.to_bytes();
        assert!(matches!(
            NsIndex::from_bytes(&bytes[..10]),
            Err(HashIndexError::TruncatedHeader(10))
        ));
        assert!(matches!(
            NsIndex::from_bytes(&bytes[..100]),
            Err(HashIndexError::BadLength { .. })
        ));
        assert!(matches!(
            ChunkIndex::from_bytes(&bytes),
            Err(HashIndexError::WrongSizes { .. })
        ));
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(matches!(
            NsIndex::from_bytes(&bad),
            Err(HashIndexError::BadMagic)
        ));
        let mut bad = bytes.clone();
        bad[8] = 1; // claims one entry
        assert!(matches!(
            NsIndex::from_bytes(&bad),
            Err(HashIndexError::Corrupt(_))
        ));
        let mut bad = bytes;
        bad[HEADER_SIZE + 32] = 0xfd; // reserved value 0xfffffffd
        assert!(matches!(
            NsIndex::from_bytes(&bad),
            Err(HashIndexError::Corrupt(_))
        ));
        assert!(matches!(
            NsIndex::new().try_insert(
                [0; 32],
                NsEntry {
                    segment: MAX_VALUE + 1,
                    offset: 0
                }
            ),
            Err(HashIndexError::ValueTooLarge(_))
        ));
    }
}
