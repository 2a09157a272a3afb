//! Replays the committed inputs of this crate's fuzz targets (`fuzz/`, see
//! `docs/reliability.md`): real compressed payloads of borg 1.2.4 objects (lz4, zstd, zlib, lzma,
//! none, obfuscate) and every input that once crashed a target, through the target's own check
//! (`fuzz/checks/<target>.rs`: header dispatch, each decompressor, compress/decompress round
//! trips).

// The four single-decompressor checks each include `decompress_payload.rs` as their own module,
// so that every fuzz target stays one self-contained file set; here that file is compiled 4 times.
#![allow(clippy::duplicate_mod)]

#[path = "../../../fuzz/checks/compress_roundtrip.rs"]
mod compress_roundtrip;
#[path = "../../../fuzz/checks/decompress.rs"]
mod decompress;
#[path = "../../../fuzz/checks/decompress_lz4.rs"]
mod decompress_lz4;
#[path = "../../../fuzz/checks/decompress_lzma.rs"]
mod decompress_lzma;
#[path = "../../../fuzz/checks/decompress_zlib.rs"]
mod decompress_zlib;
#[path = "../../../fuzz/checks/decompress_zstd.rs"]
mod decompress_zstd;
#[path = "../../../fuzz/checks/replay.rs"]
mod replay;

#[test]
fn decompress_inputs() {
    let results = replay::replay("decompress", decompress::run);
    replay::assert_seeds("decompress", &results, &[]);
}

#[test]
fn decompress_lz4_inputs() {
    let results = replay::replay("decompress_lz4", decompress_lz4::run);
    replay::assert_seeds("decompress_lz4", &results, &[]);
}

#[test]
fn decompress_zstd_inputs() {
    let results = replay::replay("decompress_zstd", decompress_zstd::run);
    replay::assert_seeds("decompress_zstd", &results, &[]);
}

#[test]
fn decompress_lzma_inputs() {
    let results = replay::replay("decompress_lzma", decompress_lzma::run);
    replay::assert_seeds("decompress_lzma", &results, &[]);
}

#[test]
fn decompress_zlib_inputs() {
    let results = replay::replay("decompress_zlib", decompress_zlib::run);
    replay::assert_seeds("decompress_zlib", &results, &[]);
}

#[test]
fn compress_roundtrip_inputs() {
    let results = replay::replay("compress_roundtrip", compress_roundtrip::run);
    replay::assert_seeds("compress_roundtrip", &results, &[]);
}
