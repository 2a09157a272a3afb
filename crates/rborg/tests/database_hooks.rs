//! Database hooks end to end (issue 7), against real servers started on loopback by the tests
//! (a throwaway PostgreSQL 15 cluster and a throwaway MariaDB in temporary directories, stopped
//! at the end) and SQLite: create data, `rborg create` (the dump streams through a named pipe),
//! drop the data, `rborg restore --archive latest`, compare row by row. Also: a dump that fails
//! halfway leaves no archive, fires `on_error` and fails the run; passwords stay out of the log;
//! interop with borgmatic 1.7.7 (Debian) in both directions.
//!
//! Root only (the servers run as the `postgres` user / as root). Without the server packages
//! the tests skip with a notice.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PASSPHRASE: &str = "database hook passphrase";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const PG_PASSWORD: &str = "Pg-Secret-4711";
const MY_PASSWORD: &str = "My-Secret-0815";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch world: a home (dumps go to `~/.borgmatic`), a repository, a source tree.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["home", "src"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("src/file.txt"), "plain file\n").unwrap();
        World { dir }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// A flat (borgmatic 2.x form) configuration with `hooks` (YAML lines) added.
    fn config(&self, name: &str, hooks: &str) -> PathBuf {
        let text = format!(
            "source_directories:\n  - {src}\nrepositories:\n  - path: {repo}\n    label: main\n\
             encryption_passphrase: \"{PASSPHRASE}\"\nkeep_daily: 7\n{hooks}",
            src = self.path("src").display(),
            repo = self.path("repo").display(),
        );
        let file = self.path(name);
        std::fs::write(&file, text).unwrap();
        file
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("HOME", self.path("home"))
            .env("BORG_BASE_DIR", self.path("home"))
            .env_remove("BORG_REPO")
            .env_remove("BORG_PASSPHRASE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CONFIG_HOME");
    }

    fn rborg(&self, config: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rborg"));
        self.env(&mut cmd);
        cmd.arg("-c").arg(config).args(args);
        cmd.output().unwrap()
    }

    fn rborg_ok(&self, config: &Path, args: &[&str]) -> String {
        let out = self.rborg(config, args);
        assert!(
            out.status.success(),
            "rborg {args:?} failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Archive names (`repo-list --short`... through rborg's borg personality).
    fn archives(&self) -> Vec<String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rborg"));
        self.env(&mut cmd);
        cmd.env("BORG_PASSPHRASE", PASSPHRASE)
            .args(["borg", "list", "--short"])
            .arg(self.path("repo"));
        run_ok(&mut cmd, "borg list")
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// A throwaway PostgreSQL 15 cluster in a temporary directory, listening on 127.0.0.1:PORT
/// (password authentication) and on a socket in its directory (trust), run as `postgres`.
struct Postgres {
    _dir: tempfile::TempDir,
    socket_dir: PathBuf,
    port: u16,
    server: Child,
}

impl Postgres {
    fn available(what: &str) -> bool {
        let present = is_root()
            && Path::new(PG_BIN).join("postgres").exists()
            && Path::new("/usr/bin/psql").exists()
            && nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .is_some();
        if !present {
            eprintln!("PostgreSQL 15 (or root) is not available: skipping the {what}");
        }
        present
    }

    fn start() -> Postgres {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PG_PASSWORD).unwrap();
        nix::unistd::chown(&pwfile, Some(user.uid), Some(user.gid)).unwrap();
        let data = dir.path().join("data");
        run_ok(
            Command::new(Path::new(PG_BIN).join("initdb"))
                .uid(uid)
                .gid(gid)
                .current_dir(dir.path())
                .args([
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-U",
                    "postgres",
                    "--no-sync",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .arg("-D")
                .arg(&data),
            "initdb",
        );
        let port = free_port();
        let server = Command::new(Path::new(PG_BIN).join("postgres"))
            .uid(uid)
            .gid(gid)
            .current_dir(dir.path())
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            // a throwaway cluster: no need to wait for the disk
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .arg("-k")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pg = Postgres {
            socket_dir: dir.path().to_path_buf(),
            _dir: dir,
            port,
            server,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = pg.psql_command("postgres", "select 1").output().unwrap();
            if out.status.success() {
                break;
            }
            assert!(Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        pg
    }

    /// `psql` over the socket (trust) as the superuser.
    fn psql_command(&self, db: &str, sql: &str) -> Command {
        let mut cmd = Command::new("psql");
        cmd.arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        cmd
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        run_ok(&mut self.psql_command(db, sql), sql)
    }

    fn make_app_data(&self) {
        self.psql("postgres", "CREATE DATABASE app");
        self.psql(
            "app",
            "CREATE TABLE t (id int PRIMARY KEY, name text, blob bytea); \
             INSERT INTO t SELECT i, 'row ' || i || repeat('x', i % 50), \
             decode(md5(i::text), 'hex') FROM generate_series(1, 2000) i",
        );
    }

    fn rows(&self) -> String {
        self.psql(
            "app",
            "SELECT id, name, encode(blob, 'hex') FROM t ORDER BY id",
        )
    }

    /// Drops `app` and makes it again empty (pg_restore, as in borgmatic, restores into an
    /// existing database).
    fn drop_app(&self) {
        self.psql("postgres", "DROP DATABASE app");
        self.psql("postgres", "CREATE DATABASE app");
        assert!(self
            .psql_command("app", "SELECT count(*) FROM t")
            .output()
            .map(|o| !o.status.success())
            .unwrap());
    }

    fn hook(&self, extra: &str) -> String {
        format!(
            "postgresql_databases:\n  - name: app\n    hostname: 127.0.0.1\n    port: {}\n    \
             username: postgres\n    password: \"{PG_PASSWORD}\"\n{extra}",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.server.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = self.server.wait();
    }
}

#[test]
fn postgresql_dump_streams_into_the_archive_and_restores() {
    if !Postgres::available("PostgreSQL round trip") {
        return;
    }
    let pg = Postgres::start();
    pg.make_app_data();
    let before = pg.rows();
    assert_eq!(before.lines().count(), 2000);
    let w = World::new();
    let cfg = w.config("pg.yaml", &pg.hook(""));
    w.rborg_ok(&cfg, &["repo-create", "--encryption", "repokey"]);
    let log = w.path("create.log");
    w.rborg_ok(
        &cfg,
        &[
            "--log-file",
            log.to_str().unwrap(),
            "--log-file-verbosity",
            "2",
            "-v",
            "2",
            "create",
        ],
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("pg_dump"), "{logged}");
    assert!(!logged.contains(PG_PASSWORD), "the password is in the log");
    // the dump is in the archive at borgmatic 1.7's path, and the pipes are gone
    let listing = w.rborg_ok(&cfg, &["list", "--archive", "latest"]);
    let dump_path = format!(
        "{}/.borgmatic/postgresql_databases/127.0.0.1/app",
        w.path("home").display().to_string().trim_start_matches('/')
    );
    assert!(listing.contains(&dump_path), "{listing}");
    assert!(!w.path("home/.borgmatic/postgresql_databases").exists());

    pg.drop_app();
    w.rborg_ok(&cfg, &["restore", "--archive", "latest"]);
    assert_eq!(pg.rows(), before, "restored rows differ");

    // `--database` picks a dump; a name not in the archive is an error
    pg.psql("app", "DELETE FROM t WHERE id > 10");
    w.rborg_ok(
        &cfg,
        &["restore", "--archive", "latest", "--database", "app"],
    );
    assert_eq!(pg.rows(), before);
    let out = w.rborg(
        &cfg,
        &["restore", "--archive", "latest", "--database", "nope"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));

    // `all` with a format: one dump per database, as borgmatic
    let cfg_all = w.config(
        "all.yaml",
        &format!(
            "postgresql_databases:\n  - name: all\n    format: custom\n    hostname: 127.0.0.1\n    \
             port: {}\n    username: postgres\n    password: \"{PG_PASSWORD}\"\n",
            pg.port
        ),
    );
    w.rborg_ok(&cfg_all, &["create"]);
    let listing = w.rborg_ok(&cfg_all, &["list", "--archive", "latest"]);
    for name in ["app", "postgres"] {
        assert!(
            listing.contains(&format!("postgresql_databases/127.0.0.1/{name}\n")),
            "{listing}"
        );
    }
    assert!(!listing.contains("template1"));
}

#[test]
fn a_dump_failing_halfway_leaves_no_archive_and_fires_on_error() {
    if !Postgres::available("failed dump test") {
        return;
    }
    let pg = Postgres::start();
    pg.make_app_data();
    let w = World::new();
    // writes part of a real dump, then fails
    let script = w.path("half-dump");
    std::fs::write(
        &script,
        "#!/bin/sh\npg_dump \"$@\" | head -c 3000\necho 'dump broke halfway' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let marker = w.path("on-error.txt");
    let cfg = w.config(
        "fail.yaml",
        &format!(
            "{}on_error:\n  - echo \"{{error}}\" > {}\n",
            pg.hook(&format!("    pg_dump_command: {}\n", script.display())),
            marker.display()
        ),
    );
    w.rborg_ok(&cfg, &["repo-create", "--encryption", "repokey"]);
    let out = w.rborg(&cfg, &["create"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "create succeeded: {stderr}");
    assert!(stderr.contains("PostgreSQL database \"app\""), "{stderr}");
    assert!(stderr.contains("dump broke halfway"), "{stderr}");
    let fired = std::fs::read_to_string(&marker).expect("on_error did not fire");
    assert!(fired.contains("dump broke halfway"), "{fired}");
    // no archive claims success (a `.checkpoint`, if any, is borg's interrupted-run marker)
    let finished: Vec<String> = w
        .archives()
        .into_iter()
        .filter(|a| !a.ends_with(".checkpoint"))
        .collect();
    assert!(finished.is_empty(), "an archive was saved: {finished:?}");
    assert!(!w.path("home/.borgmatic/postgresql_databases").exists());
    // no dump process left behind
    let ps = run_ok(Command::new("ps").args(["-eo", "args"]), "ps");
    assert!(!ps.contains(script.to_str().unwrap()), "{ps}");
}

#[test]
fn sqlite_round_trip() {
    if !Path::new("/usr/bin/sqlite3").exists() {
        eprintln!("sqlite3 is not installed: skipping the SQLite round trip");
        return;
    }
    let w = World::new();
    let db = w.path("notes.db");
    run_ok(
        Command::new("sqlite3").arg(&db).arg(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, data BLOB); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
             INSERT INTO notes SELECT i, 'note ' || i, randomblob(i % 64) FROM n;",
        ),
        "sqlite3",
    );
    let query = "SELECT id, body, hex(data) FROM notes ORDER BY id";
    let before = run_ok(Command::new("sqlite3").arg(&db).arg(query), "select");
    assert_eq!(before.lines().count(), 3000);
    let cfg = w.config(
        "sqlite.yaml",
        &format!(
            "sqlite_databases:\n  - name: notes\n    path: {}\n",
            db.display()
        ),
    );
    w.rborg_ok(&cfg, &["repo-create", "--encryption", "repokey"]);
    w.rborg_ok(&cfg, &["create"]);
    // a second run streams the dump again (special files are never skipped by the files cache)
    run_ok(
        Command::new("sqlite3")
            .arg(&db)
            .arg("INSERT INTO notes VALUES (5000, 'late', NULL)"),
        "insert",
    );
    let with_late = run_ok(Command::new("sqlite3").arg(&db).arg(query), "select");
    std::thread::sleep(Duration::from_millis(1100));
    w.rborg_ok(&cfg, &["create"]);
    assert_eq!(w.archives().len(), 2);
    std::fs::remove_file(&db).unwrap();
    w.rborg_ok(&cfg, &["restore", "--archive", "latest"]);
    let after = run_ok(Command::new("sqlite3").arg(&db).arg(query), "select");
    assert_eq!(after, with_late);
    assert_ne!(after, before);
}

/// A throwaway MariaDB in a temporary directory on 127.0.0.1:PORT, with a user `bk` that has a
/// password.
struct Mariadb {
    dir: tempfile::TempDir,
    server: Child,
}

impl Mariadb {
    fn available(what: &str) -> bool {
        let present = is_root()
            && Path::new("/usr/sbin/mariadbd").exists()
            && Path::new("/usr/bin/mariadb-install-db").exists()
            && Path::new("/usr/bin/mariadb-dump").exists();
        if !present {
            eprintln!("MariaDB (or root) is not available: skipping the {what}");
        }
        present
    }

    fn start() -> (Mariadb, u16) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        run_ok(
            Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .args([
                    "--user=root",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ]),
            "mariadb-install-db",
        );
        let port = free_port();
        let server = Command::new("/usr/sbin/mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!("--port={port}"))
            .args(["--bind-address=127.0.0.1", "--user=root", "--skip-log-bin"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let m = Mariadb { dir, server };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !m.sql_command("SELECT 1").output().unwrap().status.success() {
            assert!(Instant::now() < deadline, "mariadbd did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        m.sql(&format!(
            "CREATE USER bk@'127.0.0.1' IDENTIFIED BY '{MY_PASSWORD}'; \
             GRANT ALL ON *.* TO bk@'127.0.0.1'"
        ));
        (m, port)
    }

    fn sql_command(&self, sql: &str) -> Command {
        let mut cmd = Command::new("mariadb");
        cmd.arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                self.dir.path().join("sock").display()
            ))
            .args(["-u", "root", "--batch", "--skip-column-names", "-e", sql]);
        cmd
    }

    fn sql(&self, sql: &str) -> String {
        run_ok(&mut self.sql_command(sql), sql)
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.server.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.server.wait();
    }
}

#[test]
fn mariadb_round_trip() {
    if !Mariadb::available("MariaDB round trip") {
        return;
    }
    let (m, port) = Mariadb::start();
    m.sql(
        "CREATE DATABASE shop; USE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(100), \
         price DECIMAL(10,2)); INSERT INTO shop.items SELECT seq, CONCAT('item ', seq), seq / 7 \
         FROM seq_1_to_1500",
    );
    let query = "SELECT id, name, price FROM shop.items ORDER BY id";
    let before = m.sql(query);
    assert_eq!(before.lines().count(), 1500);
    let w = World::new();
    let cfg = w.config(
        "maria.yaml",
        &format!(
            "mariadb_databases:\n  - name: shop\n    hostname: 127.0.0.1\n    port: {port}\n    \
             username: bk\n    password: \"{MY_PASSWORD}\"\n"
        ),
    );
    w.rborg_ok(&cfg, &["repo-create", "--encryption", "repokey"]);
    let out = w.rborg_ok(&cfg, &["-v", "2", "create"]);
    assert!(out.contains("mariadb-dump"), "{out}");
    assert!(!out.contains(MY_PASSWORD), "the password is in the log");
    let listing = w.rborg_ok(&cfg, &["list", "--archive", "latest"]);
    assert!(
        listing.contains(".borgmatic/mariadb_databases/127.0.0.1/shop"),
        "{listing}"
    );
    m.sql("DROP DATABASE shop");
    w.rborg_ok(&cfg, &["restore", "--archive", "latest"]);
    assert_eq!(m.sql(query), before);
}

/// borgmatic 1.7.7 (Debian) with borg 1.2.4 makes an archive holding a PostgreSQL dump, which
/// `rborg restore` restores; an archive rborg made restores with `borgmatic restore` (1.7.7:
/// rborg writes its layout), and with borgmatic 2.x's when the entry has no port.
#[test]
fn borgmatic_1_7_interop_both_ways() {
    let borgmatic = Path::new("/usr/bin/borgmatic");
    if !Postgres::available("borgmatic interop test") {
        return;
    }
    if !borgmatic.exists() || !rborg_testkit::borg_available("borgmatic interop test") {
        assert!(
            std::env::var("RBORG_REQUIRE_BORG").as_deref() != Ok("1"),
            "RBORG_REQUIRE_BORG=1 but borgmatic 1.7 is not at /usr/bin/borgmatic"
        );
        eprintln!("borgmatic 1.7 is not installed: skipping the borgmatic interop test");
        return;
    }
    let pg = Postgres::start();
    pg.make_app_data();
    let before = pg.rows();
    let w = World::new();
    // borgmatic 1.7's sectioned form, which rborg also reads
    let cfg = w.path("bm17.yaml");
    std::fs::write(
        &cfg,
        format!(
            "location:\n  source_directories:\n    - {src}\n  repositories:\n    - {repo}\n\
             storage:\n  encryption_passphrase: \"{PASSPHRASE}\"\nretention:\n  keep_daily: 7\n\
             hooks:\n  postgresql_databases:\n    - name: app\n      hostname: 127.0.0.1\n      \
             port: {port}\n      username: postgres\n      password: \"{PG_PASSWORD}\"\n",
            src = w.path("src").display(),
            repo = w.path("repo").display(),
            port = pg.port
        ),
    )
    .unwrap();
    let borgmatic_run = |args: &[&str]| {
        let mut cmd = Command::new(borgmatic);
        w.env(&mut cmd);
        cmd.env("PATH", "/usr/bin:/bin")
            .arg("-c")
            .arg(&cfg)
            .args(args);
        run_ok(&mut cmd, &format!("borgmatic {args:?}"))
    };
    borgmatic_run(&["init", "--encryption", "repokey"]);
    borgmatic_run(&["create"]);
    pg.drop_app();
    w.rborg_ok(&cfg, &["restore", "--archive", "latest"]);
    assert_eq!(pg.rows(), before, "rborg restore of borgmatic's dump");

    // and back: rborg's archive, borgmatic's restore
    pg.psql("app", "UPDATE t SET name = 'changed' WHERE id <= 100");
    let changed = pg.rows();
    std::thread::sleep(Duration::from_millis(1100));
    w.rborg_ok(&cfg, &["create"]);
    pg.drop_app();
    borgmatic_run(&["restore", "--archive", "latest"]);
    assert_eq!(pg.rows(), changed, "borgmatic restore of rborg's dump");

    // borgmatic 2.x finds rborg's (1.7 layout) dumps too, for an entry without a port (the
    // port comes from PGPORT here; docs/databases.md explains the port caveat)
    let Some(borgmatic2) = rborg_testkit::borgmatic2("borgmatic 2.x restore of an rborg archive")
    else {
        return;
    };
    let flat = w.path("bm2.yaml");
    std::fs::write(
        &flat,
        format!(
            "source_directories:\n  - {src}\nrepositories:\n  - path: {repo}\n\
             encryption_passphrase: \"{PASSPHRASE}\"\npostgresql_databases:\n  - name: app\n    \
             hostname: 127.0.0.1\n    username: postgres\n    password: \"{PG_PASSWORD}\"\n",
            src = w.path("src").display(),
            repo = w.path("repo").display(),
        ),
    )
    .unwrap();
    pg.psql("app", "UPDATE t SET name = 'again' WHERE id <= 50");
    let again = pg.rows();
    std::thread::sleep(Duration::from_millis(1100));
    let mut create = Command::new(env!("CARGO_BIN_EXE_rborg"));
    w.env(&mut create);
    create
        .env("PGPORT", pg.port.to_string())
        .arg("-c")
        .arg(&flat)
        .arg("create");
    run_ok(&mut create, "rborg create (no port)");
    pg.drop_app();
    let mut restore = Command::new(borgmatic2);
    w.env(&mut restore);
    restore
        .env("PGPORT", pg.port.to_string())
        .env("PATH", "/usr/bin:/bin")
        .arg("-c")
        .arg(&flat)
        .args(["restore", "--archive", "latest"]);
    run_ok(&mut restore, "borgmatic 2.x restore");
    assert_eq!(pg.rows(), again, "borgmatic 2.x restore of rborg's dump");
}
