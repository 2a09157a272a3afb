//! The scratch directory of a fuzz process: `$RBORG_FUZZ_DIR` (set by `fuzz/run` to a fresh
//! tmpfs directory), else `$TMPDIR/rborg-fuzz-<pid>`; created once.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The directory, created on first use.
pub fn dir() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let base = std::env::var_os("RBORG_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::temp_dir().join(format!("rborg-fuzz-{}", std::process::id()))
            });
        std::fs::create_dir_all(&base).expect("scratch directory");
        base
    })
}
