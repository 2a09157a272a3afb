//! Decompression with header auto-detection (borg 1.2.4 `Compressor.detect`
//! and the per-class `decompress` methods in `src/borg/compress.pyx`).

use crate::error::DecompressError;
use crate::CompressionType;

/// liblzma memory limit for decoding. borg passes none; every stream borg
/// writes (preset <= 9, 64 MiB dictionary) needs under 70 MiB, and the cap
/// keeps a forged header from making us allocate gigabytes.
const LZMA_MEMLIMIT: u64 = 256 * 1024 * 1024;

/// Growth step for streaming decoders when the output size is unknown.
const GROW_STEP: usize = 256 * 1024;

/// Identifies the compressor of `data` from its first two bytes, in borg's
/// `COMPRESSOR_LIST` order (lz4, zstd, none, zlib, lzma, obfuscate).
///
/// zlib has no borg ID: any pair whose CMF low nibble is 8 (deflate) and
/// whose `(CMF * 256 + FLG) % 31 == 0` is zlib (`ZLIB.detect`).
pub fn detect(data: &[u8]) -> Result<CompressionType, DecompressError> {
    let hdr: [u8; 2] = match data {
        [a, b, ..] => [*a, *b],
        _ => return Err(DecompressError::TooShort { len: data.len() }),
    };
    for ty in [
        CompressionType::Lz4,
        CompressionType::Zstd,
        CompressionType::None,
        CompressionType::Zlib,
        CompressionType::Lzma,
        CompressionType::Obfuscate,
    ] {
        let hit = if ty == CompressionType::Zlib {
            let (cmf, flg) = (u32::from(hdr[0]), u32::from(hdr[1]));
            cmf & 0x0f == 8 && (cmf * 256 + flg) % 31 == 0
        } else {
            hdr == ty.header()
        };
        if hit {
            return Ok(ty);
        }
    }
    Err(DecompressError::UnknownHeader(hdr))
}

/// Decompresses anything borg 1.2.4 writes (and anything [`crate::Compressor`]
/// writes), detecting the compressor from the header.
///
/// * `size_hint`: the expected plaintext size if the caller knows it (e.g.
///   from the chunk list). It only sizes the first allocation; a wrong hint
///   costs time, never correctness. It matters most for lz4, whose raw block
///   does not record its size.
/// * `limit`: maximum plaintext size; anything larger is refused with
///   [`DecompressError::TooLarge`] before it is materialised (decompression-bomb
///   guard). [`crate::MAX_DATA_SIZE`] is borg's natural cap; see
///   [`decompress_default`].
pub fn decompress(
    data: &[u8],
    size_hint: Option<usize>,
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    let mut data = data;
    loop {
        let ty = detect(data)?;
        // Every type but zlib has a 2-byte header; detect() guaranteed 2 bytes.
        let payload = data.get(2..).unwrap_or(&[]);
        return match ty {
            CompressionType::None => {
                if payload.len() > limit {
                    return Err(DecompressError::TooLarge { limit });
                }
                Ok(payload.to_vec())
            }
            CompressionType::Lz4 => decompress_lz4(payload, size_hint, limit),
            CompressionType::Zstd => decompress_zstd(payload, limit),
            CompressionType::Zlib => decompress_zlib(data, size_hint, limit),
            CompressionType::Lzma => decompress_lzma(payload, size_hint, limit),
            CompressionType::Obfuscate => {
                // The inner blob may itself be obfuscated; unwrap layers in
                // this loop (not by recursion) so hostile nesting cannot
                // exhaust the stack.
                data = obfuscated_inner(payload)?;
                continue;
            }
        };
    }
}

/// The inner blob of an obfuscated payload (`ObfuscateSize.decompress`: u32 BE size, inner
/// blob, ignored padding). borg slices silently (a short blob is passed on truncated); we
/// refuse it, since borg itself never writes one.
fn obfuscated_inner(payload: &[u8]) -> Result<&[u8], DecompressError> {
    let (size, rest) = match payload {
        [a, b, c, d, rest @ ..] => (u32::from_be_bytes([*a, *b, *c, *d]) as usize, rest),
        _ => return Err(DecompressError::ObfuscateHeader { len: payload.len() }),
    };
    rest.get(..size).ok_or(DecompressError::ObfuscateTruncated {
        declared: size,
        available: rest.len(),
    })
}

/// The plaintext size [`decompress`] would produce from `data`, where the data tells it
/// without decoding: the payload of `none`, the content size a zstd frame declares, the
/// lengths in an LZ4 block's sequence headers ([`lz4_block_decompressed_len`], capped at
/// [`crate::MAX_DATA_SIZE`]), through any obfuscation layers. `None` for zlib and lzma, whose
/// streams tell only by decoding, and for anything [`decompress`] would refuse early.
///
/// For readers that plan their memory before decompressing a batch (`check
/// --verify-data`); a corrupt blob may declare a size it does not decode to, so this sizes
/// plans, never buffers that decoding then trusts.
pub fn decompressed_len(data: &[u8]) -> Option<usize> {
    let mut data = data;
    loop {
        let payload = data.get(2..)?;
        return match detect(data).ok()? {
            CompressionType::None => Some(payload.len()),
            CompressionType::Lz4 => lz4_block_decompressed_len(payload, crate::MAX_DATA_SIZE).ok(),
            CompressionType::Zstd => zstd::zstd_safe::get_frame_content_size(payload)
                .ok()
                .flatten()
                .and_then(|n| usize::try_from(n).ok()),
            CompressionType::Zlib | CompressionType::Lzma => None,
            CompressionType::Obfuscate => {
                data = obfuscated_inner(payload).ok()?;
                continue;
            }
        };
    }
}

/// [`decompress`] with no size hint and borg's [`crate::MAX_DATA_SIZE`] limit.
pub fn decompress_default(data: &[u8]) -> Result<Vec<u8>, DecompressError> {
    decompress(data, None, crate::MAX_DATA_SIZE)
}

/// Reads an LZ4 length extension (bytes of 255 continue, any other ends it).
fn lz4_ext_len(input: &[u8], pos: &mut usize) -> Result<usize, DecompressError> {
    let mut len = 0usize;
    loop {
        let b = *input
            .get(*pos)
            .ok_or_else(|| DecompressError::Lz4("truncated length".into()))?;
        *pos += 1;
        len = len.saturating_add(usize::from(b));
        if b != 255 {
            return Ok(len);
        }
    }
}

/// Exact plaintext size of a raw LZ4 block, from its sequence headers alone
/// (literal and match lengths), without decoding. Stops early with
/// [`DecompressError::TooLarge`] once the total passes `limit`.
///
/// borg stores no size, and its decoder retries with ever larger buffers
/// (starting near 8.8 MiB, up to 128 MiB). Scanning lets us allocate exactly
/// once instead; the scan costs far less than decoding.
pub fn lz4_block_decompressed_len(input: &[u8], limit: usize) -> Result<usize, DecompressError> {
    let mut pos = 0usize;
    let mut total = 0usize;
    if input.is_empty() {
        // LZ4_decompress_safe rejects an empty block; so do we.
        return Err(DecompressError::Lz4("empty block".into()));
    }
    loop {
        let token = *input
            .get(pos)
            .ok_or_else(|| DecompressError::Lz4("truncated block".into()))?;
        pos += 1;
        let mut lit = usize::from(token >> 4);
        if lit == 15 {
            lit = lit.saturating_add(lz4_ext_len(input, &mut pos)?);
        }
        pos = pos.saturating_add(lit);
        total = total.saturating_add(lit);
        if pos > input.len() {
            return Err(DecompressError::Lz4(
                "literals run past end of block".into(),
            ));
        }
        if total > limit {
            return Err(DecompressError::TooLarge { limit });
        }
        if pos == input.len() {
            return Ok(total);
        }
        // 2-byte match offset, then the match length (minimum 4).
        pos += 2;
        if pos > input.len() {
            return Err(DecompressError::Lz4("truncated match offset".into()));
        }
        let mut ml = usize::from(token & 0x0f);
        if ml == 15 {
            ml = ml.saturating_add(lz4_ext_len(input, &mut pos)?);
        }
        total = total.saturating_add(ml).saturating_add(4);
        if total > limit {
            return Err(DecompressError::TooLarge { limit });
        }
    }
}

/// `LZ4.decompress`: raw block, size unknown from the data.
fn decompress_lz4(
    payload: &[u8],
    size_hint: Option<usize>,
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    // An LZ4 block expands at most ~255x (a 255-byte length run per input
    // byte); a larger hint is impossible and must not drive an allocation.
    let max_out = payload.len().saturating_mul(255).saturating_add(16);
    if let Some(hint) = size_hint.filter(|h| *h <= limit && *h <= max_out && !payload.is_empty()) {
        let mut out = vec![0u8; hint];
        if let Ok(n) = lz4_flex::block::decompress_into(payload, &mut out) {
            out.truncate(n);
            return Ok(out);
        }
        // Wrong hint or corrupt block: the exact scan below decides which.
    }
    let size = lz4_block_decompressed_len(payload, limit)?;
    let mut out = vec![0u8; size];
    let n = lz4_flex::block::decompress_into(payload, &mut out)
        .map_err(|e| DecompressError::Lz4(e.to_string()))?;
    out.truncate(n);
    Ok(out)
}

thread_local! {
    /// Per-thread zstd decompression context, reused across chunks
    /// (`ZSTD_decompressDCtx` decodes exactly like `ZSTD_decompress`).
    static ZSTD_DCTX: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `ZSTD.decompress`: the frame must declare its content size (borg refuses
/// frames that do not); we check it against `limit` before allocating, then
/// decode with `ZSTD_decompress` into exactly that much room, like borg.
fn decompress_zstd(payload: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let declared = match zstd::zstd_safe::get_frame_content_size(payload) {
        Ok(Some(n)) => n,
        Ok(None) => return Err(DecompressError::ZstdUnknownSize),
        Err(_) => return Err(DecompressError::ZstdNotZstd),
    };
    let size = usize::try_from(declared)
        .ok()
        .filter(|n| *n <= limit)
        .ok_or(DecompressError::TooLarge { limit })?;
    // The densest zstd encoding is an RLE block: 4 bytes for up to 128 KiB.
    // A frame claiming more than its bytes could ever hold is corrupt; refuse
    // it before allocating (matters when the caller's limit is huge).
    if size
        > payload
            .len()
            .saturating_mul(32 * 1024)
            .saturating_add(128 * 1024)
    {
        return Err(DecompressError::Zstd(
            "declared content size exceeds what the frame can encode",
        ));
    }
    let mut out = vec![0u8; size];
    let res = ZSTD_DCTX.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            if slot.is_none() {
                *slot = zstd::zstd_safe::DCtx::try_create();
            }
            match slot.as_mut() {
                Some(dctx) => dctx.decompress(&mut out[..], payload),
                None => zstd::zstd_safe::decompress(&mut out[..], payload),
            }
        }
        Err(_) => zstd::zstd_safe::decompress(&mut out[..], payload),
    });
    let n = res.map_err(|code| DecompressError::Zstd(zstd::zstd_safe::get_error_name(code)))?;
    if n != size {
        return Err(DecompressError::ZstdSizeMismatch {
            declared,
            actual: n,
        });
    }
    Ok(out)
}

/// Initial capacity for a streaming decoder.
fn initial_capacity(input_len: usize, size_hint: Option<usize>, limit: usize) -> usize {
    let guess = match size_hint {
        // A little slack so a correct hint never forces a regrow before the end marker.
        Some(hint) => hint.saturating_add(64),
        None => input_len.saturating_mul(3).clamp(64, GROW_STEP),
    };
    // Never pre-allocate more than borg's largest object for a mere guess;
    // larger legitimate outputs (caller raised the limit) grow on demand.
    guess
        .min(limit.saturating_add(1))
        .min(crate::MAX_DATA_SIZE + 64)
}

/// Makes room for more output without ever exceeding `limit + 1` bytes of
/// capacity (one byte over the limit is how we notice a bomb).
fn grow(out: &mut Vec<u8>, limit: usize) -> Result<(), DecompressError> {
    if out.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    // len <= limit here, so this is at least 1 (saturating for limit == MAX).
    let room = limit.saturating_add(1) - out.len();
    let step = out.len().max(GROW_STEP).min(room);
    out.reserve_exact(step);
    Ok(())
}

/// `ZLIB.decompress`: Python's `zlib.decompress(data)` — the whole blob is a
/// zlib stream (header, deflate data, Adler-32); it must reach its end marker;
/// trailing bytes after it are ignored, as Python does.
fn decompress_zlib(
    data: &[u8],
    size_hint: Option<usize>,
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    use flate2::{Decompress, FlushDecompress, Status};
    let mut dec = Decompress::new(true);
    let mut out = Vec::with_capacity(initial_capacity(data.len(), size_hint, limit));
    loop {
        if out.len() == out.capacity() {
            grow(&mut out, limit)?;
        }
        let consumed = usize::try_from(dec.total_in()).unwrap_or(data.len());
        let input = data.get(consumed..).unwrap_or(&[]);
        let before_out = out.len();
        let status = dec
            .decompress_vec(input, &mut out, FlushDecompress::None)
            .map_err(|e| DecompressError::Zlib(e.to_string()))?;
        if out.len() > limit {
            return Err(DecompressError::TooLarge { limit });
        }
        match status {
            Status::StreamEnd => return Ok(out),
            Status::Ok | Status::BufError => {
                let consumed_now = usize::try_from(dec.total_in()).unwrap_or(data.len());
                let stalled = consumed_now == consumed && out.len() == before_out;
                if stalled && out.len() < out.capacity() {
                    // Input exhausted (or unusable) with room to spare: truncated.
                    return Err(DecompressError::ZlibTruncated);
                }
            }
        }
    }
}

/// `LZMA.decompress`: Python's `lzma.decompress(data)` with `FORMAT_AUTO`
/// (.xz or legacy .lzma). Like Python it decodes concatenated streams one
/// after another, and ignores trailing bytes that do not start a valid stream
/// once at least one stream decoded.
fn decompress_lzma(
    payload: &[u8],
    size_hint: Option<usize>,
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    use xz2::stream::{Action, Status, Stream};
    let mut out = Vec::with_capacity(initial_capacity(payload.len(), size_hint, limit));
    let mut rest = payload;
    let mut first = true;
    loop {
        let stream_start = out.len();
        let mut stream = Stream::new_auto_decoder(LZMA_MEMLIMIT, 0)?;
        let ended = loop {
            if out.len() == out.capacity() {
                grow(&mut out, limit)?;
            }
            let consumed = usize::try_from(stream.total_in()).unwrap_or(rest.len());
            let input = rest.get(consumed..).unwrap_or(&[]);
            let before_out = out.len();
            let status = match stream.process_vec(input, &mut out, Action::Run) {
                Ok(s) => s,
                Err(e) if first => return Err(e.into()),
                Err(_) => {
                    // Python: leftover data is not a valid stream; ignore it.
                    out.truncate(stream_start);
                    return Ok(out);
                }
            };
            if out.len() > limit {
                return Err(DecompressError::TooLarge { limit });
            }
            if status == Status::StreamEnd {
                break true;
            }
            let consumed_now = usize::try_from(stream.total_in()).unwrap_or(rest.len());
            if consumed_now == consumed && out.len() == before_out && out.len() < out.capacity() {
                break false;
            }
        };
        if !ended {
            return Err(DecompressError::LzmaTruncated);
        }
        let used = usize::try_from(stream.total_in()).unwrap_or(rest.len());
        rest = rest.get(used..).unwrap_or(&[]);
        if rest.is_empty() {
            return Ok(out);
        }
        first = false;
    }
}
