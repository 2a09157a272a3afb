//! Remote repositories (`ssh://`) between rborg and borg 1.2.4: borg's client against
//! `rborg borg serve`, rborg's client against `borg serve`, and `--restrict-to-path`.
//! The "ssh" is a small script that drops the host and runs the remote command here, like
//! the conformance harness's `localrsh`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rborg_testkit::{borg_available, borg_command, ok, BORG};

struct Env {
    dir: tempfile::TempDir,
    rsh: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let rsh = dir.path().join("rsh");
        // drops `-p PORT` and the host, then runs the rest (and any extra serve options)
        std::fs::write(
            &rsh,
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do case \"$1\" in -p) shift 2;; -*) shift;; *) shift; break;; esac; done\n\
             exec sh -c \"$* $RBORG_TEST_SERVE_EXTRA\"\n",
        )
        .unwrap();
        let mut perm = std::fs::metadata(&rsh).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&rsh, perm).unwrap();
        let input = dir.path().join("input");
        std::fs::create_dir_all(input.join("sub")).unwrap();
        std::fs::write(input.join("small"), b"hello remote\n").unwrap();
        std::fs::write(input.join("sub/big"), rborg_testkit::noise(7, 400_000)).unwrap();
        Env { dir, rsh }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn url(&self, name: &str) -> String {
        format!("ssh://localhost{}", self.path(name).display())
    }

    /// `client args` with the remote side `server` (`rborg` or `borg`).
    fn cmd(&self, client: &str, server: &str, args: &[&str], cwd: &Path) -> Command {
        let rborg = env!("CARGO_BIN_EXE_rborg");
        let (program, mut full) = if client == "rborg" {
            (rborg, vec!["borg"])
        } else {
            (BORG, vec![])
        };
        full.extend_from_slice(args);
        let remote_path = if server == "rborg" {
            format!("{rborg} borg")
        } else {
            BORG.to_string()
        };
        let mut cmd = borg_command(program, &full, cwd, &self.path("home"), "secret");
        cmd.env("BORG_RSH", &self.rsh)
            .env("BORG_REMOTE_PATH", remote_path)
            .env("RBORG_TEST_SERVE_EXTRA", "");
        cmd
    }

    fn run(&self, client: &str, server: &str, args: &[&str]) -> Output {
        self.cmd(client, server, args, self.dir.path())
            .output()
            .unwrap()
    }
}

/// init, create, list, extract and check with `client` talking to `server`; the other program
/// then reads the repository through the same kind of connection.
fn roundtrip(client: &str, server: &str) {
    let env = Env::new();
    let repo = env.url("repo");
    let other = if client == "rborg" { "borg" } else { "rborg" };
    let what = format!("{client} client, {server} serve");
    ok(
        &env.run(client, server, &["init", "-e", "repokey", &repo]),
        &format!("init ({what})"),
    );
    ok(
        &env.run(
            client,
            server,
            &["create", &format!("{repo}::one"), "input"],
        ),
        &format!("create ({what})"),
    );
    for c in [client, other] {
        let list = ok(
            &env.run(c, server, &["list", "--short", &format!("{repo}::one")]),
            &format!("list by {c} ({what})"),
        );
        // (walk order is the directory's order, so compare sorted)
        let mut list: Vec<&str> = list.lines().collect();
        list.sort_unstable();
        assert_eq!(
            list,
            ["input", "input/small", "input/sub", "input/sub/big"],
            "{c}"
        );
        let out = env.path(&format!("out-{c}"));
        std::fs::create_dir(&out).unwrap();
        let res = env
            .cmd(c, server, &["extract", &format!("{repo}::one")], &out)
            .output()
            .unwrap();
        ok(&res, &format!("extract by {c} ({what})"));
        for f in ["small", "sub/big"] {
            assert_eq!(
                std::fs::read(out.join("input").join(f)).unwrap(),
                std::fs::read(env.path("input").join(f)).unwrap(),
                "{f} extracted by {c} ({what})"
            );
        }
        let check = env.run(c, server, &["check", "-v", &repo]);
        ok(&check, &format!("check by {c} ({what})"));
        let log = String::from_utf8_lossy(&check.stderr);
        // the repository part runs on the server, whose log lines come back prefixed
        assert!(
            log.contains("Remote: Starting repository check"),
            "{c} ({what}): {log}"
        );
        assert!(log.contains("Archive consistency check complete, no problems found."));
    }
    // a missing repository is borg's DoesNotExist error, rc 2
    let missing = env.run(
        client,
        server,
        &["list", &format!("{}::x", env.url("nope"))],
    );
    assert_eq!(missing.status.code(), Some(2));
    let text = String::from_utf8_lossy(&missing.stderr);
    assert!(text.contains("does not exist"), "{text}");
    assert!(!text.contains("nope::x"), "{text}");
}

#[test]
fn borg_client_with_rborg_serve() {
    if !borg_available("remote interop test") {
        return;
    }
    roundtrip("borg", "rborg");
}

#[test]
fn rborg_client_with_borg_serve() {
    if !borg_available("remote interop test") {
        return;
    }
    roundtrip("rborg", "borg");
}

#[test]
fn rborg_serve_restrict_to_path() {
    if !borg_available("remote interop test") {
        return;
    }
    let env = Env::new();
    let allowed = env.path("allowed");
    std::fs::create_dir(&allowed).unwrap();
    let extra = format!("--restrict-to-path {}", allowed.display());
    for client in ["borg", "rborg"] {
        // a sibling directory sharing the prefix is refused
        let bad = format!("{}_not/{client}", allowed.display());
        let out = env
            .cmd(
                client,
                "rborg",
                &["init", "-e", "none", &format!("ssh://localhost{bad}")],
                env.dir.path(),
            )
            .env("RBORG_TEST_SERVE_EXTRA", &extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{client}");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("Repository path not allowed"),
            "{client}: {text}"
        );
        assert!(!Path::new(&bad).exists());
        // inside is fine
        let good = format!("ssh://localhost{}/{client}", allowed.display());
        let out = env
            .cmd(
                client,
                "rborg",
                &["init", "-e", "none", &good],
                env.dir.path(),
            )
            .env("RBORG_TEST_SERVE_EXTRA", &extra)
            .output()
            .unwrap();
        ok(&out, &format!("init inside the restriction by {client}"));
    }
}
