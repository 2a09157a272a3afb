//! Fuzz target `decompress`: see `fuzz/checks/decompress.rs` (shared with the regression test that
//! replays its seeds and crashes).

#![no_main]

#[path = "../checks/decompress.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run(data);
});
