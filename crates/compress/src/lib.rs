//! borg 1.2.4 compatible chunk compression for rborg.
//!
//! Implements the compression layer of borg's repository objects
//! (`src/borg/compress.pyx`; docs: `internals/data-structures` "Compression"):
//! every compressed chunk starts with a 2-byte type ID that lets the reader
//! pick the decompressor without any other metadata:
//!
//! | spec                    | header            | payload                                  |
//! |-------------------------|-------------------|------------------------------------------|
//! | `none`                  | `00 00`           | the data                                 |
//! | `lz4`                   | `01 00`           | raw LZ4 block, no size                   |
//! | `lzma[,0..9]`           | `02 00`           | .xz stream, check type "none"            |
//! | `zstd[,1..22]`          | `03 00`           | one zstd frame with content size         |
//! | `obfuscate,SPEC,C[,L]`  | `04 00`           | u32 BE size, inner blob, zero padding    |
//! | `zlib[,0..9]`           | *(zlib's CMF/FLG)*| a bare zlib stream (legacy: no borg ID)  |
//! | `auto,C[,L]`            | whichever wins    | lz4 trial picks none / lz4 / C           |
//!
//! lz4, zstd and lzma fall back to `none` when the result would not be
//! smaller than the input, exactly like borg's deciding compressors.
//!
//! ```
//! use rborg_compress::{decompress, CompressionSpec, MAX_DATA_SIZE};
//!
//! let spec: CompressionSpec = "auto,zstd,10".parse()?;
//! let compressor = spec.compressor();
//! let data = b"hello hello hello hello hello hello hello hello".repeat(10);
//! let blob = compressor.compress(&data);
//! assert_eq!(&blob[..2], &[0x03, 0x00]); // zstd won the auto heuristic
//! assert_eq!(decompress(&blob, Some(data.len()), MAX_DATA_SIZE)?, data);
//! assert_eq!(spec.to_string(), "auto,zstd,10");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod compressor;
mod decompress;
mod error;
mod spec;

pub use compressor::{obfuscation_padding, Compressor};
pub use decompress::{
    decompress, decompress_default, decompressed_len, detect, lz4_block_decompressed_len,
};
pub use error::{CompressError, DecompressError, SpecError};
pub use spec::{CompressionSpec, LzmaLevel, ObfuscateLevel, ZlibLevel, ZstdLevel};

/// borg's `MAX_DATA_SIZE` (`src/borg/constants.py`): the largest plaintext a
/// repository object can carry (20 MiB minus the 41-byte PUT header). The
/// natural decompression limit.
pub const MAX_DATA_SIZE: usize = 20_971_479;

/// The compressor a blob was written with, as told by its header
/// (`Compressor.detect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompressionType {
    /// `CNONE`, ID `00 00`.
    None,
    /// `LZ4`, ID `01 00`.
    Lz4,
    /// `LZMA`, ID `02 00`.
    Lzma,
    /// `ZSTD`, ID `03 00`.
    Zstd,
    /// `ObfuscateSize`, ID `04 00`.
    Obfuscate,
    /// `ZLIB`: detected by the zlib header; its nominal ID `08 00` is never written.
    Zlib,
}

impl CompressionType {
    /// The 2-byte ID borg writes in front of the payload (for zlib, the
    /// reserved-but-unused `08 00`; real zlib blobs start with their own header).
    pub const fn header(self) -> [u8; 2] {
        match self {
            CompressionType::None => [0x00, 0x00],
            CompressionType::Lz4 => [0x01, 0x00],
            CompressionType::Lzma => [0x02, 0x00],
            CompressionType::Zstd => [0x03, 0x00],
            CompressionType::Obfuscate => [0x04, 0x00],
            CompressionType::Zlib => [0x08, 0x00],
        }
    }

    /// borg's name for the compressor (`CompressorBase.name`).
    pub const fn name(self) -> &'static str {
        match self {
            CompressionType::None => "none",
            CompressionType::Lz4 => "lz4",
            CompressionType::Lzma => "lzma",
            CompressionType::Zstd => "zstd",
            CompressionType::Obfuscate => "obfuscate",
            CompressionType::Zlib => "zlib",
        }
    }
}
