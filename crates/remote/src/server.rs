//! The server side of borg 1.2's RPC (`RepositoryServer` in `borg/remote.py`): what `borg serve`
//! runs over its stdin/stdout.
//!
//! Requests are msgpack dicts `{i: msgid, m: method, a: {name: value}}` (or the legacy tuples
//! `(1, msgid, method, [positional args])` of borg < 1.1); replies are `{i, r}` or, for errors,
//! `{i, exception_class, exception_args, exception_full, exception_short, exception_trace,
//! sysinfo}`. Log records go to stderr as JSON lines once the client negotiated the dict format.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use rborg_repository::{Error, LocalRepository, ObjectId, OpenOptions, Repository};

use crate::msgpack::{self, Value, SERVER_LIMITS};
use crate::{Level, BORG_VERSION};

/// The methods a client may call (`RepositoryServer.rpc_methods`).
pub const RPC_METHODS: &[&str] = &[
    "__len__",
    "check",
    "commit",
    "delete",
    "destroy",
    "get",
    "list",
    "scan",
    "negotiate",
    "open",
    "put",
    "rollback",
    "save_key",
    "load_key",
    "break_lock",
    "get_free_nonce",
    "commit_nonce_reservation",
    "inject_exception",
];

/// Positional parameter names of the legacy tuple format (borg's `compatMap`).
fn compat_names(method: &str) -> &'static [&'static str] {
    match method {
        "check" => &["repair", "save_space"],
        "commit" => &["save_space"],
        "list" | "scan" => &["limit", "marker"],
        "put" => &["id", "data"],
        "get" | "delete" => &["id"],
        "save_key" => &["keydata"],
        "negotiate" => &["client_data"],
        "open" => &[
            "path",
            "create",
            "lock_wait",
            "lock",
            "exclusive",
            "append_only",
        ],
        "commit_nonce_reservation" => &["next_unreserved", "start_nonce"],
        _ => &[],
    }
}

/// `borg serve` options.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// `--restrict-to-path` (repeatable): repositories must be in or below one of these.
    pub restrict_to_paths: Vec<PathBuf>,
    /// `--restrict-to-repository` (repeatable): the repository must be exactly one of these.
    pub restrict_to_repositories: Vec<PathBuf>,
    /// `--append-only`: open existing repositories append-only.
    pub append_only: bool,
    /// `--storage-quota` in bytes.
    pub storage_quota: Option<u64>,
    /// The log level (`--debug`, `--info`, ...).
    pub log_level: Option<Level>,
}

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The client sent something that is not a borg RPC message
    /// (`UnexpectedRPCDataFormatFromClient`).
    #[error("Borg {0}: Got unexpected RPC data format from client.")]
    UnexpectedData(String),
    /// Reading or writing the streams failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A failed call: borg's exception class, its args and message.
struct CallError {
    class: String,
    args: Vec<Value>,
    message: String,
    /// Whether borg would show a traceback (`exception_trace`).
    trace: bool,
}

impl From<Error> for CallError {
    fn from(e: Error) -> Self {
        let class = e.borg_class().to_string();
        let trace = matches!(
            class.as_str(),
            "IntegrityError" | "ValueError" | "OSError" | "AssertionError" | "Exception"
        );
        let class = match &e {
            Error::Lock(rborg_repository::lock::LockError::Timeout(_)) => "LockTimeout".into(),
            Error::Lock(rborg_repository::lock::LockError::Failed(..)) => "LockFailed".into(),
            Error::Lock(rborg_repository::lock::LockError::NotLocked(_)) => "NotLocked".into(),
            Error::Lock(rborg_repository::lock::LockError::NotMyLock(_)) => "NotMyLock".into(),
            _ => class,
        };
        let args = match &e {
            Error::Lock(rborg_repository::lock::LockError::Timeout(p)) => {
                vec![Value::bytes(p.as_str())]
            }
            Error::Lock(rborg_repository::lock::LockError::Failed(p, m)) => {
                vec![Value::bytes(p.as_str()), Value::bytes(m.as_str())]
            }
            _ => e.borg_args().into_iter().map(Value::bytes).collect(),
        };
        CallError {
            class,
            args,
            message: e.to_string(),
            trace,
        }
    }
}

fn other(class: &str, message: String) -> CallError {
    CallError {
        class: class.into(),
        args: vec![Value::bytes(message.as_str())],
        message,
        trace: true,
    }
}

/// The stateful server of one connection.
struct Server<'a> {
    opts: &'a ServeOptions,
    repository: Option<LocalRepository>,
    json_log: bool,
    stderr: &'a mut dyn Write,
}

impl Server<'_> {
    fn log(&mut self, level: Level, msg: &str) {
        if level < self.opts.log_level.unwrap_or(Level::Warning) {
            return;
        }
        let line = if self.json_log {
            serde_json::json!({
                "type": "log_message",
                "time": std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
                "message": msg,
                "levelname": level.name(),
                "name": "borg.repository",
            })
            .to_string()
        } else {
            format!("$LOG {} Remote: {msg}", level.name())
        };
        let _ = writeln!(self.stderr, "{line}");
        let _ = self.stderr.flush();
    }

    fn repo(&mut self, method: &str) -> Result<&mut LocalRepository, CallError> {
        self.repository.as_mut().ok_or_else(|| {
            other(
                "AttributeError",
                format!("'NoneType' object has no attribute '{method}'"),
            )
        })
    }

    fn call(&mut self, method: &str, args: &Value) -> Result<Value, CallError> {
        if !RPC_METHODS.contains(&method) {
            return Err(CallError {
                class: "InvalidRPCMethod".into(),
                args: vec![Value::bytes(method)],
                message: format!("RPC method {method} is not valid"),
                trace: false,
            });
        }
        let arg = |name: &str| args.get(name).cloned().unwrap_or(Value::Nil);
        let id_arg = |name: &str| -> Result<ObjectId, CallError> {
            args.get(name)
                .and_then(Value::as_bytes)
                .and_then(|b| ObjectId::try_from(b).ok())
                .ok_or_else(|| {
                    other(
                        "TypeError",
                        format!("{method}: {name} must be a 32 byte id"),
                    )
                })
        };
        let opt_usize = |name: &str| -> Result<Option<usize>, CallError> {
            match args.get(name) {
                None | Some(Value::Nil) => Ok(None),
                Some(Value::Int(n)) => usize::try_from(*n)
                    .map(Some)
                    .map_err(|_| other("ValueError", format!("{method}: bad {name}"))),
                Some(_) => Err(other("TypeError", format!("{method}: bad {name}"))),
            }
        };
        let opt_u64 = |name: &str| -> Result<Option<u64>, CallError> {
            match args.get(name) {
                None | Some(Value::Nil) => Ok(None),
                Some(Value::Int(n)) => u64::try_from(*n)
                    .map(Some)
                    .map_err(|_| other("ValueError", format!("{method}: bad {name}"))),
                Some(_) => Err(other("TypeError", format!("{method}: bad {name}"))),
            }
        };
        match method {
            "negotiate" => {
                let data = arg("client_data");
                if data == Value::Int(2) {
                    return Ok(Value::Int(2));
                }
                if matches!(data, Value::Map(_)) {
                    self.json_log = true;
                    self.log(
                        Level::Debug,
                        "Initialized logging system for JSON-based protocol",
                    );
                }
                Ok(Value::map(vec![(
                    "server_version",
                    Value::Array(BORG_VERSION.iter().map(|v| Value::Int(*v)).collect()),
                )]))
            }
            "open" => self.open(args),
            "inject_exception" => {
                let kind = arg("kind");
                let kind =
                    String::from_utf8_lossy(kind.as_bytes().unwrap_or_default()).into_owned();
                let s1 = "test string".to_string();
                Err(match kind.as_str() {
                    "DoesNotExist" => Error::DoesNotExist(s1).into(),
                    "AlreadyExists" => Error::AlreadyExists(s1).into(),
                    "CheckNeeded" => Error::CheckNeeded(s1).into(),
                    "IntegrityError" => Error::RemoteIntegrity(s1).into(),
                    "PathNotAllowed" => Error::PathNotAllowed("foo".into()).into(),
                    "ObjectNotFound" => Error::ObjectNotFound {
                        id: s1,
                        repo: "test string2".into(),
                    }
                    .into(),
                    "InvalidRPCMethod" => Error::InvalidRpcMethod(s1).into(),
                    _ => other(
                        "ZeroDivisionError",
                        "integer division or modulo by zero".into(),
                    ),
                })
            }
            "__len__" => Ok(Value::Int(self.repo(method)?.len()? as i128)),
            "check" => {
                let repair = arg("repair").truthy();
                let max_duration = arg("max_duration").as_f64().unwrap_or(0.0);
                let repo = self.repo(method)?;
                let partial = max_duration > 0.0;
                let report = if partial {
                    repo.check_partial(Duration::from_secs_f64(max_duration.min(1e9)))?
                } else {
                    repo.check_report(repair)?
                };
                self.log(Level::Info, "Starting repository check");
                for e in &report.errors {
                    self.log(Level::Error, e);
                }
                for w in &report.warnings {
                    self.log(Level::Warning, w);
                }
                let mode = if partial { "partial" } else { "full" };
                if report.errors.is_empty() {
                    self.log(
                        Level::Info,
                        &format!("Finished {mode} repository check, no problems found."),
                    );
                } else if repair {
                    self.log(
                        Level::Info,
                        &format!("Finished {mode} repository check, errors found and repaired."),
                    );
                } else {
                    self.log(
                        Level::Error,
                        &format!("Finished {mode} repository check, errors found."),
                    );
                }
                Ok(Value::Bool(report.ok))
            }
            "commit" => {
                let compact = args.get("compact").is_none_or(Value::truthy);
                let threshold = args.get("threshold").and_then(Value::as_f64).unwrap_or(0.1);
                let cleanup = arg("cleanup_commits").truthy();
                let repo = self.repo(method)?;
                let before = if compact {
                    Some(repo.hints()?.storage_quota_use)
                } else {
                    None
                };
                repo.commit_with_cleanup(compact, threshold, cleanup)?;
                if let Some(before) = before {
                    let after = repo.hints()?.storage_quota_use;
                    // logged by borg's `Repository.compact_segments`
                    let freed = rborg_repository::error::format_file_size(
                        i64::try_from(before).unwrap_or(i64::MAX)
                            - i64::try_from(after).unwrap_or(i64::MAX),
                    );
                    self.log(
                        Level::Info,
                        &format!("compaction freed about {freed} repository space."),
                    );
                }
                Ok(Value::Nil)
            }
            "rollback" => {
                self.repo(method)?.rollback()?;
                Ok(Value::Nil)
            }
            "destroy" => {
                self.repo(method)?.destroy()?;
                Ok(Value::Nil)
            }
            "list" | "scan" => {
                let limit = opt_usize("limit")?;
                let marker = match args.get("marker") {
                    None | Some(Value::Nil) => None,
                    Some(_) => Some(id_arg("marker")?),
                };
                let repo = self.repo(method)?;
                let ids = if method == "list" {
                    repo.list(limit, marker.as_ref())?
                } else {
                    repo.scan(limit, marker.as_ref())?
                };
                Ok(Value::Array(
                    ids.iter().map(|i| Value::bytes(i.to_vec())).collect(),
                ))
            }
            "get" => {
                let id = id_arg("id")?;
                Ok(Value::Bytes(self.repo(method)?.get(&id)?))
            }
            "put" => {
                let id = id_arg("id")?;
                let data = args
                    .get("data")
                    .and_then(Value::as_bytes)
                    .ok_or_else(|| other("TypeError", "put: data must be bytes".into()))?
                    .to_vec();
                self.repo(method)?.put(&id, &data)?;
                Ok(Value::Nil)
            }
            "delete" => {
                let id = id_arg("id")?;
                self.repo(method)?.delete(&id)?;
                Ok(Value::Nil)
            }
            "save_key" => {
                let data = arg("keydata");
                let data = data.as_bytes().unwrap_or_default().to_vec();
                self.repo(method)?.save_key(&data)?;
                Ok(Value::Nil)
            }
            "load_key" => Ok(Value::Bytes(self.repo(method)?.load_key()?)),
            "break_lock" => {
                self.repo(method)?.break_lock()?;
                Ok(Value::Nil)
            }
            "get_free_nonce" => Ok(self
                .repo(method)?
                .get_free_nonce()?
                .map_or(Value::Nil, |n| Value::Int(i128::from(n)))),
            "commit_nonce_reservation" => {
                let next = opt_u64("next_unreserved")?
                    .ok_or_else(|| other("TypeError", "next_unreserved is required".into()))?;
                let start = opt_u64("start_nonce")?;
                self.repo(method)?.commit_nonce_reservation(next, start)?;
                Ok(Value::Nil)
            }
            _ => Err(other("InvalidRPCMethod", method.to_string())),
        }
    }

    fn open(&mut self, args: &Value) -> Result<Value, CallError> {
        let raw = args
            .get("path")
            .and_then(Value::as_bytes)
            .ok_or_else(|| other("TypeError", "open: path is required".into()))?;
        let raw = String::from_utf8_lossy(raw).into_owned();
        self.log(Level::Debug, &format!("Resolving repository path {raw:?}"));
        let path = resolve_path(&raw);
        self.log(
            Level::Debug,
            &format!(
                "Resolved repository path to {:?}",
                path.display().to_string()
            ),
        );
        check_restrictions(&path, self.opts)
            .map_err(|p| CallError::from(Error::PathNotAllowed(p)))?;
        let create = args.get("create").is_some_and(Value::truthy);
        let append_only = (!create && self.opts.append_only)
            || args.get("append_only").is_some_and(Value::truthy);
        let exclusive = match args.get("exclusive") {
            None | Some(Value::Nil) => None,
            Some(v) => Some(v.truthy()),
        };
        let lock_wait = args
            .get("lock_wait")
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(1e9)));
        let opts = OpenOptions {
            exclusive,
            lock_wait,
            lock: args.get("lock").is_none_or(Value::truthy),
            append_only,
            storage_quota: self.opts.storage_quota,
            make_parent_dirs: args.get("make_parent_dirs").is_some_and(Value::truthy),
            ..OpenOptions::default()
        };
        if let Some(mut old) = self.repository.take() {
            let _ = old.close();
        }
        let repo = if create {
            LocalRepository::create(&path, &opts)?
        } else {
            LocalRepository::open(&path, &opts)?
        };
        let id = repo.id();
        self.repository = Some(repo);
        Ok(Value::bytes(id.to_vec()))
    }

    fn reply(&mut self, msgid: &Value, dict: bool, result: Result<Value, CallError>) -> Vec<u8> {
        let msg = match (result, dict) {
            (Ok(v), true) => Value::map(vec![("i", msgid.clone()), ("r", v)]),
            (Ok(v), false) => Value::Array(vec![Value::Int(1), msgid.clone(), Value::Nil, v]),
            (Err(e), true) => {
                if !matches!(
                    e.class.as_str(),
                    "DoesNotExist" | "AlreadyExists" | "PathNotAllowed"
                ) {
                    self.log(Level::Debug, &format!("{}: {}", e.class, e.message));
                }
                let full = format!("{}: {}", e.class, e.message);
                Value::map(vec![
                    ("i", msgid.clone()),
                    ("exception_class", Value::bytes(e.class.as_str())),
                    ("exception_args", Value::Array(e.args)),
                    ("exception_full", Value::Array(vec![Value::bytes(full)])),
                    (
                        "exception_short",
                        Value::Array(vec![Value::bytes(e.message)]),
                    ),
                    ("exception_trace", Value::Bool(e.trace)),
                    (
                        "sysinfo",
                        Value::bytes(format!("rborg serve, borg protocol {}", version_text())),
                    ),
                ])
            }
            (Err(e), false) => {
                if !matches!(
                    e.class.as_str(),
                    "DoesNotExist" | "AlreadyExists" | "PathNotAllowed"
                ) {
                    self.log(Level::Error, &e.message);
                }
                Value::Array(vec![
                    Value::Int(1),
                    msgid.clone(),
                    Value::bytes(e.class.as_str()),
                    Value::bytes("Remote Exception (see remote log for the traceback)"),
                ])
            }
        };
        msgpack::to_vec(&msg)
    }

    /// Handles one decoded message; `Err` for data that is not an RPC message.
    fn handle(&mut self, msg: Value) -> Result<Vec<u8>, ServeError> {
        let bad = || ServeError::UnexpectedData(version_text());
        let (msgid, method, args, dict) = match msg {
            Value::Map(_) => {
                let msgid = msg.get("i").cloned().ok_or_else(bad)?;
                let method = msg.get("m").and_then(Value::as_bytes).ok_or_else(bad)?;
                let method = String::from_utf8_lossy(method).into_owned();
                let args = match msg.get("a") {
                    Some(a @ Value::Map(_)) => a.clone(),
                    None | Some(Value::Nil) => Value::Map(Vec::new()),
                    Some(_) => return Err(bad()),
                };
                (msgid, method, args, true)
            }
            Value::Array(t) if t.len() == 4 => {
                let mut t = t.into_iter();
                let _type = t.next();
                let msgid = t.next().unwrap_or(Value::Nil);
                let method = t.next().unwrap_or(Value::Nil);
                let method =
                    String::from_utf8_lossy(method.as_bytes().ok_or_else(bad)?).into_owned();
                let positional = match t.next() {
                    Some(Value::Array(a)) => a,
                    _ => return Err(bad()),
                };
                let names = compat_names(&method);
                let args = Value::Map(
                    names
                        .iter()
                        .zip(positional)
                        .map(|(n, v)| (Value::bytes(*n), v))
                        .collect(),
                );
                (msgid, method, args, false)
            }
            _ => return Err(bad()),
        };
        let result = self.call(&method, &args);
        Ok(self.reply(&msgid, dict, result))
    }

    fn close(&mut self) {
        if let Some(mut repo) = self.repository.take() {
            let _ = repo.close();
        }
    }
}

fn version_text() -> String {
    BORG_VERSION[..3]
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// The home directory borg uses for `~` (`get_base_dir`: `BORG_BASE_DIR`, else `HOME`).
fn base_dir() -> PathBuf {
    std::env::var_os("BORG_BASE_DIR")
        .or_else(|| std::env::var_os("HOME"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn user_home(user: &str) -> Option<PathBuf> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[0] == user).then(|| PathBuf::from(f[5]))
    })
}

fn expand_user(p: &str) -> PathBuf {
    // p starts with '~'
    let rest = &p[1..];
    let (user, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let home = if user.is_empty() {
        Some(base_dir())
    } else {
        user_home(user)
    };
    match home {
        Some(h) => h.join(tail),
        None => PathBuf::from(p),
    }
}

/// Resolves a client's repository path like borg's `RepositoryServer._resolve_path`: `/~/x` and
/// `~/x` are relative to the home directory, `/~user/x` and `~user/x` to that user's, `/./x`
/// to the working directory; the result is made absolute with symlinks resolved
/// (`os.path.realpath`, which tolerates missing trailing components).
pub fn resolve_path(path: &str) -> PathBuf {
    let p = if let Some(rest) = path.strip_prefix("/~/") {
        base_dir().join(rest)
    } else if let Some(rest) = path.strip_prefix("~/") {
        base_dir().join(rest)
    } else if path.starts_with("/~") {
        expand_user(&path[1..])
    } else if path.starts_with('~') {
        expand_user(path)
    } else if let Some(rest) = path.strip_prefix("/./") {
        PathBuf::from(rest)
    } else {
        PathBuf::from(path)
    };
    realpath(&p)
}

/// `os.path.realpath`: absolute, `.`/`..` applied, symlinks of existing components resolved.
pub fn realpath(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(p)
    };
    let mut out = PathBuf::from("/");
    let mut links = 0;
    let mut pending: Vec<std::ffi::OsString> = abs
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    while let Some(c) = pending.pop() {
        if c == ".." {
            out.pop();
            continue;
        }
        let next = out.join(&c);
        match std::fs::read_link(&next) {
            Ok(target) if links < 40 => {
                links += 1;
                if target.is_absolute() {
                    out = PathBuf::from("/");
                }
                for comp in target.components().rev() {
                    match comp {
                        Component::Normal(s) => pending.push(s.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => out = next,
        }
    }
    out
}

/// Checks `path` against `--restrict-to-path` and `--restrict-to-repository`; the error carries
/// the refused path.
pub fn check_restrictions(path: &Path, opts: &ServeOptions) -> Result<(), String> {
    let with_sep = |p: &Path| {
        let mut s = p.as_os_str().to_os_string();
        if !s.to_string_lossy().ends_with('/') {
            s.push("/");
        }
        s.to_string_lossy().into_owned()
    };
    let path_sep = with_sep(path);
    if !opts.restrict_to_paths.is_empty()
        && !opts
            .restrict_to_paths
            .iter()
            .any(|r| path_sep.starts_with(&with_sep(&realpath(r))))
    {
        return Err(path.display().to_string());
    }
    if !opts.restrict_to_repositories.is_empty()
        && !opts
            .restrict_to_repositories
            .iter()
            .any(|r| with_sep(&realpath(r)) == path_sep)
    {
        return Err(path.display().to_string());
    }
    Ok(())
}

/// Serves one client: reads requests from `reader`, writes replies to `writer` and log lines to
/// `stderr`, until the client closes the connection (then the repository is closed and `Ok`
/// returned) or sends data that is not an RPC message.
pub fn serve(
    reader: &mut dyn Read,
    writer: &mut dyn Write,
    stderr: &mut dyn Write,
    opts: &ServeOptions,
) -> Result<(), ServeError> {
    let mut server = Server {
        opts,
        repository: None,
        json_log: false,
        stderr,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let result = loop {
        let n = match reader.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e.into()),
        };
        if n == 0 {
            // (borg 1.2.4 writes "Got connection close before repository was opened." to its
            // stdout here, where no client reads it; rborg stays silent)
            break Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        let mut failed = None;
        loop {
            match msgpack::decode(&buf[used..], &SERVER_LIMITS) {
                Ok(Some((msg, len))) => {
                    used += len;
                    match server.handle(msg) {
                        Ok(out) => {
                            if let Err(e) = writer.write_all(&out).and_then(|_| writer.flush()) {
                                failed = Some(e.into());
                                break;
                            }
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    failed = Some(ServeError::UnexpectedData(version_text()));
                    break;
                }
            }
        }
        if let Some(e) = failed {
            break Err(e);
        }
        buf.drain(..used);
        if buf.len() > msgpack::MAX_BUFFER {
            break Err(ServeError::UnexpectedData(version_text()));
        }
    };
    server.close();
    result
}

/// Runs one whole server session over `input` as the complete client stream (EOF after it) and
/// returns what the server wrote to its stdout and stderr and how it ended. The fuzz target
/// `fuzz/fuzz_targets/rpc_server.rs` and the regression test of its findings
/// (`tests/fuzz_regressions.rs`) drive the server through this; it is [`serve`] with in-memory
/// streams, so a hostile byte stream meets exactly the code a real `borg serve` client reaches.
pub fn serve_bytes(
    input: &[u8],
    opts: &ServeOptions,
) -> (Vec<u8>, Vec<u8>, Result<(), ServeError>) {
    let mut reader = input;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let result = serve(&mut reader, &mut stdout, &mut stderr, opts);
    (stdout, stderr, result)
}
