//! Fuzz target `archive_meta`: see `fuzz/checks/archive_meta.rs` (shared with the regression test that
//! replays its seeds and crashes).

#![no_main]

#[path = "../checks/archive_meta.rs"]
mod check;
#[path = "../checks/keys.rs"]
mod keys;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run(data);
});
