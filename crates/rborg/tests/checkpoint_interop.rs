//! Checkpoints of `rborg borg create` (borg 1.2.4 `--checkpoint-interval`, SIGINT), checked
//! by real borg 1.2.4.
//!
//! Time is made to pass deterministically with a FIFO read through `--read-special`: the test
//! feeds it in pieces with pauses longer than the checkpoint interval, so a checkpoint is
//! due at the first chunk of every piece after the first (borg checks after every chunk).
//! Small chunker parameters (`buzhash,10,23,16,4095`) give every piece several chunks.
//!
//! * the same run by rborg and by borg, in unencrypted repositories (same chunk seed, so
//!   the same chunk boundaries): both show `NAME.checkpoint` while running (in a copy of the
//!   repository taken while the writer waits for the FIFO, listed with `--bypass-lock`:
//!   listing the live repository that way can race with a commit and "recover" files the
//!   writer still needs, in borg and rborg alike), leave only `NAME`, and store the same part items
//!   `fifo.borg_part_N` with the same sizes; `borg check --verify-data` passes and borg
//!   extracts rborg's archive to the fed data;
//! * SIGKILL after a checkpoint: borg and rborg list `NAME.checkpoint`, borg lists its
//!   `.borg_part_` items with `--consider-part-files`, checks the repository and extracts the
//!   checkpoint (parts concatenate to what was fed), and the next rborg create stores almost
//!   nothing new;
//! * SIGINT: a checkpoint at the next chunk, the FIFO read to its end (last part), nothing
//!   after it, "Got Ctrl-C / SIGINT." and rc 2.
//!
//! These tests need `/usr/bin/borg`. Without it they print a notice and pass, unless
//! `RBORG_REQUIRE_BORG=1` (CI sets it), in which case they fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rborg_testkit::{borg_command, noise, BORG};

const PASSPHRASE: &str = "checkpoint-test-pw";
/// Small chunks, so each FIFO piece is cut into several.
const CHUNKER: &str = "buzhash,10,23,16,4095";
/// Size of one FIFO piece.
const PIECE: usize = 300_000;
/// Pause between pieces: longer than the 1 s interval plus the time a checkpoint takes (half
/// of it must cover a checkpoint of the debug binary on a loaded 2-core machine: 1.25 s once
/// did not, with the whole test suite running).
const GAP: Duration = Duration::from_millis(3500);
/// How many small files.
const SMALL: usize = 150;

fn borg_available() -> bool {
    rborg_testkit::borg_available("checkpoint interop test")
}

/// A command of `program` (borg, or rborg with its `borg` personality) with `home` as
/// `BORG_BASE_DIR`.
fn command(dir: &Path, home: &str, program: &str, args: &[&str]) -> Command {
    let (program, args) = if program == "rborg" {
        let mut full = vec!["borg"];
        full.extend_from_slice(args);
        (env!("CARGO_BIN_EXE_rborg"), full)
    } else {
        (program, args.to_vec())
    };
    let mut cmd = borg_command(program, &args, dir, &dir.join(home), PASSPHRASE);
    cmd.env("TZ", "UTC")
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8");
    cmd
}

fn borg(dir: &Path, args: &[&str]) -> Output {
    command(dir, "home", BORG, args).output().unwrap()
}

fn rborg(dir: &Path, args: &[&str]) -> Output {
    command(dir, "home", "rborg", args).output().unwrap()
}

#[track_caller]
fn ok(out: &Output, what: &str) -> String {
    rborg_testkit::ok(out, what)
}

/// The source tree: a 20 MB file, small files and the FIFO `fifo`.
fn make_tree(src: &Path) -> PathBuf {
    std::fs::create_dir_all(src.join("small")).unwrap();
    std::fs::write(src.join("big"), noise(7, 20_000_000)).unwrap();
    for i in 0..SMALL {
        std::fs::write(
            src.join(format!("small/f{i:03}")),
            format!("small file {i}\n"),
        )
        .unwrap();
    }
    let fifo = src.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    fifo
}

/// The data fed into the FIFO: `n` pieces.
fn pieces(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| noise(100 + i as u64, PIECE)).collect()
}

/// Feeds `pieces` into `fifo` with [`GAP`] between them (opening blocks until the reader
/// opened it); sends the index of each piece on `written` once it is written. Write errors
/// (the reader was killed) end the feeding.
fn feed(fifo: PathBuf, pieces: Vec<Vec<u8>>, written: mpsc::Sender<usize>) -> JoinHandle<()> {
    feed_holding(fifo, pieces, written, None)
}

/// [`feed`], but after the piece `hold.0` the next one waits for `hold.1` (instead of
/// [`GAP`]); the sender hanging up ends the feeding.
fn feed_holding(
    fifo: PathBuf,
    pieces: Vec<Vec<u8>>,
    written: mpsc::Sender<usize>,
    hold: Option<(usize, mpsc::Receiver<()>)>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        use std::io::Write;
        let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&fifo) else {
            return;
        };
        for (i, piece) in pieces.iter().enumerate() {
            let held = hold.as_ref().filter(|(after, _)| i == after + 1);
            if let Some((_, go)) = held {
                if go.recv().is_err() {
                    return;
                }
            } else if i > 0 {
                std::thread::sleep(GAP);
            }
            if f.write_all(piece).is_err() {
                return;
            }
            let _ = written.send(i);
        }
    })
}

/// Starts `create` with `--read-special`, the small chunker and `extra` options.
fn spawn_create(dir: &Path, program: &str, extra: &[&str], archive: &str, paths: &[&str]) -> Child {
    let mut args = vec!["create", "--read-special", "--chunker-params", CHUNKER];
    args.extend_from_slice(extra);
    args.push(archive);
    args.extend_from_slice(paths);
    command(dir, "home", program, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until piece `index` was written, then half a gap more: the writer has taken the
/// checkpoint that piece caused and waits for the next one.
fn wait_for_piece(written: &mpsc::Receiver<usize>, index: usize) {
    while written.recv_timeout(Duration::from_secs(60)).unwrap() < index {}
    std::thread::sleep(GAP / 2);
}

/// `rborg list --bypass-lock ARGS` on a copy of `dir/repo` taken now (the copy holds the
/// writer's lock), where `snapshot` in `args` names the copy; `None` when the copy failed
/// (a file the writer removed while it was copied).
fn list_snapshot(dir: &Path, args: &[&str]) -> Option<Output> {
    let copy = dir.join("snapshot");
    let out = Command::new("cp")
        .arg("-a")
        .arg(dir.join("repo"))
        .arg(&copy)
        .output()
        .unwrap();
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&copy);
        return None;
    }
    let mut full = vec!["list", "--bypass-lock"];
    full.extend_from_slice(args);
    let out = command(dir, "observer", "rborg", &full).output().unwrap();
    std::fs::remove_dir_all(&copy).unwrap();
    Some(out)
}

/// The archives (with checkpoints) of a copy of `dir/repo` taken now.
fn archives_of_snapshot(dir: &Path) -> Vec<String> {
    let out = list_snapshot(dir, &["--consider-checkpoints", "--short", "snapshot"])
        .expect("cp -a repo snapshot");
    ok(&out, "rborg list --bypass-lock snapshot")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The `list` options [`parse_fifo_items`] reads: every item, part files too, as path and size.
const FIFO_ITEMS_LIST: [&str; 3] = ["--consider-part-files", "--format", "{path} {size}{NL}"];

/// `(path, size)` of the items of a [`FIFO_ITEMS_LIST`] listing whose path contains `fifo`.
fn parse_fifo_items(listing: &str) -> Vec<(String, u64)> {
    listing
        .lines()
        .filter(|l| l.contains("fifo"))
        .map(|l| {
            let (p, s) = l.rsplit_once(' ').unwrap();
            (p.to_string(), s.parse().unwrap())
        })
        .collect()
}

/// [`fifo_items`] of `dir/repo::archive` in a copy of the repository taken now; empty while
/// the archive does not exist (or the copy caught a commit half way).
fn fifo_items_of_snapshot(dir: &Path, archive: &str) -> Vec<(String, u64)> {
    let spec = format!("snapshot::{archive}");
    let mut args = FIFO_ITEMS_LIST.to_vec();
    args.push(&spec);
    list_snapshot(dir, &args)
        .filter(|out| out.status.success())
        .map(|out| parse_fifo_items(&String::from_utf8_lossy(&out.stdout)))
        .unwrap_or_default()
}

/// `(path, size)` of the items whose path contains `fifo`, parts included.
fn fifo_items(dir: &Path, archive: &str) -> Vec<(String, u64)> {
    let mut args = vec!["list"];
    args.extend_from_slice(&FIFO_ITEMS_LIST);
    args.push(archive);
    parse_fifo_items(&ok(&borg(dir, &args), "borg list --consider-part-files"))
}

fn archives(dir: &Path, program: &str) -> Vec<String> {
    let out = command(
        dir,
        "home",
        program,
        &["list", "--consider-checkpoints", "--short", "repo"],
    )
    .output()
    .unwrap();
    ok(&out, "list --consider-checkpoints")
        .lines()
        .map(str::to_string)
        .collect()
}

#[track_caller]
fn check_verify_data(dir: &Path) {
    let out = borg(dir, &["check", "-v", "--verify-data", "repo"]);
    ok(&out, "borg check --verify-data");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("0 integrity errors"), "{log}");
    assert!(!log.contains("orphaned"), "objects left over: {log}");
}

/// One timed-checkpoint run of `program` in `dir`: the FIFO first (so its pieces alone set
/// the pace), then the big and the small files. Returns the FIFO's items and the archives
/// listed while the writer waited for the last piece.
fn timed_run(dir: &Path, program: &str) -> (Vec<(String, u64)>, Vec<String>) {
    let fifo = make_tree(&dir.join("src"));
    ok(&borg(dir, &["init", "-e", "none", "repo"]), "borg init");
    let (tx, rx) = mpsc::channel();
    let feeder = feed(fifo, pieces(3), tx);
    let child = spawn_create(
        dir,
        program,
        &["--checkpoint-interval", "1"],
        "repo::arch",
        &["src/fifo", "src/big", "src/small"],
    );
    wait_for_piece(&rx, 1);
    let during = archives_of_snapshot(dir);
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    ok(&out, &format!("{program} create"));
    assert_eq!(
        archives(dir, BORG),
        ["arch"],
        "{program}: only the archive remains"
    );
    assert_eq!(archives(dir, "rborg"), ["arch"]);
    check_verify_data(dir);
    (fifo_items(dir, "repo::arch"), during)
}

#[test]
fn timed_checkpoints_like_borg() {
    if !borg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = (tmp.path().join("rborg"), tmp.path().join("borg"));
    std::fs::create_dir_all(&ours).unwrap();
    std::fs::create_dir_all(&theirs).unwrap();

    // real borg on the same scenario, at the same time
    let borg_run = std::thread::spawn(move || timed_run(&theirs, BORG));
    let (items, during) = timed_run(&ours, "rborg");
    assert_eq!(
        during,
        ["arch.checkpoint"],
        "rborg: the checkpoint during the run"
    );
    // a part at the 2nd and the 3rd piece, then the rest: three parts, then the file
    let names: Vec<&str> = items.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "src/fifo.borg_part_1",
            "src/fifo.borg_part_2",
            "src/fifo.borg_part_3",
            "src/fifo"
        ]
    );
    let total = 3 * PIECE as u64;
    assert_eq!(items.iter().take(3).map(|(_, s)| s).sum::<u64>(), total);
    assert_eq!(items[3].1, total);
    // the first part ends within the second piece (the checkpoint's chunk)
    assert!(
        items[0].1 > PIECE as u64 && items[0].1 < 2 * PIECE as u64,
        "{items:?}"
    );

    // borg extracts the archive (parts left out) to what was fed and read
    let x = ours.join("x");
    std::fs::create_dir(&x).unwrap();
    ok(
        &command(&ours, "home", BORG, &["extract", "../repo::arch"])
            .current_dir(&x)
            .output()
            .unwrap(),
        "borg extract",
    );
    assert_eq!(
        std::fs::read(x.join("src/fifo")).unwrap(),
        pieces(3).concat()
    );
    assert!(std::fs::read(x.join("src/big")).unwrap() == noise(7, 20_000_000));
    assert_eq!(
        std::fs::read_dir(x.join("src/small")).unwrap().count(),
        SMALL
    );
    assert!(!x.join("src/fifo.borg_part_1").exists());

    // borg: same archive names, same part items and sizes
    let (borg_items, borg_during) = borg_run.join().unwrap();
    assert_eq!(
        borg_during,
        ["arch.checkpoint"],
        "borg: the checkpoint during the run"
    );
    assert_eq!(items, borg_items, "rborg's part items differ from borg's");
}

#[test]
fn sigkill_after_checkpoint_keeps_the_checkpoint() {
    if !borg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fifo = make_tree(&dir.join("src"));
    ok(&borg(dir, &["init", "-e", "repokey", "repo"]), "borg init");
    let (tx, rx) = mpsc::channel();
    let fed = pieces(4);
    // the fourth piece waits until rborg has been killed
    let (go, hold) = mpsc::channel();
    let feeder = feed_holding(fifo, fed.clone(), tx, Some((2, hold)));
    // the big and small files first: the checkpoints during the FIFO hold them
    let mut child = spawn_create(
        dir,
        "rborg",
        &["--checkpoint-interval", "1"],
        "repo::arch",
        &["src/big", "src/small", "src/fifo"],
    );
    // killed while it waits for the fourth piece, once a checkpoint holds parts of more than
    // the first piece (no fixed delay: a checkpoint of a debug build on a busy machine took
    // longer than any). A checkpoint is taken when a chunk arrives a checkpoint interval after
    // the last one, and the last chunk of a piece only once the next piece shows where it
    // ends: on a loaded machine the second piece's chunks once all came within the interval
    // of the checkpoint its arrival caused (which held the first piece only), and with the
    // third piece held back no chunk came after them. The third piece's chunks come a gap
    // after the second's, so the checkpoint they cause holds the second piece's.
    wait_for_piece(&rx, 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let parts = fifo_items_of_snapshot(dir, "arch.checkpoint");
        if parts.iter().map(|(_, size)| size).sum::<u64>() > PIECE as u64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint with the second piece: {parts:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    drop(go);
    feeder.join().unwrap();

    // both list the checkpoint (and nothing else)
    assert_eq!(archives(dir, BORG), ["arch.checkpoint"]);
    assert_eq!(archives(dir, "rborg"), ["arch.checkpoint"]);
    let out = borg(dir, &["list", "--short", "repo::arch.checkpoint"]);
    assert!(
        !ok(&out, "borg list").contains(".borg_part_"),
        "part files are hidden without --consider-part-files"
    );
    let parts: Vec<(String, u64)> = fifo_items(dir, "repo::arch.checkpoint");
    assert!(!parts.is_empty());
    for (i, (path, _)) in parts.iter().enumerate() {
        assert_eq!(path, &format!("src/fifo.borg_part_{}", i + 1), "{parts:?}");
    }
    check_verify_data(dir);

    // borg extracts the checkpoint: the files before the FIFO whole, the FIFO's parts
    // concatenating to the beginning of what was fed
    let x = dir.join("x");
    std::fs::create_dir(&x).unwrap();
    ok(
        &command(
            dir,
            "home",
            BORG,
            &[
                "extract",
                "--consider-part-files",
                "../repo::arch.checkpoint",
            ],
        )
        .current_dir(&x)
        .output()
        .unwrap(),
        "borg extract --consider-part-files",
    );
    assert!(std::fs::read(x.join("src/big")).unwrap() == noise(7, 20_000_000));
    for i in 0..SMALL {
        let name = format!("src/small/f{i:03}");
        assert_eq!(
            std::fs::read(x.join(&name)).unwrap(),
            std::fs::read(dir.join(&name)).unwrap()
        );
    }
    let mut got = Vec::new();
    for (path, size) in &parts {
        let data = std::fs::read(x.join(path)).unwrap();
        assert_eq!(data.len() as u64, *size);
        got.extend(data);
    }
    let all = fed.concat();
    assert!(got.len() > PIECE && got.len() < all.len(), "{}", got.len());
    assert!(
        got[..] == all[..got.len()],
        "the parts are not the fed data"
    );

    // the next create finds everything the checkpoint stored
    let out = rborg(
        dir,
        &[
            "create",
            "--json",
            "--chunker-params",
            CHUNKER,
            "repo::again",
            "src/big",
            "src/small",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&out, "rborg create")).unwrap();
    let stats = &v["archive"]["stats"];
    let (original, dedup) = (
        stats["original_size"].as_u64().unwrap(),
        stats["deduplicated_size"].as_u64().unwrap(),
    );
    assert!(original > 20_000_000, "{stats}");
    assert!(dedup < 100_000, "content was stored again: {stats}");
    assert_eq!(archives(dir, BORG), ["arch.checkpoint", "again"]);
    check_verify_data(dir);
}

#[test]
fn sigint_checkpoints_and_stops() {
    if !borg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fifo = make_tree(&dir.join("src"));
    ok(&borg(dir, &["init", "-e", "repokey", "repo"]), "borg init");
    let (tx, rx) = mpsc::channel();
    let fed = pieces(3);
    let feeder = feed(fifo, fed.clone(), tx);
    // no timed checkpoints: only the interrupt asks for one
    let child = spawn_create(
        dir,
        "rborg",
        &[],
        "repo::arch",
        &["src/fifo", "src/big", "src/small"],
    );
    // while the first piece is read: the next chunk (second piece) takes the checkpoint
    assert_eq!(rx.recv_timeout(Duration::from_secs(60)).unwrap(), 0);
    std::thread::sleep(GAP / 3);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Got Ctrl-C / SIGINT."),
        "{out:?}"
    );

    assert_eq!(archives(dir, BORG), ["arch.checkpoint"]);
    // a part at the interrupt, the rest of the FIFO (read to its end) as the last part,
    // and nothing after the FIFO
    let items = ok(
        &borg(
            dir,
            &[
                "list",
                "--consider-part-files",
                "--short",
                "repo::arch.checkpoint",
            ],
        ),
        "borg list",
    );
    assert_eq!(
        items.lines().collect::<Vec<_>>(),
        ["src/fifo.borg_part_1", "src/fifo.borg_part_2"]
    );
    // the part at the interrupt holds the chunks taken before it: usually some of the second
    // piece's, but on a loaded machine the interrupt was seen at the first piece's last chunk
    // (which the second piece's arrival completes), as borg would see it there
    let parts = fifo_items(dir, "repo::arch.checkpoint");
    assert!(parts[0].1 > (PIECE / 2) as u64, "{parts:?}");
    assert_eq!(
        parts.iter().map(|(_, s)| s).sum::<u64>(),
        (3 * PIECE) as u64
    );
    let x = dir.join("x");
    std::fs::create_dir(&x).unwrap();
    ok(
        &command(
            dir,
            "home",
            BORG,
            &[
                "extract",
                "--consider-part-files",
                "../repo::arch.checkpoint",
            ],
        )
        .current_dir(&x)
        .output()
        .unwrap(),
        "borg extract",
    );
    let mut got = std::fs::read(x.join("src/fifo.borg_part_1")).unwrap();
    got.extend(std::fs::read(x.join("src/fifo.borg_part_2")).unwrap());
    assert!(got == fed.concat());
    check_verify_data(dir);
}
