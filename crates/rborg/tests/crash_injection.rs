//! Crash injection (issue 10, part 2): `rborg borg create`, `delete` (one archive), `prune`
//! (keeping fewer), `compact` (after a delete) and `check --repair` are SIGKILLed at a random
//! moment, on a local repository and on one reached over `ssh://` (a stand-in ssh that runs
//! `rborg borg serve` here), in three kinds:
//!
//! * `local`: the process is killed;
//! * `remote`: the whole process group is killed (the client, the stand-in ssh and the serve
//!   side), as when the machine running both goes down;
//! * `remote-client`: only the client is killed and the serve side lives on, as when a laptop
//!   dies or its network drops: the server sees the connection close, must give up the
//!   uncommitted transaction and the repository lock, and exit by itself within 10 s (borg's
//!   `RepositoryServer.serve` closes the repository at EOF). Its lock must be gone before
//!   anything else runs (the other kinds leave a stale lock that `borg break-lock` removes).
//!
//! Each trial starts from a copy of a template repository holding archives `a1`..`a3` made by
//! rborg (the tree snapshot of each archive's source is recorded), runs the operation and
//! kills it after a delay drawn uniformly from the operation's measured duration (a seeded
//! RNG; the seed is printed so a failing trial can be replayed). Then, as a user would after
//! a crash:
//!
//! 1. `borg break-lock` (real borg 1.2.4: the killed process left its lock), then
//!    `borg check` must exit 0;
//! 2. every archive committed before the kill that the operation was not removing is listed
//!    and extracts byte-identical to its snapshot; an archive the operation was removing is
//!    either listed and identical or gone; the archive `create` was adding is either absent or
//!    complete (checkpoint archives `a4.checkpoint*` may remain, as with borg); nothing else
//!    is listed;
//! 3. `rborg borg create --stats --json` of the same data succeeds and deduplicates: its
//!    "This archive" deduplicated size is at most the bytes not stored by any committed
//!    archive plus a little metadata;
//! 4. `rborg borg check` passes.
//!
//! `check --repair` runs on a healthy repository in even trials and, in odd ones, on one
//! whose `index.N` was removed (damage borg rebuilds from the segments). Each operation is
//! first run once uninterrupted (timed, and verified the same way). A kill that lands after
//! the operation finished does not count as a kill trial (the summary says how many did).
//!
//! A last test covers what a crash (or a writer mid-commit) leaves for lock-bypassing
//! readers: segments one transaction ahead of the index. Such a reader must not write.
//!
//! The repository key is a repokey (AES-CTR) whose passphrase KDF runs one PBKDF2 iteration
//! (made by borg's own `init` with its iteration constant patched), so the debug binary does
//! not spend a quarter of a second per command deriving the key.
//!
//! The test runs a few trials per operation and kind (about a minute with the debug binary).
//! `scripts/crash-injection N` runs the same driver for the long run; it is configured with:
//!
//! * `RBORG_CRASH_TRIALS` kill trials per operation and kind (default 3);
//! * `RBORG_CRASH_SEED` the seed (default: from the clock; printed);
//! * `RBORG_CRASH_RBORG` the rborg binary (default: the one cargo built for this test);
//! * `RBORG_CRASH_MIB` the size of the data in MiB (default 2);
//! * `RBORG_CRASH_COMPRESSION` the `-C` of every create (default `zstd,3`);
//! * `RBORG_CRASH_OPS` / `RBORG_CRASH_KINDS` comma-separated subsets
//!   (`create,delete,prune,compact,check-repair` / `local,remote`);
//! * `RBORG_CRASH_REPORT` a file to which one tab-separated summary line per operation and
//!   kind is appended;
//! * `RBORG_CRASH_KEEP` a directory to which failed trials (repository, home, logs) are copied.
//!
//! Needs `/usr/bin/borg`: without it the test prints a notice and passes, unless
//! `RBORG_REQUIRE_BORG=1`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use rborg_testkit::{borg_command, noise, tree_snapshot, SnapshotOptions, BORG, PYTHON};

const PASSPHRASE: &str = "crash-injection-pw";
/// What the re-create may store beyond the bytes no committed archive holds: the item
/// metadata stream and the archive object (a few KiB here).
const METADATA_SLACK: u64 = 128 * 1024;
/// Small files in every state: items and chunks for delete, prune and check to work through.
const SMALL_FILES: u64 = 60;

/// borg 1.2.4's `init`, with the passphrase KDF weakened to one PBKDF2 iteration (the
/// iteration count is stored in the key, so every later reader uses it).
const WEAK_INIT: &str = "
import sys, borg.crypto.key as k
k.PBKDF2_ITERATIONS = 1
from borg.archiver import main
sys.argv[0] = 'borg'
main()
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Create,
    Delete,
    Prune,
    Compact,
    CheckRepair,
}

impl Op {
    const ALL: [Op; 5] = [
        Op::Create,
        Op::Delete,
        Op::Prune,
        Op::Compact,
        Op::CheckRepair,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Delete => "delete",
            Op::Prune => "prune",
            Op::Compact => "compact",
            Op::CheckRepair => "check-repair",
        }
    }

    /// The archives in the repository the operation starts from (compact starts after `a1`
    /// was deleted, so it has segments to compact).
    fn before(self) -> &'static [&'static str] {
        match self {
            Op::Compact => &["a2", "a3"],
            _ => &["a1", "a2", "a3"],
        }
    }

    /// The archives the operation removes: after a kill each is fully there or fully gone.
    fn removing(self) -> &'static [&'static str] {
        match self {
            Op::Delete => &["a2"],
            Op::Prune => &["a1", "a2"],
            _ => &[],
        }
    }

    /// The state directory whose `data` the operation (create) or the re-create archives.
    fn state(self) -> usize {
        if self == Op::Create {
            4
        } else {
            3
        }
    }

    fn args(self, url: &str, compression: &str) -> Vec<String> {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
        match self {
            Op::Create => v(&[
                "create",
                "--checkpoint-interval",
                "1",
                "-C",
                compression,
                &format!("{url}::a4"),
                "data",
            ]),
            Op::Delete => v(&["delete", &format!("{url}::a2")]),
            Op::Prune => v(&["prune", "--keep-last", "1", url]),
            Op::Compact => v(&["compact", url]),
            Op::CheckRepair => v(&["check", "--repair", url]),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Local,
    Remote,
    RemoteClient,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Local => "local",
            Kind::Remote => "remote",
            Kind::RemoteClient => "remote-client",
        }
    }
}

/// splitmix64: small, seeded, good enough to spread kill delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, max)`.
    fn duration(&mut self, max: Duration) -> Duration {
        max.mul_f64((self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

struct Settings {
    rborg: PathBuf,
    trials: usize,
    seed: u64,
    mib: usize,
    compression: String,
    ops: Vec<Op>,
    report: Option<PathBuf>,
    keep: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let seed = var("RBORG_CRASH_SEED")
            .map(|s| s.parse().expect("RBORG_CRASH_SEED is a number"))
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        let ops = match var("RBORG_CRASH_OPS") {
            Some(list) => list
                .split(',')
                .map(|n| {
                    *Op::ALL
                        .iter()
                        .find(|o| o.name() == n)
                        .unwrap_or_else(|| panic!("unknown operation {n}"))
                })
                .collect(),
            None => Op::ALL.to_vec(),
        };
        Settings {
            rborg: var("RBORG_CRASH_RBORG")
                .map(PathBuf::from)
                .unwrap_or_else(|| env!("CARGO_BIN_EXE_rborg").into()),
            trials: var("RBORG_CRASH_TRIALS").map_or(3, |n| n.parse().unwrap()),
            seed,
            mib: var("RBORG_CRASH_MIB").map_or(2, |n| n.parse().unwrap()),
            compression: var("RBORG_CRASH_COMPRESSION").unwrap_or_else(|| "zstd,3".into()),
            ops,
            report: var("RBORG_CRASH_REPORT").map(PathBuf::from),
            keep: var("RBORG_CRASH_KEEP").map(PathBuf::from),
        }
    }

    fn wants(kind: Kind) -> bool {
        std::env::var("RBORG_CRASH_KINDS")
            .ok()
            .filter(|v| !v.is_empty())
            .is_none_or(|list| list.split(',').any(|k| k == kind.name()))
    }
}

/// The source trees, the template repositories and the trial directory of one kind.
struct Fixture {
    dir: tempfile::TempDir,
    kind: Kind,
    settings: Settings,
    /// tree snapshot of the source of each archive made for the templates, and of `a4`
    snapshots: BTreeMap<String, String>,
    /// bytes of `data` in each state directory, and the bytes no template archive holds
    state_bytes: [u64; 5],
    new_bytes: [u64; 5],
}

/// What one trial saw.
#[derive(Default)]
struct Seen {
    killed: bool,
    checkpoint: bool,
    removed: usize,
    kept: usize,
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn text(out: &Output) -> String {
    format!(
        "rc {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// Waits until no live (non-zombie) process is left in process group `pgid`, for at most 10 s:
/// the serve side of a killed remote operation must be gone before anyone opens the
/// repository again (after a kill of the client alone it has to notice and exit by itself).
fn wait_group_gone(pgid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut alive = false;
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid pgrp ...
            let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
                continue;
            };
            let fields: Vec<&str> = rest.split(' ').collect();
            if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
                alive = true;
                break;
            }
        }
        if !alive {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("process group {pgid} (the serve side) still alive 10 s after the SIGKILL");
}

impl Fixture {
    fn new(kind: Kind, settings: Settings) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut fx = Fixture {
            dir,
            kind,
            settings,
            snapshots: BTreeMap::new(),
            state_bytes: [0; 5],
            new_bytes: [0; 5],
        };
        fx.make_states();
        fx.make_templates();
        fx
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn repo(&self) -> PathBuf {
        self.path("trial/repo")
    }

    fn url(&self) -> String {
        match self.kind {
            Kind::Local => self.repo().display().to_string(),
            Kind::Remote | Kind::RemoteClient => {
                format!("ssh://localhost{}", self.repo().display())
            }
        }
    }

    /// `stateN/data`: a shared base (one big file, small files, a symlink) plus a file unique
    /// to the state; state 4 (what `create` adds as `a4`) is state 3 plus a new big file.
    fn make_states(&mut self) {
        let mib = self.settings.mib.max(1) << 20;
        let (base, unique, extra) = (mib / 2, mib / 8, mib / 4);
        for state in 1..=4usize {
            let data = self.path(&format!("state{state}/data"));
            write(&data.join("base/big"), &noise(1, base));
            for i in 0..SMALL_FILES {
                write(
                    &data.join(format!("base/small/f{i:03}")),
                    &noise(100 + i, 4096 + 97 * i as usize),
                );
            }
            std::os::unix::fs::symlink("base/big", data.join("link")).unwrap();
            let own = state.min(3);
            write(
                &data.join(format!("unique{own}")),
                &noise(10 + own as u64, unique),
            );
            if state == 4 {
                write(&data.join("new"), &noise(40, extra));
            }
            let small: u64 = (0..SMALL_FILES).map(|i| 4096 + 97 * i).sum();
            self.state_bytes[state] = (base + unique) as u64 + small;
            if state == 4 {
                self.state_bytes[state] += extra as u64;
                self.new_bytes[state] = extra as u64;
            }
        }
        for state in 1..=4usize {
            let snap = tree_snapshot(
                &self.path(&format!("state{state}/data")),
                SnapshotOptions::default(),
            );
            self.snapshots.insert(format!("a{state}"), snap);
        }
    }

    /// `rborg borg args` (through the stand-in ssh for a remote URL), run in `cwd`.
    fn rborg(&self, args: &[String], cwd: &Path) -> Command {
        let mut full = vec!["borg"];
        full.extend(args.iter().map(String::as_str));
        let rborg = self.settings.rborg.to_str().unwrap();
        let mut cmd = borg_command(rborg, &full, cwd, &self.path("trial/home"), PASSPHRASE);
        cmd.env("BORG_RSH", self.path("bin/rsh"))
            .env("BORG_REMOTE_PATH", self.path("bin/borg"))
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "YES")
            .env("TZ", "UTC");
        cmd
    }

    fn rborg_out(&self, args: &[&str], cwd: &Path) -> Output {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        self.rborg(&args, cwd).output().unwrap()
    }

    /// Real borg 1.2.4 on the repository's local path.
    fn borg_out(&self, args: &[&str]) -> Output {
        borg_command(
            BORG,
            args,
            self.dir.path(),
            &self.path("trial/home"),
            PASSPHRASE,
        )
        .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .output()
        .unwrap()
    }

    /// The stand-in ssh and a `borg` link to rborg for `BORG_REMOTE_PATH`; a repository with
    /// `a1`..`a3` (template `base`) and the same after `delete a1` (template `deleted`).
    /// Each is built at `trial/` (so the paths the home remembers are the trial's) and moved.
    fn make_templates(&mut self) {
        let rsh = self.path("bin/rsh");
        write(
            &rsh,
            b"#!/bin/sh\nwhile [ $# -gt 0 ]; do case \"$1\" in -p) shift 2;; -*) shift;; *) shift; break;; esac; done\nexec sh -c \"$*\"\n",
        );
        std::fs::set_permissions(&rsh, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink(&self.settings.rborg, self.path("bin/borg")).unwrap();
        std::fs::create_dir_all(self.path("trial/home")).unwrap();
        let repo = self.repo();
        let init = borg_command(
            PYTHON,
            &[
                "-c",
                WEAK_INIT,
                "init",
                "-e",
                "repokey",
                repo.to_str().unwrap(),
            ],
            self.dir.path(),
            &self.path("trial/home"),
            PASSPHRASE,
        )
        .output()
        .unwrap();
        assert!(init.status.success(), "borg init: {}", text(&init));
        let url = self.url();
        for state in 1..=3 {
            let out = self.rborg_out(
                &[
                    "create",
                    "-C",
                    &self.settings.compression,
                    &format!("{url}::a{state}"),
                    "data",
                ],
                &self.path(&format!("state{state}")),
            );
            assert!(
                out.status.success(),
                "template create a{state}: {}",
                text(&out)
            );
        }
        std::fs::rename(self.path("trial"), self.path("template-base")).unwrap();
        copy_tree(&self.path("template-base"), &self.path("trial"));
        let out = self.rborg_out(&["delete", &format!("{url}::a1")], self.dir.path());
        assert!(out.status.success(), "template delete a1: {}", text(&out));
        std::fs::rename(self.path("trial"), self.path("template-deleted")).unwrap();
    }

    /// A fresh trial directory for `op`; `check --repair` trials with odd `trial` numbers
    /// start without the repository index (borg rebuilds it from the segments).
    fn prepare(&self, op: Op, trial: usize) {
        let template = if op == Op::Compact {
            "template-deleted"
        } else {
            "template-base"
        };
        copy_tree(&self.path(template), &self.path("trial"));
        if op == Op::CheckRepair && trial % 2 == 1 {
            for entry in std::fs::read_dir(self.repo()).unwrap().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("index.") {
                    std::fs::remove_file(entry.path()).unwrap();
                }
            }
        }
    }

    /// Runs `op`, killing its process group after `delay` (None: let it finish). Returns
    /// whether it was killed, how long it ran and its exit status if it finished.
    fn run_op(&self, op: Op, delay: Option<Duration>) -> (bool, Duration, Option<ExitStatus>) {
        let args = op.args(&self.url(), &self.settings.compression);
        let log = std::fs::File::create(self.path("trial/op.log")).unwrap();
        let cwd = self.path(&format!("state{}", op.state()));
        let start = Instant::now();
        let mut child = self
            .rborg(&args, &cwd)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let pgid = child.id();
        let killed = match delay {
            None => false,
            Some(delay) => {
                let deadline = start + delay;
                loop {
                    if child.try_wait().unwrap().is_some() {
                        break false;
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        if self.kind == Kind::RemoteClient {
                            // the client alone: `borg serve` sees its stdin close
                            let _ = kill(Pid::from_raw(pgid as i32), Signal::SIGKILL);
                        } else {
                            // the group: the client, the stand-in ssh and `borg serve`
                            let _ = killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL);
                        }
                        break true;
                    }
                    std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
                }
            }
        };
        let status = child.wait().unwrap();
        let elapsed = start.elapsed();
        wait_group_gone(pgid);
        (killed, elapsed, (!killed).then_some(status))
    }

    /// The checks after a trial (see the module documentation).
    fn verify(&self, op: Op, killed: bool, seen: &mut Seen) -> Result<(), String> {
        let repo = self.repo();
        let repo_s = repo.to_str().unwrap();
        let url = self.url();
        // 0. a server that outlived its client gave up the lock when it saw the connection close
        if self.kind == Kind::RemoteClient {
            let held = held_locks(&repo);
            if !held.is_empty() {
                return Err(format!(
                    "the serve side exited but left the repository locked: {held:?}"
                ));
            }
        }
        // 1. as a user would: break the lock the killed process left, then borg check
        let out = self.borg_out(&["break-lock", repo_s]);
        if !out.status.success() {
            return Err(format!("borg break-lock: {}", text(&out)));
        }
        let out = self.borg_out(&["check", repo_s]);
        if !out.status.success() {
            return Err(format!("borg check: {}", text(&out)));
        }
        // 2. the archives
        // (borg 1.2 hides checkpoint archives unless asked)
        let out = self.rborg_out(
            &["list", "--consider-checkpoints", "--json", &url],
            self.dir.path(),
        );
        if !out.status.success() {
            return Err(format!("rborg list: {}", text(&out)));
        }
        let listing: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("rborg list --json: {e}: {}", text(&out)))?;
        let names: Vec<String> = listing["archives"]
            .as_array()
            .ok_or("rborg list --json: no archives array")?
            .iter()
            .map(|a| a["name"].as_str().unwrap_or_default().to_string())
            .collect();
        let mut compare = Vec::new();
        for name in &names {
            let n = name.as_str();
            if op == Op::Create && n.starts_with("a4.checkpoint") {
                seen.checkpoint = true;
                if !killed {
                    return Err(format!("{n} left by a create that finished"));
                }
                // a checkpoint holds part of the data: every chunk it references must read
                let out = self.rborg_out(
                    &["extract", "--dry-run", &format!("{url}::{n}")],
                    self.dir.path(),
                );
                if !out.status.success() {
                    return Err(format!("rborg extract --dry-run {n}: {}", text(&out)));
                }
            } else if op.before().contains(&n) || (op == Op::Create && n == "a4") {
                compare.push(n.to_string());
            } else {
                return Err(format!("unexpected archive {n} in {names:?}"));
            }
        }
        for name in op.before() {
            let listed = names.iter().any(|n| n == name);
            if op.removing().contains(name) {
                if listed {
                    seen.kept += 1;
                } else {
                    seen.removed += 1;
                }
                if listed && !killed {
                    return Err(format!("{name} still listed after {} finished", op.name()));
                }
            } else if !listed {
                return Err(format!("archive {name} lost: {names:?}"));
            }
        }
        if op == Op::Create && !killed && !names.iter().any(|n| n == "a4") {
            return Err(format!("a4 missing after create finished: {names:?}"));
        }
        for name in &compare {
            let out_dir = self.path(&format!("trial/out-{name}"));
            std::fs::create_dir_all(&out_dir).unwrap();
            let out = self.rborg_out(&["extract", &format!("{url}::{name}")], &out_dir);
            if !out.status.success() {
                return Err(format!("rborg extract {name}: {}", text(&out)));
            }
            let got = tree_snapshot(&out_dir.join("data"), SnapshotOptions::default());
            if got != self.snapshots[name.as_str()] {
                return Err(format!(
                    "{name} does not extract identically:\n{got}\nexpected:\n{}",
                    self.snapshots[name.as_str()]
                ));
            }
            std::fs::remove_dir_all(&out_dir).unwrap();
        }
        // 3. the next create of the same data succeeds and deduplicates
        let state = op.state();
        let out = self.rborg_out(
            &[
                "create",
                "--stats",
                "--json",
                "-C",
                &self.settings.compression,
                &format!("{url}::again"),
                "data",
            ],
            &self.path(&format!("state{state}")),
        );
        if !out.status.success() {
            return Err(format!("the next create: {}", text(&out)));
        }
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("create --json: {e}: {}", text(&out)))?;
        let stats = &stats["archive"]["stats"];
        let (original, dedup) = (
            stats["original_size"].as_u64().unwrap_or(0),
            stats["deduplicated_size"].as_u64().unwrap_or(u64::MAX),
        );
        // (borg counts the item metadata stream in the archive's sizes too)
        if !(self.state_bytes[state]..=self.state_bytes[state] + METADATA_SLACK).contains(&original)
        {
            return Err(format!(
                "the next create read {original} bytes, the data has {}",
                self.state_bytes[state]
            ));
        }
        let limit = self.new_bytes[state] + METADATA_SLACK;
        if dedup > limit {
            return Err(format!(
                "the next create stored {dedup} new bytes of {original} (at most {limit} expected)"
            ));
        }
        // 4. rborg's own check
        let out = self.rborg_out(&["check", &url], self.dir.path());
        if !out.status.success() {
            return Err(format!("rborg check: {}", text(&out)));
        }
        Ok(())
    }

    /// Keeps a failed trial where `RBORG_CRASH_KEEP` says.
    fn keep(&self, op: Op, trial: usize) {
        if let Some(keep) = &self.settings.keep {
            let to = keep.join(format!(
                "{}-{}-{}-{trial}",
                self.settings.seed,
                self.kind.name(),
                op.name()
            ));
            std::fs::create_dir_all(keep).unwrap();
            copy_tree(&self.path("trial"), &to);
            eprintln!("crash-injection: kept the failed trial in {}", to.display());
        }
    }
}

/// Summary of one operation and kind.
#[derive(Default)]
struct Tally {
    killed: usize,
    finished: usize,
    failures: Vec<String>,
    checkpoints: usize,
    removed: usize,
    kept: usize,
    seconds: f64,
}

/// Runs the trials for `kind`; returns the failure messages.
fn run_kind(kind: Kind) -> Vec<String> {
    let settings = Settings::from_env();
    let seed = settings.seed;
    eprintln!(
        "crash-injection {}: seed {seed} (replay with RBORG_CRASH_SEED={seed}), {} trials per operation, {} MiB, {}",
        kind.name(),
        settings.trials,
        settings.mib,
        settings.rborg.display()
    );
    let ops = settings.ops.clone();
    let setup = Instant::now();
    let fx = Fixture::new(kind, settings);
    eprintln!(
        "crash-injection {}: fixture ready in {:.1} s",
        kind.name(),
        setup.elapsed().as_secs_f64()
    );
    let mut failures = Vec::new();
    for op in ops {
        let started = Instant::now();
        let mut tally = Tally::default();
        // calibration: the whole operation, verified like a trial
        fx.prepare(op, 0);
        let (_, first, status) = fx.run_op(op, None);
        // the duration kills are drawn from: the median of the uninterrupted runs so far (the
        // calibration and every trial that finished before its kill), so one slow first run
        // does not make most later kills land after the end
        let mut finished_runs = vec![first];
        let status = status.unwrap();
        let mut seen = Seen::default();
        let calibration = if status.success() {
            fx.verify(op, false, &mut seen)
        } else {
            Err(format!(
                "rc {:?}: {}",
                status.code(),
                std::fs::read_to_string(fx.path("trial/op.log")).unwrap_or_default()
            ))
        };
        if let Err(e) = calibration {
            let msg = format!("{} {} uninterrupted: {e}", kind.name(), op.name());
            eprintln!("crash-injection FAIL {msg}");
            fx.keep(op, 0);
            tally.failures.push(msg);
        }
        let op_index = Op::ALL.iter().position(|o| *o == op).unwrap() as u64;
        let mut trial = 0;
        // kill trials; a run that finished before its delay does not count, at most as many
        // extra runs as trials are made to replace those
        while tally.killed < fx.settings.trials && trial < 2 * fx.settings.trials {
            trial += 1;
            let mut rng = Rng(seed ^ ((kind as u64) << 48) ^ (op_index << 40) ^ trial as u64);
            // odd trials anywhere in the run, even ones in its last 40 % (where the commits
            // are), up to a little past its measured end
            finished_runs.sort_unstable();
            let duration = finished_runs[finished_runs.len() / 2];
            let delay = if trial % 2 == 1 {
                rng.duration(duration)
            } else {
                duration.mul_f64(0.6) + rng.duration(duration.mul_f64(0.45))
            };
            fx.prepare(op, trial);
            let (killed, ran, status) = fx.run_op(op, Some(delay));
            let mut seen = Seen {
                killed,
                ..Seen::default()
            };
            let result = match status {
                Some(st) if !st.success() => Err(format!(
                    "finished with rc {:?}: {}",
                    st.code(),
                    std::fs::read_to_string(fx.path("trial/op.log")).unwrap_or_default()
                )),
                _ => fx.verify(op, killed, &mut seen),
            };
            if seen.killed {
                tally.killed += 1;
            } else {
                finished_runs.push(ran);
                tally.finished += 1;
            }
            tally.checkpoints += usize::from(seen.checkpoint);
            tally.removed += seen.removed;
            tally.kept += seen.kept;
            let line = format!(
                "seed {seed} {} {} trial {trial}: kill after {} ms (ran {} ms of ~{} ms), {}",
                kind.name(),
                op.name(),
                delay.as_millis(),
                ran.as_millis(),
                duration.as_millis(),
                if killed { "killed" } else { "finished first" }
            );
            match result {
                Ok(()) => eprintln!("crash-injection ok   {line}"),
                Err(e) => {
                    eprintln!("crash-injection FAIL {line}: {e}");
                    fx.keep(op, trial);
                    tally.failures.push(format!("{line}: {e}"));
                }
            }
        }
        tally.seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "crash-injection {} {}: {} killed, {} finished first, {} failures, {} with a checkpoint left, removed/kept {}/{}, {:.1} s",
            kind.name(),
            op.name(),
            tally.killed,
            tally.finished,
            tally.failures.len(),
            tally.checkpoints,
            tally.removed,
            tally.kept,
            tally.seconds
        );
        let mut report = String::new();
        writeln!(
            report,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.1}\t{seed}\t{}",
            kind.name(),
            op.name(),
            tally.killed,
            tally.finished,
            tally.failures.len(),
            tally.checkpoints,
            tally.removed,
            tally.kept,
            tally.seconds,
            fx.settings.mib
        )
        .unwrap();
        failures.extend(tally.failures);
        // one line per operation as it is done, so an interrupted long run still counts
        if let Some(path) = &fx.settings.report {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            f.write_all(report.as_bytes()).unwrap();
        }
    }
    failures
}

fn run(kind: Kind) {
    if !rborg_testkit::borg_available("crash injection test") || !Settings::wants(kind) {
        return;
    }
    let failures = run_kind(kind);
    assert!(
        failures.is_empty(),
        "{} crash trial(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn sigkill_local_operations() {
    run(Kind::Local);
}

#[test]
fn sigkill_remote_operations() {
    run(Kind::Remote);
}

#[test]
fn sigkill_remote_client_only() {
    run(Kind::RemoteClient);
}

/// What is left of borg's lock in `repo`: the `lock.exclusive` directory's owner files and
/// the holders in `lock.roster` (both are gone after a clean release).
fn held_locks(repo: &Path) -> Vec<String> {
    let mut held = Vec::new();
    if let Ok(dir) = std::fs::read_dir(repo.join("lock.exclusive")) {
        held.extend(
            dir.flatten()
                .map(|e| format!("lock.exclusive/{}", e.file_name().to_string_lossy())),
        );
    }
    if let Ok(roster) = std::fs::read_to_string(repo.join("lock.roster")) {
        let roster: serde_json::Value = serde_json::from_str(&roster).unwrap_or_default();
        for kind in ["exclusive", "shared"] {
            for holder in roster[kind].as_array().into_iter().flatten() {
                held.push(format!("lock.roster {kind} {holder}"));
            }
        }
    }
    held
}

/// Names, sizes and mtimes of everything in the repository directory (not `data/`).
fn repo_files(repo: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(repo)
        .unwrap()
        .flatten()
        .map(|e| {
            let meta = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                meta.len(),
                meta.modified().unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// A repository as a crash (or a writer still committing) leaves it between the commit tag
/// and the new index: the segments are one transaction ahead of `index.N`. A reader with
/// `--bypass-lock` sees the newest archive (the index is rebuilt in memory) and writes
/// nothing: borg's reader path rewrites the index, hints and integrity files and deletes the
/// older ones, which made a writer committing at the same time fail with
/// "hints.N: file not found". A locked reader then replays and writes the index as borg does.
#[test]
fn bypass_lock_reader_behind_the_index_writes_nothing() {
    if !rborg_testkit::borg_available("bypass-lock reader test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rborg = env!("CARGO_BIN_EXE_rborg");
    let home = dir.path().join("home");
    let repo = dir.path().join("repo");
    let repo_s = repo.to_str().unwrap();
    let run = |program: &str, args: &[&str]| {
        let (program, full) = if program == "rborg" {
            (rborg, [&["borg"][..], args].concat())
        } else {
            (BORG, args.to_vec())
        };
        borg_command(program, &full, dir.path(), &home, PASSPHRASE)
            .output()
            .unwrap()
    };
    let ok = |out: Output, what: &str| assert!(out.status.success(), "{what}: {}", text(&out));
    ok(run("borg", &["init", "-e", "none", repo_s]), "init");
    write(&dir.path().join("data/one"), &noise(1, 100_000));
    ok(
        run("rborg", &["create", &format!("{repo_s}::one"), "data"]),
        "create one",
    );
    let index_files = |repo: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(repo)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                ["index.", "hints.", "integrity."]
                    .iter()
                    .any(|pre| n.starts_with(pre))
            })
            .collect()
    };
    let saved = dir.path().join("saved");
    std::fs::create_dir(&saved).unwrap();
    for f in index_files(&repo) {
        std::fs::copy(&f, saved.join(f.file_name().unwrap())).unwrap();
    }
    write(&dir.path().join("data/two"), &noise(2, 100_000));
    ok(
        run("rborg", &["create", &format!("{repo_s}::two"), "data"]),
        "create two",
    );
    // put the index of the first transaction back: the segments are now ahead of it
    for f in index_files(&repo) {
        std::fs::remove_file(f).unwrap();
    }
    for f in std::fs::read_dir(&saved).unwrap().flatten() {
        std::fs::copy(f.path(), repo.join(f.file_name())).unwrap();
    }
    let before = repo_files(&repo);
    let out = run("rborg", &["list", "--bypass-lock", "--short", repo_s]);
    ok(out.clone(), "list --bypass-lock");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");
    let out = run(
        "rborg",
        &[
            "extract",
            "--dry-run",
            "--bypass-lock",
            &format!("{repo_s}::two"),
        ],
    );
    ok(out, "extract --dry-run --bypass-lock");
    assert_eq!(
        repo_files(&repo),
        before,
        "a --bypass-lock reader changed the repository directory"
    );
    // a locked reader brings the index up to date, and borg agrees with the result
    let out = run("rborg", &["list", "--short", repo_s]);
    ok(out.clone(), "list");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");
    assert_ne!(
        repo_files(&repo),
        before,
        "the locked reader rebuilt nothing"
    );
    ok(run("borg", &["check", repo_s]), "borg check");
}
