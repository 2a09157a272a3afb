//! Fuzz target `decompress_zstd`: arbitrary bytes as the payload of a borg `zstd` blob
//! (header `03 00` put in front by the target), decompressed by `rborg_compress::decompress`
//! as every object read does, with borg's `MAX_DATA_SIZE` limit and, when the first input byte
//! is odd, a size hint taken from the next four (the chunk list's size, as extract passes it).
//!
//! The check itself is `decompress_payload.rs`, shared by the four decompressor targets.
//! Regression test: `crates/compress/tests/fuzz_regressions.rs`.

#[path = "decompress_payload.rs"]
mod payload;

/// One fuzz unit; whether the input was accepted by the decompressor.
pub fn run(data: &[u8]) -> bool {
    payload::run(data, [0x03, 0x00], "zstd")
}
