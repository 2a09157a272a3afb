//! Fuzz target `decompress_zlib`: arbitrary bytes after a valid zlib header (`78 9c`, put in
//! front by the target, since borg's zlib blobs have no borg ID: the header is zlib's own),
//! decompressed by `rborg_compress::decompress` as every object read does, with borg's
//! `MAX_DATA_SIZE` limit and, when the first input byte is odd, a size hint taken from the
//! next four.
//!
//! The check itself is `decompress_payload.rs`, shared by the four decompressor targets.
//! Regression test: `crates/compress/tests/fuzz_regressions.rs`.

#[path = "decompress_payload.rs"]
mod payload;

/// One fuzz unit; whether the input was accepted by the decompressor.
pub fn run(data: &[u8]) -> bool {
    payload::run(data, [0x78, 0x9c], "zlib")
}
