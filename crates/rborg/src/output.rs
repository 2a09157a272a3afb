//! Exit codes and error reporting shared by both personalities of the binary.

use std::process::ExitCode;

/// borg's exit codes (`borg.helpers.EXIT_*`).
pub const EXIT_SUCCESS: u8 = 0;
/// A warning: the operation completed, but something deserves attention.
pub const EXIT_WARNING: u8 = 1;
/// An error: the operation did not complete.
pub const EXIT_ERROR: u8 = 2;

/// Prints an `anyhow` error chain the way a user can act on it and maps it to borg's error exit code.
pub fn exit_with(result: anyhow::Result<u8>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("{err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
