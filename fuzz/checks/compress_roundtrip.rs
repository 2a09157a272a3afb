//! Fuzz target `compress_roundtrip`: every compressor borg 1.2 offers, on arbitrary data.
//! The first byte picks the compression spec (`none`, `lz4`, `zstd,L`, `zlib,L`, `lzma,L`,
//! `auto,C`, `obfuscate,N,C`), the rest is the chunk. Checks `decompress(compress(x)) == x`
//! with the header dispatch borg uses, and that the blob starts with the spec's header.
//!
//! lzma runs only at levels 0-1 here: higher presets allocate ~100 MiB dictionaries per call,
//! which would make each unit take a tenth of a second without reaching other code.
//! Regression test: `crates/compress/tests/fuzz_regressions.rs`.

use rborg_compress::{decompress, CompressionSpec, MAX_DATA_SIZE};

const SPECS: &[&str] = &[
    "none",
    "lz4",
    "zstd,1",
    "zstd,3",
    "zstd,10",
    "zlib,0",
    "zlib,6",
    "zlib,9",
    "lzma,0",
    "lzma,1",
    "auto,zstd,3",
    "auto,zlib,6",
    "auto,lzma,0",
    "obfuscate,1,lz4",
    "obfuscate,3,zstd,1",
    "obfuscate,110,none",
    "obfuscate,123,auto,zlib,1",
];

/// One fuzz unit; whether the input was accepted (parsed, opened) by the loader.
pub fn run(data: &[u8]) -> bool {
    let Some((&sel, chunk)) = data.split_first() else {
        return false;
    };
    let name = SPECS[usize::from(sel) % SPECS.len()];
    let spec: CompressionSpec = name.parse().expect("spec");
    let blob = spec.compressor().compress(chunk);
    let out = decompress(&blob, Some(chunk.len()), MAX_DATA_SIZE)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(out, chunk, "{name}");
    let out = decompress(&blob, None, MAX_DATA_SIZE).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(out, chunk, "{name}");
    true
}
