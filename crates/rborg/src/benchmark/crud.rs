//! `rborg benchmark crud REPO PATH`: borg 1.2.4's `benchmark crud` (`archiver.py`
//! `do_benchmark_crud`) as a top-level rborg command.
//!
//! It runs the borg command line's own implementation (`crate::borg`, module `benchmark`) in
//! process, exactly as `rborg borg benchmark crud REPO PATH` would, so both print the same lines
//! (`C-Z-BIG  123.45 MB/s (10 * 100.00 MB all-zero files: 8.10s)`), honour the same environment
//! (`BORG_PASSPHRASE`, `BORG_RSH`, `_BORG_BENCHMARK_CRUD_TEST`...) and exit with borg's codes.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct CrudArgs {
    /// Repository to use for the benchmark (must exist): a path, `ssh://...` or `user@host:path`.
    #[arg(value_name = "REPOSITORY")]
    repository: OsString,
    /// Directory where the benchmark input data is created (and removed again).
    #[arg(value_name = "PATH")]
    path: PathBuf,
}

/// Runs `borg benchmark crud REPOSITORY PATH` and returns borg's exit code.
pub fn run(args: CrudArgs) -> u8 {
    crate::borg::run(vec![
        OsString::from("benchmark"),
        OsString::from("crud"),
        args.repository,
        args.path.into_os_string(),
    ])
}
