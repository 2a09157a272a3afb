//! Fuzz target `config_yaml`: see `fuzz/checks/config_yaml.rs` (shared with the regression test that
//! replays its seeds and crashes).

#![no_main]

#[path = "../checks/config_yaml.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::run(
        data,
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/config"),
    );
});
