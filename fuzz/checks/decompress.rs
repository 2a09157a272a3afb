//! Fuzz target `decompress`: arbitrary bytes as a stored (decrypted) object payload, decompressed
//! by `rborg_compress::decompress` with borg's header dispatch (none, lz4, lzma, zstd, zlib,
//! obfuscate layers) and borg's `MAX_DATA_SIZE` limit, as every object read does.
//!
//! Properties beyond "no panic": `detect` agrees with `decompress` on what is a known header;
//! a result is within the limit; a size `decompressed_len` tells without decoding is the size
//! decoding gives.
//! Regression test: `crates/compress/tests/fuzz_regressions.rs`.

use rborg_compress::{decompress, decompress_default, decompressed_len, detect, MAX_DATA_SIZE};

/// One fuzz unit; whether the input was accepted (parsed, opened) by the loader.
pub fn run(data: &[u8]) -> bool {
    let result = decompress_default(data);
    let declared = decompressed_len(data);
    if let Ok(out) = &result {
        assert!(out.len() <= MAX_DATA_SIZE);
        assert!(detect(data).is_ok());
        if let Some(len) = declared {
            assert_eq!(len, out.len());
        }
    }
    if detect(data).is_err() {
        assert!(result.is_err());
    }
    // a small limit must refuse, never truncate
    if let Ok(out) = decompress(data, None, 1000) {
        assert!(out.len() <= 1000);
        assert_eq!(Some(&out), result.as_ref().ok());
    }
    result.is_ok()
}
