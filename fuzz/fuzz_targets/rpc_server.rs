//! Fuzz target `rpc_server`: arbitrary bytes as the complete client stream of one
//! `borg serve` session (`rborg_remote::server::serve_bytes`): msgpack decoding with the
//! server's limits, dict and legacy tuple messages, argument checking and every RPC method,
//! against real repositories the input may create under a scratch directory.
//!
//! The scratch directory (`RBORG_FUZZ_DIR`, set by `fuzz/run` to a tmpfs directory, else
//! `$TMPDIR/rborg-fuzz-<pid>`) is the working directory and the `--restrict-to-path` of every
//! run, so relative paths such as `r` or `/./r` in the input reach it; it is emptied before
//! each run, so a finding replays alone. Inputs that once crashed the server are regression
//! tests in `crates/remote/tests/fuzz_regressions.rs` (`testdata/fuzz/rpc_server/`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rborg_remote::server::{serve_bytes, ServeOptions};

#[path = "../checks/scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    let base = scratch::dir();
    let work = base.join("w");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir(&work).expect("work directory");
    std::env::set_current_dir(&work).expect("chdir");
    let opts = ServeOptions {
        restrict_to_paths: vec![work.clone()],
        // keeps a run's disk use small whatever the input puts
        storage_quota: Some(64 << 20),
        ..ServeOptions::default()
    };
    let _ = serve_bytes(data, &opts);
    std::env::set_current_dir(base).expect("chdir back");
    let _ = std::fs::remove_dir_all(&work);
});
