//! Fuzz target `compress_roundtrip`: see `fuzz/checks/compress_roundtrip.rs` (shared with the regression test that
//! replays its seeds and crashes).

#![no_main]

#[path = "../checks/compress_roundtrip.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run(data);
});
