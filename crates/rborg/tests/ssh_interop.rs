//! Remote repositories over a real OpenSSH server on 127.0.0.1 (issue 5): a throwaway user, a
//! host key and two client keys made by the test, `sshd -D` as a child on a free port
//! (`/work/shared/docs/test-infrastructure.md`, "SSH on loopback").
//!
//! Through both client transports (the spawned `ssh` of `BORG_RSH`, and the in-process ssh2 of
//! `RBORG_SSH_TRANSPORT=ssh2`): init, create, list, extract (byte-identical trees) and check;
//! real borg 1.2.4 as the client of `rborg borg serve`; the ssh2 host key checks (unknown host,
//! accept-new, changed key); and an authorized_keys forced command
//! `rborg borg serve --restrict-to-path ... --append-only` that refuses every escape with borg's
//! "Repository path not allowed".
//!
//! Needs root (useradd, sshd) and `/usr/sbin/sshd`: skipped with a notice otherwise, except that
//! a root run with `RBORG_REQUIRE_BORG=1` (CI, whose `.ci/run` installs openssh-server) fails
//! when sshd is missing. One test function runs every case against one server, so the user and
//! the daemon are set up once; a Drop guard stops sshd and removes the user even on failure.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rborg_testkit::{assert_same_tree, borg_command, ok, SnapshotOptions, BORG};

const SSHD: &str = "/usr/sbin/sshd";
const PASSPHRASE: &str = "ssh interop";

/// Whether this machine can run the test (root, sshd, ssh, useradd).
fn can_run() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let tools = [
        SSHD,
        "/usr/bin/ssh",
        "/usr/bin/ssh-keygen",
        "/usr/sbin/useradd",
    ]
    .iter()
    .all(|p| Path::new(p).exists());
    if root && tools {
        return true;
    }
    assert!(
        !(root && std::env::var("RBORG_REQUIRE_BORG").as_deref() == Ok("1")),
        "RBORG_REQUIRE_BORG=1 as root but OpenSSH (server and client) is not installed"
    );
    eprintln!("not root or no OpenSSH server: skipping the ssh interop test");
    false
}

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program).args(args).output().unwrap();
    ok(&out, &format!("{program} {args:?}"));
    out
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The second field of an OpenSSH public key line (the base64 key).
fn public_key_b64(pub_file: &Path) -> String {
    let text = std::fs::read_to_string(pub_file).unwrap();
    text.split_whitespace().nth(1).unwrap().to_string()
}

/// Which client transport a command uses.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Transport {
    /// `BORG_RSH="ssh -i KEY ..."`.
    Spawned,
    /// `RBORG_SSH_TRANSPORT=ssh2`, `RBORG_SSH2_KEY=KEY`.
    Ssh2,
}

/// The throwaway user, keys and sshd. Dropping it stops sshd and removes the user and its home.
struct SshServer {
    dir: tempfile::TempDir,
    user: String,
    home: PathBuf,
    port: u16,
    sshd: Option<Child>,
    /// The rborg binary, copied where the user can run it.
    rborg: PathBuf,
    plain_key: PathBuf,
    forced_key: PathBuf,
    /// A known_hosts file with the server's host key.
    known_hosts: PathBuf,
}

impl Drop for SshServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // -f: even if a session of the user is still winding down
        let _ = Command::new("/usr/sbin/userdel")
            .args(["-r", "-f", &self.user])
            .stderr(Stdio::null())
            .status();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SshServer {
    fn start() -> SshServer {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let user = format!("rbssh{}x{}", std::process::id(), nanos % 100_000);
        run(
            "/usr/sbin/useradd",
            &["-m", "-s", "/bin/sh", "-p", "*", &user],
        );
        let home = nix::unistd::User::from_name(&user)
            .unwrap()
            .expect("the new user exists")
            .dir;
        let dir = tempfile::tempdir().unwrap();
        // the guard exists from here on: a failing step below still removes the user
        let mut server = SshServer {
            rborg: dir.path().join("bin/rborg"),
            plain_key: dir.path().join("plain_key"),
            forced_key: dir.path().join("forced_key"),
            known_hosts: dir.path().join("known_hosts"),
            dir,
            user,
            home,
            port: 0,
            sshd: None,
        };
        server.setup();
        server
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn setup(&mut self) {
        let d = self.dir.path().to_path_buf();
        chmod(&d, 0o755);
        std::fs::create_dir(d.join("bin")).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_rborg"), &self.rborg).unwrap();
        chmod(&self.rborg, 0o755);
        for key in ["hostkey", "plain_key", "forced_key"] {
            let path = d.join(key);
            run(
                "/usr/bin/ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-f",
                    path.to_str().unwrap(),
                ],
            );
        }
        // the user's repositories; the forced key may only reach repos/ao
        let repos = self.home.join("repos");
        std::fs::create_dir_all(repos.join("ao")).unwrap();
        std::fs::create_dir_all(self.home.join("outside")).unwrap();
        // a symlink inside the restriction pointing out of it
        std::os::unix::fs::symlink(self.home.join("outside"), repos.join("ao/link")).unwrap();
        let ssh_dir = self.home.join(".ssh");
        std::fs::create_dir_all(&ssh_dir).unwrap();
        let key_line = |k: &str| std::fs::read_to_string(d.join(format!("{k}.pub"))).unwrap();
        let authorized = format!(
            "{}command=\"{} borg serve --restrict-to-path {} --append-only\",restrict {}",
            key_line("plain_key"),
            self.rborg.display(),
            repos.join("ao").display(),
            key_line("forced_key"),
        );
        std::fs::write(ssh_dir.join("authorized_keys"), authorized).unwrap();
        run(
            "/bin/chown",
            &[
                "-R",
                &format!("{0}:{0}", self.user),
                self.home.to_str().unwrap(),
            ],
        );
        std::fs::create_dir_all("/run/sshd").unwrap();
        chmod(Path::new("/run/sshd"), 0o755);

        self.port = free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/hostkey\n\
                 PidFile {dir}/sshd.pid\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\n\
                 StrictModes no\nPermitRootLogin no\nAllowUsers {user}\nLogLevel VERBOSE\n",
                port = self.port,
                dir = d.display(),
                user = self.user,
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let config = d.join("sshd_config");
        self.sshd = Some(
            Command::new(SSHD)
                .args(["-D", "-e", "-f", config.to_str().unwrap()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        self.wait_ready();
        std::fs::write(
            &self.known_hosts,
            format!(
                "[127.0.0.1]:{} ssh-ed25519 {}\n",
                self.port,
                public_key_b64(&d.join("hostkey.pub"))
            ),
        )
        .unwrap();
    }

    /// Waits until sshd answers with its banner.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.sshd.as_mut().unwrap().try_wait() {
                panic!("sshd exited with {status}: {}", self.sshd_log());
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut banner = [0u8; 4];
                if s.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                self.sshd_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
    }

    /// `ssh://user@127.0.0.1:port/path`.
    fn url(&self, path: &str) -> String {
        format!("ssh://{}@127.0.0.1:{}{path}", self.user, self.port)
    }

    /// An absolute path in the user's home, as text.
    fn home_path(&self, rel: &str) -> String {
        self.home.join(rel).display().to_string()
    }

    /// `client args` (client = the rborg binary or borg) through `transport` with `key`.
    fn cmd(&self, client: &str, transport: Transport, key: &Path, args: &[&str]) -> Command {
        let (program, mut full) = if client == "rborg" {
            (env!("CARGO_BIN_EXE_rborg"), vec!["borg"])
        } else {
            (BORG, vec![])
        };
        full.extend_from_slice(args);
        let mut cmd = borg_command(
            program,
            &full,
            self.dir.path(),
            &self.path("client-home"),
            PASSPHRASE,
        );
        cmd.env("BORG_REMOTE_PATH", format!("{} borg", self.rborg.display()))
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("RBORG_SSH_TRANSPORT")
            .env_remove("RBORG_SSH2_ACCEPT_NEW");
        match transport {
            Transport::Spawned => {
                cmd.env(
                    "BORG_RSH",
                    format!(
                        "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes \
                         -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
                         -o LogLevel=ERROR",
                        key.display()
                    ),
                );
            }
            Transport::Ssh2 => {
                cmd.env("RBORG_SSH_TRANSPORT", "ssh2")
                    .env("RBORG_SSH2_KEY", key)
                    .env("RBORG_SSH2_KNOWN_HOSTS", &self.known_hosts)
                    // a BORG_RSH that would fail proves the spawned transport is not used
                    .env("BORG_RSH", "/bin/false");
            }
        }
        cmd
    }

    fn run(&self, client: &str, t: Transport, key: &Path, args: &[&str]) -> Output {
        self.cmd(client, t, key, args).output().unwrap()
    }

    fn rborg(&self, t: Transport, args: &[&str]) -> Output {
        self.run("rborg", t, &self.plain_key, args)
    }

    fn forced(&self, t: Transport, args: &[&str]) -> Output {
        self.run("rborg", t, &self.forced_key, args)
    }
}

/// A small input tree: text, incompressible data over several chunks, an empty file, a
/// subdirectory and a symlink.
fn make_input(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("hello.txt"), b"hello over ssh\n").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("sub/noise"), rborg_testkit::noise(5, 1_200_000)).unwrap();
    std::fs::write(root.join("sub/deeper/text"), "line\n".repeat(20_000)).unwrap();
    std::os::unix::fs::symlink("../hello.txt", root.join("sub/link")).unwrap();
}

/// Extracts `archive` with `client` into a fresh directory and compares it with the input.
fn extract_and_compare(
    server: &SshServer,
    client: &str,
    t: Transport,
    key: &Path,
    archive: &str,
    what: &str,
) {
    let out_dir = server.path(&format!("out-{what}"));
    std::fs::create_dir(&out_dir).unwrap();
    let out = server
        .cmd(client, t, key, &["extract", archive])
        .current_dir(&out_dir)
        .output()
        .unwrap();
    ok(&out, &format!("extract ({what})"));
    assert_same_tree(
        &server.path("input"),
        &out_dir.join("input"),
        SnapshotOptions::default(),
        what,
    );
}

/// init, create, list, extract and check with the rborg client over transport `t`.
fn roundtrip(server: &SshServer, t: Transport) {
    let what = format!("{t:?}");
    let repo = server.url(&server.home_path(&format!("repos/{what}")));
    ok(
        &server.rborg(t, &["init", "-e", "repokey", &repo]),
        &format!("init ({what})"),
    );
    ok(
        &server.rborg(t, &["create", &format!("{repo}::a1"), "input"]),
        &format!("create ({what})"),
    );
    let list = ok(
        &server.rborg(t, &["list", "--format", "{archive}{NL}", &repo]),
        &format!("list ({what})"),
    );
    assert_eq!(list, "a1\n", "{what}");
    let mut items: Vec<String> = ok(
        &server.rborg(t, &["list", "--short", &format!("{repo}::a1")]),
        &format!("list archive ({what})"),
    )
    .lines()
    .map(str::to_string)
    .collect();
    items.sort();
    assert_eq!(
        items,
        [
            "input",
            "input/empty",
            "input/hello.txt",
            "input/sub",
            "input/sub/deeper",
            "input/sub/deeper/text",
            "input/sub/link",
            "input/sub/noise"
        ],
        "{what}"
    );
    extract_and_compare(
        server,
        "rborg",
        t,
        &server.plain_key,
        &format!("{repo}::a1"),
        &what,
    );
    let check = server.rborg(t, &["check", "-v", &repo]);
    ok(&check, &format!("check ({what})"));
    let log = String::from_utf8_lossy(&check.stderr);
    // the server's log lines come back over the channel's stderr, prefixed
    assert!(
        log.contains("Remote: Starting repository check"),
        "{what}: {log}"
    );
    assert!(
        log.contains("Archive consistency check complete, no problems found."),
        "{what}: {log}"
    );
    // the repository lives on the server side, owned by the ssh user
    let meta = std::fs::metadata(server.home.join(format!("repos/{what}/config"))).unwrap();
    let uid = nix::unistd::User::from_name(&server.user)
        .unwrap()
        .unwrap()
        .uid;
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), uid.as_raw());
}

/// borg 1.2.4 as the client of `rborg borg serve` over real ssh; rborg's ssh2 client reads the
/// archive borg wrote.
fn borg_client(server: &SshServer) {
    let repo = server.url(&server.home_path("repos/borg"));
    let key = &server.plain_key;
    let borg = |args: &[&str]| server.run("borg", Transport::Spawned, key, args);
    ok(&borg(&["init", "-e", "repokey", &repo]), "borg init");
    ok(
        &borg(&["create", &format!("{repo}::b1"), "input"]),
        "borg create",
    );
    let check = borg(&["check", "-v", &repo]);
    ok(&check, "borg check");
    assert!(String::from_utf8_lossy(&check.stderr).contains("Remote: Starting repository check"));
    extract_and_compare(
        server,
        "borg",
        Transport::Spawned,
        key,
        &format!("{repo}::b1"),
        "borg-client",
    );
    let list = ok(
        &server.rborg(
            Transport::Ssh2,
            &["list", "--short", &format!("{repo}::b1")],
        ),
        "rborg (ssh2) list of borg's archive",
    );
    assert_eq!(list.lines().count(), 8, "{list}");
    extract_and_compare(
        server,
        "rborg",
        Transport::Ssh2,
        key,
        &format!("{repo}::b1"),
        "rborg-ssh2-of-borg",
    );
}

/// The ssh2 transport's host key checks.
fn ssh2_host_keys(server: &SshServer) {
    let repo = server.url(&server.home_path("repos/Ssh2"));
    let list = |kh: &Path, accept_new: bool| {
        let mut cmd = server.cmd(
            "rborg",
            Transport::Ssh2,
            &server.plain_key,
            &["list", &repo],
        );
        cmd.env("RBORG_SSH2_KNOWN_HOSTS", kh);
        if accept_new {
            cmd.env("RBORG_SSH2_ACCEPT_NEW", "1");
        }
        cmd.output().unwrap()
    };
    // unknown host: refused, nothing written
    let kh = server.path("kh-new/known_hosts");
    let out = list(&kh, false);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("host key verification failed")
            && err.contains(&format!("[127.0.0.1]:{}", server.port)),
        "{err}"
    );
    assert!(!kh.exists());
    // accept-new records it in OpenSSH's format; later runs match without the option
    ok(&list(&kh, true), "list with RBORG_SSH2_ACCEPT_NEW=1");
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        std::fs::read_to_string(&server.known_hosts).unwrap()
    );
    ok(&list(&kh, false), "list with the recorded host key");
    // OpenSSH accepts the file rborg wrote
    let ssh = Command::new("/usr/bin/ssh")
        .args(["-i", server.plain_key.to_str().unwrap()])
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .args(["-p", &server.port.to_string()])
        .arg(format!("{}@127.0.0.1", server.user))
        .arg("true")
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    ok(&ssh, "OpenSSH with the known_hosts file rborg wrote");
    // hashed host names (`ssh-keygen -H`, OpenSSH's HashKnownHosts) match too
    run(
        "/usr/bin/ssh-keygen",
        &["-q", "-H", "-f", kh.to_str().unwrap()],
    );
    assert!(std::fs::read_to_string(&kh).unwrap().starts_with("|1|"));
    ok(&list(&kh, false), "list with a hashed known_hosts entry");
    // a changed key is refused even with accept-new
    let changed = server.path("kh-changed");
    std::fs::write(
        &changed,
        format!(
            "[127.0.0.1]:{} ssh-ed25519 {}\n",
            server.port,
            public_key_b64(&server.path("plain_key.pub"))
        ),
    )
    .unwrap();
    for accept_new in [false, true] {
        let out = list(&changed, accept_new);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
            "{err}"
        );
    }
    // a key the server does not know: permission denied, no hang
    let stranger = server.path("stranger");
    run(
        "/usr/bin/ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            stranger.to_str().unwrap(),
        ],
    );
    let out = server.run("rborg", Transport::Ssh2, &stranger, &["list", &repo]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "{err}");
}

/// The forced command `rborg borg serve --restrict-to-path ~/repos/ao --append-only`.
fn forced_command(server: &SshServer, t: Transport) {
    let what = format!("forced-{t:?}");
    let repo = server.url(&server.home_path(&format!("repos/ao/{what}")));
    ok(
        &server.forced(t, &["init", "-e", "repokey", &repo]),
        &format!("init ({what})"),
    );
    for a in ["a1", "a2"] {
        ok(
            &server.forced(t, &["create", &format!("{repo}::{a}"), "input"]),
            &format!("create {a} ({what})"),
        );
    }
    extract_and_compare(
        server,
        "rborg",
        t,
        &server.forced_key,
        &format!("{repo}::a2"),
        &what,
    );
    ok(
        &server.forced(t, &["check", &repo]),
        &format!("check ({what})"),
    );
    // append-only: the delete is recorded, but as a new transaction; old segments stay
    let repo_dir = server.home.join(format!("repos/ao/{what}"));
    let segments_before = segments(&repo_dir);
    ok(
        &server.forced(t, &["delete", &format!("{repo}::a1")]),
        &format!("delete ({what})"),
    );
    ok(
        &server.forced(t, &["compact", &repo]),
        &format!("compact ({what})"),
    );
    let list = ok(
        &server.forced(t, &["list", "--format", "{archive}{NL}", &repo]),
        &format!("list ({what})"),
    );
    assert_eq!(list, "a2\n");
    // no segment was removed or rewritten (compact did nothing), and borg's transaction log,
    // kept in append-only mode only, has the commits of create, create, delete and compact
    let after = segments(&repo_dir);
    for seg in &segments_before {
        assert!(after.contains(seg), "{what}: segment {seg:?} changed");
    }
    assert!(after.len() > segments_before.len(), "{what}");
    let transactions = std::fs::read_to_string(repo_dir.join("transactions")).unwrap();
    assert!(transactions.lines().count() >= 4, "{transactions}");

    // every escape is refused with borg's error, and creates nothing
    let escapes = [
        server.home_path("outside/r"),
        server.home_path("repos/ao/link/r"),
        format!("{}/../../outside/r", server.home_path("repos/ao")),
        server.home_path("repos/ao_sibling/r"),
        "/./outside/r".to_string(),
        "/~/outside/r".to_string(),
        "/tmp/r".to_string(),
    ];
    // the refusal is the server's: every escape once through the spawned ssh, two through
    // ssh2 (each command costs a connection, and the test must stay short)
    let tried = if t == Transport::Spawned { 7 } else { 2 };
    for (i, path) in escapes.iter().take(tried).enumerate() {
        let commands: &[&[&str]] = if i < 2 {
            &[&["init", "-e", "none"], &["list"]]
        } else {
            &[&["init", "-e", "none"]]
        };
        for args in commands {
            let mut full = args.to_vec();
            let url = server.url(path);
            full.push(&url);
            let out = server.forced(t, &full);
            assert_eq!(out.status.code(), Some(2), "{what} {full:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("Repository path not allowed"),
                "{what} {full:?}: {err}"
            );
        }
    }
    assert_eq!(
        std::fs::read_dir(server.home.join("outside"))
            .unwrap()
            .count(),
        0
    );
    assert!(!server.home.join("repos/ao_sibling").exists());
    assert!(!Path::new("/tmp/r").exists());
}

/// Every segment file of the repository with its size.
fn segments(repo: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(repo.join("data")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let f = f.unwrap();
            out.push((f.path(), f.metadata().unwrap().len()));
        }
    }
    out.sort();
    out
}

/// A named step of the test.
type Case<'a> = (&'a str, &'a dyn Fn(&SshServer));

#[test]
fn openssh_loopback() {
    if !can_run() {
        return;
    }
    let server = SshServer::start();
    make_input(&server.path("input"));
    let cases: [Case; 7] = [
        ("roundtrip spawned ssh", &|s| {
            roundtrip(s, Transport::Spawned)
        }),
        ("roundtrip ssh2", &|s| roundtrip(s, Transport::Ssh2)),
        ("ssh2 host keys", &ssh2_host_keys),
        ("forced command, spawned ssh", &|s| {
            forced_command(s, Transport::Spawned)
        }),
        ("forced command, ssh2", &|s| {
            forced_command(s, Transport::Ssh2)
        }),
        ("borg 1.2.4 client", &|s| {
            if Path::new(BORG).exists() {
                borg_client(s)
            } else {
                eprintln!("{BORG} is not installed: skipping the borg client case");
            }
        }),
        ("sshd still up", &|s| {
            let mut s_ = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
            let mut b = [0u8; 4];
            s_.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"SSH-");
        }),
    ];
    for (name, case) in cases {
        let t = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&server)));
        if let Err(e) = result {
            eprintln!("case {name:?} failed; sshd log:\n{}", server.sshd_log());
            std::panic::resume_unwind(e);
        }
        eprintln!("case {name:?}: ok in {:.1?}", t.elapsed());
    }
}
