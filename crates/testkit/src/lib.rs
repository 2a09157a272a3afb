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
//! * [`noise`]: deterministic pseudo-random file contents;
//! * [`tree_snapshot`] / [`assert_same_tree`]: compare two directory trees by everything borg
//!   archives (type, mode, owner, size, ns times, link targets, xattrs, hard link groups, content);
//! * [`borg14`]: the second oracle, borg 1.4.x built from PyPI in a venv, when installed.
//! * [`http_recorder::Recorder`]: a request-recording HTTP server on 127.0.0.1 (monitoring tests).
//! * [`StandInSsh`]: an `ssh` stand-in that runs the remote command here, to reach `ssh://`
//!   repositories through a local `rborg borg serve` (or any `borg`) without an sshd.
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

pub mod http_recorder;

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

/// A Python script printing one line per entry of the tree `argv[1]`: relative path, mode,
/// uid, gid, size, mtime in ns, link count, atime in ns (with `atime` in the flags `argv[2]`;
/// regular files, devices and fifos only: listing a directory or following a symlink changes
/// its atime), symlink target, device number, the SHA-256 of the content, the hard link group,
/// whether a file is sparse (with `sparse` in the flags) and the extended attributes. `lstat` of everything is taken before any
/// content is read, so reading does not disturb atimes.
const SNAPSHOT: &str = r#"
import hashlib, os, stat, sys
root = sys.argv[1]
flags = sys.argv[2].split(',') if len(sys.argv) > 2 else []
sparse, atime = 'sparse' in flags, 'atime' in flags
entries = []
for d, dirs, files in os.walk(root):
    for n in dirs + files:
        p = os.path.join(d, n)
        entries.append((os.path.relpath(p, root), os.lstat(p)))
entries.sort()
groups = {}
for rel, st in entries:
    groups.setdefault(st.st_ino, []).append(rel)
for rel, st in entries:
    p = os.path.join(root, rel)
    line = [rel, oct(st.st_mode), str(st.st_uid), str(st.st_gid), str(st.st_size),
            str(st.st_mtime_ns), str(st.st_nlink)]
    if atime and not stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
        line.append(str(st.st_atime_ns))
    if stat.S_ISLNK(st.st_mode):
        line.append('-> ' + os.readlink(p))
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        line.append('rdev %d' % st.st_rdev)
    if stat.S_ISREG(st.st_mode):
        with open(p, 'rb') as f:
            line.append(hashlib.sha256(f.read()).hexdigest())
        line.append('links ' + ','.join(groups[st.st_ino]))
        if sparse and st.st_blocks * 512 < st.st_size:
            line.append('sparse')
    xa = sorted((k, os.getxattr(p, k, follow_symlinks=False)) for k in os.listxattr(p, follow_symlinks=False))
    line.append(repr(xa))
    print(' '.join(line))
"#;

/// What a [`tree_snapshot`] records beyond type, mode, owner, size, mtime, links, content and
/// xattrs.
#[derive(Clone, Copy, Debug, Default)]
pub struct SnapshotOptions {
    /// Mark regular files with fewer allocated bytes than their size (holes restored).
    pub sparse: bool,
    /// Record atimes (borg 1.2 stores them only with `create --atime`).
    pub atime: bool,
}

/// One line per entry of the tree at `root` (see the script above).
pub fn tree_snapshot(root: &Path, opts: SnapshotOptions) -> String {
    let mut flags = Vec::new();
    if opts.sparse {
        flags.push("sparse");
    }
    if opts.atime {
        flags.push("atime");
    }
    let flags = flags.join(",");
    String::from_utf8(python(SNAPSHOT, [root.as_os_str(), OsStr::new(&flags)]).stdout)
        .expect("the snapshot is UTF-8")
}

/// Asserts that the trees `a` and `b` hold the same entries with the same metadata and content
/// ([`tree_snapshot`]), printing the first differing lines otherwise.
#[track_caller]
pub fn assert_same_tree(a: &Path, b: &Path, opts: SnapshotOptions, what: &str) {
    let (sa, sb) = (tree_snapshot(a, opts), tree_snapshot(b, opts));
    assert!(
        sa.lines().count() > 3,
        "{what}: snapshot of {} is nearly empty",
        a.display()
    );
    if sa != sb {
        let only_a: Vec<&str> = sa.lines().filter(|l| !sb.contains(l)).take(8).collect();
        let only_b: Vec<&str> = sb.lines().filter(|l| !sa.contains(l)).take(8).collect();
        panic!(
            "{what}: trees differ ({} vs {} entries)\nonly in {}:\n{}\nonly in {}:\n{}",
            sa.lines().count(),
            sb.lines().count(),
            a.display(),
            only_a.join("\n"),
            b.display(),
            only_b.join("\n")
        );
    }
}

/// Where borg 1.4.x is installed: `RBORG_BORG14` or the venv `.ci/run` builds
/// (`/var/tmp/borg14/bin/borg`). `None` (with a notice) when absent, unless
/// `RBORG_REQUIRE_BORG14=1`, in which case this panics so CI cannot pass by skipping.
pub fn borg14(what: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("RBORG_BORG14")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/tmp/borg14/bin/borg".into());
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("RBORG_REQUIRE_BORG14").as_deref() != Ok("1"),
        "RBORG_REQUIRE_BORG14=1 but borg 1.4 is not at {}",
        path.display()
    );
    eprintln!("borg 1.4 is not installed: skipping its part of the {what}");
    None
}

/// Where borgmatic 2.x is installed: `RBORG_BORGMATIC` or the venv `.ci/run` makes
/// (`/var/tmp/bm/bin/borgmatic`). `None` (with a notice) when absent, unless
/// `RBORG_REQUIRE_BORG=1`, in which case this panics so CI cannot pass by skipping.
pub fn borgmatic2(what: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("RBORG_BORGMATIC")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/tmp/bm/bin/borgmatic".into());
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("RBORG_REQUIRE_BORG").as_deref() != Ok("1"),
        "RBORG_REQUIRE_BORG=1 but borgmatic 2.x is not at {}",
        path.display()
    );
    eprintln!("borgmatic 2.x is not installed: skipping the {what}");
    None
}

/// An `ssh` stand-in for `BORG_RSH`: it drops ssh's options and the host name and runs the
/// remote command with `sh -c` on this machine, the way an sshd forced command runs
/// `borg serve` on a server (borg 1.2.4 `RemoteRepository.ssh_cmd` + `borg_cmd`: `RSH [opts]
/// host REMOTE_PATH serve ...`). Each client connection therefore starts its own server
/// process. `remote_borg` is a link named `borg` to the server binary, for `BORG_REMOTE_PATH`
/// (rborg picks its borg CLI by that name).
#[derive(Clone, Debug)]
pub struct StandInSsh {
    /// The script to give as `BORG_RSH`.
    pub rsh: std::path::PathBuf,
    /// `borg`, a symlink to the server binary, to give as `BORG_REMOTE_PATH`.
    pub remote_borg: std::path::PathBuf,
}

impl StandInSsh {
    /// Writes `dir/rsh` and the link `dir/borg` -> `server` (`dir` is created if missing).
    pub fn install(dir: &Path, server: &Path) -> StandInSsh {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).unwrap();
        let rsh = dir.join("rsh");
        std::fs::write(
            &rsh,
            "#!/bin/sh\n# ssh [options] host command...: skip the options (-p, -o, -i, -l, -F, -J take a value)\n\
             while [ $# -gt 0 ]; do case \"$1\" in -o|-p|-i|-l|-F|-J) shift 2;; -*) shift;; *) shift; break;; esac; done\n\
             exec sh -c \"$*\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&rsh, std::fs::Permissions::from_mode(0o755)).unwrap();
        let remote_borg = dir.join("borg");
        std::os::unix::fs::symlink(server, &remote_borg).unwrap();
        StandInSsh { rsh, remote_borg }
    }

    /// Points `cmd` (a borg or rborg client) at the stand-in: `BORG_RSH` and `BORG_REMOTE_PATH`.
    pub fn configure<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("BORG_RSH", &self.rsh)
            .env("BORG_REMOTE_PATH", &self.remote_borg)
    }
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
