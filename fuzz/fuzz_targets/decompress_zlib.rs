//! Fuzz target `decompress_zlib`: see `fuzz/checks/decompress_zlib.rs` (shared with the regression test that
//! replays its seeds and crashes).

#![no_main]

#[path = "../checks/decompress_zlib.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run(data);
});
