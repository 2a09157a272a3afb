//! AES-CTR nonce uniqueness (issue 10, part 6): rborg and borg 1.2.4 write in turns to one
//! `repokey` repository (AES-256-CTR + HMAC-SHA256), locally and through `borg serve` both
//! ways, and some writers are SIGKILLed mid-create; after every step the test reads every PUT
//! in every segment file (committed or not) and checks that no AES-CTR counter value is ever
//! used twice.
//!
//! borg 1.2.4's envelope for these keys (`crypto/key.py`, `AESKeyBase`): TYPE (1 byte, 0x03
//! for a repokey) + HMAC-SHA256 (32) + the low 8 bytes of the 16-byte counter, big-endian
//! (the high 8 are zero) + the ciphertext; a message uses the counter values `iv ..
//! iv + ceil(len / 16)`. `crypto/nonces.py` (`NonceManager.ensure_reservation`) reserves
//! counter space before using it: it writes the end of the reservation to the repository's
//! `nonce` file and to the client's `security/<repo id>/nonce`, and starts from the maximum
//! of both. So the test checks, per step:
//!
//! * the counter ranges of all distinct messages ever seen are disjoint (an identical
//!   message seen again, e.g. after a segment was rewritten, is the same use);
//! * every message the step added starts at or above the repository's `nonce` and the
//!   writer's own security-dir `nonce` as they were before the step (the other writer's
//!   reservation is never reused, not even one a killed writer left);
//! * the repository's `nonce` after the step is above every counter value on disk (space is
//!   reserved before it is used, also by a writer killed mid-transaction).
//!
//! Needs `/usr/bin/borg`: without it the test prints a notice and passes, unless
//! `RBORG_REQUIRE_BORG=1`.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use rborg_repository::segment::{LoggedIO, TAG_PUT};
use rborg_testkit::{borg_command, noise, ok, BORG};
use sha2::{Digest, Sha256};

const PASSPHRASE: &str = "nonce-test-pw";
/// `RepoKey.TYPE` in borg 1.2.4 `crypto/key.py`.
const REPOKEY_TYPE: u8 = 0x03;
/// TYPE + HMAC before the 8-byte counter (`AESKeyBase.PAYLOAD_OVERHEAD` = 1 + 32 + 8).
const IV_OFFSET: usize = 33;
const HEADER: usize = IV_OFFSET + 8;
/// Small chunks (64 KiB on average), so every step encrypts many messages.
const CHUNKER: &str = "buzhash,10,23,16,4095";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Writer {
    Rborg,
    Borg,
}

/// One encrypted message found in a segment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Message {
    blocks: u64,
    digest: [u8; 32],
}

struct World {
    dir: tempfile::TempDir,
    /// counter start -> message, over everything ever seen on disk
    seen: BTreeMap<u64, Message>,
    /// which step first showed each counter start (for messages)
    origin: BTreeMap<u64, String>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let rsh = dir.path().join("bin/rsh");
        std::fs::create_dir_all(rsh.parent().unwrap()).unwrap();
        std::fs::write(
            &rsh,
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do case \"$1\" in -p) shift 2;; -*) shift;; *) shift; break;; esac; done\nexec sh -c \"$*\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&rsh, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rborg"), dir.path().join("bin/borg"))
            .unwrap();
        std::fs::create_dir_all(dir.path().join("input")).unwrap();
        World {
            dir,
            seen: BTreeMap::new(),
            origin: BTreeMap::new(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn home(writer: Writer) -> &'static str {
        match writer {
            Writer::Rborg => "home-rborg",
            Writer::Borg => "home-borg",
        }
    }

    /// `writer args`; `remote` reaches the repository over the stand-in ssh with the other
    /// program as `borg serve`.
    fn cmd(&self, writer: Writer, remote: bool, args: &[&str]) -> Command {
        let rborg = env!("CARGO_BIN_EXE_rborg");
        let (program, mut full) = match writer {
            Writer::Rborg => (rborg, vec!["borg"]),
            Writer::Borg => (BORG, vec![]),
        };
        let repo = self.path("repo").display().to_string();
        let url = if remote {
            format!("ssh://localhost{repo}")
        } else {
            repo
        };
        let owned: Vec<String> = args.iter().map(|a| a.replace("REPO", &url)).collect();
        full.extend(owned.iter().map(String::as_str));
        let home = self.path(Self::home(writer));
        let mut cmd = borg_command(program, &full, self.dir.path(), &home, PASSPHRASE);
        let serve = match writer {
            Writer::Rborg => BORG.to_string(),
            Writer::Borg => self.path("bin/borg").display().to_string(),
        };
        cmd.env("BORG_RSH", self.path("bin/rsh"))
            .env("BORG_REMOTE_PATH", serve)
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes");
        cmd
    }

    fn run(&self, writer: Writer, remote: bool, args: &[&str]) -> String {
        let out: Output = self.cmd(writer, remote, args).output().unwrap();
        ok(&out, &format!("{writer:?} {args:?} (remote {remote})"))
    }

    fn read_nonce(path: &Path) -> Option<u64> {
        let text = std::fs::read_to_string(path).ok()?;
        Some(u64::from_str_radix(text.trim(), 16).expect("a nonce file holds hex"))
    }

    fn repo_id(&self) -> String {
        let config = std::fs::read_to_string(self.path("repo/config")).unwrap();
        config
            .lines()
            .find_map(|l| l.strip_prefix("id = "))
            .expect("repository id")
            .trim()
            .to_string()
    }

    /// The repository's `nonce` and `writer`'s security-dir `nonce`.
    fn nonces(&self, writer: Writer) -> (Option<u64>, Option<u64>) {
        let local = self
            .path(Self::home(writer))
            .join(".config/borg/security")
            .join(self.repo_id())
            .join("nonce");
        (
            Self::read_nonce(&self.path("repo/nonce")),
            Self::read_nonce(&local),
        )
    }

    /// Every PUT of every segment file now on disk, committed or not (a segment cut short by
    /// a kill is read up to its last whole entry): counter start -> message.
    fn scan(&self) -> BTreeMap<u64, Message> {
        let repo = self.path("repo");
        let config = std::fs::read_to_string(repo.join("config")).unwrap();
        let per_dir = config
            .lines()
            .find_map(|l| l.strip_prefix("segments_per_dir = "))
            .map_or(1000, |v| v.trim().parse().unwrap());
        let mut io = LoggedIO::new(&repo, u64::MAX, per_dir);
        let mut found = BTreeMap::new();
        for (segment, _) in io.segment_list(None, false).unwrap() {
            let Ok(entries) = io.iter_objects(segment, 0, true, true) else {
                continue; // empty or cut before its magic
            };
            for entry in entries {
                let Ok(entry) = entry else { break };
                let (TAG_PUT, Some(data)) = (entry.tag, entry.data) else {
                    continue;
                };
                assert!(data.len() >= HEADER, "a PUT shorter than the envelope");
                assert_eq!(data[0], REPOKEY_TYPE, "envelope type of {:?}", entry.key);
                let iv = u64::from_be_bytes(data[IV_OFFSET..HEADER].try_into().unwrap());
                let msg = Message {
                    blocks: (data.len() - HEADER).div_ceil(16) as u64,
                    digest: Sha256::digest(&data).into(),
                };
                if let Some(other) = found.insert(iv, msg) {
                    assert_eq!(other, msg, "two different messages with counter {iv:#x}");
                }
            }
        }
        found
    }

    /// Records what `step` added and checks it (see the module documentation).
    fn check_step(&mut self, step: &str, writer: Writer, before: (Option<u64>, Option<u64>)) {
        let now = self.scan();
        let floor = before.0.max(before.1).unwrap_or(0);
        let mut added = 0;
        let mut span = (u64::MAX, 0);
        for (&iv, msg) in &now {
            match self.seen.get(&iv) {
                Some(old) => assert_eq!(
                    old, msg,
                    "{step}: counter {iv:#x} reused (first used by {})",
                    self.origin[&iv]
                ),
                None => {
                    assert!(
                        iv >= floor,
                        "{step}: {writer:?} used counter {iv:#x} below the reservation {floor:#x} \
                         (repository nonce {:?}, own nonce {:?})",
                        before.0,
                        before.1
                    );
                    self.seen.insert(iv, *msg);
                    self.origin.insert(iv, step.to_string());
                    added += 1;
                    span = (span.0.min(iv), span.1.max(iv));
                }
            }
        }
        assert!(added > 0, "{step}: the writer stored nothing");
        // disjoint ranges over everything ever seen
        let mut prev: Option<(u64, u64)> = None;
        for (&iv, msg) in &self.seen {
            if let Some((piv, pend)) = prev {
                assert!(
                    iv >= pend,
                    "{step}: counters {iv:#x} ({}) and {piv:#x}..{pend:#x} ({}) overlap",
                    self.origin[&iv],
                    self.origin[&piv]
                );
            }
            prev = Some((iv, iv + msg.blocks));
        }
        let (repo_after, _) = self.nonces(writer);
        let end = prev.map_or(0, |(_, end)| end);
        let repo_after = repo_after.expect("the repository has a nonce file after a write");
        assert!(
            end <= repo_after,
            "{step}: counter {end:#x} used but the repository reserved only up to {repo_after:#x}"
        );
        eprintln!(
            "nonce test: {step}: {added} new messages at {:#x}..={:#x} (floor {floor:#x}), {} in all, reservation now {repo_after:#x}",
            span.0,
            span.1,
            self.seen.len()
        );
    }

    /// A new file for the next archive, so every step encrypts new chunks.
    fn new_input(&self, name: &str, seed: u64, len: usize) {
        std::fs::write(self.path("input").join(name), noise(seed, len)).unwrap();
    }

    /// `writer` creates `archive` (over serve if `remote`), then the step is checked.
    fn create(&mut self, writer: Writer, remote: bool, archive: &str) {
        let before = self.nonces(writer);
        self.run(
            writer,
            remote,
            &[
                "create",
                "--chunker-params",
                CHUNKER,
                &format!("REPO::{archive}"),
                "input",
            ],
        );
        self.check_step(archive, writer, before);
    }

    /// `writer` starts creating `archive` from a new big file and is SIGKILLed once more
    /// than 1 MiB has reached the segments; the step (its uncommitted data included) is
    /// checked, then the lock is broken as a user would.
    fn killed_create(&mut self, writer: Writer, archive: &str, seed: u64) {
        self.new_input(&format!("{archive}-big"), seed, 8 << 20);
        let before = self.nonces(writer);
        let size_before = dir_size(&self.path("repo/data"));
        let mut child = self
            .cmd(
                writer,
                false,
                &[
                    "create",
                    "--chunker-params",
                    CHUNKER,
                    &format!("REPO::{archive}"),
                    "input",
                ],
            )
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(
                child.try_wait().unwrap().is_none(),
                "{archive}: {writer:?} finished before it could be killed"
            );
            assert!(Instant::now() < deadline, "{archive}: no progress");
            if dir_size(&self.path("repo/data")) > size_before + (1 << 20) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
        child.wait().unwrap();
        self.check_step(&format!("{archive} (killed)"), writer, before);
        let repo = self.path("repo").display().to_string();
        self.run(Writer::Borg, false, &["break-lock", &repo]);
        std::fs::remove_file(self.path("input").join(format!("{archive}-big"))).unwrap();
    }
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

#[test]
fn rborg_and_borg_never_reuse_a_counter() {
    if !rborg_testkit::borg_available("nonce uniqueness test") {
        return;
    }
    let mut w = World::new();
    let repo = w.path("repo").display().to_string();
    w.run(Writer::Borg, false, &["init", "-e", "repokey", &repo]);
    // (init stores the first manifest, from counter 0)
    w.check_step("init", Writer::Borg, (None, None));
    let mut seed = 1;
    for round in 1..=3 {
        for writer in [Writer::Rborg, Writer::Borg] {
            seed += 2;
            w.new_input(&format!("f{seed}"), seed, 300_000);
            w.create(writer, false, &format!("{writer:?}-{round}"));
        }
    }
    // through serve, both ways: rborg's client with borg serve, borg's with rborg serve
    for writer in [Writer::Rborg, Writer::Borg] {
        seed += 2;
        w.new_input(&format!("f{seed}"), seed, 300_000);
        w.create(writer, true, &format!("{writer:?}-remote"));
    }
    // a writer killed mid-transaction, then the other one continues (and then itself)
    for (killed, next) in [(Writer::Rborg, Writer::Borg), (Writer::Borg, Writer::Rborg)] {
        seed += 2;
        w.killed_create(killed, &format!("{killed:?}-killed"), seed);
        for writer in [next, killed] {
            seed += 2;
            w.new_input(&format!("f{seed}"), seed, 300_000);
            w.create(
                writer,
                false,
                &format!("{writer:?}-after-{killed:?}-killed"),
            );
        }
    }
    // borg check still passes and the messages seen cover many counters
    w.run(Writer::Borg, false, &["check", &repo]);
    assert!(w.seen.len() > 100, "only {} messages seen", w.seen.len());
    eprintln!(
        "nonce test: {} distinct messages, no counter used twice",
        w.seen.len()
    );
}
