//! Append-only holds (issue 5): a client of `rborg borg serve --append-only` that deletes,
//! prunes and compacts away every archive destroys nothing, and borg's documented recovery
//! (docs `usage/notes.rst`, "Append-only mode": find the last good transaction in the
//! repository's `transactions` log, remove `hints.N`, `index.N`, `integrity.N` and the newer
//! segment files, drop the client's cache and `manifest-timestamp`) brings every archive back,
//! byte-identical for both rborg and borg 1.2.4.
//!
//! The "ssh" is a script that drops the host and runs the remote command here with
//! `--append-only` added, as an `authorized_keys` forced command would (the real OpenSSH variant
//! of the forced command is in `ssh_interop.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rborg_testkit::{assert_same_tree, borg_available, borg_command, ok, SnapshotOptions, BORG};

const PASSPHRASE: &str = "append only";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `rborg borg args` (or borg's) with `home` as `BORG_BASE_DIR`.
    fn cmd(&self, program: &str, home: &str, args: &[&str]) -> Command {
        let (program, mut full) = if program == "rborg" {
            (env!("CARGO_BIN_EXE_rborg"), vec!["borg"])
        } else {
            (BORG, vec![])
        };
        full.extend_from_slice(args);
        let mut cmd = borg_command(
            program,
            &full,
            self.dir.path(),
            &self.path(home),
            PASSPHRASE,
        );
        cmd.env("BORG_RSH", self.path("rsh"))
            .env(
                "BORG_REMOTE_PATH",
                format!("{} borg", env!("CARGO_BIN_EXE_rborg")),
            )
            .env("BORG_DELETE_I_KNOW_WHAT_I_AM_DOING", "YES")
            // the same repository is reached as ssh:// and as a local path
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .env_remove("RBORG_SSH_TRANSPORT");
        cmd
    }

    fn rborg(&self, args: &[&str]) -> Output {
        self.cmd("rborg", "home", args).output().unwrap()
    }
}

/// The numbers of the repository's segment files with their sizes.
fn segments(repo: &Path) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(repo.join("data")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let f = f.unwrap();
            if let Ok(n) = f.file_name().to_string_lossy().parse::<u64>() {
                out.push((n, f.metadata().unwrap().len()));
            }
        }
    }
    out.sort_unstable();
    out
}

/// The transaction ids of the `transactions` log (`transaction N, UTC time ...` lines).
fn transactions(repo: &Path) -> Vec<u64> {
    std::fs::read_to_string(repo.join("transactions"))
        .unwrap()
        .lines()
        .map(|l| {
            let id = l
                .strip_prefix("transaction ")
                .and_then(|r| r.split(',').next())
                .unwrap_or_else(|| panic!("bad transactions line {l:?}"));
            assert!(l.contains(", UTC time "), "{l}");
            id.parse().unwrap()
        })
        .collect()
}

fn archive_names(out: &Output, what: &str) -> Vec<String> {
    let mut names: Vec<String> = ok(out, what).lines().map(str::to_string).collect();
    names.sort();
    names
}

#[test]
fn append_only_recovery() {
    if !borg_available("append-only recovery test") {
        return;
    }
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
    };
    let rsh = env.path("rsh");
    std::fs::write(
        &rsh,
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do case \"$1\" in -p) shift 2;; -*) shift;; *) shift; break;; esac; done\n\
         exec sh -c \"$* --append-only\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&rsh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // three inputs, one archive each
    for (i, name) in ["in1", "in2", "in3"].iter().enumerate() {
        let d = env.path(name);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("common"), rborg_testkit::noise(1, 200_000)).unwrap();
        std::fs::write(
            d.join("sub/own"),
            rborg_testkit::noise(10 + i as u64, 300_000),
        )
        .unwrap();
        std::fs::write(d.join("small"), format!("archive {i}\n")).unwrap();
    }
    let repo_dir = env.path("repo");
    let repo = format!("ssh://localhost{}", repo_dir.display());
    let arch = |a: &str| format!("{repo}::{a}");

    // (init through an --append-only server does not make the repository append-only)
    ok(&env.rborg(&["init", "-e", "repokey", &repo]), "init");
    for (a, input) in [("a1", "in1"), ("a2", "in2"), ("a3", "in3")] {
        ok(
            &env.rborg(&["create", &arch(a), input]),
            &format!("create {a}"),
        );
    }
    let good = transactions(&repo_dir);
    assert_eq!(good.len(), 3, "one logged transaction per create: {good:?}");
    let last_good = *good.last().unwrap();
    let before_attack = segments(&repo_dir);
    assert_eq!(before_attack.last().unwrap().0, last_good);

    // the attack: delete, prune, delete the rest, compact, try to destroy the repository
    ok(&env.rborg(&["delete", &arch("a1")]), "delete a1");
    ok(&env.rborg(&["prune", "--keep-last", "1", &repo]), "prune");
    ok(
        &env.rborg(&["delete", "--glob-archives", "*", &repo]),
        "delete all",
    );
    ok(&env.rborg(&["compact", &repo]), "compact");
    let destroy = env.rborg(&["delete", &repo]);
    assert_eq!(destroy.status.code(), Some(2), "{destroy:?}");
    assert!(repo_dir.join("config").exists());
    let listed = env.rborg(&["list", "--format", "{archive}{NL}", &repo]);
    assert!(archive_names(&listed, "list after the attack").is_empty());

    // nothing committed was touched: every old segment is still there, unchanged
    let after_attack = segments(&repo_dir);
    for seg in &before_attack {
        assert!(after_attack.contains(seg), "segment {seg:?} changed");
    }
    let all = transactions(&repo_dir);
    assert!(all.len() > good.len(), "{all:?}");
    assert_eq!(&all[..good.len()], &good[..]);

    // the documented recovery, on the repository files
    for entry in std::fs::read_dir(&repo_dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if ["hints.", "index.", "integrity."]
            .iter()
            .any(|pre| name.starts_with(pre))
        {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let mut removed = 0;
    for d in std::fs::read_dir(repo_dir.join("data")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let n: u64 = p.file_name().unwrap().to_string_lossy().parse().unwrap();
            if n > last_good {
                std::fs::remove_file(&p).unwrap();
                removed += 1;
            }
        }
    }
    assert!(removed > 0);
    // ... and on the client: its cache and manifest-timestamp describe the later state
    ok(
        &env.rborg(&["delete", "--cache-only", &repo]),
        "delete --cache-only",
    );
    let security = env.path("home/.config/borg/security");
    for d in std::fs::read_dir(&security).unwrap() {
        let ts = d.unwrap().path().join("manifest-timestamp");
        if ts.exists() {
            std::fs::remove_file(ts).unwrap();
        }
    }

    // every archive is back, for rborg (remote and local) and borg 1.2.4 (local, own home)
    let expected = ["a1", "a2", "a3"];
    let repo_local = repo_dir.to_str().unwrap().to_string();
    let check = env.rborg(&["check", "-v", &repo]);
    let log = String::from_utf8_lossy(&check.stderr).into_owned();
    ok(&check, "rborg check after the recovery");
    assert!(
        log.contains("Archive consistency check complete, no problems found."),
        "{log}"
    );
    ok(
        &env.cmd("borg", "borg-home", &["check", "-v", &repo_local])
            .output()
            .unwrap(),
        "borg check after the recovery",
    );
    for (client, home, location) in [
        ("rborg", "home", repo.as_str()),
        ("rborg", "home", repo_local.as_str()),
        ("borg", "borg-home", repo_local.as_str()),
    ] {
        let out = env
            .cmd(
                client,
                home,
                &["list", "--format", "{archive}{NL}", location],
            )
            .output()
            .unwrap();
        assert_eq!(
            archive_names(&out, &format!("{client} list {location}")),
            expected,
            "{client} {location}"
        );
    }
    for (a, input) in [("a1", "in1"), ("a2", "in2"), ("a3", "in3")] {
        for (client, home) in [("rborg", "home"), ("borg", "borg-home")] {
            let out_dir = env.path(&format!("out-{client}-{a}"));
            std::fs::create_dir(&out_dir).unwrap();
            let location = format!("{repo_local}::{a}");
            let out = env
                .cmd(client, home, &["extract", &location])
                .current_dir(&out_dir)
                .output()
                .unwrap();
            ok(&out, &format!("{client} extract {a}"));
            assert_same_tree(
                &env.path(input),
                &out_dir.join(input),
                SnapshotOptions::default(),
                &format!("{client} extract of {a}"),
            );
        }
    }
}
