//! Archive items: the metadata borg 1.2 stores for every file, directory, link or device in an
//! archive (borg's `item.pyx` `Item`, `internals/data-structures.rst` "Items").
//!
//! An archive's item stream is a concatenation of msgpack maps, one per item, cut into chunks
//! by the items chunker without regard to item boundaries: one item may span several chunks.
//! [`ItemUnpacker`] reassembles them (borg's `msgpack.Unpacker` fed chunk by chunk in
//! `DownloadPipeline.unpack_many`).
//!
//! borg packs `item.as_dict()`, a plain Python dict, so the key order on disk is the order in
//! which `borg create` set the attributes. [`Item`] remembers that order (and keeps keys it does
//! not know), so [`Item::encode`] reproduces the stored bytes exactly.
//!
//! ```
//! use rborg_archive::item::{Item, ItemUnpacker};
//! let mut file = Item::new("home/user/notes.txt", 0o100644);
//! file.mtime = Some(1_700_000_000_000_000_000);
//! let bytes = file.encode();
//! let mut stream = ItemUnpacker::new();
//! stream.feed(&bytes[..5]); // items arrive in arbitrary pieces
//! assert!(stream.next_item().unwrap().is_none());
//! stream.feed(&bytes[5..]);
//! let back = stream.next_item().unwrap().unwrap();
//! assert_eq!(back.encode(), bytes);
//! assert_eq!(back.path, b"home/user/notes.txt");
//! ```

use rborg_crypto::msgpack;
use rmpv::Value;

use crate::archive::{ReadError as Error, ReadResult as Result};

/// One entry of an item's chunk list: a content chunk's ID with its plaintext and compressed
/// size (borg's `ChunkListEntry` namedtuple, packed as a 3-element array).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkListEntry {
    /// ID of the content chunk.
    pub id: [u8; 32],
    /// Plaintext size of the chunk.
    pub size: u64,
    /// Size of the chunk as stored (compressed and encrypted).
    pub csize: u64,
}

impl ChunkListEntry {
    fn from_value(v: &Value) -> Option<ChunkListEntry> {
        let a = v.as_array()?;
        if a.len() != 3 {
            return None;
        }
        let id = msgpack::as_raw(&a[0]).and_then(|b| <[u8; 32]>::try_from(b).ok())?;
        Some(ChunkListEntry {
            id,
            size: a[1].as_u64()?,
            csize: a[2].as_u64()?,
        })
    }

    fn to_value(self) -> Value {
        Value::Array(vec![
            Value::Binary(self.id.to_vec()),
            Value::from(self.size),
            Value::from(self.csize),
        ])
    }
}

/// File type bits of `mode` (`stat.S_IFMT`).
pub const S_IFMT: u32 = 0o170000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;
/// Block device.
pub const S_IFBLK: u32 = 0o060000;
/// FIFO.
pub const S_IFIFO: u32 = 0o010000;
/// Socket.
pub const S_IFSOCK: u32 = 0o140000;

/// Whether borg 1.2 can hard-link an object of this mode (`helpers.hardlinkable`): regular
/// files, block and character devices and fifos. Their hard links are stored as a master item
/// carrying the content and slaves naming it in `source`.
pub fn hardlinkable(mode: u32) -> bool {
    matches!(mode & S_IFMT, S_IFREG | S_IFBLK | S_IFCHR | S_IFIFO)
}

/// `--strip-components n` applied to an archive path: drops the first `n` `/`-separated
/// components (borg's `os.sep.join(path.split(os.sep)[n:])`); empty when nothing is left.
pub fn strip_components(path: &[u8], n: usize) -> Vec<u8> {
    if n == 0 {
        return path.to_vec();
    }
    path.split(|&b| b == b'/')
        .skip(n)
        .collect::<Vec<_>>()
        .join(&b'/')
}

/// Whether `--strip-components n` leaves nothing of `path`: borg's `build_filter` counts such
/// an item as not matched (so a hard link master it removes still lends its chunks).
pub fn stripped_away(path: &[u8], n: usize) -> bool {
    n > 0 && path.split(|&b| b == b'/').count() <= n
}

/// One archive item with every key borg 1.2 writes (`constants.ITEM_KEYS` plus `deleted` and
/// `nlink`).
///
/// Text values (`path`, `source`, `user`, `group`) are kept as the raw bytes borg stores
/// (borg encodes them with `surrogateescape`, so they need not be UTF-8). Timestamps are
/// nanoseconds since the epoch. A known key whose value has a type this struct cannot hold
/// (e.g. `user: nil`, which borg writes for an unknown owner) is kept verbatim in [`Item::extra`],
/// like unknown keys; the typed field then reads `None`, which matches borg's `item.user or
/// item.uid` fallbacks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Item {
    /// Path inside the archive (no leading slash).
    pub path: Vec<u8>,
    /// Symlink target, or for a hardlink slave the master's path.
    pub source: Option<Vec<u8>>,
    /// `st_mode`: file type and permission bits.
    pub mode: Option<u32>,
    /// Owner user ID.
    pub uid: Option<u64>,
    /// Owner group ID.
    pub gid: Option<u64>,
    /// Owner user name.
    pub user: Option<Vec<u8>>,
    /// Owner group name.
    pub group: Option<Vec<u8>>,
    /// Device number of a block or character device.
    pub rdev: Option<u64>,
    /// Modification time, ns.
    pub mtime: Option<i64>,
    /// Access time, ns.
    pub atime: Option<i64>,
    /// Status change time, ns.
    pub ctime: Option<i64>,
    /// Birth time, ns (macOS, BSD).
    pub birthtime: Option<i64>,
    /// Plaintext size of a regular file (precomputed by borg >= 1.1).
    pub size: Option<u64>,
    /// Content chunks of a regular file.
    pub chunks: Option<Vec<ChunkListEntry>>,
    /// The chunk list before `borg check --repair` replaced missing chunks with zeros.
    pub chunks_healthy: Option<Vec<ChunkListEntry>>,
    /// Whether this hardlinked file carries the chunks (the first one archived).
    pub hardlink_master: Option<bool>,
    /// Extended attributes, name -> value, in stored order.
    pub xattrs: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    /// BSD file flags (`chflags`), Linux inode flags.
    pub bsdflags: Option<u64>,
    /// POSIX access ACL in text form.
    pub acl_access: Option<Vec<u8>>,
    /// POSIX default ACL in text form.
    pub acl_default: Option<Vec<u8>>,
    /// macOS extended ACL.
    pub acl_extended: Option<Vec<u8>>,
    /// NFSv4 ACL.
    pub acl_nfs4: Option<Vec<u8>>,
    /// Part number of a checkpoint part file.
    pub part: Option<u64>,
    /// Marker used by `borg recreate`/fuse for deleted items.
    pub deleted: Option<bool>,
    /// Link count (fuse only, never written by create).
    pub nlink: Option<u64>,
    /// Keys this version does not know, and known keys with unexpected value types, verbatim.
    pub extra: Vec<(Vec<u8>, Value)>,
    /// Key order as stored, used by [`Item::encode`].
    order: Vec<Vec<u8>>,
}

/// The order in which [`Item::encode`] writes keys that were set programmatically (not decoded):
/// the order `borg create` sets them for a regular file.
const DEFAULT_ORDER: &[&str] = &[
    "path",
    "hardlink_master",
    "source",
    "mode",
    "uid",
    "gid",
    "user",
    "group",
    "mtime",
    "atime",
    "ctime",
    "birthtime",
    "rdev",
    "xattrs",
    "acl_access",
    "acl_default",
    "acl_extended",
    "acl_nfs4",
    "bsdflags",
    "chunks",
    "chunks_healthy",
    "size",
    "part",
    "deleted",
    "nlink",
];

fn raw(v: &Value) -> Option<Vec<u8>> {
    msgpack::as_raw(v).map(<[u8]>::to_vec)
}

/// borg's `bigint_to_int`: an int, or (borg < 1.1) little-endian two's complement bytes.
fn bigint(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let b = msgpack::as_raw(v)?;
    if b.is_empty() || b.len() > 8 {
        return None;
    }
    let fill = if b[b.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
    let mut le = [fill; 8];
    le[..b.len()].copy_from_slice(b);
    Some(i64::from_le_bytes(le))
}

fn chunk_list(v: &Value) -> Option<Vec<ChunkListEntry>> {
    v.as_array()?
        .iter()
        .map(ChunkListEntry::from_value)
        .collect()
}

/// borg stores an empty xattr value as `None` (msgpack nil, borg's `xattr.py` `get_all`), so
/// nil decodes to an empty value.
fn xattr_map(v: &Value) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    v.as_map()?
        .iter()
        .map(|(k, v)| {
            let value = if v.is_nil() { Vec::new() } else { raw(v)? };
            Some((raw(k)?, value))
        })
        .collect()
}

impl Item {
    /// A new item for `path` with `mode`; other fields start empty.
    pub fn new(path: impl Into<Vec<u8>>, mode: u32) -> Item {
        Item {
            path: path.into(),
            mode: Some(mode),
            ..Item::default()
        }
    }

    /// Decodes one unpacked item map. Fails when the value is not a map or has no `path`.
    pub fn from_value(value: &Value) -> Result<Item> {
        let map = value
            .as_map()
            .ok_or_else(|| Error::InvalidItem("item is not a msgpack map".into()))?;
        let mut item = Item::default();
        let mut has_path = false;
        for (k, v) in map {
            let key = msgpack::as_raw(k)
                .ok_or_else(|| Error::InvalidItem("item key is not a string".into()))?
                .to_vec();
            let name = std::str::from_utf8(&key).unwrap_or("");
            // borg unpacks into a dict: a repeated key keeps its first position and takes the
            // last value (found by the `items` fuzz target: the re-encoded item lost its path)
            let repeated = item.order.contains(&key);
            if repeated {
                item.extra.retain(|(n, _)| *n != key);
                item.clear_field(name);
                if name == "path" {
                    has_path = false;
                }
            }
            let known = match name {
                "path" => raw(v).map(|p| {
                    item.path = p;
                    has_path = true;
                }),
                "source" => raw(v).map(|x| item.source = Some(x)),
                "user" => raw(v).map(|x| item.user = Some(x)),
                "group" => raw(v).map(|x| item.group = Some(x)),
                "acl_access" => raw(v).map(|x| item.acl_access = Some(x)),
                "acl_default" => raw(v).map(|x| item.acl_default = Some(x)),
                "acl_extended" => raw(v).map(|x| item.acl_extended = Some(x)),
                "acl_nfs4" => raw(v).map(|x| item.acl_nfs4 = Some(x)),
                "mode" => v
                    .as_u64()
                    .and_then(|m| u32::try_from(m).ok())
                    .map(|m| item.mode = Some(m)),
                "uid" => v.as_u64().map(|x| item.uid = Some(x)),
                "gid" => v.as_u64().map(|x| item.gid = Some(x)),
                "rdev" => v.as_u64().map(|x| item.rdev = Some(x)),
                "bsdflags" => v.as_u64().map(|x| item.bsdflags = Some(x)),
                "size" => v.as_u64().map(|x| item.size = Some(x)),
                "part" => v.as_u64().map(|x| item.part = Some(x)),
                "nlink" => v.as_u64().map(|x| item.nlink = Some(x)),
                "mtime" => bigint(v).map(|x| item.mtime = Some(x)),
                "atime" => bigint(v).map(|x| item.atime = Some(x)),
                "ctime" => bigint(v).map(|x| item.ctime = Some(x)),
                "birthtime" => bigint(v).map(|x| item.birthtime = Some(x)),
                "hardlink_master" => v.as_bool().map(|x| item.hardlink_master = Some(x)),
                "deleted" => v.as_bool().map(|x| item.deleted = Some(x)),
                "chunks" => chunk_list(v).map(|x| item.chunks = Some(x)),
                "chunks_healthy" => chunk_list(v).map(|x| item.chunks_healthy = Some(x)),
                "xattrs" => xattr_map(v).map(|x| item.xattrs = Some(x)),
                _ => None,
            };
            // Re-encoding a known value must give back the stored bytes (e.g. an int stored
            // in a non-minimal encoding by some other writer, or an old bigint); if not, keep
            // the value verbatim.
            let faithful = known.is_some() && item.field_packs_as(name, v);
            if !faithful {
                if known.is_some() {
                    item.clear_field(name);
                    if name == "path" {
                        has_path = false;
                    }
                }
                item.extra.push((key.clone(), v.clone()));
            }
            if !repeated {
                item.order.push(key);
            }
        }
        if !has_path {
            return Err(Error::InvalidItem("item has no path".into()));
        }
        Ok(item)
    }

    /// Decodes one item from msgpack bytes.
    pub fn decode(data: &[u8]) -> Result<Item> {
        Item::from_value(&msgpack::unpack(data).map_err(|e| Error::InvalidItem(e.to_string()))?)
    }

    fn clear_field(&mut self, name: &str) {
        match name {
            "path" => self.path.clear(),
            "source" => self.source = None,
            "user" => self.user = None,
            "group" => self.group = None,
            "acl_access" => self.acl_access = None,
            "acl_default" => self.acl_default = None,
            "acl_extended" => self.acl_extended = None,
            "acl_nfs4" => self.acl_nfs4 = None,
            "mode" => self.mode = None,
            "uid" => self.uid = None,
            "gid" => self.gid = None,
            "rdev" => self.rdev = None,
            "bsdflags" => self.bsdflags = None,
            "size" => self.size = None,
            "part" => self.part = None,
            "nlink" => self.nlink = None,
            "mtime" => self.mtime = None,
            "atime" => self.atime = None,
            "ctime" => self.ctime = None,
            "birthtime" => self.birthtime = None,
            "hardlink_master" => self.hardlink_master = None,
            "deleted" => self.deleted = None,
            "chunks" => self.chunks = None,
            "chunks_healthy" => self.chunks_healthy = None,
            "xattrs" => self.xattrs = None,
            _ => {}
        }
    }

    /// Whether the typed field `name` is set and packs to the same bytes as `stored`: the same
    /// answer as comparing `pack(field_value(name))` with `pack(stored)`, without building or
    /// packing either (every field of every item read goes through it).
    fn field_packs_as(&self, name: &str, stored: &Value) -> bool {
        fn bin(field: &Option<Vec<u8>>, stored: &Value) -> bool {
            field.is_some() && msgpack::as_raw(stored) == field.as_deref()
        }
        // integers pack by value alone
        fn uint(field: Option<u64>, stored: &Value) -> bool {
            matches!(stored, Value::Integer(_)) && field.is_some() && stored.as_u64() == field
        }
        fn int(field: Option<i64>, stored: &Value) -> bool {
            matches!(stored, Value::Integer(_)) && field.is_some() && stored.as_i64() == field
        }
        fn boolean(field: Option<bool>, stored: &Value) -> bool {
            field.is_some() && stored.as_bool() == field
        }
        fn chunks(field: &Option<Vec<ChunkListEntry>>, stored: &Value) -> bool {
            let (Some(list), Some(array)) = (field, stored.as_array()) else {
                return false;
            };
            list.len() == array.len()
                && list.iter().zip(array).all(|(entry, e)| {
                    e.as_array().is_some_and(|e| {
                        e.len() == 3
                            && msgpack::as_raw(&e[0]) == Some(&entry.id[..])
                            && uint(Some(entry.size), &e[1])
                            && uint(Some(entry.csize), &e[2])
                    })
                })
        }
        match name {
            "path" => msgpack::as_raw(stored) == Some(&self.path[..]),
            "source" => bin(&self.source, stored),
            "user" => bin(&self.user, stored),
            "group" => bin(&self.group, stored),
            "acl_access" => bin(&self.acl_access, stored),
            "acl_default" => bin(&self.acl_default, stored),
            "acl_extended" => bin(&self.acl_extended, stored),
            "acl_nfs4" => bin(&self.acl_nfs4, stored),
            "mode" => uint(self.mode.map(u64::from), stored),
            "uid" => uint(self.uid, stored),
            "gid" => uint(self.gid, stored),
            "rdev" => uint(self.rdev, stored),
            "bsdflags" => uint(self.bsdflags, stored),
            "size" => uint(self.size, stored),
            "part" => uint(self.part, stored),
            "nlink" => uint(self.nlink, stored),
            "mtime" => int(self.mtime, stored),
            "atime" => int(self.atime, stored),
            "ctime" => int(self.ctime, stored),
            "birthtime" => int(self.birthtime, stored),
            "hardlink_master" => boolean(self.hardlink_master, stored),
            "deleted" => boolean(self.deleted, stored),
            "chunks" => chunks(&self.chunks, stored),
            "chunks_healthy" => chunks(&self.chunks_healthy, stored),
            // rare: compared the long way
            _ => self
                .field_value(name)
                .is_some_and(|enc| msgpack::pack(&enc) == msgpack::pack(stored)),
        }
    }

    /// The msgpack value of a typed field, if set.
    fn field_value(&self, name: &str) -> Option<Value> {
        let bin = |b: &Option<Vec<u8>>| b.as_ref().map(|b| Value::Binary(b.clone()));
        let uint = |u: Option<u64>| u.map(Value::from);
        let int = |i: Option<i64>| i.map(Value::from);
        let chunks = |c: &Option<Vec<ChunkListEntry>>| {
            c.as_ref()
                .map(|c| Value::Array(c.iter().map(|e| e.to_value()).collect()))
        };
        match name {
            "path" => Some(Value::Binary(self.path.clone())),
            "source" => bin(&self.source),
            "user" => bin(&self.user),
            "group" => bin(&self.group),
            "acl_access" => bin(&self.acl_access),
            "acl_default" => bin(&self.acl_default),
            "acl_extended" => bin(&self.acl_extended),
            "acl_nfs4" => bin(&self.acl_nfs4),
            "mode" => uint(self.mode.map(u64::from)),
            "uid" => uint(self.uid),
            "gid" => uint(self.gid),
            "rdev" => uint(self.rdev),
            "bsdflags" => uint(self.bsdflags),
            "size" => uint(self.size),
            "part" => uint(self.part),
            "nlink" => uint(self.nlink),
            "mtime" => int(self.mtime),
            "atime" => int(self.atime),
            "ctime" => int(self.ctime),
            "birthtime" => int(self.birthtime),
            "hardlink_master" => self.hardlink_master.map(Value::Boolean),
            "deleted" => self.deleted.map(Value::Boolean),
            "chunks" => chunks(&self.chunks),
            "chunks_healthy" => chunks(&self.chunks_healthy),
            "xattrs" => self.xattrs.as_ref().map(|x| {
                Value::Map(
                    x.iter()
                        .map(|(k, v)| {
                            // an empty value is stored as nil, as borg does
                            let value = if v.is_empty() {
                                Value::Nil
                            } else {
                                Value::Binary(v.clone())
                            };
                            (Value::Binary(k.clone()), value)
                        })
                        .collect(),
                )
            }),
            _ => None,
        }
    }

    /// The item as the msgpack map borg packs (`item.as_dict()`): decoded keys in their stored
    /// order, then keys set since in the order `borg create` sets them, then new extra keys.
    pub fn to_value(&self) -> Value {
        let mut entries: Vec<(Value, Value)> = Vec::new();
        let mut done: Vec<&[u8]> = Vec::new();
        let extra_get = |k: &[u8]| {
            self.extra
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        for key in &self.order {
            let name = std::str::from_utf8(key).unwrap_or("");
            if let Some(v) = extra_get(key).or_else(|| self.field_value(name)) {
                entries.push((Value::Binary(key.clone()), v));
                done.push(key);
            }
        }
        for name in DEFAULT_ORDER {
            if done.contains(&name.as_bytes()) {
                continue;
            }
            if let Some(v) = self.field_value(name) {
                entries.push((Value::from(*name), v));
            }
        }
        for (k, v) in &self.extra {
            if !done.contains(&k.as_slice()) {
                entries.push((Value::Binary(k.clone()), v.clone()));
            }
        }
        Value::Map(entries)
    }

    /// The item packed exactly as borg packs it.
    pub fn encode(&self) -> Vec<u8> {
        msgpack::pack(&self.to_value())
    }

    /// The stored key names in stored order.
    pub fn keys(&self) -> &[Vec<u8>] {
        &self.order
    }

    /// The file type bits of `mode` (0 when `mode` is missing).
    pub fn file_type(&self) -> u32 {
        self.mode.unwrap_or(0) & S_IFMT
    }

    /// Whether this is a regular file.
    pub fn is_regular(&self) -> bool {
        self.file_type() == S_IFREG
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == S_IFDIR
    }

    /// Whether this is a symbolic link.
    pub fn is_link(&self) -> bool {
        self.file_type() == S_IFLNK
    }

    /// Whether this is a hardlink slave: a regular file (or device/fifo) whose content lives
    /// in the item named by `source` (borg 1.2 hardlink model).
    pub fn is_hardlink_slave(&self) -> bool {
        self.source.is_some() && !self.is_link()
    }

    /// borg's `Item.get_size(compressed)` without hardlink masters: the precomputed `size` if
    /// present (only for `compressed == false`), for symlinks the length of the target in
    /// characters, else the sum over the chunk list, else 0.
    pub fn get_size(&self, compressed: bool) -> u64 {
        if !compressed {
            if let Some(s) = self.size {
                return s;
            }
        }
        if self.is_link() {
            return self.source.as_deref().map(python_str_len).unwrap_or(0);
        }
        match &self.chunks {
            Some(c) => c
                .iter()
                .map(|e| if compressed { e.csize } else { e.size })
                .sum(),
            None => 0,
        }
    }
}

/// Length of bytes decoded by Python with `surrogateescape`: one per code point, one per
/// undecodable byte.
pub fn python_str_len(bytes: &[u8]) -> u64 {
    let mut n = 0u64;
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => return n + s.chars().count() as u64,
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                n += std::str::from_utf8(good)
                    .map(|s| s.chars().count() as u64)
                    .unwrap_or(0);
                let skip = e.error_len().unwrap_or(bad.len()).max(1);
                n += skip as u64;
                rest = &bad[skip.min(bad.len())..];
            }
        }
    }
}

/// Reassembles items from an item stream delivered in arbitrary pieces (borg's streaming
/// `msgpack.Unpacker` in `DownloadPipeline.unpack_many`).
#[derive(Debug, Default)]
pub struct ItemUnpacker {
    buffer: Vec<u8>,
    pos: usize,
}

impl ItemUnpacker {
    /// An empty unpacker.
    pub fn new() -> ItemUnpacker {
        ItemUnpacker::default()
    }

    /// Appends the next piece of the stream (one decrypted, decompressed item-metadata chunk).
    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 {
            self.buffer.drain(..self.pos);
            self.pos = 0;
        }
        self.buffer.extend_from_slice(data);
    }

    /// The next complete item's raw msgpack bytes, or `None` when more data is needed.
    pub fn next_raw(&mut self) -> Result<Option<&[u8]>> {
        let rest = &self.buffer[self.pos..];
        if rest.is_empty() {
            return Ok(None);
        }
        match msgpack::value_len(rest) {
            msgpack::ValueLen::Complete(len) => {
                let start = self.pos;
                self.pos += len;
                Ok(Some(&self.buffer[start..start + len]))
            }
            msgpack::ValueLen::Incomplete => Ok(None),
            msgpack::ValueLen::TooDeep => Err(Error::InvalidItem(
                "item stream: depth limit exceeded".into(),
            )),
        }
    }

    /// The next complete item, or `None` when more data is needed.
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        match self.next_raw()? {
            Some(raw) => Item::decode(raw).map(Some),
            None => Ok(None),
        }
    }

    /// Fails if the stream ended in the middle of an item.
    pub fn finish(&self) -> Result<()> {
        if self.pos < self.buffer.len() {
            return Err(Error::InvalidItem(format!(
                "item stream ends with {} bytes of an incomplete item",
                self.buffer.len() - self.pos
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `field_packs_as` must say what packing both sides and comparing would: every field
    /// name against stored values of every shape, on an item decoded from them.
    #[test]
    fn field_comparison_agrees_with_packing() {
        let id = |b: u8| Value::Binary(vec![b; 32]);
        let entry = |b: u8, size: i64, csize: i64| {
            Value::Array(vec![id(b), Value::from(size), Value::from(csize)])
        };
        let stored: Vec<Value> = vec![
            Value::Nil,
            Value::Boolean(true),
            Value::Boolean(false),
            Value::from(0),
            Value::from(7),
            Value::from(-7),
            Value::from(u64::MAX),
            Value::from(i64::MIN),
            Value::F64(7.0),
            Value::F32(7.0),
            Value::from("abc"),
            Value::Binary(b"abc".to_vec()),
            Value::Binary(Vec::new()),
            Value::Binary(vec![1, 2, 3, 4, 5, 6, 7, 0x80]),
            Value::Array(vec![]),
            Value::Array(vec![entry(1, 10, 5), entry(2, 20, 9)]),
            Value::Array(vec![entry(1, 10, -5)]),
            Value::Array(vec![Value::Array(vec![
                Value::Binary(vec![1; 31]),
                Value::from(1),
                Value::from(1),
            ])]),
            Value::Array(vec![Value::Array(vec![id(1), Value::from(1)])]),
            Value::Map(vec![]),
            Value::Map(vec![(Value::from("user.a"), Value::Nil)]),
            Value::Map(vec![(Value::from("user.a"), Value::from(""))]),
            Value::Map(vec![(
                Value::Binary(b"user.b".to_vec()),
                Value::Binary(b"x".to_vec()),
            )]),
            Value::Ext(1, vec![1, 2]),
        ];
        let names = [
            "path",
            "source",
            "user",
            "group",
            "acl_access",
            "acl_default",
            "acl_extended",
            "acl_nfs4",
            "mode",
            "uid",
            "gid",
            "rdev",
            "bsdflags",
            "size",
            "part",
            "nlink",
            "mtime",
            "atime",
            "ctime",
            "birthtime",
            "hardlink_master",
            "deleted",
            "chunks",
            "chunks_healthy",
            "xattrs",
        ];
        for name in names {
            for from in &stored {
                // an item whose field was decoded (leniently) from `from`
                let mut item = Item::new("p", 0o100644);
                item.clear_field(name);
                let map = Value::Map(vec![
                    (Value::from("path"), Value::from("p")),
                    (Value::from(name), from.clone()),
                ]);
                if let Ok(decoded) = Item::from_value(&map) {
                    item = decoded;
                }
                for v in &stored {
                    let long_way = item
                        .field_value(name)
                        .is_some_and(|enc| msgpack::pack(&enc) == msgpack::pack(v));
                    assert_eq!(
                        item.field_packs_as(name, v),
                        long_way,
                        "{name} decoded from {from:?}, compared with {v:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn strips_components_like_borg() {
        assert_eq!(strip_components(b"a/b/c", 1), b"b/c");
        assert_eq!(strip_components(b"a/b/c", 2), b"c");
        assert_eq!(strip_components(b"a/b/c", 0), b"a/b/c");
        assert_eq!(strip_components(b"a", 1), b"");
        assert!(stripped_away(b"a/b", 2));
        assert!(!stripped_away(b"a/b/c", 2));
        assert!(!stripped_away(b"a", 0));
    }

    fn sample() -> Vec<u8> {
        let v = Value::Map(vec![
            (Value::from("path"), Value::from("home/f\u{e9}")),
            (Value::from("mode"), Value::from(0o100644)),
            (Value::from("user"), Value::Nil),
            (
                Value::from("mtime"),
                Value::from(1_700_000_000_123_456_789i64),
            ),
            (Value::from("zzz_unknown"), Value::from(7)),
            (
                Value::from("chunks"),
                Value::Array(vec![Value::Array(vec![
                    Value::Binary(vec![1; 32]),
                    Value::from(10),
                    Value::from(12),
                ])]),
            ),
            (Value::from("size"), Value::from(10)),
        ]);
        msgpack::pack(&v)
    }

    #[test]
    fn roundtrip_keeps_order_nil_and_unknown_keys() {
        let bytes = sample();
        let item = Item::decode(&bytes).unwrap();
        assert_eq!(item.path, "home/f\u{e9}".as_bytes());
        assert_eq!(item.user, None);
        assert_eq!(item.mtime, Some(1_700_000_000_123_456_789));
        assert_eq!(item.chunks.as_ref().unwrap()[0].csize, 12);
        assert_eq!(item.extra.len(), 2);
        assert_eq!(item.encode(), bytes);
        assert_eq!(item.get_size(true), 12);
    }

    #[test]
    fn unpacker_splits_anywhere() {
        let one = sample();
        let stream: Vec<u8> = [one.clone(), one.clone(), one.clone()].concat();
        for cut in 0..stream.len() {
            let mut u = ItemUnpacker::new();
            let mut n = 0;
            for piece in [&stream[..cut], &stream[cut..]] {
                u.feed(piece);
                while let Some(item) = u.next_item().unwrap() {
                    assert_eq!(item.encode(), one);
                    n += 1;
                }
            }
            u.finish().unwrap();
            assert_eq!(n, 3);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Item::decode(&[0x93, 1, 2, 3]).is_err());
        assert!(Item::decode(&[0x81, 0xa4, b'm', b'o', b'd', b'e', 1]).is_err());
        let mut u = ItemUnpacker::new();
        u.feed(&[0xc1]);
        assert!(u.next_item().is_err());
        let mut u = ItemUnpacker::new();
        u.feed(&sample()[..5]);
        assert!(u.next_item().unwrap().is_none());
        assert!(u.finish().is_err());
    }

    #[test]
    fn python_len() {
        assert_eq!(python_str_len("a\u{e9}\u{1f600}".as_bytes()), 3);
        assert_eq!(python_str_len(b"a\xff\xfeb"), 4);
    }
}
