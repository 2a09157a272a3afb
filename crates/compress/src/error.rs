//! Typed errors of the compression crate.

/// A `--compression` spec string that borg 1.2.4 would reject (borg raises a
/// bare `ValueError` in `CompressionSpec.__init__`; we say why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The first value is not a known compressor name (includes the empty spec).
    #[error("unknown compression algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// Too many or too few comma-separated values for this algorithm.
    #[error("wrong number of values ({count}) in {algorithm} compression spec")]
    WrongArgumentCount {
        /// Algorithm whose values were miscounted.
        algorithm: &'static str,
        /// Number of comma-separated values seen at this nesting level.
        count: usize,
    },
    /// The level is not an integer (Python `int()` would fail).
    #[error("invalid {algorithm} level {value:?}: not an integer")]
    InvalidLevel {
        /// Algorithm the level belongs to.
        algorithm: &'static str,
        /// The offending text.
        value: String,
    },
    /// The level is an integer outside borg's accepted range.
    #[error("{algorithm} level {level} out of range {min}..={max}")]
    LevelOutOfRange {
        /// Algorithm the level belongs to.
        algorithm: &'static str,
        /// The parsed level.
        level: i64,
        /// Smallest accepted level.
        min: i64,
        /// Largest accepted level.
        max: i64,
    },
    /// The obfuscation SPEC is outside `1..=6` and `110..=123`.
    #[error("obfuscate spec {level} out of range (1..=6 or 110..=123)")]
    ObfuscateLevelOutOfRange {
        /// The parsed SPEC value.
        level: i64,
    },
}

/// Why compressed data could not be decompressed.
///
/// borg 1.2.4 raises `DecompressionError` (an `IntegrityError`) for most of
/// these and a `ValueError`/`struct.error` for the header problems; all are
/// typed here.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    /// Fewer than the 2 header bytes every compressed blob starts with.
    #[error("compressed data too short for a compression header ({len} bytes)")]
    TooShort {
        /// Length of the data.
        len: usize,
    },
    /// The 2-byte header matches no compressor (`Compressor.detect` fails).
    #[error("no decompressor for this data found: header {0:02x?}")]
    UnknownHeader([u8; 2]),
    /// The output would exceed the caller's limit (decompression-bomb guard).
    #[error("decompressed data exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The LZ4 block is malformed.
    #[error("lz4 decompress failed: {0}")]
    Lz4(String),
    /// zstd data is not a zstd frame (`ZSTD_CONTENTSIZE_ERROR`).
    #[error("zstd get size failed: data was not compressed by zstd")]
    ZstdNotZstd,
    /// The zstd frame does not record its content size; borg refuses these too.
    #[error("zstd get size failed: original size unknown")]
    ZstdUnknownSize,
    /// libzstd reported an error while decompressing.
    #[error("zstd decompress failed: {0}")]
    Zstd(&'static str),
    /// The zstd output length differs from the frame's declared content size.
    #[error("zstd decompress failed: size mismatch (declared {declared}, got {actual})")]
    ZstdSizeMismatch {
        /// Content size declared in the frame header.
        declared: u64,
        /// Bytes actually produced.
        actual: usize,
    },
    /// The zlib stream is corrupt.
    #[error("zlib decompress failed: {0}")]
    Zlib(String),
    /// The zlib stream ends before its end marker.
    #[error("zlib decompress failed: incomplete or truncated stream")]
    ZlibTruncated,
    /// liblzma reported an error.
    #[error("lzma decompress failed: {0}")]
    Lzma(#[from] xz2::stream::Error),
    /// The xz/lzma stream ends before its end marker.
    #[error("lzma decompress failed: compressed data ended before the end-of-stream marker")]
    LzmaTruncated,
    /// The obfuscation envelope is shorter than its 4-byte size header.
    #[error("obfuscated data too short for its size header ({len} bytes)")]
    ObfuscateHeader {
        /// Bytes available after the `04 00` header.
        len: usize,
    },
    /// The obfuscation size header points past the end of the data.
    #[error("obfuscated data truncated: header says {declared} bytes, {available} present")]
    ObfuscateTruncated {
        /// Size from the header.
        declared: usize,
        /// Bytes actually present after the size header.
        available: usize,
    },
}

/// Why compression failed. Only reachable for resource exhaustion inside the
/// C libraries or for inputs borg could not store either (over 4 GiB inside
/// an obfuscation envelope).
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// libzstd reported an error.
    #[error("zstd compress failed: {0}")]
    Zstd(&'static str),
    /// liblzma reported an error.
    #[error("lzma compress failed: {0}")]
    Lzma(#[from] xz2::stream::Error),
    /// The zlib (miniz) encoder reported an error.
    #[error("zlib compress failed: {0}")]
    Zlib(String),
    /// liblz4 refused the input (larger than 2 GiB) or the bound-sized buffer (cannot happen).
    #[error("lz4 compress failed: {0}")]
    Lz4(String),
    /// The inner compressed size does not fit obfuscation's 32-bit size header.
    #[error("compressed size {0} does not fit the 32-bit obfuscation header")]
    ObfuscateTooLarge(usize),
}
