//! Load (issue 10, point 7): one `rborg borg serve` host with many concurrent clients.
//!
//! The host is this machine: a stand-in ssh ([`StandInSsh`]) runs each client's remote
//! command here, so every connection starts its own `rborg borg serve` process, exactly as an
//! sshd forced command does on a real serve host. Two tests:
//!
//! 1. [`eight_clients_on_eight_repositories`]: 8 repositories (`-e none`), 8 clients at once
//!    (6 rborg, 2 real borg 1.2.4) each creating one archive of ~5 MiB (a 2 MiB file shared by
//!    every client and stored twice in each source, so each repository deduplicates it), then 8
//!    concurrent rborg extracts over `ssh://` compared with the sources (content and metadata),
//!    then real `borg check --verify-data` of every repository. The remote command is a
//!    wrapper that holds each connection until all 8 have arrived and records when each server
//!    ran: the test asserts that all 8 servers were running at the same moment.
//! 2. [`contending_writers_on_one_repository`]: 8 writers at once on one repository (4 rborg
//!    over `ssh://`, 2 rborg local, 1 borg 1.2.4 local, 1 borg 1.2.4 over `ssh://` to rborg
//!    serve) while an rborg reader lists the repository over `ssh://` in a loop. borg's lock
//!    (`locking.py`, `crates/repository/src/lock.rs`) must serialize the writers: all exit 0,
//!    all 8 archives are in the manifest (two overlapping transactions would lose one),
//!    `borg check --verify-data` passes, no lock is left and every archive extracts equal to
//!    its source (8 concurrent rborg extracts, 4 over `ssh://`). The reader either lists (a
//!    growing subset of the 8 names) or fails with borg's lock timeout (exit 2, "Failed to
//!    create/acquire the lock ... (timeout).") and nothing else; it must have listed at least
//!    once while some but not all archives were there.
//!
//! Needs `/usr/bin/borg`: without it the tests print a notice and pass, unless
//! `RBORG_REQUIRE_BORG=1`.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use rborg_testkit::{
    assert_same_tree, borg_available, borg_command, noise, ok, SnapshotOptions, StandInSsh, BORG,
};

const RBORG: &str = env!("CARGO_BIN_EXE_rborg");
/// Unused by `-e none` repositories; [`borg_command`] sets it anyway.
const PASSPHRASE: &str = "serve-load-pw";
const CLIENTS: usize = 8;
/// A batch of clients still running after this long is stuck (a deadlock): it is killed and
/// the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(180);
/// The writers' `--lock-wait`. borg 1.2.4 polls a taken lock every `lock_wait / 10` s
/// (`TimeoutTimer` in `helpers/time.py`, with `ExclusiveLock`'s default `sleep=None`; rborg's
/// `lock::Timer` does the same), so every hand-over from one writer to the next leaves the
/// lock idle for up to a tenth of the wait: with 300 s the eight writers would take minutes.
/// With 40 s (a poll every 4 s) the last writer waits for 7 hand-overs (at most 28 s) plus 7
/// creates (~0.3 s each here): 20 s was measured (its sixth poll), 30 s would cut the margin.
const LOCK_WAIT: &str = "40";
/// What an archive's statistics may count beyond its files' bytes: the item metadata stream
/// and per-chunk headers (a few KiB for these sources).
const METADATA: u64 = 16 * 1024;
/// The reader's `--lock-wait`: it gives up after 1 s behind a writer.
const READER_LOCK_WAIT: &str = "1";
/// borg's exit code for an error, here the reader's `LockTimeout` (borg 1.2.4 `EXIT_ERROR`).
const EXIT_ERROR: i32 = 2;

/// The remote command given as `BORG_REMOTE_PATH` in test 1: it registers the connection in
/// `$LOAD_PHASE`, waits until `$LOAD_CLIENTS` connections are there (polling every 10 ms, at
/// most 30 s, then it notes the timeout), runs the real server (`borg`, the link next to it)
/// and records when that started and ended (ns).
const SERVE_AT_BARRIER: &str = r#"#!/bin/sh
phase="$LOAD_PHASE"
: > "$phase/arrived.$$"
count() { set -- "$phase"/arrived.*; n=$#; }
i=0
while count; [ "$n" -lt "$LOAD_CLIENTS" ] && [ "$i" -lt 3000 ]; do sleep 0.01; i=$((i+1)); done
date +%s%N > "$phase/start.$$"
[ "$n" -ge "$LOAD_CLIENTS" ] || date +%s%N > "$phase/timeout.$$"
"$(dirname "$0")/borg" "$@"
rc=$?
date +%s%N > "$phase/end.$$"
exit $rc
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Rborg,
    Borg,
}

/// When the servers of one phase ran, from their recorded start and end times.
#[derive(Debug)]
struct Served {
    /// From the first server's start to the last one's.
    spread_ms: f64,
    /// From the last server's start to the first one's end: how long all of them were
    /// running at once (negative: never).
    together_ms: f64,
}

/// The scratch directory of one test: the stand-in ssh in `bin/`, sources, homes, repositories.
struct Host {
    dir: tempfile::TempDir,
    ssh: StandInSsh,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let ssh = StandInSsh::install(&dir.path().join("bin"), Path::new(RBORG));
        let barrier = dir.path().join("bin/serve-at-barrier");
        std::fs::write(&barrier, SERVE_AT_BARRIER).unwrap();
        std::fs::set_permissions(
            &barrier,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        Host { dir, ssh }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn url(&self, repo: &Path) -> String {
        format!("ssh://localhost{}", repo.display())
    }

    /// `client args` in `cwd` with its own `home`, reaching `ssh://` repositories through the
    /// stand-in ssh and a plain `rborg borg serve`.
    fn client(&self, client: Client, args: &[&str], cwd: &Path, home: &Path) -> Command {
        let mut cmd = match client {
            Client::Rborg => {
                let mut full = vec!["borg"];
                full.extend_from_slice(args);
                borg_command(RBORG, &full, cwd, home, PASSPHRASE)
            }
            Client::Borg => borg_command(BORG, args, cwd, home, PASSPHRASE),
        };
        self.ssh.configure(&mut cmd);
        cmd.env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .env("TZ", "UTC")
            .stdin(Stdio::null());
        cmd
    }

    /// Makes `cmd`'s server wait for `CLIENTS` connections of `phase` and record its run.
    fn at_barrier(&self, cmd: &mut Command, phase: &str) {
        let dir = self.path(&format!("phases/{phase}"));
        std::fs::create_dir_all(&dir).unwrap();
        cmd.env("BORG_REMOTE_PATH", self.path("bin/serve-at-barrier"))
            .env("LOAD_PHASE", dir)
            .env("LOAD_CLIENTS", CLIENTS.to_string());
    }

    /// Asserts that the `CLIENTS` connections of `phase` were all waiting at the barrier at
    /// once (none timed out) and that their servers all ran; returns when they ran.
    fn served(&self, phase: &str) -> Served {
        let dir = self.path(&format!("phases/{phase}"));
        let stamps = |prefix: &str| -> Vec<i64> {
            let mut v = Vec::new();
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                if entry.file_name().to_string_lossy().starts_with(prefix) {
                    let text = std::fs::read_to_string(entry.path()).unwrap();
                    v.push(text.trim().parse().expect("date +%s%N"));
                }
            }
            v
        };
        let (starts, ends) = (stamps("start."), stamps("end."));
        assert!(
            stamps("timeout.").is_empty(),
            "{phase}: not all {CLIENTS} connections reached the barrier"
        );
        assert_eq!(starts.len(), CLIENTS, "{phase}: servers started");
        assert_eq!(ends.len(), CLIENTS, "{phase}: servers ended");
        let ms = |ns: i64| ns as f64 / 1e6;
        let last_start = *starts.iter().max().unwrap();
        Served {
            spread_ms: ms(last_start - starts.iter().min().unwrap()),
            together_ms: ms(ends.iter().min().unwrap() - last_start),
        }
    }
}

/// Starts every command at once, each in its own process group with stdout and stderr in
/// files under `logs` (a pipe nobody reads could block a writer holding the lock), and waits
/// for all of them. Returns each one's output and how long it ran (to within 10 ms).
fn run_all(cmds: Vec<(String, Command)>, logs: &Path) -> Vec<(Output, Duration)> {
    std::fs::create_dir_all(logs).unwrap();
    let mut running: Vec<(String, Instant, Child)> = Vec::new();
    for (name, mut cmd) in cmds {
        let out = std::fs::File::create(logs.join(format!("{name}.out"))).unwrap();
        let err = std::fs::File::create(logs.join(format!("{name}.err"))).unwrap();
        let child = cmd
            .process_group(0)
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        running.push((name, Instant::now(), child));
    }
    let deadline = Instant::now() + RUN_LIMIT;
    let mut done: Vec<Option<(ExitStatus, Duration)>> = vec![None; running.len()];
    while done.iter().any(Option::is_none) {
        for ((_, start, child), slot) in running.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                if let Some(status) = child.try_wait().unwrap() {
                    *slot = Some((status, start.elapsed()));
                }
            }
        }
        if Instant::now() > deadline {
            let mut stuck = Vec::new();
            for ((name, _, child), slot) in running.iter().zip(&done) {
                if slot.is_none() {
                    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                    stuck.push(name.as_str());
                }
            }
            panic!("still running after {RUN_LIMIT:?} (killed): {stuck:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    running
        .iter()
        .zip(done)
        .map(|((name, _, _), slot)| {
            let (status, took) = slot.unwrap();
            let read = |ext: &str| std::fs::read(logs.join(format!("{name}.{ext}"))).unwrap();
            let output = Output {
                status,
                stdout: read("out"),
                stderr: read("err"),
            };
            (output, took)
        })
        .collect()
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// `root/data`: `shared` (the same bytes in every source), the same bytes again as
/// `dup/shared`, `own` (unique to `seed`), `small` small unique files and a symlink. Returns
/// (number of regular files, their total size, the bytes no other file of this source holds).
fn make_source(root: &Path, seed: u64, shared: &[u8], own: usize, small: u64) -> (u64, u64, u64) {
    let data = root.join("data");
    write(&data.join("shared"), shared);
    write(&data.join("dup/shared"), shared);
    write(&data.join("own"), &noise(1000 + seed, own));
    let mut unique = own as u64;
    for n in 0..small {
        let len = 1000 + 37 * n as usize;
        write(
            &data.join(format!("small/f{n:02}")),
            &noise(10_000 * (seed + 1) + n, len),
        );
        unique += len as u64;
    }
    std::os::unix::fs::symlink("own", data.join("link")).unwrap();
    (
        3 + small,
        unique + 2 * shared.len() as u64,
        unique + shared.len() as u64,
    )
}

/// The `archive.stats` of `create --json` (borg 1.2.4 `Statistics.as_dict`).
fn create_stats(out: &Output, what: &str) -> (String, serde_json::Value) {
    let json: serde_json::Value = serde_json::from_str(&ok(out, what))
        .unwrap_or_else(|e| panic!("{what}: create --json printed no JSON: {e}"));
    let name = json["archive"]["name"].as_str().unwrap().to_string();
    (name, json["archive"]["stats"].clone())
}

#[test]
fn eight_clients_on_eight_repositories() {
    if !borg_available("serve load test (8 repositories)") {
        return;
    }
    let started = Instant::now();
    let host = Host::new();
    let shared = noise(1, 2 << 20);
    let borg_clients = [2, 5];
    let client = |i: usize| {
        if borg_clients.contains(&i) {
            Client::Borg
        } else {
            Client::Rborg
        }
    };
    let repo = |i: usize| host.path(&format!("repo-{i}"));
    let home = |i: usize| host.path(&format!("home-{i}"));
    let src = |i: usize| host.path(&format!("src-{i}"));
    let sources: Vec<(u64, u64, u64)> = (0..CLIENTS)
        .map(|i| make_source(&src(i), i as u64, &shared, 1 << 20, 20))
        .collect();

    let inits = (0..CLIENTS)
        .map(|i| {
            let url = host.url(&repo(i));
            let cmd = host.client(
                Client::Rborg,
                &["init", "-e", "none", &url],
                host.dir.path(),
                &home(i),
            );
            (format!("init-{i}"), cmd)
        })
        .collect();
    for (i, (out, _)) in run_all(inits, &host.path("logs")).iter().enumerate() {
        ok(out, &format!("rborg init of repo-{i} over ssh://"));
    }

    // All eight clients create at once; each server waits until all eight are connected.
    let creates = (0..CLIENTS)
        .map(|i| {
            let target = format!("{}::a", host.url(&repo(i)));
            let mut cmd = host.client(
                client(i),
                &["create", "--json", "-C", "none", &target, "data"],
                &src(i),
                &home(i),
            );
            host.at_barrier(&mut cmd, "create");
            (format!("create-{i}"), cmd)
        })
        .collect();
    let create_began = Instant::now();
    let outs = run_all(creates, &host.path("logs"));
    let create_took = create_began.elapsed();
    for (i, (out, _)) in outs.iter().enumerate() {
        let what = format!("{:?} create of repo-{i} over ssh://", client(i));
        let (name, stats) = create_stats(out, &what);
        let (files, size, unique) = sources[i];
        assert_eq!(name, "a", "{what}");
        assert_eq!(stats["nfiles"], files, "{what}: {stats}");
        // borg counts the item metadata stream too (`CacheChunkBuffer.write_chunk` adds
        // its chunks to the archive's statistics): a few hundred bytes here.
        let original = stats["original_size"].as_u64().unwrap();
        assert!(
            (size..size + METADATA).contains(&original),
            "{what}: original {original}, file bytes {size}: {stats}"
        );
        // Everything but the second copy of `shared` is stored once, plus the metadata and
        // per-chunk headers.
        let dedup = stats["deduplicated_size"].as_u64().unwrap();
        assert!(
            (unique..unique + METADATA).contains(&dedup),
            "{what}: deduplicated {dedup}, unique file bytes {unique}: {stats}"
        );
    }
    let create_served = host.served("create");
    assert!(
        create_served.together_ms > 0.0,
        "the 8 create servers never all ran at once: {create_served:?}"
    );

    // Eight rborg extracts at once, over ssh://.
    let extracts = (0..CLIENTS)
        .map(|i| {
            let out_dir = host.path(&format!("out-{i}"));
            std::fs::create_dir_all(&out_dir).unwrap();
            let target = format!("{}::a", host.url(&repo(i)));
            let mut cmd = host.client(Client::Rborg, &["extract", &target], &out_dir, &home(i));
            host.at_barrier(&mut cmd, "extract");
            (format!("extract-{i}"), cmd)
        })
        .collect();
    for (i, (out, _)) in run_all(extracts, &host.path("logs")).iter().enumerate() {
        ok(out, &format!("rborg extract of repo-{i} over ssh://"));
        assert_same_tree(
            &src(i).join("data"),
            &host.path(&format!("out-{i}/data")),
            SnapshotOptions::default(),
            &format!("repo-{i} (written by {:?})", client(i)),
        );
    }
    // Reported, not asserted: an extract of 5 MiB can end within 100 ms of its start.
    let extract_served = host.served("extract");

    // The oracle reads every object of every repository (locally), eight at once.
    let checks = (0..CLIENTS)
        .map(|i| {
            let path = repo(i).display().to_string();
            let cmd = host.client(
                Client::Borg,
                &["check", "--verify-data", &path],
                host.dir.path(),
                &home(i),
            );
            (format!("check-{i}"), cmd)
        })
        .collect();
    for (i, (out, _)) in run_all(checks, &host.path("logs")).iter().enumerate() {
        ok(out, &format!("borg check --verify-data of repo-{i}"));
    }
    // And each holds exactly the one archive.
    let lists = (0..CLIENTS)
        .map(|i| {
            let url = host.url(&repo(i));
            let cmd = host.client(
                Client::Rborg,
                &["list", "--short", &url],
                host.dir.path(),
                &home(i),
            );
            (format!("list-{i}"), cmd)
        })
        .collect();
    for (i, (out, _)) in run_all(lists, &host.path("logs")).iter().enumerate() {
        assert_eq!(ok(out, &format!("rborg list of repo-{i}")), "a\n");
    }
    eprintln!(
        "serve load (8 clients, 8 repositories): creates {create_took:.1?}, the 8 servers \
         started within {:.0} ms and all ran together for {:.0} ms; extract servers started \
         within {:.0} ms, together for {:.0} ms; whole test {:.1?}",
        create_served.spread_ms,
        create_served.together_ms,
        extract_served.spread_ms,
        extract_served.together_ms,
        started.elapsed()
    );
}

/// What the reader loop saw.
#[derive(Debug, Default)]
struct Reads {
    /// The archive count of each successful listing, in order.
    counts: Vec<usize>,
    /// How many listings failed with the lock timeout.
    timed_out: usize,
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Lists `url` with rborg over ssh:// until `stop`, asserting on every result: exit 0 with
/// names from `names`, each listing a superset of the previous one (archives are only added),
/// or exit 2 with borg's lock timeout message for `repo` and nothing else.
fn reader_loop(host: &Host, repo: &Path, names: &BTreeSet<String>, stop: &AtomicBool) -> Reads {
    let url = host.url(repo);
    let home = host.path("home-reader");
    let timeout = format!(
        "Failed to create/acquire the lock {} (timeout).",
        repo.join("lock.exclusive").display()
    );
    let mut reads = Reads::default();
    let mut seen = BTreeSet::new();
    while !stop.load(Ordering::SeqCst) {
        let out = host
            .client(
                Client::Rborg,
                &["list", "--short", "--lock-wait", READER_LOCK_WAIT, &url],
                host.dir.path(),
                &home,
            )
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {
                let listed = ok(&out, "reader list");
                let now: BTreeSet<String> = listed.lines().map(str::to_string).collect();
                assert_eq!(
                    now.len(),
                    listed.lines().count(),
                    "repeated names: {listed}"
                );
                assert!(now.is_subset(names), "reader listed {now:?}");
                assert!(now.is_superset(&seen), "reader saw {seen:?}, then {now:?}");
                reads.counts.push(now.len());
                seen = now;
            }
            Some(EXIT_ERROR) if stderr.trim() == timeout => reads.timed_out += 1,
            code => panic!("reader list failed with {code:?}: {stderr}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reads
}

#[test]
fn contending_writers_on_one_repository() {
    if !borg_available("serve load test (contending writers)") {
        return;
    }
    let started = Instant::now();
    let host = Host::new();
    let repo = host.path("repo");
    let url = host.url(&repo);
    let local = repo.display().to_string();
    // (client, over ssh://) of each writer
    let writers = [
        (Client::Rborg, true),
        (Client::Rborg, true),
        (Client::Rborg, true),
        (Client::Rborg, true),
        (Client::Rborg, false),
        (Client::Rborg, false),
        (Client::Borg, false),
        (Client::Borg, true),
    ];
    let shared = noise(2, 1 << 20);
    let home = |i: usize| host.path(&format!("home-{i}"));
    let src = |i: usize| host.path(&format!("src-{i}"));
    for i in 0..CLIENTS {
        make_source(&src(i), 100 + i as u64, &shared, 256 << 10, 5);
    }
    let init = host
        .client(
            Client::Rborg,
            &["init", "-e", "none", &local],
            host.dir.path(),
            &host.path("home-init"),
        )
        .output()
        .unwrap();
    ok(&init, "rborg init");
    let names: BTreeSet<String> = (0..CLIENTS).map(|i| format!("c-{i}")).collect();

    let creates: Vec<(String, Command)> = writers
        .iter()
        .enumerate()
        .map(|(i, &(client, remote))| {
            let target = format!("{}::c-{i}", if remote { &url } else { &local });
            let cmd = host.client(
                client,
                &[
                    "create",
                    "--lock-wait",
                    LOCK_WAIT,
                    "-C",
                    "none",
                    &target,
                    "data",
                ],
                &src(i),
                &home(i),
            );
            (format!("create-{i}"), cmd)
        })
        .collect();
    let stop = AtomicBool::new(false);
    let (outs, reads) = std::thread::scope(|s| {
        let reader = s.spawn(|| reader_loop(&host, &repo, &names, &stop));
        // Stops the reader also when `run_all` panics, so the scope can end.
        let stop_reader = StopOnDrop(&stop);
        let outs = run_all(creates, &host.path("logs"));
        drop(stop_reader);
        (outs, reader.join().unwrap())
    });
    let mut longest = Duration::ZERO;
    for (i, (out, took)) in outs.iter().enumerate() {
        let (client, remote) = writers[i];
        ok(out, &format!("{client:?} create c-{i} (ssh: {remote})"));
        longest = longest.max(*took);
    }
    assert!(
        !repo.join("lock.exclusive").exists() && !repo.join("lock.roster").exists(),
        "a lock was left behind"
    );

    // The oracle: all eight archives in the manifest (an overlapping transaction would have
    // lost one), every object intact.
    let list = host
        .client(
            Client::Borg,
            &["list", "--short", &local],
            host.dir.path(),
            &host.path("home-init"),
        )
        .output()
        .unwrap();
    let listed = ok(&list, "borg list");
    let listed_names: BTreeSet<String> = listed.lines().map(str::to_string).collect();
    assert_eq!(listed.lines().count(), CLIENTS, "{listed}");
    assert_eq!(listed_names, names);
    let check = host
        .client(
            Client::Borg,
            &["check", "--verify-data", &local],
            host.dir.path(),
            &host.path("home-init"),
        )
        .output()
        .unwrap();
    ok(&check, "borg check --verify-data");

    // Every archive extracts equal to its source: eight rborg readers at once (shared locks),
    // the first four over ssh://.
    let extracts = (0..CLIENTS)
        .map(|i| {
            let out_dir = host.path(&format!("out-{i}"));
            std::fs::create_dir_all(&out_dir).unwrap();
            let base = if i < 4 { &url } else { &local };
            let target = format!("{base}::c-{i}");
            let cmd = host.client(Client::Rborg, &["extract", &target], &out_dir, &home(i));
            (format!("extract-{i}"), cmd)
        })
        .collect();
    for (i, (out, _)) in run_all(extracts, &host.path("logs")).iter().enumerate() {
        ok(out, &format!("rborg extract c-{i}"));
        assert_same_tree(
            &src(i).join("data"),
            &host.path(&format!("out-{i}/data")),
            SnapshotOptions::default(),
            &format!("c-{i} (written by {:?})", writers[i].0),
        );
    }
    assert!(
        reads.counts.iter().any(|&n| n > 0 && n < CLIENTS),
        "the reader never listed while the writes were under way: {reads:?}"
    );
    let mut per_count = [0usize; CLIENTS + 1];
    for &n in &reads.counts {
        per_count[n] += 1;
    }
    eprintln!(
        "serve load (8 writers, one repository): longest writer {longest:.1?}; reader: \
         {} listings (showing 0..=8 archives: {per_count:?}), {} lock timeouts; whole test \
         {:.1?}",
        reads.counts.len(),
        reads.timed_out,
        started.elapsed()
    );
}
