//! Fuzz target `decompress_zstd`: see `fuzz/checks/decompress_zstd.rs` (shared with the regression test that
//! replays its seeds and crashes).

#![no_main]

#[path = "../checks/decompress_zstd.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run(data);
});
