//! Reading archives: the archive metadata object, its item stream and file contents
//! (borg 1.2 `archive.py` `Archive._load_meta` / `iter_items` / `DownloadPipeline`,
//! `item.pyx` `ArchiveItem`, `internals/data-structures.rst` "Archives" and "Items").
//!
//! Every object is read the same way: fetch it from the repository, decrypt it (which checks
//! its MAC), decompress it and check that its ID is the keyed hash of the plaintext (borg's
//! `key.decrypt(id, data)` does all three). [`fetch_object`] does that for one object, the
//! iterators below for many, prefetching with [`Repository::get_many`].
//!
//! ```no_run
//! # fn demo(repo: &mut dyn rborg_repository::Repository, key: &rborg_crypto::Key,
//! #         manifest: &rborg_archive::Manifest) -> Result<(), rborg_archive::archive::ReadError> {
//! use rborg_archive::archive::ArchiveMeta;
//! let entry = &manifest.archives["my-archive"];
//! let meta = ArchiveMeta::load(repo, key, &entry.id, false)?;
//! for item in meta.iter_items(repo, key) {
//!     let item = item?;
//!     println!("{}", String::from_utf8_lossy(&item.path));
//! }
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::io::Read;

use rborg_compress::MAX_DATA_SIZE;
use rborg_crypto::{msgpack, Key};
use rborg_repository::{ObjectId, Repository};
use rmpv::Value;

use crate::item::{ChunkListEntry, Item, ItemUnpacker};

/// How many objects the readers request from the repository at once.
pub const PREFETCH: usize = 16;

/// Threads for opening objects (decrypt, decompress, ID check): the available cores, at most 8
/// (asked once per process; the query is a system call).
pub(crate) fn worker_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8)
    })
}

/// What can go wrong reading an archive.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The archive layer failed (manifest, keys, ...).
    #[error(transparent)]
    Archive(#[from] crate::Error),
    /// The repository failed (I/O, missing object, ...).
    #[error(transparent)]
    Repository(#[from] rborg_repository::Error),
    /// Decryption, ID check or TAM failed.
    #[error(transparent)]
    Crypto(#[from] rborg_crypto::Error),
    /// A payload could not be decompressed.
    #[error(transparent)]
    Compress(#[from] rborg_compress::DecompressError),
    /// An item in the item stream is malformed.
    #[error("Invalid item: {0}")]
    InvalidItem(String),
    /// The archive metadata object is malformed (borg: "Unknown archive metadata version").
    #[error("Invalid archive metadata: {0}")]
    InvalidArchive(String),
    /// The archive is not in the manifest (borg's `Archive.DoesNotExist`).
    #[error("Archive {0} does not exist")]
    DoesNotExist(String),
}

/// Result type of archive reading.
pub type ReadResult<T> = std::result::Result<T, ReadError>;

/// Decrypts, decompresses and ID-checks one stored object (borg's `key.decrypt(id, data)`):
/// [`finish_object`] of the MAC-checked, decrypted payload.
pub fn open_object(key: &Key, id: &ObjectId, cdata: &[u8]) -> ReadResult<Vec<u8>> {
    finish_object(key, id, &key.decrypt(Some(id), cdata)?)
}

/// The second half of [`open_object`]: decompresses a decrypted payload and checks the
/// plaintext against its ID (so that a pipeline can decrypt one object while it finishes the
/// one before).
pub fn finish_object(key: &Key, id: &ObjectId, compressed: &[u8]) -> ReadResult<Vec<u8>> {
    let data = rborg_compress::decompress(compressed, None, MAX_DATA_SIZE)?;
    key.assert_id(id, &data)?;
    Ok(data)
}

/// [`finish_object`] of several objects at once, one result per object in their order: each
/// payload decompressed, then the IDs of those that decompressed checked side by side
/// ([`Key::assert_id_many`]: BLAKE2b in SIMD lanes). For readers that hold a batch (extract).
pub fn finish_objects(
    key: &Key,
    ids: &[&ObjectId],
    compressed: &[&[u8]],
) -> Vec<ReadResult<Vec<u8>>> {
    let mut opened: Vec<ReadResult<Vec<u8>>> = compressed
        .iter()
        .map(|c| Ok(rborg_compress::decompress(c, None, MAX_DATA_SIZE)?))
        .collect();
    let verdicts = {
        let checked: Vec<(&ObjectId, &[u8])> = ids
            .iter()
            .zip(&opened)
            .filter_map(|(id, data)| Some((*id, &data.as_ref().ok()?[..])))
            .collect();
        key.assert_id_many(&checked)
    };
    let mut verdicts = verdicts.into_iter();
    for data in opened.iter_mut().filter(|data| data.is_ok()) {
        if let Err(e) = verdicts
            .next()
            .expect("one verdict per decompressed object")
        {
            *data = Err(e.into());
        }
    }
    opened
}

/// A stored object decrypted where it lies ([`Key::decrypt_in_place`]).
pub(crate) struct Decrypted {
    pub(crate) stored: Vec<u8>,
    /// Where its (compressed) payload is in `stored`.
    pub(crate) payload: std::ops::Range<usize>,
}

impl Decrypted {
    /// The plaintext size its payload declares ([`rborg_compress::decompressed_len`]), for
    /// planning memory before decompressing.
    pub(crate) fn declared_len(&self) -> Option<usize> {
        rborg_compress::decompressed_len(self.stored.get(self.payload.clone())?)
    }
}

/// The first half of opening a batch of stored objects: each checked and decrypted where it
/// lies, their MACs computed side by side ([`Key::decrypt_in_place_many`]); each read error
/// and each verdict stays with its object.
pub(crate) fn decrypt_batch(
    key: &Key,
    ids: &[ObjectId],
    mut stored: Vec<ReadResult<Vec<u8>>>,
) -> Vec<ReadResult<Decrypted>> {
    let (read_ids, mut envelopes): (Vec<&ObjectId>, Vec<&mut [u8]>) = ids
        .iter()
        .zip(stored.iter_mut())
        .filter_map(|(id, c)| Some((id, &mut c.as_mut().ok()?[..])))
        .unzip();
    let mut payloads = key
        .decrypt_in_place_many(&read_ids, &mut envelopes)
        .into_iter();
    stored
        .into_iter()
        .map(|c| {
            let stored = c?;
            let payload = payloads.next().expect("one verdict per stored object")?;
            Ok(Decrypted { stored, payload })
        })
        .collect()
}

/// The second half: [`finish_objects`] of the batch's decrypted objects, each earlier error
/// kept in its place.
pub(crate) fn finish_batch(
    key: &Key,
    ids: &[ObjectId],
    decrypted: Vec<ReadResult<Decrypted>>,
) -> Vec<ReadResult<Vec<u8>>> {
    let (ok_ids, payloads): (Vec<&ObjectId>, Vec<&[u8]>) = ids
        .iter()
        .zip(&decrypted)
        .filter_map(|(id, chunk)| {
            let Decrypted { stored, payload } = chunk.as_ref().ok()?;
            Some((id, stored.get(payload.clone()).unwrap_or_default()))
        })
        .unzip();
    let mut opened = finish_objects(key, &ok_ids, &payloads).into_iter();
    decrypted
        .into_iter()
        .map(|chunk| {
            chunk?;
            opened.next().expect("one opened object per decrypted one")
        })
        .collect()
}

/// Fetches and opens one object.
pub fn fetch_object(
    repository: &mut dyn Repository,
    key: &Key,
    id: &ObjectId,
) -> ReadResult<Vec<u8>> {
    let cdata = repository.get(id)?;
    open_object(key, id, &cdata)
}

/// Fetches objects in order, `PREFETCH` at a time (borg's `DownloadPipeline.fetch_many`).
struct Fetcher {
    ids: Vec<ObjectId>,
    next: usize,
    ready: VecDeque<Vec<u8>>,
}

impl Fetcher {
    fn new(ids: Vec<ObjectId>) -> Fetcher {
        Fetcher {
            ids,
            next: 0,
            ready: VecDeque::new(),
        }
    }

    fn next(&mut self, repository: &mut dyn Repository, key: &Key) -> Option<ReadResult<Vec<u8>>> {
        if self.ready.is_empty() {
            if self.next >= self.ids.len() {
                return None;
            }
            let end = (self.next + PREFETCH).min(self.ids.len());
            let batch = &self.ids[self.next..end];
            self.next = end;
            let cdatas = match repository.get_many(batch) {
                Ok(c) => c,
                Err(e) => {
                    self.next = self.ids.len();
                    return Some(Err(e.into()));
                }
            };
            for (id, cdata) in batch.iter().zip(cdatas) {
                match open_object(key, id, &cdata) {
                    Ok(data) => self.ready.push_back(data),
                    Err(e) => {
                        self.next = self.ids.len();
                        self.ready.clear();
                        return Some(Err(e));
                    }
                }
            }
        }
        self.ready.pop_front().map(Ok)
    }
}

/// The archive metadata object (borg's `ArchiveItem`): name, item stream chunk IDs, creation
/// details. Stored as a msgpack map with sorted keys (`StableDict`) and, as borg 1.2.4 writes it
/// (`Archive.save`, `pack_and_authenticate_metadata(context=b'archive')`), a `tam` entry. borg
/// 1.2.4 does not check that TAM when reading; rborg verifies it when present and requires it
/// only when asked to (borg >= 1.2.5 behaviour).
#[derive(Clone, Debug, PartialEq)]
pub struct ArchiveMeta {
    /// ID of the metadata object.
    pub id: ObjectId,
    /// Format version, always 1.
    pub version: u64,
    /// Archive name (raw bytes of borg's surrogate-escaped str).
    pub name: Vec<u8>,
    /// IDs of the item stream chunks, in order.
    pub items: Vec<ObjectId>,
    /// Command line of `borg create`.
    pub cmdline: Vec<Vec<u8>>,
    /// Host that created the archive.
    pub hostname: Vec<u8>,
    /// User that created the archive.
    pub username: Vec<u8>,
    /// Start time, UTC, borg's ISO format.
    pub time: String,
    /// End time, UTC (absent in archives of old borg versions).
    pub time_end: Option<String>,
    /// Archive comment (empty if none).
    pub comment: Vec<u8>,
    /// Chunker parameters used for the content, e.g. `["buzhash", 19, 23, 21, 4095]`.
    pub chunker_params: Option<Value>,
    /// Command line of the last `borg recreate`.
    pub recreate_cmdline: Option<Vec<Vec<u8>>>,
    /// Archive statistics borg >= 1.2 stores: `size`, `csize`, `nfiles`, and the `*_parts`
    /// counterparts (checkpoint part files).
    pub stats: Vec<(String, u64)>,
    /// Whether a TAM was present and verified.
    pub tam_verified: bool,
    /// The stored `tam` entry, kept so [`ArchiveMeta::encode`] reproduces the object.
    pub tam: Option<Value>,
    /// The whole metadata map as stored (minus the TAM), for [`ArchiveMeta::encode`] and keys
    /// not modelled above.
    pub raw: Value,
}

fn text(v: Option<&Value>) -> Option<Vec<u8>> {
    v.and_then(msgpack::as_raw).map(<[u8]>::to_vec)
}

fn text_list(v: Option<&Value>) -> Option<Vec<Vec<u8>>> {
    v?.as_array()?
        .iter()
        .map(|x| msgpack::as_raw(x).map(<[u8]>::to_vec))
        .collect()
}

impl ArchiveMeta {
    /// Loads the archive metadata object `id` (borg's `Archive._load_meta`). With
    /// `require_tam`, an archive without a valid TAM is refused (borg >= 1.2.5 behaviour);
    /// without it, as borg 1.2.4, a missing TAM is accepted but a present one must verify.
    pub fn load(
        repository: &mut dyn Repository,
        key: &Key,
        id: &ObjectId,
        require_tam: bool,
    ) -> ReadResult<Self> {
        let data = fetch_object(repository, key, id)?;
        ArchiveMeta::decode(key, id, &data, require_tam)
    }

    /// Loads the archive called `name` in `manifest`.
    pub fn load_by_name(
        repository: &mut dyn Repository,
        key: &Key,
        manifest: &crate::Manifest,
        name: &str,
        require_tam: bool,
    ) -> ReadResult<Self> {
        let entry = manifest
            .archives
            .get(name)
            .ok_or_else(|| ReadError::DoesNotExist(name.to_string()))?;
        ArchiveMeta::load(repository, key, &entry.id, require_tam)
    }

    /// Decodes the plaintext of an archive metadata object.
    pub fn decode(key: &Key, id: &ObjectId, data: &[u8], require_tam: bool) -> ReadResult<Self> {
        let verified = rborg_crypto::verify_archive(key, data, !require_tam)?;
        let tam = if verified.verified {
            msgpack::unpack(data)
                .ok()
                .and_then(|v| msgpack::map_get(&v, "tam").cloned())
        } else {
            None
        };
        let map = verified.value;
        let get = |k: &str| msgpack::map_get(&map, k);
        let bad = |what: &str| ReadError::InvalidArchive(what.to_string());
        let version = get("version")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("no version"))?;
        if version != 1 {
            return Err(bad("Unknown archive metadata version"));
        }
        let items = get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no item list"))?
            .iter()
            .map(|v| msgpack::as_raw(v).and_then(|b| <ObjectId>::try_from(b).ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("item chunk id is not 32 bytes"))?;
        let time = text(get("time"))
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .ok_or_else(|| bad("no time"))?;
        let stats = [
            "size",
            "csize",
            "nfiles",
            "size_parts",
            "csize_parts",
            "nfiles_parts",
        ]
        .iter()
        .filter_map(|k| get(k).and_then(Value::as_u64).map(|v| (k.to_string(), v)))
        .collect();
        Ok(ArchiveMeta {
            id: *id,
            version,
            name: text(get("name")).ok_or_else(|| bad("no name"))?,
            items,
            cmdline: text_list(get("cmdline")).unwrap_or_default(),
            hostname: text(get("hostname")).unwrap_or_default(),
            username: text(get("username")).unwrap_or_default(),
            time,
            time_end: text(get("time_end")).map(|t| String::from_utf8_lossy(&t).into_owned()),
            comment: text(get("comment")).unwrap_or_default(),
            chunker_params: get("chunker_params").cloned(),
            recreate_cmdline: text_list(get("recreate_cmdline")),
            stats,
            tam_verified: verified.verified,
            tam,
            raw: map,
        })
    }

    /// The metadata object's plaintext as borg stored it: the map with its verified `tam`
    /// entry put back at its sorted position.
    pub fn encode(&self) -> Vec<u8> {
        let Some(tam) = &self.tam else {
            return msgpack::pack(&self.raw);
        };
        let mut entries = self.raw.as_map().cloned().unwrap_or_default();
        let pos = entries
            .iter()
            .position(|(k, _)| msgpack::key_bytes(k) > b"tam".as_slice())
            .unwrap_or(entries.len());
        entries.insert(pos, (Value::from("tam"), tam.clone()));
        msgpack::pack(&Value::Map(entries))
    }

    /// The metadata map packed without its TAM (the bytes the TAM authenticates, with the
    /// TAM removed).
    pub fn encode_without_tam(&self) -> Vec<u8> {
        msgpack::pack(&self.raw)
    }

    /// The archive name as text (invalid UTF-8 shown as U+FFFD).
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// Iterates over the archive's items, fetching the item stream chunks in order.
    pub fn iter_items<'a>(&self, repository: &'a mut dyn Repository, key: &'a Key) -> ItemIter<'a> {
        ItemIter::new(repository, key, self.items.clone())
    }

    /// The whole item stream (all item chunks concatenated), as borg wrote it.
    pub fn item_stream(&self, repository: &mut dyn Repository, key: &Key) -> ReadResult<Vec<u8>> {
        let mut fetcher = Fetcher::new(self.items.clone());
        let mut out = Vec::new();
        while let Some(chunk) = fetcher.next(repository, key) {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }
}

/// Iterator over the items of an archive (borg's `Archive.iter_items` without filters).
pub struct ItemIter<'a> {
    repository: &'a mut dyn Repository,
    key: &'a Key,
    fetcher: Fetcher,
    unpacker: ItemUnpacker,
    done: bool,
}

impl<'a> ItemIter<'a> {
    /// Items of the item stream made of the chunks `ids`.
    pub fn new(
        repository: &'a mut dyn Repository,
        key: &'a Key,
        ids: Vec<ObjectId>,
    ) -> ItemIter<'a> {
        ItemIter {
            repository,
            key,
            fetcher: Fetcher::new(ids),
            unpacker: ItemUnpacker::new(),
            done: false,
        }
    }
}

impl Iterator for ItemIter<'_> {
    type Item = ReadResult<Item>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            match self.unpacker.next_item() {
                Ok(Some(item)) => return Some(Ok(item)),
                Ok(None) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            match self.fetcher.next(self.repository, self.key) {
                Some(Ok(data)) => self.unpacker.feed(&data),
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                None => {
                    self.done = true;
                    return self.unpacker.finish().err().map(Err);
                }
            }
        }
    }
}

/// A file's content as [`Read`]: its chunks fetched in order, each decrypted, decompressed and
/// ID-checked (what `borg extract` writes). A chunk whose plaintext size differs from the chunk
/// list entry is an error.
pub struct ContentReader<'a> {
    repository: &'a mut dyn Repository,
    key: &'a Key,
    fetcher: Fetcher,
    sizes: VecDeque<u64>,
    current: Vec<u8>,
    pos: usize,
}

impl<'a> ContentReader<'a> {
    /// A reader over `chunks` (an item's chunk list).
    pub fn new(
        repository: &'a mut dyn Repository,
        key: &'a Key,
        chunks: &[ChunkListEntry],
    ) -> ContentReader<'a> {
        ContentReader {
            repository,
            key,
            fetcher: Fetcher::new(chunks.iter().map(|c| c.id).collect()),
            sizes: chunks.iter().map(|c| c.size).collect(),
            current: Vec::new(),
            pos: 0,
        }
    }

    /// A reader over a regular file item's content (empty for items without chunks; a
    /// hardlink slave's content is in its master's chunks).
    pub fn for_item(
        repository: &'a mut dyn Repository,
        key: &'a Key,
        item: &Item,
    ) -> ContentReader<'a> {
        ContentReader::new(repository, key, item.chunks.as_deref().unwrap_or(&[]))
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.current.len() {
            match self.fetcher.next(self.repository, self.key) {
                None => return Ok(0),
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                Some(Ok(data)) => {
                    let want = self.sizes.pop_front().unwrap_or(0);
                    if data.len() as u64 != want {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("chunk has {} bytes, chunk list says {want}", data.len()),
                        ));
                    }
                    self.current = data;
                    self.pos = 0;
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The content digests borg's `ItemFormatter` offers as `{<algorithm>}` placeholders that rborg
/// implements (Python's `hashlib` names; `xxh64` is borg's own, shown big-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentHash {
    /// `sha224`
    Sha224,
    /// `sha256`
    Sha256,
    /// `sha384`
    Sha384,
    /// `sha512`
    Sha512,
    /// `blake2b` (64-byte digest, hashlib's default)
    Blake2b,
    /// `blake2s` (32-byte digest)
    Blake2s,
    /// `xxh64` (seed 0)
    Xxh64,
}

impl ContentHash {
    /// The algorithm called `name` in borg's format keys.
    pub fn from_name(name: &str) -> Option<ContentHash> {
        Some(match name {
            "sha224" => ContentHash::Sha224,
            "sha256" => ContentHash::Sha256,
            "sha384" => ContentHash::Sha384,
            "sha512" => ContentHash::Sha512,
            "blake2b" => ContentHash::Blake2b,
            "blake2s" => ContentHash::Blake2s,
            "xxh64" => ContentHash::Xxh64,
            _ => return None,
        })
    }

    /// The lowercase hex digest of everything `reader` yields (`hash.hexdigest()`).
    pub fn hexdigest(self, mut reader: impl Read) -> std::io::Result<String> {
        use sha2::Digest;
        fn run<D: Digest>(mut d: D, reader: &mut dyn Read) -> std::io::Result<String> {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    return Ok(hex::encode(d.finalize()));
                }
                d.update(&buf[..n]);
            }
        }
        match self {
            ContentHash::Sha224 => run(sha2::Sha224::new(), &mut reader),
            ContentHash::Sha256 => run(sha2::Sha256::new(), &mut reader),
            ContentHash::Sha384 => run(sha2::Sha384::new(), &mut reader),
            ContentHash::Sha512 => run(sha2::Sha512::new(), &mut reader),
            ContentHash::Blake2b => run(blake2::Blake2b512::new(), &mut reader),
            ContentHash::Blake2s => run(blake2::Blake2s256::new(), &mut reader),
            ContentHash::Xxh64 => {
                let mut h = xxhash_rust::xxh64::Xxh64::new(0);
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = reader.read(&mut buf)?;
                    if n == 0 {
                        return Ok(hex::encode(h.digest().to_be_bytes()));
                    }
                    h.update(&buf[..n]);
                }
            }
        }
    }
}
