//! Fuzz target `decompress_lz4`: see `fuzz/checks/decompress_lz4.rs` (shared with the regression test that
//! replays its seeds and crashes).

#![no_main]

#[path = "../checks/decompress_lz4.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run(data);
});
