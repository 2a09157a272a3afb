//! Fuzz target `index_files`: see `fuzz/checks/index_files.rs` (shared with the regression test that
//! replays its seeds and crashes).

#![no_main]

#[path = "../checks/index_files.rs"]
mod check;
#[path = "../checks/scratch.rs"]
mod scratch;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run(data, scratch::dir());
});
