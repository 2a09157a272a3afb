//! Compression with borg 1.2.4's envelope (`src/borg/compress.pyx`:
//! `CNONE`, `LZ4`, `ZSTD`, `ZLIB`, `LZMA`, `Auto`, `ObfuscateSize`).

use rand::Rng;

use crate::error::CompressError;
use crate::spec::{CompressionSpec, LzmaLevel, ObfuscateLevel, ZlibLevel, ZstdLevel};
use crate::{CompressionType, MAX_DATA_SIZE};

/// Compresses chunks according to a [`CompressionSpec`], writing borg's
/// 2-byte type header (except for zlib, whose own header serves as the ID).
///
/// Like borg's deciding compressors, `lz4`, `zstd` and `lzma` store the data
/// uncompressed (`none`) when compression does not make it smaller; `zlib`
/// always emits a zlib stream.
///
/// The compressor is stateless, `Send + Sync` and cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Compressor {
    spec: CompressionSpec,
}

impl Compressor {
    /// A compressor for `spec`.
    pub fn new(spec: CompressionSpec) -> Self {
        Compressor { spec }
    }

    /// The spec this compressor implements.
    pub fn spec(&self) -> &CompressionSpec {
        &self.spec
    }

    /// Compresses `data` into a new buffer (header included).
    ///
    /// # Panics
    ///
    /// Only if the C libraries fail internally (out of memory) or an
    /// obfuscated chunk exceeds 4 GiB; use [`Compressor::try_compress_into`]
    /// to handle those as errors.
    pub fn compress(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = self.try_compress_into(data, &mut out) {
            panic!("rborg-compress: {e}");
        }
        out
    }

    /// Appends the compressed form of `data` (header included) to `out`,
    /// using the thread-local RNG for obfuscation padding. Reusing `out`
    /// across chunks avoids per-chunk allocations.
    pub fn try_compress_into(&self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
        self.compress_with_rng(data, out, &mut rand::thread_rng())
    }

    /// Like [`Compressor::try_compress_into`] with an explicit RNG (only
    /// `obfuscate` consumes randomness), e.g. a seeded one for reproducible tests.
    pub fn compress_with_rng<R: Rng + ?Sized>(
        &self,
        data: &[u8],
        out: &mut Vec<u8>,
        rng: &mut R,
    ) -> Result<(), CompressError> {
        compress_spec(&self.spec, data, out, rng).map(|_| ())
    }

    /// borg's `compressor.decide(data).name`, which `borg recreate` compares
    /// with `Compressor.detect(stored_chunk).name` to skip chunks that are
    /// already compressed "the way we want".
    ///
    /// Mirrors borg 1.2.4 exactly, quirks included: `none`, `zlib` and
    /// `obfuscate` return their own name; `lz4`, `zstd`, `lzma` return their
    /// name or `"none"` depending on whether compressing shrinks `data`; `auto`
    /// runs only the lz4 trial and returns `"lz4"`/`"none"`, or, when lz4
    /// reaches the 0.97 ratio, the *undecided* name of its inner spec (so
    /// `auto,zstd` says `"zstd"` even if zstd would then lose to lz4, and
    /// `auto,auto,X` says `"auto"`, which matches no stored chunk).
    pub fn decide(&self, data: &[u8]) -> Result<&'static str, CompressError> {
        let mut scratch = Vec::new();
        match &self.spec {
            CompressionSpec::None | CompressionSpec::Zlib(_) | CompressionSpec::Obfuscate(..) => {
                Ok(self.spec.name())
            }
            CompressionSpec::Lz4 => Ok(compress_lz4(data, &mut scratch)?.name()),
            CompressionSpec::Zstd(level) => Ok(compress_zstd(data, *level, &mut scratch)?.name()),
            CompressionSpec::Lzma(level) => Ok(compress_lzma(data, *level, &mut scratch)?.name()),
            CompressionSpec::Auto(inner) => {
                let cheap = compress_lz4(data, &mut scratch)?;
                if (scratch.len() as f64 / (data.len() as f64 + 2.0)) < 0.97 {
                    Ok(inner.name())
                } else {
                    Ok(cheap.name())
                }
            }
        }
    }
}

/// Compresses `data` per `spec`, appending to `out`; returns the type whose
/// header ended up in front (`Zlib` for zlib's own header).
fn compress_spec<R: Rng + ?Sized>(
    spec: &CompressionSpec,
    data: &[u8],
    out: &mut Vec<u8>,
    rng: &mut R,
) -> Result<CompressionType, CompressError> {
    match spec {
        CompressionSpec::None => {
            store_none(data, out);
            Ok(CompressionType::None)
        }
        CompressionSpec::Lz4 => compress_lz4(data, out),
        CompressionSpec::Zstd(level) => compress_zstd(data, *level, out),
        CompressionSpec::Zlib(level) => {
            compress_zlib(data, *level, out)?;
            Ok(CompressionType::Zlib)
        }
        CompressionSpec::Lzma(level) => compress_lzma(data, *level, out),
        CompressionSpec::Auto(inner) => compress_auto(inner, data, out, rng),
        CompressionSpec::Obfuscate(level, inner) => {
            compress_obfuscated(*level, inner, data, out, rng)?;
            Ok(CompressionType::Obfuscate)
        }
    }
}

/// `CNONE.compress`: the `00 00` header followed by the data.
fn store_none(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(2 + data.len());
    out.extend_from_slice(&CompressionType::None.header());
    out.extend_from_slice(data);
}

/// Replaces everything from `start` on with the `none` encoding of `data`.
fn fall_back_to_none(data: &[u8], out: &mut Vec<u8>, start: usize) -> CompressionType {
    out.truncate(start);
    store_none(data, out);
    CompressionType::None
}

/// `LZ4._decide`/`decide_compress`: raw LZ4 block (no size prefix) behind
/// `01 00`, or `none` unless strictly smaller than the input.
///
/// Compression uses liblz4's `LZ4_compress_default` (the `lz4` crate), the function borg calls,
/// so rborg stores the same bytes (and sizes) as borg; `lz4_flex` makes equally valid blocks
/// that are often a byte longer. Decompression of untrusted data stays in safe Rust
/// (`lz4_flex`, see `decompress.rs`). docs/compress.md has the measurements.
fn compress_lz4(data: &[u8], out: &mut Vec<u8>) -> Result<CompressionType, CompressError> {
    let start = out.len();
    let bound =
        lz4::block::compress_bound(data.len()).map_err(|e| CompressError::Lz4(e.to_string()))?;
    out.resize(start + 2 + bound, 0);
    out[start..start + 2].copy_from_slice(&CompressionType::Lz4.header());
    let n = lz4::block::compress_to_buffer(data, None, false, &mut out[start + 2..])
        .map_err(|e| CompressError::Lz4(e.to_string()))?;
    if n < data.len() {
        out.truncate(start + 2 + n);
        Ok(CompressionType::Lz4)
    } else {
        Ok(fall_back_to_none(data, out, start))
    }
}

/// Levels above this ("ultra" territory) can grow a compression context to
/// hundreds of MiB; those use a one-shot context instead of the cached one.
const MAX_CACHED_ZSTD_LEVEL: u8 = 19;

thread_local! {
    /// Per-thread zstd compression context, reused across chunks: saves the
    /// context allocation and table setup that `ZSTD_compress` pays per call.
    /// `ZSTD_compressCCtx` with a level produces the same frame as `ZSTD_compress`.
    static ZSTD_CCTX: std::cell::RefCell<Option<zstd::zstd_safe::CCtx<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `ZSTD._decide`: one `ZSTD_compress` frame (content size recorded, which
/// borg's decompressor requires) behind `03 00`, or `none` unless smaller.
fn compress_zstd(
    data: &[u8],
    level: ZstdLevel,
    out: &mut Vec<u8>,
) -> Result<CompressionType, CompressError> {
    let start = out.len();
    let bound = zstd::zstd_safe::compress_bound(data.len());
    out.resize(start + 2 + bound, 0);
    out[start..start + 2].copy_from_slice(&CompressionType::Zstd.header());
    let level_i = i32::from(level.get());
    let dst = &mut out[start + 2..];
    let res = if level.get() <= MAX_CACHED_ZSTD_LEVEL {
        ZSTD_CCTX.with(|cell| match cell.try_borrow_mut() {
            Ok(mut slot) => {
                if slot.is_none() {
                    *slot = zstd::zstd_safe::CCtx::try_create();
                }
                match slot.as_mut() {
                    Some(cctx) => cctx.compress(dst, data, level_i),
                    None => zstd::zstd_safe::compress(dst, data, level_i),
                }
            }
            Err(_) => zstd::zstd_safe::compress(dst, data, level_i),
        })
    } else {
        zstd::zstd_safe::compress(dst, data, level_i)
    };
    let n = res.map_err(|code| CompressError::Zstd(zstd::zstd_safe::get_error_name(code)))?;
    if n < data.len() {
        out.truncate(start + 2 + n);
        Ok(CompressionType::Zstd)
    } else {
        Ok(fall_back_to_none(data, out, start))
    }
}

/// `ZLIB.compress`: Python's `zlib.compress(data, level)` — a complete zlib
/// stream with *no* borg header (its CMF/FLG bytes double as the type ID) and
/// no "only if smaller" decision.
fn compress_zlib(data: &[u8], level: ZlibLevel, out: &mut Vec<u8>) -> Result<(), CompressError> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    let mut enc = Compress::new(Compression::new(u32::from(level.get())), true);
    // zlib's compressBound(): with room for the worst case, deflate finishes
    // in a single call. (Output equals Python's zlib.compress for levels 1..9;
    // at level 0 the stored-block boundaries depend on how much output room
    // each deflate() call gets, which differs from CPython's buffer growth.)
    let n = data.len();
    out.reserve(n + (n >> 12) + (n >> 14) + (n >> 25) + 13);
    loop {
        if out.len() == out.capacity() {
            out.reserve(n / 2 + 64);
        }
        let consumed = usize::try_from(enc.total_in()).unwrap_or(data.len());
        let input = data.get(consumed..).unwrap_or(&[]);
        match enc.compress_vec(input, out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => return Ok(()),
            Ok(Status::Ok | Status::BufError) => {}
            Err(e) => return Err(CompressError::Zlib(e.to_string())),
        }
    }
}

/// `LZMA._decide`: `lzma.compress(data, preset=level, check=CHECK_NONE)`,
/// i.e. an .xz container with integrity check "none", behind `02 00`, or
/// `none` unless strictly smaller than the input.
fn compress_lzma(
    data: &[u8],
    level: LzmaLevel,
    out: &mut Vec<u8>,
) -> Result<CompressionType, CompressError> {
    use xz2::stream::{Action, Check, Status, Stream};
    let start = out.len();
    out.extend_from_slice(&CompressionType::Lzma.header());
    let mut stream = Stream::new_easy_encoder(u32::from(level.get()), Check::None)?;
    loop {
        if out.len() == out.capacity() {
            out.reserve(data.len() / 4 + 4096);
        }
        let consumed = usize::try_from(stream.total_in()).unwrap_or(data.len());
        let input = data.get(consumed..).unwrap_or(&[]);
        match stream.process_vec(input, out, Action::Finish)? {
            Status::StreamEnd => break,
            Status::Ok | Status::GetCheck | Status::MemNeeded => {}
        }
    }
    if out.len() - start - 2 < data.len() {
        Ok(CompressionType::Lzma)
    } else {
        Ok(fall_back_to_none(data, out, start))
    }
}

/// `Auto.compress`: lz4 trial; if it (header included) reaches less than 97 %
/// of `len(data) + 2`, also try `inner` and keep it only if it is below 99 %
/// of the lz4 result. Otherwise keep the lz4 trial's output (lz4 or none).
fn compress_auto<R: Rng + ?Sized>(
    inner: &CompressionSpec,
    data: &[u8],
    out: &mut Vec<u8>,
    rng: &mut R,
) -> Result<CompressionType, CompressError> {
    let start = out.len();
    let cheap_type = compress_lz4(data, out)?;
    let cheap_len = out.len() - start;
    // Python: len(compressed_data) / (len(data) + 2) in double precision.
    let ratio = cheap_len as f64 / (data.len() as f64 + 2.0);
    if ratio >= 0.97 {
        return Ok(cheap_type);
    }
    // borg's decider returns the spec's own compressor instance here, which is
    // never the module-level LZ4/NONE singleton, so the expensive compressor
    // always runs (even for `auto,lz4`). Compress behind the lz4 result and
    // move it down if it wins, to avoid a second buffer.
    let exp_start = out.len();
    let exp_type = compress_spec(inner, data, out, rng)?;
    let exp_len = out.len() - exp_start;
    if (exp_len as f64 / cheap_len as f64) < 0.99 {
        out.copy_within(exp_start.., start);
        out.truncate(start + exp_len);
        Ok(exp_type)
    } else {
        out.truncate(exp_start);
        Ok(cheap_type)
    }
}

/// Number of zero bytes `ObfuscateSize` appends after a `compr_size`-byte
/// payload, given a uniform sample `u` in `[0, 1)` (Python's `random.random()`).
///
/// * SPEC 1..=6 (`_relative_random_reciprocal_obfuscate`):
///   `int(compr_size * (0.001 * 10**SPEC) / max(0.0001, u))`.
/// * SPEC 110..=123 (`_random_padding_obfuscate`): `int(2**(SPEC-100) * u)`.
///
/// Then clamped like borg to at most `MAX_DATA_SIZE - 1024 - compr_size`
/// (borg would fail on a negative bound; we pad nothing instead).
pub fn obfuscation_padding(level: ObfuscateLevel, compr_size: usize, u: f64) -> usize {
    let spec = level.get();
    let raw: f64 = if spec <= 6 {
        let factor = 0.001 * 10f64.powi(i32::from(spec));
        let r = u.max(0.0001);
        compr_size as f64 * (factor / r)
    } else {
        let max_padding = 2f64.powi(i32::from(spec) - 100);
        max_padding * u
    };
    // Python int() truncates toward zero; `as` saturates and maps NaN to 0.
    let addtl = raw.trunc() as u64;
    let cap = MAX_DATA_SIZE
        .saturating_sub(1024)
        .saturating_sub(compr_size) as u64;
    addtl.min(cap) as usize
}

/// `ObfuscateSize.compress`: `04 00`, big-endian u32 inner size, the inner
/// compressed data (with its own header), then zero padding.
fn compress_obfuscated<R: Rng + ?Sized>(
    level: ObfuscateLevel,
    inner: &CompressionSpec,
    data: &[u8],
    out: &mut Vec<u8>,
    rng: &mut R,
) -> Result<(), CompressError> {
    let start = out.len();
    out.extend_from_slice(&CompressionType::Obfuscate.header());
    out.extend_from_slice(&[0; 4]);
    compress_spec(inner, data, out, rng)?;
    let compr_size = out.len() - start - 6;
    let size32 =
        u32::try_from(compr_size).map_err(|_| CompressError::ObfuscateTooLarge(compr_size))?;
    out[start + 2..start + 6].copy_from_slice(&size32.to_be_bytes());
    let padding = obfuscation_padding(level, compr_size, rng.gen::<f64>());
    out.resize(out.len() + padding, 0);
    Ok(())
}
