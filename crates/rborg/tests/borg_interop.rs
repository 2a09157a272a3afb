//! Two-way interoperability of the borg command line with real borg 1.2.4: repositories rborg
//! initializes are used by borg (create, list, check --verify-data), repositories borg made are
//! checked, read, modified and compacted by rborg and then checked by borg again.
//!
//! These tests need `/usr/bin/borg`. Without it they print a notice and pass, unless
//! `RBORG_REQUIRE_BORG=1` (CI sets it), in which case they fail.

use std::path::PathBuf;
use std::process::{Command, Output};

use rborg_testkit::{borg_available, borg_command, ok, BORG};

const MODES: [&str; 7] = [
    "none",
    "authenticated",
    "authenticated-blake2",
    "repokey",
    "keyfile",
    "repokey-blake2",
    "keyfile-blake2",
];

/// A scratch home for borg and rborg (keys, security and cache directories) plus repositories.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("hello.txt"), b"hello world\n").unwrap();
        let noise: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        std::fs::write(src.join("sub/noise.bin"), noise).unwrap();
        Sandbox { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, program: &str, args: &[&str], passphrase: &str) -> Command {
        let mut cmd = borg_command(
            program,
            args,
            self.dir.path(),
            &self.path("home"),
            passphrase,
        );
        cmd.env_remove("BORG_NEW_PASSPHRASE")
            .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "no")
            .env("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "YES");
        cmd
    }

    fn run(&self, program: &str, args: &[&str], passphrase: &str) -> Output {
        self.command(program, args, passphrase).output().unwrap()
    }

    fn rborg(&self, args: &[&str]) -> Output {
        let mut full = vec!["borg"];
        full.extend_from_slice(args);
        self.run(env!("CARGO_BIN_EXE_rborg"), &full, "secret")
    }

    fn borg(&self, args: &[&str]) -> Output {
        self.run(BORG, args, "secret")
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn repositories_rborg_initializes_are_used_by_borg_in_every_mode() {
    if !borg_available("interop test") {
        return;
    }
    let sb = Sandbox::new();
    for mode in MODES {
        let repo = format!("repo-{mode}");
        ok(
            &sb.rborg(&["init", "-e", mode, &repo]),
            &format!("rborg init -e {mode}"),
        );
        // Unencrypted repositories were recorded in the security database by rborg, so borg
        // does not ask about an unknown unencrypted repository (the variable says "no").
        ok(
            &sb.borg(&["create", &format!("{repo}::first"), "src"]),
            &format!("borg create ({mode})"),
        );
        let listing = ok(&sb.borg(&["list", "--short", &repo]), "borg list");
        assert_eq!(listing.trim(), "first", "{mode}");
        ok(
            &sb.borg(&["check", "--verify-data", &repo]),
            &format!("borg check --verify-data ({mode})"),
        );
        ok(
            &sb.rborg(&["check", "--repository-only", &repo]),
            &format!("rborg check ({mode})"),
        );
        ok(
            &sb.rborg(&["check", "--verify-data", &repo]),
            &format!("rborg check --verify-data ({mode})"),
        );
        ok(
            &sb.borg(&["delete", &format!("{repo}::first")]),
            "borg delete",
        );
        ok(
            &sb.rborg(&["compact", "--threshold", "0", &repo]),
            &format!("rborg compact ({mode})"),
        );
        ok(
            &sb.borg(&["check", "--verify-data", &repo]),
            &format!("borg check after rborg compact ({mode})"),
        );
        ok(
            &sb.borg(&["create", &format!("{repo}::second"), "src"]),
            "borg create after compact",
        );
        ok(
            &sb.borg(&["extract", "--dry-run", &format!("{repo}::second")]),
            "borg extract --dry-run",
        );
    }
}

/// Object IDs of a repository, from the file names `borg debug dump-repo-objs` writes.
fn object_ids(sb: &Sandbox, repo: &str) -> Vec<String> {
    let dump = sb.path("dump");
    std::fs::create_dir_all(&dump).unwrap();
    let out = sb
        .command(
            BORG,
            &["debug", "dump-repo-objs", sb.path(repo).to_str().unwrap()],
            "secret",
        )
        .current_dir(&dump)
        .output()
        .unwrap();
    ok(&out, "borg debug dump-repo-objs");
    let mut ids: Vec<String> = std::fs::read_dir(&dump)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| {
            n.strip_suffix(".obj")
                .and_then(|n| n.split('_').nth(1))
                .map(str::to_string)
        })
        .collect();
    std::fs::remove_dir_all(&dump).unwrap();
    ids.sort();
    ids
}

#[test]
fn objects_of_borg_repositories_read_back_identically_and_survive_rborg_writes() {
    if !borg_available("interop test") {
        return;
    }
    let sb = Sandbox::new();
    for mode in MODES {
        let repo = format!("borg-{mode}");
        ok(&sb.borg(&["init", "-e", mode, &repo]), "borg init");
        ok(
            &sb.borg(&["create", &format!("{repo}::a"), "src"]),
            "borg create",
        );
        ok(
            &sb.borg(&["create", &format!("{repo}::b"), "src/hello.txt"]),
            "borg create",
        );
        ok(
            &sb.rborg(&["check", "--repository-only", &repo]),
            "rborg check of a borg repository",
        );

        let ids = object_ids(&sb, &repo);
        assert!(ids.len() >= 5, "expected several objects, got {ids:?}");
        for id in &ids {
            ok(
                &sb.rborg(&["debug", "get-obj", &repo, id, "ours.obj"]),
                "rborg debug get-obj",
            );
            ok(
                &sb.borg(&["debug", "get-obj", &repo, id, "theirs.obj"]),
                "borg debug get-obj",
            );
            assert_eq!(
                std::fs::read(sb.path("ours.obj")).unwrap(),
                std::fs::read(sb.path("theirs.obj")).unwrap(),
                "object {id}"
            );
        }

        if !matches!(mode, "repokey-blake2" | "none") {
            continue;
        }
        // rborg stores raw objects, deletes one of borg's, and compacts; borg must agree.
        let new_id = "ab".repeat(32);
        std::fs::write(sb.path("payload"), b"raw bytes stored by rborg").unwrap();
        let out = ok(
            &sb.rborg(&["debug", "put-obj", &repo, &new_id, "payload"]),
            "rborg debug put-obj",
        );
        assert_eq!(out.trim(), format!("object {new_id} put."));
        ok(
            &sb.borg(&["debug", "get-obj", &repo, &new_id, "back.obj"]),
            "borg get-obj of rborg's object",
        );
        assert_eq!(
            std::fs::read(sb.path("back.obj")).unwrap(),
            b"raw bytes stored by rborg"
        );
        let out = ok(
            &sb.rborg(&["debug", "delete-obj", &repo, &new_id, &"01".repeat(32)]),
            "rborg debug delete-obj",
        );
        assert_eq!(
            out,
            format!(
                "object {new_id} deleted.\nobject {} not found.\nDone.\n",
                "01".repeat(32)
            )
        );
        ok(&sb.borg(&["delete", &format!("{repo}::a")]), "borg delete");
        ok(
            &sb.rborg(&["compact", "--threshold", "0", &repo]),
            "rborg compact",
        );
        ok(
            &sb.borg(&["check", "--verify-data", &repo]),
            "borg check --verify-data after rborg compact",
        );
        let listing = ok(&sb.borg(&["list", "--short", &repo]), "borg list");
        assert_eq!(listing.trim(), "b");
        let out = sb.borg(&["debug", "get-obj", &repo, &new_id, "gone.obj"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("object {new_id} not found.")
        );
    }
}

#[test]
fn key_export_matches_borg_and_import_restores_the_key() {
    if !borg_available("interop test") {
        return;
    }
    let sb = Sandbox::new();
    for mode in ["repokey", "keyfile-blake2"] {
        let repo = format!("k-{mode}");
        ok(&sb.borg(&["init", "-e", mode, &repo]), "borg init");
        for flags in [&[][..], &["--paper"][..]] {
            let mut ours = vec!["key", "export"];
            ours.extend_from_slice(flags);
            ours.extend_from_slice(&[repo.as_str(), "ours.key"]);
            ok(&sb.rborg(&ours), "rborg key export");
            let mut theirs = ours.clone();
            *theirs.last_mut().unwrap() = "theirs.key";
            ok(&sb.borg(&theirs), "borg key export");
            assert_eq!(
                std::fs::read(sb.path("ours.key")).unwrap(),
                std::fs::read(sb.path("theirs.key")).unwrap(),
                "key export {flags:?} ({mode})"
            );
        }
        ok(
            &sb.borg(&["key", "export", &repo, "backup.key"]),
            "borg key export",
        );
        // rborg's --qr-html page is its own; it must carry the same key file text.
        ok(
            &sb.rborg(&["key", "export", "--qr-html", &repo, "key.html"]),
            "rborg key export --qr-html",
        );
        let html = std::fs::read_to_string(sb.path("key.html")).unwrap();
        let keyfile = std::fs::read_to_string(sb.path("backup.key")).unwrap();
        assert!(
            html.contains(keyfile.trim_end()),
            "the html export lacks the key file text"
        );
        // Lose the key, then import borg's export with rborg: borg can use the repository again.
        if mode.starts_with("keyfile") {
            std::fs::remove_dir_all(sb.path("home/.config/borg/keys")).unwrap();
        } else {
            let config = sb.path(&repo).join("config");
            let text = std::fs::read_to_string(&config).unwrap();
            let mut kept = Vec::new();
            let mut in_key = false;
            for line in text.lines() {
                in_key = line.starts_with("key = ") || (in_key && line.starts_with('\t'));
                if !in_key {
                    kept.push(line);
                }
            }
            std::fs::write(&config, kept.join("\n") + "\n").unwrap();
            assert_eq!(
                sb.borg(&["list", &repo]).status.code(),
                Some(2),
                "borg opened a repository without its key"
            );
        }
        ok(
            &sb.rborg(&["key", "import", &repo, "backup.key"]),
            "rborg key import",
        );
        ok(
            &sb.borg(&["create", &format!("{repo}::x"), "src/hello.txt"]),
            "borg create with the imported key",
        );
        // A key backup of another repository is refused.
        ok(
            &sb.borg(&["init", "-e", mode, &format!("{repo}-other")]),
            "borg init",
        );
        let out = sb.rborg(&["key", "import", &format!("{repo}-other"), "backup.key"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out)
            .contains("This key backup seems to be for a different backup repository, aborting."));
    }
}

#[test]
fn wrong_passphrase_is_refused_with_borgs_message_and_exit_code() {
    if !borg_available("interop test") {
        return;
    }
    let sb = Sandbox::new();
    ok(&sb.rborg(&["init", "-e", "repokey", "r"]), "rborg init");
    let mut cmd = sb.command(
        env!("CARGO_BIN_EXE_rborg"),
        &["borg", "key", "change-passphrase", "r"],
        "wrong",
    );
    let out = cmd.env("BORG_NEW_PASSPHRASE", "new").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        "passphrase supplied in BORG_PASSPHRASE, by BORG_PASSCOMMAND or via BORG_PASSPHRASE_FD is incorrect."
    );
    // borg says the same about a repository rborg made.
    let out = sb.run(BORG, &["list", "r"], "wrong");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is incorrect"));
    // A changed passphrase is the only one that works afterwards, for both.
    let mut cmd = sb.command(
        env!("CARGO_BIN_EXE_rborg"),
        &["borg", "key", "change-passphrase", "r"],
        "secret",
    );
    ok(
        &cmd.env("BORG_NEW_PASSPHRASE", "new").output().unwrap(),
        "rborg key change-passphrase",
    );
    ok(
        &sb.run(BORG, &["list", "r"], "new"),
        "borg list with the new passphrase",
    );
    assert_eq!(
        sb.run(BORG, &["list", "r"], "secret").status.code(),
        Some(2)
    );
}

#[test]
fn locks_are_honoured_both_ways() {
    if !borg_available("interop test") {
        return;
    }
    let sb = Sandbox::new();
    ok(&sb.rborg(&["init", "-e", "none", "r"]), "rborg init");
    // borg holds the lock: rborg waits --lock-wait, then fails like borg.
    let mut holder = sb
        .command(BORG, &["with-lock", "r", "sleep", "4"], "secret")
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = sb.rborg(&["--lock-wait", "1", "config", "r", "append_only", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Failed to create/acquire the lock"),
        "{}",
        stderr(&out)
    );
    assert!(holder.wait().unwrap().success());
    // rborg holds the lock: borg fails the same way.
    let mut holder = sb
        .command(
            env!("CARGO_BIN_EXE_rborg"),
            &["borg", "with-lock", "r", "sleep", "4"],
            "secret",
        )
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = sb.borg(&["--lock-wait", "1", "list", "r"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Failed to create/acquire the lock"),
        "{}",
        stderr(&out)
    );
    assert!(holder.wait().unwrap().success());
    ok(
        &sb.rborg(&["config", "r", "append_only", "1"]),
        "rborg config after the lock is free",
    );
    assert_eq!(
        ok(&sb.borg(&["config", "r", "append_only"]), "borg config").trim(),
        "1"
    );
}

#[test]
fn archive_check_finds_what_borg_finds() {
    if !borg_available("interop test") {
        return;
    }
    let sb = Sandbox::new();
    ok(&sb.borg(&["init", "-e", "repokey", "r"]), "borg init");
    ok(&sb.borg(&["create", "r::one", "src"]), "borg create");
    ok(
        &sb.borg(&["create", "r::two", "src/hello.txt"]),
        "borg create",
    );
    ok(
        &sb.rborg(&["check", "--verify-data", "r"]),
        "rborg check of a healthy repository",
    );
    // Lose archive "one"'s metadata object: both tools report it, and the chunks only it used
    // become orphans; both exit with 1 (warning).
    let ids = ok(
        &sb.borg(&["list", "--format", "{name} {id}{NL}", "r"]),
        "borg list",
    );
    let one = ids
        .lines()
        .find_map(|l| l.strip_prefix("one "))
        .unwrap()
        .to_string();
    ok(
        &sb.rborg(&["debug", "delete-obj", "r", &one]),
        "rborg debug delete-obj",
    );
    let ours = sb.rborg(&["check", "r"]);
    let theirs = sb.borg(&["check", "r"]);
    assert_eq!(ours.status.code(), Some(1), "{}", stderr(&ours));
    assert_eq!(
        theirs.status.code(),
        ours.status.code(),
        "{}",
        stderr(&theirs)
    );
    let ours = stderr(&ours);
    assert!(
        ours.contains(&format!("Archive metadata block {one} is missing!")),
        "{ours}"
    );
    assert!(ours.contains("orphaned objects found!"), "{ours}");
    assert!(
        ours.contains("Archive consistency check complete, problems found."),
        "{ours}"
    );
}

#[test]
fn paper_key_import_answers_the_abort_question_and_restores_the_key() {
    if !borg_available("interop test") {
        return;
    }
    use std::io::Write;
    let sb = Sandbox::new();
    ok(&sb.borg(&["init", "-e", "keyfile", "r"]), "borg init");
    let paper = ok(
        &sb.borg(&["key", "export", "--paper", "r"]),
        "borg key export --paper",
    );
    std::fs::remove_dir_all(sb.path("home/.config/borg/keys")).unwrap();
    // An empty line asks "Abort import?"; "n" continues; then the lines as printed.
    let mut typed = String::from("\nn\n");
    for line in paper
        .lines()
        .filter(|l| l.starts_with("id:") || l.contains(": "))
    {
        typed.push_str(line.split_once(": ").map(|(_, rest)| rest).unwrap_or(line));
        typed.push('\n');
    }
    let mut child = sb
        .command(
            env!("CARGO_BIN_EXE_rborg"),
            &["borg", "key", "import", "--paper", "r"],
            "secret",
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(typed.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    ok(&out, "rborg key import --paper");
    ok(&sb.borg(&["list", "r"]), "borg list with the imported key");
}
