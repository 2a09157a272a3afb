//! borg 1.2 compatible chunkers for rborg.
//!
//! Cuts a byte stream into chunks exactly like borg 1.2.4 (`borg/chunker.pyx`, `_chunker.c`):
//!
//! * **buzhash** — borg's content-defined chunker, seeded with the key's `chunk_seed`;
//!   spec `buzhash,CHUNK_MIN_EXP,CHUNK_MAX_EXP,HASH_MASK_BITS,HASH_WINDOW_SIZE`
//!   (default `buzhash,19,23,21,4095`, item metadata stream `buzhash,15,19,17,4095`);
//! * **fixed** — borg's `ChunkerFixed`, spec `fixed,BLOCK_SIZE[,HEADER_SIZE]`, with sparse-file
//!   support (`SEEK_DATA`/`SEEK_HOLE`);
//! * **fastcdc** — rborg extension (FastCDC 2020 via the `fastcdc` crate), spec
//!   `fastcdc,MIN_EXP,AVG_EXP,MAX_EXP`. borg 1.2.4 cannot parse this spec, and archives made
//!   with it make `borg info`, `borg diff` and `borg recreate` fail (see `docs/chunker.md`).
//!
//! Like borg, every chunk carries an allocation kind ([`ChunkKind`]): data, all-zero data
//! (`CH_ALLOC`, borg passes `data=None`) or a sparse hole (`CH_HOLE`, fixed chunker only).
//!
//! ```
//! use rborg_chunker::{ChunkKind, Chunker, ChunkerParams};
//!
//! let params: ChunkerParams = "buzhash,10,16,12,4095".parse().unwrap();
//! let mut chunker = Chunker::new(&params, -1234).unwrap();
//! let data: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
//!
//! // Streaming over any `Read`, chunk bytes borrowed from an internal reusable buffer:
//! let mut chunks = chunker.chunkify(&data[..]);
//! let mut total = 0;
//! while let Some(chunk) = chunks.next_chunk().unwrap() {
//!     assert_eq!(chunk.offset, total as u64);
//!     if chunk.kind == ChunkKind::Data {
//!         assert_eq!(chunk.data.unwrap().len(), chunk.len);
//!     }
//!     total += chunk.len;
//! }
//! assert_eq!(total, data.len());
//!
//! // Boundaries only, straight from a slice:
//! let infos = rborg_chunker::chunk_slice(&params, -1234, &data).unwrap();
//! assert_eq!(infos.iter().map(|c| c.len).sum::<usize>(), data.len());
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod buzhash;
mod fixed;
mod gear;
mod params;

pub use buzhash::{BuzHash, TABLE_BASE};
pub use fixed::{default_map, sparse_map, MapRange};
pub use gear::gear_seed;
pub use params::{
    BuzhashParams, ChunkerParams, FastCdcParams, FixedParams, ParamsError, HASH_WINDOW_SIZE,
    MAX_DATA_SIZE, MAX_EXP_CEILING, MIN_EXP_FLOOR,
};

use buzhash::{BuzEngine, Cut};
use fixed::FixedState;
use gear::GearEngine;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Allocation kind of a chunk: borg's `CH_DATA`, `CH_ALLOC`, `CH_HOLE` (constants.py), found in
/// the chunk's `meta['allocation']`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChunkKind {
    /// `CH_DATA` (0): regular data; the bytes are available.
    Data,
    /// `CH_ALLOC` (1): read from the input but all zero; borg yields `data=None` and the
    /// archiver stores it as `len` zero bytes.
    Alloc,
    /// `CH_HOLE` (2): a hole of a sparse file (fixed chunker with a sparse map); all zero,
    /// never read.
    Hole,
}

impl ChunkKind {
    /// borg's numeric allocation constant.
    pub fn borg_allocation(self) -> u8 {
        match self {
            ChunkKind::Data => 0,
            ChunkKind::Alloc => 1,
            ChunkKind::Hole => 2,
        }
    }
}

/// A chunk yielded by the chunkers; `data` borrows from the chunker's buffer (streaming) or the
/// input slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Offset of the chunk in the input.
    pub offset: u64,
    /// Length in bytes (borg's `meta['size']`).
    pub len: usize,
    /// Allocation kind (borg's `meta['allocation']`).
    pub kind: ChunkKind,
    /// The bytes for [`ChunkKind::Data`]; `None` for `Alloc`/`Hole` (all zero), as in borg.
    pub data: Option<&'a [u8]>,
}

impl Chunk<'_> {
    /// The boundary and kind without the bytes.
    pub fn info(&self) -> ChunkInfo {
        ChunkInfo {
            offset: self.offset,
            len: self.len,
            kind: self.kind,
        }
    }
}

/// An owned chunk boundary: offset, length and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkInfo {
    /// Offset of the chunk in the input.
    pub offset: u64,
    /// Length in bytes.
    pub len: usize,
    /// Allocation kind.
    pub kind: ChunkKind,
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid chunker parameters.
    #[error("invalid chunker params: {0}")]
    Params(#[from] ParamsError),
    /// Reading or seeking the input failed (shown as the OS error alone: callers say which
    /// file and operation, as borg's `path: read: [Errno 5] ...`).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A file map is only meaningful for the fixed chunker (borg's `ChunkerFixed.chunkify(fmap=)`).
    #[error("a file map can only be used with the fixed chunker")]
    MapNeedsFixed,
}

/// True if every byte of `d` is zero (borg: `zeros.startswith(data)`).
pub fn is_all_zero(d: &[u8]) -> bool {
    let mut blocks = d.chunks_exact(16);
    let mut acc = 0u128;
    for b in &mut blocks {
        // chunks_exact(16) always yields 16-byte slices.
        let mut w = [0u8; 16];
        w.copy_from_slice(b);
        acc |= u128::from_ne_bytes(w);
        if acc != 0 {
            return false;
        }
    }
    acc == 0 && blocks.remainder().iter().all(|&b| b == 0)
}

fn classify(offset: u64, data: &[u8]) -> Chunk<'_> {
    let zero = is_all_zero(data);
    Chunk {
        offset,
        len: data.len(),
        kind: if zero {
            ChunkKind::Alloc
        } else {
            ChunkKind::Data
        },
        data: if zero { None } else { Some(data) },
    }
}

#[derive(Clone, Debug)]
enum Cdc {
    Buz(Box<BuzEngine>),
    Gear(GearEngine),
}

impl Cdc {
    fn find(&mut self, d: &[u8], eof: bool) -> Cut {
        match self {
            Cdc::Buz(e) => e.find(d, eof),
            Cdc::Gear(e) => e.find(d, eof),
        }
    }
    fn max_size(&self) -> usize {
        match self {
            Cdc::Buz(e) => e.max_size(),
            Cdc::Gear(e) => e.max_size(),
        }
    }
    fn reset(&mut self) {
        match self {
            Cdc::Buz(e) => e.reset(),
            Cdc::Gear(e) => e.reset(),
        }
    }
}

#[derive(Clone, Debug)]
enum Engine {
    Cdc(Cdc),
    Fixed(FixedParams),
}

/// A configured chunker (borg's `get_chunker(*params, seed=key.chunk_seed, sparse=...)`).
///
/// Owns the read buffer, so one `Chunker` can be reused for many inputs without reallocating:
/// call [`Chunker::chunkify`] (any `Read`), [`Chunker::chunkify_seekable`] (with a file map),
/// [`Chunker::chunkify_file`] (optionally sparse) or [`Chunker::chunk_slice`] per input.
#[derive(Clone)]
pub struct Chunker {
    params: ChunkerParams,
    engine: Engine,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the buffer (up to 16 MiB) and hash tables are not useful in debug output
        f.debug_struct("Chunker")
            .field("params", &self.params)
            .field("buffer_len", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl Chunker {
    /// Create a chunker for `params` with the key's `chunk_seed` (signed 32-bit, as stored in
    /// borg keys; only buzhash and fastcdc use it).
    pub fn new(params: &ChunkerParams, seed: i32) -> Result<Self, Error> {
        // Re-validate: the fields of ChunkerParams are public and may have been set directly.
        let checked = ChunkerParams::from_parts(Some(params.algorithm()), &params.numbers())?;
        let engine = match checked {
            ChunkerParams::Buzhash(p) => Engine::Cdc(Cdc::Buz(Box::new(BuzEngine::new(&p, seed)))),
            ChunkerParams::FastCdc(p) => Engine::Cdc(Cdc::Gear(GearEngine::new(&p, seed))),
            ChunkerParams::Fixed(p) => Engine::Fixed(p),
        };
        Ok(Chunker {
            params: checked,
            engine,
            buf: Vec::new(),
        })
    }

    /// The parameters this chunker was built with.
    pub fn params(&self) -> &ChunkerParams {
        &self.params
    }

    fn prepare(&mut self) {
        let want = match &self.engine {
            // Twice the max chunk size: refills then read at least max_size bytes at once.
            Engine::Cdc(c) => (2 * c.max_size()).max(1 << 16),
            Engine::Fixed(p) => p.block_size as usize,
        };
        if self.buf.len() != want {
            self.buf = vec![0; want];
        }
        if let Engine::Cdc(c) = &mut self.engine {
            c.reset();
        }
    }

    fn start<R: Read>(
        &mut self,
        reader: R,
        map: Option<Vec<MapRange>>,
        skip: Option<SeekFn<R>>,
    ) -> Result<Chunks<'_, R>, Error> {
        self.prepare();
        let fixed = match (&self.engine, map) {
            (Engine::Fixed(p), map) => {
                Some(FixedState::new(p, map.unwrap_or_else(|| default_map(p))))
            }
            (Engine::Cdc(_), None) => None,
            (Engine::Cdc(_), Some(_)) => return Err(Error::MapNeedsFixed),
        };
        Ok(Chunks {
            chunker: self,
            reader,
            seek: skip,
            start: 0,
            end: 0,
            eof: false,
            offset: 0,
            fixed,
        })
    }

    /// Chunk a stream (borg's `chunkify(fd)`). Works with pipes and other unseekable input; the
    /// fixed chunker uses the non-sparse map.
    pub fn chunkify<R: Read>(&mut self, reader: R) -> Chunks<'_, R> {
        match self.start(reader, None, None) {
            Ok(c) => c,
            // start() only fails for a map, and none was given.
            Err(_) => unreachable!("chunkify without a map cannot fail"),
        }
    }

    /// Chunk a seekable stream, optionally with an explicit file map (borg's
    /// `ChunkerFixed.chunkify(fd, fmap=...)`; fixed chunker only). Holes and gaps are seeked over.
    pub fn chunkify_seekable<R: Read + Seek>(
        &mut self,
        reader: R,
        map: Option<Vec<MapRange>>,
    ) -> Result<Chunks<'_, R>, Error> {
        self.start(reader, map, Some(seek_fn::<R>))
    }

    /// Chunk an open file. With `sparse` and the fixed chunker, holes are detected with
    /// `SEEK_HOLE`/`SEEK_DATA` and yielded as [`ChunkKind::Hole`] without reading them (borg's
    /// `--sparse`); if that fails the whole file is read, like borg. `sparse` is ignored by the
    /// content-defined chunkers, as in borg.
    pub fn chunkify_file<'f>(
        &mut self,
        file: &'f File,
        sparse: bool,
    ) -> Result<Chunks<'_, &'f File>, Error> {
        let map = match &self.engine {
            Engine::Fixed(p) if sparse => sparse_file_map(p, file),
            _ => None,
        };
        self.start(file, map, Some(seek_fn::<&File>))
    }

    /// Chunk an in-memory buffer; chunks borrow from `data` (no copying).
    pub fn chunk_slice<'a>(&'a mut self, data: &'a [u8]) -> SliceChunks<'a> {
        if let Engine::Cdc(c) = &mut self.engine {
            c.reset();
        }
        let fixed = match &self.engine {
            Engine::Fixed(p) => Some(FixedState::new(p, default_map(p))),
            Engine::Cdc(_) => None,
        };
        SliceChunks {
            engine: &mut self.engine,
            data,
            pos: 0,
            fixed,
        }
    }
}

/// borg's fixed-chunker map for `sparse=True`: header range, then the sparse map of the body.
fn sparse_file_map(p: &FixedParams, mut file: &File) -> Option<Vec<MapRange>> {
    let h = u64::from(p.header_size);
    if h > 0 {
        let body = (|| {
            file.seek(SeekFrom::Start(h))?;
            let body = sparse_map(file);
            file.seek(SeekFrom::Start(0))?;
            body
        })()
        .ok()?;
        let mut map = vec![MapRange::new(0, h, true)];
        map.extend(body);
        Some(map)
    } else {
        sparse_map(file).ok()
    }
}

/// Bytes requested per `read` by the content-defined chunkers.
const READ_PIECE: usize = 1 << 18;

type SeekFn<R> = fn(&mut R, SeekFrom) -> io::Result<u64>;

fn seek_fn<R: Seek>(r: &mut R, pos: SeekFrom) -> io::Result<u64> {
    r.seek(pos)
}

/// Read until `buf` is full or EOF; returns the byte count (borg reads whole blocks the same way
/// through buffered file objects).
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Chunks of one input, produced by [`Chunker::chunkify`] & co.
///
/// A lending iterator: each chunk borrows the chunker's buffer until the next call to
/// [`Chunks::next_chunk`].
pub struct Chunks<'c, R> {
    chunker: &'c mut Chunker,
    reader: R,
    seek: Option<SeekFn<R>>,
    /// Buffered bytes are `buf[start..end]`; `buf[start]` is at input offset `offset`.
    start: usize,
    end: usize,
    eof: bool,
    offset: u64,
    fixed: Option<FixedState>,
}

impl<R: Read> Chunks<'_, R> {
    /// The next chunk, or `None` at the end of the input.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk<'_>>, Error> {
        if self.fixed.is_some() {
            return self.next_fixed();
        }
        let n = loop {
            let d = &self.chunker.buf[self.start..self.end];
            let Engine::Cdc(cdc) = &mut self.chunker.engine else {
                unreachable!("fixed state is set for the fixed engine")
            };
            match cdc.find(d, self.eof) {
                Cut::At(n) => break n,
                Cut::NeedMore => self.fill()?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let s = self.start;
        self.start += n;
        let offset = self.offset;
        self.offset += n as u64;
        Ok(Some(classify(offset, &self.chunker.buf[s..s + n])))
    }

    /// Make room at the end of the buffer and read once.
    fn fill(&mut self) -> Result<(), Error> {
        if self.eof {
            return Ok(());
        }
        // Read in pieces that stay cache-resident until they are hashed. Compact (move the
        // partial chunk to the front) when the tail has no room for a full piece, and also
        // whenever the partial chunk is at most one piece (right after a cut): that moves few
        // bytes and keeps the buffer's working area at the front.
        let cap = self.chunker.buf.len();
        let piece = READ_PIECE.min(cap / 2);
        if self.start > 0 && (cap - self.end < piece || self.end - self.start <= piece) {
            self.chunker.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let stop = (self.end + piece).min(cap);
        loop {
            match self.reader.read(&mut self.chunker.buf[self.end..stop]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            return Ok(());
        }
    }

    fn next_fixed(&mut self) -> Result<Option<Chunk<'_>>, Error> {
        let Some(state) = self.fixed.as_mut() else {
            return Ok(None);
        };
        loop {
            let Some(step) = state.step() else {
                return Ok(None);
            };
            if let Some(pos) = step.seek_to {
                match self.seek {
                    Some(seek) => {
                        seek(&mut self.reader, SeekFrom::Start(pos))?;
                    }
                    None => {
                        return Err(io::Error::new(
                            io::ErrorKind::Unsupported,
                            "file map with gaps needs a seekable input",
                        )
                        .into())
                    }
                }
            }
            let offset = state.offset;
            if step.is_data {
                let got = read_full(&mut self.reader, &mut self.chunker.buf[..step.wanted])?;
                state.advance(got as u64, step.wanted);
                if got > 0 {
                    return Ok(Some(classify(offset, &self.chunker.buf[..got])));
                }
            } else {
                let Some(seek) = self.seek else {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "holes need a seekable input",
                    )
                    .into());
                };
                // borg: pos = seek(wanted, SEEK_CUR); got = pos - offset.
                let pos = seek(&mut self.reader, SeekFrom::Current(step.wanted as i64))?;
                let got = pos.saturating_sub(offset);
                state.advance(got, step.wanted);
                if got > 0 {
                    return Ok(Some(Chunk {
                        offset,
                        len: usize::try_from(got).unwrap_or(usize::MAX),
                        kind: ChunkKind::Hole,
                        data: None,
                    }));
                }
            }
        }
    }

    /// Give back the reader.
    pub fn into_inner(self) -> R {
        self.reader
    }
}

/// Chunks of an in-memory slice ([`Chunker::chunk_slice`]); a plain `Iterator`.
pub struct SliceChunks<'a> {
    engine: &'a mut Engine,
    data: &'a [u8],
    pos: usize,
    fixed: Option<FixedState>,
}

impl<'a> Iterator for SliceChunks<'a> {
    type Item = Chunk<'a>;

    fn next(&mut self) -> Option<Chunk<'a>> {
        let data: &'a [u8] = self.data;
        if let Some(state) = self.fixed.as_mut() {
            let step = state.step()?;
            // The default map has no gaps or holes.
            let start = usize::try_from(state.offset)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let got = step.wanted.min(data.len() - start);
            state.advance(got as u64, step.wanted);
            return (got > 0).then(|| classify(start as u64, &data[start..start + got]));
        }
        let Engine::Cdc(cdc) = &mut *self.engine else {
            return None;
        };
        let rest = &data[self.pos..];
        let n = match cdc.find(rest, true) {
            Cut::At(n) => n,
            Cut::NeedMore => rest.len(), // unreachable with eof = true
        };
        if n == 0 {
            return None;
        }
        let start = self.pos;
        self.pos += n;
        Some(classify(start as u64, &data[start..start + n]))
    }
}

/// Boundaries of `data` chunked with `params` and `seed`.
pub fn chunk_slice(
    params: &ChunkerParams,
    seed: i32,
    data: &[u8],
) -> Result<Vec<ChunkInfo>, Error> {
    let mut chunker = Chunker::new(params, seed)?;
    let out = chunker.chunk_slice(data).map(|c| c.info()).collect();
    Ok(out)
}

/// Boundaries of the file at `path` (read in a streaming fashion; `sparse` as for
/// [`Chunker::chunkify_file`]).
pub fn chunk_file(
    params: &ChunkerParams,
    seed: i32,
    path: impl AsRef<Path>,
    sparse: bool,
) -> Result<Vec<ChunkInfo>, Error> {
    let mut chunker = Chunker::new(params, seed)?;
    let file = File::open(path)?;
    let mut chunks = chunker.chunkify_file(&file, sparse)?;
    let mut out = Vec::new();
    while let Some(c) = chunks.next_chunk()? {
        out.push(c.info());
    }
    Ok(out)
}
