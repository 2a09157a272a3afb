//! Fuzz target `repo_config`: see `fuzz/checks/repo_config.rs` (shared with the regression test that
//! replays its seeds and crashes).

#![no_main]

#[path = "../checks/repo_config.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run(data);
});
