//! borg's fixed-size chunker (`ChunkerFixed` in borg 1.2.4 `chunker.pyx`) and its sparse-file
//! map (`sparsemap`, built with `SEEK_DATA`/`SEEK_HOLE`).
//!
//! The input is described by a *file map*: a list of ranges `(start, len, is_data)`. Every range
//! is cut into blocks of `block_size` starting at the range start (the last block of a range may
//! be shorter). Data blocks are read; all-zero data blocks are reported as
//! [`ChunkKind::Alloc`](crate::ChunkKind::Alloc); hole ranges are seeked over and reported as
//! [`ChunkKind::Hole`](crate::ChunkKind::Hole). A short read ends the input. Without a sparse
//! map borg uses `[(0, header, data), (header, 2^62, data)]` (or just `[(0, 2^62, data)]`).

use crate::params::FixedParams;
use std::fs::File;
use std::io;

/// One range of a file map: `start` offset, `len` bytes, `is_data` (false: a hole).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRange {
    /// Absolute start offset in the file.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// `true` for a data range, `false` for a hole.
    pub is_data: bool,
}

impl MapRange {
    /// Convenience constructor.
    pub fn new(start: u64, len: u64, is_data: bool) -> Self {
        MapRange {
            start,
            len,
            is_data,
        }
    }
}

/// borg's "whole file is data" length for the fake map (`2 ** 62`).
const ENDLESS: u64 = 1 << 62;

/// The map borg uses when it does not (or cannot) do sparse processing.
pub fn default_map(p: &FixedParams) -> Vec<MapRange> {
    let h = u64::from(p.header_size);
    if h > 0 {
        vec![MapRange::new(0, h, true), MapRange::new(h, ENDLESS, true)]
    } else {
        vec![MapRange::new(0, ENDLESS, true)]
    }
}

/// What the fixed chunker must do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    /// Seek to this absolute offset first (a gap in the map).
    pub seek_to: Option<u64>,
    /// Bytes wanted for this block.
    pub wanted: usize,
    /// Data range (read) or hole (seek over).
    pub is_data: bool,
}

/// Walks the file map block by block, mirroring `ChunkerFixed.chunkify`.
#[derive(Clone, Debug)]
pub(crate) struct FixedState {
    block: u64,
    map: Vec<MapRange>,
    next_range: usize,
    left: u64,
    is_data: bool,
    /// Offset as borg tracks it (starts at 0, jumps to range starts).
    pub offset: u64,
    done: bool,
}

impl FixedState {
    pub(crate) fn new(p: &FixedParams, map: Vec<MapRange>) -> Self {
        FixedState {
            block: u64::from(p.block_size),
            map,
            next_range: 0,
            left: 0,
            is_data: true,
            offset: 0,
            done: false,
        }
    }

    /// Next block to produce, or `None` when the map or the input is exhausted.
    pub(crate) fn step(&mut self) -> Option<Step> {
        if self.done {
            return None;
        }
        let mut seek_to = None;
        while self.left == 0 {
            let Some(r) = self.map.get(self.next_range).copied() else {
                self.done = true;
                return None;
            };
            self.next_range += 1;
            if r.start != self.offset {
                self.offset = r.start;
                seek_to = Some(r.start);
            }
            self.left = r.len;
            self.is_data = r.is_data;
        }
        // block <= MAX_DATA_SIZE, so this fits in usize.
        let wanted = self.left.min(self.block) as usize;
        Some(Step {
            seek_to,
            wanted,
            is_data: self.is_data,
        })
    }

    /// Record that `got` of `wanted` bytes were produced for the last step.
    pub(crate) fn advance(&mut self, got: u64, wanted: usize) {
        self.offset += got;
        self.left = self.left.saturating_sub(got);
        if got < wanted as u64 {
            // borg: "we did not get enough data, looks like EOF."
            self.done = true;
        }
    }
}

/// Build borg's sparse map of `file` from its current position to its end, using
/// `SEEK_HOLE`/`SEEK_DATA` (borg's `sparsemap`). The file position is restored afterwards.
/// Fails (and borg then falls back to the non-sparse map) where seeking does not work.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub fn sparse_map(file: &File) -> io::Result<Vec<MapRange>> {
    use rustix::fs::{seek, SeekFrom};
    use rustix::io::Errno;

    let curr = seek(file, SeekFrom::Current(0))?;
    let file_len = seek(file, SeekFrom::End(0))?;
    seek(file, SeekFrom::Start(curr))?;
    let mut out = Vec::new();
    let mut start = curr;
    let mut want_hole = true; // we look for the end of a data range first
    let result = loop {
        let is_data = want_hole;
        let r = if want_hole {
            seek(file, SeekFrom::Hole(start))
        } else {
            seek(file, SeekFrom::Data(start))
        };
        let end = match r {
            Ok(end) => end,
            Err(Errno::NXIO) => {
                if !is_data && start < file_len {
                    // a hole at the end of the file: SEEK_DATA cannot find the end.
                    out.push(MapRange::new(start, file_len - start, false));
                }
                break Ok(());
            }
            Err(e) => break Err(io::Error::from(e)),
        };
        if end > start {
            out.push(MapRange::new(start, end - start, is_data));
        }
        start = end;
        want_hole = !want_hole;
    };
    seek(file, SeekFrom::Start(curr))?;
    result.map(|()| out)
}

/// Sparse maps need `SEEK_HOLE`/`SEEK_DATA`; elsewhere this reports `Unsupported` and callers
/// fall back to the non-sparse map, like borg when `os.SEEK_HOLE` is missing.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub fn sparse_map(_file: &File) -> io::Result<Vec<MapRange>> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SEEK_HOLE/SEEK_DATA not available",
    ))
}
