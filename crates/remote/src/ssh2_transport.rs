//! In-process SSH (libssh2 through the `ssh2` crate): the second client transport of the
//! issue's "spawned command or ssh2", for hosts without an `ssh` binary or where spawning one is
//! unwanted. Chosen with `RBORG_SSH_TRANSPORT=ssh2`.
//!
//! What it does is what `ssh [-p PORT] [USER@]HOST REMOTE_PATH serve ARGS` does for borg's
//! `RemoteRepository` (`borg/remote.py`, `ssh_cmd` + `borg_cmd`): connect, check the server's
//! host key against `known_hosts` (OpenSSH's `StrictHostKeyChecking=yes` by default,
//! `accept-new` on request), authenticate with a key file or the agent, run the command on a
//! session channel, and hand its stdin/stdout to [`RemoteRepository::connect`]; its stderr is
//! relayed line by line through the same [`parse_remote_line`] as the spawned transport's.
//!
//! libssh2 sessions are not thread-safe for concurrent blocking use (the `ssh2` crate puts one
//! mutex around the session, so a blocked read would starve the writer and the other way round).
//! Here one I/O pump thread owns the session in non-blocking mode: it moves bytes between the
//! channel and two in-memory queues, and sleeps in `poll(2)` on the socket and on a wake-up
//! socket the writer pokes. The client's reader and writer never touch libssh2.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags};
use ssh2::{BlockDirections, CheckResult, HashType, KnownHostFileKind, MethodType, Session};

use crate::client::{
    parse_remote_line, LogSink, OpenArgs, RemoteLog, RemoteRepository, SshCommand,
};
use crate::Level;

/// Environment variable choosing the client transport: `ssh2` selects this module, anything
/// else (or unset) the spawned `BORG_RSH` command.
pub const ENV_TRANSPORT: &str = "RBORG_SSH_TRANSPORT";
/// Environment variable naming a private key file to try first (like `ssh -i`).
pub const ENV_KEY: &str = "RBORG_SSH2_KEY";
/// Environment variable with the passphrase of the key files, if they have one.
pub const ENV_KEY_PASSPHRASE: &str = "RBORG_SSH2_KEY_PASSPHRASE";
/// Environment variable naming the known hosts file (default `~/.ssh/known_hosts`).
pub const ENV_KNOWN_HOSTS: &str = "RBORG_SSH2_KNOWN_HOSTS";
/// Environment variable: `1` records unknown host keys instead of refusing the host
/// (OpenSSH's `StrictHostKeyChecking=accept-new`); a changed key is refused all the same.
pub const ENV_ACCEPT_NEW: &str = "RBORG_SSH2_ACCEPT_NEW";

/// Host key algorithms in OpenSSH's order of preference (`ssh -Q HostKeyAlgorithms` without
/// certificates), so that libssh2 negotiates the key type OpenSSH recorded in `known_hosts`.
const HOST_KEY_PREFERENCE: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-rsa",
];

/// Largest piece one `write` call queues for the pump (bounds the memory of the queue).
const WRITE_PIECE: usize = 1 << 20;
/// Pieces the writer may queue before it waits for the pump.
const WRITE_QUEUE: usize = 16;
/// Pieces of server output the pump may queue before it waits for the reader.
const READ_QUEUE: usize = 64;
/// Longest stderr line relayed (as `stderr_thread` of the spawned transport).
const MAX_LINE: usize = 1 << 20;

/// Whether `RBORG_SSH_TRANSPORT=ssh2` asks for this transport.
pub fn selected() -> bool {
    std::env::var(ENV_TRANSPORT).is_ok_and(|v| v.eq_ignore_ascii_case("ssh2"))
}

/// How to authenticate and which host keys to trust.
#[derive(Clone, Debug)]
pub struct Ssh2Config {
    /// A key file tried before the agent (`RBORG_SSH2_KEY`, like `ssh -i`).
    pub key: Option<PathBuf>,
    /// Key files tried after the agent (`~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`, as
    /// OpenSSH's default `IdentityFile`s).
    pub default_keys: Vec<PathBuf>,
    /// Passphrase of the key files (`RBORG_SSH2_KEY_PASSPHRASE`).
    pub passphrase: Option<String>,
    /// Try the keys of the ssh agent (`SSH_AUTH_SOCK` set).
    pub use_agent: bool,
    /// The OpenSSH known hosts file.
    pub known_hosts: PathBuf,
    /// Record unknown hosts instead of refusing them.
    pub accept_new: bool,
    /// Timeout for the TCP connection and for each blocking step of handshake and login.
    pub timeout: Duration,
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
        .unwrap_or_else(|| PathBuf::from("/"))
}

impl Ssh2Config {
    /// The configuration the environment gives: `RBORG_SSH2_KEY`, `RBORG_SSH2_KEY_PASSPHRASE`,
    /// `RBORG_SSH2_KNOWN_HOSTS`, `RBORG_SSH2_ACCEPT_NEW`, `SSH_AUTH_SOCK`, `HOME`.
    pub fn from_env() -> Ssh2Config {
        let ssh_dir = home_dir().join(".ssh");
        let env_path = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Ssh2Config {
            key: env_path(ENV_KEY),
            default_keys: ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|n| ssh_dir.join(n))
                .collect(),
            passphrase: std::env::var(ENV_KEY_PASSPHRASE).ok(),
            use_agent: std::env::var_os("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty()),
            known_hosts: env_path(ENV_KNOWN_HOSTS).unwrap_or_else(|| ssh_dir.join("known_hosts")),
            accept_new: std::env::var(ENV_ACCEPT_NEW)
                .is_ok_and(|v| matches!(v.as_str(), "1" | "yes" | "true")),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Why the in-process SSH connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Ssh2Error {
    /// No TCP connection to any address of the host.
    #[error("ssh2: cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The last connection error.
        source: io::Error,
    },
    /// The SSH handshake (key exchange) failed.
    #[error("ssh2: SSH handshake with {host} failed: {source}")]
    Handshake {
        /// The host as written in known_hosts (`host` or `[host]:port`).
        host: String,
        /// libssh2's error.
        source: ssh2::Error,
    },
    /// The host's key is not in known_hosts and accepting new keys was not asked for.
    #[error(
        "ssh2: host key verification failed: no {key_type} host key is known for {host} \
         ({fingerprint}) in {file}; add it to that file (ssh-keyscan) or set \
         RBORG_SSH2_ACCEPT_NEW=1 to accept it"
    )]
    UnknownHost {
        /// The host as written in known_hosts.
        host: String,
        /// The key type the server offered.
        key_type: String,
        /// `SHA256:...` as OpenSSH prints it.
        fingerprint: String,
        /// The known hosts file.
        file: String,
    },
    /// known_hosts has a different key for the host (OpenSSH's "REMOTE HOST IDENTIFICATION
    /// HAS CHANGED").
    #[error(
        "ssh2: host key verification failed: REMOTE HOST IDENTIFICATION HAS CHANGED: the \
         {key_type} key of {host} ({fingerprint}) does not match the one in {file}"
    )]
    HostKeyMismatch {
        /// The host as written in known_hosts.
        host: String,
        /// The key type the server offered.
        key_type: String,
        /// `SHA256:...` of the offered key.
        fingerprint: String,
        /// The known hosts file.
        file: String,
    },
    /// The known hosts file exists but could not be read, or the check itself failed.
    #[error("ssh2: cannot check the host key of {host} against {file}: {reason}")]
    KnownHosts {
        /// The host as written in known_hosts.
        host: String,
        /// The known hosts file.
        file: String,
        /// What failed.
        reason: String,
    },
    /// A new host key could not be recorded.
    #[error("ssh2: cannot add the host key of {host} to {file}: {source}")]
    KnownHostsWrite {
        /// The host as written in known_hosts.
        host: String,
        /// The known hosts file.
        file: String,
        /// The write error.
        source: io::Error,
    },
    /// No key was accepted.
    #[error("ssh2: {user}@{host}: Permission denied (publickey); tried: {tried}")]
    Auth {
        /// The remote user.
        user: String,
        /// The host.
        host: String,
        /// What was offered.
        tried: String,
    },
    /// The local user name is unknown and the location names none.
    #[error("ssh2: cannot determine the local user name; put user@ in the repository location")]
    NoUser,
    /// Opening the channel or starting the command failed.
    #[error("ssh2: cannot run {command:?} on {host}: {source}")]
    Exec {
        /// The remote command line.
        command: String,
        /// The host.
        host: String,
        /// libssh2's error.
        source: ssh2::Error,
    },
    /// The pump thread could not be started.
    #[error("ssh2: {0}")]
    Io(#[from] io::Error),
}

impl From<Ssh2Error> for rborg_repository::Error {
    fn from(e: Ssh2Error) -> Self {
        rborg_repository::Error::Io(io::Error::other(e))
    }
}

/// The remote command line of `cmd`: `REMOTE_PATH serve ARGS...` joined with spaces, as the
/// `ssh` client joins its arguments (so `BORG_REMOTE_PATH="sudo -u borg borg"` works the same
/// through both transports).
pub fn remote_command(cmd: &SshCommand) -> String {
    let mut words = vec![cmd.remote_path.clone().unwrap_or_else(|| "borg".into())];
    words.push("serve".into());
    words.extend(cmd.serve_args.iter().cloned());
    words.join(" ")
}

/// The name of `host`/`port` in known_hosts: `host` for port 22, else `[host]:port`.
pub fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// The SSH wire name of a public key blob (its first length-prefixed string, RFC 4253 6.6).
fn key_type_name(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4usize.checked_add(len)?)?).ok()
}

fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn local_user() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
}

/// Checks the session's host key against the known hosts file; with `accept_new` an unknown
/// host is appended to it (one OpenSSH line, the rest of the file untouched).
fn verify_host_key(
    sess: &Session,
    host: &str,
    port: u16,
    config: &Ssh2Config,
) -> Result<(), Ssh2Error> {
    let name = known_hosts_name(host, port);
    let file = config.known_hosts.display().to_string();
    let kh_err = |reason: String| Ssh2Error::KnownHosts {
        host: name.clone(),
        file: file.clone(),
        reason,
    };
    let (key, _) = sess
        .host_key()
        .ok_or_else(|| kh_err("the server sent no host key".into()))?;
    let key_type = key_type_name(key).unwrap_or("unknown").to_string();
    let fingerprint = sess
        .host_key_hash(HashType::Sha256)
        .map(|h| format!("SHA256:{}", base64(h).trim_end_matches('=')))
        .unwrap_or_default();
    let mut known = sess.known_hosts().map_err(|e| kh_err(e.to_string()))?;
    if config.known_hosts.exists() {
        known
            .read_file(&config.known_hosts, KnownHostFileKind::OpenSSH)
            .map_err(|e| kh_err(e.to_string()))?;
    }
    match known.check_port(host, port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(Ssh2Error::HostKeyMismatch {
            host: name,
            key_type,
            fingerprint,
            file,
        }),
        CheckResult::NotFound if config.accept_new => {
            append_known_host(&config.known_hosts, &name, &key_type, key).map_err(|source| {
                Ssh2Error::KnownHostsWrite {
                    host: name.clone(),
                    file: file.clone(),
                    source,
                }
            })
        }
        CheckResult::NotFound => Err(Ssh2Error::UnknownHost {
            host: name,
            key_type,
            fingerprint,
            file,
        }),
        CheckResult::Failure => Err(kh_err("libssh2 could not compare the keys".into())),
    }
}

fn append_known_host(file: &Path, name: &str, key_type: &str, key: &[u8]) -> io::Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    // a file not ending in a newline would glue our line to its last one
    let needs_newline = std::fs::read(file)
        .map(|d| !d.is_empty() && !d.ends_with(b"\n"))
        .unwrap_or(false);
    let nl = if needs_newline { "\n" } else { "" };
    writeln!(f, "{nl}{name} {key_type} {}", base64(key))?;
    f.sync_all()
}

/// Authenticates as `user`: the configured key, then the agent's keys, then the default key
/// files that exist.
fn authenticate(
    sess: &Session,
    user: &str,
    host: &str,
    config: &Ssh2Config,
) -> Result<(), Ssh2Error> {
    let mut tried = Vec::new();
    let try_file = |path: &Path, tried: &mut Vec<String>| {
        let public = path.with_extension(match path.extension() {
            Some(e) => format!("{}.pub", e.to_string_lossy()),
            None => "pub".into(),
        });
        let public = public.exists().then_some(public);
        let r =
            sess.userauth_pubkey_file(user, public.as_deref(), path, config.passphrase.as_deref());
        match r {
            Ok(()) if sess.authenticated() => true,
            Ok(()) => false,
            Err(e) => {
                tried.push(format!("{} ({})", path.display(), e.message()));
                false
            }
        }
    };
    if let Some(key) = &config.key {
        if try_file(key, &mut tried) {
            return Ok(());
        }
    }
    if config.use_agent {
        match agent_login(sess, user) {
            Ok(true) => return Ok(()),
            Ok(false) => tried.push("agent keys".into()),
            Err(e) => tried.push(format!("agent ({})", e.message())),
        }
    }
    for key in config.default_keys.iter().filter(|k| k.exists()) {
        if try_file(key, &mut tried) {
            return Ok(());
        }
    }
    if tried.is_empty() {
        tried.push("no key file and no agent".into());
    }
    Err(Ssh2Error::Auth {
        user: user.to_string(),
        host: host.to_string(),
        tried: tried.join(", "),
    })
}

fn agent_login(sess: &Session, user: &str) -> Result<bool, ssh2::Error> {
    let mut agent = sess.agent()?;
    agent.connect()?;
    agent.list_identities()?;
    for identity in agent.identities()? {
        if agent.userauth(user, &identity).is_ok() && sess.authenticated() {
            let _ = agent.disconnect();
            return Ok(true);
        }
    }
    let _ = agent.disconnect();
    Ok(false)
}

/// Connects to `host:port`, verifies the host key, logs in as `user` and starts `command` on a
/// session channel. Returns the server's stdout as a reader and its stdin as a writer; its
/// stderr lines go to `log`. Dropping the writer sends EOF and waits until the remote command
/// has closed the channel (as the spawned transport waits for its child).
pub fn open_channel(
    user: Option<&str>,
    host: &str,
    port: Option<u16>,
    command: &str,
    config: &Ssh2Config,
    log: LogSink,
) -> Result<(Ssh2Reader, Ssh2Writer), Ssh2Error> {
    let port = port.unwrap_or(22);
    let user = match user {
        Some(u) => u.to_string(),
        None => local_user().ok_or(Ssh2Error::NoUser)?,
    };
    let addr_text = known_hosts_name(host, port);
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    let mut tcp = None;
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|source| Ssh2Error::Connect {
            addr: addr_text.clone(),
            source,
        })?;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, config.timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let tcp = tcp.ok_or(Ssh2Error::Connect {
        addr: addr_text.clone(),
        source: last,
    })?;
    let _ = tcp.set_nodelay(true);
    let poll_sock = tcp.try_clone()?;

    let mut sess = Session::new().map_err(|source| Ssh2Error::Handshake {
        host: addr_text.clone(),
        source,
    })?;
    sess.set_timeout(u32::try_from(config.timeout.as_millis()).unwrap_or(u32::MAX));
    if let Ok(supported) = sess.supported_algs(MethodType::HostKey) {
        let prefs: Vec<&str> = HOST_KEY_PREFERENCE
            .iter()
            .copied()
            .filter(|a| supported.contains(a))
            .collect();
        if !prefs.is_empty() {
            let _ = sess.method_pref(MethodType::HostKey, &prefs.join(","));
        }
    }
    sess.set_tcp_stream(tcp);
    sess.handshake().map_err(|source| Ssh2Error::Handshake {
        host: addr_text.clone(),
        source,
    })?;
    verify_host_key(&sess, host, port, config)?;
    authenticate(&sess, &user, host, config)?;
    let exec_err = |source| Ssh2Error::Exec {
        command: command.to_string(),
        host: host.to_string(),
        source,
    };
    let mut channel = sess.channel_session().map_err(exec_err)?;
    channel.exec(command).map_err(exec_err)?;
    sess.set_blocking(false);

    let (to_server_tx, to_server_rx) = mpsc::sync_channel(WRITE_QUEUE);
    let (from_server_tx, from_server_rx) = mpsc::sync_channel(READ_QUEUE);
    let (wake_writer, wake_pump) = UnixStream::pair()?;
    wake_writer.set_nonblocking(true)?;
    wake_pump.set_nonblocking(true)?;
    let broken = Arc::new(AtomicBool::new(false));
    let pump = Pump {
        sess,
        channel,
        sock: poll_sock,
        wake: wake_pump,
        to_server: to_server_rx,
        from_server: Some(from_server_tx),
        broken: broken.clone(),
        log,
    };
    let handle = std::thread::Builder::new()
        .name("ssh2-pump".into())
        .spawn(move || pump.run())?;
    Ok((
        Ssh2Reader {
            rx: from_server_rx,
            buf: Vec::new(),
            pos: 0,
        },
        Ssh2Writer {
            tx: Some(to_server_tx),
            wake: wake_writer,
            broken,
            pump: Some(handle),
        },
    ))
}

/// Opens the repository of `cmd` (user, host, port, remote path, serve arguments) over
/// in-process SSH: [`open_channel`] + [`RemoteRepository::connect`].
pub fn connect_repository(
    cmd: &SshCommand,
    config: &Ssh2Config,
    location: &str,
    open: &OpenArgs,
    log: LogSink,
) -> rborg_repository::Result<RemoteRepository> {
    let command = remote_command(cmd);
    let (reader, writer) = open_channel(
        cmd.user.as_deref(),
        &cmd.host,
        cmd.port,
        &command,
        config,
        log,
    )?;
    RemoteRepository::connect(Box::new(reader), Box::new(writer), location, open).map_err(|e| {
        match e {
            rborg_repository::Error::ConnectionClosed(s) if s.is_empty() => {
                rborg_repository::Error::ConnectionClosed(". Is borg working on the server?".into())
            }
            e => e,
        }
    })
}

/// The server's stdout, fed by the pump thread. EOF when the remote side closed its output (or
/// the connection failed).
pub struct Ssh2Reader {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for Ssh2Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(piece) => {
                    self.buf = piece;
                    self.pos = 0;
                }
                Err(mpsc::RecvError) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The server's stdin: queues data for the pump thread. Dropping it sends EOF to the remote
/// command and waits for the pump to finish (the remote command has exited then).
pub struct Ssh2Writer {
    tx: Option<mpsc::SyncSender<Vec<u8>>>,
    wake: UnixStream,
    broken: Arc<AtomicBool>,
    pump: Option<JoinHandle<()>>,
}

impl Ssh2Writer {
    fn poke(&self) {
        // a full wake-up socket already has the pump's attention
        let _ = (&self.wake).write(&[1]);
    }
}

impl Write for Ssh2Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let closed = || io::Error::new(io::ErrorKind::BrokenPipe, "ssh2 channel closed");
        if self.broken.load(Ordering::Acquire) {
            return Err(closed());
        }
        let n = data.len().min(WRITE_PIECE);
        let tx = self.tx.as_ref().ok_or_else(closed)?;
        tx.send(data[..n].to_vec()).map_err(|_| closed())?;
        self.poke();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // the pump sends queued data as soon as the channel takes it
        Ok(())
    }
}

impl Drop for Ssh2Writer {
    fn drop(&mut self) {
        self.tx = None;
        self.poke();
        if let Some(pump) = self.pump.take() {
            let _ = pump.join();
        }
    }
}

/// The I/O pump: the only user of the libssh2 session once the command runs.
struct Pump {
    sess: Session,
    channel: ssh2::Channel,
    sock: TcpStream,
    wake: UnixStream,
    to_server: mpsc::Receiver<Vec<u8>>,
    from_server: Option<mpsc::SyncSender<Vec<u8>>>,
    broken: Arc<AtomicBool>,
    log: LogSink,
}

/// Whether an I/O result means "try again later".
fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Pump {
    fn run(mut self) {
        if let Err(e) = self.pump() {
            (self.log)(RemoteLog::Message {
                level: Level::Error,
                name: "rborg.ssh2".into(),
                message: format!("ssh2 connection failed: {e}"),
            });
        }
        self.broken.store(true, Ordering::Release);
        self.from_server = None;
        self.finish();
    }

    /// Moves bytes until the remote command has sent EOF and we have sent ours.
    fn pump(&mut self) -> io::Result<()> {
        // stream 0 carries the server's stdout in and our requests (its stdin) out
        let mut data = self.channel.stream(0);
        let mut stderr = self.channel.stderr();
        let mut chunk = vec![0u8; 1 << 16];
        let mut line: Vec<u8> = Vec::new();
        let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
        let mut offset = 0usize;
        let mut writer_gone = false;
        let mut eof_sent = false;
        let mut remote_eof = false;
        loop {
            let mut progress = false;
            // 1. the server's stdout, then its stderr
            loop {
                match data.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        progress = true;
                        if let Some(tx) = &self.from_server {
                            if tx.send(chunk[..n].to_vec()).is_err() {
                                // the client stopped reading; keep draining for the server
                                self.from_server = None;
                            }
                        }
                    }
                    Err(e) if would_block(&e) => break,
                    Err(e) => return Err(e),
                }
            }
            loop {
                match stderr.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        progress = true;
                        self.relay_stderr(&mut line, &chunk[..n]);
                    }
                    Err(e) if would_block(&e) => break,
                    Err(e) => return Err(e),
                }
            }
            if !remote_eof && self.channel.eof() {
                remote_eof = true;
                progress = true;
                if !line.is_empty() {
                    self.relay_stderr(&mut line, b"\n");
                }
                // the reader sees EOF; later writes fail like writes to a dead child's pipe
                self.from_server = None;
                self.broken.store(true, Ordering::Release);
            }
            // 2. the client's requests
            if pending.is_empty() && !writer_gone {
                loop {
                    match self.to_server.try_recv() {
                        Ok(piece) => pending.push_back(piece),
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            writer_gone = true;
                            break;
                        }
                    }
                    if pending.len() >= WRITE_QUEUE {
                        break;
                    }
                }
            }
            if remote_eof {
                pending.clear();
            }
            while let Some(front) = pending.front() {
                match data.write(&front[offset..]) {
                    Ok(0) => break,
                    Ok(n) => {
                        progress = true;
                        offset += n;
                        if offset == front.len() {
                            pending.pop_front();
                            offset = 0;
                        }
                    }
                    Err(e) if would_block(&e) => break,
                    Err(e) => return Err(e),
                }
            }
            if writer_gone && pending.is_empty() && !eof_sent && !remote_eof {
                match self.channel.send_eof() {
                    Ok(()) => {
                        eof_sent = true;
                        progress = true;
                    }
                    Err(e) => {
                        let e = io::Error::from(e);
                        if !would_block(&e) {
                            return Err(e);
                        }
                    }
                }
            }
            if remote_eof && (eof_sent || writer_gone) {
                return Ok(());
            }
            if !progress {
                // after the remote EOF only the writer's going away matters (a closed socket
                // would always poll readable)
                self.wait(!remote_eof);
            }
        }
    }

    /// Splits stderr into lines and relays them like the spawned transport's stderr thread.
    fn relay_stderr(&self, line: &mut Vec<u8>, data: &[u8]) {
        for &b in data {
            if b == b'\n' || line.len() >= MAX_LINE {
                if let Some(msg) = parse_remote_line(&String::from_utf8_lossy(line)) {
                    (self.log)(msg);
                }
                line.clear();
                if b == b'\n' {
                    continue;
                }
            }
            line.push(b);
        }
    }

    /// Sleeps until the socket is ready in the direction libssh2 waits for (if `socket`), or
    /// the writer queued data or went away (the wake-up socket); at most 50 ms as a safety net.
    fn wait(&mut self, socket: bool) {
        let mut sock_flags = PollFlags::POLLIN;
        if matches!(
            self.sess.block_directions(),
            BlockDirections::Outbound | BlockDirections::Both
        ) {
            sock_flags |= PollFlags::POLLOUT;
        }
        let mut fds = vec![PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
        if socket {
            fds.push(PollFd::new(self.sock.as_fd(), sock_flags));
        }
        let _ = poll(&mut fds, 50u16);
        let mut sink = [0u8; 256];
        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
    }

    /// Closes the channel and the session in blocking mode (with a timeout).
    fn finish(&mut self) {
        self.sess.set_timeout(10_000);
        self.sess.set_blocking(true);
        let _ = self.channel.close();
        let _ = self.channel.wait_close();
        if let Ok(status) = self.channel.exit_status() {
            if status != 0 {
                (self.log)(RemoteLog::Message {
                    level: Level::Debug,
                    name: "rborg.ssh2".into(),
                    message: format!("ssh2: the remote command exited with status {status}"),
                });
            }
        }
        let _ = self
            .sess
            .disconnect(Some(ssh2::DisconnectCode::ByApplication), "done", None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_command_joins_like_ssh() {
        let cmd = SshCommand {
            remote_path: Some("sudo -u borg borg".into()),
            host: "h".into(),
            serve_args: vec!["--info".into(), "--storage-quota=5".into()],
            ..SshCommand::default()
        };
        assert_eq!(
            remote_command(&cmd),
            "sudo -u borg borg serve --info --storage-quota=5"
        );
        let plain = SshCommand {
            host: "h".into(),
            ..SshCommand::default()
        };
        assert_eq!(remote_command(&plain), "borg serve");
    }

    #[test]
    fn known_hosts_names_follow_openssh() {
        assert_eq!(known_hosts_name("example.org", 22), "example.org");
        assert_eq!(known_hosts_name("127.0.0.1", 2222), "[127.0.0.1]:2222");
        assert_eq!(known_hosts_name("::1", 2200), "[::1]:2200");
    }

    #[test]
    fn key_type_name_reads_the_blob_prefix() {
        let mut blob = 11u32.to_be_bytes().to_vec();
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&[0, 0, 0, 32]);
        assert_eq!(key_type_name(&blob), Some("ssh-ed25519"));
        assert_eq!(key_type_name(&[0, 0, 0, 200, b'x']), None);
        assert_eq!(key_type_name(&[0, 0]), None);
    }

    fn test_config(dir: &Path) -> Ssh2Config {
        Ssh2Config {
            key: None,
            default_keys: Vec::new(),
            passphrase: None,
            use_agent: false,
            known_hosts: dir.join("known_hosts"),
            accept_new: false,
            timeout: Duration::from_secs(5),
        }
    }

    fn no_log() -> LogSink {
        Arc::new(|_| {})
    }

    #[test]
    fn a_closed_port_is_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = open_channel(
            Some("u"),
            "127.0.0.1",
            Some(port),
            "borg serve",
            &test_config(dir.path()),
            no_log(),
        )
        .err()
        .expect("nothing listens there");
        assert!(matches!(err, Ssh2Error::Connect { .. }), "{err}");
        assert!(err.to_string().contains(&format!("[127.0.0.1]:{port}")));
    }

    #[test]
    fn a_server_that_is_not_ssh_is_a_handshake_error() {
        let dir = tempfile::tempdir().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        });
        let err = open_channel(
            None,
            "127.0.0.1",
            Some(port),
            "borg serve",
            &test_config(dir.path()),
            no_log(),
        )
        .err()
        .expect("not an SSH server");
        server.join().unwrap();
        assert!(matches!(err, Ssh2Error::Handshake { .. }), "{err}");
        // and as the repository error the CLI prints
        let repo_err = rborg_repository::Error::from(err);
        assert!(repo_err.to_string().starts_with("ssh2: SSH handshake"));
    }

    #[test]
    fn accepted_hosts_are_appended_as_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/known_hosts");
        append_known_host(&file, "[h]:2222", "ssh-ed25519", b"key1").unwrap();
        std::fs::write(
            &file,
            std::fs::read_to_string(&file)
                .unwrap()
                .trim_end_matches('\n'),
        )
        .unwrap();
        append_known_host(&file, "h2", "ssh-rsa", b"key2").unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = format!(
            "[h]:2222 ssh-ed25519 {}\nh2 ssh-rsa {}\n",
            base64(b"key1"),
            base64(b"key2")
        );
        assert_eq!(text, expected);
    }
}
