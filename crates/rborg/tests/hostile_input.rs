//! Hostile and broken repositories, end to end (issue 10): what an attacker with write access to
//! the storage (or a broken disk) can do, and what rborg must do about it, checked against the
//! real borg 1.2.4 on the same damage.
//!
//! * a file chunk, the manifest or the archive metadata rewritten with a valid segment CRC
//!   (so only the MAC can tell): refused with an integrity error, exit code 2 for reading
//!   commands, `check --verify-data` reports the chunk (exit code 1), as borg does;
//! * a replayed older manifest (the whole repository put back as it was before the last
//!   backup): refused through the security directory (borg's `RepositoryReplay`), for rborg and
//!   borg alike, while a client that never saw the newer state works;
//! * a segment cut short so that the index points past its end: a clean error (exit code 2),
//!   `check` finds it, `check --repair` repairs it, and borg agrees with the result.
//!
//! Wrong passphrases are in `borg_interop.rs`, hostile RPC peers in `remote_peers.rs` and
//! `crates/remote/tests/rpc.rs`. Needs `/usr/bin/borg` (skips with a notice unless
//! `RBORG_REQUIRE_BORG=1`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::{assert_code, stderr, Tool, TOOLS};
use rborg_repository::segment::{LoggedIO, TAG_PUT};
use rborg_testkit::{borg_available, noise, ok};

const PASSPHRASE: &str = "hostile-test-pw";

struct Sandbox {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("in")).unwrap();
        // one file of one chunk, the largest object of the repository
        std::fs::write(dir.join("in/data.bin"), noise(5, 300_000)).unwrap();
        std::fs::write(dir.join("in/small.txt"), b"small\n").unwrap();
        Sandbox { _tmp: tmp, dir }
    }

    /// Runs `tool` with borg's state under `home-NAME`.
    fn run(&self, tool: Tool, home: &str, args: &[&str]) -> Output {
        let home = self.dir.join(format!("home-{home}"));
        std::fs::create_dir_all(&home).unwrap();
        let mut cmd = tool.command(args, &self.dir, &home, PASSPHRASE);
        cmd.env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "YES")
            .stdin(Stdio::null());
        cmd.output().unwrap()
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A repokey repository `name` made by rborg with archive `a1`; returns its path.
    fn repository(&self, name: &str) -> String {
        let repo = self.path(name);
        ok(
            &self.run(Tool::Rborg, "maker", &["init", "-e", "repokey", &repo]),
            "init",
        );
        ok(
            &self.run(
                Tool::Rborg,
                "maker",
                &["create", &format!("{repo}::a1"), "in"],
            ),
            "create a1",
        );
        repo
    }
}

/// A PUT in a segment file: where it is and what it stores.
struct Put {
    file: PathBuf,
    offset: u64,
    size: u64,
    id: [u8; 32],
    data_len: usize,
}

/// Every PUT in the repository's segment files.
fn puts(repo: &str) -> Vec<Put> {
    let mut io = LoggedIO::new(Path::new(repo), u64::MAX, 1000);
    let mut found = Vec::new();
    for (segment, file) in io.segment_list(None, false).unwrap() {
        for entry in io.iter_objects(segment, 0, true, true).unwrap() {
            let entry = entry.unwrap();
            if entry.tag == TAG_PUT {
                found.push(Put {
                    file: file.clone(),
                    offset: u64::from(entry.offset),
                    size: u64::from(entry.size),
                    id: entry.key,
                    data_len: entry.data.map_or(0, |d| d.len()),
                });
            }
        }
    }
    found
}

/// Flips one byte in the middle of the stored (encrypted) data of `put` and writes a valid
/// CRC for the entry, as an attacker who can write the storage would: only the MAC can tell.
fn tamper(put: &Put) {
    let mut bytes = std::fs::read(&put.file).unwrap();
    let start = put.offset as usize;
    let end = start + put.size as usize;
    let data_start = start + 41;
    bytes[data_start + put.data_len / 2] ^= 0x55;
    let crc = crc32fast::hash(&bytes[start + 4..end]);
    bytes[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&put.file, bytes).unwrap();
}

/// The archive's id (hex), as borg lists it.
fn archive_id(sb: &Sandbox, repo: &str, archive: &str) -> [u8; 32] {
    let out = sb.run(
        Tool::Borg,
        "maker",
        &[
            "list",
            "--format",
            "{id}{NL}",
            "--glob-archives",
            archive,
            repo,
        ],
    );
    let hex = ok(&out, "borg list ids");
    let bytes = hex::decode(hex.trim()).unwrap();
    bytes.try_into().unwrap()
}

fn copy_dir(from: &str, to: &str) {
    let st = std::process::Command::new("cp")
        .args(["-a", from, to])
        .status()
        .unwrap();
    assert!(st.success());
}

/// The file chunk, the manifest and the archive metadata, each rewritten with a valid CRC, on
/// copies of one repository.
#[test]
fn tampered_objects_are_refused_like_borg() {
    if !borg_available("hostile input test") {
        return;
    }
    let sb = Sandbox::new();
    let template = sb.repository("template");
    let a1_id = archive_id(&sb, &template, "a1");
    let largest = |repo: &str| {
        puts(repo)
            .into_iter()
            .max_by_key(|p| p.data_len)
            .expect("a PUT")
    };
    let with_id = |repo: &str, id: [u8; 32]| {
        puts(repo)
            .into_iter()
            .rfind(|p| p.id == id)
            .expect("the object")
    };

    // A file chunk: listing works (metadata is intact), extract and check --verify-data fail.
    for tool in TOOLS {
        let repo = sb.path(&format!("chunk-{tool:?}"));
        copy_dir(&template, &repo);
        tamper(&largest(&repo));
        let a1 = format!("{repo}::a1");
        ok(
            &sb.run(tool, "maker", &["list", &a1]),
            "list of a tampered chunk's archive",
        );
        let out = sb.run(tool, "maker", &["extract", "--dry-run", &a1]);
        assert_code(&out, 2, &format!("{tool:?} extract of a tampered chunk"));
        if tool == Tool::Rborg {
            assert!(stderr(&out).contains("MAC"), "{}", stderr(&out));
        }
        let out = sb.run(tool, "maker", &["check", "--verify-data", &repo]);
        assert_code(
            &out,
            1,
            &format!("{tool:?} check --verify-data of a tampered chunk"),
        );
        if tool == Tool::Rborg {
            assert!(stderr(&out).contains("integrity error"), "{}", stderr(&out));
        }
    }

    // The manifest and the archive metadata: nothing reads past them.
    for (what, id) in [("manifest", [0u8; 32]), ("archive", a1_id)] {
        for tool in TOOLS {
            let repo = sb.path(&format!("{what}-{tool:?}"));
            copy_dir(&template, &repo);
            tamper(&with_id(&repo, id));
            let target = if what == "manifest" {
                repo.clone()
            } else {
                format!("{repo}::a1")
            };
            let out = sb.run(tool, "maker", &["list", &target]);
            assert_code(&out, 2, &format!("{tool:?} list with a tampered {what}"));
            if tool == Tool::Rborg {
                assert!(stderr(&out).contains("MAC"), "{what}: {}", stderr(&out));
            }
        }
    }
}

/// The repository put back as it was before the last backup: a client that saw the newer
/// manifest refuses it (the security directory remembers its timestamp), borg and rborg alike;
/// a client that never saw it has nothing to compare with and reads it.
#[test]
fn a_replayed_manifest_is_refused_like_borg() {
    if !borg_available("hostile input test") {
        return;
    }
    let sb = Sandbox::new();
    let repo = sb.repository("repo");
    let old = sb.path("old-copy");
    copy_dir(&repo, &old);
    ok(
        &sb.run(
            Tool::Rborg,
            "maker",
            &["create", &format!("{repo}::a2"), "in"],
        ),
        "create a2",
    );
    // borg's own client sees the newer state too
    ok(
        &sb.run(Tool::Borg, "borg-client", &["list", &repo]),
        "borg list",
    );
    std::fs::remove_dir_all(&repo).unwrap();
    copy_dir(&old, &repo);
    for (tool, home) in [(Tool::Rborg, "maker"), (Tool::Borg, "borg-client")] {
        for args in [
            vec!["list", repo.as_str()],
            vec!["create", &format!("{repo}::a3"), "in"],
        ] {
            let out = sb.run(tool, home, &args);
            assert_code(
                &out,
                2,
                &format!("{tool:?} {args:?} on a replayed repository"),
            );
            assert!(
                stderr(&out).contains("this is either an attack or unsafe"),
                "{tool:?}: {}",
                stderr(&out)
            );
        }
    }
    for tool in TOOLS {
        let out = sb.run(
            tool,
            &format!("fresh-{tool:?}"),
            &["list", "--short", &repo],
        );
        assert_eq!(ok(&out, "a fresh client lists").trim(), "a1");
    }
}

/// A segment cut short under a committed index: reads fail cleanly, `check` reports the damage
/// (exit code 1), `check --repair` repairs it, after which borg's check passes and the same
/// archives are left as after borg's own repair of the same damage.
#[test]
fn an_index_pointing_past_a_segment_end_is_found_and_repaired() {
    if !borg_available("hostile input test") {
        return;
    }
    let sb = Sandbox::new();
    let template = sb.repository("template");
    // a second archive so that the cut segment is not the newest one
    std::fs::write(sb.dir.join("in/later.txt"), b"later\n").unwrap();
    ok(
        &sb.run(
            Tool::Rborg,
            "maker",
            &["create", &format!("{template}::a2"), "in"],
        ),
        "create a2",
    );
    let mut kept = Vec::new();
    for tool in TOOLS {
        let repo = sb.path(&format!("cut-{tool:?}"));
        copy_dir(&template, &repo);
        let chunk = puts(&repo)
            .into_iter()
            .max_by_key(|p| p.data_len)
            .expect("a PUT");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&chunk.file)
            .unwrap();
        file.set_len(chunk.offset + chunk.size / 2).unwrap();
        drop(file);
        let a1 = format!("{repo}::a1");
        let out = sb.run(tool, "maker", &["extract", "--dry-run", &a1]);
        assert_code(&out, 2, &format!("{tool:?} extract from a cut segment"));
        let out = sb.run(tool, "maker", &["check", &repo]);
        assert_code(&out, 1, &format!("{tool:?} check of a cut segment"));
        let out = sb.run(tool, "maker", &["check", "--repair", &repo]);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{tool:?} check --repair: {}",
            stderr(&out)
        );
        ok(
            &sb.run(Tool::Borg, "maker", &["check", &repo]),
            &format!("borg check after {tool:?}'s repair"),
        );
        let out = sb.run(Tool::Borg, "maker", &["list", "--short", &repo]);
        kept.push(ok(&out, "borg list"));
    }
    // the cut also took a1's metadata (it followed the chunk in that segment): both repairs
    // drop a1 and keep a2, whose file now has borg's replacement chunk
    assert_eq!(kept[0], kept[1], "archives after borg's and rborg's repair");
    assert_eq!(kept[1].trim(), "a2");
}
