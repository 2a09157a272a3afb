//! Repository locking exactly as borg 1.2.4 does it (`locking.py`: `ExclusiveLock`,
//! `LockRoster`, `Lock`; `platform/base.py`: `get_process_id`, `hostid`;
//! `platform/posix.pyx`: `process_alive`), so rborg and borg exclude each other.
//!
//! On disk, for a repository at `REPO`:
//!
//! * `REPO/lock.exclusive/` — a directory created atomically by renaming a temporary
//!   directory (`lock.exclusive.XXXXXXXX.tmp`) that already contains one empty file named
//!   after the owner, `"{hostid}.{pid}-{thread:x}"`.  Whoever owns it may modify the roster;
//!   an exclusive [`Lock`] keeps holding it.
//! * `REPO/lock.roster` — JSON `{"shared": [[hostid, pid, thread], ...], "exclusive": [...]}`.
//!
//! The process id is `(hostid, pid, 0)` with `hostid = $BORG_HOST_ID` or
//! `"{fqdn}@{uuid.getnode()}"` (the MAC address libuuid picks, as a decimal integer).
//! A lock entry of this host whose pid no longer exists is stale and removed
//! (`kill(pid, 0)` fails with `ESRCH`); entries of other hosts are always considered alive.
//!
//! ```no_run
//! use rborg_repository::lock::Lock;
//! use std::time::Duration;
//! # fn main() -> Result<(), rborg_repository::lock::LockError> {
//! let lock = Lock::acquire("/path/to/repo".as_ref(), true, Some(Duration::from_secs(1)))?;
//! // ... modify the repository ...
//! lock.release()?;
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Lock errors; the messages are borg's (`locking.py`).
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// borg `LockTimeout`.
    #[error("Failed to create/acquire the lock {0} (timeout).")]
    Timeout(String),
    /// borg `LockFailed`: the lock could not even be attempted (e.g. repo dir missing).
    #[error("Failed to create/acquire the lock {0} ({1}).")]
    Failed(String, String),
    /// borg `NotLocked`.
    #[error("Failed to release the lock {0} (was not locked).")]
    NotLocked(String),
    /// borg `NotMyLock`.
    #[error("Failed to release the lock {0} (was/is locked, but not by me).")]
    NotMyLock(String),
    /// Other I/O errors while manipulating lock files.
    #[error("lock I/O error on {0}: {1}")]
    Io(String, #[source] io::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LockError + '_ {
    move |e| LockError::Io(path.display().to_string(), e)
}

/// `(hostid, pid, thread)` identifying a lock owner (borg's `get_process_id()`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessId {
    /// `$BORG_HOST_ID` or `"{fqdn}@{node}"`.
    pub host: String,
    /// OS process id.
    pub pid: u32,
    /// Always 0 in borg 1.2.
    pub thread: u32,
}

impl ProcessId {
    /// The id of the calling process.
    pub fn current() -> Self {
        ProcessId {
            host: host_id().to_string(),
            pid: std::process::id(),
            thread: 0,
        }
    }

    /// File name inside `lock.exclusive/`: `"%s.%d-%x" % (host, pid, thread)`.
    pub fn unique_name(&self) -> String {
        format!("{}.{}-{:x}", self.host, self.pid, self.thread)
    }

    /// Parse a `lock.exclusive` member name like borg's `kill_stale_lock`.
    pub fn parse_unique_name(name: &str) -> Option<Self> {
        let (host_pid, thread) = name.rsplit_once('-')?;
        let (host, pid) = host_pid.rsplit_once('.')?;
        Some(ProcessId {
            host: host.to_string(),
            pid: pid.trim().parse().ok()?,
            thread: u32::from_str_radix(thread.trim(), 16).ok()?,
        })
    }
}

/// borg's `platform.hostid`, computed once per process.
pub fn host_id() -> &'static str {
    static HOST_ID: OnceLock<String> = OnceLock::new();
    HOST_ID.get_or_init(|| match std::env::var("BORG_HOST_ID") {
        Ok(h) if !h.is_empty() => h,
        _ => format!("{}@{}", fqdn(&hostname()), node_id()),
    })
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// borg's patched `getfqdn`: the canonical name from `getaddrinfo(AI_CANONNAME)`.
fn fqdn(name: &str) -> String {
    let name = name.trim();
    let name = if name.is_empty() || name == "0.0.0.0" {
        hostname()
    } else {
        name.to_string()
    };
    let hints = dns_lookup::AddrInfoHints {
        socktype: libc::SOCK_DGRAM,
        flags: libc::AI_CANONNAME,
        ..dns_lookup::AddrInfoHints::default()
    };
    let Ok(infos) = dns_lookup::getaddrinfo(Some(&name), None, Some(hints)) else {
        return name;
    };
    infos
        .filter_map(Result::ok)
        .find_map(|ai| ai.canonname.filter(|c| !c.is_empty()))
        .unwrap_or(name)
}

/// Python's `uuid.getnode()` on Linux (libuuid `uuid_generate_time`): the hardware
/// address of the first interface with an IPv4 address whose MAC is not all-zero;
/// if there is none, a random multicast node (so, like borg, not stable).
fn node_id() -> u64 {
    let mut names: Vec<String> = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for ifa in addrs {
            let is_inet = ifa
                .address
                .as_ref()
                .is_some_and(|a| a.as_sockaddr_in().is_some());
            if is_inet && !names.contains(&ifa.interface_name) {
                names.push(ifa.interface_name);
            }
        }
    }
    for n in names {
        let Ok(s) = fs::read_to_string(Path::new("/sys/class/net").join(&n).join("address")) else {
            continue;
        };
        let bytes: Vec<u8> = s
            .trim()
            .split(':')
            .filter_map(|h| u8::from_str_radix(h, 16).ok())
            .collect();
        if bytes.len() == 6 && bytes.iter().any(|&b| b != 0) {
            return bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        }
    }
    (rand::random::<u64>() & 0xffff_ffff_ffff) | (1 << 40)
}

/// borg's `process_alive`: processes of other hosts (or threads != 0) are assumed
/// alive; local ones are probed with `kill(pid, 0)` (only `ESRCH` means dead).
pub fn process_alive(id: &ProcessId) -> bool {
    if id.host != host_id() || id.thread != 0 {
        return true;
    }
    let Ok(pid) = libc::pid_t::try_from(id.pid) else {
        // not a pid this OS can have: do not break a lock we do not understand
        return true;
    };
    // Signal "None" (0) only checks existence and permission.
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// borg's `TimeoutTimer`.
struct Timer {
    end: Option<Instant>,
    sleep: Duration,
}

impl Timer {
    fn start(timeout: Option<Duration>, sleep: Option<Duration>) -> Self {
        let sleep = sleep.unwrap_or(match timeout {
            None => Duration::from_secs(1),
            Some(t) => (t / 10).min(Duration::from_secs(60)),
        });
        Timer {
            end: timeout.map(|t| Instant::now() + t),
            sleep,
        }
    }
    fn timed_out_or_sleep(&self) -> bool {
        if self.end.is_some_and(|e| Instant::now() >= e) {
            return true;
        }
        std::thread::sleep(self.sleep);
        false
    }
}

/// borg's `ExclusiveLock`: a directory created by an atomic rename.
#[derive(Debug)]
pub struct ExclusiveLock {
    path: PathBuf,
    unique_name: PathBuf,
    id: ProcessId,
    timeout: Option<Duration>,
}

fn is_lost_race(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTEMPTY) | Some(libc::EEXIST) | Some(libc::ENOENT)
    )
}

impl ExclusiveLock {
    /// A lock at `path` (made absolute) owned by `id`.
    pub fn new(path: &Path, id: ProcessId, timeout: Option<Duration>) -> Self {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let unique_name = path.join(id.unique_name());
        ExclusiveLock {
            path,
            unique_name,
            id,
            timeout,
        }
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn make_temp(&self) -> Result<PathBuf, LockError> {
        let parent = self.path.parent().unwrap_or(Path::new("."));
        let base = self
            .path
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fail = |e: io::Error| LockError::Failed(self.name(), e.to_string());
        for _ in 0..100 {
            let suffix: String = (0..8)
                .map(|_| {
                    let c = b"abcdefghijklmnopqrstuvwxyz0123456789_"[rand::random::<usize>() % 37];
                    c as char
                })
                .collect();
            let temp = parent.join(format!("{base}.{suffix}.tmp"));
            let mut b = fs::DirBuilder::new();
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            match b.create(&temp) {
                Ok(()) => {
                    if let Err(e) = fs::File::create(temp.join(self.id.unique_name())) {
                        let _ = fs::remove_dir(&temp);
                        return Err(fail(e));
                    }
                    return Ok(temp);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(fail(e)),
            }
        }
        Err(fail(io::Error::from(io::ErrorKind::AlreadyExists)))
    }

    /// Acquire (waiting up to the timeout, breaking stale locks of dead local processes).
    pub fn acquire(&self) -> Result<(), LockError> {
        let temp = self.make_temp()?;
        let timer = Timer::start(self.timeout, None);
        let result = loop {
            match fs::rename(&temp, &self.path) {
                Ok(()) => return Ok(()),
                Err(_) => {
                    if self.by_me() {
                        break Ok(());
                    }
                    self.kill_stale_lock();
                    if timer.timed_out_or_sleep() {
                        break Err(LockError::Timeout(self.name()));
                    }
                }
            }
        };
        let _ = fs::remove_file(temp.join(self.id.unique_name()));
        let _ = fs::remove_dir(&temp);
        result
    }

    /// Release; errors if not locked or locked by someone else.
    pub fn release(&self) -> Result<(), LockError> {
        if !self.is_locked() {
            return Err(LockError::NotLocked(self.name()));
        }
        if !self.by_me() {
            return Err(LockError::NotMyLock(self.name()));
        }
        fs::remove_file(&self.unique_name).map_err(io_err(&self.unique_name))?;
        match fs::remove_dir(&self.path) {
            Err(e) if !is_lost_race(&e) => Err(io_err(&self.path)(e)),
            _ => Ok(()),
        }
    }

    /// Whether the lock directory exists.
    pub fn is_locked(&self) -> bool {
        self.path.exists()
    }

    /// Whether we own it.
    pub fn by_me(&self) -> bool {
        self.unique_name.exists()
    }

    /// Remove owner files of dead local processes and then the directory if empty.
    /// Returns true if the lock directory was removed.
    pub fn kill_stale_lock(&self) -> bool {
        let names = match fs::read_dir(&self.path) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        for name in names {
            let Some(id) = ProcessId::parse_unique_name(&name) else {
                // borg: "Found malformed lock ... Please check/fix manually."
                return false;
            };
            if process_alive(&id) {
                return false;
            }
            if fs::remove_file(self.path.join(&name)).is_err() {
                return false;
            }
        }
        fs::remove_dir(&self.path).is_ok()
    }

    /// Remove the lock regardless of owner.
    pub fn break_lock(&self) -> Result<(), LockError> {
        if self.is_locked() {
            for e in fs::read_dir(&self.path).map_err(io_err(&self.path))? {
                let p = e.map_err(io_err(&self.path))?.path();
                fs::remove_file(&p).map_err(io_err(&p))?;
            }
            fs::remove_dir(&self.path).map_err(io_err(&self.path))?;
        }
        Ok(())
    }
}

const SHARED: &str = "shared";
const EXCLUSIVE: &str = "exclusive";

/// borg's `LockRoster` (`lock.roster` JSON).
#[derive(Debug)]
struct Roster {
    path: PathBuf,
    id: ProcessId,
}

type RosterData = Vec<(String, BTreeSet<ProcessId>)>;

impl Roster {
    /// Load, dropping stale entries; missing/invalid file -> empty.
    fn load(&self) -> RosterData {
        let Ok(text) = fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&text)
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in map {
            let mut set = BTreeSet::new();
            let Some(list) = v.as_array() else {
                return Vec::new();
            };
            for e in list {
                let t = e.as_array().filter(|a| a.len() == 3);
                let parsed = t.and_then(|a| {
                    Some(ProcessId {
                        host: a[0].as_str()?.to_string(),
                        pid: u32::try_from(a[1].as_u64()?).ok()?,
                        thread: u32::try_from(a[2].as_u64()?).ok()?,
                    })
                });
                let Some(id) = parsed else { return Vec::new() };
                if (k != SHARED && k != EXCLUSIVE) || process_alive(&id) {
                    set.insert(id);
                }
            }
            out.push((k, set));
        }
        out
    }

    fn save(&self, data: &RosterData) -> Result<(), LockError> {
        let mut map = serde_json::Map::new();
        for (k, set) in data {
            let list = set
                .iter()
                .map(|id| serde_json::json!([id.host, id.pid, id.thread]))
                .collect();
            map.insert(k.clone(), serde_json::Value::Array(list));
        }
        let text = serde_json::Value::Object(map).to_string();
        fs::write(&self.path, text).map_err(io_err(&self.path))
    }

    fn get(&self, key: &str) -> BTreeSet<ProcessId> {
        self.load()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, s)| s)
            .unwrap_or_default()
    }

    fn empty(&self) -> bool {
        self.get(SHARED).is_empty() && self.get(EXCLUSIVE).is_empty()
    }

    fn modify(&self, key: &str, add: bool) -> Result<(), LockError> {
        let mut data = self.load();
        let pos = match data.iter().position(|(k, _)| k == key) {
            Some(p) => p,
            None => {
                data.push((key.to_string(), BTreeSet::new()));
                data.len() - 1
            }
        };
        if add {
            data[pos].1.insert(self.id.clone());
        } else {
            data[pos].1.remove(&self.id);
        }
        self.save(&data)
    }

    fn remove(&self) -> Result<(), LockError> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&self.path)(e)),
            _ => Ok(()),
        }
    }
}

/// borg's `Lock`: shared (readers) or exclusive (one writer) lock of a repository,
/// released on [`Lock::release`] or drop.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    exclusive: bool,
    timeout: Option<Duration>,
    roster: Roster,
    lock: ExclusiveLock,
    held: bool,
}

impl Lock {
    /// Lock the repository at `repo_dir` (files `lock.exclusive`, `lock.roster`),
    /// waiting up to `timeout` (`None`: forever), as `Repository.open` does with
    /// `Lock(path/lock, exclusive, timeout=lock_wait)`.
    pub fn acquire(
        repo_dir: &Path,
        exclusive: bool,
        timeout: Option<Duration>,
    ) -> Result<Lock, LockError> {
        Self::acquire_as(repo_dir, exclusive, timeout, ProcessId::current())
    }

    /// Like [`Lock::acquire`] with an explicit owner id (borg's `id=` argument).
    pub fn acquire_as(
        repo_dir: &Path,
        exclusive: bool,
        timeout: Option<Duration>,
        id: ProcessId,
    ) -> Result<Lock, LockError> {
        let repo_dir = std::path::absolute(repo_dir).unwrap_or_else(|_| repo_dir.to_path_buf());
        let path = repo_dir.join("lock");
        let mut lock = Lock {
            roster: Roster {
                path: repo_dir.join("lock.roster"),
                id: id.clone(),
            },
            lock: ExclusiveLock::new(&repo_dir.join("lock.exclusive"), id, timeout),
            path,
            exclusive,
            timeout,
            held: false,
        };
        lock.do_acquire(exclusive, None)?;
        lock.held = true;
        Ok(lock)
    }

    fn do_acquire(&mut self, exclusive: bool, remove: Option<&str>) -> Result<(), LockError> {
        if exclusive {
            self.wait_for_readers_finishing(remove)?;
            if let Err(e) = self.roster.modify(EXCLUSIVE, true) {
                let _ = self.lock.release();
                return Err(e);
            }
        } else {
            self.lock.acquire()?;
            let r = (|| {
                if let Some(r) = remove {
                    self.roster.modify(r, false)?;
                }
                self.roster.modify(SHARED, true)
            })();
            let rel = self.lock.release();
            r?;
            rel?;
        }
        self.exclusive = exclusive;
        Ok(())
    }

    fn wait_for_readers_finishing(&mut self, remove: Option<&str>) -> Result<(), LockError> {
        let timer = Timer::start(self.timeout, Some(Duration::from_millis(200)));
        loop {
            self.lock.acquire()?;
            let step = (|| {
                if let Some(r) = remove {
                    self.roster.modify(r, false)?;
                }
                if self.roster.get(SHARED).is_empty() {
                    return Ok(true);
                }
                if let Some(r) = remove {
                    self.roster.modify(r, true)?;
                }
                Ok(false)
            })();
            match step {
                Ok(true) => return Ok(()), // we keep the exclusive lock
                Ok(false) => self.lock.release()?,
                Err(e) => {
                    let _ = self.lock.release();
                    return Err(e);
                }
            }
            if timer.timed_out_or_sleep() {
                return Err(LockError::Timeout(self.path.display().to_string()));
            }
        }
    }

    fn do_release(&mut self) -> Result<(), LockError> {
        if self.exclusive {
            self.roster.modify(EXCLUSIVE, false)?;
            if self.roster.empty() {
                self.roster.remove()?;
            }
            self.lock.release()
        } else {
            self.lock.acquire()?;
            let r = (|| {
                self.roster.modify(SHARED, false)?;
                if self.roster.empty() {
                    self.roster.remove()?;
                }
                Ok(())
            })();
            let rel = self.lock.release();
            r?;
            rel
        }
    }

    /// Release the lock (also done, ignoring errors, on drop).
    pub fn release(mut self) -> Result<(), LockError> {
        self.held = false;
        self.do_release()
    }

    /// Shared -> exclusive (waits for other readers; deadlocks like borg if two readers
    /// try to upgrade at once, until the timeout).
    pub fn upgrade(&mut self) -> Result<(), LockError> {
        if !self.exclusive {
            self.do_acquire(true, Some(SHARED))?;
        }
        Ok(())
    }

    /// Exclusive -> shared.
    pub fn downgrade(&mut self) -> Result<(), LockError> {
        if self.exclusive {
            self.do_acquire(false, Some(EXCLUSIVE))?;
        }
        Ok(())
    }

    /// Whether we hold the lock exclusively (`got_exclusive_lock`).
    pub fn got_exclusive_lock(&self) -> bool {
        self.exclusive && self.lock.is_locked() && self.lock.by_me()
    }

    /// Whether this lock is in exclusive mode.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.held {
            self.held = false;
            let _ = self.do_release();
        }
    }
}

/// `borg break-lock`: remove `lock.roster` and `lock.exclusive` of `repo_dir`,
/// whoever owns them.
pub fn break_lock(repo_dir: &Path) -> Result<(), LockError> {
    let id = ProcessId::current();
    Roster {
        path: repo_dir.join("lock.roster"),
        id: id.clone(),
    }
    .remove()?;
    ExclusiveLock::new(&repo_dir.join("lock.exclusive"), id, None).break_lock()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names() {
        let id = ProcessId {
            host: "h.example@123".into(),
            pid: 42,
            thread: 0x1f,
        };
        assert_eq!(id.unique_name(), "h.example@123.42-1f");
        assert_eq!(ProcessId::parse_unique_name(&id.unique_name()), Some(id));
        assert_eq!(ProcessId::parse_unique_name("garbage"), None);
    }

    #[test]
    fn shared_exclusive_interplay() {
        let dir = tempfile::tempdir().unwrap();
        let me = ProcessId::current();
        let other = ProcessId {
            pid: 1,
            ..me.clone()
        }; // pid 1 is alive
        let a = Lock::acquire_as(
            dir.path(),
            false,
            Some(Duration::from_millis(300)),
            me.clone(),
        )
        .unwrap();
        let b = Lock::acquire_as(
            dir.path(),
            false,
            Some(Duration::from_millis(300)),
            other.clone(),
        )
        .unwrap();
        // exclusive must wait for readers
        let t = Instant::now();
        let e = Lock::acquire_as(
            dir.path(),
            true,
            Some(Duration::from_millis(300)),
            ProcessId {
                pid: 2,
                ..me.clone()
            },
        )
        .unwrap_err();
        assert!(
            matches!(e, LockError::Timeout(ref p) if p.ends_with("/lock")),
            "{e}"
        );
        assert!(t.elapsed() >= Duration::from_millis(300));
        drop(b);
        let mut a = a;
        a.upgrade().unwrap();
        assert!(a.got_exclusive_lock());
        // while exclusive, a shared lock times out on lock.exclusive
        let e = Lock::acquire_as(
            dir.path(),
            false,
            Some(Duration::from_millis(200)),
            other.clone(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "Failed to create/acquire the lock {}/lock.exclusive (timeout).",
                std::path::absolute(dir.path()).unwrap().display()
            )
        );
        a.downgrade().unwrap();
        assert!(!a.got_exclusive_lock());
        let b =
            Lock::acquire_as(dir.path(), false, Some(Duration::from_millis(200)), other).unwrap();
        b.release().unwrap();
        a.release().unwrap();
        assert!(!dir.path().join("lock.roster").exists());
        assert!(!dir.path().join("lock.exclusive").exists());
    }
}
