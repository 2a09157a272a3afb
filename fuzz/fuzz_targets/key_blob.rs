//! Fuzz target `key_blob`: see `fuzz/checks/key_blob.rs` (shared with the regression test that
//! replays its seeds and crashes).

#![no_main]

#[path = "../checks/key_blob.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run(data);
});
