//! The borgmatic-compatible orchestrator end to end (issue 6): the shipped example
//! `docs/examples/webserver.yaml` with its paths pointed at a temporary tree makes an archive in
//! each of its three repositories (one over `ssh://`, through a stand-in for ssh that runs
//! `rborg borg serve` locally), prunes, compacts and checks; real borg lists the archives; the
//! check schedule holds across runs; hooks fire in order with the right variables; a failing
//! repository fires `on_error` and not `after_backup` while the others still get their archive.
//! Also: soft failure, `--json` collection, extract of `latest`, overrides, monitoring pings.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rborg_testkit::{borg_available, borg_command, ok, SnapshotOptions};

const PASSPHRASE: &str = "orchestrated passphrase";

/// A scratch world: source tree, repositories, a fake ssh, a `borg` link to rborg, a home.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let w = World { dir };
        for sub in [
            "home",
            "state",
            "bin",
            "src/etc",
            "src/www/site/cache",
            "src/log",
            "src/home",
        ] {
            std::fs::create_dir_all(w.path(sub)).unwrap();
        }
        std::fs::write(w.path("src/etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        std::fs::write(
            w.path("src/www/site/index.html"),
            "<h1>hello</h1>\n".repeat(100),
        )
        .unwrap();
        std::fs::write(w.path("src/www/site/cache/junk.tmp"), "cache").unwrap();
        std::fs::write(w.path("src/log/access.log"), "GET /\n".repeat(1000)).unwrap();
        std::fs::write(w.path("src/home/notes.txt"), "remember\n").unwrap();
        std::fs::write(w.path("pass"), PASSPHRASE).unwrap();
        // ssh stand-in: drops options and host, runs the remote command here
        let ssh = w.path("bin/fake-ssh");
        std::fs::write(
            &ssh,
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do\n  case \"$1\" in\n    -o|-p|-i|-l|-F|-J) shift 2 ;;\n    -*) shift ;;\n    *) shift; break ;;\n  esac\ndone\nexec sh -c \"$*\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rborg"), w.path("bin/borg")).unwrap();
        w
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn p(&self, sub: &str) -> String {
        self.path(sub).display().to_string()
    }

    /// The shipped example with its paths pointed into this world and its hooks appending to
    /// `hooks.log`.
    fn webserver_config(&self) -> PathBuf {
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/webserver.yaml");
        let mut text = std::fs::read_to_string(example).unwrap();
        for (from, to) in [
            (
                "        - /etc\n",
                format!("        - {}\n", self.p("src/etc")),
            ),
            (
                "        - /var/www\n",
                format!("        - {}\n", self.p("src/www")),
            ),
            (
                "        - /var/log\n",
                format!("        - {}\n", self.p("src/log")),
            ),
            (
                "        - /home\n",
                format!("        - {}\n", self.p("src/home")),
            ),
            (
                "        - /var/backups/rborg-local\n",
                format!("        - {}\n", self.p("local")),
            ),
            (
                "        - /mnt/nas/rborg\n",
                format!("        - {}\n", self.p("nas")),
            ),
            (
                "        - ssh://backup@offsite.example.net:22/./webserver\n",
                format!(
                    "        - ssh://backup@offsite.example.net:22{}\n",
                    self.p("offsite")
                ),
            ),
            (
                "cat /root/.rborg-passphrase",
                format!("cat {}", self.p("pass")),
            ),
            (
                "'/var/www/*/cache'",
                format!("'{}/*/cache'", self.p("src/www")),
            ),
        ] {
            assert!(text.contains(from), "the example no longer has {from:?}");
            text = text.replace(from, &to);
        }
        // storage: ssh through the stand-in, rborg's borg personality as the remote borg
        text = text.replace(
            "storage:\n",
            &format!(
                "storage:\n    ssh_command: {}\n    remote_path: {}\n",
                self.p("bin/fake-ssh"),
                self.p("bin/borg")
            ),
        );
        // hooks: append what they print to hooks.log
        let log = self.p("hooks.log");
        let mut out = String::new();
        for line in text.lines() {
            if line.trim_start().starts_with("- echo") || line.trim_start().starts_with("- 'echo") {
                let quoted = line.trim_end().ends_with('\'');
                let body = line.trim_end().trim_end_matches('\'');
                out.push_str(&format!(
                    "{body} >> {log}{}\n",
                    if quoted { "'" } else { "" }
                ));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        let path = self.path("webserver.yaml");
        std::fs::write(&path, out).unwrap();
        path
    }

    fn rborg(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rborg"))
            .args(args)
            .env("HOME", self.path("home"))
            .env("BORG_BASE_DIR", self.path("home"))
            .env("XDG_STATE_HOME", self.path("state"))
            .env_remove("BORG_PASSPHRASE")
            .env_remove("BORG_REPO")
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .output()
            .unwrap()
    }

    fn hooks(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("hooks.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Archive names real borg lists in a repository directory.
    fn borg_archives(&self, repo: &str) -> Vec<String> {
        let out = borg_command(
            "/usr/bin/borg",
            &["list", "--short", &self.p(repo)],
            self.dir.path(),
            &self.path("borg-home"),
            PASSPHRASE,
        )
        .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .output()
        .unwrap();
        ok(&out, &format!("borg list {repo}"))
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn webserver_example_backs_up_to_three_repositories() {
    if !borg_available("orchestrator test") {
        return;
    }
    let w = World::new();
    let config = w.webserver_config();
    let cfg = config.to_str().unwrap();

    let validated = w.rborg(&["config", "validate", "-c", cfg]);
    ok(&validated, "rborg config validate");

    let created = w.rborg(&["-c", cfg, "repo-create", "--encryption", "repokey"]);
    ok(&created, "repo-create");
    for repo in ["local", "nas", "offsite"] {
        assert!(w.path(repo).join("config").is_file(), "{repo} not created");
    }
    // repo-create again leaves existing repositories alone
    ok(
        &w.rborg(&["-c", cfg, "repo-create", "--encryption", "repokey"]),
        "second repo-create",
    );

    let first = w.rborg(&["-c", cfg, "-v", "1"]);
    let log = ok(&first, "first run") + &stderr(&first);
    for needle in [
        "Creating archive",
        "Pruning archives",
        "Compacting segments",
        "Running consistency checks",
    ] {
        let lines = log
            .lines()
            .filter(|l| l.ends_with(&format!(": {needle}")))
            .count();
        assert_eq!(lines, 3, "{needle:?} three times in:\n{log}");
    }
    let hostname = nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    for repo in ["local", "nas", "offsite"] {
        let archives = w.borg_archives(repo);
        assert_eq!(archives.len(), 1, "{repo}: {archives:?}");
        assert!(
            archives[0].starts_with(&format!("{hostname}-")),
            "{archives:?}"
        );
    }
    // excludes and exclude_caches apply: the cache directory's file is not in the archive
    let listing = borg_command(
        "/usr/bin/borg",
        &[
            "list",
            "--short",
            &format!("{}::{}", w.p("local"), w.borg_archives("local")[0]),
        ],
        w.dir.path(),
        &w.path("borg-home"),
        PASSPHRASE,
    )
    .output()
    .unwrap();
    let listing = ok(&listing, "borg list archive");
    assert!(listing.contains("index.html"), "{listing}");
    assert!(!listing.contains("junk.tmp"), "{listing}");
    // borg checks what rborg wrote
    for repo in ["local", "nas", "offsite"] {
        let out = borg_command(
            "/usr/bin/borg",
            &["check", "--verify-data", &w.p(repo)],
            w.dir.path(),
            &w.path("borg-home"),
            PASSPHRASE,
        )
        .output()
        .unwrap();
        ok(&out, &format!("borg check --verify-data {repo}"));
    }
    // hooks in order, with the configuration file and each repository
    let remote = format!("ssh://backup@offsite.example.net:22{}", w.p("offsite"));
    let expected: Vec<String> = [w.p("local"), w.p("nas"), remote.clone()]
        .iter()
        .flat_map(|r| {
            [
                format!("Starting a backup of {cfg} to {r}."),
                format!("Backup of {cfg} to {r} finished."),
            ]
        })
        .collect();
    assert_eq!(w.hooks(), expected);

    // the archives check ran and is recorded; a second run within two weeks skips it
    let checks = w.path("state/borgmatic/checks");
    let ids: Vec<_> = std::fs::read_dir(&checks).unwrap().collect();
    assert_eq!(ids.len(), 3, "one check-time directory per repository");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = w.rborg(&["-c", cfg, "-v", "1"]);
    let log = ok(&second, "second run") + &stderr(&second);
    assert_eq!(
        log.matches("Skipping archives check due to configured frequency")
            .count(),
        3,
        "{log}"
    );
    for repo in ["local", "nas", "offsite"] {
        assert_eq!(
            w.borg_archives(repo).len(),
            2,
            "{repo}: prune keeps both (keep_within 3H)"
        );
    }

    // a failing repository: on_error fires for it, after_backup does not, the others still run
    std::fs::rename(w.path("nas"), w.path("nas.away")).unwrap();
    std::fs::remove_file(w.path("hooks.log")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let third = w.rborg(&["-c", cfg]);
    assert_eq!(third.status.code(), Some(2), "stderr: {}", stderr(&third));
    std::fs::rename(w.path("nas.away"), w.path("nas")).unwrap();
    assert_eq!(w.borg_archives("local").len(), 3);
    assert_eq!(w.borg_archives("offsite").len(), 3);
    assert_eq!(w.borg_archives("nas").len(), 2);
    let hooks = w.hooks();
    let nas = w.p("nas");
    assert!(
        hooks.contains(&format!("Backup of {cfg} to {} finished.", w.p("local"))),
        "{hooks:?}"
    );
    assert!(
        hooks.contains(&format!("Backup of {cfg} to {remote} finished.")),
        "{hooks:?}"
    );
    assert!(
        !hooks.contains(&format!("Backup of {cfg} to {nas} finished.")),
        "{hooks:?}"
    );
    let failed: Vec<&String> = hooks.iter().filter(|l| l.contains("failed:")).collect();
    assert_eq!(failed.len(), 1, "{hooks:?}");
    assert!(
        failed[0].starts_with(&format!("Backup of {cfg} to {nas} failed: ")),
        "{hooks:?}"
    );
    assert_eq!(
        hooks.last(),
        Some(failed[0]),
        "on_error runs after the other repositories"
    );
}

/// A small flat (2.x) configuration with two local repositories.
fn flat_config(w: &World, extra: &str) -> PathBuf {
    let text = format!(
        "source_directories:\n  - {src}\nrepositories:\n  - path: {a}\n    label: first\n    encryption: repokey-blake2\n  - path: {b}\n    label: second\n    encryption: repokey-blake2\nencryption_passphrase: \"{PASSPHRASE}\"\narchive_name_format: 'test-{{now:%Y-%m-%dT%H:%M:%S.%f}}'\nkeep_daily: 7\n{extra}",
        src = w.p("src"),
        a = w.p("a"),
        b = w.p("b"),
    );
    let path = w.path("flat.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn flat_config_actions_hooks_json_extract_overrides_logs() {
    let w = World::new();
    let log = w.p("hooks.log");
    let config = flat_config(
        &w,
        &format!(
            "commands:\n  - before: action\n    when: [create]\n    run:\n      - 'test {{repository_label}} != second || exit 75'\n  - after: repository\n    run:\n      - 'echo after {{repository_label}} >> {log}'\n"
        ),
    );
    let cfg = config.to_str().unwrap();
    ok(
        &w.rborg(&["-c", cfg, "repo-create"]),
        "repo-create from the repositories' encryption",
    );
    std::fs::remove_file(&log).unwrap();
    let run = w.rborg(&["-c", cfg, "create"]);
    ok(&run, "create with a soft-failing hook");
    // after-repository hooks still close both repositories (borgmatic runs them when the
    // repository's block ends, soft failure included)
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "after first\nafter second\n"
    );
    // the second repository was skipped by the soft failure, without failing the run
    let listed = w.rborg(&["-c", cfg, "repo-list", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&ok(&listed, "repo-list --json")).unwrap();
    let counts: Vec<usize> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["archives"].as_array().unwrap().len())
        .collect();
    assert_eq!(counts, [1, 0], "{json}");

    // extract `latest` of one repository into a destination: the same tree
    let dest = w.path("restore");
    ok(
        &w.rborg(&[
            "-c",
            cfg,
            "extract",
            "--repository",
            "first",
            "--archive",
            "latest",
            "--destination",
            dest.to_str().unwrap(),
        ]),
        "extract latest",
    );
    let restored = dest.join(w.path("src").strip_prefix("/").unwrap());
    rborg_testkit::assert_same_tree(
        &w.path("src"),
        &restored,
        SnapshotOptions::default(),
        "extract latest",
    );

    // --override changes an option for this run: a repository label filter and a new format
    let out = w.rborg(&[
        "-c",
        cfg,
        "--override",
        "archive_name_format=other-{now}",
        "--repository",
        "first",
        "create",
    ]);
    ok(&out, "create with --override");
    let listed = w.rborg(&[
        "-c",
        cfg,
        "--repository",
        "first",
        "list",
        "--short",
        "--match-archives",
        "sh:*",
    ]);
    let names = ok(&listed, "list");
    assert!(names.lines().any(|l| l.starts_with("other-")), "{names}");

    // the borg action runs any borg command with the repository filled in
    let borg = w.rborg(&[
        "-c",
        cfg,
        "--repository",
        "first",
        "borg",
        "list",
        "--short",
    ]);
    let names = ok(&borg, "borg action");
    assert_eq!(names.lines().count(), 2, "{names}");

    // a log file at debug verbosity has the borg command lines, never the passphrase
    let log_file = w.path("run.log");
    let out = w.rborg(&[
        "-c",
        cfg,
        "--log-file",
        log_file.to_str().unwrap(),
        "--log-file-verbosity",
        "2",
        "-v",
        "2",
        "--repository",
        "first",
        "create",
    ]);
    ok(&out, "create with a log file");
    let logged = std::fs::read_to_string(&log_file).unwrap();
    assert!(logged.contains("borg create"), "{logged}");
    assert!(
        !logged.contains(PASSPHRASE),
        "the passphrase leaked into the log file"
    );
    assert!(
        !stderr(&out).contains(PASSPHRASE),
        "the passphrase leaked to stderr"
    );

    // a bad override is a clear error
    let bad = w.rborg(&["-c", cfg, "--override", "keep_daily=many", "create"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("keep_daily"), "{}", stderr(&bad));
}

#[test]
fn monitoring_pings_start_and_finish_or_fail() {
    let w = World::new();
    let recorder = rborg_testkit::http_recorder::Recorder::start();
    let config = flat_config(
        &w,
        &format!(
            "healthchecks:\n  ping_url: {}/ping/abc\n  send_logs: true\n",
            recorder.url()
        ),
    );
    let cfg = config.to_str().unwrap();
    ok(&w.rborg(&["-c", cfg, "repo-create"]), "repo-create");
    // repo-create is not a monitored action
    assert!(recorder.requests().is_empty());
    ok(&w.rborg(&["-c", cfg, "create", "--stats"]), "create");
    let requests = recorder.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths.first(), Some(&"/ping/abc/start"), "{paths:?}");
    assert_eq!(paths.last(), Some(&"/ping/abc"), "{paths:?}");
    assert!(!paths.iter().any(|p| p.ends_with("/fail")), "{paths:?}");

    // a failure pings fail
    std::fs::remove_dir_all(w.path("b")).unwrap();
    let failed = w.rborg(&["-c", cfg, "create"]);
    assert_eq!(failed.status.code(), Some(2));
    let requests = recorder.requests();
    let last = requests.last().unwrap();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(last.path, "/ping/abc/fail", "{paths:?}");
    assert!(
        last.body_text().contains("does not exist") || last.body_text().contains("Error"),
        "the log tail is sent: {}",
        last.body_text()
    );
}

#[test]
fn invalid_configuration_is_reported_with_its_position() {
    let w = World::new();
    let path = w.path("bad.yaml");
    std::fs::write(
        &path,
        "source_directories: [/tmp]\nrepositories:\n  - path: /tmp/r\nkeep_dialy: 3\n",
    )
    .unwrap();
    let out = w.rborg(&["-c", path.to_str().unwrap(), "create"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("bad.yaml:4:1"), "{err}");
    assert!(err.contains("keep_daily"), "suggestion expected: {err}");
    // no configuration at all
    let none = w.rborg(&["-c", w.p("missing.yaml").as_str()]);
    assert_eq!(none.status.code(), Some(2), "{}", stderr(&none));
}

/// borgmatic 2.x (with real borg 1.2.4) and rborg take turns on the same configuration:
/// rborg honours the check schedule borgmatic recorded (the same state files), each lists the
/// other's archives, and prune by either keeps the same archives.
#[test]
fn borgmatic_and_rborg_take_turns() {
    if !borg_available("borgmatic interop test") {
        return;
    }
    let Some(borgmatic) = rborg_testkit::borgmatic2("borgmatic interop test") else {
        return;
    };
    let w = World::new();
    let config = flat_config(
        &w,
        "local_path: /usr/bin/borg\nchecks:\n  - name: repository\n  - name: archives\n    frequency: 2 weeks\n",
    );
    let cfg = config.to_str().unwrap();
    let run_borgmatic = |args: &[&str]| {
        let out = Command::new(&borgmatic)
            .args(["-c", cfg])
            .args(args)
            .env("HOME", w.path("home"))
            .env("BORG_BASE_DIR", w.path("home"))
            .env("XDG_STATE_HOME", w.path("state"))
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .env_remove("BORG_PASSPHRASE")
            .output()
            .unwrap();
        ok(&out, &format!("borgmatic {args:?}"));
        String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out)
    };
    run_borgmatic(&["repo-create"]);
    run_borgmatic(&["create", "check"]);
    // rborg reads borgmatic's check record: the archives check is not due for two weeks
    let out = w.rborg(&["-c", cfg, "-v", "1", "check"]);
    let log = ok(&out, "rborg check") + &stderr(&out);
    assert_eq!(
        log.matches("Skipping archives check due to configured frequency")
            .count(),
        2,
        "{log}"
    );
    // rborg adds an archive; borgmatic lists both; rborg's JSON agrees
    ok(&w.rborg(&["-c", cfg, "create"]), "rborg create");
    let listed = run_borgmatic(&["repo-list", "--json"]);
    let theirs: serde_json::Value =
        serde_json::from_str(listed.trim_start_matches(|c| c != '[')).unwrap();
    let ours: serde_json::Value = serde_json::from_str(&ok(
        &w.rborg(&["-c", cfg, "repo-list", "--json"]),
        "rborg repo-list",
    ))
    .unwrap();
    let names = |v: &serde_json::Value| -> Vec<Vec<String>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["archives"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    };
    assert_eq!(names(&theirs), names(&ours));
    assert_eq!(names(&ours)[0].len(), 2);
    // borgmatic's check runs the archives check when forced, over rborg's archive too
    run_borgmatic(&["check", "--force"]);
}
