//! The client side of borg 1.2's RPC (`RemoteRepository` in `borg/remote.py`).
//!
//! A [`RemoteRepository`] talks to `borg serve` over any byte stream pair (usually the pipes of
//! an `ssh host borg serve` child process). A reader thread decodes the server's msgpack replies
//! and hands them over a channel, so that the client can keep writing requests while replies
//! come in: `get_many` keeps up to [`MAX_INFLIGHT`] requests in flight, and `put` is sent
//! without waiting (borg's `wait=False`); its errors surface at the next synchronous call.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rborg_repository::{Error, ObjectId, Repository, Result};

use crate::msgpack::{self, Value, CLIENT_LIMITS};
use crate::{Level, BORG_VERSION};

/// How many requests may await their reply (borg's `MAX_INFLIGHT`).
pub const MAX_INFLIGHT: usize = 100;

/// A log line relayed from the server's stderr (`handle_remote_line`).
#[derive(Clone, Debug, PartialEq)]
pub enum RemoteLog {
    /// A log record (`type: log_message`), message already prefixed with `"Remote: "`.
    Message {
        /// The remote record's level.
        level: Level,
        /// The remote logger name.
        name: String,
        /// `"Remote: " + message`.
        message: String,
    },
    /// A progress line (`progress_message`/`progress_percent`), prefixed with `"Remote: "`.
    Progress(String),
    /// Anything else the server printed, as `"Remote: " + line`.
    Plain(String),
}

/// Receives the server's log lines.
pub type LogSink = Arc<dyn Fn(RemoteLog) + Send + Sync>;

/// Parses one stderr line of `borg serve` the way borg's `handle_remote_line` does.
pub fn parse_remote_line(line: &str) -> Option<RemoteLog> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.starts_with('{') {
        let msg: serde_json::Value = serde_json::from_str(line).ok()?;
        let kind = msg.get("type")?.as_str()?;
        let text = msg.get("message").and_then(|m| m.as_str());
        match kind {
            "log_message" => Some(RemoteLog::Message {
                level: msg
                    .get("levelname")
                    .and_then(|l| l.as_str())
                    .map_or(Level::Critical, Level::from_name),
                name: msg
                    .get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or("borg")
                    .to_string(),
                message: format!("Remote: {}", text.unwrap_or("")),
            }),
            "progress_message" | "progress_percent" => {
                text.map(|t| RemoteLog::Progress(format!("Remote: {t}")))
            }
            _ => Some(RemoteLog::Message {
                level: Level::Warning,
                name: "borg.remote".into(),
                message: format!("Dropped remote log message with unknown type {kind:?}: {line}"),
            }),
        }
    } else if let Some(rest) = line.strip_prefix("$LOG ") {
        let (level, msg) = rest.split_once(' ')?;
        let (name, msg) = if msg.starts_with("Remote:") {
            ("borg", msg.to_string())
        } else {
            let (n, m) = msg.split_once(' ')?;
            (n, m.to_string())
        };
        Some(RemoteLog::Message {
            level: Level::from_name(level),
            name: name.to_string(),
            message: msg,
        })
    } else {
        Some(RemoteLog::Plain(format!("Remote: {line}")))
    }
}

/// How to reach `borg serve` over ssh (borg's `ssh_cmd` + `borg_cmd`).
#[derive(Clone, Debug, Default)]
pub struct SshCommand {
    /// `--rsh` / `BORG_RSH` (default `ssh`), split like a shell would.
    pub rsh: Option<String>,
    /// `--remote-path` / `BORG_REMOTE_PATH` (default `borg`).
    pub remote_path: Option<String>,
    /// `user` of the location.
    pub user: Option<String>,
    /// `host` of the location.
    pub host: String,
    /// `port` of the location.
    pub port: Option<u16>,
    /// Options for `borg serve` (`--debug`, `--info`, `--umask=..`, `--storage-quota=..`, ...).
    pub serve_args: Vec<String>,
}

impl SshCommand {
    /// The argument vector: `RSH... [-p PORT] [USER@]HOST REMOTE_PATH serve OPTS...`.
    pub fn argv(&self) -> Vec<String> {
        let rsh = self.rsh.as_deref().unwrap_or("ssh");
        let mut args = shell_split(rsh);
        if let Some(p) = self.port {
            args.push("-p".into());
            args.push(p.to_string());
        }
        match &self.user {
            Some(u) => args.push(format!("{u}@{}", self.host)),
            None => args.push(self.host.clone()),
        }
        args.push(self.remote_path.clone().unwrap_or_else(|| "borg".into()));
        args.push("serve".into());
        args.extend(self.serve_args.iter().cloned());
        args
    }
}

/// Splits a command line like Python's `shlex.split` (quotes and backslashes, no expansion).
pub fn shell_split(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                has = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                has = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                if !matches!(n, '"' | '\\' | '$' | '`') {
                                    cur.push('\\');
                                }
                                cur.push(n);
                            }
                        }
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                has = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                has = true;
                cur.push(c);
            }
        }
    }
    if has {
        out.push(cur);
    }
    out
}

/// Arguments of the `open` call (borg's `RemoteRepository.__init__` parameters).
#[derive(Clone, Debug)]
pub struct OpenArgs {
    /// The repository path as the location has it (the server resolves `~` and `/./`).
    pub path: String,
    /// Create the repository (`borg init`).
    pub create: bool,
    /// `--lock-wait` in seconds.
    pub lock_wait: Option<f64>,
    /// Whether to lock at all.
    pub lock: bool,
    /// Exclusive lock (`None`: the server decides on first write).
    pub exclusive: Option<bool>,
    /// Make the new repository append-only (`borg init --append-only`).
    pub append_only: bool,
    /// Create missing parent directories (`borg init --make-parent-dirs`).
    pub make_parent_dirs: bool,
}

impl OpenArgs {
    /// Defaults for opening `path` (locked, shared).
    pub fn new(path: &str) -> Self {
        OpenArgs {
            path: path.to_string(),
            create: false,
            lock_wait: None,
            lock: true,
            exclusive: Some(false),
            append_only: false,
            make_parent_dirs: false,
        }
    }
}

/// A writer that sleeps to keep the average rate at `rate` bytes per second.
struct RateLimited {
    inner: Box<dyn Write + Send>,
    rate: u64,
    start: std::time::Instant,
    sent: u64,
}

impl Write for RateLimited {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // at most a tenth of a second's worth at a time, so the pauses stay short
        let chunk = buf.len().min((self.rate / 10).max(1) as usize);
        let n = self.inner.write(&buf[..chunk])?;
        self.sent += n as u64;
        let due = Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
        if let Some(wait) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(wait);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

enum Incoming {
    Msg(Value),
    Closed,
    Bad(String),
}

/// A repository served by `borg serve` (borg's `RemoteRepository`).
pub struct RemoteRepository {
    writer: Option<Box<dyn Write + Send>>,
    incoming: mpsc::Receiver<Incoming>,
    child: Option<Child>,
    threads: Vec<JoinHandle<()>>,
    msgid: u64,
    id: ObjectId,
    /// The location as the user typed it (`location.processed`), for error messages.
    location: String,
    dict_format: bool,
    server_version: Vec<i128>,
    replies: HashMap<u64, Value>,
    /// Requests sent with `wait=False` whose replies are not in yet.
    async_ids: VecDeque<u64>,
    async_set: HashSet<u64>,
    failed: Option<Error>,
    closed: bool,
    /// Reads announced by [`Repository::preload`], in announcement order; the first
    /// `preloads_sent` of them have been sent (their msgid is set).
    preloads: VecDeque<Preload>,
    preloads_sent: usize,
    /// msgids of sent preloads that were dropped: their replies are discarded on arrival.
    ignored: HashSet<u64>,
}

/// One announced read (borg's `to_send` entries of a preloaded `call_many`).
struct Preload {
    id: ObjectId,
    msgid: Option<u64>,
}

/// How far down the announced reads a `get` looks for its id before treating it as a read
/// that was never announced (a bound on the search, not on the announcements).
const PRELOAD_SEARCH: usize = 4096;

fn reader_thread(mut reader: Box<dyn Read + Send>, tx: mpsc::Sender<Incoming>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) | Err(_) => {
                let _ = tx.send(Incoming::Closed);
                return;
            }
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        loop {
            match msgpack::decode(&buf[used..], &CLIENT_LIMITS) {
                Ok(Some((v, n))) => {
                    used += n;
                    if tx.send(Incoming::Msg(v)).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Incoming::Bad(e.to_string()));
                    return;
                }
            }
        }
        buf.drain(..used);
        if buf.len() > msgpack::MAX_BUFFER {
            let _ = tx.send(Incoming::Bad("reply exceeds the buffer limit".into()));
            return;
        }
    }
}

fn stderr_thread(stderr: impl Read, sink: LogSink) {
    let mut r = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        // bounded line length: a hostile server cannot make us buffer without end
        match r.by_ref().take(1 << 20).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if let Some(msg) = parse_remote_line(&String::from_utf8_lossy(&line)) {
                    sink(msg);
                }
            }
        }
    }
}

fn bytes_arg(v: &Value) -> String {
    v.as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_else(|| "(not available)".into())
}

fn id_from(v: &Value) -> Result<ObjectId> {
    v.as_bytes()
        .and_then(|b| <ObjectId>::try_from(b).ok())
        .ok_or_else(|| Error::UnexpectedRpcData(format!("expected a 32 byte id, got {v:?}")))
}

fn opt_int(v: Option<u64>) -> Value {
    v.map_or(Value::Nil, |n| Value::Int(i128::from(n)))
}

impl RemoteRepository {
    /// Starts `cmd` (e.g. `ssh host borg serve`) and opens the repository through it.
    /// `location` is the location text used in error messages.
    pub fn spawn(
        argv: &[String],
        location: &str,
        open: &OpenArgs,
        log: LogSink,
    ) -> Result<RemoteRepository> {
        let (prog, rest) = argv
            .split_first()
            .ok_or_else(|| Error::InvalidArgument("empty remote shell command".into()))?;
        let mut child = Command::new(prog)
            .args(rest)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Error::ConnectionClosed(
                ": no pipes to the remote shell".into(),
            ));
        };
        let err_thread = std::thread::spawn(move || stderr_thread(stderr, log));
        let mut repo = Self::start(Box::new(stdout), Box::new(stdin), location);
        repo.threads.push(err_thread);
        repo.child = Some(child);
        match repo.handshake(open) {
            Ok(()) => Ok(repo),
            Err(e) => {
                repo.shutdown();
                Err(match e {
                    Error::ConnectionClosed(s) if s.is_empty() => {
                        Error::ConnectionClosed(". Is borg working on the server?".into())
                    }
                    e => e,
                })
            }
        }
    }

    /// Opens the repository over an established byte stream pair (`reader` carries the
    /// server's replies, `writer` our requests); log lines are not relayed in this mode.
    /// Dropping `writer` must signal end of input to the server (for a socket, shut down its
    /// write side on drop).
    pub fn connect(
        reader: Box<dyn Read + Send>,
        writer: Box<dyn Write + Send>,
        location: &str,
        open: &OpenArgs,
    ) -> Result<RemoteRepository> {
        let mut repo = Self::start(reader, writer, location);
        match repo.handshake(open) {
            Ok(()) => Ok(repo),
            Err(e) => {
                repo.shutdown();
                Err(e)
            }
        }
    }

    fn start(
        reader: Box<dyn Read + Send>,
        writer: Box<dyn Write + Send>,
        location: &str,
    ) -> RemoteRepository {
        let (tx, rx) = mpsc::channel();
        let t = std::thread::spawn(move || reader_thread(reader, tx));
        RemoteRepository {
            writer: Some(writer),
            incoming: rx,
            child: None,
            threads: vec![t],
            msgid: 0,
            id: [0; 32],
            location: location.to_string(),
            dict_format: true,
            server_version: vec![1, 0, 8],
            replies: HashMap::new(),
            async_ids: VecDeque::new(),
            async_set: HashSet::new(),
            failed: None,
            closed: false,
            preloads: VecDeque::new(),
            preloads_sent: 0,
            ignored: HashSet::new(),
        }
    }

    fn handshake(&mut self, open: &OpenArgs) -> Result<()> {
        let client_data = Value::map(vec![(
            "client_version",
            Value::Array(BORG_VERSION.iter().map(|v| Value::Int(*v)).collect()),
        )]);
        let version = self.call("negotiate", vec![("client_data", client_data)])?;
        if version == Value::Int(2) {
            self.dict_format = false;
        } else if let Some(Value::Array(v)) = version.get("server_version") {
            self.server_version = v.iter().filter_map(Value::as_int).collect();
        } else {
            return Err(Error::UnexpectedRpcData(format!(
                "Server insisted on using unsupported protocol version {version:?}"
            )));
        }
        let res = self.call(
            "open",
            vec![
                ("path", Value::bytes(open.path.as_str())),
                ("create", Value::Bool(open.create)),
                ("lock_wait", open.lock_wait.map_or(Value::Nil, Value::Float)),
                ("lock", Value::Bool(open.lock)),
                ("exclusive", open.exclusive.map_or(Value::Nil, Value::Bool)),
                ("append_only", Value::Bool(open.append_only)),
                ("make_parent_dirs", Value::Bool(open.make_parent_dirs)),
            ],
        )?;
        self.id = id_from(&res)?;
        Ok(())
    }

    /// Limits what we send to `bytes_per_second` from now on (`--upload-ratelimit`, borg's
    /// `SleepingBandwidthLimiter`).
    pub fn set_upload_ratelimit(&mut self, bytes_per_second: u64) {
        if bytes_per_second == 0 {
            return;
        }
        if let Some(inner) = self.writer.take() {
            self.writer = Some(Box::new(RateLimited {
                inner,
                rate: bytes_per_second,
                start: std::time::Instant::now(),
                sent: 0,
            }));
        }
    }

    /// The server's borg version (`negotiate`), e.g. `[1, 2, 4]`.
    pub fn server_version(&self) -> &[i128] {
        &self.server_version
    }

    fn send(&mut self, method: &str, args: Vec<(&str, Value)>) -> Result<u64> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.msgid += 1;
        let msg = if self.dict_format {
            Value::map(vec![
                ("i", Value::Int(i128::from(self.msgid))),
                ("m", Value::bytes(method)),
                ("a", Value::map(args)),
            ])
        } else {
            Value::Array(vec![
                Value::Int(1),
                Value::Int(i128::from(self.msgid)),
                Value::bytes(method),
                Value::Array(args.into_iter().map(|(_, v)| v).collect()),
            ])
        };
        let bytes = msgpack::to_vec(&msg);
        let w = self.writer.as_mut().ok_or(Error::Closed)?;
        if w.write_all(&bytes).and_then(|_| w.flush()).is_err() {
            return Err(Error::ConnectionClosed(String::new()));
        }
        Ok(self.msgid)
    }

    /// Waits for the reply to `msgid` (replies to other requests are kept for later).
    fn wait(&mut self, msgid: u64) -> Result<Value> {
        loop {
            if let Some(v) = self.replies.remove(&msgid) {
                return self.reply_result(v);
            }
            match self.incoming.recv_timeout(Duration::from_secs(3600)) {
                Ok(Incoming::Msg(v)) => {
                    let (id, reply) = self.normalize(v)?;
                    if self.ignored.remove(&id) {
                        continue;
                    }
                    if self.async_set.remove(&id) {
                        self.async_ids.retain(|i| *i != id);
                        if let Err(e) = self.reply_result(reply) {
                            if self.failed.is_none() {
                                self.failed = Some(e);
                            }
                        }
                    } else {
                        self.replies.insert(id, reply);
                    }
                }
                Ok(Incoming::Closed) | Err(_) => {
                    return Err(Error::ConnectionClosed(String::new()));
                }
                Ok(Incoming::Bad(m)) => return Err(Error::UnexpectedRpcData(m)),
            }
        }
    }

    /// Turns a dict or legacy tuple reply into `(msgid, dict)`.
    fn normalize(&self, v: Value) -> Result<(u64, Value)> {
        match v {
            Value::Map(_) => {
                let id = v
                    .get("i")
                    .and_then(Value::as_int)
                    .and_then(|i| u64::try_from(i).ok())
                    .ok_or_else(|| Error::UnexpectedRpcData("reply without msgid".into()))?;
                Ok((id, v))
            }
            Value::Array(mut t) if t.len() == 4 => {
                let res = t.pop().unwrap_or(Value::Nil);
                let err = t.pop().unwrap_or(Value::Nil);
                let id = t[1]
                    .as_int()
                    .and_then(|i| u64::try_from(i).ok())
                    .ok_or_else(|| Error::UnexpectedRpcData("reply without msgid".into()))?;
                let dict = if err.truthy() {
                    Value::map(vec![("exception_class", err)])
                } else {
                    Value::map(vec![("r", res)])
                };
                Ok((id, dict))
            }
            other => Err(Error::UnexpectedRpcData(format!("{other:?}"))),
        }
    }

    fn reply_result(&self, reply: Value) -> Result<Value> {
        let Some(class) = reply.get("exception_class") else {
            return Ok(reply.get("r").cloned().unwrap_or(Value::Nil));
        };
        let class = bytes_arg(class);
        let args: Vec<String> = match reply.get("exception_args") {
            Some(Value::Array(a)) => a.iter().map(bytes_arg).collect(),
            _ => Vec::new(),
        };
        let arg0 = args
            .first()
            .cloned()
            .unwrap_or_else(|| "(not available)".into());
        let loc = self.location.clone();
        use rborg_repository::lock::LockError;
        Err(match class.as_str() {
            "DoesNotExist" => Error::DoesNotExist(loc),
            "AlreadyExists" => Error::AlreadyExists(loc),
            "CheckNeeded" => Error::CheckNeeded(loc),
            "IntegrityError" => Error::RemoteIntegrity(arg0),
            "AtticRepository" => Error::AtticRepository(arg0),
            "PathNotAllowed" => Error::PathNotAllowed(arg0),
            "ParentPathDoesNotExist" => Error::ParentPathDoesNotExist(arg0),
            "ObjectNotFound" => Error::ObjectNotFound {
                id: arg0,
                repo: loc,
            },
            "InvalidRPCMethod" => Error::InvalidRpcMethod(arg0),
            "InvalidRepository" => Error::InvalidRepository(arg0),
            "InsufficientFreeSpaceError" if args.len() == 2 => Error::InsufficientFreeSpace {
                required: args[0].clone(),
                available: args[1].clone(),
            },
            "StorageQuotaExceeded" if args.len() == 2 => Error::StorageQuotaExceeded {
                quota: args[0].clone(),
                used: args[1].clone(),
            },
            "LockTimeout" => Error::Lock(LockError::Timeout(arg0)),
            "LockFailed" => Error::Lock(LockError::Failed(
                arg0,
                args.get(1).cloned().unwrap_or_default(),
            )),
            _ => {
                let message = match reply.get("exception_short") {
                    Some(Value::Array(lines)) => lines
                        .iter()
                        .map(bytes_arg)
                        .collect::<Vec<_>>()
                        .join("\n")
                        .trim_end()
                        .to_string(),
                    _ => class.clone(),
                };
                Error::Remote { class, message }
            }
        })
    }

    /// Waits for all replies of requests sent without waiting; returns their first error.
    fn drain_async(&mut self) -> Result<()> {
        while let Some(&id) = self.async_ids.front() {
            self.async_ids.pop_front();
            self.async_set.remove(&id);
            let r = self.wait(id);
            if let Err(e) = r {
                if self.failed.is_none() {
                    self.failed = Some(e);
                }
            }
        }
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// One synchronous call (not a read: outstanding preloads are dropped first).
    fn call(&mut self, method: &str, args: Vec<(&str, Value)>) -> Result<Value> {
        self.forget_preloads();
        self.drain_async()?;
        let id = self.send(method, args)?;
        self.wait(id)
    }

    /// A call whose reply is collected later (borg's `wait=False`).
    fn call_async(&mut self, method: &str, args: Vec<(&str, Value)>) -> Result<()> {
        self.forget_preloads();
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        while self.async_ids.len() >= MAX_INFLIGHT {
            if let Some(id) = self.async_ids.pop_front() {
                self.async_set.remove(&id);
                self.wait(id)?;
            }
        }
        let id = self.send(method, args)?;
        self.async_ids.push_back(id);
        self.async_set.insert(id);
        Ok(())
    }

    /// Sends announced reads until `MAX_INFLIGHT` of them are sent and not yet taken (so at
    /// most that many replies wait in memory).
    fn send_preloads(&mut self) -> Result<()> {
        while self.preloads_sent < self.preloads.len().min(MAX_INFLIGHT) {
            let id = self.preloads[self.preloads_sent].id;
            let msgid = self.send("get", vec![("id", Value::bytes(id.to_vec()))])?;
            self.preloads[self.preloads_sent].msgid = Some(msgid);
            self.preloads_sent += 1;
        }
        Ok(())
    }

    /// Drops the front announcement; a reply to it is discarded whenever it comes.
    fn drop_front_preload(&mut self) {
        if let Some(p) = self.preloads.pop_front() {
            if let Some(msgid) = p.msgid {
                self.preloads_sent -= 1;
                if self.replies.remove(&msgid).is_none() {
                    self.ignored.insert(msgid);
                }
            }
        }
    }

    fn forget_preloads(&mut self) {
        while !self.preloads.is_empty() {
            self.drop_front_preload();
        }
    }

    /// The reply to an announced read of `id` (`None` if `id` was not announced):
    /// announcements before it are dropped, and the window is topped up before waiting so
    /// the server keeps working while we wait.
    fn take_preloaded(&mut self, id: &ObjectId) -> Result<Option<Value>> {
        let Some(pos) = self
            .preloads
            .iter()
            .take(PRELOAD_SEARCH)
            .position(|p| p.id == *id)
        else {
            return Ok(None);
        };
        for _ in 0..pos {
            self.drop_front_preload();
        }
        let Some(p) = self.preloads.pop_front() else {
            return Ok(None);
        };
        let msgid = match p.msgid {
            Some(msgid) => {
                self.preloads_sent -= 1;
                msgid
            }
            None => self.send("get", vec![("id", Value::bytes(id.to_vec()))])?,
        };
        self.send_preloads()?;
        self.wait(msgid).map(Some)
    }

    /// `commit` with all of borg 1.2's parameters (`cleanup_commits` is `borg compact
    /// --cleanup-commits`).
    pub fn commit_with_cleanup(
        &mut self,
        compact: bool,
        threshold: f64,
        cleanup_commits: bool,
    ) -> Result<()> {
        self.call(
            "commit",
            vec![
                ("save_space", Value::Bool(false)),
                ("compact", Value::Bool(compact)),
                ("threshold", Value::Float(threshold)),
                ("cleanup_commits", Value::Bool(cleanup_commits)),
            ],
        )?;
        Ok(())
    }

    /// `check` with `max_duration` (partial checks, `borg check --max-duration`).
    pub fn check_with_duration(
        &mut self,
        repair: bool,
        save_space: bool,
        max_duration: u64,
    ) -> Result<bool> {
        let v = self.call(
            "check",
            vec![
                ("repair", Value::Bool(repair)),
                ("save_space", Value::Bool(save_space)),
                ("max_duration", Value::Int(i128::from(max_duration))),
            ],
        )?;
        Ok(v.truthy())
    }

    /// Closes the connection: ends the server (EOF on its stdin) and waits for it.
    pub fn close(&mut self) -> Result<()> {
        let r = if self.closed {
            Ok(())
        } else {
            self.drain_async()
        };
        self.shutdown();
        r
    }

    fn shutdown(&mut self) {
        self.closed = true;
        self.writer = None; // EOF for the server
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
            // the child is gone, so its pipes are at EOF and the threads end
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
        // over a plain stream pair the reader thread ends when the peer closes its side;
        // it is detached rather than joined, so a peer that never closes cannot hang us
    }

    fn list_like(
        &mut self,
        method: &str,
        limit: Option<usize>,
        marker: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>> {
        let v = self.call(
            method,
            vec![
                ("limit", opt_int(limit.map(|l| l as u64))),
                (
                    "marker",
                    marker.map_or(Value::Nil, |m| Value::bytes(m.to_vec())),
                ),
            ],
        )?;
        match v {
            Value::Array(items) => items.iter().map(id_from).collect(),
            other => Err(Error::UnexpectedRpcData(format!(
                "{method} returned {other:?}"
            ))),
        }
    }
}

impl Drop for RemoteRepository {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Repository for RemoteRepository {
    fn id(&self) -> ObjectId {
        self.id
    }

    fn len(&mut self) -> Result<usize> {
        let v = self.call("__len__", vec![])?;
        v.as_int()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| Error::UnexpectedRpcData(format!("__len__ returned {v:?}")))
    }

    fn contains(&mut self, id: &ObjectId) -> Result<bool> {
        // borg 1.2's server has no __contains__; a get tells the same
        match self.get(id) {
            Ok(_) => Ok(true),
            Err(Error::ObjectNotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn get(&mut self, id: &ObjectId) -> Result<Vec<u8>> {
        self.drain_async()?;
        let v = match self.take_preloaded(id)? {
            Some(v) => v,
            None => {
                let msgid = self.send("get", vec![("id", Value::bytes(id.to_vec()))])?;
                self.wait(msgid)?
            }
        };
        match v {
            Value::Bytes(b) => Ok(b),
            other => Err(Error::UnexpectedRpcData(format!("get returned {other:?}"))),
        }
    }

    fn get_many(&mut self, ids: &[ObjectId]) -> Result<Vec<Vec<u8>>> {
        self.drain_async()?;
        if !self.preloads.is_empty() {
            // reads that were announced: the window is already in flight
            return ids.iter().map(|id| self.get(id)).collect();
        }
        let mut out = Vec::with_capacity(ids.len());
        let mut inflight = VecDeque::new();
        let mut next = 0;
        while out.len() < ids.len() {
            while next < ids.len() && inflight.len() < MAX_INFLIGHT {
                inflight
                    .push_back(self.send("get", vec![("id", Value::bytes(ids[next].to_vec()))])?);
                next += 1;
            }
            let Some(id) = inflight.pop_front() else {
                break;
            };
            match self.wait(id) {
                Ok(Value::Bytes(b)) => out.push(b),
                Ok(other) => {
                    return Err(Error::UnexpectedRpcData(format!("get returned {other:?}")))
                }
                Err(e) => {
                    // collect the outstanding replies so that later calls stay in sync
                    for id in inflight {
                        let _ = self.wait(id);
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    fn preload(&mut self, ids: &[ObjectId]) -> Result<()> {
        self.preloads
            .extend(ids.iter().map(|&id| Preload { id, msgid: None }));
        self.send_preloads()
    }

    fn put(&mut self, id: &ObjectId, data: &[u8]) -> Result<()> {
        self.call_async(
            "put",
            vec![
                ("id", Value::bytes(id.to_vec())),
                ("data", Value::bytes(data.to_vec())),
            ],
        )
    }

    fn delete(&mut self, id: &ObjectId) -> Result<()> {
        // synchronous like borg's default `delete(wait=True)`: callers act on ObjectNotFound
        self.call("delete", vec![("id", Value::bytes(id.to_vec()))])?;
        Ok(())
    }

    fn commit(&mut self, compact: bool, threshold: f64) -> Result<()> {
        self.commit_with_cleanup(compact, threshold, false)
    }

    fn rollback(&mut self) -> Result<()> {
        self.call("rollback", vec![])?;
        Ok(())
    }

    fn list(&mut self, limit: Option<usize>, marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
        self.list_like("list", limit, marker)
    }

    fn scan(&mut self, limit: Option<usize>, marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
        self.list_like("scan", limit, marker)
    }

    fn check(&mut self, repair: bool, save_space: bool) -> Result<bool> {
        self.check_with_duration(repair, save_space, 0)
    }

    fn destroy(&mut self) -> Result<()> {
        self.call("destroy", vec![])?;
        Ok(())
    }

    fn save_key(&mut self, keydata: &[u8]) -> Result<()> {
        self.call(
            "save_key",
            vec![("keydata", Value::bytes(keydata.to_vec()))],
        )?;
        Ok(())
    }

    fn load_key(&mut self) -> Result<Vec<u8>> {
        match self.call("load_key", vec![])? {
            Value::Bytes(b) => Ok(b),
            Value::Nil => Ok(Vec::new()),
            other => Err(Error::UnexpectedRpcData(format!(
                "load_key returned {other:?}"
            ))),
        }
    }

    fn break_lock(&mut self) -> Result<()> {
        self.call("break_lock", vec![])?;
        Ok(())
    }

    fn get_free_nonce(&mut self) -> Result<Option<u64>> {
        match self.call("get_free_nonce", vec![])? {
            Value::Nil => Ok(None),
            Value::Int(n) => u64::try_from(n)
                .map(Some)
                .map_err(|_| Error::UnexpectedRpcData(format!("nonce {n}"))),
            other => Err(Error::UnexpectedRpcData(format!(
                "get_free_nonce returned {other:?}"
            ))),
        }
    }

    fn commit_nonce_reservation(
        &mut self,
        next_unreserved: u64,
        start_nonce: Option<u64>,
    ) -> Result<()> {
        self.call(
            "commit_nonce_reservation",
            vec![
                ("next_unreserved", Value::Int(i128::from(next_unreserved))),
                ("start_nonce", opt_int(start_nonce)),
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_command_line_like_borg() {
        let cmd = SshCommand {
            rsh: Some("ssh -i '/my key' -o BatchMode=yes".into()),
            remote_path: Some("/usr/bin/borg".into()),
            user: Some("me".into()),
            host: "nas".into(),
            port: Some(2222),
            serve_args: vec!["--info".into()],
        };
        assert_eq!(
            cmd.argv(),
            [
                "ssh",
                "-i",
                "/my key",
                "-o",
                "BatchMode=yes",
                "-p",
                "2222",
                "me@nas",
                "/usr/bin/borg",
                "serve",
                "--info"
            ]
        );
    }

    #[test]
    fn remote_lines() {
        let l = parse_remote_line(
            "{\"type\": \"log_message\", \"time\": 1.0, \"message\": \"hi\", \"levelname\": \"INFO\", \"name\": \"borg.repository\"}\n",
        );
        assert_eq!(
            l,
            Some(RemoteLog::Message {
                level: Level::Info,
                name: "borg.repository".into(),
                message: "Remote: hi".into()
            })
        );
        assert_eq!(
            parse_remote_line("plain text\n"),
            Some(RemoteLog::Plain("Remote: plain text".into()))
        );
        assert_eq!(
            parse_remote_line("$LOG ERROR Remote: boom\n"),
            Some(RemoteLog::Message {
                level: Level::Error,
                name: "borg".into(),
                message: "Remote: boom".into()
            })
        );
    }
}
