//! Fuzz target `chunk_envelope`: see `fuzz/checks/chunk_envelope.rs` (shared with the regression test that
//! replays its seeds and crashes).

#![no_main]

#[path = "../checks/chunk_envelope.rs"]
mod check;
#[path = "../checks/keys.rs"]
mod keys;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run(data);
});
