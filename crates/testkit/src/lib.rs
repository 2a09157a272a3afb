//! Helpers shared by the integration tests that use real borg 1.2.4 as the oracle
//! (`crates/archive/tests`, `crates/rborg/tests`). Dev-only: the crates list it under
//! `[dev-dependencies]` and it is never published.
//!
//! It gathers what every interop test needs and used to define on its own:
//!
//! * [`borg_available`]: whether `/usr/bin/borg` and `/usr/bin/python3` are installed; when
//!   they are not, a test prints a notice and passes, unless `RBORG_REQUIRE_BORG=1` (CI sets
//!   it), in which case it fails;
//! * [`borg_command`]: a `borg` (or `rborg borg`) command isolated in a scratch directory (its
//!   own `BORG_BASE_DIR`, passphrase, no inherited `BORG_REPO` / `BORG_KEYS_DIR`);
//! * [`python`] / [`python_output`] / [`python_command`]: scripts run by the `/usr/bin/python3` that can import
//!   borg's own modules;
//! * [`ok`]: assert that a command succeeded, with its output in the failure message;
//! * [`noise`]: deterministic pseudo-random file contents.
//!
//! ```no_run
//! use rborg_testkit::{borg_available, borg_command, ok, BORG};
//!
//! if borg_available("example") {
//!     let dir = std::env::temp_dir();
//!     let out = borg_command(BORG, &["--version"], &dir, &dir.join("home"), "pw")
//!         .output()
//!         .unwrap();
//!     assert!(ok(&out, "borg --version").starts_with("borg"));
//! }
//! ```

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// The borg 1.2.4 the tests compare against.
pub const BORG: &str = "/usr/bin/borg";
/// The system Python that can import borg's modules (not the `python3` on `PATH`).
pub const PYTHON: &str = "/usr/bin/python3";

/// Whether the borg oracle ([`BORG`] and [`PYTHON`]) is installed. When it is not, prints
/// "borg is not installed: skipping the `what`" and returns false, or panics if
/// `RBORG_REQUIRE_BORG=1`, so CI cannot pass by skipping.
pub fn borg_available(what: &str) -> bool {
    let present = Path::new(BORG).exists() && Path::new(PYTHON).exists();
    if !present {
        assert!(
            std::env::var("RBORG_REQUIRE_BORG").as_deref() != Ok("1"),
            "RBORG_REQUIRE_BORG=1 but {BORG} or {PYTHON} is missing"
        );
        eprintln!("borg is not installed: skipping the {what}");
    }
    present
}

/// `program args` run in `cwd` with `BORG_BASE_DIR=home` (keys, security and cache dirs),
/// `BORG_PASSPHRASE=passphrase`, unencrypted repositories accepted without asking, and the
/// caller's `BORG_REPO` / `BORG_KEYS_DIR` removed. Callers add what their test needs (time
/// zone, locale, other `BORG_*` answers) with [`Command::env`], which overrides these.
pub fn borg_command(
    program: &str,
    args: &[&str],
    cwd: &Path,
    home: &Path,
    passphrase: &str,
) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env("BORG_BASE_DIR", home)
        .env("BORG_PASSPHRASE", passphrase)
        .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
        .env_remove("BORG_REPO")
        .env_remove("BORG_KEYS_DIR");
    cmd
}

/// Asserts that `out` is a success (naming `what`, the exit code, stdout and stderr if not)
/// and returns its stdout as text.
#[track_caller]
pub fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `/usr/bin/python3 -c script`, for callers that add arguments or environment.
pub fn python_command(script: &str) -> Command {
    let mut cmd = Command::new(PYTHON);
    cmd.arg("-c").arg(script);
    cmd
}

/// `/usr/bin/python3 -c script args...`, whatever its exit status.
pub fn python_output<A: AsRef<OsStr>>(script: &str, args: impl IntoIterator<Item = A>) -> Output {
    python_command(script).args(args).output().unwrap()
}

/// `/usr/bin/python3 -c script args...`, which must succeed; returns its output.
#[track_caller]
pub fn python<A: AsRef<OsStr>>(script: &str, args: impl IntoIterator<Item = A>) -> Output {
    let out = python_output(script, args);
    ok(&out, "python script");
    out
}

/// Deterministic pseudo-random bytes (xorshift64*, the top byte of each step), so file
/// contents differ per `seed` but a failing run can be reproduced.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_deterministic_and_seeded() {
        assert_eq!(noise(7, 1000), noise(7, 1000));
        assert_ne!(noise(7, 1000), noise(8, 1000));
        assert_eq!(noise(7, 10), noise(7, 1000)[..10]);
    }
}
