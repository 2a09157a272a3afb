//! Fuzz target `segment`: see `fuzz/checks/segment.rs` (shared with the regression test that
//! replays its seeds and crashes).

#![no_main]

#[path = "../checks/segment.rs"]
mod check;
#[path = "../checks/scratch.rs"]
mod scratch;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run(data, scratch::dir());
});
