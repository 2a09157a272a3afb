//! Fuzz target `decompress_lzma`: see `fuzz/checks/decompress_lzma.rs` (shared with the regression test that
//! replays its seeds and crashes).

#![no_main]

#[path = "../checks/decompress_lzma.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run(data);
});
