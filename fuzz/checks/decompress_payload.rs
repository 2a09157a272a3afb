//! The check shared by the single-decompressor fuzz targets (`decompress_lz4`, `_zstd`, `_lzma`,
//! `_zlib`): arbitrary bytes as the payload behind a fixed two-byte header, decompressed by
//! `rborg_compress::decompress` as every object read does, with borg's `MAX_DATA_SIZE` limit and,
//! when the first input byte is odd, a size hint taken from the next four (the chunk list's size,
//! as extract passes it).
//!
//! Property beyond "no panic": the result of a successful decompression is within the limit,
//! matches the hint-free result, and compresses (with the target's spec) and decompresses back to
//! itself (outputs up to 64 KiB; bigger ones would only slow the fuzzer down).

use rborg_compress::{decompress, CompressionSpec, MAX_DATA_SIZE};

/// One fuzz unit: `data` minus its selector (and hint) byte(s) behind `header`, decompressed;
/// a result re-compressed with `spec` must decompress to itself. Whether the input was accepted.
pub fn run(data: &[u8], header: [u8; 2], spec: &str) -> bool {
    let Some((&sel, rest)) = data.split_first() else {
        return false;
    };
    let (hint, payload) = match rest {
        [a, b, c, d, payload @ ..] if sel & 1 == 1 => {
            (Some(u32::from_le_bytes([*a, *b, *c, *d]) as usize), payload)
        }
        _ => (None, rest),
    };
    let mut blob = header.to_vec();
    blob.extend_from_slice(payload);
    let Ok(out) = decompress(&blob, hint, MAX_DATA_SIZE) else {
        return false;
    };
    assert!(out.len() <= MAX_DATA_SIZE);
    if hint.is_some() {
        assert_eq!(
            decompress(&blob, None, MAX_DATA_SIZE).expect("no hint"),
            out
        );
    }
    if out.len() > 1 << 16 {
        return true;
    }
    let spec: CompressionSpec = spec.parse().expect("spec");
    let again = spec.compressor().compress(&out);
    assert_eq!(
        decompress(&again, None, MAX_DATA_SIZE).expect("round trip"),
        out
    );
    true
}
